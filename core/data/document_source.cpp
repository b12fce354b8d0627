#include "core/data/document_source.h"

#include "common/check.h"
#include "core/data/text_documents.h"

namespace dape::data {

namespace {

constexpr const char* kSupportedFormats = "supported: text (and auto, which picks text)";

// The format a file's name suggests, for --format auto: "jsonl", "megatron" or "text".
std::string format_of_name(const std::string& path) {
  auto ends = [&](std::string_view suffix) { return path.ends_with(suffix); };
  if (ends(".jsonl") || ends(".jsonl.zst") || ends(".json") || ends(".json.zst")) return "jsonl";
  if (ends(".idx") || ends(".bin")) return "megatron";
  return "text";
}

}  // namespace

std::unique_ptr<DocumentSource> open_documents(const std::vector<std::string>& inputs,
                                               const std::string& format) {
  if (format == "jsonl" || format == "megatron") {
    fail("input format '{}' is not available in this build yet; {}", format, kSupportedFormats);
  }
  if (format != "auto" && format != "text") {
    fail("unknown input format '{}'; {}", format, kSupportedFormats);
  }
  std::vector<std::string> files = list_input_files(inputs);
  if (format == "auto") {
    for (const auto& f : files) {
      const std::string guessed = format_of_name(f);
      if (guessed != "text") {
        fail(
            "input '{}' looks like {} (by its name), which this build cannot read yet; {}. Pass "
            "--format text to read it as plain text",
            f, guessed, kSupportedFormats);
      }
    }
  }
  return std::make_unique<TextFileDocuments>(std::move(files));
}

}  // namespace dape::data
