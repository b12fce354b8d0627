/*
 * What `dape inspect` says about a token shard, a dataset directory, or Megatron data.
 *
 * The report is for a person checking data: header fields, counts, stored versus computed
 * checksums (with verify), and the first tokens decoded to text: with the dataset's tokenizer
 * (byte or SentencePiece, its model read from the dataset), or for a lone shard when the
 * vocabulary is the byte tokenizer's. Inspection is what one runs when something is wrong, so it
 * reports as much as it can before giving up: a missing or corrupt shard becomes a line of the
 * report, and only after the whole report is built does it throw InspectFailure, which carries the
 * report, so the command line can print it and still exit non-zero. Files that cannot be read at
 * all (no header, unparsable manifest) throw plain dape::Error.
 */
#pragma once

#include <string>

#include "common/check.h"

namespace dape::data {

class InspectFailure : public Error {
 public:
  InspectFailure(std::string report, const std::string& problems)
      : Error(problems), report_(std::move(report)) {}
  // The full report, problems included.
  const std::string& report() const { return report_; }

 private:
  std::string report_;
};

// With `verify`, hashes the payload and range-checks every token id.
std::string inspect_token_shard(const std::string& path, bool verify);
// With `verify`, does so for every shard.
std::string inspect_dataset(const std::string& dir, bool verify);
// Megatron/GPT-NeoX data (`path`: the .idx, the .bin or their prefix): header, dtype,
// sequences, documents, tokens, size ranges. With `verify`, also every pointer and doc_idx
// entry, the .bin length, and the range of token ids (checked against `vocab` when > 0).
std::string inspect_megatron(const std::string& path, bool verify, int64_t vocab);

}  // namespace dape::data
