/*
 * Golden-file checks of the attention core.
 *
 * A golden file (format: shared/golden/README.md, written by an independent float64
 * implementation) holds the inputs of one attention call — q, k, v, the position scheme's and
 * DAPE's parameters, the upstream gradient — and the expected output and gradients. The check
 * runs an Ops backend's attention on those inputs (for rope, rotary is applied to copies of q and
 * k first and its transpose to dq and dk after), then compares `out` and every `grad_<name>` in
 * the file with
 *     max|x − x_ref| ≤ 1e-4 · max(1, max|x_ref|).
 *
 * Any B, N, H, D and width: sizes are read from the tensors' shapes, and the metadata must agree
 * with them. The file is validated before anything runs, and every inconsistency (a missing or
 * unexpected tensor, a shape that disagrees, a constant the implementation does not use) is a
 * dape::Error that names the file and says what is wrong.
 *
 * ALiBi's slopes are not an input of the attention call (the implementation derives them from
 * H), so the file's `alibi_slopes` are compared with the implementation's, more tightly.
 */
#pragma once

#include <string>
#include <vector>

#include "kernels/attention.h"
#include "kernels/ops.h"

namespace dape {

class SafetensorsReader;

constexpr double kGoldenTolerance = 1e-4;       // relative to max(1, max|x_ref|)
constexpr double kGoldenSlopeTolerance = 1e-6;  // alibi_slopes: fixed constants, not computed

struct GoldenTensorResult {
  std::string name;
  double max_abs_error = 0;
  double ref_max_abs = 0;
  double tolerance = 0;
  bool pass = false;
};

struct GoldenResult {
  std::string file;
  std::string scheme;
  bool dape = false;
  int batch = 0, seq_len = 0, heads = 0, head_dim = 0;
  int mlp_width = 0;  // DAPE's f width, else FIRE's g width, else the metadata's value
  std::vector<GoldenTensorResult> tensors;
  bool pass = false;
};

// Runs `impl` on `ops` against the golden file at `path`.
GoldenResult check_attention_golden(const std::string& path, Ops& ops, AttentionImpl impl);
// The same, for a file already opened.
GoldenResult check_attention_golden(const SafetensorsReader& file, Ops& ops, AttentionImpl impl);

// A table: one header line, then one line per tensor with its error, reference scale, tolerance
// and verdict.
std::string format_golden_result(const GoldenResult& r);

}  // namespace dape
