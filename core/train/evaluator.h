/*
 * Evaluation with the paper's protocol (DESIGN.md §1): the validation split is cut into
 * non-overlapping chunks of L + 1 tokens; the model predicts the last L tokens of each chunk
 * from the ones before. Reported per length: perplexity over all predicted tokens, and over the
 * last `last` predictions of each chunk (the positions furthest from the start, where length
 * extrapolation shows).
 *
 * When max_chunks limits the work, the chunks used are spread evenly over the split (chunk
 * indices round(k · available / used)), not taken from its start. Several chunks are batched
 * into one forward pass up to a token budget; the model runs in inference mode (one layer of
 * activations). A length the split is too short for is reported as skipped, not as an error.
 */
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/data/token_stream.h"
#include "core/model/decoder.h"

namespace dape {

struct EvalOptions {
  std::vector<int> lengths;
  int last = 256;
  int max_chunks = 0;               // 0: every chunk
  int64_t tokens_per_batch = 8192;  // chunks per forward = max(1, tokens_per_batch / L)
  bool progress = true;
};

struct EvalLengthResult {
  int length = 0;
  int64_t chunks = 0;  // 0: skipped (the split is shorter than one chunk)
  int64_t available_chunks = 0;
  int64_t tokens = 0;
  double nll = 0, ppl = 0;  // over all predicted tokens
  int last = 0;             // predictions per chunk in the "last" figure (min(last, L))
  int64_t last_tokens = 0;
  double nll_last = 0, ppl_last = 0;
  double seconds = 0;
};

std::vector<EvalLengthResult> evaluate(Decoder& model, const data::TokenStream& validation,
                                       const EvalOptions& options);

// A fixed-width table: length, chunks, tokens, ppl, ppl(last N), nll, time.
std::string format_eval_table(const std::vector<EvalLengthResult>& results);
// {"step": S, "results": [{"length": ..., "ppl": ..., ...}, ...]} (step < 0: omitted).
std::string eval_results_json(const std::vector<EvalLengthResult>& results, int64_t step);

}  // namespace dape
