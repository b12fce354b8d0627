// data.prepare: a run prepares its dataset when data.path holds none, uses an existing one as it
// is, and refuses one prepared with another tokenizer than the config asks for.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/config/config.h"
#include "core/data/dataset_manifest.h"
#include "core/train/dataset_preparation.h"
#include "tests/unit/data_test_util.h"

namespace dape {
namespace {

using test::expect_error;
using test::ScratchDir;

std::string corpus(int lines) {
  static const char* words[] = {"in", "the", "beginning", "was", "word", "and", "light", "said"};
  std::string s;
  for (int i = 0; i < lines; ++i) {
    for (int k = 0; k < 9; ++k) s += std::string(k ? " " : "") + words[(i * 7 + k * 3) % 8];
    s += ".\n";
  }
  return s;
}

LoadedConfig config_for(const std::string& data_section) {
  LoadedConfig c = parse_config_text("data { " + data_section + " }\n", "test.pbtxt");
  validate_config(c);
  return c;
}

TEST(DatasetPreparation, PreparesOnceThenUsesTheDatasetAsItIs) {
  ScratchDir dir;
  test::write_bytes(dir / "corpus.txt", corpus(400));
  const std::string data = "path: '" + (dir / "ds") + "' prepare { input: '" +
                           (dir / "corpus.txt") +
                           "' tokenizer: 'train-sp:300' val_fraction: 0.05 }";
  prepare_dataset_if_missing(config_for(data), false);
  const data::Dataset m = data::load_manifest(dir / "ds");
  EXPECT_EQ(m.tokenizer().spec(), "train-sp:300");
  EXPECT_EQ(m.vocab_size(), 300);
  EXPECT_DOUBLE_EQ(m.val_fraction(), 0.05);
  ASSERT_EQ(m.sources_size(), 1);
  EXPECT_EQ(m.sources(0), dir / "corpus.txt");

  // A second run finds it and leaves it alone, even with the input gone.
  const auto written = std::filesystem::last_write_time(dir / "ds/dataset.pbtxt");
  std::filesystem::remove(dir / "corpus.txt");
  prepare_dataset_if_missing(config_for(data), false);
  EXPECT_EQ(std::filesystem::last_write_time(dir / "ds/dataset.pbtxt"), written);

  // sp:MODEL matches a dataset made with that very model file (by checksum).
  std::filesystem::copy_file(dir / "ds/tokenizer.model", dir / "copy.model");
  prepare_dataset_if_missing(config_for("path: '" + (dir / "ds") + "' prepare { input: 'x' " +
                                        "tokenizer: 'sp:" + (dir / "copy.model") + "' }"),
                             false);
}

TEST(DatasetPreparation, ADatasetWithAnotherTokenizerIsAnErrorNamingBoth) {
  ScratchDir dir;
  test::write_bytes(dir / "corpus.txt", corpus(400));
  const std::string path = "path: '" + (dir / "ds") + "' ";
  const std::string input = "input: '" + (dir / "corpus.txt") + "' ";
  prepare_dataset_if_missing(config_for(path + "prepare { " + input + "tokenizer: 'byte' }"),
                             false);
  expect_error(
      [&] {
        prepare_dataset_if_missing(
            config_for(path + "prepare { " + input + "tokenizer: 'train-sp:300' }"), false);
      },
      {"test.pbtxt:1: data.prepare.tokenizer", "asks for tokenizer 'train-sp:300'",
       "prepared with tokenizer byte", dir / "ds"});

  prepare_dataset_if_missing(
      config_for("path: '" + (dir / "sp") + "' prepare { " + input + "tokenizer: 'train-sp:300' }"),
      false);
  expect_error(
      [&] {
        prepare_dataset_if_missing(config_for("path: '" + (dir / "sp") + "' prepare { " + input +
                                              "tokenizer: 'train-sp:320' }"),
                                   false);
      },
      {"'train-sp:320'", "prepared with tokenizer train-sp:300"});
  expect_error(
      [&] {
        prepare_dataset_if_missing(config_for("path: '" + (dir / "sp") + "' prepare { " + input +
                                              "tokenizer: 'train-sp:300' sp_train_bytes: 1000 }"),
                                   false);
      },
      {"trained on at most 1000 bytes", "trained on at most 268435456 bytes"});
  test::write_bytes(dir / "other.model", read_file(dir / "sp/tokenizer.model") + "x");
  expect_error(
      [&] {
        prepare_dataset_if_missing(config_for(path + "prepare { " + input +
                                              "tokenizer: 'sp:" + (dir / "other.model") + "' }"),
                                   false);
      },
      {"sp:" + (dir / "other.model"), "prepared with tokenizer byte"});
}

TEST(DatasetPreparation, WithoutInputsNothingIsPrepared) {
  ScratchDir dir;
  prepare_dataset_if_missing(config_for("path: '" + (dir / "ds") + "'"), false);
  EXPECT_FALSE(std::filesystem::exists(dir / "ds"));
}

TEST(DatasetPreparation, ConfigValuesAreCheckedWithTheirField) {
  auto check = [](const std::string& prepare) {
    return test::error_of([&] { config_for("path: 'ds' prepare { input: 'a' " + prepare + " }"); });
  };
  EXPECT_NE(check("tokenizer: 'gpt2'").find("data.prepare.tokenizer: unknown tokenizer 'gpt2'"),
            std::string::npos);
  EXPECT_NE(check("tokenizer: 'train-sp:7'").find("out of range"), std::string::npos);
  EXPECT_NE(check("val_fraction: 1").find("data.prepare.val_fraction"), std::string::npos);
  EXPECT_NE(check("format: 'csv'").find("data.prepare.format"), std::string::npos);
  EXPECT_NE(check("sp_train_bytes: 0").find("data.prepare.sp_train_bytes"), std::string::npos);
  EXPECT_EQ(check("tokenizer: 'train-sp:4096'"), "");
}

}  // namespace
}  // namespace dape
