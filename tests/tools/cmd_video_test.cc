// `wfm info` and `wfm transcode` end to end: JSON per file, per-file failures with exit 1, usage errors with
// exit 2, and a transcode whose output ffprobe confirms (size, rate, frame count).
#include <ATen/ATen.h>

#include <nlohmann/json.hpp>

#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "test_support.h"
#include "wfm/core/video_io.h"

namespace wfm {
namespace {

std::string Quote(const std::string& s) { return "'" + s + "'"; }

std::string Wfm() { return Quote(testing::WfmTool()); }

TEST(WfmInfoTest, OneJsonObjectPerFileAndPerFileFailures) {
  const std::string tree = testing::SharedPath("media/tree.avi"), city = testing::SharedPath("media/cityCC0.mpg");
  WFM_REQUIRE_FILE(tree);
  std::string out;
  ASSERT_EQ(testing::RunCommand(Wfm() + " info --exact " + Quote(tree) + " " + Quote(city) + " 2>/dev/null",
                                &out), 0) << out;
  std::vector<std::string> lines = absl::StrSplit(out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << out;
  auto a = nlohmann::json::parse(lines[0]), b = nlohmann::json::parse(lines[1]);
  EXPECT_EQ(a["codec"], "cinepak");
  EXPECT_EQ(a["num_frames"], 68);  // ffprobe -count_frames
  EXPECT_EQ(a["num_frames_exact"], true);
  EXPECT_EQ(a["fps"], "1000000/66667");
  EXPECT_EQ(b["codec"], "mpeg2video");
  EXPECT_EQ(b["width"], 720);
  EXPECT_EQ(b["num_frames"], 190);

  const std::string bad = testing::TempDir() + "/bad.mp4";
  ASSERT_EQ(testing::RunCommand("head -c 5000 /dev/urandom > " + Quote(bad)), 0);
  std::string err;
  const int rc = testing::RunCommand(Wfm() + " info " + Quote(bad) + " " + Quote(tree) + " 2>&1", &err);
  EXPECT_EQ(rc, 1) << err;
  EXPECT_NE(err.find("\"error\""), std::string::npos) << err;
  EXPECT_NE(err.find("bad.mp4"), std::string::npos) << err;
  EXPECT_NE(err.find("cinepak"), std::string::npos) << "the good file is still probed: " << err;
}

TEST(WfmInfoTest, UsageErrors) {
  std::string out;
  EXPECT_EQ((testing::RunCommand(Wfm() + " info 2>&1", &out)), 2) << out;
  EXPECT_EQ((testing::RunCommand(Wfm() + " info --bogus x 2>&1", &out)), 2) << out;
  EXPECT_EQ((testing::RunCommand(Wfm() + " info --help", &out)), 0) << out;
  EXPECT_NE(out.find("--exact"), std::string::npos) << out;
}

TEST(WfmTranscodeTest, ResizesResamplesAndCuts) {
  const std::string city = testing::SharedPath("media/cityCC0.mpg");
  WFM_REQUIRE_FILE(city);
  const std::string out_path = testing::TempDir() + "/small.mp4";
  std::string log;
  ASSERT_EQ(testing::RunCommand(Wfm() + " transcode " + Quote(city) + " " + Quote(out_path) +
                                    " --size 160x0 --fps 12.5 --start 10 --frames 40 --crf 16 2>&1", &log), 0)
      << log;
  std::string probe;
  ASSERT_EQ(testing::RunCommand("ffprobe -v error -count_frames -select_streams v:0 -show_entries "
                                "stream=codec_name,width,height,r_frame_rate,nb_read_frames -of csv=p=0 " +
                                    Quote(out_path), &probe), 0);
  EXPECT_EQ(std::string(absl::StripAsciiWhitespace(probe.substr(0, probe.find('\n')))), "h264,160,90,25/2,40") << probe;
  // The first output frame is source frame 20 (start 10 at 12.5 fps = 0.8 s = frame 20 at 25 fps): of the source
  // frames 16..24 it is the closest one.
  DecodeOptions o;
  o.width = 160;
  o.start_frame = 16;
  o.num_frames = 9;
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor src, DecodeVideo(city, o));  // [9, 90, 160, 3]
  o.start_frame = 0;
  o.num_frames = 1;
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor got, DecodeVideo(out_path, o));  // [1, 90, 160, 3]
  at::Tensor mse = (src.to(at::kDouble) - got.to(at::kDouble)).pow(2).flatten(1).mean(1);  // [9]
  EXPECT_EQ(mse.argmin().item<int64_t>(), 4) << "MSE vs source frames 16..24: " << mse;
}

TEST(WfmTranscodeTest, FailuresAndUsage) {
  std::string out;
  const std::string dir = testing::TempDir();
  EXPECT_EQ((testing::RunCommand(Wfm() + " transcode " + Quote(dir + "/none.avi") + " " +
                                                Quote(dir + "/o.mp4") + " 2>&1", &out)), 1) << out;
  EXPECT_NE(out.find("none.avi"), std::string::npos) << out;
  EXPECT_EQ((testing::RunCommand(Wfm() + " transcode a.avi 2>&1", &out)), 2) << out;
  EXPECT_EQ((testing::RunCommand(Wfm() + " transcode a.avi b.mp4 --size 12y 2>&1", &out)), 2)
      << out;
  EXPECT_EQ((testing::RunCommand(Wfm() + " transcode a.avi b.mp4 --fps -3 2>&1", &out)), 2)
      << out;
}

}  // namespace
}  // namespace wfm
