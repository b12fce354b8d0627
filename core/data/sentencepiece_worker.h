/*
 * SentencePieceWorker: a running dape-sentencepiece process and the socket to it.
 *
 * libsentencepiece cannot share a process with dape's protobuf (sentencepiece_protocol.h says
 * why), so this class starts the worker executable, sends it requests and waits for the replies.
 * The executable is looked for in $DAPE_SENTENCEPIECE_WORKER, then beside the running program
 * (and one directory up, for build/bench/), then where the build put it. A request that the
 * library refuses comes back as its message; a worker that dies or cannot be started is a
 * dape::Error naming the executable. The process ends when the object is destroyed.
 *
 * Not thread-safe: one request at a time (the tokenizer serializes its callers).
 */
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dape::data {

class SentencePieceWorker {
 public:
  // Starts the process. Throws dape::Error when the executable is missing or will not start.
  SentencePieceWorker();
  ~SentencePieceWorker();
  SentencePieceWorker(const SentencePieceWorker&) = delete;
  SentencePieceWorker& operator=(const SentencePieceWorker&) = delete;

  struct LoadedModel {
    int32_t unk_id = -1, eos_id = -1, pieces = 0;
  };
  // Loads a serialized model. Returns "" and fills `loaded`, or the library's error message.
  std::string load(std::string_view model, LoadedModel* loaded);

  // Encodes each text on its own; ids[i] receives the ids of texts[i]. Throws dape::Error with
  // the library's message when it refuses (no model loaded).
  void encode(std::span<const std::string_view> texts, std::vector<std::vector<int32_t>>& ids);

  // SentencePiece's own decoding of `ids` (for checks against dape's).
  std::string decode(std::span<const int32_t> ids);

  // Trains a model with `options` (SentencePieceTrainer's key=value flags) on the sentences that
  // `produce` passes to the sink it is given. Returns {true, model} or {false, the library's
  // error message}.
  using SentenceSink = std::function<void(std::string_view)>;
  std::pair<bool, std::string> train(
      const std::vector<std::pair<std::string, std::string>>& options,
      const std::function<void(const SentenceSink&)>& produce);

  // The executable that was started.
  const std::string& executable() const { return executable_; }

 private:
  // Sends a request and reads the reply; returns {ok, payload}. Throws if the worker is gone.
  std::pair<bool, std::string> call(uint32_t opcode, std::string_view payload);
  std::pair<bool, std::string> read_reply();
  [[noreturn]] void worker_lost(const char* doing);

  std::string executable_;
  int fd_ = -1;
  pid_t pid_ = -1;
};

// Where the worker executable is (see above); throws dape::Error listing the places tried.
std::string find_sentencepiece_worker();

}  // namespace dape::data
