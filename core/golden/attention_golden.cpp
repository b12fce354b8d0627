#include "core/golden/attention_golden.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <optional>
#include <set>

#include "common/check.h"
#include "core/checkpoint/safetensors.h"
#include "kernels/attention_math.h"

namespace dape {
namespace {

namespace am = dape::attention_math;

using Dims = std::vector<int64_t>;

std::string dims_text(const Dims& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + "]";
}

// The golden file, validated: its sizes, and the shape every tensor must have.
class GoldenFile {
 public:
  explicit GoldenFile(const SafetensorsReader& file) : f_(file) {
    read_metadata();
    read_sizes();
    expect_tensors();
  }

  const SafetensorsReader& file() const { return f_; }
  const std::string& label() const { return f_.label(); }
  PositionScheme scheme() const { return scheme_; }
  bool dape() const { return dape_; }
  int B() const { return B_; }
  int N() const { return N_; }
  int H() const { return H_; }
  int D() const { return D_; }
  int W() const { return W_; }
  int G() const { return G_; }
  int reported_width() const { return dape_ ? W_ : (G_ > 0 ? G_ : meta_width_.value_or(0)); }
  bool has(const std::string& name) const { return f_.find(name) != nullptr; }

  // The tensor's values, checked finite.
  std::vector<double> values(const std::string& name) const {
    auto v = f_.read_double(name);
    for (size_t i = 0; i < v.size(); ++i)
      if (!std::isfinite(v[i]))
        fail("golden file '{}': tensor '{}' holds a non-finite value ({}) at element {}", label(),
             name, v[i], i);
    return v;
  }

  // The inputs whose gradients the file may hold, in report order.
  const std::vector<std::string>& learned() const { return learned_; }

 private:
  [[noreturn]] void bad(const std::string& what) const {
    fail("golden file '{}': {}", label(), what);
  }

  const std::string& required_meta(const char* key) const {
    const std::string* v = f_.metadata_value(key);
    if (!v) bad(fmt::format("metadata lacks '{}'", key));
    return *v;
  }

  std::optional<int> meta_int(const char* key) const {
    const std::string* v = f_.metadata_value(key);
    if (!v) return std::nullopt;
    int x = 0;
    auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), x);
    if (ec != std::errc() || end != v->data() + v->size() || x < 0)
      bad(fmt::format("metadata '{}' = '{}' is not a non-negative integer", key, *v));
    return x;
  }

  // A constant the implementation hard-codes: the file must have been made with the same one.
  void expect_constant(const char* key, double implemented) const {
    const std::string* v = f_.metadata_value(key);
    if (!v) return;
    double x = 0;
    auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), x);
    if (ec != std::errc() || end != v->data() + v->size())
      bad(fmt::format("metadata '{}' = '{}' is not a number", key, *v));
    if (std::fabs(x - implemented) > 1e-12 * std::fabs(implemented))
      bad(fmt::format("metadata '{}' = {} but the implementation uses {}", key, *v, implemented));
  }

  void read_metadata() {
    const std::string& scheme = required_meta("scheme");
    if (!parse_position_scheme(scheme, &scheme_))
      bad(
          fmt::format("metadata 'scheme' = '{}' is not one of none, learned, rope, alibi, "
                      "kerple, fire",
                      scheme));
    const std::string& dape = required_meta("dape");
    if (dape != "true" && dape != "false")
      bad(fmt::format("metadata 'dape' = '{}' must be 'true' or 'false'", dape));
    dape_ = dape == "true";
    expect_constant("leaky_slope", am::kLeakySlope);
    expect_constant("fire_eps", am::kFireEps);
    expect_constant("kerple_clamp_min", am::kKerpleClampMin);
    meta_width_ = meta_int("mlp_width");
  }

  const SafetensorsEntry& need(const std::string& name, const char* why) const {
    const SafetensorsEntry* e = f_.find(name);
    if (!e) bad(fmt::format("tensor '{}' is missing ({})", name, why));
    return *e;
  }

  // A width from a rank-1 tensor's length.
  int width_of(const std::string& name, const char* why) const {
    const SafetensorsEntry& e = need(name, why);
    if (e.shape.size() != 1 || e.shape[0] < 1)
      bad(fmt::format("tensor '{}' has shape {}, expected [W] with W >= 1", name, e.shape_str()));
    return static_cast<int>(e.shape[0]);
  }

  void read_sizes() {
    const SafetensorsEntry& q = need("q", "every golden file holds q");
    if (q.shape.size() != 4 || *std::min_element(q.shape.begin(), q.shape.end()) < 1)
      bad(fmt::format("tensor 'q' has shape {}, expected [B, N, H, D] with every size >= 1",
                      q.shape_str()));
    B_ = static_cast<int>(q.shape[0]);
    N_ = static_cast<int>(q.shape[1]);
    H_ = static_cast<int>(q.shape[2]);
    D_ = static_cast<int>(q.shape[3]);
    const std::pair<const char*, int> sizes[] = {
        {"batch", B_}, {"seq_len", N_}, {"heads", H_}, {"head_dim", D_}};
    for (const auto& [key, size] : sizes) {
      auto m = meta_int(key);
      if (m && *m != size)
        bad(fmt::format("metadata '{}' = {} disagrees with q's shape {}", key, *m, q.shape_str()));
    }
    if (scheme_ == PositionScheme::rope && D_ % 2 != 0)
      bad(fmt::format("rope needs an even head_dim, q's shape {} has {}", q.shape_str(), D_));
    if (dape_) W_ = width_of("dape_b1", "DAPE is on");
    if (scheme_ == PositionScheme::fire) G_ = width_of("fire_b1", "scheme fire");
    if (meta_width_) {
      const int w = dape_ ? W_ : G_;
      if ((dape_ || G_ > 0) && *meta_width_ != w)
        bad(fmt::format("metadata 'mlp_width' = {} disagrees with {}'s width {}", *meta_width_,
                        dape_ ? "dape_b1" : "fire_b1", w));
    }
  }

  void expect_tensors() {
    const int64_t B = B_, N = N_, H = H_, D = D_, W = W_, G = G_;
    std::map<std::string, Dims> shapes;
    for (const char* name : {"q", "k", "v", "out", "grad_out"}) shapes[name] = {B, N, H, D};
    learned_ = {"q", "k", "v"};
    switch (scheme_) {
      case PositionScheme::alibi:
        shapes["alibi_slopes"] = {H};
        break;
      case PositionScheme::kerple:
        shapes["kerple_p"] = {H};
        shapes["kerple_a"] = {H};
        learned_.insert(learned_.end(), {"kerple_p", "kerple_a"});
        break;
      case PositionScheme::fire:
        shapes["fire_c"] = {};
        shapes["fire_L"] = {};
        shapes["fire_L_multiplier"] = {};
        shapes["fire_w1"] = {G, 1};
        shapes["fire_b1"] = {G};
        shapes["fire_w2"] = {H, G};
        shapes["fire_b2"] = {H};
        learned_.insert(learned_.end(), {"fire_c", "fire_L_multiplier", "fire_w1", "fire_b1",
                                         "fire_w2", "fire_b2"});
        break;
      default:
        break;
    }
    if (dape_) {
      shapes["dape_w1"] = {W, 2 * H};
      shapes["dape_b1"] = {W};
      shapes["dape_w2"] = {H, W};
      shapes["dape_b2"] = {H};
      learned_.insert(learned_.end(), {"dape_w1", "dape_b1", "dape_w2", "dape_b2"});
    }
    std::map<std::string, Dims> allowed = shapes;
    for (const auto& name : learned_) allowed["grad_" + name] = shapes[name];

    const std::string setting = fmt::format("scheme {}{}", position_scheme_name(scheme_),
                                            dape_ ? " with DAPE" : " without DAPE");
    for (const auto& [name, shape] : shapes) need(name, setting.c_str());
    for (const auto& e : f_.entries()) {
      auto it = allowed.find(e.name);
      if (it == allowed.end()) bad(fmt::format("unexpected tensor '{}' for {}", e.name, setting));
      if (e.dtype != SafetensorsDType::F32 && e.dtype != SafetensorsDType::F64)
        bad(fmt::format("tensor '{}' is {}, golden tensors are F32 or F64", e.name,
                        safetensors_dtype_name(e.dtype)));
      const Dims& want = it->second;
      const bool scalar_ok = want.empty() && e.shape == Dims{1};
      if (e.shape != want && !scalar_ok)
        bad(fmt::format("tensor '{}' has shape {}, expected {} (B={} N={} H={} D={} from q{}{})",
                        e.name, e.shape_str(), dims_text(want), B_, N_, H_, D_,
                        dape_ ? fmt::format(", W={} from dape_b1", W_) : "",
                        G_ ? fmt::format(", W={} from fire_b1", G_) : ""));
    }
  }

  const SafetensorsReader& f_;
  PositionScheme scheme_ = PositionScheme::none;
  bool dape_ = false;
  int B_ = 0, N_ = 0, H_ = 0, D_ = 0, W_ = 0, G_ = 0;
  std::optional<int> meta_width_;
  std::vector<std::string> learned_;
};

GoldenTensorResult compare(const std::string& name, const std::vector<double>& x,
                           const std::vector<double>& ref, double relative_tolerance) {
  DAPE_CHECK(x.size() == ref.size(), "golden compare of {}: {} values vs {}", name, x.size(),
             ref.size());
  GoldenTensorResult r;
  r.name = name;
  for (size_t i = 0; i < x.size(); ++i) {
    const double err = std::fabs(x[i] - ref[i]);
    // NaN must fail: keep it rather than let max() drop it.
    if (std::isnan(err) || err > r.max_abs_error) r.max_abs_error = err;
    if (std::isnan(r.max_abs_error)) break;
    r.ref_max_abs = std::max(r.ref_max_abs, std::fabs(ref[i]));
  }
  r.tolerance = relative_tolerance * std::max(1.0, r.ref_max_abs);
  r.pass = r.max_abs_error <= r.tolerance;  // false for NaN
  return r;
}

}  // namespace

GoldenResult check_attention_golden(const std::string& path, Ops& ops, AttentionImpl impl) {
  const SafetensorsReader file(path);
  return check_attention_golden(file, ops, impl);
}

GoldenResult check_attention_golden(const SafetensorsReader& reader, Ops& ops, AttentionImpl impl) {
  const GoldenFile g(reader);
  const int B = g.B(), N = g.N(), H = g.H(), D = g.D();

  // Inputs on the device, in the backend's float type.
  std::map<std::string, DeviceBuffer> inputs, grads;
  auto upload_tensor = [&](const std::string& name) -> const Tensor& {
    const SafetensorsEntry& e = reader.entry(name);
    Shape s;
    if (e.shape.empty()) s = Shape{1};
    for (int64_t d : e.shape) s.dims[s.rank++] = d;
    DeviceBuffer buf = ops.float_buffer(s);
    const auto v = g.values(name);
    ops.copy_from_host(buf, v.data(), DType::f64);
    return inputs[name] = std::move(buf);
  };
  auto grad_for = [&](const std::string& name) -> const Tensor& {
    DeviceBuffer buf = ops.float_buffer(inputs.at(name).tensor().shape);
    const std::vector<double> zeros(static_cast<size_t>(buf.tensor().numel()), 0.0);
    ops.copy_from_host(buf, zeros.data(), DType::f64);
    return grads[name] = std::move(buf);
  };

  AttentionInputs in;
  in.shape = AttentionShape{B, N, H, D, int64_t{H} * D};
  in.q = upload_tensor("q");
  in.k = upload_tensor("k");
  in.v = upload_tensor("v");
  const Tensor& dout = upload_tensor("grad_out");
  in.bias.scheme = g.scheme();
  if (g.scheme() == PositionScheme::kerple) {
    in.bias.kerple_p = upload_tensor("kerple_p");
    in.bias.kerple_a = upload_tensor("kerple_a");
  } else if (g.scheme() == PositionScheme::fire) {
    in.bias.fire_c = upload_tensor("fire_c");
    in.bias.fire_L_multiplier = upload_tensor("fire_L_multiplier");
    in.bias.fire_w1 = upload_tensor("fire_w1");
    in.bias.fire_b1 = upload_tensor("fire_b1");
    in.bias.fire_w2 = upload_tensor("fire_w2");
    in.bias.fire_b2 = upload_tensor("fire_b2");
    in.bias.fire_L = static_cast<float>(g.values("fire_L")[0]);
    in.bias.fire_leaky_relu = g.dape();  // as the reference code: LeakyReLU in g under DAPE
  }
  if (g.dape()) {
    in.dape.enabled = true;
    in.dape.width = g.W();
    in.dape.w1 = upload_tensor("dape_w1");
    in.dape.b1 = upload_tensor("dape_b1");
    in.dape.w2 = upload_tensor("dape_w2");
    in.dape.b2 = upload_tensor("dape_b2");
  }

  const bool rope = g.scheme() == PositionScheme::rope;
  if (rope) ops.rope_forward(in.q, in.k, in.shape, /*pos_offset=*/0, am::kRopeBase);
  DeviceBuffer out = ops.float_buffer({B, N, H, D});
  DeviceBuffer lse = ops.float_buffer({B, H, N});
  ops.attention_forward(in, out, lse, impl);

  AttentionGrads dg;
  dg.dq = grad_for("q");
  dg.dk = grad_for("k");
  dg.dv = grad_for("v");
  dg.bias.scheme = g.scheme();
  if (g.scheme() == PositionScheme::kerple) {
    dg.bias.kerple_p = grad_for("kerple_p");
    dg.bias.kerple_a = grad_for("kerple_a");
  } else if (g.scheme() == PositionScheme::fire) {
    dg.bias.fire_c = grad_for("fire_c");
    dg.bias.fire_L_multiplier = grad_for("fire_L_multiplier");
    dg.bias.fire_w1 = grad_for("fire_w1");
    dg.bias.fire_b1 = grad_for("fire_b1");
    dg.bias.fire_w2 = grad_for("fire_w2");
    dg.bias.fire_b2 = grad_for("fire_b2");
  }
  if (g.dape()) {
    dg.dape.enabled = true;
    dg.dape.width = g.W();
    dg.dape.w1 = grad_for("dape_w1");
    dg.dape.b1 = grad_for("dape_b1");
    dg.dape.w2 = grad_for("dape_w2");
    dg.dape.b2 = grad_for("dape_b2");
  }
  ops.attention_backward(in, out, lse, dout, dg, impl);
  if (rope) ops.rope_backward(dg.dq, dg.dk, in.shape, /*pos_offset=*/0, am::kRopeBase);
  ops.synchronize();

  GoldenResult r;
  r.file = g.label();
  r.scheme = position_scheme_name(g.scheme());
  r.dape = g.dape();
  r.batch = B;
  r.seq_len = N;
  r.heads = H;
  r.head_dim = D;
  r.mlp_width = g.reported_width();
  r.tensors.push_back(
      compare("out", download<double>(ops, out), g.values("out"), kGoldenTolerance));
  for (const auto& name : g.learned()) {
    const std::string key = "grad_" + name;
    if (!g.has(key)) continue;
    r.tensors.push_back(
        compare(key, download<double>(ops, grads.at(name)), g.values(key), kGoldenTolerance));
  }
  if (g.scheme() == PositionScheme::alibi) {
    std::vector<double> slopes(H);
    for (int h = 0; h < H; ++h) slopes[h] = am::alibi_slope<double>(h, H);
    r.tensors.push_back(
        compare("alibi_slopes", slopes, g.values("alibi_slopes"), kGoldenSlopeTolerance));
  }
  r.pass = std::all_of(r.tensors.begin(), r.tensors.end(),
                       [](const GoldenTensorResult& t) { return t.pass; });
  return r;
}

std::string format_golden_result(const GoldenResult& r) {
  std::string s = fmt::format("{}: {} {} DAPE, B={} N={} H={} D={} W={}: {}\n", r.file, r.scheme,
                              r.dape ? "with" : "without", r.batch, r.seq_len, r.heads, r.head_dim,
                              r.mlp_width, r.pass ? "PASS" : "FAIL");
  s += fmt::format("  {:<24} {:>12} {:>12} {:>12}  {}\n", "tensor", "max|err|", "max|ref|",
                   "tolerance", "result");
  for (const auto& t : r.tensors)
    s += fmt::format("  {:<24} {:>12.3e} {:>12.3e} {:>12.3e}  {}\n", t.name, t.max_abs_error,
                     t.ref_max_abs, t.tolerance, t.pass ? "ok" : "FAIL");
  return s;
}

}  // namespace dape
