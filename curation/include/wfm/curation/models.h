// User-supplied TorchScript models the pipeline can plug in, behind small interfaces:
//  - ScriptModel: a loaded TorchScript file (thread-safe forward, no grad), tensor or string output.
//  - ClipEmbedder: one vector per clip for semantic dedup. TorchScript convention: forward(float [T, 3, H, W]
//    in [0, 1]) -> [T, D] (or [D]); the pipeline averages over T and L2-normalises.
//  - ClipScorer: a quality / aesthetic score per clip. forward(float [T, 3, H, W] in [0, 1]) -> [T], [T, 1] or
//    a scalar; the mean is the clip's aesthetic_score (cosmos-curate's threshold is 3.5).
//  - Captioner: a caption per clip. TorchScript convention: forward(uint8 [T, H, W, 3]) -> str. Sidecar
//    captions (VIDEO.txt / VIDEO.json next to the input) are handled by SidecarCaptions.
// Frames given to these models are sampled from the clip (cropped to its black-border box) at the model's
// input size (`width` x `height`).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace wfm::curation {

class ScriptModel {
 public:
  static absl::StatusOr<std::unique_ptr<ScriptModel>> Load(const std::string& path, const std::string& device = "cpu");
  ~ScriptModel();
  // forward(inputs...): the output tensor (the first tensor of a tuple / list output), on the CPU.
  absl::StatusOr<at::Tensor> RunTensor(const std::vector<at::Tensor>& inputs);
  // forward(inputs...) for models that return a string.
  absl::StatusOr<std::string> RunString(const std::vector<at::Tensor>& inputs);
  const std::string& path() const { return path_; }
  struct Impl;

 private:
  ScriptModel();
  std::unique_ptr<Impl> impl_;
  std::string path_;
  std::mutex mu_;
};

class ClipEmbedder {
 public:
  virtual ~ClipEmbedder() = default;
  virtual int width() const = 0;
  virtual int height() const = 0;
  // frames: uint8 [T, height, width, 3].
  virtual absl::StatusOr<std::vector<float>> Embed(const at::Tensor& frames_thwc_u8) = 0;
  virtual std::string name() const = 0;
};

class ClipScorer {
 public:
  virtual ~ClipScorer() = default;
  virtual int width() const = 0;
  virtual int height() const = 0;
  virtual absl::StatusOr<double> Score(const at::Tensor& frames_thwc_u8) = 0;
  virtual std::string name() const = 0;
};

class Captioner {
 public:
  virtual ~Captioner() = default;
  virtual int width() const = 0;
  virtual int height() const = 0;
  virtual absl::StatusOr<std::string> Caption(const at::Tensor& frames_thwc_u8) = 0;
  virtual std::string name() const = 0;
};

absl::StatusOr<std::unique_ptr<ClipEmbedder>> LoadTorchScriptEmbedder(const std::string& path, int width, int height,
                                                                      const std::string& device = "cpu");
absl::StatusOr<std::unique_ptr<ClipScorer>> LoadTorchScriptScorer(const std::string& path, int width, int height,
                                                                  const std::string& device = "cpu");
absl::StatusOr<std::unique_ptr<Captioner>> LoadTorchScriptCaptioner(const std::string& path, int width, int height,
                                                                    const std::string& device = "cpu");

// Captions from files next to the video: VIDEO.txt (one caption for every clip; also VIDEO_STEM.txt), or
// VIDEO.json / VIDEO_STEM.json: {"caption": "..."} or {"captions": [{"start": s, "end": s, "caption": "..."}]}
// (times in seconds; a clip gets the caption that overlaps it most).
class SidecarCaptions {
 public:
  // Not finding a sidecar is not an error (found() is false); an unreadable one is.
  static absl::StatusOr<SidecarCaptions> Load(const std::string& video_path);
  bool found() const { return found_; }
  const std::string& source() const { return source_; }  // the sidecar file
  // Caption for the span [start_s, end_s); empty when none applies.
  std::string For(double start_s, double end_s) const;

 private:
  struct Entry {
    double start = 0, end = 0;
    std::string caption;
  };
  bool found_ = false;
  std::string source_, whole_;
  std::vector<Entry> entries_;
};

}  // namespace wfm::curation
