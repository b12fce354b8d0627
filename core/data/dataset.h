/*
 * A prepared dataset: a directory holding dataset.pbtxt and the token shards it lists, opened
 * as one TokenStream per split.
 *
 * Opening trusts neither the manifest nor the shards: the manifest is validated on its own
 * (dataset_manifest.h), then every listed shard must exist, have a valid header of the right
 * length, the manifest's vocabulary, and the token count and checksum the manifest records. A
 * disagreement is an error naming the dataset directory, the shard file and both values. That
 * costs one header read per shard; the full pass over the payload that proves the checksums is
 * optional (verify_checksums), because on Books3-sized data it reads hundreds of gigabytes.
 * Token ids are range-checked on every read regardless (token_shard.h).
 */
#pragma once

#include <string>

#include "core/data/dataset.pb.h"
#include "core/data/token_stream.h"

namespace dape::data {

struct DatasetOpenOptions {
  // Hash every shard's payload and compare with its header (reads every byte once).
  bool verify_checksums = false;
  // Show a progress bar while verifying, when the dataset is big enough for it to matter.
  bool show_progress = true;
};

class TokenDataset {
 public:
  // Throws dape::Error as described above.
  explicit TokenDataset(const std::string& dir, const DatasetOpenOptions& options = {});
  TokenDataset(TokenDataset&&) noexcept = default;
  TokenDataset& operator=(TokenDataset&&) noexcept = default;

  const std::string& dir() const { return dir_; }
  const Dataset& manifest() const { return manifest_; }
  int32_t vocab_size() const { return manifest_.vocab_size(); }
  const TokenStream& train() const { return train_; }
  // Empty (size 0) when the dataset has no validation split.
  const TokenStream& validation() const { return validation_; }

 private:
  std::string dir_;
  Dataset manifest_;
  TokenStream train_, validation_;
};

}  // namespace dape::data
