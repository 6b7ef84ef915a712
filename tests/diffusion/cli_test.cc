// `wfm diffusion ...` end to end: the forward command reproduces the reference fixtures; bad input gives a
// clear error and the right exit code.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "test_support.h"
#include "wfm/core/safetensors.h"

namespace {

using wfm::testing::MaxRelDiff;
using wfm::testing::RunCommand;
using wfm::testing::SharedPath;
using wfm::testing::TempDir;
using wfm::testing::WfmTool;

std::string Fixture(const std::string& file) { return SharedPath("fixtures/diffusion/" + file); }

TEST(DiffusionCli, ForwardReproducesBothFixtures) {
  for (const std::string name : {"dit_t2w", "dit_v2w"}) {
    WFM_REQUIRE_FILE(Fixture(name + ".weights.safetensors"));
    const std::string out = TempDir() + "/" + name + ".out.safetensors";
    std::string log;
    const int rc = RunCommand(WfmTool() + " diffusion forward --config " + Fixture(name + ".json") + " --weights " +
                                  Fixture(name + ".weights.safetensors") + " --input " +
                                  Fixture(name + ".io.safetensors") + " --output " + out + " --threads 1",
                              &log);
    ASSERT_EQ(rc, 0) << log;
    const at::Tensor got = wfm::ReadSafetensors(out).value().at("output");
    const at::Tensor ref = wfm::ReadSafetensors(Fixture(name + ".io.safetensors")).value().at("output");
    EXPECT_LE(MaxRelDiff(got, ref), 1e-4) << name;
  }
}

TEST(DiffusionCli, ForwardBadInputs) {
  WFM_REQUIRE_FILE(Fixture("dit_v2w.weights.safetensors"));
  const std::string dir = TempDir();
  std::string log;
  // Usage error: a required option is missing.
  EXPECT_EQ(RunCommand(WfmTool() + " diffusion forward --config " + Fixture("dit_v2w.json"), &log), 2) << log;
  // The Video2World network without its condition mask.
  wfm::TensorMap io = wfm::ReadSafetensors(Fixture("dit_v2w.io.safetensors")).value();
  io.erase("condition_video_input_mask");
  ASSERT_TRUE(wfm::WriteSafetensors(dir + "/io.safetensors", io).ok());
  EXPECT_EQ(RunCommand(WfmTool() + " diffusion forward --config " + Fixture("dit_v2w.json") + " --weights " +
                           Fixture("dit_v2w.weights.safetensors") + " --input " + dir + "/io.safetensors --output " +
                           dir + "/o.safetensors",
                       &log),
            1);
  EXPECT_NE(log.find("condition_video_input_mask"), std::string::npos) << log;
  // Text2World weights into the Video2World network: strict load names the mismatch.
  EXPECT_EQ(RunCommand(WfmTool() + " diffusion forward --config " + Fixture("dit_v2w.json") + " --weights " +
                           Fixture("dit_t2w.weights.safetensors") + " --input " + Fixture("dit_v2w.io.safetensors") +
                           " --output " + dir + "/o.safetensors",
                       &log),
            1);
  EXPECT_NE(log.find("x_embedder.proj.1.weight"), std::string::npos) << log;
}

}  // namespace
