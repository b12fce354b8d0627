#include "core/data/sentencepiece_training.h"

#include <chrono>
#include <regex>

#include "common/check.h"
#include "common/log.h"
#include "common/progress.h"
#include "core/data/document_source.h"
#include "core/data/sentencepiece_text.h"
#include "core/data/sentencepiece_worker.h"

namespace dape::data {

namespace {

std::vector<std::pair<std::string, std::string>> trainer_options(int32_t vocab_size) {
  return {
      {"model_type", "bpe"},
      {"vocab_size", std::to_string(vocab_size)},
      {"normalization_rule_name", "identity"},
      {"add_dummy_prefix", "false"},
      {"remove_extra_whitespaces", "false"},
      {"byte_fallback", "true"},
      {"character_coverage", "0.9995"},
      {"unk_id", "0"},
      {"eos_id", "1"},
      {"bos_id", "-1"},
      {"pad_id", "-1"},
      {"num_threads", "1"},
      {"input_sentence_size", "0"},
      {"shuffle_input_sentence", "false"},
      {"max_sentence_length", std::to_string(kMaxTrainingSentenceBytes)},
      // Errors come back in the reply; the library's progress lines would only be noise.
      {"minloglevel", "2"},
  };
}

struct SampleFacts {
  int64_t bytes = 0, sentences = 0, documents = 0;
  bool whole_input = true;
};

std::string describe_sample(const SampleFacts& s) {
  return fmt::format("{} bytes in {} lines of {} document{}{}", s.bytes, s.sentences, s.documents,
                     s.documents == 1 ? "" : "s", s.whole_input ? " (all of the input)" : "");
}

// SentencePiece's refusal, in terms of what the user can change.
[[noreturn]] void training_failed(const std::string& message,
                                  const SentencePieceTrainingOptions& options,
                                  const SampleFacts& sample) {
  std::smatch m;
  static const std::regex too_high(R"(Vocabulary size too high \((\d+)\).*<= (\d+))");
  static const std::regex too_small(R"(smaller than required_chars\. (\d+) vs (\d+))");
  const std::string where = fmt::format("tokenizer '{}'", options.spec);
  const std::string more_input =
      sample.whole_input
          ? "give more input"
          : fmt::format("let it train on more (--sp-train-bytes, now {})", options.max_bytes);
  if (std::regex_search(message, m, too_high))
    fail(
        "{}: the training sample ({}) is too small for a vocabulary of {}: SentencePiece can "
        "learn at most {} pieces from it. Use train-sp:{} or less, or {}",
        where, describe_sample(sample), options.vocab_size, m[2].str(), m[2].str(), more_input);
  if (std::regex_search(message, m, too_small))
    fail(
        "{}: a vocabulary of {} is too small for this input: its characters, the 256 byte "
        "pieces, <unk> and </s> need at least {} pieces. Use train-sp:{} or more",
        where, options.vocab_size, m[2].str(), m[2].str());
  fail("{}: SentencePiece could not train on the sample ({}): {}", where, describe_sample(sample),
       message);
}

}  // namespace

std::unique_ptr<SentencePieceTokenizer> train_sentencepiece(
    DocumentSource& documents, const SentencePieceTrainingOptions& options) {
  DAPE_CHECK(options.vocab_size >= kMinTrainedVocab && options.vocab_size <= kMaxTrainedVocab,
             "vocabulary {} was not checked", options.vocab_size);
  DAPE_CHECK(options.max_bytes > 0, "max_bytes {} was not checked", options.max_bytes);
  const auto start = std::chrono::steady_clock::now();
  DAPE_LOG_INFO("training a SentencePiece BPE tokenizer of {} pieces on the first {} of the input",
                options.vocab_size, si_format(static_cast<double>(options.max_bytes)) + "B");
  SampleFacts sample;
  SentencePieceWorker worker;
  auto [ok, reply] = worker.train(
      trainer_options(options.vocab_size), [&](const SentencePieceWorker::SentenceSink& send) {
        Document doc;
        while (documents.next(doc)) {
          if (sample.bytes >= options.max_bytes) {
            sample.whole_input = false;
            return;
          }
          ++sample.documents;
          split_sentences(doc.text, kMaxTrainingSentenceBytes, [&](std::string_view sentence) {
            if (sample.bytes >= options.max_bytes) {
              sample.whole_input = false;
              return;
            }
            send(sentence);
            sample.bytes += static_cast<int64_t>(sentence.size());
            ++sample.sentences;
          });
        }
      });
  if (sample.bytes == 0)
    fail("tokenizer '{}': the input holds no text to train on ({} documents read)", options.spec,
         sample.documents);
  if (!ok) training_failed(reply, options, sample);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  auto tokenizer = std::make_unique<SentencePieceTokenizer>(
      std::move(reply), fmt::format("the model trained for '{}'", options.spec), options.spec);
  tokenizer->set_training_facts(
      options.max_bytes, sample.bytes,
      fmt::format("trained on {} in {:.2f} s", describe_sample(sample), seconds));
  DAPE_LOG_INFO("trained the tokenizer in {:.2f} s on {}", seconds, describe_sample(sample));
  return tokenizer;
}

}  // namespace dape::data
