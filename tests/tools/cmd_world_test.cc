// `wfm world` end to end: writes decodable clips with caption and track sidecars; usage errors exit 2.
#include <nlohmann/json.hpp>

#include <filesystem>

#include "test_support.h"
#include "wfm/core/file_util.h"
#include "wfm/core/video_io.h"

namespace wfm {
namespace {

TEST(WfmWorldTest, WritesClipsWithSidecars) {
  const std::string dir = testing::TempDir() + "/w";
  std::string out;
  ASSERT_EQ(testing::RunCommand("'" + testing::WfmTool() + "' world --output '" + dir +
                                    "' --num-clips 2 --frames 9 --size 96x64 --fps 8 --seed 3",
                                &out),
            0)
      << out;
  for (const char* name : {"world_000000", "world_000001"}) {
    WFM_ASSERT_OK_AND_ASSIGN(VideoInfo info, ProbeVideo(dir + "/" + name + ".mp4", /*exact=*/true));
    EXPECT_EQ(info.width, 96);
    EXPECT_EQ(info.height, 64);
    EXPECT_EQ(info.num_frames, 9);
    EXPECT_DOUBLE_EQ(info.fps.value(), 8.0);
    WFM_ASSERT_OK_AND_ASSIGN(std::string caption, ReadFile(dir + "/" + name + ".txt"));
    EXPECT_NE(caption.find("a "), std::string::npos);
    WFM_ASSERT_OK_AND_ASSIGN(std::string tracks, ReadFile(dir + "/" + name + ".tracks.json"));
    auto j = nlohmann::json::parse(tracks);
    EXPECT_EQ(j["num_frames"], 9);
    EXPECT_EQ(j["objects"][0]["positions"].size(), 9u);
  }
}

TEST(WfmWorldTest, UsageErrorsExitTwo) {
  std::string out;
  EXPECT_EQ(testing::RunCommand("'" + testing::WfmTool() + "' world", &out), 2) << out;
  EXPECT_EQ(testing::RunCommand("'" + testing::WfmTool() + "' world --output /tmp/x --size 12", &out), 2) << out;
  EXPECT_EQ(testing::RunCommand("'" + testing::WfmTool() + "' world --output /tmp/x --max-objects 9", &out), 2) << out;
}

}  // namespace
}  // namespace wfm
