/*
 * Documents: where `prepare` gets its text from.
 *
 * A DocumentSource yields documents one at a time, in a fixed order, as views that stay valid
 * until the next call; the caller tokenizes each and moves on, so memory holds one document, not
 * the corpus. The number of documents is known before the first one is read, because the
 * train/validation split rule depends on it (prepare.h). Each input format is one small class
 * behind this interface: plain text now, Pile-style JSON lines and Megatron .bin/.idx later.
 */
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace dape::data {

struct Document {
  // The document's bytes; valid until the next call to DocumentSource::next.
  std::string_view text;
  // Where it came from (a file path), for messages.
  std::string origin;
};

class DocumentSource {
 public:
  virtual ~DocumentSource() = default;
  virtual int64_t document_count() const = 0;
  // Total input bytes, for progress and rates.
  virtual int64_t total_bytes() const = 0;
  // The next document, or false at the end.
  virtual bool next(Document& doc) = 0;
};

// Opens `inputs` (files or directories) as `format`: "text", or "auto" (by file extension).
// Formats that this build cannot read yet ("jsonl", "megatron", or such files met under "auto")
// are rejected with a message naming the file and what is supported. A missing input is an
// error naming it.
std::unique_ptr<DocumentSource> open_documents(const std::vector<std::string>& inputs,
                                               const std::string& format);

}  // namespace dape::data
