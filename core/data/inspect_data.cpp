#include "core/data/inspect_data.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/file_util.h"
#include "core/data/byte_tokenizer.h"
#include "core/data/dataset_manifest.h"
#include "core/data/token_shard.h"
#include "core/data/tokenizer.h"

namespace dape::data {

namespace {

constexpr int64_t kShownIds = 16;
constexpr int64_t kDecodedTokens = 200;
constexpr int64_t kScanWindow = int64_t{1} << 20;

// Problems found while building a report; the report is thrown with them at the end.
struct Problems {
  std::vector<std::string> list;
  void add(std::string p) { list.push_back(std::move(p)); }
  void throw_if_any(std::string report) const {
    if (list.empty()) return;
    std::string summary = fmt::format("{} problem{} found: {}", list.size(),
                                      list.size() == 1 ? "" : "s", list.front());
    throw InspectFailure(std::move(report), summary);
  }
};

// Printable ASCII as is, other control bytes escaped, everything on one line.
std::string escape_text(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    switch (c) {
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out += fmt::format("\\x{:02x}", c);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  return out;
}

// The first ids of a shard, and their text when a tokenizer is at hand.
std::string first_tokens(const TokenShardReader& r, const TextTokenizer* tokenizer,
                         std::string indent) {
  std::string out;
  const int64_t n = std::min<int64_t>(r.size(), kDecodedTokens);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  r.read(0, n, ids.data());
  std::string shown;
  for (int64_t i = 0; i < std::min(n, kShownIds); ++i) shown += fmt::format(" {}", ids[i]);
  out += fmt::format("{}first ids      :{}{}\n", indent, shown, n > kShownIds ? " …" : "");
  if (tokenizer) {
    const std::string text = tokenizer->decode(ids, /*show_eod=*/true);
    out += fmt::format("{}decoded ({}) : \"{}\"{}\n", indent, tokenizer->kind(), escape_text(text),
                       r.size() > n ? " …" : "");
  }
  return out;
}

// Reads every id (which range-checks it); returns an error message or "".
std::string scan_ids(const TokenShardReader& r) {
  std::vector<int32_t> window(static_cast<size_t>(std::min(kScanWindow, r.size())));
  try {
    for (int64_t at = 0; at < r.size(); at += kScanWindow) {
      r.read(at, std::min(kScanWindow, r.size() - at), window.data());
    }
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

std::string inspect_token_shard(const std::string& path, bool verify) {
  Problems problems;
  MappedFile file(path);
  const TokenShardHeader h = decode_token_shard_header(file.data(), file.size(), path);
  std::string out = fmt::format("token shard {}\n", path);
  out += fmt::format("  file size      : {} bytes\n", file.size());
  out += fmt::format("  format         : DAPETOK1 version {}\n", h.version);
  out += fmt::format("  dtype          : {} (code {})\n", token_dtype_name(h.dtype),
                     static_cast<uint32_t>(h.dtype));
  out += fmt::format("  vocab size     : {}{}\n", h.vocab_size,
                     h.vocab_size == ByteTokenizer::kVocabSize ? " (byte tokenizer)" : "");
  out += fmt::format("  tokens         : {}\n", h.token_count);
  file = MappedFile();
  TokenShardReader reader;
  try {
    reader = TokenShardReader(path);
  } catch (const Error& e) {
    out += fmt::format("  ERROR          : {}\n", e.what());
    problems.add(e.what());
    problems.throw_if_any(out);
  }
  if (verify) {
    const uint64_t computed = reader.compute_checksum();
    const bool ok = computed == h.payload_xxh64;
    out += fmt::format("  xxh64          : stored {}, computed {} {}\n", hex64(h.payload_xxh64),
                       hex64(computed), ok ? "OK" : "MISMATCH");
    if (!ok) {
      problems.add(fmt::format("token shard '{}': checksum MISMATCH: stored {}, computed {}", path,
                               hex64(h.payload_xxh64), hex64(computed)));
    }
    const std::string bad_id = scan_ids(reader);
    out += fmt::format("  token ids      : {}\n",
                       bad_id.empty() ? "all inside the vocabulary OK" : "ERROR: " + bad_id);
    if (!bad_id.empty()) problems.add(bad_id);
  } else {
    out += fmt::format("  xxh64          : stored {} (not verified)\n", hex64(h.payload_xxh64));
  }
  // A lone shard names no tokenizer; its vocabulary size shows when it is the byte tokenizer's.
  const ByteTokenizer bytes;
  try {
    out += first_tokens(reader, h.vocab_size == ByteTokenizer::kVocabSize ? &bytes : nullptr, "  ");
  } catch (const Error& e) {
    out += fmt::format("  first ids      : ERROR: {}\n", e.what());
    problems.add(e.what());
  }
  problems.throw_if_any(out);
  return out;
}

std::string inspect_dataset(const std::string& dir, bool verify) {
  Problems problems;
  const Dataset m = load_manifest(dir);
  const std::string mpath = manifest_path(dir);
  std::string out = fmt::format("dataset {}\n", dir);
  out += fmt::format("  manifest       : {} (version {})\n", mpath, m.version());
  try {
    validate_manifest(m, mpath);
  } catch (const Error& e) {
    out += fmt::format("  ERROR          : {}\n", e.what());
    problems.add(e.what());
  }
  out += fmt::format("  tokenizer      : {} (end of document {})\n", describe_manifest_tokenizer(m),
                     m.tokenizer().eod_id());
  // The dataset's tokenizer, to show the start of the training stream as text.
  std::unique_ptr<TextTokenizer> tokenizer;
  try {
    tokenizer = tokenizer_from_manifest(m, dir);
  } catch (const Error& e) {
    out += fmt::format("  ERROR          : {}\n", e.what());
    problems.add(e.what());
  }
  out += fmt::format("  vocab size     : {}\n", m.vocab_size());
  for (const auto& s : m.sources()) out += fmt::format("  source         : {}\n", s);
  if (m.has_val_fraction()) out += fmt::format("  val fraction   : {}\n", m.val_fraction());
  if (m.has_train_unigram_entropy()) {
    out += fmt::format("  train unigram entropy: {:.4f} nats = {:.4f} bits per token\n",
                       m.train_unigram_entropy(), m.train_unigram_entropy() / std::log(2.0));
  }
  // The first train shard, kept open to show the start of the training stream.
  TokenShardReader first_train_shard;
  bool have_first_train_shard = false;
  auto report_split = [&](const Split& split, const char* name) {
    out +=
        fmt::format("  split {:<10}: {} tokens, {} documents, {} shard{}\n", name, split.tokens(),
                    split.documents(), split.shards_size(), split.shards_size() == 1 ? "" : "s");
    for (int i = 0; i < split.shards_size(); ++i) {
      const Shard& s = split.shards(i);
      std::string line =
          fmt::format("    {:<20} {:>12} tokens  xxh64 {}", s.file(), s.tokens(), hex64(s.xxh64()));
      const std::string path = join_path(dir, s.file());
      std::vector<std::string> findings;
      if (!path_exists(path)) {
        findings.push_back(fmt::format("dataset '{}': shard '{}' is MISSING", dir, s.file()));
        line += "  MISSING";
      } else {
        try {
          TokenShardReader r(path);
          if (r.size() != s.tokens()) {
            findings.push_back(
                fmt::format("dataset '{}': shard '{}' header has {} tokens, manifest "
                            "{}",
                            dir, s.file(), r.size(), s.tokens()));
          }
          if (r.stored_checksum() != s.xxh64()) {
            findings.push_back(
                fmt::format("dataset '{}': shard '{}' header checksum {}, manifest {}", dir,
                            s.file(), hex64(r.stored_checksum()), hex64(s.xxh64())));
          }
          if (r.vocab_size() != m.vocab_size()) {
            findings.push_back(fmt::format("dataset '{}': shard '{}' vocabulary {}, manifest {}",
                                           dir, s.file(), r.vocab_size(), m.vocab_size()));
          }
          if (verify) {
            const uint64_t computed = r.compute_checksum();
            if (computed != r.stored_checksum()) {
              findings.push_back(
                  fmt::format("dataset '{}': shard '{}' checksum MISMATCH: stored {}, "
                              "computed {}",
                              dir, s.file(), hex64(r.stored_checksum()), hex64(computed)));
            }
            const std::string bad_id = scan_ids(r);
            if (!bad_id.empty()) findings.push_back(bad_id);
          }
          line += findings.empty() ? (verify ? "  OK (verified)" : "  OK (header)") : "  MISMATCH";
          if (&split == &m.train() && i == 0) {
            first_train_shard = std::move(r);
            have_first_train_shard = true;
          }
        } catch (const Error& e) {
          findings.push_back(e.what());
          line += "  ERROR";
        }
      }
      out += line + "\n";
      for (const auto& finding : findings) {
        out += fmt::format("      {}\n", finding);
        problems.add(finding);
      }
    }
  };
  report_split(m.train(), "train");
  report_split(m.validation(), "validation");
  if (have_first_train_shard && first_train_shard.size() > 0) {
    try {
      out += "  start of the train split:\n" +
             first_tokens(first_train_shard, tokenizer.get(), "    ");
    } catch (const Error& e) {
      out += fmt::format("    ERROR: {}\n", e.what());
      problems.add(e.what());
    }
  }
  problems.throw_if_any(out);
  return out;
}

}  // namespace dape::data
