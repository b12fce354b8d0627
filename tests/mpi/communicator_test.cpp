// The MPI communicator's collectives on host buffers, run under mpirun with 1, 2 and 3 ranks:
// values against sums computed here, sub-groups from split(), the non-blocking all-reduce, the
// max reductions, and determinism (the same bits on every rank and on every repetition).
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "common/checksum.h"
#include "common/rng.h"
#include "kernels/cpu/cpu_ops.h"
#include "parallel/comm.h"
#include "tests/mpi/mpi_test_util.h"

namespace dape {
namespace {

using test::world;

TEST(Communicator, WorldMatchesTheLauncher) {
  const char* size = std::getenv("OMPI_COMM_WORLD_SIZE");
  ASSERT_NE(size, nullptr) << "run under mpirun";
  EXPECT_EQ(world().size(), std::atoi(size));
  EXPECT_EQ(world().name(), "mpi");
}

TEST(Communicator, AllReduceSumsFloatTensorsAndScalars) {
  CpuOps ops(DType::f32, 1);
  const int r = world().rank(), n = world().size();
  auto x = ops.float_buffer({5});
  std::vector<float> host = {1.f * r, 2.f, -3.f * r, 0.5f, 100.f + r};
  upload(ops, x, host);
  world().all_reduce_sum(x.tensor());
  const auto got = download<float>(ops, x);
  const float tri = n * (n - 1) / 2.0f;
  EXPECT_EQ(got, (std::vector<float>{tri, 2.f * n, -3.f * tri, 0.5f * n, 100.f * n + tri}));
  EXPECT_EQ(world().all_reduce_sum(1.5), 1.5 * n);
  std::vector<int64_t> counts = {int64_t{r}, 1, int64_t{1} << 40};
  world().all_reduce_sum(counts.data(), 3);
  EXPECT_EQ(counts, (std::vector<int64_t>{int64_t{n} * (n - 1) / 2, n, (int64_t{1} << 40) * n}));
}

TEST(Communicator, AllGatherAndReduceScatterAreRankMajor) {
  CpuOps ops(DType::f64, 1);
  const int r = world().rank(), n = world().size();
  auto in = ops.float_buffer({2});
  upload(ops, in, std::vector<double>{10.0 * r, 10.0 * r + 1});
  auto out = ops.float_buffer({2 * n});
  world().all_gather(out, in);
  const auto gathered = download<double>(ops, out);
  for (int k = 0; k < n; ++k) {
    EXPECT_EQ(gathered[2 * k], 10.0 * k);
    EXPECT_EQ(gathered[2 * k + 1], 10.0 * k + 1);
  }
  // Every rank contributes 1..2n; rank r receives slice r of the sum.
  auto full = ops.float_buffer({2 * n});
  std::vector<double> ones(2 * n);
  std::iota(ones.begin(), ones.end(), 1.0);
  upload(ops, full, ones);
  auto slice = ops.float_buffer({2});
  world().reduce_scatter_sum(slice, full);
  EXPECT_EQ(download<double>(ops, slice),
            (std::vector<double>{(2.0 * r + 1) * n, (2.0 * r + 2) * n}));
}

TEST(Communicator, BroadcastAndBytes) {
  CpuOps ops(DType::f32, 1);
  const int r = world().rank(), n = world().size();
  auto x = ops.float_buffer({3});
  upload(ops, x, std::vector<float>{1.f * r, 2.f * r, 3.f * r});
  world().broadcast(x, n - 1);
  EXPECT_EQ(download<float>(ops, x),
            (std::vector<float>{1.f * (n - 1), 2.f * (n - 1), 3.f * (n - 1)}));
  const auto all = world().all_gather_bytes(std::string(static_cast<size_t>(r), 'a' + r));
  ASSERT_EQ(static_cast<int>(all.size()), n);
  for (int k = 0; k < n; ++k) EXPECT_EQ(all[k], std::string(static_cast<size_t>(k), 'a' + k));
  EXPECT_EQ(world().broadcast_bytes(r == 0 ? "from rank 0" : "", 0), "from rank 0");
  world().barrier();
}

// Rank r's values for a reduction test: deterministic, distinct per rank and per element.
template <class T>
std::vector<T> rank_values(int64_t n, int rank) {
  Rng rng(100 + static_cast<uint64_t>(rank), 3);
  std::vector<T> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<T>(rng.uniform(-1.0, 1.0));
  return v;
}

template <class T>
Tensor view(std::vector<T>& v) {
  return Tensor(v.data(), dtype_of<T>(), Shape{static_cast<int64_t>(v.size())});
}

// Whether every rank of `comm` passes the same text.
bool same_on_every_rank(Communicator& comm, const std::string& text) {
  const auto all = comm.all_gather_bytes(text);
  return std::all_of(all.begin(), all.end(), [&](const std::string& a) { return a == all[0]; });
}

TEST(Communicator, SplitMakesIndependentSubGroupsOrderedByKey) {
  const int r = world().rank(), n = world().size();
  // Even and odd ranks, each group ordered by descending world rank.
  auto sub = world().split(r % 2, n - r);
  const int expected_size = (n - r % 2 + 1) / 2;
  ASSERT_EQ(sub->size(), expected_size);
  int higher_same_parity = 0;
  for (int k = r + 1; k < n; ++k) higher_same_parity += k % 2 == r % 2;
  EXPECT_EQ(sub->rank(), higher_same_parity);
  EXPECT_EQ(sub->name(), world().name());
  // A sum over the sub-group only: Σ of world ranks with this parity.
  std::vector<double> x = {static_cast<double>(r)};
  sub->all_reduce_sum(view(x));
  double want = 0;
  for (int k = r % 2; k < n; k += 2) want += k;
  EXPECT_EQ(x[0], want);
  // The sub-group's rank 0 is the highest world rank of the parity.
  EXPECT_EQ(std::stoi(sub->broadcast_bytes(std::to_string(r), 0)), r % 2 + 2 * (expected_size - 1));
  // A split of a split, and the parent still works while both children live.
  auto single = sub->split(sub->rank(), 0);
  EXPECT_EQ(single->size(), 1);
  EXPECT_EQ(single->rank(), 0);
  EXPECT_EQ(world().all_reduce_sum(1.0), n);
  sub.reset();  // frees its MPI_Comm; the grandchild is a group of its own
  EXPECT_EQ(single->all_reduce_sum(2.5), 2.5);
  world().barrier();
}

TEST(Communicator, MaxOverRanks) {
  const int r = world().rank(), n = world().size();
  EXPECT_EQ(world().all_reduce_max(static_cast<double>(r) - 0.5), n - 1.5);
  EXPECT_EQ(world().all_reduce_max(-1.0 * r), 0.0);
  // Element-wise, against the max of every rank's values computed here.
  for (int64_t len : {int64_t{1}, int64_t{1000}}) {
    auto mine = rank_values<float>(len, r);
    world().all_reduce_max(view(mine));
    auto want = rank_values<float>(len, 0);
    for (int k = 1; k < n; ++k) {
      const auto other = rank_values<float>(len, k);
      for (int64_t i = 0; i < len; ++i) want[i] = std::max(want[i], other[i]);
    }
    EXPECT_EQ(mine, want) << len << " elements";
  }
  auto d = rank_values<double>(7, r);
  world().all_reduce_max(view(d));
  auto want = rank_values<double>(7, 0);
  for (int k = 1; k < n; ++k) {
    const auto other = rank_values<double>(7, k);
    for (size_t i = 0; i < want.size(); ++i) want[i] = std::max(want[i], other[i]);
  }
  EXPECT_EQ(d, want);
}

TEST(Communicator, NonBlockingAllReduceOverlapsAndCompletes) {
  const int r = world().rank(), n = world().size();
  // Three reductions in flight at once, of both float types, progressed by test() in turn.
  std::vector<float> a(100000, 1.0f + r);
  std::vector<double> b(3, 0.5 * r);
  std::vector<float> c(1, static_cast<float>(r));
  auto pa = world().start_all_reduce_sum(view(a));
  auto pb = world().start_all_reduce_sum(view(b));
  auto pc = world().start_all_reduce_sum(view(c));
  bool done_a = false, done_b = false;
  for (int spins = 0; !(done_a && done_b) && spins < 10000000; ++spins) {
    done_a = done_a || pa->test();
    done_b = done_b || pb->test();
  }
  EXPECT_TRUE(done_a && done_b);
  pc->wait();
  EXPECT_TRUE(pc->test());  // complete stays complete
  pa->wait();
  const float tri = n * (n - 1) / 2.0f;
  EXPECT_EQ(a.front(), n + tri);
  EXPECT_EQ(a.back(), n + tri);
  EXPECT_EQ(b, std::vector<double>(3, 0.5 * tri));
  EXPECT_EQ(c[0], tri);
  // Destroying an unfinished one waits for it: the buffer holds the sum afterwards.
  std::vector<double> d(5000, 2.0);
  world().start_all_reduce_sum(view(d)).reset();
  EXPECT_EQ(d, std::vector<double>(5000, 2.0 * n));
}

// The determinism the trainer relies on: for a given group and message size the all-reduce
// gives the same bits on every rank and on every call (both forms), and its values are the sum
// to float rounding (checked against the sum in double, in rank order, of every rank's values).
TEST(Communicator, AllReduceIsDeterministicAndEqualOnEveryRank) {
  const int r = world().rank(), n = world().size();
  for (int64_t len : {int64_t{3}, int64_t{4099}, int64_t{1} << 18, int64_t{1} << 22}) {
    const auto mine = rank_values<float>(len, r);
    std::vector<double> exact(static_cast<size_t>(len), 0.0);
    for (int k = 0; k < n; ++k) {
      const auto v = rank_values<float>(len, k);
      for (int64_t i = 0; i < len; ++i) exact[i] += v[i];
    }
    for (bool nonblocking : {false, true}) {
      uint64_t first = 0;
      for (int repeat = 0; repeat < 3; ++repeat) {
        auto x = mine;
        if (nonblocking) {
          world().start_all_reduce_sum(view(x))->wait();
        } else {
          world().all_reduce_sum(view(x));
        }
        const uint64_t digest = xxh64(x.data(), x.size() * sizeof(float));
        if (repeat == 0) {
          first = digest;
          double err = 0;
          for (int64_t i = 0; i < len; ++i) err = std::max(err, std::fabs(x[i] - exact[i]));
          // n − 1 float additions of values below n in magnitude.
          EXPECT_LE(err, n * n * 6e-8) << len << " elements";
        }
        EXPECT_EQ(digest, first) << len << " elements, repeat " << repeat
                                 << (nonblocking ? ", non-blocking" : "");
      }
      EXPECT_TRUE(same_on_every_rank(world(), std::to_string(first)))
          << len << " elements" << (nonblocking ? ", non-blocking" : "");
    }
  }
}

}  // namespace
}  // namespace dape
