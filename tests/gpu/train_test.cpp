/*
 * Whole training steps on CUDA: the decoder's forward, backward, gradient clipping and AdamW.
 *
 * Against the CPU. The same model with the same parameters (copied from the CUDA model, so both
 * start from identical values) runs three steps on the CPU in double with the materialized
 * reference attention (the oracle) and on CUDA in fp32 with the fused attention. Per step:
 *   loss            ≤ 1e-5 relative at step 1: float rounding through a few layers;
 *                   ≤ 1e-4 at steps 2 and 3: AdamW's first updates move each parameter by about
 *                   ±lr whatever the gradient's size, so an element whose gradient is within
 *                   float error of zero may move differently on the two backends (its effect on
 *                   the loss is second order, but the models are no longer identical);
 *   gradient norm   ≤ 1e-5 relative at step 1;
 *   each parameter's gradient ≤ 1e-4 of the largest gradient of its module at step 1 (sums over
 *                   every token, and f's and the bias's gradients over every query/key pair; a
 *                   module's scale because some gradients are zero analytically — f's b2, the
 *                   key bias — and hold only rounding noise).
 * For every position scheme with and without DAPE on the tiny model of the unit tests, and on a
 * larger model with the demo's scheme (Kerple + DAPE, W = 32) at realistic initialization.
 *
 * Learning. The demo's model (4 layers × 256, 8 heads, Kerple + DAPE) trains 20 steps on CUDA in
 * bf16 on the bytes of the project's own documentation; from ≈ ln 257 ≈ 5.55 at initialization
 * the loss must fall by more than 10% (learning the bytes' frequencies alone is worth more).
 */
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "common/rng.h"
#include "core/model/decoder.h"
#include "core/optim/adamw_optimizer.h"
#include "kernels/cpu/cpu_ops.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/unit/tiny_model.h"

namespace dape {
namespace {

constexpr double kFirstLossTol = 1e-5;
constexpr double kLaterLossTol = 1e-4;
constexpr double kGradNormTol = 1e-5;
constexpr double kGradTol = 1e-4;

struct StepResult {
  double loss = 0, grad_norm = 0;
  std::vector<double> grads;  // before clipping
};

// One optimizer step on `tokens`/`targets` ([batch, seq_len] each): zero the gradients, forward,
// backward, clip to norm 1, AdamW at `lr`. Returns the mean loss, the gradient and its norm.
StepResult train_step(Decoder& model, AdamW& opt, const std::vector<int32_t>& tokens,
                      const std::vector<int32_t>& targets, int batch, int seq_len, double lr,
                      int64_t step) {
  Ops& ops = model.ops();
  ParamStore& ps = model.params();
  const double n = static_cast<double>(batch) * seq_len;
  ps.zero_grads(ops);
  StepResult r;
  r.loss = model.forward(tokens.data(), targets.data(), batch, seq_len, true, 1.0 / n) / n;
  model.backward();
  r.grads = download<double>(ops, ps.grads());
  r.grad_norm = clip_grad_norm(ops, ps.grads(), 1.0);
  opt.step(lr, step);
  ops.synchronize();
  return r;
}

// Runs `steps` steps of the same model on the CPU (double, reference attention) and on CUDA
// (fp32, fused attention) from the CUDA model's parameters, and compares them as described above.
void compare_training(ModelSpec spec, bool randomize, int batch, int seq_len, double lr, int steps,
                      uint64_t seed) {
  auto cuda = gpu_test::cuda_ops(CudaPrecision::fp32);
  CpuOps cpu(DType::f64);
  spec.attention = AttentionImpl::fused;
  Decoder on_cuda(spec, *cuda);
  spec.attention = AttentionImpl::reference;
  Decoder on_cpu(spec, cpu);
  if (randomize) {
    test::randomize_parameters(on_cuda, seed);
  } else {
    on_cuda.initialize(seed);
  }
  const auto values = download<double>(*cuda, on_cuda.params().values());
  cpu.copy_from_host(on_cpu.params().values(), values.data(), DType::f64);
  AdamWConfig adamw;
  adamw.weight_decay = 0.1;
  AdamW opt_cuda(*cuda, on_cuda.params(), adamw), opt_cpu(cpu, on_cpu.params(), adamw);

  for (int s = 1; s <= steps; ++s) {
    SCOPED_TRACE("step " + std::to_string(s));
    const auto tokens = test::random_tokens(batch * seq_len, spec.vocab, seed + 10 * s);
    const auto targets = test::random_tokens(batch * seq_len, spec.vocab, seed + 10 * s + 1);
    const StepResult ref = train_step(on_cpu, opt_cpu, tokens, targets, batch, seq_len, lr, s);
    const StepResult got = train_step(on_cuda, opt_cuda, tokens, targets, batch, seq_len, lr, s);
    ASSERT_TRUE(std::isfinite(got.loss)) << got.loss;
    const double loss_err = std::fabs(got.loss - ref.loss) / std::fabs(ref.loss);
    EXPECT_LE(loss_err, s == 1 ? kFirstLossTol : kLaterLossTol)
        << "loss: cuda " << got.loss << ", cpu " << ref.loss;
    std::printf("  step %d: loss cpu %.9f cuda %.9f (relative error %.2e)", s, ref.loss, got.loss,
                loss_err);
    if (s == 1) {
      const double norm_err = std::fabs(got.grad_norm - ref.grad_norm) / ref.grad_norm;
      EXPECT_LE(norm_err, kGradNormTol)
          << "gradient norm: cuda " << got.grad_norm << ", cpu " << ref.grad_norm;
      double worst = 0;
      std::string worst_name;
      // Each gradient against the largest of its module's ("layers.0.attn.dape" for
      // "layers.0.attn.dape.b2"): some are zero analytically (f's b2, the key bias), their
      // values rounding noise of sums that cancel.
      auto module = [](const std::string& name) { return name.substr(0, name.rfind('.')); };
      auto slice = [](const std::vector<double>& all, const ParamView& v) {
        const auto begin = all.begin() + v.offset;
        return std::vector<double>(begin, begin + v.spec.shape.numel());
      };
      std::map<std::string, double> module_scale;
      for (const auto& v : on_cpu.params().views()) {
        double& scale = module_scale[module(v.spec.name)];
        scale = std::max(scale, gpu_test::max_finite_abs(slice(ref.grads, v)));
      }
      for (const auto& v : on_cpu.params().views()) {
        const double e =
            gpu_test::expect_close(slice(got.grads, v), slice(ref.grads, v), kGradTol,
                                   "gradient of " + v.spec.name, module_scale[module(v.spec.name)]);
        if (e >= worst) {
          worst = e;
          worst_name = v.spec.name;
        }
      }
      std::printf(", gradient norm error %.2e, worst gradient %.2e (%s)", norm_err, worst,
                  worst_name.c_str());
    }
    std::printf("\n");
  }
}

TEST(CudaTraining, TinyModelStepsMatchCpuForEveryScheme) {
  DAPE_SKIP_WITHOUT_CUDA();
  for (auto scheme : {PositionScheme::none, PositionScheme::learned, PositionScheme::rope,
                      PositionScheme::alibi, PositionScheme::kerple, PositionScheme::fire})
    for (bool dape : {false, true}) {
      const std::string name = std::string(position_scheme_name(scheme)) + (dape ? " + DAPE" : "");
      SCOPED_TRACE(name);
      std::printf("%s\n", name.c_str());
      // FIRE's threshold ≈ 2.3 lies inside the 9 positions: both sides of max(i, thr) occur.
      compare_training(test::tiny_model_spec(scheme, dape, 16, 2.0), true, 2, 9, 1e-2, 3, 41);
    }
}

// The demo's position scheme on wider layers (head_dim 32, W = 32, 257 byte tokens padded to
// 320), at the model's own initialization.
ModelSpec small_demo_spec(int layers, int d_model, int heads) {
  ModelSpec s;
  s.layers = layers;
  s.d_model = d_model;
  s.heads = heads;
  s.head_dim = d_model / heads;
  s.mlp_hidden = 4 * d_model;
  s.vocab = 257;
  s.padded_vocab = 320;
  s.position = PositionScheme::kerple;
  s.dape = true;
  s.dape_width = 32;
  s.max_positions = 2048;
  return s;
}

TEST(CudaTraining, DemoShapedModelStepsMatchCpu) {
  DAPE_SKIP_WITHOUT_CUDA();
  compare_training(small_demo_spec(2, 128, 4), false, 4, 128, 2e-3, 3, 43);
}

// Windows of seq_len + 1 bytes of `text` at random offsets: tokens and next-token targets.
void sample_batch(const std::string& text, int batch, int seq_len, Rng& rng,
                  std::vector<int32_t>* tokens, std::vector<int32_t>* targets) {
  tokens->clear();
  targets->clear();
  for (int b = 0; b < batch; ++b) {
    const auto start = static_cast<size_t>(rng.below(text.size() - seq_len - 1));
    for (int t = 0; t < seq_len; ++t) {
      tokens->push_back(static_cast<unsigned char>(text[start + t]));
      targets->push_back(static_cast<unsigned char>(text[start + t + 1]));
    }
  }
}

TEST(CudaTraining, DemoModelLearnsInBf16) {
  DAPE_SKIP_WITHOUT_CUDA();
  const std::string text = read_file(std::string(DAPE_SOURCE_DIR) + "/docs/guide.md") +
                           read_file(std::string(DAPE_SOURCE_DIR) + "/README.md");
  ASSERT_GT(text.size(), 20000u);
  auto cuda = gpu_test::cuda_ops(CudaPrecision::bf16);
  ModelSpec spec = small_demo_spec(4, 256, 8);  // configs/demo.pbtxt's model
  spec.attention = AttentionImpl::fused;
  Decoder model(spec, *cuda);
  model.initialize(1234);
  AdamW opt(*cuda, model.params(), AdamWConfig{});
  const int batch = 16, seq_len = 128, steps = 20;
  Rng rng(7, 3);
  std::vector<int32_t> tokens, targets;
  std::vector<double> losses;
  for (int s = 1; s <= steps; ++s) {
    sample_batch(text, batch, seq_len, rng, &tokens, &targets);
    losses.push_back(train_step(model, opt, tokens, targets, batch, seq_len, 2e-3, s).loss);
    std::printf("  step %2d: loss %.4f\n", s, losses.back());
    ASSERT_TRUE(std::isfinite(losses.back())) << "step " << s;
  }
  EXPECT_NEAR(losses.front(), std::log(257.0), 0.3) << "an initialized model predicts ≈ uniformly";
  EXPECT_LT(losses.back(), 0.9 * losses.front())
      << "20 steps should lower the loss by more than 10%: " << losses.front() << " -> "
      << losses.back();
}

}  // namespace
}  // namespace dape
