// RAII owners for FFmpeg handles: one unique_ptr alias per handle type, each with the matching free function,
// so no error path has to remember a cleanup (the ggml-cpp.h pattern). Internal to wfm's video code, but public
// so other modules that talk to FFmpeg directly (curation) reuse the same owners. Link PkgConfig::FFMPEG.
//
//   AVFormatContextPtr fmt;
//   AVFormatContext* raw = nullptr;
//   if (int err = avformat_open_input(&raw, path, nullptr, nullptr); err < 0) return FfmpegError(err, path);
//   fmt.reset(raw);                                  // closed by avformat_close_input on every path
//   AVPacketPtr pkt(av_packet_alloc());
#pragma once

#include <memory>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/buffer.h>
#include <libavutil/frame.h>
#include <libswscale/swscale.h>
}

namespace wfm {

struct AVFormatInputDeleter {  // from avformat_open_input
  void operator()(AVFormatContext* p) const { avformat_close_input(&p); }
};
struct AVFormatOutputDeleter {  // from avformat_alloc_output_context2; closes the AVIO it opened
  void operator()(AVFormatContext* p) const {
    if (p && p->pb && !(p->oformat->flags & AVFMT_NOFILE)) avio_closep(&p->pb);
    avformat_free_context(p);
  }
};
struct AVCodecContextDeleter {
  void operator()(AVCodecContext* p) const { avcodec_free_context(&p); }
};
struct AVFrameDeleter {
  void operator()(AVFrame* p) const { av_frame_free(&p); }
};
struct AVPacketDeleter {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
struct SwsContextDeleter {
  void operator()(SwsContext* p) const { sws_freeContext(p); }
};
struct AVBufferRefDeleter {
  void operator()(AVBufferRef* p) const { av_buffer_unref(&p); }
};

using AVFormatInputPtr = std::unique_ptr<AVFormatContext, AVFormatInputDeleter>;
using AVFormatOutputPtr = std::unique_ptr<AVFormatContext, AVFormatOutputDeleter>;
using AVCodecContextPtr = std::unique_ptr<AVCodecContext, AVCodecContextDeleter>;
using AVFramePtr = std::unique_ptr<AVFrame, AVFrameDeleter>;
using AVPacketPtr = std::unique_ptr<AVPacket, AVPacketDeleter>;
using SwsContextPtr = std::unique_ptr<SwsContext, SwsContextDeleter>;
using AVBufferRefPtr = std::unique_ptr<AVBufferRef, AVBufferRefDeleter>;

// Unreferences a frame/packet when it goes out of scope (the "unref each frame" step of the receive loop).
struct FrameUnrefGuard {
  AVFrame* frame;
  ~FrameUnrefGuard() { av_frame_unref(frame); }
};
struct PacketUnrefGuard {
  AVPacket* packet;
  ~PacketUnrefGuard() { av_packet_unref(packet); }
};

}  // namespace wfm
