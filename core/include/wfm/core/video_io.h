// Video IO over FFmpeg: probe, streaming decode (frame callback / chunk iterator) with optional resize,
// frame-range and fps resampling, threaded decoding, optional CUDA hwaccel; encode to MP4 (libx264, mpeg4
// fallback) with correct timestamps; PNG frames. Every FFmpeg handle is owned by a unique_ptr with a deleter;
// every failure is a Status naming the file. FFmpeg's own stderr chatter is off unless WFM_LOG_LEVEL=debug.
// RAII owners for raw FFmpeg handles: wfm/core/ffmpeg_ptr.h.
//
//   WFM_ASSIGN_OR_RETURN(VideoInfo info, ProbeVideo("clip.mp4"));
//   WFM_ASSIGN_OR_RETURN(at::Tensor frames, DecodeVideo("clip.mp4"));          // uint8 [T, H, W, 3]
//   DecodeOptions o; o.width = 256; o.height = 256; o.fps = 12;
//   WFM_RETURN_IF_ERROR(DecodeVideoStream("long.mp4", o, [&](const at::Tensor& chunk, int64_t first) {
//     ...;  // chunk: uint8 [t, H, W, 3], frames first .. first+t-1 of the (resampled) output
//     return absl::OkStatus();
//   }));
//   WFM_RETURN_IF_ERROR(WriteVideo("out.mp4", frames, {.fps = 24}));
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace wfm {

struct Rational {
  int64_t num = 0, den = 1;
  double value() const { return den ? static_cast<double>(num) / den : 0.0; }
};

struct VideoInfo {
  std::string path;
  std::string container;      // "avi", "mov,mp4,m4a,3gp,3g2,mj2", ...
  std::string codec;          // "h264", "msmpeg4v3", "cinepak", "mpeg2video", ...
  int width = 0, height = 0;  // coded size (before rotation)
  Rational fps;               // average frame rate of the video stream
  Rational time_base;
  int64_t num_frames = 0;     // exact when probed with exact=true, else the container's count or an estimate
  bool num_frames_exact = false;
  double duration_s = 0.0;
  int rotation = 0;           // degrees from the display matrix (0, 90, 180, 270)
  int64_t bit_rate = 0;
  std::string pix_fmt;
};

// The probe as one JSON object (fps and time_base as "num/den" strings plus fps_value):
// {"path":..,"container":..,"codec":..,"width":..,"height":..,"fps":"30000/1001","fps_value":29.97,...}.
// indent < 0: one line.
std::string VideoInfoToJson(const VideoInfo& info, int indent = -1);

// Probes a file. With `exact`, the whole stream is decoded (no pixel conversion, loop filter skipped) and the
// frame count equals `ffprobe -count_frames` (e.g. 68 for tree.avi, whose AVI index lists 444 entries).
// Damaged packets are skipped like the ffmpeg tool does; a file without one decodable frame is an error.
absl::StatusOr<VideoInfo> ProbeVideo(const std::string& path, bool exact = false);

struct DecodeOptions {
  int width = 0, height = 0;     // output size; 0 keeps the source size (one 0: keep aspect ratio). swscale
                                 // bicubic with full chroma interpolation (antialiased when shrinking)
  double fps = 0.0;              // resample to this rate (nearest-timestamp frame selection; variable-rate input
                                 // lands on a constant timeline); 0 = every decoded frame once
  int64_t start_frame = 0;       // first output frame (index in the resampled output sequence). With fps > 0 a
                                 // start beyond 3 s is reached by seeking (same frames as decoding through);
                                 // with fps == 0 indices count decoded frames, so earlier frames are decoded
  int64_t num_frames = -1;       // -1 = to the end
  int threads = 0;               // decoder threads (frame + slice); 0 = DefaultNumThreads()
  std::string hwaccel;           // "" (software), "cuda" (NVDEC; FailedPrecondition without a GPU/driver,
                                 // Unimplemented for codecs NVDEC lacks), "auto" (cuda when usable)
  int64_t chunk_frames = 32;     // frames per callback in streaming decode
  bool apply_rotation = false;   // rotate frames by the display matrix (width/height then refer to the result)
};

// Frame callback of the streaming decoder: `chunk` is uint8 [t, H, W, 3] RGB (contiguous, CPU), `first_index`
// is the output index of chunk[0]. Returning a non-OK status stops decoding and is returned to the caller.
using FrameChunkCallback = std::function<absl::Status(const at::Tensor& chunk, int64_t first_index)>;

// Streams the (selected, resampled, resized) frames through `callback` in chunks; memory stays bounded by the
// chunk size, whatever the video length. The chunk buffer is reused when the callback keeps no reference to it
// (a callback that stores the tensor, or a view of it, gets fresh buffers from then on). Returns the number of
// frames delivered.
absl::StatusOr<int64_t> DecodeVideoStream(const std::string& path, const DecodeOptions& options,
                                          const FrameChunkCallback& callback);

// Decodes into one uint8 tensor [T, H, W, 3] (RGB).
absl::StatusOr<at::Tensor> DecodeVideo(const std::string& path, const DecodeOptions& options = {});

// uint8 [T, H, W, 3] -> float32 [3, T, H, W] in [-1, 1] (the tokenizer's input convention), and back
// (values clamped and rounded).
at::Tensor FramesToModelInput(const at::Tensor& frames_thwc_u8);
at::Tensor ModelOutputToFrames(const at::Tensor& video_cthw);

// uint8 [T, H, W, 3] -> uint8 [T, h, w, 3]: antialiased bilinear resize so that the frames cover h x w, then a
// centre crop -- the world models' input preparation (cosmos utils/inference.py resize_input: torchvision
// resize of the uint8 video to ceil(scale * size), then center_crop with offsets round((size - crop) / 2)).
at::Tensor ResizeCoverCrop(const at::Tensor& frames_thwc_u8, int64_t h, int64_t w);

// Pull-style decoder for callers that want frames one chunk at a time.
class VideoReader {
 public:
  static absl::StatusOr<std::unique_ptr<VideoReader>> Open(const std::string& path, const DecodeOptions& options = {});
  virtual ~VideoReader() = default;
  virtual const VideoInfo& info() const = 0;
  // Next chunk of up to `max_frames` frames, uint8 [t, H, W, 3]; an undefined tensor at the end of the stream.
  virtual absl::StatusOr<at::Tensor> Next(int64_t max_frames) = 0;
  // Output index of the next frame Next() returns.
  virtual int64_t position() const = 0;
};

struct EncodeOptions {
  double fps = 24.0;
  Rational fps_rational;         // used instead of `fps` when num > 0 (keeps e.g. 30000/1001 exact)
  std::string codec = "libx264"; // libx264 | mpeg4 | libvpx-vp9 | h264_nvenc | ... (libx264 -> mpeg4 fallback)
  int crf = 23;
  std::string preset = "veryfast";
  int64_t bit_rate = 0;          // > 0: target bitrate instead of CRF
  int threads = 0;
  std::string pix_fmt = "yuv420p";
};

// Encodes uint8 [T, H, W, 3] RGB frames to a video file (container from the extension: .mp4, .mkv, .webm,
// .avi), atomically (temp file + rename). Odd sizes are padded to even for yuv420p.
absl::Status WriteVideo(const std::string& path, const at::Tensor& frames_thwc_u8, const EncodeOptions& options = {});

// Incremental encoder for streams that do not fit in memory.
class VideoWriter {
 public:
  static absl::StatusOr<std::unique_ptr<VideoWriter>> Open(const std::string& path, int width, int height,
                                                           const EncodeOptions& options = {});
  virtual ~VideoWriter() = default;  // without Close(), the temp file is removed
  // uint8 [t, H, W, 3] or [H, W, 3].
  virtual absl::Status Write(const at::Tensor& frames_thwc_u8) = 0;
  // Flushes the encoder, writes the trailer and renames into place.
  virtual absl::Status Close() = 0;
  virtual int64_t frames_written() const = 0;
};

// Writes frames as DIR/PREFIX000000.png ... (uint8 [T, H, W, 3] or one frame [H, W, 3] to a single PATH.png).
absl::Status WritePngFrames(const std::string& dir, const at::Tensor& frames_thwc_u8,
                            const std::string& prefix = "frame_");
absl::Status WritePng(const std::string& path, const at::Tensor& frame_hwc_u8);
// Reads a PNG (or any single image FFmpeg decodes) as uint8 [H, W, 3].
absl::StatusOr<at::Tensor> ReadImage(const std::string& path);

}  // namespace wfm
