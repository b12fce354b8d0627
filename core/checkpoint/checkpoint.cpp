#include "core/checkpoint/checkpoint.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <set>
#include <vector>

#include "common/checksum.h"
#include "common/file_util.h"
#include "common/log.h"
#include "core/checkpoint/box.h"

namespace dape {

namespace fs = std::filesystem;

namespace {

constexpr const char* kManifest = "manifest.pb";

std::string shard_file_name(int world_rank) {
  return fmt::format("shard_{:05d}.bin", world_rank);
}

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

Box box_of(const checkpoint::TensorShard& s) {
  Box b;
  b.rank = s.offset_size();
  for (int i = 0; i < b.rank; ++i) {
    b.offset[i] = s.offset(i);
    b.extent[i] = i < s.shape_size() ? s.shape(i) : 0;
  }
  return b;
}

Shape shape_of(const checkpoint::TensorRecord& r) {
  Shape s;
  s.rank = r.shape_size();
  for (int i = 0; i < s.rank; ++i) s.dims[i] = r.shape(i);
  return s;
}

// The whole tensor's shape of a (possibly cut) parameter.
Shape global_shape(const ParamSpec& spec) {
  return spec.split.is_split() ? spec.split.global : spec.shape;
}

// The rank and step at which DAPE_FAULT_KILL_IN_SAVE asks for a kill, or {-1, -1}.
std::pair<int, int64_t> fault_kill_in_save() {
  const char* e = std::getenv("DAPE_FAULT_KILL_IN_SAVE");
  if (!e || !*e) return {-1, -1};
  int rank = -1;
  long long step = -1;
  if (std::sscanf(e, "%d:%lld", &rank, &step) != 2)
    fail("DAPE_FAULT_KILL_IN_SAVE='{}' is not RANK:STEP", e);
  return {rank, step};
}

// The pieces one rank writes: appended to its shard file and recorded in a partial manifest.
class PieceWriter {
 public:
  PieceWriter(const std::string& dir, int world_rank, bool kill_after_first)
      : dir_(dir), file_(shard_file_name(world_rank)), kill_after_first_(kill_after_first) {}

  // The box `global` of tensor `name`, taken from the box `local` of a local tensor of
  // `local_shape` whose element i is at src[i - src_first].
  void write(const std::string& name, const Shape& global_shape, const float* src,
             int64_t src_first, const Shape& local_shape, const Box& local, const Box& global) {
    if (!writer_) writer_ = std::make_unique<ShardWriter>(join_path(dir_, file_));
    buffer_.resize(static_cast<size_t>(global.numel()));
    const Shape piece = global.shape();
    copy_box(src, src_first, local_shape, local, buffer_.data(), 0, piece, Box::whole(piece));
    const size_t bytes = buffer_.size() * sizeof(float);
    const int64_t at = writer_->write(buffer_.data(), bytes);
    auto it = records_.find(name);
    if (it == records_.end()) {
      auto* rec = part_.add_tensors();
      rec->set_name(name);
      rec->set_dtype("float32");
      for (int i = 0; i < global_shape.rank; ++i) rec->add_shape(global_shape[i]);
      it = records_.emplace(name, rec).first;
    }
    auto* shard = it->second->add_shards();
    for (int i = 0; i < global.rank; ++i) {
      shard->add_offset(global.offset[i]);
      shard->add_shape(global.extent[i]);
    }
    shard->set_file(file_);
    shard->set_byte_offset(at);
    shard->set_byte_length(static_cast<int64_t>(bytes));
    shard->set_xxh64(xxh64(buffer_.data(), bytes));
    if (kill_after_first_) ::raise(SIGKILL);
  }

  // Fsyncs the shard (if anything was written) and returns the partial manifest.
  checkpoint::Manifest finish() {
    if (writer_) {
      writer_->close_synced();
      auto* f = part_.add_files();
      f->set_file(file_);
      f->set_bytes(writer_->bytes());
      f->set_xxh64(writer_->digest());
    }
    return std::move(part_);
  }

 private:
  std::string dir_, file_;
  bool kill_after_first_;
  std::unique_ptr<ShardWriter> writer_;
  checkpoint::Manifest part_;
  std::map<std::string, checkpoint::TensorRecord*> records_;
  std::vector<float> buffer_;
};

// Writes every piece this rank owns (see checkpoint.h) into `dir`.
checkpoint::Manifest write_owned_pieces(const std::string& dir, Ops& ops, const ParamStore& params,
                                        const AdamW* optimizer, const CheckpointPlace& place,
                                        int world_rank, bool kill_after_first) {
  PieceWriter out(dir, world_rank, kill_after_first);
  if (place.dp_rank == 0) {
    const std::vector<float> values = download<float>(ops, params.values());
    for (const auto& v : params.views()) {
      if (!v.spec.split.is_split() && place.tp_rank != 0) continue;
      for (const auto& seg : split_segments(v.spec.split, v.spec.shape))
        out.write(v.spec.name, global_shape(v.spec), values.data(), -v.offset, v.spec.shape,
                  seg.local, seg.global);
    }
  }
  const bool keeps_moments = optimizer && (optimizer->sharded() || place.dp_rank == 0);
  if (keeps_moments) {
    const int64_t begin = optimizer->shard_begin(), end = optimizer->shard_end();
    for (const auto& [prefix, moment] : {std::pair{"optim.m.", optimizer->m_shard()},
                                         std::pair{"optim.v.", optimizer->v_shard()}}) {
      const std::vector<float> kept = download<float>(ops, moment);
      for (const auto& v : params.views()) {
        if (!v.spec.split.is_split() && place.tp_rank != 0) continue;
        const int64_t n = v.spec.shape.numel();
        const int64_t lo = std::max(begin, v.offset) - v.offset;
        const int64_t hi = std::min(end, v.offset + n) - v.offset;
        if (lo >= hi) continue;
        const auto segments = split_segments(v.spec.split, v.spec.shape);
        for (const Box& local : boxes_of_range(v.spec.shape, lo, hi))
          for (const auto& seg : to_global(segments, local))
            out.write(prefix + v.spec.name, global_shape(v.spec), kept.data(), begin - v.offset,
                      v.spec.shape, seg.local, seg.global);
      }
    }
  }
  return out.finish();
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
                            const std::string& protect, const CheckpointPlace& place) {
  LocalCommunicator alone;
  Communicator& world = place.world ? *place.world : alone;
  const bool root = world.rank() == 0;
  const std::string root_dir = join_path(run_dir, "checkpoints");
  const std::string final_dir = join_path(root_dir, step_dir_name(state.step));
  std::string tmp_dir;
  if (root) {
    make_directories(root_dir);
    tmp_dir = final_dir + ".tmp" + std::to_string(::getpid());
    std::error_code ec;
    fs::remove_all(tmp_dir, ec);
    make_directories(tmp_dir);
  }
  tmp_dir = world.broadcast_bytes(tmp_dir, 0);

  const auto [kill_rank, kill_step] = fault_kill_in_save();
  const checkpoint::Manifest mine =
      write_owned_pieces(tmp_dir, ops, params, optimizer, place, world.rank(),
                         kill_rank == world.rank() && kill_step == state.step);
  std::string mine_bytes;
  if (!mine.SerializeToString(&mine_bytes))
    fail("cannot serialize the checkpoint pieces of rank {} for step {}", world.rank(), state.step);
  // Every rank's shard is written and fsynced once its pieces arrive here.
  const std::vector<std::string> parts = world.all_gather_bytes(mine_bytes);

  if (root) {
    checkpoint::Manifest m;
    m.set_step(state.step);
    m.set_samples_consumed(state.samples_consumed);
    m.set_config(config_text);
    m.set_loss(state.loss);
    m.set_created_unix(static_cast<int64_t>(std::time(nullptr)));
    m.set_dp(place.dp);
    m.set_tp(place.tp);
    m.set_zero_stage(place.zero_stage);
    m.set_vocab(place.vocab.vocab);
    m.set_padded_vocab(place.vocab.padded);
    for (const auto& [k, v] : state.rng) (*m.mutable_rng())[k] = v;
    // Records in the model's order, parameters first, then the moments.
    std::map<std::string, checkpoint::TensorRecord*> records;
    std::vector<std::string> prefixes = {""};
    if (optimizer) prefixes.insert(prefixes.end(), {"optim.m.", "optim.v."});
    for (const std::string& prefix : prefixes) {
      for (const auto& v : params.views()) {
        auto* rec = m.add_tensors();
        rec->set_name(prefix + v.spec.name);
        rec->set_dtype("float32");
        const Shape g = global_shape(v.spec);
        for (int i = 0; i < g.rank; ++i) rec->add_shape(g[i]);
        records[rec->name()] = rec;
      }
    }
    for (size_t r = 0; r < parts.size(); ++r) {
      checkpoint::Manifest part;
      DAPE_CHECK(part.ParseFromString(parts[r]), "unreadable checkpoint pieces from rank {}", r);
      for (const auto& t : part.tensors()) {
        auto it = records.find(t.name());
        DAPE_CHECK(it != records.end(), "rank {} wrote tensor '{}' that rank 0 does not have", r,
                   t.name());
        for (const auto& sh : t.shards()) *it->second->add_shards() = sh;
      }
      for (const auto& f : part.files()) *m.add_files() = f;
    }
    // The owners' pieces tile every tensor exactly once.
    for (const auto& t : m.tensors()) {
      int64_t covered = 0;
      for (const auto& sh : t.shards()) covered += box_of(sh).numel();
      DAPE_CHECK(covered == shape_of(t).numel(),
                 "the saved pieces of '{}' hold {} of its {} values", t.name(), covered,
                 shape_of(t).numel());
    }
    std::string bytes;
    if (!m.SerializeToString(&bytes))
      fail("cannot serialize the checkpoint manifest for step {}", state.step);
    write_file_atomic(join_path(tmp_dir, kManifest), bytes);
    fsync_path(tmp_dir);
    std::error_code ec;
    if (path_exists(final_dir)) fs::remove_all(final_dir, ec);
    fs::rename(tmp_dir, final_dir, ec);
    if (ec)
      fail("cannot move checkpoint '{}' into place as '{}': {}", tmp_dir, final_dir, ec.message());
    fsync_path(root_dir);
    write_file_atomic(join_path(root_dir, "latest"), step_dir_name(state.step) + "\n");
    prune(root_dir, keep_last, protect);
  }
  world.barrier();  // committed before any rank goes on (and may resume from it)
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

namespace {

// The shard files of one checkpoint, mapped on first use, and its pieces, verified on first read.
class PieceReader {
 public:
  explicit PieceReader(const CheckpointRef& ckpt) : ckpt_(ckpt) {
    for (const auto& f : ckpt.manifest.files()) sizes_[f.file()] = f.bytes();
  }

  // The values of piece `s` of tensor `name`, checked against the manifest.
  const float* data(const std::string& name, const checkpoint::TensorShard& s) {
    const Box box = box_of(s);
    auto size = sizes_.find(s.file());
    if (size == sizes_.end())
      fail(
          "checkpoint '{}': tensor '{}' piece {} refers to file '{}', which the manifest does not "
          "list",
          ckpt_.dir, name, box.str(), s.file());
    auto f = files_.find(s.file());
    if (f == files_.end()) {
      const std::string p = join_path(ckpt_.dir, s.file());
      if (!path_exists(p))
        fail("checkpoint '{}': shard file '{}' is missing; it holds tensor '{}' piece {}",
             ckpt_.dir, s.file(), name, box.str());
      MappedFile mf(p);
      if (static_cast<int64_t>(mf.size()) != size->second)
        fail(
            "checkpoint '{}': shard file '{}' has {} bytes, the manifest says {} (truncated?); it "
            "holds tensor '{}' piece {}",
            ckpt_.dir, s.file(), mf.size(), size->second, name, box.str());
      f = files_.emplace(s.file(), std::move(mf)).first;
    }
    if (s.byte_length() != box.numel() * static_cast<int64_t>(sizeof(float)) ||
        s.byte_offset() < 0 ||
        s.byte_offset() + s.byte_length() > static_cast<int64_t>(f->second.size()))
      fail(
          "checkpoint '{}': tensor '{}' piece {} has byte range [{}, +{}) in '{}' ({} bytes); "
          "expected {} bytes",
          ckpt_.dir, name, box.str(), s.byte_offset(), s.byte_length(), s.file(), f->second.size(),
          box.numel() * 4);
    const uint8_t* p = f->second.data() + s.byte_offset();
    if (verified_.insert({s.file(), s.byte_offset()}).second) {
      const uint64_t h = xxh64(p, static_cast<size_t>(s.byte_length()));
      if (h != s.xxh64())
        fail(
            "checkpoint '{}': tensor '{}' piece {} in '{}' (bytes {}..{}) fails its checksum: "
            "stored {}, computed {}",
            ckpt_.dir, name, box.str(), s.file(), s.byte_offset(),
            s.byte_offset() + s.byte_length(), hex64(s.xxh64()), hex64(h));
    }
    return reinterpret_cast<const float*>(p);
  }

  // Done with piece `s` for now: its pages leave memory (a later data() maps them in again), so
  // that loading holds one piece of the file at a time rather than all of it.
  void release(const checkpoint::TensorShard& s) {
    auto f = files_.find(s.file());
    if (f != files_.end())
      f->second.release(static_cast<size_t>(s.byte_offset()), static_cast<size_t>(s.byte_length()));
  }

 private:
  const CheckpointRef& ckpt_;
  std::map<std::string, int64_t> sizes_;
  std::map<std::string, MappedFile> files_;
  std::set<std::pair<std::string, int64_t>> verified_;
};

}  // namespace

TrainingState load_checkpoint(const CheckpointRef& ckpt, Ops& ops, ParamStore& params,
                              AdamW* optimizer, const VocabRows& vocab) {
  const auto& m = ckpt.manifest;
  std::map<std::string, const checkpoint::TensorRecord*> records;
  for (const auto& t : m.tensors()) records[t.name()] = &t;
  PieceReader reader(ckpt);

  // Elements [lo, hi) of the local tensor `v` (element i at dst[i - dst_first]) from the saved
  // global tensor `name`.
  auto load_range = [&](const std::string& name, const ParamView& v, float* dst, int64_t dst_first,
                        int64_t lo, int64_t hi) {
    auto it = records.find(name);
    if (it == records.end())
      fail("checkpoint '{}' has no tensor '{}' that this model needs", ckpt.dir, name);
    const auto& rec = *it->second;
    const Shape want = global_shape(v.spec), saved = shape_of(rec);
    bool same = want.rank == saved.rank;
    for (int i = 0; same && i < want.rank; ++i) {
      // The vocabulary rows may differ (their padding depends on the TP size).
      const bool vocab_rows = i == 0 && vocab.padded > 0 && want[0] == vocab.padded &&
                              saved[0] == m.padded_vocab() && m.vocab() == vocab.vocab &&
                              saved[0] >= vocab.vocab;
      same = want[i] == saved[i] || vocab_rows;
    }
    if (!same)
      fail("checkpoint '{}': tensor '{}' has shape {} in the checkpoint, the model expects {}",
           ckpt.dir, name, saved.str(), want.str());
    if (rec.dtype() != "float32")
      fail("checkpoint '{}': tensor '{}' is {}, expected float32", ckpt.dir, name, rec.dtype());
    const Box saved_box = Box::whole(saved);
    const auto segments = split_segments(v.spec.split, v.spec.shape);
    int64_t expected = 0, covered = 0;
    for (const Box& local : boxes_of_range(v.spec.shape, lo, hi)) {
      for (const auto& seg : to_global(segments, local)) {
        const Box need = intersect(seg.global, saved_box);
        expected += need.numel();
        for (const auto& sh : rec.shards()) {
          const Box piece = box_of(sh);
          if (piece.rank != need.rank)
            fail("checkpoint '{}': tensor '{}' has a piece {} of rank {}, the tensor has rank {}",
                 ckpt.dir, name, piece.str(), piece.rank, need.rank);
          const Box both = intersect(need, piece);
          if (both.empty()) continue;
          Box from = both, to = both;
          for (int i = 0; i < both.rank; ++i) {
            from.offset[i] = both.offset[i] - piece.offset[i];
            to.offset[i] = seg.local.offset[i] + (both.offset[i] - seg.global.offset[i]);
          }
          copy_box(reader.data(name, sh), 0, piece.shape(), from, dst, dst_first, v.spec.shape, to);
          reader.release(sh);
          covered += both.numel();
        }
      }
    }
    if (covered != expected)
      fail(
          "checkpoint '{}': the saved pieces of tensor '{}' cover {} of the {} values this rank "
          "needs (pieces missing from the manifest, or overlapping)",
          ckpt.dir, name, covered, expected);
  };

  // Values not in the checkpoint (vocabulary rows beyond those saved) keep their current ones.
  std::vector<float> values = download<float>(ops, params.values());
  std::set<std::string> used;
  for (const auto& v : params.views()) {
    load_range(v.spec.name, v, values.data(), -v.offset, 0, v.spec.shape.numel());
    used.insert(v.spec.name);
  }
  upload(ops, params.values(), values);
  if (optimizer) {
    const int64_t begin = optimizer->shard_begin(), end = optimizer->shard_end();
    for (const auto& [prefix, moment] : {std::pair{"optim.m.", optimizer->m_shard()},
                                         std::pair{"optim.v.", optimizer->v_shard()}}) {
      std::vector<float> kept = download<float>(ops, moment);
      for (const auto& v : params.views()) {
        const int64_t n = v.spec.shape.numel();
        const int64_t lo = std::max(begin, v.offset) - v.offset;
        const int64_t hi = std::min(end, v.offset + n) - v.offset;
        if (lo < hi) load_range(prefix + v.spec.name, v, kept.data(), begin - v.offset, lo, hi);
        used.insert(prefix + v.spec.name);
      }
      upload(ops, moment, kept);
    }
  }
  for (const auto& [name, rec] : records) {
    if (used.count(name) || (name.rfind("optim.", 0) == 0 && !optimizer)) continue;
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
