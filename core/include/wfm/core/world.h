// The embedded physical world: a small deterministic 2D physics simulator (balls and boxes under gravity, with
// restitution, friction, wall and object collisions, an occluder that hides objects for a while, and
// variable lighting/colours), rendered to video frames, with ground-truth tracks and a caption generated from
// what happened. It is the checkable world that `make demo` learns, and synthetic data for tests.
//
//   world::WorldOptions opt;                        // 128x128, 12 fps, 33 frames
//   world::Clip clip = world::SimulateClip(opt, /*seed=*/7);
//   clip.frames;     // uint8 [33, 128, 128, 3]
//   clip.caption;    // "a red ball falls and bounces twice off the floor; a blue box slides left and stops"
//   clip.ToJson();   // tracks per object per frame (+ visibility), occluder, lighting, seed
//   auto dets = world::DetectObjects(clip.frames[5], clip.ObjectColors());
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json_fwd.hpp>

#include "absl/status/statusor.h"

namespace wfm::world {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
};

// The saturated colours objects are drawn with (background and occluder are near-grey, so objects can be found
// by chromaticity under any lighting).
struct NamedColor {
  const char* name;
  Rgb rgb;
};
const std::vector<NamedColor>& Palette();

enum class Shape { kBall, kBox };
const char* ShapeName(Shape s);

struct WorldOptions {
  int width = 128, height = 128;
  double fps = 12.0;
  int num_frames = 33;
  int min_objects = 1, max_objects = 3;
  double box_probability = 0.4;       // chance that an object is a box (else a ball)
  double occluder_probability = 0.5;  // chance that the clip has an occluding wall
  bool vary_lighting = true;          // background colour and a slow global light change per clip
  double gravity = 0.0;               // px/s^2; 0 = 2.5 * height
  int substeps = 16;                  // physics steps per frame
};

// Ground truth of one object over a clip.
struct ObjectTrack {
  int id = 0;
  Shape shape = Shape::kBall;
  std::string color_name;
  Rgb color;
  double half_w = 0, half_h = 0;                  // radius for balls
  std::vector<std::array<double, 2>> positions;   // centre (x, y) in pixels per frame, y down
  std::vector<std::array<double, 2>> velocities;  // px/s per frame
  std::vector<float> visible_fraction;            // fraction of the object's area not hidden, per frame
  int floor_bounces = 0;
  int object_hits = 0;
};

struct Occluder {
  bool present = false;
  double x0 = 0, x1 = 0, y0 = 0, y1 = 0;  // rectangle in pixels
};

struct Clip {
  uint64_t seed = 0;
  double fps = 12.0;
  at::Tensor frames;  // uint8 [T, H, W, 3]
  std::string caption;
  std::vector<ObjectTrack> tracks;
  Occluder occluder;
  std::vector<float> lighting;  // global light factor per frame
  Rgb background_top, background_bottom;

  std::vector<Rgb> ObjectColors() const;
  nlohmann::json ToJson() const;  // everything but the frames
};

// Simulates and renders one clip; the same (options, seed) always gives the same clip, bit for bit.
Clip SimulateClip(const WorldOptions& options, uint64_t seed);

// A simple colour detector: for each reference colour, the centroid of pixels whose chromaticity matches it
// (robust to the global lighting). `found` is false when fewer than `min_pixels` pixels match.
struct Detection {
  bool found = false;
  double x = 0, y = 0;
  int64_t pixels = 0;
};
std::vector<Detection> DetectObjects(const at::Tensor& frame_hw3_u8, const std::vector<Rgb>& colors,
                                     int64_t min_pixels = 4);

// Writes `num_clips` clips (seeds seed, seed+1, ...) into `dir` as NAME.mp4 (H.264, near-lossless CRF),
// NAME.txt (the caption: the sidecar the curation pipeline reads) and NAME.tracks.json (Clip::ToJson), with
// progress. NAME = PREFIX + 6-digit index. Returns the video paths. Existing complete clips are kept (resume).
struct DatasetOptions {
  int num_clips = 16;
  uint64_t seed = 0;
  std::string prefix = "world_";
  int crf = 12;
  bool quiet = false;  // no progress line
};
absl::StatusOr<std::vector<std::string>> WriteWorldDataset(const std::string& dir, const WorldOptions& world,
                                                           const DatasetOptions& options);

// Baseline predictors for the world's future frames, given context frames uint8 [Tc, H, W, 3] (Tc >= 1):
// - copy-last-frame: every future frame equals the last context frame;
// - constant-velocity: each object (found by colour in the last two context frames) keeps moving with its last
//   displacement per frame; its sprite is cut from the last frame and pasted over a background estimated as the
//   per-pixel temporal median of the context (objects that move do not survive the median).
// Both return uint8 [horizon, H, W, 3].
at::Tensor PredictCopyLast(const at::Tensor& context_thwc_u8, int64_t horizon);
at::Tensor PredictConstantVelocity(const at::Tensor& context_thwc_u8, const std::vector<Rgb>& colors,
                                   int64_t horizon);

}  // namespace wfm::world
