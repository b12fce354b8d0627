#include "core/config/config.h"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <cctype>
#include <charconv>
#include <cmath>
#include <set>

#include "common/check.h"
#include "common/file_util.h"
#include "core/data/tokenizer.h"
#include "kernels/attention.h"
#include "kernels/cuda_backend.h"
#include "kernels/cuda_device.h"

namespace dape {

namespace pb = google::protobuf;

namespace {

// The dotted path of the field written on (0-based) `line` of text-format `text`, or of the
// last field before it when the line names none (the parser often stops one token late), found
// by tracking `name {` / `}` nesting; "" when there is no field at all.
std::string field_path_at_line(const std::string& text, int line) {
  std::vector<std::string> stack;
  std::string last_path, line_path;
  int cur = 0;
  for (size_t i = 0; i < text.size() && cur <= line; ++i) {
    const char c = text[i];
    if (c == '\n') {
      ++cur;
    } else if (c == '#') {
      while (i + 1 < text.size() && text[i + 1] != '\n') ++i;
    } else if (c == '"' || c == '\'') {
      for (++i; i < text.size() && text[i] != c && text[i] != '\n'; ++i)
        if (text[i] == '\\') ++i;
    } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t j = i;
      while (j < text.size() &&
             (std::isalnum(static_cast<unsigned char>(text[j])) || text[j] == '_'))
        ++j;
      std::string path;
      for (const auto& s : stack) path += s + ".";
      last_path = path + text.substr(i, j - i);
      if (cur == line && line_path.empty()) line_path = last_path;
      i = j - 1;
    } else if (c == '{' && cur < line) {
      const auto dot = last_path.rfind('.');
      stack.push_back(dot == std::string::npos ? last_path : last_path.substr(dot + 1));
    } else if (c == '}' && cur < line && !stack.empty()) {
      stack.pop_back();
    }
  }
  return line_path.empty() ? last_path : line_path;
}

class CollectErrors : public pb::io::ErrorCollector {
 public:
  CollectErrors(std::string source, const std::string& text)
      : source_(std::move(source)), input_(text) {}
  void AddError(int line, pb::io::ColumnNumber column, const std::string& message) override {
    if (!text_.empty()) text_ += "\n";
    const std::string field = field_path_at_line(input_, line);
    text_ += fmt::format("{}:{}:{}: {}{}", source_, line + 1, column + 1,
                         field.empty() ? "" : field + ": ", message);
  }
  void AddWarning(int line, pb::io::ColumnNumber column, const std::string& message) override {
    AddError(line, column, "warning: " + message);
  }
  const std::string& text() const { return text_; }

 private:
  std::string source_, text_;
  const std::string& input_;
};

// Records where each set field of `msg` was written, from the parser's location tree.
void record_origins(const pb::Message& msg, const pb::TextFormat::ParseInfoTree* tree,
                    const std::string& prefix, const std::string& source,
                    std::map<std::string, std::string>& origin) {
  const pb::Reflection* refl = msg.GetReflection();
  std::vector<const pb::FieldDescriptor*> fields;
  refl->ListFields(msg, &fields);
  for (const auto* f : fields) {
    const std::string path = prefix.empty() ? f->name() : prefix + "." + f->name();
    const int index = f->is_repeated() ? 0 : -1;
    auto loc = tree ? tree->GetLocation(f, index) : pb::TextFormat::ParseLocation();
    origin[path] = loc.line >= 0 ? fmt::format("{}:{}", source, loc.line + 1) : source;
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE && !f->is_repeated()) {
      record_origins(refl->GetMessage(msg, f), tree ? tree->GetTreeForNested(f, -1) : nullptr, path,
                     source, origin);
    }
  }
}

// dst <- every field set in src; singular messages merge recursively, everything else
// (scalars and whole repeated fields) is replaced.
void overlay(pb::Message* dst, const pb::Message& src) {
  const pb::Reflection* refl = src.GetReflection();
  std::vector<const pb::FieldDescriptor*> fields;
  refl->ListFields(src, &fields);
  for (const auto* f : fields) {
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE && !f->is_repeated()) {
      overlay(refl->MutableMessage(dst, f), refl->GetMessage(src, f));
    } else {
      std::unique_ptr<pb::Message> tmp(src.New());
      tmp->CopyFrom(src);
      refl->ClearField(dst, f);
      refl->SwapFields(dst, tmp.get(), {f});
    }
  }
}

LoadedConfig parse_text(const std::string& text, const std::string& source) {
  LoadedConfig cfg;
  CollectErrors errors(source, text);
  pb::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  pb::TextFormat::ParseInfoTree tree;
  parser.WriteLocationsTo(&tree);
  if (!parser.ParseFromString(text, &cfg.msg)) {
    fail("invalid config:\n{}", errors.text().empty() ? source + ": cannot parse" : errors.text());
  }
  record_origins(cfg.msg, &tree, "", source, cfg.origin);
  return cfg;
}

LoadedConfig load_file(const std::string& path, int depth) {
  if (depth > 16) fail("{}: `base` links nest deeper than 16 files (a cycle?)", path);
  if (!path_exists(path)) fail("config file '{}' does not exist", path);
  if (is_directory(path)) fail("config '{}' is a directory, expected a .pbtxt file", path);
  LoadedConfig cfg = parse_text(read_file(path), path);
  if (!cfg.msg.has_base()) return cfg;
  const std::string base_path = join_path(parent_path(path), cfg.msg.base());
  if (!path_exists(base_path))
    fail("{}: base: '{}' (resolved to '{}') does not exist", cfg.origin.at("base"), cfg.msg.base(),
         base_path);
  LoadedConfig merged = load_file(base_path, depth + 1);
  overlay(&merged.msg, cfg.msg);
  for (auto& [k, v] : cfg.origin) merged.origin[k] = v;
  merged.msg.clear_base();
  merged.origin.erase("base");
  return merged;
}

template <class T>
T parse_number(const std::string& s, const std::string& context, const char* type_name) {
  T v{};
  const char* b = s.data();
  const char* e = s.data() + s.size();
  auto [p, ec] = std::from_chars(b, e, v);
  if (ec != std::errc() || p != e || s.empty())
    fail("{}: '{}' is not a valid {}", context, s, type_name);
  return v;
}

bool parse_bool(const std::string& s, const std::string& context) {
  if (s == "true" || s == "1") return true;
  if (s == "false" || s == "0") return false;
  fail("{}: '{}' is not a boolean (true or false)", context, s);
}

void set_scalar(pb::Message* msg, const pb::FieldDescriptor* f, const std::string& value,
                const std::string& context) {
  const pb::Reflection* r = msg->GetReflection();
  const bool rep = f->is_repeated();
  switch (f->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32: {
      auto v = parse_number<int32_t>(value, context, "32-bit integer");
      rep ? r->AddInt32(msg, f, v) : r->SetInt32(msg, f, v);
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_INT64: {
      auto v = parse_number<int64_t>(value, context, "64-bit integer");
      rep ? r->AddInt64(msg, f, v) : r->SetInt64(msg, f, v);
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_UINT32: {
      auto v = parse_number<uint32_t>(value, context, "unsigned 32-bit integer");
      rep ? r->AddUInt32(msg, f, v) : r->SetUInt32(msg, f, v);
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_UINT64: {
      auto v = parse_number<uint64_t>(value, context, "unsigned 64-bit integer");
      rep ? r->AddUInt64(msg, f, v) : r->SetUInt64(msg, f, v);
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_DOUBLE: {
      auto v = parse_number<double>(value, context, "number");
      rep ? r->AddDouble(msg, f, v) : r->SetDouble(msg, f, v);
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_FLOAT: {
      auto v = parse_number<float>(value, context, "number");
      rep ? r->AddFloat(msg, f, v) : r->SetFloat(msg, f, v);
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_BOOL: {
      bool v = parse_bool(value, context);
      rep ? r->AddBool(msg, f, v) : r->SetBool(msg, f, v);
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_STRING:
      rep ? r->AddString(msg, f, value) : r->SetString(msg, f, value);
      break;
    case pb::FieldDescriptor::CPPTYPE_ENUM: {
      const auto* ev = f->enum_type()->FindValueByName(value);
      if (!ev) fail("{}: '{}' is not a value of {}", context, value, f->enum_type()->name());
      rep ? r->AddEnum(msg, f, ev) : r->SetEnum(msg, f, ev);
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_MESSAGE:
      fail("{}: '{}' is a message; set one of its fields instead", context, f->name());
  }
}

std::string field_names(const pb::Descriptor* d) {
  std::string s;
  for (int i = 0; i < d->field_count(); ++i) s += (i ? ", " : "") + d->field(i)->name();
  return s;
}

void fill_defaults(pb::Message* msg) {
  const pb::Reflection* r = msg->GetReflection();
  const pb::Descriptor* d = msg->GetDescriptor();
  for (int i = 0; i < d->field_count(); ++i) {
    const auto* f = d->field(i);
    if (f->is_repeated()) continue;
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      fill_defaults(r->MutableMessage(msg, f));
      continue;
    }
    if (r->HasField(*msg, f) || f->name() == "base") continue;
    switch (f->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_INT32:
        r->SetInt32(msg, f, f->default_value_int32());
        break;
      case pb::FieldDescriptor::CPPTYPE_INT64:
        r->SetInt64(msg, f, f->default_value_int64());
        break;
      case pb::FieldDescriptor::CPPTYPE_UINT32:
        r->SetUInt32(msg, f, f->default_value_uint32());
        break;
      case pb::FieldDescriptor::CPPTYPE_UINT64:
        r->SetUInt64(msg, f, f->default_value_uint64());
        break;
      case pb::FieldDescriptor::CPPTYPE_DOUBLE:
        r->SetDouble(msg, f, f->default_value_double());
        break;
      case pb::FieldDescriptor::CPPTYPE_FLOAT:
        r->SetFloat(msg, f, f->default_value_float());
        break;
      case pb::FieldDescriptor::CPPTYPE_BOOL:
        r->SetBool(msg, f, f->default_value_bool());
        break;
      case pb::FieldDescriptor::CPPTYPE_STRING:
        r->SetString(msg, f, f->default_value_string());
        break;
      case pb::FieldDescriptor::CPPTYPE_ENUM:
        r->SetEnum(msg, f, f->default_value_enum());
        break;
      default:
        break;
    }
  }
}

}  // namespace

std::string LoadedConfig::where(const std::string& path) const {
  auto it = origin.find(path);
  if (it != origin.end()) return it->second + ": " + path;
  return path + " (default)";
}

LoadedConfig load_config(const std::string& path, const std::vector<std::string>& overrides) {
  LoadedConfig cfg = load_file(path, 0);
  for (const auto& o : overrides) apply_override(cfg, o);
  return cfg;
}

LoadedConfig parse_config_text(const std::string& text, const std::string& source) {
  LoadedConfig cfg = parse_text(text, source);
  if (cfg.msg.has_base()) fail("{}: a stored config cannot have a `base`", source);
  return cfg;
}

void apply_override(LoadedConfig& cfg, const std::string& assignment) {
  const auto eq = assignment.find('=');
  const std::string context = "--set " + assignment;
  if (eq == std::string::npos || eq == 0)
    fail("{}: expected field.path=value, e.g. --set train.steps=100", context);
  const std::string path = assignment.substr(0, eq), value = assignment.substr(eq + 1);
  pb::Message* msg = &cfg.msg;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string name =
        path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    const pb::Descriptor* d = msg->GetDescriptor();
    const pb::FieldDescriptor* f = d->FindFieldByName(name);
    if (!f)
      fail("{}: {} has no field '{}' (its fields: {})", context,
           start == 0 ? std::string("the config") : path.substr(0, start - 1), name,
           field_names(d));
    if (dot == std::string::npos) {
      if (f->name() == "base") fail("{}: `base` can only be set in a config file", context);
      if (f->is_repeated()) {
        msg->GetReflection()->ClearField(msg, f);
        size_t s = 0;
        while (s <= value.size() && !value.empty()) {
          size_t c = value.find(',', s);
          set_scalar(msg, f, value.substr(s, c == std::string::npos ? std::string::npos : c - s),
                     context);
          if (c == std::string::npos) break;
          s = c + 1;
        }
      } else {
        set_scalar(msg, f, value, context);
      }
      cfg.origin[path] = context;
      return;
    }
    if (f->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE || f->is_repeated())
      fail("{}: '{}' is not a message, it has no field '{}'", context, path.substr(0, dot),
           path.substr(dot + 1));
    msg = msg->GetReflection()->MutableMessage(msg, f);
    start = dot + 1;
  }
}

void validate_config(const LoadedConfig& cfg, int world_size) {
  const config::Config& c = cfg.msg;
  auto bad = [&](const std::string& path, const std::string& why) {
    fail("{}: {}", cfg.where(path), why);
  };
  auto require_range = [&](const std::string& path, double v, double lo, double hi) {
    if (!(v >= lo && v <= hi) || std::isnan(v))
      bad(path, fmt::format("{} is out of range; expected {} to {}", v, lo, hi));
  };
  const auto& m = c.model();
  require_range("model.layers", m.layers(), 1, 4096);
  require_range("model.d_model", m.d_model(), 1, 1 << 16);
  require_range("model.heads", m.heads(), 1, 4096);
  if (m.d_model() % m.heads() != 0)
    bad("model.heads",
        fmt::format("{} heads do not divide model.d_model = {}", m.heads(), m.d_model()));
  PositionScheme scheme;
  if (!parse_position_scheme(m.position(), &scheme))
    bad("model.position",
        fmt::format("'{}' is not one of none|learned|rope|alibi|kerple|fire", m.position()));
  if (scheme == PositionScheme::rope && (m.d_model() / m.heads()) % 2 != 0)
    bad("model.position", fmt::format("rope needs an even head dimension, but d_model/heads = {}",
                                      m.d_model() / m.heads()));
  require_range("model.dape.mlp_width", m.dape().mlp_width(), 1, 4096);
  if (m.attention() != "reference" && m.attention() != "fused")
    bad("model.attention", fmt::format("'{}' is not one of reference|fused", m.attention()));
  require_range("model.vocab_size", m.vocab_size(), 0, 1 << 30);
  require_range("model.vocab_pad_multiple", m.vocab_pad_multiple(), 1, 1 << 16);
  require_range("model.max_positions", m.max_positions(), 1, 1 << 24);
  require_range("model.init_std", m.init_std(), 1e-12, 10);
  require_range("model.mlp_ratio", m.mlp_ratio(), 1, 64);
  require_range("model.rope_base", m.rope_base(), 1.0001, 1e12);
  require_range("model.kerple.clamp_min", m.kerple().clamp_min(), 1e-12, 1);
  require_range("model.fire.init_L", m.fire().init_l(), 1e-6, 1e9);
  require_range("model.fire.mlp_width", m.fire().mlp_width(), 1, 4096);
  const auto& act = m.fire().activation();
  if (act != "auto" && act != "relu" && act != "leaky_relu")
    bad("model.fire.activation", fmt::format("'{}' is not one of auto|relu|leaky_relu", act));

  const auto& t = c.train();
  require_range("train.steps", static_cast<double>(t.steps()), 1, 1e12);
  require_range("train.seq_len", t.seq_len(), 1, 1 << 24);
  require_range("train.micro_batch", t.micro_batch(), 1, 1 << 20);
  require_range("train.global_batch", t.global_batch(), 0, 1 << 24);
  require_range("train.lr", t.lr(), 0, 10);
  if (t.lr() <= 0) bad("train.lr", fmt::format("{} must be positive", t.lr()));
  require_range("train.min_lr", t.min_lr(), 0, t.lr());
  require_range("train.warmup_fraction", t.warmup_fraction(), 0, 1);
  require_range("train.warmup_steps", static_cast<double>(t.warmup_steps()), -1,
                static_cast<double>(t.steps()));
  require_range("train.weight_decay", t.weight_decay(), 0, 10);
  require_range("train.beta1", t.beta1(), 0, 0.999999);
  require_range("train.beta2", t.beta2(), 0, 0.999999999);
  require_range("train.adam_eps", t.adam_eps(), 1e-30, 1);
  require_range("train.grad_clip", t.grad_clip(), 0, 1e12);
  require_range("train.threads", t.threads(), 0, 4096);
  if (t.device() != "cpu" && t.device() != "cuda")
    bad("train.device", fmt::format("'{}' is not one of cpu|cuda", t.device()));
  CudaPrecision precision;
  if (!parse_cuda_precision(t.precision(), &precision))
    bad("train.precision", fmt::format("'{}' is not one of bf16|fp32", t.precision()));
  if (t.device() == "cuda") {
    // Whether a device is present is known only where the run starts: a config for a GPU job
    // can be checked on a machine without one, but not by a build that could never run it.
    const CudaDevices cuda = query_cuda_devices();
    if (!cuda.built_with_cuda)
      bad("train.device",
          fmt::format("'cuda' cannot be used: {}; use cpu (--device cpu) or a build with CUDA",
                      cuda.reason));
  }
  if (scheme == PositionScheme::learned && t.seq_len() > m.max_positions())
    bad("train.seq_len", fmt::format("{} exceeds model.max_positions = {} of the learned scheme",
                                     t.seq_len(), m.max_positions()));

  if (!(c.data().val_fraction() >= 0 && c.data().val_fraction() < 1))
    bad("data.val_fraction",
        fmt::format("{} is out of range; expected 0 to < 1", c.data().val_fraction()));

  const auto& p = c.parallel();
  require_range("parallel.tp", p.tp(), 1, 4096);
  require_range("parallel.zero_stage", p.zero_stage(), 0, 1);
  require_range("parallel.bucket_mb", p.bucket_mb(), 0, 1e6);
  if (world_size % p.tp() != 0)
    bad("parallel.tp",
        fmt::format("{} does not divide the {} process(es) of this run", p.tp(), world_size));
  if (m.heads() % p.tp() != 0)
    bad("parallel.tp", fmt::format("{} does not divide model.heads = {}", p.tp(), m.heads()));
  const int dp = world_size / p.tp();
  if (t.global_batch() != 0 && t.global_batch() % (t.micro_batch() * dp) != 0)
    bad("train.global_batch",
        fmt::format("{} is not a multiple of train.micro_batch ({}) × data-parallel ranks ({})",
                    t.global_batch(), t.micro_batch(), dp));

  require_range("checkpoint.interval", static_cast<double>(c.checkpoint().interval()), 0, 1e12);
  require_range("checkpoint.keep_last", c.checkpoint().keep_last(), 0, 1 << 20);

  const auto& e = c.eval();
  require_range("eval.interval", static_cast<double>(e.interval()), 0, 1e12);
  require_range("eval.last", e.last(), 1, 1 << 24);
  require_range("eval.max_chunks", e.max_chunks(), 0, 1 << 30);
  for (const char* field : {"eval.lengths", "eval.periodic_lengths"}) {
    const auto& lengths = std::string(field) == "eval.lengths" ? e.lengths() : e.periodic_lengths();
    for (int len : lengths) {
      require_range(field, len, 1, 1 << 24);
      if (scheme == PositionScheme::learned && len > m.max_positions())
        bad(field, fmt::format("{} exceeds model.max_positions = {} of the learned scheme", len,
                               m.max_positions()));
    }
  }
  const auto& prep = c.data().prepare();
  if (prep.input_size() > 0) {
    try {
      data::tokenizer_needs_training(prep.tokenizer());  // throws on a spec it cannot run
    } catch (const Error& err) {
      bad("data.prepare.tokenizer", err.what());
    }
    if (prep.format() != "auto" && prep.format() != "text" && prep.format() != "jsonl")
      bad("data.prepare.format", fmt::format("'{}' is not one of auto|text|jsonl", prep.format()));
    if (prep.text_field().empty())
      bad("data.prepare.text_field", "is empty; expected a field name");
    if (prep.on_bad_record() != "error" && prep.on_bad_record() != "skip")
      bad("data.prepare.on_bad_record",
          fmt::format("'{}' is not one of error|skip", prep.on_bad_record()));
    if (!(prep.val_fraction() >= 0 && prep.val_fraction() < 1))
      bad("data.prepare.val_fraction",
          fmt::format("{} is out of range; expected 0 <= value < 1", prep.val_fraction()));
    require_range("data.prepare.shard_tokens", static_cast<double>(prep.shard_tokens()), 1, 1e15);
    require_range("data.prepare.sp_train_bytes", static_cast<double>(prep.sp_train_bytes()), 1,
                  1e15);
  }
  require_range("log.interval", c.log().interval(), 1, 1 << 30);
  static const std::set<std::string> levels = {"trace", "debug", "info", "warn", "error"};
  if (!levels.count(c.log().level()))
    bad("log.level",
        fmt::format("'{}' is not one of trace|debug|info|warn|error", c.log().level()));
}

std::string resolved_text(const config::Config& msg) {
  config::Config copy = msg;
  copy.clear_base();
  fill_defaults(&copy);
  std::string out;
  pb::TextFormat::PrintToString(copy, &out);
  return out;
}

}  // namespace dape
