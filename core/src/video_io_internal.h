// Internals shared by the decode (video_io.cc) and encode (video_encode.cc) halves of wfm's video IO: FFmpeg
// log set-up, input opening with file-naming errors, the send_packet/receive_frame decoder, and colour-correct
// YUV <-> RGB24 conversion with swscale.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "wfm/core/ffmpeg_ptr.h"
#include "wfm/core/video_io.h"

namespace wfm::video_internal {

// Quiets FFmpeg's own stderr logging (fatal only; info when WFM_LOG_LEVEL=debug). Idempotent.
void InitFfmpeg();

// swscale flags for decoding: bicubic (antialiased when shrinking: swscale widens the kernel by the ratio) with
// full-resolution chroma interpolation. SWS_ACCURATE_RND doubles the conversion cost and changes nothing for the
// default (BT.601, limited range) matrix, but without it other matrices (BT.709, full range) come out up to 16
// levels off, so it is added for those only. Encoding always uses it (x264 dominates the cost there).
inline constexpr int kSwsFlags = SWS_BICUBIC | SWS_FULL_CHR_H_INT;
inline constexpr int kSwsEncodeFlags = SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT;

// An opened input with its best video stream.
struct Input {
  std::string path;
  AVFormatInputPtr fmt;
  int stream_index = -1;
  AVStream* stream = nullptr;
};

// Opens `path`, reads the stream info and picks the best video stream. Errors name the file: missing, empty,
// not a media file, no video stream.
absl::StatusOr<Input> OpenInput(const std::string& path);

// Fills the container-level fields of VideoInfo (no decoding).
VideoInfo InfoFromInput(const Input& in);

// Decodes the video stream of one input: the canonical loop (drain receive_frame until EAGAIN, then feed the
// next packet; AVERROR_EOF ends; flush with a null packet). Corrupt packets are skipped and counted, like the
// ffmpeg tool does; a stream without any decodable frame is an error.
class FrameDecoder {
 public:
  struct Options {
    int threads = 0;          // 0 = DefaultNumThreads()
    std::string hwaccel;      // "", "cuda", "auto"
    bool count_only = false;  // frames are only counted: cheaper decoding (no loop filter)
  };
  absl::Status Open(const std::string& path, const Options& options);
  // Next decoded frame in presentation order, in system memory. Owned by the decoder and valid until the next
  // call (callers may av_frame_move_ref it). nullptr at the end of the stream.
  absl::StatusOr<AVFrame*> Next();

  // Seeks to the keyframe at or before `timestamp` (stream time base) and resets the decoder.
  absl::Status Seek(int64_t timestamp);

  const Input& input() const { return in_; }
  const AVCodecContext* codec() const { return dec_.get(); }
  int64_t frames_decoded() const { return frames_; }
  int64_t corrupt_packets() const { return corrupt_; }
  bool using_hwaccel() const { return hw_fmt_ != AV_PIX_FMT_NONE; }

 private:
  absl::Status SetUpHwaccel(const AVCodec* codec, const std::string& hwaccel);
  static AVPixelFormat GetFormat(AVCodecContext* ctx, const AVPixelFormat* formats);

  Input in_;
  AVCodecContextPtr dec_;
  AVPacketPtr pkt_;
  AVFramePtr frame_, sw_frame_;
  AVBufferRefPtr hw_device_;
  AVPixelFormat hw_fmt_ = AV_PIX_FMT_NONE;
  bool flushed_ = false, done_ = false;
  int64_t frames_ = 0, corrupt_ = 0;
};

// Any decoded frame -> packed RGB24 at (width, height), using the frame's colour matrix and range tags
// (BT.601 when untagged, like swscale and the ffmpeg tool). Output is full-range RGB.
class RgbConverter {
 public:
  absl::Status Convert(const AVFrame* src, int width, int height, uint8_t* dst, int dst_linesize);

 private:
  SwsContextPtr ctx_;
  std::vector<uint8_t> scratch_;  // 64-byte aligned rows when the destination's are not
  int key_[7] = {-1, -1, -1, -1, -1, -1, -1};
};

// Frame timestamp in the stream's time base (best effort), or AV_NOPTS_VALUE.
int64_t FrameTimestamp(const AVFrame* frame);
// Frame duration in the stream's time base, or 0 when unknown.
int64_t FrameDuration(const AVFrame* frame);

}  // namespace wfm::video_internal
