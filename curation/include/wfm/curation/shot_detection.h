// Shot detection on one streaming pass over small analysis frames (RGB uint8 128x72, every frame):
//  - ContentDetector: PySceneDetect's AdaptiveDetector (HSV mean frame difference `content_val`, ratio to the
//    mean of the +-window_width neighbours; cut when ratio >= 3 and content_val >= 15). Finds hard cuts.
//  - GradualDetector: dissolves and fades. A dissolve is a linear blend f(s) = (1 - a(s)) P + a(s) Q of the
//    frames P, Q around it; for every centre t and half-window h it projects the frames between P = f(t-h)
//    and Q = f(t+h) on the segment P->Q and accepts when the frames lie on the segment (small residual), P and
//    Q differ (a real change), and a(s) ramps without a jump (not a cut). Blank (black) runs are transitions too.
//  - TransNetV2Detector: a user TorchScript TransNetV2 (input uint8 [B, 100, 27, 48, 3], per-frame transition
//    probability), windows of 100 frames with stride 50 and the middle 50 predictions kept, threshold 0.4
//    (cosmos-curate transnetv2_extraction_stages.py _get_batches / _get_predictions / _get_scenes).
// Detectors are incremental: Push() frames in order, TakeTransitions() returns the transitions that are final,
// and frontier() tells up to where the transition list is complete; memory stays bounded by the window sizes.
//
//   WFM_ASSIGN_OR_RETURN(ShotResult r, DetectShots("in.mp4", ShotDetectorOptions{}));
//   std::cout << ShotsToJson(r).dump() << "\n";   // {"fps":25.0,"num_frames":190,"shots":[[0,116],[116,190]]}
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace wfm::curation {

inline constexpr int kAnalysisWidth = 128;
inline constexpr int kAnalysisHeight = 72;

// Frames [start, end) belong to no shot; the shot before ends at `start`, the next one begins at `end`.
// A hard cut has start == end.
struct Transition {
  int64_t start = 0;
  int64_t end = 0;
  std::string type;  // "cut", "dissolve", "fade", "blank", "learned"
  double score = 0.0;
  int64_t center() const { return (start + end) / 2; }
};

struct Shot {
  int64_t start = 0, end = 0;  // [start, end)
  int64_t length() const { return end - start; }
};

struct ContentDetectorOptions {
  // PySceneDetect AdaptiveDetector defaults.
  double adaptive_threshold = 3.0;
  double min_content_val = 15.0;
  int window_width = 2;
  int min_scene_len = 15;  // frames between cuts
  bool luma_only = false;
};

struct GradualDetectorOptions {
  std::vector<double> half_windows_s = {0.3, 0.6, 1.0};  // half-window lengths (dissolves up to ~2 s)
  double min_change = 12.0;    // RMS difference (0..255) between the frames before and after the transition
  double min_contrast = 2.6;   // ... and that difference / the difference over h frames on the calmer side
  double max_residual = 0.30;  // mean distance of the in-between frames from the P->Q segment, / |Q - P|
  double max_step = 0.45;      // largest single-frame step of the blend weight (a cut steps by ~1)
  double max_backtrack = 0.25; // total backwards movement of the blend weight
  // Camera motion: rejected when P shifted by up to 6 px (at 64x36) matches Q within this fraction of |Q - P|.
  double max_shift_ratio = 0.6;
  double blank_luma = 18.0;    // frames darker than this (mean, 0..255) with
  double blank_std = 6.0;      // this little contrast are blank (black) frames
};

struct TransNetOptions {
  std::string model_path;  // TorchScript file; empty = not used
  double threshold = 0.4;
  std::string device = "cpu";
};

struct ShotDetectorOptions {
  // "classic" (content + gradual), "content", "gradual", "transnetv2", "all" (classic + transnetv2).
  // "auto" = transnetv2 when a model is given, else classic.
  std::string method = "auto";
  ContentDetectorOptions content;
  GradualDetectorOptions gradual;
  TransNetOptions transnet;
  int merge_gap = 4;  // transitions closer than this many frames are merged into one
};

class ShotDetector {
 public:
  virtual ~ShotDetector() = default;
  // `rgb`: analysis frame uint8 [kAnalysisHeight][kAnalysisWidth][3]; indices must be consecutive from 0.
  virtual absl::Status Push(int64_t index, const uint8_t* rgb) = 0;
  // End of stream: resolves everything pending.
  virtual absl::Status Finish() = 0;
  // Transitions that became final since the last call, in order.
  virtual std::vector<Transition> TakeTransitions() = 0;
  // Every transition that starts before frontier() has been returned by TakeTransitions() (or is queued for
  // it). After Finish() this is INT64_MAX.
  virtual int64_t frontier() const = 0;
  virtual std::string name() const = 0;
};

std::unique_ptr<ShotDetector> MakeContentDetector(const ContentDetectorOptions& options);
std::unique_ptr<ShotDetector> MakeGradualDetector(const GradualDetectorOptions& options, double fps);
absl::StatusOr<std::unique_ptr<ShotDetector>> MakeTransNetV2Detector(const TransNetOptions& options);
// Builds the detector(s) `options.method` names, merged into one stream of transitions.
absl::StatusOr<std::unique_ptr<ShotDetector>> MakeShotDetector(const ShotDetectorOptions& options, double fps);

// Shots between transitions; frames [0, num_frames). Empty shots are skipped.
std::vector<Shot> ShotsFromTransitions(const std::vector<Transition>& transitions, int64_t num_frames);

struct ShotResult {
  double fps = 0.0;
  int64_t num_frames = 0;
  std::vector<Transition> transitions;
  std::vector<Shot> shots;
};

// Decodes `path` once at analysis resolution and runs the detector.
absl::StatusOr<ShotResult> DetectShots(const std::string& path, const ShotDetectorOptions& options, int threads = 0);
// Same on frames already in memory: uint8 [T, H, W, 3] (resized to the analysis size with area averaging).
absl::StatusOr<ShotResult> DetectShotsInFrames(const at::Tensor& frames_thwc_u8, double fps,
                                               const ShotDetectorOptions& options);
// Resizes uint8 [T, H, W, 3] frames to the analysis size, uint8 [T, 72, 128, 3].
at::Tensor ToAnalysisFrames(const at::Tensor& frames_thwc_u8);

// {"fps":..., "num_frames":..., "shots":[[start, end_exclusive], ...], "transitions":[{...}]}
nlohmann::json ShotsToJson(const ShotResult& result);

}  // namespace wfm::curation
