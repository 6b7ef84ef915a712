// Pluggable TorchScript models, scripted here with Python's torch: a TransNetV2-style detector (windowing,
// thresholds, transitions), a captioner returning strings, a quality scorer (aesthetic_score + filter) and an
// embedder feeding semantic dedup. Also sidecar captions.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "curation_test_util.h"
#include "test_support.h"
#include "wfm/core/file_util.h"
#include "wfm/curation/analysis.h"
#include "wfm/curation/dedup.h"
#include "wfm/curation/models.h"
#include "wfm/curation/shot_detection.h"

namespace wfm::curation {
namespace {
namespace fs = std::filesystem;

constexpr const char* kScript = R"PY(
import sys, torch
out = sys.argv[1]

class TransNet(torch.nn.Module):
    # uint8 [B, T, 27, 48, 3] -> transition probability [B, T, 1] from the mean frame difference.
    def forward(self, x):
        f = x.float()
        d = (f[:, 1:] - f[:, :-1]).abs().mean(dim=(2, 3, 4))
        d = torch.cat([torch.zeros_like(d[:, :1]), d], dim=1)
        return torch.sigmoid((d - 25.0) / 2.0).unsqueeze(-1)

class Captioner(torch.nn.Module):
    def forward(self, x):
        m = float(x.float().mean())
        word = "bright" if m > 100.0 else "dark"
        return word + " scene, " + str(x.shape[0]) + " frames"

class Scorer(torch.nn.Module):
    def forward(self, x):
        return x.mean(dim=(1, 2, 3)) * 10.0

class Embedder(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)

for name, m in [("transnet", TransNet()), ("captioner", Captioner()), ("scorer", Scorer()), ("embedder", Embedder())]:
    torch.jit.script(m).save(out + "/" + name + ".pt")
)PY";

class ModelsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!testing::HavePythonTorch()) return;
    dir_ = new std::string(wfm::testing::TempDir());
    ASSERT_TRUE(WriteFileAtomically(*dir_ + "/make.py", kScript).ok());
    ASSERT_EQ(wfm::testing::RunCommand("/usr/bin/python3 " + *dir_ + "/make.py " + *dir_), 0);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (!dir_) GTEST_SKIP() << "needs /usr/bin/python3 with torch to script the test models";
    city_ = wfm::testing::SharedPath("media/cityCC0.mpg");
    WFM_REQUIRE_FILE(city_);
  }
  static std::string* dir_;
  std::string city_;
};
std::string* ModelsTest::dir_ = nullptr;

TEST_F(ModelsTest, TransNetV2DetectorWindowsAndThreshold) {
  ShotDetectorOptions o;
  o.transnet.model_path = *dir_ + "/transnet.pt";  // method "auto" -> transnetv2
  WFM_ASSERT_OK_AND_ASSIGN(ShotResult r, DetectShots(city_, o));
  ASSERT_EQ(r.transitions.size(), 1u) << ShotsToJson(r).dump();
  // The model fires on the first frame of the new shot; upstream _get_scenes drops that frame.
  EXPECT_EQ(r.transitions[0].start, 116);
  EXPECT_EQ(r.transitions[0].end, 117);
  EXPECT_EQ(r.transitions[0].type, "learned");
  ASSERT_EQ(r.shots.size(), 2u);
  EXPECT_EQ(r.shots[1].start, 117);
  // Threshold above every probability: no transition.
  o.transnet.threshold = 0.9999;
  WFM_ASSERT_OK_AND_ASSIGN(ShotResult none, DetectShots(city_, o));
  EXPECT_TRUE(none.transitions.empty());
  // "all" merges the learned and the classic detectors into one cut.
  o.transnet.threshold = 0.4;
  o.method = "all";
  WFM_ASSERT_OK_AND_ASSIGN(ShotResult all, DetectShots(city_, o));
  ASSERT_EQ(all.transitions.size(), 1u) << ShotsToJson(all).dump();
  EXPECT_NEAR(all.transitions[0].center(), 116, 1);
  // A missing or broken model file is a clear error.
  o.transnet.model_path = *dir_ + "/nope.pt";
  EXPECT_EQ(DetectShots(city_, o).status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(WriteFileAtomically(*dir_ + "/broken.pt", "garbage").ok());
  o.transnet.model_path = *dir_ + "/broken.pt";
  EXPECT_FALSE(DetectShots(city_, o).ok());
}

TEST_F(ModelsTest, CaptionerScorerAndEmbedderInTheAnalysis) {
  WFM_ASSERT_OK_AND_ASSIGN(auto captioner, LoadTorchScriptCaptioner(*dir_ + "/captioner.pt", 64, 64));
  WFM_ASSERT_OK_AND_ASSIGN(auto scorer, LoadTorchScriptScorer(*dir_ + "/scorer.pt", 64, 64));
  WFM_ASSERT_OK_AND_ASSIGN(auto embedder, LoadTorchScriptEmbedder(*dir_ + "/embedder.pt", 64, 64));
  AnalysisOptions o;
  o.captioner = captioner.get();
  o.scorer = scorer.get();
  o.embedder = embedder.get();
  o.filters.aesthetic_threshold = 3.5;
  WFM_ASSERT_OK_AND_ASSIGN(VideoAnalysis a, AnalyzeVideo(city_, o));
  ASSERT_EQ(a.clips.size(), 2u);
  for (const auto& c : a.clips) {
    EXPECT_EQ(c.caption_source, "model:captioner.pt");
    EXPECT_NE(c.caption.find(" frames"), std::string::npos) << c.caption;
    ASSERT_TRUE(c.aesthetic_score.has_value());
    // The scorer returns 10 x mean intensity in [0, 1]: the frames' brightness / 25.5.
    EXPECT_NEAR(*c.aesthetic_score, c.brightness / 25.5, 0.6);
    bool low = *c.aesthetic_score < 3.5;
    EXPECT_EQ(std::count(c.filter_reasons.begin(), c.filter_reasons.end(), "aesthetic"), low ? 1 : 0);
    ASSERT_EQ(c.embedding.size(), 48u);
    double n = 0;
    for (float v : c.embedding) n += v * v;
    EXPECT_NEAR(n, 1.0, 1e-4);
  }
  // Semantic dedup: the same clips embedded twice are duplicates of each other; the two different shots not.
  std::vector<SemanticItem> items;
  for (int copy = 0; copy < 2; ++copy) {
    for (const auto& c : a.clips) items.push_back({c.span_uuid + std::to_string(copy), c.embedding, copy ? 100 : 200, 2.0});
  }
  std::vector<int> d = SemanticDuplicates(items, {.clusters = 2, .eps = 0.01});
  EXPECT_EQ(d, (std::vector<int>{-1, -1, 0, 1}));
  // Broken model output: an error in the clip record, not a crash.
  WFM_ASSERT_OK_AND_ASSIGN(auto wrong, LoadTorchScriptCaptioner(*dir_ + "/scorer.pt", 64, 64));
  AnalysisOptions bad;
  bad.captioner = wrong.get();
  WFM_ASSERT_OK_AND_ASSIGN(VideoAnalysis b, AnalyzeVideo(city_, bad));
  ASSERT_FALSE(b.clips.empty());
  ASSERT_FALSE(b.clips[0].errors.empty());
  EXPECT_NE(b.clips[0].errors[0].find("caption"), std::string::npos);
}

TEST(SidecarCaptionsTest, TextAndTimedJson) {
  std::string dir = wfm::testing::TempDir();
  ASSERT_TRUE(WriteFileAtomically(dir + "/a.mp4.txt", "whole video caption\n").ok());
  WFM_ASSERT_OK_AND_ASSIGN(auto a, SidecarCaptions::Load(dir + "/a.mp4"));
  EXPECT_TRUE(a.found());
  EXPECT_EQ(a.For(0, 5), "whole video caption");
  ASSERT_TRUE(WriteFileAtomically(dir + "/b.json", R"({"captions": [{"start": 0, "end": 4, "caption": "first"},
                                                                       {"start": 4, "end": 9, "caption": "second"}]})").ok());
  WFM_ASSERT_OK_AND_ASSIGN(auto b, SidecarCaptions::Load(dir + "/b.mov"));
  EXPECT_EQ(b.For(0.5, 3.5), "first");
  EXPECT_EQ(b.For(3.0, 8.0), "second");
  WFM_ASSERT_OK_AND_ASSIGN(auto none, SidecarCaptions::Load(dir + "/c.mp4"));
  EXPECT_FALSE(none.found());
  ASSERT_TRUE(WriteFileAtomically(dir + "/d.json", "[1, 2]").ok());
  EXPECT_FALSE(SidecarCaptions::Load(dir + "/d.mp4").ok());
}

TEST(DedupTest, LshFindsNearCopiesOrderIndependently) {
  std::vector<DedupItem> items = {
      {"a", {0x0123456789abcdefULL, 0xfedcba9876543210ULL}, 1280 * 720, 5},
      {"b", {0x0123456789abcdeeULL, 0xfedcba9876543211ULL}, 640 * 360, 5},  // 1 bit off each: copy of a
      {"c", {0xffff0000ffff0000ULL, 0x00ff00ff00ff00ffULL}, 1920 * 1080, 5},
      {"d", {0x0123456789abcdefULL ^ 0xf0f0f0ULL, 0xfedcba9876543210ULL}, 1920 * 1080, 4},  // 12 bits off: mean 6
  };
  std::vector<int> d = FindNearDuplicates(items);
  // a, b, d are one group; d has the most pixels and survives.
  EXPECT_EQ(d, (std::vector<int>{3, 3, -1, -1}));
  std::vector<DedupItem> reversed(items.rbegin(), items.rend());
  EXPECT_EQ(FindNearDuplicates(reversed), (std::vector<int>{-1, -1, 0, 0}));
  EXPECT_EQ(FindNearDuplicates(items, {.max_hamming = 2.0}), (std::vector<int>{-1, 0, -1, -1}));
}

}  // namespace
}  // namespace wfm::curation
