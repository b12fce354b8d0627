/*
 * A dataset to train and evaluate on, opened as one TokenStream per split: a directory written
 * by `dape prepare` (dataset.pbtxt and the token shards it lists), or Megatron/GPT-NeoX data
 * (a .bin/.idx pair, megatron_dataset.h), read as it is.
 *
 * Opening trusts neither the manifest nor the shards: the manifest is validated on its own
 * (dataset_manifest.h), then every listed shard must exist, have a valid header of the right
 * length, the manifest's vocabulary, and the token count and checksum the manifest records. A
 * disagreement is an error naming the dataset directory, the shard file and both values. That
 * costs one header read per shard; the full pass over the payload that proves the checksums is
 * optional (verify_checksums), because on Books3-sized data it reads hundreds of gigabytes.
 * Token ids are range-checked on every read regardless (token_shard.h).
 *
 * Megatron data records neither a vocabulary nor a split, so both come from the options (the
 * trainer fills them from model.vocab_size, data.validation_path and data.val_fraction):
 *   - with a validation path, that second Megatron dataset is the validation split and every
 *     document of the first trains;
 *   - otherwise V = ⌈F·D⌉ of the D documents are held out, spread evenly as prepare spreads them
 *     (the k-th is document ⌊(2k+1)·D / (2V)⌋, train_val_split.h), whatever D is; documents
 *     stay whole (Megatron data has its own end-of-document tokens, or none).
 * Opening validates both files completely except the tokens (megatron_dataset.h);
 * verify_checksums, which has no checksum to check there, scans every token id against the
 * vocabulary instead. The manifest() of Megatron data is synthesized: the vocabulary, the
 * sources, and each split's token and document counts, no shards.
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
  // Megatron data only (see above): the vocabulary (required), and how validation is taken.
  int32_t vocab_size = 0;
  std::string validation_path = "";
  double val_fraction = 0.01;
};

class TokenDataset {
 public:
  // `path`: a dataset directory, or a Megatron dataset (its .idx or .bin, or their prefix).
  // Throws dape::Error as described above.
  explicit TokenDataset(const std::string& path, const DatasetOpenOptions& options = {});
  TokenDataset(TokenDataset&&) noexcept = default;
  TokenDataset& operator=(TokenDataset&&) noexcept = default;

  // The path as given.
  const std::string& dir() const { return dir_; }
  bool is_megatron() const { return is_megatron_; }
  const Dataset& manifest() const { return manifest_; }
  int32_t vocab_size() const { return manifest_.vocab_size(); }
  const TokenStream& train() const { return train_; }
  // Empty (size 0) when the dataset has no validation split.
  const TokenStream& validation() const { return validation_; }

 private:
  void open_megatron(const MegatronPaths& paths, const DatasetOpenOptions& options);

  std::string dir_;
  bool is_megatron_ = false;
  Dataset manifest_;
  TokenStream train_, validation_;
};

}  // namespace dape::data
