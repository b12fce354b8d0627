#include <gtest/gtest.h>

#include "core/data/byte_tokenizer.h"
#include "core/data/tokenizer.h"
#include "tests/unit/data_test_util.h"

namespace dape::data {
namespace {

TEST(ByteTokenizer, EveryByteIsItsOwnToken) {
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  ByteTokenizer t;
  std::vector<int32_t> ids = {256};  // encode appends
  t.encode(all, ids);
  ASSERT_EQ(ids.size(), 257u);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(ids[static_cast<size_t>(b) + 1], b);
  EXPECT_EQ(t.decode(std::span<const int32_t>(ids).subspan(1)), all);
  EXPECT_EQ(t.vocab_size(), 257);
  EXPECT_EQ(t.eod_id(), 256);
}

TEST(ByteTokenizer, EndOfDocumentIsShownOnlyWhenAsked) {
  ByteTokenizer t;
  std::vector<int32_t> ids;
  t.encode("ab", ids);
  ids.push_back(256);
  t.encode("c", ids);
  EXPECT_EQ(t.decode(ids), "abc");
  EXPECT_EQ(t.decode(ids, /*show_eod=*/true), "ab\n<|eod|>\nc");
}

TEST(ByteTokenizer, DecodeRejectsIdsOutsideVocabulary) {
  ByteTokenizer t;
  std::vector<int32_t> ids = {65, 257};
  test::expect_error([&] { t.decode(ids); }, {"257", "position 1", "[0, 257)"});
  ids = {-1};
  test::expect_error([&] { t.decode(ids); }, {"-1", "position 0"});
}

TEST(ByteTokenizer, DescribesItselfInTheManifest) {
  Dataset m;
  ByteTokenizer().describe(*m.mutable_tokenizer());
  EXPECT_EQ(m.tokenizer().kind(), "byte");
  EXPECT_EQ(m.tokenizer().eod_id(), 256);
  EXPECT_NE(tokenizer_from_manifest(m, "."), nullptr);
  m.mutable_tokenizer()->set_kind("wordpiece");  // a kind this build cannot run
  EXPECT_EQ(tokenizer_from_manifest(m, "."), nullptr);
}

TEST(TokenizerFactory, BuildsByteAndRejectsOthersNamingWhatIsSupported) {
  EXPECT_EQ(make_tokenizer("byte")->kind(), "byte");
  EXPECT_FALSE(tokenizer_needs_training("byte"));
  test::expect_error([] { make_tokenizer("gpt2"); },
                     {"'gpt2'", "supported: byte, sp:MODEL, train-sp:VOCAB"});
  test::expect_error([] { tokenizer_needs_training("Byte"); }, {"'Byte'", "supported: byte"});
}

}  // namespace
}  // namespace dape::data
