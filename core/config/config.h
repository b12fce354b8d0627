/*
 * Loading, overriding, validating and printing experiment configs (configs/dape.proto).
 *
 * A config file is protobuf text format. It may name a `base` file that it builds on; fields set
 * in the file replace the base's (repeated fields whole). `--set a.b.c=value` overrides replace
 * the same way, last one wins. Every field remembers where it was set (file:line, or the --set
 * argument), so a validation error can say "configs/x.pbtxt:12: model.heads = 7 does not divide
 * model.d_model = 256". Unknown fields and wrong types are reported by the parser with file, line
 * and column. resolved_text() prints the config with every default filled in: what actually ran.
 */
#pragma once

#include <map>
#include <string>
#include <vector>

#include "configs/dape.pb.h"

namespace dape {

struct LoadedConfig {
  config::Config msg;
  // Field path ("model.heads") -> where its value came from ("configs/demo.pbtxt:7").
  std::map<std::string, std::string> origin;

  // "configs/demo.pbtxt:7: model.heads" for a field set somewhere, else "model.heads (default)".
  std::string where(const std::string& path) const;
};

// Parses `path` (following `base` links) and applies `overrides` ("field.path=value").
LoadedConfig load_config(const std::string& path, const std::vector<std::string>& overrides = {});
// Parses config text (e.g. one stored in a checkpoint); `source` names it in messages.
LoadedConfig parse_config_text(const std::string& text, const std::string& source);
// Applies one "field.path=value" override.
void apply_override(LoadedConfig& cfg, const std::string& assignment);
// Checks ranges and consistency; throws dape::Error naming the field and where it was set.
// world_size is the number of processes the run will use (data × tensor parallel).
void validate_config(const LoadedConfig& cfg, int world_size = 1);
// The config with every default made explicit, in text format.
std::string resolved_text(const config::Config& msg);

}  // namespace dape
