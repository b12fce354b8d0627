#include "core/data/inspect_data.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <vector>

#include "common/checksum.h"
#include "common/file_util.h"
#include "core/data/byte_tokenizer.h"
#include "core/data/dataset_manifest.h"
#include "core/data/megatron_dataset.h"
#include "core/data/token_shard.h"
#include "core/data/tokenizer.h"

namespace dape::data {

namespace {

// Tokens read at a time for the stream digest.
constexpr int64_t kStreamChunk = int64_t{1} << 20;

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
    // With verify: a digest of the split's whole token stream (ids as int32, shards in manifest
    // order), which does not depend on how the stream is cut into shards, so datasets prepared
    // by different numbers of ranks can be compared by it.
    Xxh64Stream stream;
    int64_t streamed = 0;
    bool stream_complete = verify;
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
            std::vector<int32_t> chunk;
            for (int64_t at = 0; at < r.size(); at += kStreamChunk) {
              const int64_t n = std::min(kStreamChunk, r.size() - at);
              chunk.resize(static_cast<size_t>(n));
              r.read(at, n, chunk.data());
              stream.update(chunk.data(), chunk.size() * sizeof(int32_t));
              streamed += n;
            }
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
      if (!findings.empty()) stream_complete = false;
    }
    if (stream_complete) {
      out += fmt::format("    stream xxh64 {} over {} tokens (ids as int32, in manifest order)\n",
                         hex64(stream.digest()), streamed);
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

std::string inspect_megatron(const std::string& path, bool verify, int64_t vocab) {
  Problems problems;
  const auto paths = find_megatron_dataset(path);
  if (!paths) fail("'{}' is not a Megatron dataset (a .idx/.bin file or their prefix)", path);
  if (!path_exists(paths->idx)) fail("Megatron index '{}' does not exist", paths->idx);
  // Header and length only: the entries are checked below, as findings rather than a throw.
  MegatronIndex index(paths->idx, /*check_entries=*/false);
  std::string out = fmt::format("Megatron dataset {}\n", paths->prefix);
  out += fmt::format("  index          : {} ({} bytes, MMIDIDX version {})\n", paths->idx,
                     index.file_bytes(), index.version());
  out += fmt::format("  dtype          : {} (code {}, {} byte{} per token)\n",
                     megatron_dtype_name(index.dtype()), static_cast<int>(index.dtype()),
                     index.itemsize(), index.itemsize() == 1 ? "" : "s");
  out += fmt::format("  sequences      : {}\n", index.sequences());
  out += fmt::format("  documents      : {} ({} doc_idx entries)\n", index.documents(),
                     index.doc_idx_entries());
  int64_t tokens = 0, min_size = 0, max_size = 0;
  for (int64_t i = 0; i < index.sequences(); ++i) {
    const int64_t s = index.size(i);
    tokens += s;
    min_size = i == 0 ? s : std::min(min_size, s);
    max_size = i == 0 ? s : std::max(max_size, s);
  }
  out += fmt::format("  tokens         : {}\n", tokens);
  if (index.sequences() > 0) {
    out += fmt::format("  sequence sizes : min {}, max {}, mean {:.1f} tokens\n", min_size,
                       max_size, static_cast<double>(tokens) / index.sequences());
  }
  const bool have_bin = path_exists(paths->bin);
  if (!have_bin) {
    const std::string p = fmt::format("Megatron data '{}' does not exist", paths->bin);
    out += fmt::format("  data           : {} MISSING\n", paths->bin);
    problems.add(p);
  }
  if (!verify) {
    if (have_bin) {
      out += fmt::format("  data           : {} ({} bytes; not verified)\n", paths->bin,
                         std::filesystem::file_size(paths->bin));
    }
    problems.throw_if_any(out);
    return out;
  }
  auto check = [&](const char* label, const std::function<std::string()>& f) {
    try {
      out += fmt::format("  {:<15}: {}\n", label, f());
      return true;
    } catch (const Error& e) {
      out += fmt::format("  {:<15}: ERROR: {}\n", label, e.what());
      problems.add(e.what());
      return false;
    }
  };
  const bool pointers_ok = check("pointers", [&] {
    index.check_sizes_and_pointers();
    return fmt::format("all {} consistent with the sizes OK", index.sequences());
  });
  check("doc_idx", [&] {
    index.check_doc_idx();
    return std::string("starts at 0, in order, ends at the last sequence OK");
  });
  if (!have_bin || !pointers_ok) {
    problems.throw_if_any(out);
    return out;
  }
  std::unique_ptr<MegatronDataset> data;
  if (!check("data", [&] {
        data = std::make_unique<MegatronDataset>(paths->idx);
        return fmt::format("{} ({} bytes = {} tokens × {}) OK", paths->bin,
                           data->tokens() * static_cast<int64_t>(index.itemsize()), data->tokens(),
                           index.itemsize());
      })) {
    problems.throw_if_any(out);
    return out;
  }
  if (data->tokens() > 0) {
    int64_t lo = 0, hi = 0;
    for (int64_t at = 0; at < data->tokens(); at += kScanWindow) {
      const auto [a, b] = data->id_range(at, std::min(kScanWindow, data->tokens() - at));
      lo = at == 0 ? a : std::min(lo, a);
      hi = at == 0 ? b : std::max(hi, b);
    }
    std::string ids = fmt::format("min {}, max {}", lo, hi);
    if (vocab > 0) {
      const bool inside = lo >= 0 && hi < vocab;
      ids += inside ? fmt::format(", all inside the vocabulary [0, {}) OK", vocab)
                    : fmt::format(", OUTSIDE the vocabulary [0, {})", vocab);
      if (!inside) {
        // The first offending id, with its offset and sequence, from the checked read.
        std::vector<int32_t> window(static_cast<size_t>(std::min(kScanWindow, data->tokens())));
        try {
          for (int64_t at = 0; at < data->tokens(); at += kScanWindow) {
            data->read(at, std::min(kScanWindow, data->tokens() - at), window.data(), vocab);
          }
        } catch (const Error& e) {
          problems.add(e.what());
        }
      }
    } else {
      ids += " (pass --vocab N to check them against a vocabulary)";
    }
    out += fmt::format("  token ids      : {}\n", ids);
    const int64_t n = std::min<int64_t>(data->tokens(), kShownIds);
    std::vector<int32_t> first(static_cast<size_t>(n));
    std::string shown;
    if (lo >= 0 && hi < std::numeric_limits<int32_t>::max()) {
      data->read(0, n, first.data(), std::numeric_limits<int32_t>::max());
      for (int32_t id : first) shown += fmt::format(" {}", id);
      out += fmt::format("  first ids      :{}{}\n", shown, data->tokens() > n ? " …" : "");
    }
  }
  problems.throw_if_any(out);
  return out;
}

}  // namespace dape::data
