// The curation pipeline's own FFmpeg decode loop: one demux + decode pass that hands every frame to the
// analysis stages in its native pixel format (no full-resolution RGB conversion), with the codec's motion
// vectors (AV_CODEC_FLAG2_EXPORT_MVS side data, as cosmos-curate's motion filter reads them), the full-resolution
// luma plane, and cached swscale conversions to the small RGB / gray frames the detectors use. Inputs are files
// or in-memory bytes (a clip read from a webdataset shard).
//
//   WFM_ASSIGN_OR_RETURN(auto dec, VideoDecoder::Open("in.mp4", {.export_motion_vectors = true}));
//   while (true) {
//     WFM_ASSIGN_OR_RETURN(bool more, dec->Next());
//     if (!more) break;
//     const DecodedFrame& f = dec->frame();
//     std::vector<uint8_t> rgb(128 * 72 * 3);
//     WFM_RETURN_IF_ERROR(f.ToRgb(128, 72, rgb.data()));
//     for (const MotionVector& mv : f.MotionVectors()) ...
//   }
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "wfm/core/video_io.h"

struct AVFrame;

namespace wfm::curation {

// One exported motion vector (the fields of FFmpeg's AVMotionVector). The block [dst - w/2, dst + w/2) of the
// current frame moved by -(motion_x, motion_y) / motion_scale pixels relative to its reference.
struct MotionVector {
  int32_t source = 0;  // < 0: past reference, > 0: future reference
  int32_t w = 0, h = 0;
  int32_t src_x = 0, src_y = 0, dst_x = 0, dst_y = 0;
  int32_t motion_x = 0, motion_y = 0;
  int32_t motion_scale = 1;
};

struct DecoderOptions {
  int threads = 0;                     // decoder threads; 0 = all cores
  bool export_motion_vectors = false;  // attach the codec's motion vectors (H.264, MPEG-1/2/4, H.263 family)
  int max_decode_errors = 200;         // corrupt packets tolerated before the decode fails
  // Constant frame rate output, like `ffmpeg -vsync cfr`: frame i is the picture shown at time i / fps. Gaps in
  // the timestamps (AVI "dropped" frames, VFR) repeat the previous picture (DecodedFrame::repeated()), frames
  // more than a frame early are dropped. Off: every decoded picture once, in display order.
  bool constant_frame_rate = true;
  // "cpu", "nvdec" or "auto" (gpu.h ResolveDecode). NVDEC pictures are copied to system memory (NV12 / P010) and
  // take the same conversions as software ones. Hardware decoders export no motion vectors (the analysis then
  // uses its block-matching fallback). "auto" decodes on the CPU when no CUDA device opens and for the codecs and
  // profiles NVDEC cannot take; "nvdec" makes those an error.
  std::string decode = "cpu";
  int gpu = -1;  // CUDA device for NVDEC; -1 = this process's GPU (ProcessGpu)
};

class VideoDecoder;

// A decoded frame, valid until the next VideoDecoder::Next(). Conversions go through swscale contexts cached
// in the decoder (one per target size/format), with area averaging for downscales.
class DecodedFrame {
 public:
  int64_t index() const { return index_; }  // display-order index from 0
  int64_t pts() const { return pts_; }      // best-effort timestamp in the stream time base (INT64_MIN if none)
  double time_s() const { return time_s_; }
  bool key_frame() const;
  // A repeat of the previous picture inserted for constant frame rate (no new content, no motion vectors).
  bool repeated() const { return repeated_; }
  int width() const;
  int height() const;

  // RGB24 / GRAY8 at (w, h) into a contiguous buffer of w*h*3 / w*h bytes (full-range gray).
  absl::Status ToRgb(int w, int h, uint8_t* dst) const;
  absl::Status ToGray(int w, int h, uint8_t* dst) const;
  // The full-resolution 8-bit luma plane. Points into the frame for 8-bit planar / semi-planar YUV; other
  // formats are converted once per frame. *full_range tells whether 0..255 (else 16..235 video range).
  absl::Status Luma(const uint8_t** data, int* stride, bool* full_range = nullptr) const;
  // Motion vectors of this frame (empty when the codec exported none, e.g. intra frames).
  std::vector<MotionVector> MotionVectors() const;
  bool has_motion_vectors() const;

  const AVFrame* av_frame() const { return frame_; }

 private:
  friend class VideoDecoder;
  VideoDecoder* decoder_ = nullptr;
  AVFrame* frame_ = nullptr;
  int64_t index_ = -1, pts_ = 0;
  double time_s_ = 0.0;
  bool repeated_ = false;
};

class VideoDecoder {
 public:
  static absl::StatusOr<std::unique_ptr<VideoDecoder>> Open(const std::string& path, const DecoderOptions& options = {});
  // Decodes from memory (`data` must outlive the decoder); `name` is used in messages.
  static absl::StatusOr<std::unique_ptr<VideoDecoder>> OpenBytes(absl::string_view data, const std::string& name,
                                                                 const DecoderOptions& options = {});
  ~VideoDecoder();
  VideoDecoder(const VideoDecoder&) = delete;
  VideoDecoder& operator=(const VideoDecoder&) = delete;

  // Container/stream properties. num_frames is the container's count or an estimate from the duration.
  const VideoInfo& info() const { return info_; }
  // True when pictures come from NVDEC (false for a software decode, including an "auto" fallback).
  bool hardware() const;
  // Decodes the next frame; false at the end of the stream.
  absl::StatusOr<bool> Next();
  const DecodedFrame& frame() const { return current_; }
  int64_t frames_decoded() const { return current_.index_ + 1; }  // frames output so far (incl. repeats)
  // Corrupt packets skipped so far, and whether reading stopped on an I/O or demuxer error rather than EOF.
  int decode_errors() const { return decode_errors_; }
  // Packets the demuxer marked corrupt (short reads, bad checksums) / decoded frames flagged corrupt, and
  // whether the stream ended on one (a truncated file).
  int corrupt_packets() const { return corrupt_packets_; }
  int corrupt_frames() const { return corrupt_frames_; }
  bool ends_corrupt() const { return last_packet_corrupt_ || last_frame_corrupt_; }
  bool read_error() const { return read_error_; }
  const std::string& read_error_message() const { return read_error_message_; }

  struct Impl;

 private:
  friend class DecodedFrame;
  VideoDecoder();
  absl::Status Init(const DecoderOptions& options);
  absl::StatusOr<bool> ReceiveFrame(AVFrame* out);

  std::unique_ptr<Impl> impl_;
  VideoInfo info_;
  DecodedFrame current_;
  int decode_errors_ = 0, corrupt_packets_ = 0, corrupt_frames_ = 0;
  bool last_packet_corrupt_ = false, last_frame_corrupt_ = false;
  bool read_error_ = false;
  std::string read_error_message_;
};

// The constant-frame-rate rule of DecoderOptions::constant_frame_rate (ffmpeg -vsync cfr): a picture whose
// timestamp puts it `position` frames after the stream start, arriving when `next` is the next output index, is
// dropped (-1: more than 1.1 frames early), shown as frame `next` (0), or shown after n > 0 repeats of the
// previous picture (more than 1.1 frames late; at most a minute of repeats). Stream copy checks with it that the
// copied pictures are exactly a clip's frames.
int64_t CfrDecision(double position, int64_t next, double fps);

// Decodes a whole (short) video held in memory to uint8 [T, h, w, 3] RGB at the given size (0 = source size).
absl::StatusOr<at::Tensor> DecodeBytesToTensor(absl::string_view data, int width = 0, int height = 0,
                                               const std::string& name = "<memory>");

}  // namespace wfm::curation
