#include "core/data/sentencepiece_worker.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "common/check.h"
#include "core/data/sentencepiece_protocol.h"

extern char** environ;

namespace dape::data {

namespace proto = sentencepiece_protocol;
namespace fs = std::filesystem;

namespace {

constexpr const char* kExecutableName = "dape-sentencepiece";
// Sentence frames are gathered into writes of about this size.
constexpr size_t kTrainWriteBytes = size_t{1} << 20;

bool is_executable(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec) && ::access(path.c_str(), X_OK) == 0;
}

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("was killed by signal {}", WTERMSIG(status));
  return "stopped";
}

}  // namespace

std::string find_sentencepiece_worker() {
  std::vector<std::string> tried;
  if (const char* env = std::getenv("DAPE_SENTENCEPIECE_WORKER"); env && *env) {
    if (is_executable(env)) return env;
    fail(
        "DAPE_SENTENCEPIECE_WORKER='{}' is not an executable file (it should name the "
        "dape-sentencepiece program)",
        env);
  }
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (const fs::path& dir : {self.parent_path(), self.parent_path().parent_path()}) {
      const std::string candidate = (dir / kExecutableName).string();
      if (is_executable(candidate)) return candidate;
      tried.push_back(candidate);
    }
  }
#ifdef DAPE_SENTENCEPIECE_WORKER_PATH
  if (is_executable(DAPE_SENTENCEPIECE_WORKER_PATH)) return DAPE_SENTENCEPIECE_WORKER_PATH;
  tried.push_back(DAPE_SENTENCEPIECE_WORKER_PATH);
#endif
  std::string places;
  for (const auto& t : tried) places += (places.empty() ? "" : ", ") + t;
  fail(
      "the SentencePiece worker program '{}' was not found (looked at {}); build it with the "
      "rest of dape (target dape-sentencepiece), or name it with DAPE_SENTENCEPIECE_WORKER",
      kExecutableName, places);
}

SentencePieceWorker::SentencePieceWorker() : executable_(find_sentencepiece_worker()) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    fail("cannot create a socket for the SentencePiece worker: {}", std::strerror(errno));
  // The child's end must not already be the worker's descriptor number, or dup2 would be a no-op
  // that leaves close-on-exec set.
  const int child_end = ::fcntl(sv[1], F_DUPFD_CLOEXEC, proto::kWorkerFd + 1);
  ::close(sv[1]);
  if (child_end < 0) {
    ::close(sv[0]);
    fail("cannot set up the SentencePiece worker's socket: {}", std::strerror(errno));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, child_end, proto::kWorkerFd);
  // The library writes its log lines to stderr; stdout goes there too.
  posix_spawn_file_actions_adddup2(&actions, STDERR_FILENO, STDOUT_FILENO);
  char* argv[] = {const_cast<char*>(executable_.c_str()), nullptr};
  const int err = ::posix_spawn(&pid_, executable_.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(child_end);
  if (err != 0) {
    ::close(sv[0]);
    fail("cannot start the SentencePiece worker '{}': {}", executable_, std::strerror(err));
  }
  fd_ = sv[0];
}

SentencePieceWorker::~SentencePieceWorker() {
  if (fd_ >= 0) ::close(fd_);  // the worker sees the end of its input and exits
  if (pid_ > 0) {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
}

void SentencePieceWorker::worker_lost(const char* doing) {
  std::string how = "closed the connection";
  if (pid_ > 0) {
    int status = 0;
    if (::waitpid(pid_, &status, 0) == pid_) {
      how = describe_wait_status(status);
      pid_ = -1;
    }
  }
  fail("the SentencePiece worker '{}' {} while {}", executable_, how, doing);
}

std::pair<bool, std::string> SentencePieceWorker::read_reply() {
  uint32_t status = 0;
  std::string payload;
  if (!proto::read_frame(fd_, &status, &payload)) worker_lost("answering a request");
  return {status == proto::kOk, std::move(payload)};
}

std::pair<bool, std::string> SentencePieceWorker::call(uint32_t opcode, std::string_view payload) {
  if (!proto::write_frame(fd_, opcode, payload)) worker_lost("receiving a request");
  return read_reply();
}

std::string SentencePieceWorker::load(std::string_view model, LoadedModel* loaded) {
  auto [ok, reply] = call(proto::kLoad, model);
  if (!ok) return reply.empty() ? std::string("the model was refused") : reply;
  proto::PayloadReader in(reply);
  loaded->unk_id = in.pod<int32_t>();
  loaded->eos_id = in.pod<int32_t>();
  loaded->pieces = in.pod<int32_t>();
  DAPE_CHECK(in.ok() && in.at_end(), "malformed load reply from the SentencePiece worker");
  return "";
}

void SentencePieceWorker::encode(std::span<const std::string_view> texts,
                                 std::vector<std::vector<int32_t>>& ids) {
  std::string request;
  proto::append_pod<uint32_t>(request, static_cast<uint32_t>(texts.size()));
  for (std::string_view t : texts) {
    if (t.size() >= proto::kEndOfSentences)
      fail(
          "a text of {} bytes is too long to encode with SentencePiece in one piece (the limit "
          "is 4 GiB)",
          t.size());
    proto::append_pod<uint32_t>(request, static_cast<uint32_t>(t.size()));
    request.append(t);
  }
  auto [ok, reply] = call(proto::kEncode, request);
  if (!ok) fail("SentencePiece could not encode: {}", reply);
  proto::PayloadReader in(reply);
  ids.resize(texts.size());
  for (auto& v : ids) {
    v.resize(in.pod<uint32_t>());
    for (auto& id : v) id = in.pod<int32_t>();
  }
  DAPE_CHECK(in.ok() && in.at_end(), "malformed encode reply from the SentencePiece worker");
}

std::string SentencePieceWorker::decode(std::span<const int32_t> ids) {
  std::string request;
  proto::append_pod<uint32_t>(request, static_cast<uint32_t>(ids.size()));
  for (int32_t id : ids) proto::append_pod<int32_t>(request, id);
  auto [ok, reply] = call(proto::kDecode, request);
  if (!ok) fail("SentencePiece could not decode: {}", reply);
  return reply;
}

std::pair<bool, std::string> SentencePieceWorker::train(
    const std::vector<std::pair<std::string, std::string>>& options,
    const std::function<void(const SentenceSink&)>& produce) {
  std::string request;
  for (const auto& [key, value] : options) {
    DAPE_CHECK(key.find_first_of("=\n") == std::string::npos && value.find('\n') == value.npos,
               "trainer option {}={} cannot be sent", key, value);
    request += key + "=" + value + "\n";
  }
  if (!proto::write_frame(fd_, proto::kTrain, request)) worker_lost("receiving a request");
  std::string buffer;
  auto flush = [&] {
    if (!proto::write_all(fd_, buffer.data(), buffer.size())) worker_lost("reading sentences");
    buffer.clear();
  };
  produce([&](std::string_view sentence) {
    DAPE_CHECK(sentence.size() < proto::kEndOfSentences, "sentence of {} bytes", sentence.size());
    proto::append_pod<uint32_t>(buffer, static_cast<uint32_t>(sentence.size()));
    buffer += sentence;
    if (buffer.size() >= kTrainWriteBytes) flush();
  });
  proto::append_pod<uint32_t>(buffer, proto::kEndOfSentences);
  flush();
  return read_reply();
}

}  // namespace dape::data
