/*
 * The wire format between dape and its SentencePiece worker process, dape-sentencepiece.
 *
 * Why a separate process: Debian's libsentencepiece (0.1.97) is built with its own copy of
 * protobuf 3.14 and exports that copy's symbols. A process that also loads the system's
 * libprotobuf (3.21, which dape uses for configs, manifests and checkpoints) binds one library's
 * calls into the other's copy and dies at start-up: a protobuf version-check abort or a segfault,
 * depending on the link order (measured with both orders). So the library runs in a small worker
 * that links nothing else, and dape talks to it over a Unix socket (sentencepiece_worker.h).
 * Only what needs the library crosses: training (sentences in, the model out), and the encoding
 * of words the tokenizer's cache has not seen yet (sentencepiece_tokenizer.h), so the traffic is
 * small next to the text.
 *
 * A request is a u32 opcode, a u64 payload length and the payload; a reply is a u32 status
 * (kOk or kFailed), a u64 length and the payload (the result, or the library's error message).
 * Integers are in host byte order: both ends run on one machine. Payloads:
 *
 *   kLoad    serialized model                 -> i32 unk id, i32 eos id, i32 piece count
 *   kEncode  u32 n, n × (u32 bytes, text)     -> n × (u32 count, count × i32 id)
 *   kDecode  u32 n, n × i32 id                -> text (SentencePiece's own decoding)
 *   kTrain   "key=value\n" trainer options    -> serialized model
 *            then sentence frames (u32 bytes, text), ended by kEndOfSentences
 *
 * The worker reads every sentence frame up to kEndOfSentences even when training fails early, so
 * the sender never blocks on a full socket.
 *
 * Header-only and free of dape's libraries, because the worker includes it too.
 */
#pragma once

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace dape::data::sentencepiece_protocol {

enum Opcode : uint32_t { kLoad = 1, kEncode = 2, kDecode = 3, kTrain = 4 };
enum Status : uint32_t { kOk = 0, kFailed = 1 };
inline constexpr uint32_t kEndOfSentences = 0xffffffffu;
// The worker's end of the socket, as the worker sees it.
inline constexpr int kWorkerFd = 3;

// Writes all `n` bytes (no SIGPIPE when the other end is gone); false on failure.
inline bool write_all(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Reads exactly `n` bytes; false at end of stream or on failure.
inline bool read_all(int fd, void* data, size_t n) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    const ssize_t r = ::read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

template <class T>
void append_pod(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

// A request or reply: header and payload.
inline bool write_frame(int fd, uint32_t code, std::string_view payload) {
  std::string header;
  append_pod<uint32_t>(header, code);
  append_pod<uint64_t>(header, payload.size());
  return write_all(fd, header.data(), header.size()) &&
         write_all(fd, payload.data(), payload.size());
}

inline bool read_frame(int fd, uint32_t* code, std::string* payload) {
  uint64_t size = 0;
  if (!read_all(fd, code, sizeof *code) || !read_all(fd, &size, sizeof size)) return false;
  payload->resize(size);
  return read_all(fd, payload->data(), size);
}

// Reads values from a payload front to back; `ok()` turns false on a short payload.
class PayloadReader {
 public:
  explicit PayloadReader(std::string_view payload) : rest_(payload) {}
  template <class T>
  T pod() {
    T v{};
    if (rest_.size() < sizeof v) {
      ok_ = false;
      rest_ = {};
      return v;
    }
    std::memcpy(&v, rest_.data(), sizeof v);
    rest_.remove_prefix(sizeof v);
    return v;
  }
  std::string_view bytes(size_t n) {
    if (rest_.size() < n) {
      ok_ = false;
      rest_ = {};
      return {};
    }
    std::string_view v = rest_.substr(0, n);
    rest_.remove_prefix(n);
    return v;
  }
  bool ok() const { return ok_; }
  bool at_end() const { return rest_.empty(); }

 private:
  std::string_view rest_;
  bool ok_ = true;
};

}  // namespace dape::data::sentencepiece_protocol
