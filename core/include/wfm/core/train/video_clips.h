// Training data from a folder of videos: random clips of N frames at a chosen frame rate, random (train) or
// centre (validation) crops with optional zoom and flip, a train/validation split BY TIME inside every video (the
// last `val_fraction` of each video is held out, so validation clips are never seen in training), and a
// background thread that prepares the next batches while the model trains.
//
// Every clip is a pure function of (seed, clip index): a resumed run, or a loader with any prefetch depth, draws
// exactly the same clips. With several ranks, rank r of w takes clip indices (batch * w + r) * B + i.
//
// Videos are decoded once, resized so that the short side equals `resize_short_side`, and kept in memory as
// uint8 when they fit `cache_bytes` (the common case for small training sets); otherwise clips are decoded on
// demand with the streaming decoder (seek to the clip, decode N frames), so memory stays bounded.
//
//   train::VideoClipOptions o;
//   o.num_frames = 17; o.width = o.height = 128; o.fps = 10;
//   WFM_ASSIGN_OR_RETURN(auto ds, train::VideoClipDataset::Open({"../shared/media"}, o));
//   train::ClipBatchLoader loader(*ds, /*batch_size=*/4);
//   WFM_ASSIGN_OR_RETURN(at::Tensor batch, loader.Next());   // float [4, 3, 17, 128, 128] in [-1, 1]
//   WFM_ASSIGN_OR_RETURN(auto val, ds->ValidationClips(8));   // fixed, centre-cropped held-out clips
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace wfm::train {

struct VideoClipOptions {
  int64_t num_frames = 17;
  double fps = 0.0;                 // resample every video to this rate; 0 = each video's own rate
  int width = 256, height = 256;    // clip size; 0 x 0 = whole frames (evaluation only)
  int resize_short_side = 0;        // decode size: short side of the resized video (0 = max(width, height), or
                                    // the source size for whole frames)
  double max_zoom = 1.0;            // train: crop (H/z, W/z), z uniform in [1, max_zoom], resized to (H, W)
  bool random_flip = false;         // train: horizontal flip with probability 1/2
  double val_fraction = 0.15;       // the last fraction of every video (by time) is validation
  bool evaluation_only = false;     // no training clips needed (val_fraction may be 1: whole videos)
  uint64_t seed = 0;
  int64_t cache_bytes = int64_t{2} << 30;  // keep decoded videos in memory up to this many bytes in total
  int decode_threads = 0;           // FFmpeg decoder threads (0 = auto)
};

// The video file extensions a directory scan picks up.
bool IsVideoFileName(const std::string& path);
// Expands files and directories (recursively, sorted) into the list of video files. NotFound if none.
absl::StatusOr<std::vector<std::string>> ListVideoFiles(const std::vector<std::string>& sources);

struct VideoClip {
  at::Tensor frames;        // uint8 [T, H, W, 3]
  std::string path;
  int64_t start_frame = 0;  // index in the resampled frame sequence
  double start_s = 0.0;
};

class VideoClipDataset {
 public:
  struct Video {
    std::string path;
    double fps = 0;                    // output frame rate of this video
    int64_t num_frames = 0;            // frames at that rate
    int64_t train_end = 0;             // train clips lie in [0, train_end)
    int64_t val_begin = 0;             // validation clips lie in [val_begin, num_frames)
    int decoded_width = 0, decoded_height = 0;
    at::Tensor cache;                  // uint8 [num_frames, h, w, 3] when cached
  };

  static absl::StatusOr<std::unique_ptr<VideoClipDataset>> Open(const std::vector<std::string>& sources,
                                                                const VideoClipOptions& options);

  // Training clip number `index` (random video weighted by its usable train frames, random start, crop, zoom,
  // flip). Thread-safe.
  absl::StatusOr<VideoClip> TrainClip(uint64_t index) const;
  // Up to `max_clips` validation clips: evenly spaced starts over the validation spans, centre crops, no zoom or
  // flip; deterministic. `max_clips` <= 0: every non-overlapping clip.
  absl::StatusOr<std::vector<VideoClip>> ValidationClips(int64_t max_clips) const;

  const std::vector<Video>& videos() const { return videos_; }
  const VideoClipOptions& options() const { return options_; }
  int64_t train_frames() const { return total_train_starts_; }
  // "3 videos, 1427 frames at 10 fps: train 1211 / val 216 frames; cached 92 MB".
  std::string Summary() const;

 private:
  VideoClipDataset() = default;
  absl::StatusOr<at::Tensor> ReadFrames(const Video& v, int64_t start, int64_t count) const;
  at::Tensor CropResize(const at::Tensor& frames, int64_t y, int64_t x, int64_t ch, int64_t cw, bool flip) const;

  VideoClipOptions options_;
  std::vector<Video> videos_;
  std::vector<int64_t> train_starts_;  // cumulative count of valid train start positions per video
  int64_t total_train_starts_ = 0;
  int64_t cached_bytes_ = 0;
  bool resize_ = true;  // decode at decoded_width x decoded_height (false: source size)
};

// Turns clips into model batches: float [B, 3, T, H, W] in [-1, 1].
at::Tensor ClipsToBatch(const std::vector<VideoClip>& clips);

// Batches of training clips prepared by a background thread (`prefetch` batches ahead).
class ClipBatchLoader {
 public:
  ClipBatchLoader(const VideoClipDataset& dataset, int64_t batch_size, int prefetch = 2, int rank = 0,
                  int world_size = 1);
  ~ClipBatchLoader();
  ClipBatchLoader(const ClipBatchLoader&) = delete;
  ClipBatchLoader& operator=(const ClipBatchLoader&) = delete;

  // The next batch (waits for the worker if needed).
  absl::StatusOr<at::Tensor> Next();
  // Index of the batch Next() returns.
  int64_t position() const;
  // Restarts at batch `batch_index` (resume).
  void Seek(int64_t batch_index);

  nlohmann::json SaveState() const { return {{"batch", position()}}; }
  absl::Status LoadState(const nlohmann::json& state);

 private:
  void Start();
  void Stop();
  void Work();
  absl::StatusOr<at::Tensor> MakeBatch(int64_t batch_index) const;

  const VideoClipDataset& dataset_;
  int64_t batch_size_;
  int prefetch_, rank_, world_size_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<int64_t, absl::StatusOr<at::Tensor>>> ready_;
  int64_t next_to_return_ = 0, next_to_make_ = 0;
  bool stop_ = false;
  std::thread worker_;
};

}  // namespace wfm::train
