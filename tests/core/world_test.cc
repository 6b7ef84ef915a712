// The embedded physical world: determinism, physical invariants, captions consistent with the ground truth,
// and the colour detector against the true object positions.
#include "wfm/core/world.h"

#include <ATen/ATen.h>

#include <cmath>

#include <nlohmann/json.hpp>

#include "test_support.h"

namespace wfm::world {
namespace {

TEST(WorldTest, SameSeedSameClipDifferentSeedDifferentClip) {
  WorldOptions opt;
  Clip a = SimulateClip(opt, 11), b = SimulateClip(opt, 11), c = SimulateClip(opt, 12);
  EXPECT_TRUE(at::equal(a.frames, b.frames));
  EXPECT_EQ(a.caption, b.caption);
  EXPECT_EQ(a.ToJson().dump(), b.ToJson().dump());
  EXPECT_FALSE(at::equal(a.frames, c.frames));
  EXPECT_EQ(a.frames.sizes(), (std::vector<int64_t>{33, 128, 128, 3}));
}

TEST(WorldTest, ObjectsStayInsideTheBoxAndTracksAreComplete) {
  WorldOptions opt;
  opt.max_objects = 4;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    Clip clip = SimulateClip(opt, seed);
    for (const auto& t : clip.tracks) {
      ASSERT_EQ(t.positions.size(), 33u);
      ASSERT_EQ(t.visible_fraction.size(), 33u);
      for (const auto& p : t.positions) {
        EXPECT_GE(p[0], t.half_w - 1.0) << "seed " << seed;
        EXPECT_LE(p[0], opt.width - t.half_w + 1.0) << "seed " << seed;
        EXPECT_GE(p[1], t.half_h - 1.0) << "seed " << seed;
        EXPECT_LE(p[1], opt.height - t.half_h + 1e-6) << "seed " << seed;
      }
    }
  }
}

TEST(WorldTest, FreeFallFollowsGravityAndBouncesLoseHeight) {
  WorldOptions opt;
  opt.min_objects = opt.max_objects = 1;
  opt.box_probability = 0;
  opt.occluder_probability = 0;
  opt.num_frames = 60;
  const double g = 2.5 * opt.height;
  int checked = 0;
  for (uint64_t seed = 0; seed < 30 && checked < 5; ++seed) {
    Clip clip = SimulateClip(opt, seed);
    const auto& t = clip.tracks[0];
    if (t.floor_bounces < 2) continue;
    ++checked;
    // While airborne and away from the walls, vy grows by exactly g / fps per frame.
    int free_steps = 0;
    for (size_t f = 1; f < t.velocities.size(); ++f) {
      double dvy = t.velocities[f][1] - t.velocities[f - 1][1];
      bool airborne = t.positions[f][1] + t.half_h < opt.height - 1 && t.positions[f - 1][1] + t.half_h < opt.height - 1;
      bool no_wall = std::abs(t.velocities[f][0] - t.velocities[f - 1][0]) < 1e-9;
      // Falling at both frames: no bounce happened in between.
      if (airborne && no_wall && t.velocities[f - 1][1] > 0 && t.velocities[f][1] > 0) {
        EXPECT_NEAR(dvy, g / opt.fps, 1e-6 * g);
        ++free_steps;
      }
    }
    EXPECT_GT(free_steps, 0);
    // Apex heights after each bounce decrease (restitution < 1).
    std::vector<double> apex;
    for (size_t f = 1; f + 1 < t.positions.size(); ++f) {
      if (t.velocities[f - 1][1] < 0 && t.velocities[f + 1][1] >= 0) apex.push_back(t.positions[f][1]);
    }
    for (size_t k = 1; k < apex.size(); ++k) EXPECT_GT(apex[k], apex[k - 1] - 1.0) << "seed " << seed;
    EXPECT_NE(clip.caption.find(t.floor_bounces == 2 ? "bounces twice" : "bounces"), std::string::npos) << clip.caption;
  }
  EXPECT_GE(checked, 3);
}

TEST(WorldTest, CaptionNamesEveryObjectAndItsBounces) {
  WorldOptions opt;
  for (uint64_t seed = 100; seed < 130; ++seed) {
    Clip clip = SimulateClip(opt, seed);
    for (const auto& t : clip.tracks) {
      std::string noun = t.color_name + " " + ShapeName(t.shape);
      EXPECT_NE(clip.caption.find(noun), std::string::npos) << clip.caption;
    }
    bool any_bounce = false;
    for (const auto& t : clip.tracks) any_bounce |= t.floor_bounces > 0;
    EXPECT_EQ(any_bounce, clip.caption.find("off the floor") != std::string::npos) << clip.caption;
  }
}

TEST(WorldTest, DetectorFindsVisibleObjectsAtTheirTruePositions) {
  WorldOptions opt;
  opt.max_objects = 3;
  int compared = 0;
  double worst = 0;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    Clip clip = SimulateClip(opt, seed);
    for (int64_t f = 0; f < clip.frames.size(0); f += 4) {
      auto dets = DetectObjects(clip.frames[f], clip.ObjectColors());
      for (size_t k = 0; k < clip.tracks.size(); ++k) {
        const auto& t = clip.tracks[k];
        // Only unoccluded objects that do not touch another object (overlaps shift the centroid).
        bool alone = true;
        for (size_t j = 0; j < clip.tracks.size(); ++j) {
          if (j == k) continue;
          const auto& o = clip.tracks[j];
          if (std::abs(o.positions[f][0] - t.positions[f][0]) < o.half_w + t.half_w + 1 &&
              std::abs(o.positions[f][1] - t.positions[f][1]) < o.half_h + t.half_h + 1)
            alone = false;
        }
        if (t.visible_fraction[f] < 0.999 || !alone) continue;
        ASSERT_TRUE(dets[k].found) << "seed " << seed << " frame " << f << " object " << k;
        double err = std::hypot(dets[k].x - t.positions[f][0], dets[k].y - t.positions[f][1]);
        worst = std::max(worst, err);
        ++compared;
      }
    }
  }
  EXPECT_GT(compared, 100);
  EXPECT_LT(worst, 1.0) << "HINT: detector centroid should be within a pixel of the true centre";
}

TEST(WorldTest, OccluderHidesObjects) {
  WorldOptions opt;
  opt.occluder_probability = 1.0;
  int hidden_frames = 0;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    Clip clip = SimulateClip(opt, seed);
    ASSERT_TRUE(clip.occluder.present);
    for (size_t k = 0; k < clip.tracks.size(); ++k) {
      for (int64_t f = 0; f < clip.frames.size(0); ++f) {
        if (clip.tracks[k].visible_fraction[f] > 0.0f) continue;
        ++hidden_frames;
        auto dets = DetectObjects(clip.frames[f], clip.ObjectColors());
        EXPECT_FALSE(dets[k].found) << "a fully hidden object must not be detected";
      }
    }
  }
  EXPECT_GT(hidden_frames, 0) << "no object ever went fully behind the wall in 20 clips";
}

}  // namespace
}  // namespace wfm::world

namespace wfm::world {
namespace {

double MeanPositionError(const Clip& clip, const at::Tensor& pred, int64_t first_future) {
  double sum = 0;
  int n = 0;
  for (int64_t h = 0; h < pred.size(0); ++h) {
    auto dets = DetectObjects(pred[h], clip.ObjectColors());
    for (size_t k = 0; k < clip.tracks.size(); ++k) {
      const auto& p = clip.tracks[k].positions[first_future + h];
      if (clip.tracks[k].visible_fraction[first_future + h] < 0.999 || !dets[k].found) continue;
      sum += std::hypot(dets[k].x - p[0], dets[k].y - p[1]);
      ++n;
    }
  }
  return n ? sum / n : 0.0;
}

TEST(WorldBaselineTest, CopyLastRepeatsTheLastFrame) {
  Clip clip = SimulateClip({}, 3);
  at::Tensor ctx = clip.frames.slice(0, 0, 9);
  at::Tensor pred = PredictCopyLast(ctx, 24);
  ASSERT_EQ(pred.sizes(), (std::vector<int64_t>{24, 128, 128, 3}));
  for (int64_t h = 0; h < 24; ++h) EXPECT_TRUE(at::equal(pred[h], clip.frames[8]));
}

TEST(WorldBaselineTest, ConstantVelocityTracksObjectsBetterThanCopyingAtShortHorizons) {
  // In free flight (no occluder, no walls hit within 3 frames) constant velocity beats copy-last on position.
  WorldOptions opt;
  opt.occluder_probability = 0;
  double cv_total = 0, copy_total = 0;
  for (uint64_t seed = 0; seed < 12; ++seed) {
    Clip clip = SimulateClip(opt, seed);
    at::Tensor ctx = clip.frames.slice(0, 0, 9);
    at::Tensor cv = PredictConstantVelocity(ctx, clip.ObjectColors(), 3);
    at::Tensor copy = PredictCopyLast(ctx, 3);
    ASSERT_EQ(cv.sizes(), copy.sizes());
    cv_total += MeanPositionError(clip, cv, 9);
    copy_total += MeanPositionError(clip, copy, 9);
  }
  EXPECT_LT(cv_total, copy_total);
}

TEST(WorldBaselineTest, ConstantVelocityWithOneContextFrameIsStatic) {
  Clip clip = SimulateClip({}, 5);
  at::Tensor pred = PredictConstantVelocity(clip.frames.slice(0, 0, 1), clip.ObjectColors(), 2);
  // No velocity can be estimated: objects stay where they are.
  auto d0 = DetectObjects(clip.frames[0], clip.ObjectColors());
  auto d1 = DetectObjects(pred[1], clip.ObjectColors());
  for (size_t k = 0; k < d0.size(); ++k) {
    if (!d0[k].found) continue;
    ASSERT_TRUE(d1[k].found);
    EXPECT_NEAR(d1[k].x, d0[k].x, 1.0);
    EXPECT_NEAR(d1[k].y, d0[k].y, 1.0);
  }
}

}  // namespace
}  // namespace wfm::world

#include <filesystem>

#include "wfm/core/file_util.h"
#include "wfm/core/video_io.h"

namespace wfm::world {
namespace {

TEST(WorldDatasetTest, WritesDecodableClipsCaptionsAndTracksAndResumes) {
  std::string dir = testing::TempDir() + "/world";
  WorldOptions wo;
  wo.num_frames = 17;
  DatasetOptions d;
  d.num_clips = 2;
  d.seed = 40;
  d.quiet = true;
  WFM_ASSERT_OK_AND_ASSIGN(auto paths, WriteWorldDataset(dir, wo, d));
  ASSERT_EQ(paths.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    Clip clip = SimulateClip(wo, 40 + i);
    WFM_ASSERT_OK_AND_ASSIGN(at::Tensor frames, DecodeVideo(paths[i]));
    ASSERT_EQ(frames.sizes(), clip.frames.sizes());
    // Near-lossless H.264: the decoded clip is within a few grey levels of the render.
    double mse = (frames.to(at::kDouble) - clip.frames.to(at::kDouble)).pow(2).mean().item<double>();
    EXPECT_GT(10 * std::log10(255.0 * 255.0 / std::max(mse, 1e-10)), 35.0);
    std::string base = paths[i].substr(0, paths[i].size() - 4);
    WFM_ASSERT_OK_AND_ASSIGN(std::string caption, ReadFile(base + ".txt"));
    EXPECT_EQ(caption, clip.caption + "\n");
    WFM_ASSERT_OK_AND_ASSIGN(std::string tracks, ReadFile(base + ".tracks.json"));
    EXPECT_EQ(nlohmann::json::parse(tracks)["objects"].size(), clip.tracks.size());
  }
  // A second run keeps complete clips untouched and regenerates a clip whose tracks file is missing.
  auto mtime = std::filesystem::last_write_time(paths[0]);
  std::filesystem::remove(paths[1].substr(0, paths[1].size() - 4) + ".tracks.json");
  WFM_ASSERT_OK(WriteWorldDataset(dir, wo, d).status());
  EXPECT_EQ(std::filesystem::last_write_time(paths[0]), mtime);
  EXPECT_TRUE(std::filesystem::exists(paths[1].substr(0, paths[1].size() - 4) + ".tracks.json"));
  // Bad options are errors, not crashes.
  wo.width = 4;
  EXPECT_EQ(WriteWorldDataset(dir, wo, d).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace wfm::world
