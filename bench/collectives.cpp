/*
 * bench/collectives: speed and determinism of the host all-reduce, run under mpirun:
 *
 *   mpirun -np 2 build/bench/collectives        (as root: --allow-run-as-root; --oversubscribe
 *                                                 for more ranks than cores)
 *
 * For float32 messages from 4 KiB to 64 MiB, each rank fills its buffer from its own seed and:
 *   - all-reduces it (blocking, MPI_Allreduce) several times: the result's XXH64 must be the
 *     same every time and on every rank ("same" columns), and its largest deviation from the
 *     sum in double, added in rank order, is printed (relative to the largest magnitude);
 *   - does the same with the non-blocking all-reduce (start + wait), and says whether it gives
 *     the blocking result's bits;
 *   - times both: mean seconds per call and the bus bandwidth 2·(p−1)/p · bytes / time.
 * The digests are printed too, so that two runs (or two machines) can be compared.
 * Then the overlap of one 16 MiB all-reduce with computation: the all-reduce alone, the work
 * alone (16 pieces of float arithmetic), and both with test() called between the pieces.
 *
 * Prints figures only; never fails on time. A difference in bits is reported, not hidden.
 */
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "common/checksum.h"
#include "common/rng.h"
#include "kernels/tensor.h"
#include "parallel/comm.h"

namespace dape {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Mean seconds per call of fn over at least min_seconds (the same decision on every rank: the
// slowest rank's clock decides, so every rank makes the same number of collective calls).
double time_per_call(Communicator& comm, const std::function<void()>& fn,
                     double min_seconds = 0.3) {
  fn();
  int64_t calls = 0;
  const auto start = Clock::now();
  for (;;) {
    fn();
    ++calls;
    const double elapsed = comm.all_reduce_max(seconds_since(start));
    if (elapsed >= min_seconds && calls >= 3) return elapsed / static_cast<double>(calls);
  }
}

std::vector<float> rank_values(int64_t n, int rank) {
  Rng rng(1000 + static_cast<uint64_t>(rank), 7);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<float>(rng.uniform(-1.0, 1.0));
  return v;
}

uint64_t digest(const std::vector<float>& v) {
  return xxh64(v.data(), v.size() * sizeof(float));
}

// Whether every rank holds the same `value`.
bool same_on_every_rank(Communicator& comm, uint64_t value) {
  const auto all = comm.all_gather_bytes(std::to_string(value));
  for (const auto& a : all)
    if (a != all[0]) return false;
  return true;
}

// Largest |got − exact| over the largest |exact|, exact = Σ in double in rank order.
double relative_error(const std::vector<float>& got, int64_t n, int ranks) {
  std::vector<double> exact(static_cast<size_t>(n), 0.0);
  for (int r = 0; r < ranks; ++r) {
    const auto v = rank_values(n, r);
    for (int64_t i = 0; i < n; ++i) exact[i] += v[i];
  }
  double err = 0, scale = 0;
  for (int64_t i = 0; i < n; ++i) {
    err = std::max(err, std::fabs(got[i] - exact[i]));
    scale = std::max(scale, std::fabs(exact[i]));
  }
  return err / scale;
}

void bench_size(Communicator& comm, int64_t n, bool print) {
  const int p = comm.size();
  const auto mine = rank_values(n, comm.rank());
  std::vector<float> buf;
  const Tensor t(nullptr, DType::f32, Shape{n});
  auto run = [&](bool nonblocking) {
    buf = mine;
    Tensor x = t;
    x.data = buf.data();
    if (nonblocking) {
      comm.start_all_reduce_sum(x)->wait();
    } else {
      comm.all_reduce_sum(x);
    }
  };
  const int repeats = 4;
  uint64_t blocking_digest = 0, nonblocking_digest = 0;
  bool blocking_repeats = true, nonblocking_repeats = true;
  for (int k = 0; k < repeats; ++k) {
    run(false);
    const uint64_t d = digest(buf);
    if (k == 0) blocking_digest = d;
    blocking_repeats = blocking_repeats && d == blocking_digest;
  }
  const double error = relative_error(buf, n, p);
  for (int k = 0; k < repeats; ++k) {
    run(true);
    const uint64_t d = digest(buf);
    if (k == 0) nonblocking_digest = d;
    nonblocking_repeats = nonblocking_repeats && d == nonblocking_digest;
  }
  const bool blocking_ranks = same_on_every_rank(comm, blocking_digest);
  const bool nonblocking_ranks = same_on_every_rank(comm, nonblocking_digest);
  const int64_t repeats_everywhere =
      static_cast<int64_t>(blocking_repeats) + static_cast<int64_t>(nonblocking_repeats);
  int64_t all_repeat = repeats_everywhere;
  comm.all_reduce_sum(&all_repeat, 1);
  const double t_blocking = time_per_call(comm, [&] { run(false); });
  const double t_nonblocking = time_per_call(comm, [&] { run(true); });
  if (!print) return;
  const double bytes = static_cast<double>(n) * sizeof(float);
  const double bus = 2.0 * (p - 1) / p * bytes;
  std::printf(
      "%9.0f KiB  %9.3f ms %7.2f GB/s  %9.3f ms %7.2f GB/s  %-4s %-4s %-4s %-4s"
      "  %.1e  %016llx %016llx\n",
      bytes / 1024, t_blocking * 1e3, bus / t_blocking / 1e9, t_nonblocking * 1e3,
      bus / t_nonblocking / 1e9, all_repeat == 2 * p ? "yes" : "NO", blocking_ranks ? "yes" : "NO",
      nonblocking_ranks ? "yes" : "NO", blocking_digest == nonblocking_digest ? "yes" : "no", error,
      static_cast<unsigned long long>(blocking_digest),
      static_cast<unsigned long long>(nonblocking_digest));
}

// Float arithmetic over a buffer of its own: the computation an all-reduce overlaps with.
void work_piece(std::vector<float>& w) {
  for (int pass = 0; pass < 8; ++pass)
    for (auto& x : w) x = x * 0.999f + 0.001f;
}

void bench_overlap(Communicator& comm, bool print) {
  const int64_t n = int64_t{1} << 22;
  auto mine = rank_values(n, comm.rank());
  std::vector<float> w(1 << 20, 1.0f);
  Tensor x(mine.data(), DType::f32, Shape{n});
  const int pieces = 16;
  const double t_comm = time_per_call(comm, [&] { comm.all_reduce_sum(x); });
  const double t_work = time_per_call(comm, [&] {
    for (int i = 0; i < pieces; ++i) work_piece(w);
  });
  const double t_both = time_per_call(comm, [&] {
    auto pending = comm.start_all_reduce_sum(x);
    for (int i = 0; i < pieces; ++i) {
      work_piece(w);
      pending->test();
    }
    pending->wait();
  });
  if (print)
    std::printf(
        "overlap, 16 MiB all-reduce with %d pieces of work: all-reduce %.2f ms, work "
        "%.2f ms, sum %.2f ms, overlapped %.2f ms (%.0f%% of the all-reduce hidden)\n",
        pieces, t_comm * 1e3, t_work * 1e3, (t_comm + t_work) * 1e3, t_both * 1e3,
        100.0 * (t_comm + t_work - t_both) / t_comm);
}

}  // namespace
}  // namespace dape

int main() {
  using namespace dape;
  auto world = make_world_communicator();
  const bool print = world->rank() == 0;
  if (print) {
    std::printf(
        "all-reduce over %d rank(s) (%s), float32; 'same' = bits equal over 4 calls, "
        "over ranks\n",
        world->size(), world->name().c_str());
    std::printf("%13s  %21s  %21s  %-4s %-4s %-4s %-4s  %-7s  %-16s %-16s\n", "size", "blocking",
                "non-blocking", "rep", "rk-b", "rk-n", "b=n", "error", "digest blocking",
                "digest non-blk");
  }
  for (int64_t n = int64_t{1} << 10; n <= int64_t{1} << 24; n <<= 2) bench_size(*world, n, print);
  bench_overlap(*world, print);
  return 0;
}
