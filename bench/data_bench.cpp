/*
 * Data pipeline figures: how fast `prepare` tokenizes and writes, how fast JSON lines (plain and
 * .jsonl.zst) are counted, parsed and prepared, how fast a TokenStream serves read windows from
 * token shards and from Megatron .bin data (and what the per-read token-id range check costs
 * against a bare copy), how fast checksums verify, and how long the sample order and a training
 * batch take.
 *
 *   build/bench/data_bench [MEGABYTES=64]
 *
 * Works in a scratch directory under $TMPDIR (or /tmp), removed at the end. Prints figures; never
 * passes or fails on time. Each timing is the best of three runs.
 */
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <zstd.h>
#include "common/file_util.h"
#include "common/rng.h"

#include "core/data/dataset.h"
#include "core/data/document_source.h"
#include "core/data/megatron_dataset.h"
#include "core/data/prepare.h"
#include "core/data/sample_order.h"
#include "core/data/train_batch_source.h"

using namespace dape;
using namespace dape::data;

namespace {

template <class F>
double best_seconds(F&& f, int runs = 3) {
  double best = 1e30;
  for (int r = 0; r < runs; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

// Something text-like: words of lowercase letters, spaces and newlines.
std::string synthetic_text(size_t bytes, uint64_t seed) {
  Rng r(seed, 1);
  std::string s;
  s.reserve(bytes);
  while (s.size() < bytes) {
    const auto len = 1 + r.below(9);
    for (uint64_t i = 0; i < len; ++i) s.push_back(static_cast<char>('a' + r.below(26)));
    s.push_back(r.below(12) == 0 ? '\n' : ' ');
  }
  s.resize(bytes);
  return s;
}

void write_string(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// `text` as JSON lines of about `line_bytes` of text each (a Pile-like record with a meta field).
std::string as_json_lines(const std::string& text, size_t line_bytes) {
  std::string out;
  for (size_t at = 0; at < text.size(); at += line_bytes) {
    out += "{\"text\": \"";
    for (char c : text.substr(at, line_bytes))
      out += c == '\n' ? std::string("\\n") : std::string(1, c);
    out += "\", \"meta\": {\"pile_set_name\": \"Pile-CC\"}}\n";
  }
  return out;
}

// zstd at level 3 in frames of 8 MB (as `zstd -T0` writes them).
std::string zstd_compress(const std::string& bytes) {
  constexpr size_t kFrame = size_t{8} << 20;
  std::string out;
  for (size_t at = 0; at < bytes.size(); at += kFrame) {
    const size_t n = std::min(kFrame, bytes.size() - at);
    std::string frame(ZSTD_compressBound(n), '\0');
    frame.resize(ZSTD_compress(frame.data(), frame.size(), bytes.data() + at, n, 3));
    out += frame;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t megabytes = argc > 1 ? std::atoll(argv[1]) : 64;
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = std::string(tmp ? tmp : "/tmp") + "/dape_data_bench_XXXXXX";
  if (!::mkdtemp(pattern.data())) {
    std::perror("mkdtemp");
    return 1;
  }
  const std::string dir = pattern;
  std::printf("data_bench: %lld MB of text in %s\n", static_cast<long long>(megabytes),
              dir.c_str());

  // ---- prepare: 8 documents of megabytes/8 each ---------------------------------------------
  const size_t doc_bytes = static_cast<size_t>(megabytes) * 1000000 / 8;
  std::filesystem::create_directories(dir + "/in");
  for (int d = 0; d < 8; ++d) {
    std::ofstream f(dir + "/in/" + std::to_string(d) + ".txt", std::ios::binary);
    const std::string t = synthetic_text(doc_bytes, static_cast<uint64_t>(d));
    f.write(t.data(), static_cast<std::streamsize>(t.size()));
  }
  PrepareOptions opt;
  opt.inputs = {dir + "/in"};
  opt.out_dir = dir + "/ds";
  opt.val_fraction = 0.01;
  opt.shard_tokens = int64_t{1} << 24;
  opt.show_progress = false;
  PrepareSummary summary;
  const double t_prepare = best_seconds([&] { summary = prepare_dataset(opt); });
  const double total_tokens = static_cast<double>(summary.train_tokens + summary.validation_tokens);
  std::printf(
      "prepare (byte, text)      : %8.1f MB/s input, %8.1f M tokens/s (%.3f s for %.0f tokens)\n",
      summary.input_bytes / t_prepare / 1e6, total_tokens / t_prepare / 1e6, t_prepare,
      total_tokens);

  // ---- JSON lines: the same text as 4 kB records, plain and zstd ------------------------------
  {
    std::string text;
    for (int d = 0; d < 8; ++d) text += synthetic_text(doc_bytes, static_cast<uint64_t>(d));
    const std::string jsonl = as_json_lines(text, 4096);
    text.clear();
    write_string(dir + "/c.jsonl", jsonl);
    const std::string packed = zstd_compress(jsonl);
    write_string(dir + "/c.jsonl.zst", packed);
    std::printf("json lines                : %.1f MB as %lld records, %.1f MB as .jsonl.zst\n",
                jsonl.size() / 1e6,
                static_cast<long long>(std::count(jsonl.begin(), jsonl.end(), '\n')),
                packed.size() / 1e6);
    for (const char* name : {"c.jsonl", "c.jsonl.zst"}) {
      const std::string path = dir + "/" + name;
      const double t_count = best_seconds([&] { open_documents({path}, "auto"); });
      int64_t records = 0;
      const double t_read = best_seconds([&] {
        auto src = open_documents({path}, "auto");
        Document doc;
        records = 0;
        while (src->next(doc)) ++records;
      });
      PrepareOptions jopt = opt;
      jopt.inputs = {path};
      jopt.out_dir = dir + "/ds_jsonl";
      const double t_prep = best_seconds([&] { prepare_dataset(jopt); });
      std::printf(
          "%-12s count lines  : %8.1f MB/s; open + parse every record: %8.1f MB/s; prepare: "
          "%8.1f MB/s%s\n",
          name, jsonl.size() / t_count / 1e6, jsonl.size() / t_read / 1e6,
          jsonl.size() / t_prep / 1e6, records == 0 ? " (no records?)" : "");
    }
    std::filesystem::remove_all(dir + "/ds_jsonl");
  }

  TokenDataset ds(opt.out_dir, {.verify_checksums = false, .show_progress = false});
  const TokenStream& train = ds.train();

  // ---- checksum verification ------------------------------------------------------------------
  const double t_verify = best_seconds(
      [&] { TokenDataset v(opt.out_dir, {.verify_checksums = true, .show_progress = false}); });
  std::printf("verify checksums          : %8.2f GB/s of payload\n",
              2.0 * total_tokens / t_verify / 1e9);

  // ---- sequential reads: range-checked read() against a bare uint16 -> int32 conversion ------
  // Both over the first shard, so neither crosses a shard boundary.
  const TokenShardReader& s0 = train.shard(0);
  const MappedFile raw(s0.path());
  const auto* payload = reinterpret_cast<const uint16_t*>(raw.data() + kTokenShardHeaderBytes);
  const int64_t n0 = s0.size();
  for (int64_t window : {int64_t{513}, int64_t{8193}, int64_t{1} << 20}) {
    std::vector<int32_t> out(static_cast<size_t>(window));
    int64_t sink = 0;
    const int64_t covered = n0 / window * window;
    const double t_read = best_seconds([&] {
      for (int64_t at = 0; at + window <= n0; at += window) {
        s0.read(at, window, out.data());
        sink += out[static_cast<size_t>(at % window)];
      }
    });
    const double t_copy = best_seconds([&] {
      for (int64_t at = 0; at + window <= n0; at += window) {
        const uint16_t* src = payload + at;
        for (int64_t i = 0; i < window; ++i) out[static_cast<size_t>(i)] = src[i];
        sink += out[static_cast<size_t>(at % window)];
      }
    });
    std::printf(
        "read %7lld-token windows : %8.2f G tokens/s checked, %8.2f G tokens/s unchecked "
        "conversion%s\n",
        static_cast<long long>(window), covered / t_read / 1e9, covered / t_copy / 1e9,
        sink == 42 ? " " : "");
  }

  // ---- the same tokens as Megatron data: read windows and a verifying open -------------------
  {
    MegatronDatasetWriter w(dir + "/mg", MegatronDtype::kUint16);
    std::vector<int32_t> tokens(static_cast<size_t>(n0));
    s0.read(0, n0, tokens.data());
    // Documents of about 4k tokens, one sequence each.
    for (int64_t at = 0; at < n0; at += 4096) {
      w.add_document(std::span<const int32_t>(tokens).subspan(
          static_cast<size_t>(at), static_cast<size_t>(std::min<int64_t>(4096, n0 - at))));
    }
    w.finish();
    DatasetOpenOptions mopt{.verify_checksums = false,
                            .show_progress = false,
                            .vocab_size = 257,
                            .validation_path = "",
                            .val_fraction = 0.01};
    TokenDataset mg(dir + "/mg.idx", mopt);
    const TokenStream& mtrain = mg.train();
    for (int64_t window : {int64_t{513}, int64_t{8193}}) {
      std::vector<int32_t> out(static_cast<size_t>(window));
      int64_t sink = 0;
      const int64_t covered = mtrain.size() / window * window;
      const double t_read = best_seconds([&] {
        for (int64_t at = 0; at + window <= mtrain.size(); at += window) {
          mtrain.read(at, window, out.data());
          sink += out[static_cast<size_t>(at % window)];
        }
      });
      std::printf(
          "megatron %5lld-token reads : %8.2f G tokens/s checked (%lld documents held "
          "out)%s\n",
          static_cast<long long>(window), covered / t_read / 1e9,
          static_cast<long long>(mg.manifest().validation().documents()), sink == 42 ? " " : "");
    }
    mopt.verify_checksums = true;
    const double t_open = best_seconds([&] { TokenDataset v(dir + "/mg.idx", mopt); });
    std::printf("megatron open + id scan   : %8.2f G tokens/s\n", n0 / t_open / 1e9);
  }

  // ---- sample order and training batches ------------------------------------------------------
  {
    const SampleOrder order(1, 1000000007);
    int64_t sink = 0;
    const int64_t calls = 2000000;
    const double t = best_seconds([&] {
      for (int64_t g = 0; g < calls; ++g) sink += order.sample_at(g * 7919);
    });
    std::printf("sample order (S = 1e9+7)  : %8.1f ns per index%s\n", t / calls * 1e9,
                sink == 42 ? " " : "");
  }
  for (int64_t seq_len : {int64_t{512}, int64_t{8192}}) {
    TrainBatchSource src(train, seq_len, 7);
    const int64_t rows = std::min<int64_t>(64, src.num_samples());
    std::vector<int32_t> in(static_cast<size_t>(rows * seq_len)), tg(in.size());
    int64_t step = 0;
    const double t = best_seconds([&] {
      for (int k = 0; k < 20; ++k) src.fill(global_batch_range(step++, rows), in.data(), tg.data());
    });
    std::printf("train batch %2lld x %-5lld    : %8.3f ms per batch (%.2f G tokens/s)\n",
                static_cast<long long>(rows), static_cast<long long>(seq_len), t / 20 * 1e3,
                20.0 * rows * seq_len / t / 1e9);
  }

  std::filesystem::remove_all(dir);
  return 0;
}
