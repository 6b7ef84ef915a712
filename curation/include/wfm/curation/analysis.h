// Per-video analysis: ONE streaming decode feeds shot detection, the clip rules, black-border detection, the
// filters (motion from the codec's motion vectors, static / blank / brightness, blur, bounds, an optional
// TorchScript scorer), perceptual hashes for dedup, optional embeddings and captions. Memory is bounded per
// video whatever its length: frames are released as soon as the clip rules decide where they belong, and a
// clip keeps only small per-frame summaries (at `sample_fps`) until it closes.
//
// Motion follows cosmos-curate motion_vector_backend.py: frames sampled every round(fps / 2) frames, each
// motion vector of a 8x8 / 16x16 / 16x8 / 8x16 block paints |motion / motion_scale| / (W + H) over its block,
// global_mean = mean over sampled frames and pixels, per_patch_min_256 = min of the per-pixel mean map
// resized by 1/256 (OpenCV INTER_LINEAR), small motion when global_mean < 0.00098 or per_patch_min_256 < 1e-6.
// Both are measured inside the clip's black-border crop. Codecs that export no vectors (cinepak, MJPEG, ...)
// fall back to block matching of consecutive frames at analysis resolution (motion_method "frame_diff").
//
//   AnalysisOptions o;
//   WFM_ASSIGN_OR_RETURN(VideoAnalysis a, AnalyzeVideo("in.mp4", o));
//   for (const ClipRecord& c : a.clips) std::cout << c.ToJson().dump() << "\n";
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "wfm/curation/clip_rules.h"
#include "wfm/curation/models.h"
#include "wfm/curation/shot_detection.h"

namespace wfm::curation {

struct FilterOptions {
  // Motion (cosmos-curate --motion-filter enable | score-only | disable and its thresholds). The scores cost
  // nothing extra in the single decode pass, so the default records them without filtering (upstream's
  // default is "disable"); "enable" drops clips under either threshold.
  std::string motion_filter = "score-only";
  double motion_global_mean_threshold = 0.00098;
  double motion_per_patch_min_256_threshold = 0.000001;
  // Static: the mean absolute difference between consecutive frames (0..255, at analysis resolution, over
  // the clip) is below this; 0 disables.
  double static_threshold = 0.5;
  // Blank: the mean in-frame luma standard deviation is below this (uniform frames); 0 disables.
  double blank_threshold = 6.0;
  // Too dark / too bright: the mean luma (0..255) is outside [min_brightness, max_brightness].
  double min_brightness = 16.0, max_brightness = 245.0;
  // Blur: variance of the Laplacian of the luma at 256 px short side (inside the crop) below this; 0 disables.
  double blur_threshold = 0.0;
  // Bounds on the (cropped) clip; 0 disables each.
  int min_width = 0, min_height = 0;
  double min_aspect = 0.0, max_aspect = 0.0;  // width / height
  double min_duration_s = 0.0, max_duration_s = 0.0;
  // Quality / aesthetic scorer (when a model is given): kept when score >= threshold.
  double aesthetic_threshold = 3.5;
};

struct BorderOptions {
  bool enabled = true;
  double limit = 24.0;       // a row / column is black when its mean luma stays <= limit (ffmpeg cropdetect)
  double max_asymmetry = 0.04;  // opposite bars must match within this fraction (else it is dark content)
};

struct AnalysisOptions {
  ShotDetectorOptions shots;
  ClipRuleOptions clips;
  FilterOptions filters;
  BorderOptions border;
  double sample_fps = 2.0;    // motion / border / blur / hash sampling rate (cosmos-curate motion: 2 fps)
  int hash_frames = 5;        // perceptual hashes per clip (evenly spaced)
  int model_frames = 8;       // frames per clip given to the embedder / scorer / captioner
  double model_fps = 1.0;     // rate at which model frames are collected
  int decode_threads = 0;     // 0 = all cores
  std::string decode = "auto";  // cpu | nvdec | auto (NVDEC when a CUDA device opens; see gpu.h)
  int gpu = -1;                 // CUDA device for NVDEC; -1 = this process's GPU (local rank % visible GPUs)
  bool sidecar_captions = true;
  // Optional models (not owned; may be null). Thread-safe implementations may be shared across workers.
  ClipEmbedder* embedder = nullptr;
  ClipScorer* scorer = nullptr;
  Captioner* captioner = nullptr;
};

struct CropBox {
  int x = 0, y = 0, w = 0, h = 0;
  bool operator==(const CropBox& o) const { return x == o.x && y == o.y && w == o.w && h == o.h; }
};

// One clip: the upstream per-clip metadata (cosmos-curate metadata_writer_stage._make_clip_metadata) plus the
// frame span, filter outcome and shard location.
struct ClipRecord {
  std::string span_uuid;  // uuid5(NAMESPACE_URL, f"{source_video}_{start_frame}_{end_frame}")
  std::string source_video;
  int64_t start_frame = 0, end_frame = 0;
  double start_s = 0, end_s = 0;  // duration_span
  int width_source = 0, height_source = 0;
  double framerate_source = 0;
  CropBox crop;
  // Scores.
  std::optional<double> motion_global_mean, motion_per_patch_min_256;
  std::string motion_method;  // "motion_vectors" | "frame_diff" | ""
  double brightness = 0, contrast = 0, frame_diff = 0;
  std::optional<double> blur;
  std::optional<double> aesthetic_score;
  std::vector<uint64_t> phash;
  std::vector<float> embedding;
  std::string caption, caption_source;  // caption_source: "sidecar:<file>", "model:<name>", "none"
  // Keyframe alignment (for stream copy): timestamps (stream time base) of the first frame and of the first
  // frame after the clip (kEndOfStream: none; null in JSON), and whether those are keyframes.
  static constexpr int64_t kEndOfStream = std::numeric_limits<int64_t>::max();
  int64_t start_pts = 0, end_pts = 0;
  bool start_key = false, end_key = false;
  // Outcome.
  bool kept = true;
  std::vector<std::string> filter_reasons;
  std::vector<std::string> errors;
  std::string duplicate_of;
  // Filled by the transcoder / shard writer.
  int width = 0, height = 0;
  double framerate = 0;
  int64_t num_frames = 0, num_bytes = 0;
  std::string video_codec, shard, key;
  bool stream_copied = false;
  std::string stream_copy_declined;  // --stream-copy: why this clip was re-encoded instead (empty: copied / not asked)

  int64_t length() const { return end_frame - start_frame; }
  // clips.jsonl / shard metadata; the embedding (large) only on request (the resume journal keeps it).
  nlohmann::json ToJson(bool with_embedding = false) const;
  static ClipRecord FromJson(const nlohmann::json& j);
};

struct VideoRecord {
  std::string source_video;
  std::string status = "ok";  // ok | failed
  std::string error;
  double fps = 0;
  int64_t num_frames = 0;
  int width = 0, height = 0;
  double duration_s = 0;
  std::string codec;
  std::vector<Shot> shots;
  std::vector<Transition> transitions;
  std::vector<std::string> clips;  // span_uuids
  int decode_errors = 0;
  nlohmann::json ToJson() const;
  static VideoRecord FromJson(const nlohmann::json& j);
};

struct VideoAnalysis {
  VideoRecord video;
  std::vector<ClipRecord> clips;
  int64_t peak_pending_frames = 0;  // largest number of frames held at once (bounded-memory check)
};

// Analyses one video. Unreadable / broken inputs give an error status (the pipeline records them as failed).
absl::StatusOr<VideoAnalysis> AnalyzeVideo(const std::string& path, const AnalysisOptions& options);

// uuid5(NAMESPACE_URL, name) as text ("xxxxxxxx-xxxx-5xxx-yxxx-xxxxxxxxxxxx").
std::string Uuid5Url(const std::string& name);
std::string SpanUuid(const std::string& source_video, int64_t start_frame, int64_t end_frame);

// --- pieces exposed for tests ---
// cosmos-curate motion scores from a per-pixel mean motion map (float [h][w], row-major).
void MotionScoresFromMap(const std::vector<float>& map, int w, int h, double* global_mean, double* per_patch_min_256);
// 64-bit DCT perceptual hash of a gray image (imagehash.phash: 32x32, DCT-II, 8x8 low frequencies > median).
uint64_t PerceptualHash(const uint8_t* gray, int w, int h, int stride);
// Black-border crop from per-row / per-column maximum (over frames) mean luma.
CropBox BorderCrop(const std::vector<float>& row_max, const std::vector<float>& col_max, const BorderOptions& o);

}  // namespace wfm::curation
