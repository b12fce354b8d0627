#include "core/checkpoint/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <vector>

#include "common/checksum.h"
#include "common/file_util.h"
#include "common/log.h"

namespace dape {

namespace fs = std::filesystem;

namespace {

constexpr const char* kManifest = "manifest.pb";
constexpr const char* kShardFile = "shard_00000.bin";

std::string step_dir_name(int64_t step) {
  return fmt::format("step_{:08d}", step);
}

// Parses "step_00000040" -> 40; -1 for anything else.
int64_t parse_step_dir(const std::string& name) {
  if (name.size() != 13 || name.rfind("step_", 0) != 0) return -1;
  int64_t v = 0;
  for (char c : name.substr(5)) {
    if (c < '0' || c > '9') return -1;
    v = v * 10 + (c - '0');
  }
  return v;
}

class ShardWriter {
 public:
  explicit ShardWriter(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd_ < 0) fail("cannot create checkpoint shard '{}': {}", path, std::strerror(errno));
  }
  ~ShardWriter() {
    if (fd_ >= 0) ::close(fd_);
  }
  // Appends bytes; returns their offset in the file.
  int64_t write(const void* data, size_t n) {
    const int64_t at = offset_;
    const char* p = static_cast<const char*>(data);
    size_t done = 0;
    while (done < n) {
      ssize_t w = ::write(fd_, p + done, n - done);
      if (w < 0) {
        if (errno == EINTR) continue;
        fail("cannot write checkpoint shard '{}': {}", path_, std::strerror(errno));
      }
      done += static_cast<size_t>(w);
    }
    file_hash_.update(data, n);
    offset_ += static_cast<int64_t>(n);
    return at;
  }
  void close_synced() {
    if (::fsync(fd_) != 0) fail("fsync of '{}' failed: {}", path_, std::strerror(errno));
    ::close(fd_);
    fd_ = -1;
  }
  int64_t bytes() const { return offset_; }
  uint64_t digest() const { return file_hash_.digest(); }

 private:
  std::string path_;
  int fd_ = -1;
  int64_t offset_ = 0;
  Xxh64Stream file_hash_;
};

void add_tensor(checkpoint::Manifest& m, ShardWriter& w, const std::string& name,
                const Shape& shape, const std::vector<float>& data) {
  const int64_t at = w.write(data.data(), data.size() * sizeof(float));
  auto* rec = m.add_tensors();
  rec->set_name(name);
  rec->set_dtype("float32");
  auto* shard = rec->add_shards();
  for (int i = 0; i < shape.rank; ++i) {
    rec->add_shape(shape[i]);
    shard->add_offset(0);
    shard->add_shape(shape[i]);
  }
  shard->set_file(kShardFile);
  shard->set_byte_offset(at);
  shard->set_byte_length(static_cast<int64_t>(data.size() * sizeof(float)));
  shard->set_xxh64(xxh64(data.data(), data.size() * sizeof(float)));
}

std::vector<std::pair<int64_t, std::string>> complete_steps(const std::string& ckpt_root) {
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  if (!fs::is_directory(ckpt_root, ec)) return out;
  for (const auto& e : fs::directory_iterator(ckpt_root, ec)) {
    const std::string name = e.path().filename().string();
    const int64_t step = parse_step_dir(name);
    if (step < 0 || !e.is_directory()) continue;
    if (!path_exists(join_path(e.path().string(), kManifest))) {
      DAPE_LOG_WARN("ignoring incomplete checkpoint '{}' (no {})", e.path().string(), kManifest);
      continue;
    }
    out.emplace_back(step, e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

void prune(const std::string& ckpt_root, int keep_last, const std::string& protect) {
  // Leftovers of interrupted saves.
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(ckpt_root, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("step_", 0) == 0 && name.find(".tmp") != std::string::npos)
      fs::remove_all(e.path(), ec);
  }
  if (keep_last <= 0) return;
  // Keep the newest keep_last, and the protected one besides.
  auto steps = complete_steps(ckpt_root);
  const int64_t excess = static_cast<int64_t>(steps.size()) - keep_last;
  for (int64_t i = 0; i < excess; ++i) {
    if (!protect.empty() && fs::equivalent(steps[i].second, protect, ec)) continue;
    fs::remove_all(steps[i].second, ec);
    if (ec)
      DAPE_LOG_WARN("could not delete old checkpoint '{}': {}", steps[i].second, ec.message());
  }
}

}  // namespace

std::string save_checkpoint(const std::string& run_dir, Ops& ops, const ParamStore& params,
                            const AdamW* optimizer, const TrainingState& state,
                            const std::string& config_text, int keep_last,
                            const std::string& protect) {
  const std::string root = join_path(run_dir, "checkpoints");
  make_directories(root);
  const std::string final_dir = join_path(root, step_dir_name(state.step));
  const std::string tmp_dir = final_dir + ".tmp" + std::to_string(::getpid());
  std::error_code ec;
  fs::remove_all(tmp_dir, ec);
  make_directories(tmp_dir);

  checkpoint::Manifest m;
  m.set_step(state.step);
  m.set_samples_consumed(state.samples_consumed);
  m.set_config(config_text);
  m.set_loss(state.loss);
  m.set_created_unix(static_cast<int64_t>(std::time(nullptr)));
  for (const auto& [k, v] : state.rng) (*m.mutable_rng())[k] = v;
  {
    ShardWriter w(join_path(tmp_dir, kShardFile));
    for (const auto& v : params.views())
      add_tensor(m, w, v.spec.name, v.spec.shape, download<float>(ops, v.value));
    if (optimizer) {
      for (const auto& v : params.views()) {
        add_tensor(m, w, "optim.m." + v.spec.name, v.spec.shape,
                   download<float>(ops, optimizer->m().slice(v.offset, v.spec.shape)));
        add_tensor(m, w, "optim.v." + v.spec.name, v.spec.shape,
                   download<float>(ops, optimizer->v().slice(v.offset, v.spec.shape)));
      }
    }
    w.close_synced();
    auto* f = m.add_files();
    f->set_file(kShardFile);
    f->set_bytes(w.bytes());
    f->set_xxh64(w.digest());
  }
  std::string bytes;
  if (!m.SerializeToString(&bytes))
    fail("cannot serialize the checkpoint manifest for step {}", state.step);
  write_file_atomic(join_path(tmp_dir, kManifest), bytes);
  fsync_path(tmp_dir);
  if (path_exists(final_dir)) fs::remove_all(final_dir, ec);
  fs::rename(tmp_dir, final_dir, ec);
  if (ec)
    fail("cannot move checkpoint '{}' into place as '{}': {}", tmp_dir, final_dir, ec.message());
  fsync_path(root);
  write_file_atomic(join_path(root, "latest"), step_dir_name(state.step) + "\n");
  prune(root, keep_last, protect);
  return final_dir;
}

std::string find_latest_checkpoint(const std::string& run_dir) {
  const std::string root = join_path(run_dir, "checkpoints");
  const std::string latest = join_path(root, "latest");
  if (path_exists(latest)) {
    std::string name = read_file(latest);
    while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
    const std::string dir = join_path(root, name);
    if (parse_step_dir(name) >= 0 && path_exists(join_path(dir, kManifest))) return dir;
    DAPE_LOG_WARN("'{}' names '{}', which is not a complete checkpoint; looking for the newest one",
                  latest, name);
  }
  auto steps = complete_steps(root);
  return steps.empty() ? "" : steps.back().second;
}

CheckpointRef open_checkpoint(const std::string& path) {
  if (!path_exists(path)) fail("checkpoint '{}' does not exist", path);
  std::string dir = path;
  if (!path_exists(join_path(dir, kManifest))) {
    std::string found;
    if (path_exists(join_path(path, "checkpoints")))
      found = find_latest_checkpoint(path);
    else if (path_exists(join_path(path, "latest")))
      found = find_latest_checkpoint(parent_path(path + "/"));
    if (found.empty())
      fail("'{}' is not a checkpoint: it holds no {} and no complete checkpoints/step_* directory",
           path, kManifest);
    dir = found;
  }
  CheckpointRef ref;
  ref.dir = dir;
  const std::string mpath = join_path(dir, kManifest);
  const std::string bytes = read_file(mpath);
  if (!ref.manifest.ParseFromString(bytes))
    fail("checkpoint manifest '{}' is unreadable ({} bytes, not a valid manifest)", mpath,
         bytes.size());
  if (ref.manifest.version() != 1)
    fail("checkpoint manifest '{}' has version {}; this build reads version 1", mpath,
         ref.manifest.version());
  return ref;
}

TrainingState load_checkpoint(const CheckpointRef& ckpt, Ops& ops, ParamStore& params,
                              AdamW* optimizer) {
  const auto& m = ckpt.manifest;
  std::map<std::string, const checkpoint::TensorRecord*> records;
  for (const auto& t : m.tensors()) records[t.name()] = &t;
  std::map<std::string, MappedFile> files;
  for (const auto& f : m.files()) {
    const std::string p = join_path(ckpt.dir, f.file());
    if (!path_exists(p)) fail("checkpoint '{}': shard file '{}' is missing", ckpt.dir, f.file());
    MappedFile mf(p);
    if (static_cast<int64_t>(mf.size()) != f.bytes())
      fail("checkpoint '{}': shard file '{}' has {} bytes, the manifest says {} (truncated?)",
           ckpt.dir, f.file(), mf.size(), f.bytes());
    files.emplace(f.file(), std::move(mf));
  }

  auto load_into = [&](const std::string& name, const Tensor& dst, const Shape& shape) {
    auto it = records.find(name);
    if (it == records.end())
      fail("checkpoint '{}' has no tensor '{}' that this model needs", ckpt.dir, name);
    const auto& rec = *it->second;
    Shape saved;
    for (auto d : rec.shape()) saved.dims[saved.rank++] = d;
    if (!(saved == shape))
      fail("checkpoint '{}': tensor '{}' has shape {}, the model expects {}", ckpt.dir, name,
           saved.str(), shape.str());
    if (rec.dtype() != "float32")
      fail("checkpoint '{}': tensor '{}' is {}, expected float32", ckpt.dir, name, rec.dtype());
    if (rec.shards_size() != 1)
      fail(
          "checkpoint '{}': tensor '{}' is split into {} shards; this build reads single-shard "
          "tensors",
          ckpt.dir, name, rec.shards_size());
    const auto& s = rec.shards(0);
    auto f = files.find(s.file());
    if (f == files.end())
      fail("checkpoint '{}': tensor '{}' refers to unknown file '{}'", ckpt.dir, name, s.file());
    const int64_t expect_bytes = shape.numel() * 4;
    if (s.byte_length() != expect_bytes || s.byte_offset() < 0 ||
        s.byte_offset() + s.byte_length() > static_cast<int64_t>(f->second.size()))
      fail(
          "checkpoint '{}': tensor '{}' has byte range [{}, +{}) in '{}' ({} bytes); expected {} "
          "bytes",
          ckpt.dir, name, s.byte_offset(), s.byte_length(), s.file(), f->second.size(),
          expect_bytes);
    const uint8_t* p = f->second.data() + s.byte_offset();
    const uint64_t h = xxh64(p, static_cast<size_t>(s.byte_length()));
    if (h != s.xxh64())
      fail(
          "checkpoint '{}': tensor '{}' in '{}' (bytes {}..{}) fails its checksum: stored {}, "
          "computed {}",
          ckpt.dir, name, s.file(), s.byte_offset(), s.byte_offset() + s.byte_length(),
          hex64(s.xxh64()), hex64(h));
    std::vector<float> host(shape.numel());
    std::memcpy(host.data(), p, static_cast<size_t>(expect_bytes));
    ops.copy_from_host(dst, host.data(), DType::f32);
    records.erase(it);
  };

  for (const auto& v : params.views()) load_into(v.spec.name, v.value, v.spec.shape);
  if (optimizer) {
    for (const auto& v : params.views()) {
      load_into("optim.m." + v.spec.name, optimizer->m().slice(v.offset, v.spec.shape),
                v.spec.shape);
      load_into("optim.v." + v.spec.name, optimizer->v().slice(v.offset, v.spec.shape),
                v.spec.shape);
    }
  }
  for (const auto& [name, rec] : records) {
    if (name.rfind("optim.", 0) == 0 && !optimizer) continue;
    fail(
        "checkpoint '{}' holds tensor '{}' that this model does not have (a different model "
        "config?)",
        ckpt.dir, name);
  }

  TrainingState st;
  st.step = m.step();
  st.samples_consumed = m.samples_consumed();
  st.loss = m.loss();
  for (const auto& [k, v] : m.rng()) st.rng[k] = v;
  return st;
}

std::string inspect_checkpoint(const std::string& path, bool verify) {
  CheckpointRef ref = open_checkpoint(path);
  const auto& m = ref.manifest;
  std::string out = fmt::format(
      "checkpoint {}\n  step {}, samples consumed {}, loss {:.4f}\n  layout dp={} tp={} zero={}\n",
      ref.dir, m.step(), m.samples_consumed(), m.loss(), m.dp(), m.tp(), m.zero_stage());
  int64_t params = 0, moments = 0;
  for (const auto& t : m.tensors()) {
    int64_t n = 1;
    for (auto d : t.shape()) n *= d;
    (t.name().rfind("optim.", 0) == 0 ? moments : params) += n;
  }
  out += fmt::format("  {} tensors: {} parameter values, {} optimizer values\n", m.tensors_size(),
                     params, moments);
  std::vector<std::string> problems;
  std::map<std::string, MappedFile> files;
  for (const auto& f : m.files()) {
    const std::string p = join_path(ref.dir, f.file());
    std::string status;
    if (!path_exists(p)) {
      status = "MISSING";
    } else {
      MappedFile mf(p);
      if (static_cast<int64_t>(mf.size()) != f.bytes()) {
        status = fmt::format("SIZE MISMATCH ({} bytes on disk)", mf.size());
      } else if (verify) {
        status = xxh64(mf.data(), mf.size()) == f.xxh64() ? "checksum OK" : "CHECKSUM MISMATCH";
      } else {
        status = "present";
      }
      files.emplace(f.file(), std::move(mf));
    }
    if (status != "checksum OK" && status != "present")
      problems.push_back(f.file() + ": " + status);
    out += fmt::format("  file {} {} bytes xxh64 {}: {}\n", f.file(), f.bytes(), hex64(f.xxh64()),
                       status);
  }
  for (const auto& t : m.tensors()) {
    std::string shape;
    for (int i = 0; i < t.shape_size(); ++i) shape += (i ? ", " : "") + std::to_string(t.shape(i));
    std::string status;
    if (verify) {
      status = "OK";
      for (const auto& s : t.shards()) {
        auto f = files.find(s.file());
        if (f == files.end() ||
            s.byte_offset() + s.byte_length() > static_cast<int64_t>(f->second.size())) {
          status = "UNREADABLE";
        } else if (xxh64(f->second.data() + s.byte_offset(),
                         static_cast<size_t>(s.byte_length())) != s.xxh64()) {
          status = "CHECKSUM MISMATCH";
        }
      }
      if (status != "OK") problems.push_back(t.name() + ": " + status);
    }
    out += fmt::format("  {:<48} {:<8} [{}]{}\n", t.name(), t.dtype(), shape,
                       status.empty() ? "" : "  " + status);
  }
  if (!problems.empty()) {
    std::string msg = out + "problems:\n";
    for (const auto& p : problems) msg += "  " + p + "\n";
    throw Error(msg);
  }
  return out;
}

}  // namespace dape
