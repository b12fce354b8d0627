#include "core/train/evaluator.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>

#include "common/json_writer.h"
#include "common/log.h"
#include "common/progress.h"

namespace dape {

std::vector<EvalLengthResult> evaluate(Decoder& model, const data::TokenStream& validation,
                                       const EvalOptions& options) {
  std::vector<EvalLengthResult> results;
  for (int L : options.lengths) {
    DAPE_CHECK(L >= 1, "evaluation length {}", L);
    EvalLengthResult r;
    r.length = L;
    r.last = std::min(options.last, L);
    r.available_chunks = validation.size() / (int64_t{L} + 1);
    const int64_t used = options.max_chunks > 0
                             ? std::min<int64_t>(options.max_chunks, r.available_chunks)
                             : r.available_chunks;
    if (used == 0) {
      DAPE_LOG_WARN(
          "eval: skipping length {}: the validation split has {} tokens, one chunk needs {}", L,
          validation.size(), L + 1);
      results.push_back(r);
      continue;
    }
    const int batch = static_cast<int>(std::clamp<int64_t>(options.tokens_per_batch / L, 1, used));
    std::vector<int32_t> chunk(static_cast<size_t>(L) + 1), inputs(static_cast<size_t>(batch) * L),
        targets(static_cast<size_t>(batch) * L);
    double sum_all = 0, sum_last = 0;
    const auto start = std::chrono::steady_clock::now();
    std::optional<ProgressBar> bar;
    if (options.progress) bar.emplace(fmt::format("eval L={}", L), used * L, "tok");
    for (int64_t c0 = 0; c0 < used; c0 += batch) {
      const int n = static_cast<int>(std::min<int64_t>(batch, used - c0));
      for (int b = 0; b < n; ++b) {
        // Evenly spread over the split; distinct indices, so chunks never overlap.
        const int64_t index = (c0 + b) * r.available_chunks / used;
        validation.read(index * (int64_t{L} + 1), int64_t{L} + 1, chunk.data());
        std::copy(chunk.begin(), chunk.end() - 1, inputs.begin() + int64_t{b} * L);
        std::copy(chunk.begin() + 1, chunk.end(), targets.begin() + int64_t{b} * L);
      }
      model.forward(inputs.data(), targets.data(), n, L, /*training=*/false);
      const std::vector<double> losses = model.token_losses();
      for (int b = 0; b < n; ++b) {
        for (int t = 0; t < L; ++t) {
          const double l = losses[static_cast<size_t>(b) * L + t];
          sum_all += l;
          if (t >= L - r.last) sum_last += l;
        }
      }
      if (bar)
        bar->update((c0 + n) * L,
                    fmt::format("ppl {:.3f}", std::exp(sum_all / ((c0 + n) * double(L)))));
    }
    r.chunks = used;
    r.tokens = used * L;
    r.last_tokens = used * r.last;
    r.nll = sum_all / r.tokens;
    r.ppl = std::exp(r.nll);
    r.nll_last = sum_last / r.last_tokens;
    r.ppl_last = std::exp(r.nll_last);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (bar) bar->finish(fmt::format("ppl {:.3f}", r.ppl));
    results.push_back(r);
  }
  return results;
}

std::string format_eval_table(const std::vector<EvalLengthResult>& results) {
  int last = 0;
  for (const auto& r : results) last = std::max(last, r.last);
  std::string out =
      fmt::format("{:>8} {:>7} {:>10} {:>10} {:>12} {:>8} {:>8}\n", "length", "chunks", "tokens",
                  "ppl", fmt::format("ppl(last{})", last), "nll", "seconds");
  for (const auto& r : results) {
    if (r.chunks == 0) {
      out += fmt::format("{:>8} {:>7} {:>10} {:>10}\n", r.length, 0, 0,
                         "skipped: validation split too short");
      continue;
    }
    out += fmt::format("{:>8} {:>7} {:>10} {:>10.3f} {:>12.3f} {:>8.4f} {:>8.1f}\n", r.length,
                       r.chunks, r.tokens, r.ppl, r.ppl_last, r.nll, r.seconds);
  }
  return out;
}

std::string eval_results_json(const std::vector<EvalLengthResult>& results, int64_t step) {
  JsonWriter j;
  j.begin_object();
  if (step >= 0) j.field("step", step);
  j.key("results").begin_array();
  for (const auto& r : results) {
    j.begin_object();
    j.field("length", r.length);
    j.field("chunks", r.chunks);
    j.field("available_chunks", r.available_chunks);
    j.field("tokens", r.tokens);
    if (r.chunks > 0) {
      j.field("nll", r.nll).field("ppl", r.ppl);
      j.field("last", r.last).field("last_tokens", r.last_tokens);
      j.field("nll_last", r.nll_last).field("ppl_last", r.ppl_last);
      j.field("seconds", r.seconds);
    } else {
      j.field("skipped", "validation split shorter than one chunk");
    }
    j.end_object();
  }
  j.end_array();
  j.end_object();
  return j.str();
}

}  // namespace dape
