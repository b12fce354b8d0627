// dape-sentencepiece: the process that runs libsentencepiece for dape, which cannot load it itself
// (the library's own protobuf copy clashes with the system's; core/data/sentencepiece_protocol.h
// says why and defines the messages). It serves requests on file descriptor 3 until the other end
// closes it. Not meant to be run by hand.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/data/sentencepiece_protocol.h"

namespace proto = dape::data::sentencepiece_protocol;

namespace {

// Training has no random step with our options (the whole sample is used, unshuffled), but the
// library's generator is seeded anyway so that no option can make a run depend on the clock.
constexpr unsigned int kTrainingSeed = 1;

// The sentences of a kTrain request, read from the socket as the trainer asks for them.
class SocketSentences final : public sentencepiece::SentenceIterator {
 public:
  explicit SocketSentences(int fd) : fd_(fd) { fetch(); }
  bool done() const override { return done_; }
  void Next() override { fetch(); }
  const std::string& value() const override { return current_; }
  sentencepiece::util::Status status() const override {
    if (lost_) return {sentencepiece::util::StatusCode::kDataLoss, "the sentence stream broke off"};
    return {};
  }
  // Reads the frames the trainer left unread (it stops early on a bad option).
  void drain() {
    while (!done_) fetch();
  }
  bool lost() const { return lost_; }

 private:
  void fetch() {
    uint32_t n = 0;
    if (!proto::read_all(fd_, &n, sizeof n)) {
      lost_ = done_ = true;
      return;
    }
    if (n == proto::kEndOfSentences) {
      done_ = true;
      return;
    }
    current_.resize(n);
    if (!proto::read_all(fd_, current_.data(), n)) lost_ = done_ = true;
  }

  int fd_;
  std::string current_;
  bool done_ = false, lost_ = false;
};

bool reply(int fd, const sentencepiece::util::Status& status, const std::string& result) {
  if (status.ok()) return proto::write_frame(fd, proto::kOk, result);
  return proto::write_frame(fd, proto::kFailed, status.ToString());
}

bool failed(int fd, const std::string& message) {
  return proto::write_frame(fd, proto::kFailed, message);
}

bool load(int fd, sentencepiece::SentencePieceProcessor& sp, const std::string& model) {
  const auto status = sp.LoadFromSerializedProto(model);
  std::string result;
  if (status.ok()) {
    proto::append_pod<int32_t>(result, sp.unk_id());
    proto::append_pod<int32_t>(result, sp.eos_id());
    proto::append_pod<int32_t>(result, sp.GetPieceSize());
  }
  return reply(fd, status, result);
}

bool encode(int fd, const sentencepiece::SentencePieceProcessor& sp, const std::string& payload) {
  proto::PayloadReader in(payload);
  const uint32_t n = in.pod<uint32_t>();
  std::string result;
  std::vector<int> ids;
  for (uint32_t i = 0; i < n && in.ok(); ++i) {
    const std::string_view text = in.bytes(in.pod<uint32_t>());
    const auto status = sp.Encode(text, &ids);
    if (!status.ok()) return reply(fd, status, "");
    proto::append_pod<uint32_t>(result, static_cast<uint32_t>(ids.size()));
    result.append(reinterpret_cast<const char*>(ids.data()), ids.size() * sizeof(int));
  }
  if (!in.ok() || !in.at_end()) return failed(fd, "malformed encode request");
  return proto::write_frame(fd, proto::kOk, result);
}

bool decode(int fd, const sentencepiece::SentencePieceProcessor& sp, const std::string& payload) {
  proto::PayloadReader in(payload);
  std::vector<int> ids(in.pod<uint32_t>());
  for (int& id : ids) id = in.pod<int32_t>();
  if (!in.ok() || !in.at_end()) return failed(fd, "malformed decode request");
  std::string text;
  const auto status = sp.Decode(ids, &text);
  return reply(fd, status, text);
}

bool train(int fd, const std::string& options) {
  std::unordered_map<std::string, std::string> kwargs;
  size_t at = 0;
  while (at < options.size()) {
    size_t end = options.find('\n', at);
    if (end == std::string::npos) end = options.size();
    const std::string line = options.substr(at, end - at);
    const size_t eq = line.find('=');
    if (eq != std::string::npos) kwargs[line.substr(0, eq)] = line.substr(eq + 1);
    at = end + 1;
  }
  SocketSentences sentences(fd);
  sentencepiece::SetRandomGeneratorSeed(kTrainingSeed);
  std::string model;
  const auto status = sentencepiece::SentencePieceTrainer::Train(kwargs, &sentences, &model);
  sentences.drain();
  if (sentences.lost()) return false;
  return reply(fd, status, model);
}

}  // namespace

int main() {
  const int fd = proto::kWorkerFd;
  sentencepiece::SentencePieceProcessor sp;
  uint32_t opcode = 0;
  std::string payload;
  // Until dape closes its end (or a write fails because it went away).
  while (proto::read_frame(fd, &opcode, &payload)) {
    bool ok = false;
    switch (opcode) {
      case proto::kLoad:
        ok = load(fd, sp, payload);
        break;
      case proto::kEncode:
        ok = encode(fd, sp, payload);
        break;
      case proto::kDecode:
        ok = decode(fd, sp, payload);
        break;
      case proto::kTrain:
        ok = train(fd, payload);
        break;
      default:
        ok = failed(fd, "unknown request " + std::to_string(opcode));
    }
    if (!ok) break;
  }
  std::fflush(stderr);
  // No exit-time destructors or leak reports of the library's static state: nothing is left to
  // save, and the parent only waits for the process to end.
  _exit(0);
}
