#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <unordered_set>

#include "core/data/dataset.h"
#include "core/data/prepare.h"
#include "core/data/sample_order.h"
#include "core/data/train_batch_source.h"
#include "tests/unit/data_test_util.h"

namespace dape::data {
namespace {

using test::expect_error;
using test::ScratchDir;

std::vector<int64_t> epoch_order(const SampleOrder& o, int64_t epoch) {
  std::vector<int64_t> v(static_cast<size_t>(o.num_samples()));
  for (int64_t p = 0; p < o.num_samples(); ++p) v[static_cast<size_t>(p)] = o.permute(epoch, p);
  return v;
}

bool is_permutation_of_range(std::vector<int64_t> v) {
  std::sort(v.begin(), v.end());
  for (size_t i = 0; i < v.size(); ++i)
    if (v[i] != static_cast<int64_t>(i)) return false;
  return true;
}

TEST(SampleOrder, IsAPermutationForEverySizeEpochAndSeed) {
  for (int64_t s : {1, 2, 3, 4, 5, 15, 16, 17, 63, 64, 65, 1000, 1024, 4096, 4097}) {
    for (uint64_t seed : {0ull, 42ull, 0xFFFFFFFFFFFFFFFFull}) {
      const SampleOrder o(seed, s);
      for (int64_t e : {0, 1, 2, 1000000007}) {
        EXPECT_TRUE(is_permutation_of_range(epoch_order(o, e)))
            << "S " << s << " seed " << seed << " epoch " << e;
      }
    }
  }
}

TEST(SampleOrder, DiffersPerEpochAndSeedAndRepeatsPerConstruction) {
  const SampleOrder a(7, 1000), b(7, 1000), c(8, 1000);
  EXPECT_EQ(epoch_order(a, 0), epoch_order(b, 0));
  EXPECT_EQ(epoch_order(a, 3), epoch_order(b, 3));
  EXPECT_NE(epoch_order(a, 0), epoch_order(a, 1));
  EXPECT_NE(epoch_order(a, 0), epoch_order(c, 0));
  // Not just different: nearly unrelated (a random pair agrees at ~1 of 1000 positions).
  int same_epoch = 0, same_seed = 0;
  const auto e0 = epoch_order(a, 0), e1 = epoch_order(a, 1), c0 = epoch_order(c, 0);
  for (size_t p = 0; p < e0.size(); ++p) {
    same_epoch += e0[p] == e1[p];
    same_seed += e0[p] == c0[p];
  }
  EXPECT_LT(same_epoch, 10);
  EXPECT_LT(same_seed, 10);
}

// The order is part of the on-disk contract: a checkpoint stores only (seed, step), so a change
// to the permutation would silently change what every resumed run trains on. These values pin
// it; change them only together with a deliberate, announced change of the order.
TEST(SampleOrder, IsStableAcrossVersions) {
  const SampleOrder a(7, 1000), b(1234, 1000000007);
  EXPECT_EQ(
      (std::vector<int64_t>{a.permute(0, 0), a.permute(0, 1), a.permute(0, 2), a.permute(0, 3)}),
      (std::vector<int64_t>{118, 589, 123, 308}));
  EXPECT_EQ(
      (std::vector<int64_t>{a.permute(1, 0), a.permute(1, 1), a.permute(1, 2), a.permute(1, 3)}),
      (std::vector<int64_t>{543, 812, 400, 845}));
  EXPECT_EQ(
      (std::vector<int64_t>{b.permute(2, 0), b.permute(2, 1), b.permute(2, 2), b.permute(2, 3)}),
      (std::vector<int64_t>{745326513, 385478905, 845735172, 716412054}));
}

// For a uniformly random permutation of [0, S): E|π(p) − p| = E|π(p+1) − π(p)| ≈ S/3, and a
// 10×10 grid of (p, π(p)) buckets is filled evenly (χ² with 81 degrees of freedom, mean 81).
void expect_well_mixed(uint64_t seed, int64_t s, int64_t epoch) {
  const auto v = epoch_order(SampleOrder(seed, s), epoch);
  double displacement = 0, step = 0;
  int64_t fixed_points = 0;
  std::vector<double> grid(100, 0);
  for (int64_t p = 0; p < s; ++p) {
    displacement += std::abs(v[p] - p);
    if (p + 1 < s) step += std::abs(v[p + 1] - v[p]);
    fixed_points += v[p] == p;
    grid[static_cast<size_t>(10 * p / s * 10 + 10 * v[p] / s)] += 1;
  }
  displacement /= static_cast<double>(s) * s;
  step /= static_cast<double>(s - 1) * s;
  EXPECT_NEAR(displacement, 1.0 / 3, 0.01) << "S " << s << " seed " << seed;
  EXPECT_NEAR(step, 1.0 / 3, 0.01) << "S " << s << " seed " << seed;
  EXPECT_LT(fixed_points, 12) << "S " << s;  // Poisson(1): 12 or more has odds ~1e-9
  double chi2 = 0;
  for (int i = 0; i < 10; ++i)
    for (int j = 0; j < 10; ++j) {
      // Bucket sizes differ slightly when 10 does not divide S; use the exact expectation.
      const double rows = std::ceil((i + 1) * s / 10.0) - std::ceil(i * s / 10.0);
      const double cols = std::ceil((j + 1) * s / 10.0) - std::ceil(j * s / 10.0);
      const double e = rows * cols / s;
      chi2 += (grid[i * 10 + j] - e) * (grid[i * 10 + j] - e) / e;
    }
  EXPECT_LT(chi2, 150) << "S " << s << " seed " << seed;  // P(χ²₈₁ > 150) ≈ 4e-6
}

TEST(SampleOrder, IsStatisticallyWellMixed) {
  expect_well_mixed(1, 100000, 0);
  expect_well_mixed(2, 100000, 5);
  expect_well_mixed(3, 65537, 0);  // just above a power of 4: most cycle walking
  expect_well_mixed(4, 4097, 1);
}

TEST(SampleOrder, GlobalIndexWalksEpochs) {
  const SampleOrder o(11, 37);
  for (int64_t g = 0; g < 37 * 4; ++g) EXPECT_EQ(o.sample_at(g), o.permute(g / 37, g % 37));
  expect_error([&] { o.sample_at(-1); }, {"-1"});
  expect_error([&] { o.permute(0, 37); }, {"37", "[0, 37)"});
  expect_error([] { SampleOrder(1, 0); }, {">= 1", "0"});
}

TEST(SampleOrder, HandlesBooks3SizedEpochsInConstantMemory) {
  const int64_t s = 1000000007;  // ~10⁹ samples, not a power of anything
  const SampleOrder o(5, s);
  std::unordered_set<int64_t> seen;
  for (int64_t p = 0; p < 200000; ++p) {
    const int64_t v = o.permute(0, p * 4999);
    ASSERT_GE(v, 0);
    ASSERT_LT(v, s);
    seen.insert(v);
  }
  EXPECT_EQ(seen.size(), 200000u);  // distinct inputs, distinct outputs
  EXPECT_EQ(o.sample_at(3 * s + 12), o.permute(3, 12));
}

TEST(RankSlice, SlicesTileTheGlobalBatchForAnyWorldSize) {
  for (int64_t gb : {1, 2, 7, 8, 12, 64}) {
    for (int world : {1, 2, 3, 4, 8}) {
      for (int64_t step : {0, 1, 5}) {
        const IndexRange all = global_batch_range(step, gb);
        EXPECT_EQ(all.begin, step * gb);
        EXPECT_EQ(all.size(), gb);
        int64_t at = all.begin;
        for (int r = 0; r < world; ++r) {
          const IndexRange mine = rank_slice(step, gb, r, world);
          EXPECT_EQ(mine.begin, at) << "gb " << gb << " world " << world << " rank " << r;
          EXPECT_LE(mine.size(), gb / world + 1);
          EXPECT_GE(mine.size(), gb / world);
          at = mine.end;
        }
        EXPECT_EQ(at, all.end);
      }
    }
  }
  expect_error([] { rank_slice(0, 8, 4, 4); }, {"rank 4", "[0, 4)"});
  expect_error([] { global_batch_range(0, 0); }, {"size 0"});
}

// A training stream of `n` tokens whose token at offset t is t % 251 (so a window's position in
// the stream can be read off its content).
struct CountingStream {
  ScratchDir dir;
  std::unique_ptr<TokenDataset> ds;
  explicit CountingStream(int n) {
    std::string text;
    for (int t = 0; t < n - 1; ++t) text.push_back(static_cast<char>(t % 251));
    test::write_bytes(dir / "in.txt", text);
    PrepareOptions o;
    o.inputs = {dir / "in.txt"};
    o.out_dir = dir / "ds";
    o.val_fraction = 0;
    o.shard_tokens = 97;  // samples straddle shards
    o.show_progress = false;
    prepare_dataset(o);
    ds = std::make_unique<TokenDataset>(dir / "ds");
  }
};

TEST(TrainBatchSource, RowsAreTheOrderedSamplesShiftedByOne) {
  CountingStream c(1000);  // 999 bytes + end of document
  const TokenStream& stream = c.ds->train();
  ASSERT_EQ(stream.size(), 1000);
  const int64_t L = 16;
  TrainBatchSource src(stream, L, 99);
  EXPECT_EQ(src.num_samples(), (1000 - 1) / 16);  // 62
  EXPECT_EQ(count_samples(1000, 16), 62);
  const int64_t n = 150;  // more than an epoch
  std::vector<int32_t> in(n * L), tg(n * L);
  src.fill(40, n, in.data(), tg.data());
  std::vector<int32_t> all(1000);
  stream.read(0, 1000, all.data());
  for (int64_t i = 0; i < n; ++i) {
    const int64_t s = src.order().sample_at(40 + i);
    for (int64_t j = 0; j < L; ++j) {
      ASSERT_EQ(in[i * L + j], all[s * L + j]);
      ASSERT_EQ(tg[i * L + j], all[s * L + j + 1]);
    }
  }
  // The last sample reaches the end-of-document token at offset 62·16 = 992 < 999: every
  // sample lies inside the stream, and sample 61 ends at token 992.
  std::vector<int32_t> a(L), b(L);
  src.fill_sample(61, a.data(), b.data());
  EXPECT_EQ(b.back(), all[992]);
}

TEST(TrainBatchSource, RankSlicesReproduceTheSingleRankBatch) {
  CountingStream c(3000);
  const int64_t L = 8, gb = 12;
  TrainBatchSource src(c.ds->train(), L, 5);
  for (int64_t step : {0, 3, 31}) {  // step 31 crosses into the second epoch
    std::vector<int32_t> one_in(gb * L), one_tg(gb * L);
    src.fill(global_batch_range(step, gb), one_in.data(), one_tg.data());
    for (int world : {2, 3, 4}) {
      std::vector<int32_t> in, tg;
      for (int r = 0; r < world; ++r) {
        const IndexRange mine = rank_slice(step, gb, r, world);
        std::vector<int32_t> ri(mine.size() * L), rt(mine.size() * L);
        TrainBatchSource rank_src(c.ds->train(), L, 5);  // each rank builds its own
        rank_src.fill(mine, ri.data(), rt.data());
        in.insert(in.end(), ri.begin(), ri.end());
        tg.insert(tg.end(), rt.begin(), rt.end());
      }
      EXPECT_EQ(in, one_in) << "step " << step << " world " << world;
      EXPECT_EQ(tg, one_tg) << "step " << step << " world " << world;
    }
  }
}

TEST(TrainBatchSource, RejectsStreamsTooShortForOneSample) {
  CountingStream c(10);
  TrainBatchSource ok(c.ds->train(), 9, 1);
  EXPECT_EQ(ok.num_samples(), 1);
  expect_error([&] { TrainBatchSource s(c.ds->train(), 10, 1); },
               {"split 'train'", "10 tokens", "11 tokens"});
  expect_error([&] { TrainBatchSource s(c.ds->train(), 0, 1); }, {"sequence length 0"});
}

}  // namespace
}  // namespace dape::data
