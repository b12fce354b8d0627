/*
 * Checkpoint benchmark: save and load throughput (MB/s) of a sharded checkpoint of the paper's
 * 125M DAPE-Kerple model (GPT-NeoX 125M shapes: 12 layers, d_model 768, 12 heads, vocabulary
 * 50257 padded to 50304) with its AdamW moments: parameters and both moments, about 1.5 GB.
 *
 *   bench/checkpoint                       # one process, into a temporary directory
 *   bench/checkpoint --dir /scratch/x --repeats 3
 *   mpirun -np 4 bench/checkpoint --tp 2 --zero   # every rank writes its own shard
 *
 * Save: from the first byte written to `latest` renamed, fsyncs included. Load: every rank
 * reads, verifies (XXH64 of each piece) and copies its pieces; "cold" after the shard files'
 * pages were dropped from the page cache (posix_fadvise DONTNEED, which may be ignored for
 * dirty pages), "warm" straight after. MB/s counts the checkpoint's bytes (the whole job's for
 * a save, the bytes this rank loads for a load) in 10^6 bytes.
 */
#include <fcntl.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "common/file_util.h"
#include "core/checkpoint/checkpoint.h"
#include "core/model/model_spec.h"
#include "core/optim/adamw_optimizer.h"
#include "kernels/cpu/cpu_ops.h"
#include "parallel/comm.h"
#include "parallel/topology.h"

using namespace dape;
namespace fs = std::filesystem;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

void drop_cache(const std::string& dir) {
  for (const auto& e : fs::directory_iterator(dir)) {
    const int fd = ::open(e.path().c_str(), O_RDONLY);
    if (fd < 0) continue;
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Sharded checkpoint save and load throughput for the 125M model"};
  std::string dir;
  int repeats = 2, tp = 1, threads = 1;
  bool zero = false;
  app.add_option("--dir", dir, "Directory to write into (default: a new one under /tmp)");
  app.add_option("--repeats", repeats, "Saves and loads to time")->check(CLI::PositiveNumber);
  app.add_option("--tp", tp, "Tensor-parallel size (under mpirun)")->check(CLI::PositiveNumber);
  app.add_flag("--zero", zero, "Shard the AdamW moments over the data-parallel ranks (ZeRO-1)");
  app.add_option("--threads", threads, "Threads for the CPU ops")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  auto world = make_world_communicator();
  ParallelGroups groups = make_parallel_groups(*world, tp);
  const bool root = world->rank() == 0;
  if (dir.empty()) {
    std::string made;
    if (root) {
      char tmpl[] = "/tmp/dape_bench_ckpt_XXXXXX";
      if (!::mkdtemp(tmpl)) return 1;
      made = tmpl;
    }
    dir = world->broadcast_bytes(made, 0);
  }

  ModelSpec s;
  s.layers = 12;
  s.d_model = 768;
  s.heads = 12;
  s.head_dim = 64;
  s.mlp_hidden = 3072;
  s.vocab = 50257;
  const int mult = tp > 1 ? 128 * tp : 64;
  s.padded_vocab = (s.vocab + mult - 1) / mult * mult;
  s.position = PositionScheme::kerple;
  s.dape = true;
  s.dape_width = 32;
  s.tp = tp;
  s.tp_rank = groups.tp->rank();

  CpuOps ops(DType::f32, threads);
  ParamStore params;
  s.register_params(params);
  params.allocate(ops, /*with_grads=*/true);
  params.initialize(ops, 1);
  AdamW optimizer(ops, params, {}, zero ? groups.dp.get() : nullptr);
  ops.fill(params.grads(), 1e-3);
  optimizer.step(1e-4, 1);  // non-zero moments

  CheckpointPlace place;
  place.world = world.get();
  place.dp = groups.dp->size();
  place.dp_rank = groups.dp->rank();
  place.tp = tp;
  place.tp_rank = groups.tp->rank();
  place.zero_stage = optimizer.sharded() ? 1 : 0;
  place.vocab = {s.vocab, s.padded_vocab};

  for (int r = 0; r < repeats; ++r) {
    TrainingState st;
    st.step = r + 1;
    world->barrier();
    auto t = std::chrono::steady_clock::now();
    const std::string step_dir =
        save_checkpoint(dir, ops, params, &optimizer, st, "", /*keep_last=*/1, "", place);
    const double save_s = seconds_since(t);
    const CheckpointRef ref = open_checkpoint(step_dir);
    int64_t bytes = 0;
    for (const auto& f : ref.manifest.files()) bytes += f.bytes();
    // This rank loads its own parameters and moments: their bytes.
    const int64_t mine =
        4 * (params.size() + 2 * (optimizer.shard_end() - optimizer.shard_begin()));
    if (root) drop_cache(step_dir);
    world->barrier();
    t = std::chrono::steady_clock::now();
    load_checkpoint(ref, ops, params, &optimizer, place.vocab);
    const double cold_s = world->all_reduce_max(seconds_since(t));
    t = std::chrono::steady_clock::now();
    load_checkpoint(ref, ops, params, &optimizer, place.vocab);
    const double warm_s = world->all_reduce_max(seconds_since(t));
    if (root)
      std::printf(
          "125M DAPE-Kerple, %d rank(s) (tp %d, dp %d%s), %.1f MB in %d shard file(s): save %.2f s "
          "= %.0f MB/s; load (rank 0: %.1f MB, slowest rank's time) cold %.2f s = %.0f MB/s, warm "
          "%.2f s = %.0f MB/s\n",
          world->size(), tp, place.dp, optimizer.sharded() ? ", ZeRO-1" : "", bytes / 1e6,
          ref.manifest.files_size(), save_s, bytes / 1e6 / save_s, mine / 1e6, cold_s,
          mine / 1e6 / cold_s, warm_s, mine / 1e6 / warm_s);
  }
  world->barrier();
  if (root && dir.rfind("/tmp/dape_bench_ckpt_", 0) == 0) fs::remove_all(dir);
  return 0;
}
