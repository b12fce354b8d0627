#include "core/model/attention_map.h"

#include <algorithm>
#include <cmath>

#include "common/check.h"
#include "common/json_writer.h"
#include "kernels/attention_math.h"

namespace dape {
namespace {

namespace am = dape::attention_math;

// `count` tokens of `width` values each, `stride` apart, from the start of `t`, as doubles.
std::vector<double> download_rows(Ops& ops, const Tensor& t, int64_t count, int64_t stride,
                                  int64_t width) {
  const int64_t span = (count - 1) * stride + width;
  std::vector<double> raw(span);
  ops.copy_to_host(raw.data(), DType::f64, Tensor(t.data, t.dtype, Shape{span}));
  std::vector<double> rows(count * width);
  for (int64_t r = 0; r < count; ++r)
    std::copy_n(raw.begin() + r * stride, width, rows.begin() + r * width);
  return rows;
}

std::vector<double> download_param(Ops& ops, const Tensor& t) {
  std::vector<double> out(t.numel());
  ops.copy_to_host(out.data(), DType::f64, t);
  return out;
}

// B[h] for query position i and key position j (j ≤ i), every head.
class BiasTable {
 public:
  BiasTable(Ops& ops, const PositionBias& b, int heads) : bias_(b), heads_(heads) {
    if (b.scheme == PositionScheme::kerple) {
      p_ = download_param(ops, b.kerple_p);
      a_ = download_param(ops, b.kerple_a);
    } else if (b.scheme == PositionScheme::fire) {
      c_ = download_param(ops, b.fire_c)[0];
      mult_ = download_param(ops, b.fire_L_multiplier)[0];
      w1_ = download_param(ops, b.fire_w1);
      b1_ = download_param(ops, b.fire_b1);
      w2_ = download_param(ops, b.fire_w2);
      b2_ = download_param(ops, b.fire_b2);
    }
  }

  void fill(int i, int j, double* out) const {
    const double rel = i - j;
    switch (bias_.scheme) {
      case PositionScheme::alibi:
        for (int h = 0; h < heads_; ++h)
          out[h] = am::alibi_bias(am::alibi_slope<double>(h, heads_), rel);
        return;
      case PositionScheme::kerple:
        for (int h = 0; h < heads_; ++h)
          out[h] = am::kerple_bias(am::kerple_clamp(p_[h]), am::kerple_clamp(a_[h]), rel);
        return;
      case PositionScheme::fire: {
        const double u = am::fire_distance<double>(i, rel, c_, mult_, bias_.fire_L, am::kFireEps).u;
        const int G = static_cast<int>(b1_.size());
        for (int h = 0; h < heads_; ++h) out[h] = b2_[h];
        for (int g = 0; g < G; ++g) {
          const double hidden = am::activation(w1_[g] * u + b1_[g], bias_.fire_leaky_relu);
          for (int h = 0; h < heads_; ++h) out[h] += w2_[int64_t{h} * G + g] * hidden;
        }
        return;
      }
      case PositionScheme::none:
      case PositionScheme::learned:
      case PositionScheme::rope:
        std::fill_n(out, heads_, 0.0);
        return;
    }
  }

 private:
  PositionBias bias_;
  int heads_;
  std::vector<double> p_, a_, w1_, b1_, w2_, b2_;
  double c_ = 0, mult_ = 0;
};

}  // namespace

AttentionMap attention_map_from_inputs(Ops& ops, const AttentionInputs& in, int layer) {
  const AttentionShape& s = in.shape;
  DAPE_CHECK(s.keys() == s.seq_len && s.local() == s.heads && s.head_begin == 0,
             "attention map: expects as many keys as queries and every head, got {} keys, {} "
             "queries, heads [{}, {}) of {}",
             s.keys(), s.seq_len, s.head_begin, s.head_begin + s.local(), s.heads);
  const int H = s.heads, N = s.seq_len, D = s.head_dim;
  const int64_t HD = int64_t{H} * D;
  const std::vector<double> q = download_rows(ops, in.q, N, s.q_stride(), HD);
  const std::vector<double> k = download_rows(ops, in.k, N, s.k_stride(), HD);
  const BiasTable bias(ops, in.bias, H);
  std::vector<double> w1, b1, w2, b2;
  const int W = in.dape.enabled ? in.dape.width : 0;
  if (in.dape.enabled) {
    w1 = download_param(ops, in.dape.w1);
    b1 = download_param(ops, in.dape.b1);
    w2 = download_param(ops, in.dape.w2);
    b2 = download_param(ops, in.dape.b2);
  }

  AttentionMap map;
  map.layer = layer;
  map.heads = H;
  map.length = N;
  map.dape = in.dape.enabled;
  map.scheme = in.bias.scheme;
  const int64_t cells = int64_t{H} * N * N;
  map.probs.assign(cells, 0.0);
  map.bias.assign(cells, 0.0);
  map.dape_f.assign(cells, 0.0);

  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  std::vector<double> x(2 * H), hidden(W), logits(int64_t{H} * N);
  for (int i = 0; i < N; ++i) {
    for (int j = 0; j <= i; ++j) {
      for (int h = 0; h < H; ++h) {
        double dot = 0;
        for (int d = 0; d < D; ++d) dot += q[i * HD + h * D + d] * k[j * HD + h * D + d];
        x[h] = dot * scale;
      }
      bias.fill(i, j, x.data() + H);
      for (int h = 0; h < H; ++h) {
        map.bias[map.index(h, i, j)] = x[H + h];
        logits[int64_t{h} * N + j] = x[h] + x[H + h];
      }
      if (!in.dape.enabled) continue;
      for (int w = 0; w < W; ++w) {
        double acc = b1[w];
        for (int c = 0; c < 2 * H; ++c) acc += w1[int64_t{w} * 2 * H + c] * x[c];
        hidden[w] = am::leaky_relu(acc);
      }
      for (int h = 0; h < H; ++h) {
        double f = b2[h];
        for (int w = 0; w < W; ++w) f += w2[int64_t{h} * W + w] * hidden[w];
        map.dape_f[map.index(h, i, j)] = f;
        logits[int64_t{h} * N + j] += f;
      }
    }
    for (int h = 0; h < H; ++h) {
      const double* a = logits.data() + int64_t{h} * N;
      const double top = *std::max_element(a, a + i + 1);
      double total = 0;
      for (int j = 0; j <= i; ++j) total += std::exp(a[j] - top);
      for (int j = 0; j <= i; ++j) map.probs[map.index(h, i, j)] = std::exp(a[j] - top) / total;
    }
  }
  return map;
}

AttentionMap attention_map(Decoder& model, const std::vector<int32_t>& tokens, int layer) {
  const int layers = model.spec().layers;
  if (layer < 0 || layer >= layers)
    fail("layer {} is out of range: the model has {} layers, numbered 0 to {}", layer, layers,
         layers - 1);
  if (tokens.empty()) fail("the text encodes to no tokens: an attention map needs at least one");
  AttentionMap map;
  bool seen = false;
  model.set_attention_observer([&](int l, const AttentionInputs& in, const Tensor&) {
    if (l != layer) return;
    map = attention_map_from_inputs(model.ops(), in, layer);
    seen = true;
  });
  try {
    model.logits<float>(tokens.data(), 1, static_cast<int>(tokens.size()));
  } catch (...) {
    model.set_attention_observer({});
    throw;
  }
  model.set_attention_observer({});
  DAPE_CHECK(seen, "attention map: the forward pass never reached layer {}", layer);
  return map;
}

std::string attention_map_json(const AttentionMap& map, const std::vector<int32_t>& tokens,
                               const std::vector<std::string>& token_text) {
  DAPE_CHECK(static_cast<int>(tokens.size()) == map.length, "{} tokens for a map of length {}",
             tokens.size(), map.length);
  JsonWriter json;
  json.begin_object()
      .field("layer", map.layer)
      .field("heads", map.heads)
      .field("length", map.length)
      .field("position", position_scheme_name(map.scheme))
      .field("dape", map.dape);
  json.key("tokens").begin_array();
  for (int32_t t : tokens) json.value(static_cast<int64_t>(t));
  json.end_array();
  if (!token_text.empty()) {
    json.key("token_text").begin_array();
    for (const std::string& t : token_text) json.value(t);
    json.end_array();
  }
  auto table = [&](const char* name, const std::vector<double>& v) {
    json.key(name).begin_array();
    for (int h = 0; h < map.heads; ++h) {
      json.begin_array();
      for (int i = 0; i < map.length; ++i) {
        json.begin_array();
        for (int j = 0; j <= i; ++j) json.value(v[map.index(h, i, j)]);
        json.end_array();
      }
      json.end_array();
    }
    json.end_array();
  };
  table("probs", map.probs);
  table("bias", map.bias);
  if (map.dape) table("dape_f", map.dape_f);
  json.end_object();
  return json.str();
}

}  // namespace dape
