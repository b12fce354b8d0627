#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/check.h"
#include "core/config/config.h"
#include "kernels/cuda_device.h"
#include "tests/unit/test_util.h"

namespace dape {
namespace {

using test::error_of;

namespace fs = std::filesystem;

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("dape_config_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) {
    const auto p = (dir_ / name).string();
    std::ofstream(p) << text;
    return p;
  }
  fs::path dir_;
};

TEST_F(ConfigTest, DefaultsAndResolvedTextRoundTrip) {
  auto p = write("a.pbtxt", "model { layers: 2 }\n");
  LoadedConfig c = load_config(p);
  EXPECT_EQ(c.msg.model().layers(), 2);
  EXPECT_EQ(c.msg.model().d_model(), 768);
  const std::string text = resolved_text(c.msg);
  EXPECT_NE(text.find("d_model: 768"), std::string::npos);
  LoadedConfig again = parse_config_text(text, "resolved");
  EXPECT_EQ(resolved_text(again.msg), text);
}

TEST_F(ConfigTest, UnknownFieldNamesFileLineAndField) {
  auto p = write("bad.pbtxt", "run_dir: \"x\"\nmodel {\n  layerz: 3\n}\n");
  std::string msg = error_of([&] { load_config(p); });
  EXPECT_NE(msg.find(p + ":3:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("layerz"), std::string::npos) << msg;
}

TEST_F(ConfigTest, WrongTypeNamesLine) {
  auto p = write("bad.pbtxt", "train {\n  steps: \"many\"\n}\n");
  std::string msg = error_of([&] { load_config(p); });
  EXPECT_NE(msg.find(p + ":2:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("steps"), std::string::npos) << msg;
}

TEST_F(ConfigTest, MissingFileIsAnError) {
  std::string msg = error_of([&] { load_config(dir_ / "nope.pbtxt"); });
  EXPECT_NE(msg.find("does not exist"), std::string::npos) << msg;
}

TEST_F(ConfigTest, OutOfRangeValueNamesFieldLineValueAndRange) {
  auto p = write("range.pbtxt", "model {\n  layers: 2\n  heads: 0\n}\n");
  LoadedConfig c = load_config(p);
  std::string msg = error_of([&] { validate_config(c); });
  EXPECT_NE(msg.find(p + ":3: model.heads"), std::string::npos) << msg;
  EXPECT_NE(msg.find("0 is out of range"), std::string::npos) << msg;
}

TEST_F(ConfigTest, InconsistentHeadsNamesBothFields) {
  auto p = write("heads.pbtxt", "model {\n  d_model: 256\n  heads: 7\n}\n");
  LoadedConfig c = load_config(p);
  std::string msg = error_of([&] { validate_config(c); });
  EXPECT_NE(msg.find(p + ":3: model.heads"), std::string::npos) << msg;
  EXPECT_NE(msg.find("d_model = 256"), std::string::npos) << msg;
}

TEST_F(ConfigTest, BadEnumStringIsRejected) {
  auto p = write("pos.pbtxt", "model { position: \"rotary\" }\n");
  LoadedConfig c = load_config(p);
  std::string msg = error_of([&] { validate_config(c); });
  EXPECT_NE(msg.find("model.position"), std::string::npos) << msg;
  EXPECT_NE(msg.find("none|learned|rope|alibi|kerple|fire"), std::string::npos) << msg;
}

TEST_F(ConfigTest, SetOverridesScalarsAndRepeatedFields) {
  auto p = write("a.pbtxt", "eval { lengths: [1, 2, 3] }\n");
  LoadedConfig c =
      load_config(p, {"train.steps=77", "model.dape.enabled=true", "eval.lengths=128,256"});
  EXPECT_EQ(c.msg.train().steps(), 77);
  EXPECT_TRUE(c.msg.model().dape().enabled());
  ASSERT_EQ(c.msg.eval().lengths_size(), 2);
  EXPECT_EQ(c.msg.eval().lengths(1), 256);
  EXPECT_EQ(c.where("train.steps"), "--set train.steps=77: train.steps");
}

TEST_F(ConfigTest, SetErrorsAreClear) {
  auto p = write("a.pbtxt", "");
  EXPECT_NE(error_of([&] { load_config(p, {"model.headz=4"}); }).find("has no field 'headz'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { load_config(p, {"train.steps=abc"}); }).find("'abc' is not a valid"),
            std::string::npos);
  EXPECT_NE(error_of([&] { load_config(p, {"train=3"}); }).find("is a message"), std::string::npos);
  EXPECT_NE(error_of([&] { load_config(p, {"nonsense"}); }).find("field.path=value"),
            std::string::npos);
  EXPECT_NE(error_of([&] { load_config(p, {"model.dape.enabled=maybe"}); }).find("not a boolean"),
            std::string::npos);
}

TEST_F(ConfigTest, SetValueOutOfRangeIsReportedWithTheSetArgument) {
  auto p = write("a.pbtxt", "");
  LoadedConfig c = load_config(p, {"train.seq_len=-5"});
  std::string msg = error_of([&] { validate_config(c); });
  EXPECT_NE(msg.find("--set train.seq_len=-5: train.seq_len"), std::string::npos) << msg;
}

TEST_F(ConfigTest, BaseIsOverriddenFieldByFieldAndRepeatedFieldsReplaced) {
  write("base.pbtxt",
        "model { layers: 12 d_model: 768 dape { mlp_width: 16 } }\neval { lengths: [1, 2] }\n");
  auto p = write("child.pbtxt",
                 "base: \"base.pbtxt\"\nmodel { dape { enabled: true } }\neval { lengths: [5] }\n");
  LoadedConfig c = load_config(p);
  EXPECT_EQ(c.msg.model().layers(), 12);
  EXPECT_EQ(c.msg.model().dape().mlp_width(), 16);
  EXPECT_TRUE(c.msg.model().dape().enabled());
  ASSERT_EQ(c.msg.eval().lengths_size(), 1);
  EXPECT_EQ(c.msg.eval().lengths(0), 5);
  EXPECT_FALSE(c.msg.has_base());
  EXPECT_NE(c.where("model.layers").find("base.pbtxt:1"), std::string::npos)
      << c.where("model.layers");
  EXPECT_NE(c.where("model.dape.enabled").find("child.pbtxt:2"), std::string::npos);
}

TEST_F(ConfigTest, BaseCycleIsReported) {
  auto p = write("loop.pbtxt", "base: \"loop.pbtxt\"\n");
  EXPECT_NE(error_of([&] { load_config(p); }).find("deeper than 16"), std::string::npos);
}

TEST_F(ConfigTest, GlobalBatchMustBeAMultipleOfMicroBatch) {
  auto p = write("gb.pbtxt", "train { micro_batch: 4 global_batch: 10 }\n");
  LoadedConfig c = load_config(p);
  EXPECT_NE(error_of([&] { validate_config(c); }).find("not a multiple"), std::string::npos);
}

TEST_F(ConfigTest, ShippedConfigsLoadAndValidate) {
  const fs::path root = DAPE_SOURCE_DIR "/configs";
  int n = 0;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    if (e.path().extension() != ".pbtxt") continue;
    SCOPED_TRACE(e.path().string());
    LoadedConfig c = load_config(e.path().string());
    EXPECT_NO_THROW(validate_config(c));
    ++n;
  }
  EXPECT_GE(n, 14);
  LoadedConfig kd = load_config(DAPE_SOURCE_DIR "/configs/paper/125m_kerple_dape.pbtxt");
  EXPECT_EQ(kd.msg.model().position(), "kerple");
  EXPECT_TRUE(kd.msg.model().dape().enabled());
  EXPECT_EQ(kd.msg.model().dape().mlp_width(), 32);
  EXPECT_EQ(kd.msg.model().layers(), 12);
  EXPECT_EQ(kd.msg.train().steps(), 50000);
}

TEST_F(ConfigTest, DeviceAndPrecisionDefaultToCpuAndBf16) {
  LoadedConfig c = load_config(write("a.pbtxt", ""));
  EXPECT_EQ(c.msg.train().device(), "cpu");
  EXPECT_EQ(c.msg.train().precision(), "bf16");
  EXPECT_NO_THROW(validate_config(c));
  const std::string text = resolved_text(c.msg);
  EXPECT_NE(text.find("device: \"cpu\""), std::string::npos) << text;
  EXPECT_NE(text.find("precision: \"bf16\""), std::string::npos) << text;
  LoadedConfig fp32 = load_config(write("b.pbtxt", "train { precision: \"fp32\" }\n"));
  EXPECT_NO_THROW(validate_config(fp32));
}

TEST_F(ConfigTest, UnknownDeviceNamesFieldValueAndChoices) {
  auto p = write("dev.pbtxt", "train {\n  device: \"gpu\"\n}\n");
  LoadedConfig c = load_config(p);
  const std::string msg = error_of([&] { validate_config(c); });
  EXPECT_NE(msg.find(p + ":2: train.device: 'gpu' is not one of cpu|cuda"), std::string::npos)
      << msg;
  for (const char* bad : {"CPU", "cuda:0", ""}) {
    LoadedConfig o = load_config(write("a.pbtxt", ""), {std::string("train.device=") + bad});
    const std::string m = error_of([&] { validate_config(o); });
    EXPECT_NE(m.find(std::string("train.device: '") + bad + "' is not one of cpu|cuda"),
              std::string::npos)
        << m;
  }
}

TEST_F(ConfigTest, UnknownPrecisionNamesFieldValueAndChoices) {
  for (const char* bad : {"fp16", "BF16", "tf32", ""}) {
    LoadedConfig c = load_config(write("a.pbtxt", ""), {std::string("train.precision=") + bad});
    const std::string msg = error_of([&] { validate_config(c); });
    EXPECT_NE(msg.find(std::string("--set train.precision=") + bad + ": train.precision: '" + bad +
                       "' is not one of bf16|fp32"),
              std::string::npos)
        << msg;
  }
  // Refused whatever the device: a config is checked before it reaches a GPU.
  LoadedConfig cuda =
      load_config(write("a.pbtxt", ""), {"train.device=cuda", "train.precision=int8"});
  EXPECT_NE(error_of([&] { validate_config(cuda); }).find("train.precision: 'int8'"),
            std::string::npos);
}

// A build without CUDA refuses device cuda with the reason; a build with CUDA accepts it without
// a device present (a config for a GPU job can be checked anywhere; the run itself needs one).
TEST_F(ConfigTest, DeviceCudaNeedsABuildWithCuda) {
  auto p = write("gpu.pbtxt", "train {\n  device: \"cuda\"\n  precision: \"fp32\"\n}\n");
  LoadedConfig c = load_config(p);
  const CudaDevices cuda = query_cuda_devices();
  if (cuda.built_with_cuda) {
    EXPECT_NO_THROW(validate_config(c));
  } else {
    const std::string msg = error_of([&] { validate_config(c); });
    EXPECT_NE(msg.find(p + ":2: train.device: 'cuda' cannot be used: " + cuda.reason),
              std::string::npos)
        << msg;
    EXPECT_NE(msg.find("no CUDA backend"), std::string::npos) << msg;
    EXPECT_NE(msg.find("--device cpu"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace dape
