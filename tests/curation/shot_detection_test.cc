// Shot detection acceptance: stitched real clips with known hard cuts and 0.6 s cross-dissolves (F1 at +-8
// frames), cityCC0's hard cut at frame 116, and the streaming detectors' invariants.
#include <algorithm>
#include <cstdio>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "curation_test_util.h"
#include "test_support.h"
#include "wfm/curation/shot_detection.h"

namespace wfm::curation {
namespace {

struct Score {
  int tp = 0, fn = 0;
};

// One-to-one greedy matching of detections to truth positions within `tol` frames.
Score Match(const std::vector<int64_t>& truth, std::vector<bool>& used, const std::vector<int64_t>& det, int tol) {
  Score s;
  for (int64_t t : truth) {
    int best = -1;
    int64_t best_d = tol + 1;
    for (size_t i = 0; i < det.size(); ++i) {
      if (used[i]) continue;
      int64_t d = std::abs(det[i] - t);
      if (d < best_d) {
        best_d = d;
        best = static_cast<int>(i);
      }
    }
    if (best >= 0) {
      used[best] = true;
      ++s.tp;
    } else {
      ++s.fn;
    }
  }
  return s;
}

double F1(int tp, int fp, int fn) { return tp == 0 ? 0.0 : 2.0 * tp / (2.0 * tp + fp + fn); }

TEST(ShotDetectionTest, StitchedHardCutsAndDissolves) {
  WFM_REQUIRE_FILE(wfm::testing::SharedPath("media/cityCC0.mpg"));
  std::string dir = wfm::testing::TempDir();
  std::string video = dir + "/stitched.mp4";
  // 36 shots of 2 s at 25 fps: 18 hard cuts and 17 dissolves of 15 frames (0.6 s).
  WFM_ASSERT_OK_AND_ASSIGN(auto truth, testing::WriteStitchedVideo(video, 256, 144, 36, 50, 15));
  WFM_ASSERT_OK_AND_ASSIGN(ShotResult r, DetectShots(video, ShotDetectorOptions{}));
  EXPECT_EQ(r.num_frames, truth.num_frames);
  std::vector<int64_t> det;
  for (const auto& t : r.transitions) det.push_back(t.start == t.end ? t.start : t.center());
  std::vector<bool> used(det.size(), false);
  Score cuts = Match(truth.cuts, used, det, 8);
  Score dis = Match(truth.dissolves, used, det, 8);
  int fp = static_cast<int>(std::count(used.begin(), used.end(), false));
  double cut_f1 = F1(cuts.tp, fp, cuts.fn), dis_f1 = F1(dis.tp, fp, dis.fn);
  std::string report;
  for (const auto& t : r.transitions) report += absl::StrCat(" ", t.type, "[", t.start, ",", t.end, ")");
  std::printf("hard cuts: %d/%zu found, dissolves: %d/%zu found, false positives: %d; F1 cut %.3f dissolve %.3f\n",
              cuts.tp, truth.cuts.size(), dis.tp, truth.dissolves.size(), fp, cut_f1, dis_f1);
  EXPECT_GE(cut_f1, 0.95) << "detections:" << report;
  std::printf("detections:%s\n", report.c_str());
  EXPECT_GE(dis_f1, 0.8) << "detections:" << report;
}

TEST(ShotDetectionTest, CityCutAtFrame116) {
  const std::string city = wfm::testing::SharedPath("media/cityCC0.mpg");
  WFM_REQUIRE_FILE(city);
  WFM_ASSERT_OK_AND_ASSIGN(ShotResult r, DetectShots(city, ShotDetectorOptions{}));
  EXPECT_EQ(r.num_frames, 190);
  EXPECT_NEAR(r.fps, 25.0, 1e-9);
  ASSERT_EQ(r.shots.size(), 2u) << ShotsToJson(r).dump();
  EXPECT_EQ(r.shots[0].start, 0);
  EXPECT_NEAR(r.shots[0].end, 116, 1);
  EXPECT_NEAR(r.shots[1].start, 116, 1);
  EXPECT_EQ(r.shots[1].end, 190);
}

}  // namespace
}  // namespace wfm::curation
