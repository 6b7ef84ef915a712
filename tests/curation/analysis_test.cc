// Analysis stages on real clips: clip rules (batch = streaming), span uuids (Python uuid5), motion scores
// (static vs moving, with motion vectors and with the block-matching fallback), letterbox / pillarbox crop,
// perceptual hashes, and the bounded-memory property of the single decode pass.
#include <random>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "curation_test_util.h"
#include "test_support.h"
#include "wfm/curation/analysis.h"
#include "wfm/curation/clip_rules.h"

namespace wfm::curation {
namespace {

using testing::EncodeFrames;
using testing::LoadFrames;

std::vector<std::pair<int64_t, int64_t>> Spans(const std::vector<ClipSpan>& v) {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (const auto& s : v) out.push_back({s.start, s.end});
  return out;
}

TEST(ClipRulesTest, UpstreamStrideCropAndMinLength) {
  ClipRuleOptions o;  // 2 s / 48 frames min, 60 s max, 0.5 s crop
  // 25 fps: min 50 frames, max 1500, crop 12.
  EXPECT_EQ(Spans(ComputeClipSpans({{0, 3000}}, 25.0, o)),
            (std::vector<std::pair<int64_t, int64_t>>{{12, 1488}, {1512, 2988}}));
  // The 60-frame tail piece survives the stride split but is too short after the crop.
  EXPECT_EQ(Spans(ComputeClipSpans({{0, 1560}}, 25.0, o)), (std::vector<std::pair<int64_t, int64_t>>{{12, 1488}}));
  // A 40-frame tail piece (< min) is dropped before cropping.
  EXPECT_EQ(Spans(ComputeClipSpans({{0, 1540}}, 25.0, o)), (std::vector<std::pair<int64_t, int64_t>>{{12, 1488}}));
  // Shots shorter than 2 s + 2 x 0.5 s vanish; 74 frames (2.96 s) -> 50-frame clip.
  EXPECT_EQ(Spans(ComputeClipSpans({{0, 73}, {100, 174}}, 25.0, o)), (std::vector<std::pair<int64_t, int64_t>>{{112, 162}}));
  // min_length_frames wins at low frame rates: 10 fps -> max(20, 48) = 48.
  EXPECT_EQ(ClipRulesInFrames(o, 10.0).min_length, 48);
  EXPECT_EQ(ClipRulesInFrames(o, 29.97).crop, 14);
}

TEST(ClipRulesTest, StreamingSegmenterEqualsBatch) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 300; ++trial) {
    ClipRuleOptions o;
    o.max_length_s = (trial % 3 == 0) ? 0.0 : 2.0 + (rng() % 40) / 10.0;
    o.crop_s = (rng() % 4) * 0.2;
    o.min_length_s = 1.0 + (rng() % 3);
    o.min_length_frames = static_cast<int>(rng() % 40);
    const double fps = 10.0 + rng() % 20;
    const int64_t n = 50 + rng() % 600;
    std::vector<Transition> ts;
    for (int64_t f = 5 + rng() % 60; f < n; f += 3 + rng() % 120) {
      int64_t len = rng() % 3 == 0 ? 0 : rng() % 20;
      ts.push_back({f, std::min(n, f + len), len ? "dissolve" : "cut", 0});
      f += len;
    }
    std::vector<ClipSpan> streamed;
    std::optional<int64_t> open;
    int64_t in_clip_frames = 0;
    ClipSegmenter::Callbacks cb;
    cb.on_open = [&](int64_t s) { open = s; };
    cb.on_frame = [&](int64_t, bool in) { in_clip_frames += in; };
    cb.on_close = [&](const ClipSpan& s, bool keep) {
      ASSERT_TRUE(open.has_value());
      EXPECT_EQ(*open, s.start);
      if (keep) streamed.push_back(s);
      open.reset();
    };
    ClipSegmenter seg(o, fps, cb);
    // The "detector" reveals each transition `lag` frames after its end.
    const int64_t lag = rng() % 80;
    size_t next = 0;
    int64_t peak = 0;
    for (int64_t f = 0; f < n; ++f) {
      std::vector<Transition> fresh;
      while (next < ts.size() && ts[next].end + lag <= f) fresh.push_back(ts[next++]);
      seg.AddTransitions(fresh);
      seg.SetFrontier(next < ts.size() ? std::min(ts[next].start, f - lag) : f - lag);
      seg.Push(f);
      seg.Release();
      peak = std::max<int64_t>(peak, seg.pending());
    }
    std::vector<Transition> rest(ts.begin() + next, ts.end());
    seg.AddTransitions(rest);
    seg.Finish(n);
    auto batch = ComputeClipSpans(ShotsFromTransitions(ts, n), fps, o);
    ASSERT_EQ(Spans(streamed), Spans(batch)) << "trial " << trial << " fps " << fps << " n " << n;
    int64_t total = 0;
    for (const auto& s : batch) total += s.length();
    EXPECT_GE(in_clip_frames, total);
    // Frames wait at most for the detector latency + the crop + the longest transition.
    EXPECT_LE(peak, lag + ClipRulesInFrames(o, fps).crop + 25);
  }
}

TEST(AnalysisTest, SpanUuidMatchesPythonUuid5) {
  // python3 -c "import uuid; print(uuid.uuid5(uuid.NAMESPACE_URL, 'video.mp4_12_1488'))"
  EXPECT_EQ(SpanUuid("video.mp4", 12, 1488), "99336a3c-5ebd-5dea-890c-4a6b84caf68f");
  EXPECT_EQ(SpanUuid("/data/raw/city.mpg", 12, 104), "8ac89c0c-734c-5e2f-8fa1-bf53e988659e");
}

TEST(AnalysisTest, PatchMinMatchesBilinearResize) {
  // cosmos-curate: cv2.resize(per_pixel_avg, None, fx=1/256, fy=1/256) (INTER_LINEAR) then min. LibTorch's
  // bilinear upsample with explicit scales uses the same source-coordinate rule (half-pixel, clamped).
  for (auto [w, h] : std::vector<std::pair<int, int>>{{600, 300}, {1280, 720}, {720, 405}, {300, 200}}) {
    at::Tensor m = at::rand({h, w}, at::kFloat) + at::linspace(0, 1, w).unsqueeze(0);
    std::vector<float> map(m.data_ptr<float>(), m.data_ptr<float>() + m.numel());
    double gm, pm;
    MotionScoresFromMap(map, w, h, &gm, &pm);
    int ow = std::max(1, static_cast<int>(std::lround(w / 256.0))), oh = std::max(1, static_cast<int>(std::lround(h / 256.0)));
    at::Tensor ref = at::upsample_bilinear2d(m.view({1, 1, h, w}).to(at::kDouble), {oh, ow}, false, 1.0 / 256, 1.0 / 256);
    EXPECT_NEAR(gm, m.to(at::kDouble).mean().item<double>(), 1e-9);
    EXPECT_NEAR(pm, ref.min().item<double>(), 1e-6) << w << "x" << h;
  }
}

class MediaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    city_ = wfm::testing::SharedPath("media/cityCC0.mpg");
    if (!wfm::testing::FileExists(city_)) GTEST_SKIP() << "missing fixture: " << city_;
    dir_ = wfm::testing::TempDir();
  }
  AnalysisOptions Options() const {
    AnalysisOptions o;
    o.decode_threads = 1;
    return o;
  }
  std::string city_, dir_;
};

TEST_F(MediaTest, MotionSeparatesStaticFromMoving) {
  // A camera pan across a real frame (moving) and the same frame held still (static), 4.4 s each, as H.264
  // and as MJPEG (no motion vectors: block-matching fallback).
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor frame, LoadFrames(city_, 0, 0, 30, 1));  // [1, 405, 720, 3]
  std::vector<at::Tensor> pan;
  for (int i = 0; i < 110; ++i) pan.push_back(frame[0].slice(0, 60, 60 + 288).slice(1, 2 * i, 2 * i + 480));
  at::Tensor moving = at::stack(pan);                                        // [110, 288, 480, 3], 2 px / frame
  at::Tensor still = moving[0].unsqueeze(0).repeat({110, 1, 1, 1});
  // Sensor noise on the still shot, so it is not trivially identical frames.
  still = (still.to(at::kShort) + at::randint(-3, 4, still.sizes(), at::kShort)).clamp(0, 255).to(at::kByte);
  for (const std::string codec : {"h264", "mjpeg"}) {
    std::string args = codec == "h264" ? "-c:v libx264 -preset veryfast -crf 20 -pix_fmt yuv420p"
                                       : "-c:v mjpeg -q:v 3 -pix_fmt yuvj420p";
    std::string mv = dir_ + "/moving_" + codec + ".mkv", st = dir_ + "/still_" + codec + ".mkv";
    WFM_ASSERT_OK(EncodeFrames(moving, 25, mv, args));
    WFM_ASSERT_OK(EncodeFrames(still, 25, st, args));
    AnalysisOptions opt = Options();
    opt.filters.motion_filter = "enable";
    WFM_ASSERT_OK_AND_ASSIGN(VideoAnalysis m, AnalyzeVideo(mv, opt));
    WFM_ASSERT_OK_AND_ASSIGN(VideoAnalysis s, AnalyzeVideo(st, opt));
    ASSERT_FALSE(m.clips.empty());
    ASSERT_EQ(s.clips.size(), 1u);
    const ClipRecord& sc = s.clips[0];
    ASSERT_TRUE(sc.motion_global_mean.has_value());
    const char* method = codec == "h264" ? "motion_vectors" : "frame_diff";
    double min_moving = 1e9;
    for (const auto& c : m.clips) {
      ASSERT_TRUE(c.motion_global_mean.has_value());
      EXPECT_EQ(c.motion_method, method);
      min_moving = std::min(min_moving, *c.motion_global_mean);
      EXPECT_TRUE(c.kept) << codec << " moving clip filtered: " << c.ToJson().dump();
    }
    EXPECT_EQ(sc.motion_method, method);
    std::printf("%s: moving global_mean >= %.5f, still %.6f (per-patch min %.2g)\n", codec.c_str(), min_moving,
                *sc.motion_global_mean, *sc.motion_per_patch_min_256);
    EXPECT_GT(min_moving, 0.00098) << codec;
    EXPECT_LT(*sc.motion_global_mean, 0.00098) << codec;
    EXPECT_GT(min_moving, 5 * *sc.motion_global_mean) << codec;
    EXPECT_FALSE(sc.kept);
    EXPECT_NE(std::find(sc.filter_reasons.begin(), sc.filter_reasons.end(), "motion"), sc.filter_reasons.end());
  }
}

TEST_F(MediaTest, LetterboxAndPillarboxCropWithin2Px) {
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor frames, LoadFrames(city_, 0, 0, 0, 80));  // [80, 405, 720, 3]
  struct Case {
    int top, bottom, left, right;
  };
  for (const Case& k : {Case{86, 85, 0, 0}, Case{0, 1, 120, 120}, Case{40, 41, 60, 60}}) {  // even frame sizes
    at::Tensor padded = at::constant_pad_nd(frames.permute({0, 3, 1, 2}), {k.left, k.right, k.top, k.bottom}, 0)
                            .permute({0, 2, 3, 1})
                            .contiguous();
    std::string path = dir_ + absl::StrCat("/box_", k.top, "_", k.left, ".mp4");
    WFM_ASSERT_OK(EncodeFrames(padded, 25, path));
    WFM_ASSERT_OK_AND_ASSIGN(VideoAnalysis a, AnalyzeVideo(path, Options()));
    ASSERT_FALSE(a.clips.empty());
    for (const auto& c : a.clips) {
      EXPECT_NEAR(c.crop.x, k.left, 2) << path;
      EXPECT_NEAR(c.crop.y, k.top, 2) << path;
      EXPECT_NEAR(c.crop.w, 720, 2) << path;
      EXPECT_NEAR(c.crop.h, 405, 2) << path;
    }
  }
  // No bars: the full frame.
  WFM_ASSERT_OK_AND_ASSIGN(VideoAnalysis plain, AnalyzeVideo(city_, Options()));
  ASSERT_FALSE(plain.clips.empty());
  EXPECT_EQ(plain.clips[0].crop, (CropBox{0, 0, 720, 404}));  // even size for yuv420p
}

TEST_F(MediaTest, PerceptualHashSurvivesReencodeAndRescale) {
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor a, LoadFrames(city_, 0, 0, 30, 1));
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor b, LoadFrames(city_, 0, 0, 150, 1));
  std::string small = dir_ + "/small.mp4";
  WFM_ASSERT_OK(EncodeFrames(a, 25, small, "-c:v libx264 -crf 35 -vf scale=320:180 -pix_fmt yuv420p"));
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor a2, LoadFrames(small, 128, 72));
  at::Tensor ga = ToAnalysisFrames(a).to(at::kFloat).mean(3).round().to(at::kByte).contiguous();
  at::Tensor gb = ToAnalysisFrames(b).to(at::kFloat).mean(3).round().to(at::kByte).contiguous();
  at::Tensor ga2 = a2.to(at::kFloat).mean(3).round().to(at::kByte).contiguous();
  uint64_t ha = PerceptualHash(ga.data_ptr<uint8_t>(), 128, 72, 128);
  uint64_t ha2 = PerceptualHash(ga2.data_ptr<uint8_t>(), 128, 72, 128);
  uint64_t hb = PerceptualHash(gb.data_ptr<uint8_t>(), 128, 72, 128);
  int same = __builtin_popcountll(ha ^ ha2), diff = __builtin_popcountll(ha ^ hb);
  std::printf("hamming: re-encoded+rescaled copy %d, other shot %d\n", same, diff);
  EXPECT_LE(same, 6);
  EXPECT_GE(diff, 20);
}

TEST_F(MediaTest, CityClipsAndBoundedMemory) {
  WFM_ASSERT_OK_AND_ASSIGN(VideoAnalysis a, AnalyzeVideo(city_, Options()));
  EXPECT_EQ(a.video.num_frames, 190);
  ASSERT_EQ(a.video.shots.size(), 2u);
  // Shots [0,116) and [116,190) -> clips [12,104) and [128,178) with the default rules.
  ASSERT_EQ(a.clips.size(), 2u);
  EXPECT_EQ(a.clips[0].start_frame, 12);
  EXPECT_NEAR(a.clips[0].end_frame, 104, 1);
  EXPECT_NEAR(a.clips[1].start_frame, 128, 1);
  EXPECT_EQ(a.clips[1].end_frame, 178);
  EXPECT_EQ(a.clips[0].span_uuid, SpanUuid(city_, a.clips[0].start_frame, a.clips[0].end_frame));
  EXPECT_EQ(a.clips[0].phash.size(), 5u);
  // The frames held at once stay within detector latency + crop (about 3.5 s), whatever the video length:
  // the same bound holds for a 4-minute video.
  EXPECT_LT(a.peak_pending_frames, 100);
  std::string longv = dir_ + "/long.mp4";
  ASSERT_EQ(wfm::testing::RunCommand("ffmpeg -v error -y -f lavfi -i testsrc2=s=160x90:r=25:d=240 -c:v libx264 "
                                     "-preset ultrafast -g 250 '" + longv + "'"), 0);
  WFM_ASSERT_OK_AND_ASSIGN(VideoAnalysis l, AnalyzeVideo(longv, Options()));
  EXPECT_EQ(l.video.num_frames, 6000);
  EXPECT_LT(l.peak_pending_frames, 100);
}

TEST_F(MediaTest, VariableFrameRateAviIsRegularised) {
  const std::string tree = wfm::testing::SharedPath("media/tree.avi");
  WFM_REQUIRE_FILE(tree);
  // tree.avi stores 68 pictures for 444 frame slots at 15 fps (dropped-frame AVI): constant frame rate output.
  WFM_ASSERT_OK_AND_ASSIGN(VideoAnalysis a, AnalyzeVideo(tree, Options()));
  EXPECT_NEAR(a.video.num_frames, 444, 2);
  EXPECT_NEAR(a.video.fps, 15.0, 0.01);
  ASSERT_FALSE(a.clips.empty());
  EXPECT_EQ(a.clips[0].motion_method, "frame_diff");  // cinepak exports no motion vectors
}

}  // namespace
}  // namespace wfm::curation
