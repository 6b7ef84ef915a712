// Clip transcoding: one sequential decode of the source feeds an encoder per clip (frames [start, end) in
// the analysis pass's constant-frame-rate numbering), cropped to the clip's black-border box, optionally
// resized / resampled, H.264 in MP4 (+faststart). Encoders: libx264 (CRF or bitrate; cosmos-curate uses
// 4 Mbit/s), h264_nvenc when a GPU encoder opens ("auto" tries it first), libopenh264, mpeg4 as a last
// resort. Stream copy (no re-encode) when allowed and the cut is keyframe-aligned with nothing to crop,
// resize or resample, and only when the copied pictures are exactly the clip's frames: a variable-frame-rate span
// (pictures the constant-frame-rate numbering drops or repeats) is re-encoded, with the reason recorded.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "wfm/curation/analysis.h"

namespace wfm::curation {

struct TranscodeOptions {
  std::string encoder = "auto";  // auto (h264_nvenc if it opens, else libx264) | libx264 | h264_nvenc | libopenh264 | mpeg4
  int64_t bit_rate = 4000000;    // bits/s; 0 = constant quality (crf)
  int crf = 23;
  std::string preset = "veryfast";
  int height = 0;                // output height (0 = keep); width keeps the aspect ratio, both even
  double fps = 0.0;              // output frame rate (0 = the source rate)
  int threads = 0;               // encoder + decoder threads (0 = auto)
  bool crop = true;              // apply the clip's black-border crop
  bool stream_copy = false;      // allow stream copy for keyframe-aligned clips
  std::string decode = "auto";   // source decode: cpu | nvdec | auto (see gpu.h)
  int gpu = -1;                  // CUDA device for NVDEC and h264_nvenc; -1 = this process's GPU
};

struct ClipJob {
  int64_t start_frame = 0, end_frame = 0;  // [start, end) in the decoder's CFR numbering
  CropBox crop;                            // w == 0: full frame
  std::string output;                      // .mp4 path (written atomically)
  // For stream copy: timestamps (stream time base) of the first and of the first excluded frame, and
  // whether those frames are keyframes (end: or the end of the stream).
  int64_t start_pts = 0, end_pts = 0;
  bool start_key = false, end_key = false;
};

// The job for an analysed clip: its span, crop box and keyframe alignment, written to `output`.
ClipJob JobForClip(const ClipRecord& clip, std::string output);

struct ClipOutput {
  int width = 0, height = 0;
  double fps = 0;
  int64_t num_frames = 0, num_bytes = 0;
  std::string codec;  // "h264", ...
  bool stream_copied = false;
  std::string copy_declined;  // with stream copy allowed: why this clip was re-encoded instead (else empty)
};

// Encodes every job (sorted by start_frame, non-overlapping) from one pass over `source`.
absl::StatusOr<std::vector<ClipOutput>> TranscodeClips(const std::string& source, const std::vector<ClipJob>& jobs,
                                                       const TranscodeOptions& options);

// The encoder "auto" resolves to on this machine (h264_nvenc when it opens, else libx264, else mpeg4).
std::string ResolveEncoder(const std::string& requested);

}  // namespace wfm::curation
