#include "core/train/dataset_preparation.h"

#include "common/check.h"
#include "common/file_util.h"
#include "common/log.h"
#include "core/data/dataset_manifest.h"
#include "core/data/prepare.h"
#include "core/data/tokenizer.h"

namespace dape {

void prepare_dataset_if_missing(const LoadedConfig& config, bool show_progress,
                                Communicator& comm) {
  const config::Data& data = config.msg.data();
  const config::Prepare& prep = data.prepare();
  if (prep.input_size() == 0) return;
  const std::string& dir = data.path();
  const data::TokenizerTrainingOptions training{prep.sp_train_bytes()};
  if (path_exists(data::manifest_path(dir))) {
    const data::Dataset manifest = data::load_manifest(dir);
    const std::string other = data::tokenizer_mismatch(prep.tokenizer(), manifest, training);
    if (!other.empty()) {
      const std::string asked =
          data::tokenizer_needs_training(prep.tokenizer())
              ? fmt::format("'{}' trained on at most {} bytes (data.prepare.sp_train_bytes)",
                            prep.tokenizer(), prep.sp_train_bytes())
              : fmt::format("'{}'", prep.tokenizer());
      fail(
          "{}: asks for tokenizer {}, but data.path '{}' holds a dataset prepared with tokenizer "
          "{}; point data.path at another directory, or remove that dataset to prepare it again",
          config.where("data.prepare.tokenizer"), asked, dir, other);
    }
    DAPE_LOG_INFO("data: using the dataset at {} (tokenizer {})", dir,
                  data::describe_manifest_tokenizer(manifest));
    return;
  }
  std::string inputs;
  for (const auto& in : prep.input()) inputs += (inputs.empty() ? "" : ", ") + in;
  DAPE_LOG_INFO("data: {} holds no dataset yet; preparing it from {} with tokenizer '{}' ({})", dir,
                inputs, prep.tokenizer(), config.where("data.prepare"));
  data::PrepareOptions options;
  options.inputs.assign(prep.input().begin(), prep.input().end());
  options.tokenizer = prep.tokenizer();
  options.format = prep.format();
  options.reader.text_field = prep.text_field();
  options.reader.on_bad_record = prep.on_bad_record() == "skip"
                                     ? data::ReaderOptions::BadRecords::skip
                                     : data::ReaderOptions::BadRecords::error;
  options.out_dir = dir;
  options.val_fraction = prep.val_fraction();
  options.shard_tokens = prep.shard_tokens();
  options.sp_train_bytes = prep.sp_train_bytes();
  options.show_progress = show_progress;
  const data::PrepareSummary summary = data::prepare_dataset(options, comm);
  const std::string text = data::format_prepare_summary(summary);
  size_t at = 0;
  while (at < text.size()) {
    const size_t end = text.find('\n', at);
    DAPE_LOG_INFO("data: {}", text.substr(at, end == std::string::npos ? end : end - at));
    if (end == std::string::npos) break;
    at = end + 1;
  }
}

void prepare_dataset_if_missing(const LoadedConfig& config, bool show_progress) {
  LocalCommunicator alone;
  prepare_dataset_if_missing(config, show_progress, alone);
}

}  // namespace dape
