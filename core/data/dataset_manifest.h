/*
 * The dataset manifest, dataset.pbtxt: reading, writing and checking it on its own.
 *
 * The manifest is protobuf text format (core/data/dataset.proto) so a person can read and diff
 * it. Parsing is strict: an unknown field or a malformed value is an error naming the file, line
 * and column, never silently ignored. validate_manifest() checks what the manifest says about
 * itself (version, vocabulary, tokenizer, split totals, shard names); whether the shards on disk
 * agree with it is checked when a dataset is opened (dataset.h).
 */
#pragma once

#include <string>

#include "core/data/dataset.pb.h"

namespace dape::data {

inline constexpr const char* kManifestFileName = "dataset.pbtxt";
inline constexpr int32_t kDatasetVersion = 1;

std::string manifest_path(const std::string& dataset_dir);
// Parses `dataset_dir`/dataset.pbtxt. Throws dape::Error naming the file (and line, column) when
// it is missing or malformed. Does not validate.
Dataset load_manifest(const std::string& dataset_dir);
// Parses manifest text; `path` is only used in messages.
Dataset parse_manifest(const std::string& text, const std::string& path);
// Text format, as written to disk.
std::string manifest_to_text(const Dataset& manifest);
// Throws dape::Error naming `path` and the offending field and value when the manifest is
// inconsistent with itself.
void validate_manifest(const Dataset& manifest, const std::string& path);

}  // namespace dape::data
