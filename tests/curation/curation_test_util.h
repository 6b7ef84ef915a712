// Helpers shared by the curation tests: real test videos composed from ../shared/media (hard cuts,
// cross-dissolves, letterbox), encoded with the ffmpeg command-line tool.
#pragma once

#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"

namespace wfm::curation::testing {

// Decodes a video (or frames [start, start+count) of it) to uint8 [T, H, W, 3] at (w, h) (0 = source size).
absl::StatusOr<at::Tensor> LoadFrames(const std::string& path, int w = 0, int h = 0, int64_t start = 0,
                                      int64_t count = -1);
// Encodes uint8 [T, H, W, 3] frames with ffmpeg (`codec_args` e.g. "-c:v libx264 -crf 18").
absl::Status EncodeFrames(const at::Tensor& frames, double fps, const std::string& path,
                          const std::string& codec_args = "-c:v libx264 -preset veryfast -crf 18 -pix_fmt yuv420p");

// Ground truth of a stitched video.
struct Stitched {
  int64_t num_frames = 0;
  std::vector<int64_t> cuts;       // first frame of the new shot
  std::vector<int64_t> dissolves;  // centre frame of each cross-dissolve
};
// Writes `num_segments` shots of `seg_frames` frames (25 fps, w x h) cut from different sources and regions of
// the shared clips (cityCC0, vtest, tree), joined alternately by hard cuts and `dissolve_frames`-long linear
// cross-dissolves, streamed into ffmpeg (H.264 unless `codec_args` says otherwise).
// `variant` changes the source offsets and regions (different videos from the same clips).
absl::StatusOr<Stitched> WriteStitchedVideo(const std::string& path, int w, int h, int num_segments, int seg_frames,
                                            int dissolve_frames,
                                            const std::string& codec_args = "-c:v libx264 -preset veryfast -crf 20 -pix_fmt yuv420p",
                                            int variant = 0);

// True when `/usr/bin/python3 -c "import torch"` works (for tests that script TorchScript models).
bool HavePythonTorch();

}  // namespace wfm::curation::testing
