// The CPU reference attention on host copies of device tensors
// (kernels/cuda/host_reference_attention.h).
#include "kernels/cuda/host_reference_attention.h"

#include <algorithm>
#include <deque>
#include <vector>

#include "common/check.h"
#include "kernels/cpu/attention_reference.h"

namespace dape::cuda {
namespace {

// The rows of a strided activation: `batch` sequences `batch_stride` apart, each of `rows` rows
// `row_stride` apart, of which the attention touches the first `width` elements.
struct StridedRows {
  int64_t batch = 0, batch_stride = 0, rows = 0, row_stride = 0, width = 0;
  // Elements from the first touched one to one past the last.
  int64_t span() const { return (batch - 1) * batch_stride + (rows - 1) * row_stride + width; }
};

// The shape checks that the spans below rely on (the CPU reference then checks everything).
void check_layout(const AttentionShape& s) {
  DAPE_CHECK(s.batch >= 1 && s.seq_len >= 1 && s.heads >= 1 && s.head_dim >= 1,
             "attention: sizes must be positive, got B={} N={} H={} D={}", s.batch, s.seq_len,
             s.heads, s.head_dim);
  DAPE_CHECK(s.kv_len >= 0 && s.keys() >= s.seq_len,
             "attention: kv_len {} is shorter than seq_len {}", s.kv_len, s.seq_len);
  DAPE_CHECK(s.head_begin >= 0 && s.local_heads >= 0 && s.head_begin + s.local() <= s.heads,
             "attention: the local head range [{}, {}) is not inside the {} heads", s.head_begin,
             s.head_begin + s.local(), s.heads);
  const int64_t HD = int64_t{s.heads} * s.head_dim, HlD = int64_t{s.local()} * s.head_dim;
  DAPE_CHECK(s.q_stride() >= HD, "attention: qkv_row_stride {} is shorter than a token's H*D = {}",
             s.q_stride(), HD);
  DAPE_CHECK(s.k_row_stride >= 0 && s.k_stride() >= HD && s.k_batch_stride >= 0,
             "attention: k's strides (row {}, batch {}) are shorter than a token's H*D = {}",
             s.k_stride(), s.k_batch(), HD);
  DAPE_CHECK(s.v_row_stride >= 0 && s.v_stride() >= HlD && s.v_batch_stride >= 0,
             "attention: v's strides (row {}, batch {}) are shorter than a token's Hl*D = {}",
             s.v_stride(), s.v_batch(), HlD);
}

StridedRows q_rows(const AttentionShape& s) {
  return {s.batch, s.q_batch(), s.seq_len, s.q_stride(), int64_t{s.heads} * s.head_dim};
}
StridedRows k_rows(const AttentionShape& s) {
  return {s.batch, s.k_batch(), s.keys(), s.k_stride(), int64_t{s.heads} * s.head_dim};
}
StridedRows v_rows(const AttentionShape& s) {
  return {s.batch, s.v_batch(), s.keys(), s.v_stride(), int64_t{s.local()} * s.head_dim};
}

void expect_f32(const Tensor& t, const char* what) {
  DAPE_CHECK(t.defined(), "attention: {} is undefined", what);
  DAPE_CHECK(t.dtype == DType::f32, "attention: {} holds {}, the computation runs in {}", what,
             dtype_name(t.dtype), dtype_name(DType::f32));
}

// Host buffers that stand in for device tensors while the CPU computes; each remembers how to
// write its values back.
class HostMirror {
 public:
  explicit HostMirror(Ops& ops) : ops_(ops) {}

  // The strided activation `t` (rows as given): its whole span, at the same offsets. `download`
  // false leaves the host buffer zero (for outputs that are overwritten).
  Tensor strided(const Tensor& t, const StridedRows& rows, bool download, const char* what) {
    expect_f32(t, what);
    const int64_t span = rows.span();
    auto& buf = store_.emplace_back(static_cast<size_t>(std::max(span, t.numel())), 0.0f);
    if (download) {
      ops_.copy_to_host(buf.data(), DType::f32, Tensor(t.data, DType::f32, {span}));
    } else {
      pending_rows_.push_back({t, rows, &buf});
    }
    return Tensor(buf.data(), DType::f32, t.shape);
  }

  // A dense tensor (undefined stays undefined). `write_back` uploads it after the computation.
  Tensor dense(const Tensor& t, bool write_back, const char* what) {
    if (!t.defined()) return t;
    expect_f32(t, what);
    auto& buf = store_.emplace_back(static_cast<size_t>(t.numel()), 0.0f);
    ops_.copy_to_host(buf.data(), DType::f32, t);
    if (write_back) pending_dense_.push_back({t, &buf});
    return Tensor(buf.data(), DType::f32, t.shape);
  }

  // A dense output the computation overwrites entirely.
  Tensor output(const Tensor& t, const char* what) {
    expect_f32(t, what);
    auto& buf = store_.emplace_back(static_cast<size_t>(t.numel()), 0.0f);
    pending_dense_.push_back({t, &buf});
    return Tensor(buf.data(), DType::f32, t.shape);
  }

  // Uploads every output: dense ones whole, strided ones row segment by row segment (through a
  // device copy of the span), leaving what lies between the segments untouched.
  void write_back() {
    for (const auto& p : pending_dense_) ops_.copy_from_host(p.device, p.host->data(), DType::f32);
    for (const auto& p : pending_rows_) {
      const StridedRows& r = p.rows;
      DeviceBuffer staged = ops_.buffer(DType::f32, {r.span()});
      ops_.copy_from_host(staged, p.host->data(), DType::f32);
      const int64_t rows_span = (r.rows - 1) * r.row_stride + r.width;
      for (int64_t b = 0; b < r.batch; ++b) {
        const int64_t offset = b * r.batch_stride;
        const Tensor dst(static_cast<float*>(p.device.data) + offset, DType::f32, {rows_span});
        const Tensor src(static_cast<float*>(staged.tensor().data) + offset, DType::f32,
                         {rows_span});
        ops_.copy_2d(dst, r.row_stride, src, r.row_stride, r.rows, r.width);
      }
    }
  }

 private:
  struct PendingDense {
    Tensor device;
    std::vector<float>* host;
  };
  struct PendingRows {
    Tensor device;
    StridedRows rows;
    std::vector<float>* host;
  };
  Ops& ops_;
  std::deque<std::vector<float>> store_;  // stable addresses
  std::vector<PendingDense> pending_dense_;
  std::vector<PendingRows> pending_rows_;
};

// Host copies of q, k, v and every parameter of the position scheme and of DAPE's f.
AttentionInputs host_inputs(HostMirror& mirror, const AttentionInputs& in) {
  check_layout(in.shape);
  AttentionInputs h = in;
  h.q = mirror.strided(in.q, q_rows(in.shape), /*download=*/true, "q");
  h.k = mirror.strided(in.k, k_rows(in.shape), /*download=*/true, "k");
  h.v = mirror.strided(in.v, v_rows(in.shape), /*download=*/true, "v");
  PositionBias& b = h.bias;
  b.kerple_p = mirror.dense(in.bias.kerple_p, false, "kerple_p");
  b.kerple_a = mirror.dense(in.bias.kerple_a, false, "kerple_a");
  b.fire_c = mirror.dense(in.bias.fire_c, false, "fire_c");
  b.fire_L_multiplier = mirror.dense(in.bias.fire_L_multiplier, false, "fire_L_multiplier");
  b.fire_w1 = mirror.dense(in.bias.fire_w1, false, "fire_w1");
  b.fire_b1 = mirror.dense(in.bias.fire_b1, false, "fire_b1");
  b.fire_w2 = mirror.dense(in.bias.fire_w2, false, "fire_w2");
  b.fire_b2 = mirror.dense(in.bias.fire_b2, false, "fire_b2");
  DapeMlp& f = h.dape;
  f.w1 = mirror.dense(in.dape.w1, false, "dape w1");
  f.b1 = mirror.dense(in.dape.b1, false, "dape b1");
  f.w2 = mirror.dense(in.dape.w2, false, "dape w2");
  f.b2 = mirror.dense(in.dape.b2, false, "dape b2");
  return h;
}

}  // namespace

void host_reference_attention_forward(Ops& ops, const AttentionInputs& in, const Tensor& out,
                                      const Tensor& lse) {
  HostMirror mirror(ops);
  const AttentionInputs h = host_inputs(mirror, in);
  const Tensor out_h = mirror.output(out, "out");
  const Tensor lse_h = mirror.output(lse, "lse");
  cpu::attention_reference_forward<float>(h, out_h.ptr<float>(), lse_h.ptr<float>());
  mirror.write_back();
}

void host_reference_attention_backward(Ops& ops, const AttentionInputs& in, const Tensor& out,
                                       const Tensor& lse, const Tensor& dout,
                                       const AttentionGrads& grads) {
  HostMirror mirror(ops);
  const AttentionInputs h = host_inputs(mirror, in);
  const Tensor out_h = mirror.dense(out, false, "out");
  const Tensor lse_h = mirror.dense(lse, false, "lse");
  const Tensor dout_h = mirror.dense(dout, false, "dout");
  DAPE_CHECK(out_h.defined() && lse_h.defined() && dout_h.defined(),
             "attention backward: out, lse and dout must be defined");

  AttentionGrads g = grads;
  // dq, dk, dv are overwritten (within their row segments); parameter gradients accumulate.
  g.dq = mirror.strided(grads.dq, q_rows(in.shape), /*download=*/false, "dq");
  g.dk = mirror.strided(grads.dk, k_rows(in.shape), /*download=*/false, "dk");
  g.dv = mirror.strided(grads.dv, v_rows(in.shape), /*download=*/false, "dv");
  PositionBias& b = g.bias;
  b.kerple_p = mirror.dense(grads.bias.kerple_p, true, "the gradient of kerple_p");
  b.kerple_a = mirror.dense(grads.bias.kerple_a, true, "the gradient of kerple_a");
  b.fire_c = mirror.dense(grads.bias.fire_c, true, "the gradient of fire_c");
  b.fire_L_multiplier =
      mirror.dense(grads.bias.fire_L_multiplier, true, "the gradient of fire_L_multiplier");
  b.fire_w1 = mirror.dense(grads.bias.fire_w1, true, "the gradient of fire_w1");
  b.fire_b1 = mirror.dense(grads.bias.fire_b1, true, "the gradient of fire_b1");
  b.fire_w2 = mirror.dense(grads.bias.fire_w2, true, "the gradient of fire_w2");
  b.fire_b2 = mirror.dense(grads.bias.fire_b2, true, "the gradient of fire_b2");
  DapeMlp& f = g.dape;
  f.w1 = mirror.dense(grads.dape.w1, true, "the gradient of dape w1");
  f.b1 = mirror.dense(grads.dape.b1, true, "the gradient of dape b1");
  f.w2 = mirror.dense(grads.dape.w2, true, "the gradient of dape w2");
  f.b2 = mirror.dense(grads.dape.b2, true, "the gradient of dape b2");

  cpu::attention_reference_backward<float>(h, out_h.ptr<float>(), lse_h.ptr<float>(),
                                           dout_h.ptr<float>(), g);
  mirror.write_back();
}

}  // namespace dape::cuda
