/*
 * Checksums for everything dape writes to disk (token shards, checkpoint shards): XXH64 from
 * Debian's libxxhash, fast enough to verify a multi-GB file at memory speed.
 */
#pragma once

#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace dape {

inline uint64_t xxh64(const void* data, size_t bytes, uint64_t seed = 0) {
  return XXH64(data, bytes, seed);
}

// Streaming form, for data written or read piece by piece.
class Xxh64Stream {
 public:
  explicit Xxh64Stream(uint64_t seed = 0) : state_(XXH64_createState()) {
    XXH64_reset(state_, seed);
  }
  ~Xxh64Stream() { XXH64_freeState(state_); }
  Xxh64Stream(const Xxh64Stream&) = delete;
  Xxh64Stream& operator=(const Xxh64Stream&) = delete;
  void update(const void* data, size_t bytes) { XXH64_update(state_, data, bytes); }
  uint64_t digest() const { return XXH64_digest(state_); }

 private:
  XXH64_state_t* state_;
};

// 16 lowercase hex digits.
std::string hex64(uint64_t v);

}  // namespace dape
