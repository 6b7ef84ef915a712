// Video encoding over FFmpeg: the VideoWriter (RGB24 -> YUV with swscale, libx264 CRF/preset with an mpeg4
// fallback, pts = frame index in a 1/fps time base rescaled to the muxer's, encoder flushed before the trailer,
// temp file + rename), PNG frames through FFmpeg's png encoder, and image reading through the decoder.
// Follows FFmpeg doc/examples encode_video.c / mux.c.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "video_io_internal.h"
#include "wfm/core/file_util.h"
#include "wfm/core/logging.h"
#include "wfm/core/runtime.h"
#include "wfm/core/status.h"
#include "wfm/core/video_io.h"

extern "C" {
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>
}

namespace wfm {
namespace {

std::string ParentDir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// Checks a frame batch: uint8, [t, H, W, 3] or [H, W, 3]; returns it as contiguous CPU [t, H, W, 3].
absl::StatusOr<at::Tensor> CheckFrames(const at::Tensor& frames, const std::string& path) {
  if (!frames.defined()) return absl::InvalidArgumentError(absl::StrCat(path, ": no frames given"));
  if (frames.scalar_type() != at::kByte) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": frames must be uint8, got ", std::string(c10::toString(frames.scalar_type()))));
  }
  at::Tensor f = frames.dim() == 3 ? frames.unsqueeze(0) : frames;
  if (f.dim() != 4 || f.size(3) != 3 || f.size(1) <= 0 || f.size(2) <= 0) {
    std::ostringstream shape;
    shape << frames.sizes();
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": frames must be [T, H, W, 3] or [H, W, 3] RGB, got ", shape.str()));
  }
  return f.cpu().contiguous();
}

std::string EncoderName(const std::string& codec) {
  if (codec.empty() || codec == "h264" || codec == "x264" || codec == "avc") return "libx264";
  if (codec == "hevc" || codec == "h265" || codec == "x265") return "libx265";
  if (codec == "vp9") return "libvpx-vp9";
  if (codec == "av1") return "libaom-av1";
  return codec;
}

bool HasPrivOption(AVCodecContext* ctx, const char* name) {
  return ctx->priv_data && av_opt_find(ctx->priv_data, name, nullptr, 0, 0) != nullptr;
}

class WriterImpl : public VideoWriter {
 public:
  ~WriterImpl() override {
    if (!closed_) Discard();
  }

  absl::Status Open(const std::string& path, int width, int height, const EncodeOptions& options) {
    video_internal::InitFfmpeg();
    path_ = path;
    width_ = width, height_ = height;
    if (width <= 0 || height <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": invalid video size ", width, "x", height));
    }
    AVRational fps = options.fps_rational.num > 0 && options.fps_rational.den > 0
                         ? AVRational{static_cast<int>(options.fps_rational.num),
                                      static_cast<int>(options.fps_rational.den)}
                         : av_d2q(options.fps, 1001000);
    if (fps.num <= 0 || fps.den <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": invalid frame rate ", options.fps));
    }
    const AVOutputFormat* ofmt = av_guess_format(nullptr, path.c_str(), nullptr);
    if (!ofmt) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": cannot tell the container from the file extension (use .mp4, .mkv, .webm, .avi)"));
    }
    // Encoder (libx264 by default; mpeg4 when this FFmpeg has no libx264).
    const std::string want = EncoderName(options.codec);
    const AVCodec* codec = avcodec_find_encoder_by_name(want.c_str());
    if (!codec && want == "libx264") {
      WFM_LOG(WARNING) << "libx264 is not available in this FFmpeg; encoding " << path << " with mpeg4";
      codec = avcodec_find_encoder_by_name("mpeg4");
    }
    if (!codec) return absl::UnimplementedError(absl::StrCat(path, ": no encoder '", want, "' in this FFmpeg"));
    if (avformat_query_codec(ofmt, codec->id, FF_COMPLIANCE_NORMAL) == 0 && options.codec == EncodeOptions().codec) {
      // The default codec does not fit this container (.webm): use the container's own default encoder.
      if (const AVCodec* alt = avcodec_find_encoder(ofmt->video_codec)) {
        WFM_LOG(DEBUG) << path << ": " << ofmt->name << " cannot hold H.264; encoding with " << alt->name;
        codec = alt;
      }
    }
    if (avformat_query_codec(ofmt, codec->id, FF_COMPLIANCE_NORMAL) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": the ", ofmt->name, " container cannot hold ",
                                                     avcodec_get_name(codec->id), " video"));
    }
    AVPixelFormat pix_fmt = av_get_pix_fmt(options.pix_fmt.c_str());
    if (pix_fmt == AV_PIX_FMT_NONE) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": unknown pixel format '", options.pix_fmt, "'"));
    }
    if (codec->pix_fmts) {
      bool supported = false;
      for (const AVPixelFormat* p = codec->pix_fmts; *p != AV_PIX_FMT_NONE; ++p) supported |= *p == pix_fmt;
      if (!supported) {
        WFM_LOG(WARNING) << codec->name << " cannot encode " << options.pix_fmt << "; using "
                         << av_get_pix_fmt_name(codec->pix_fmts[0]);
        pix_fmt = codec->pix_fmts[0];
      }
    }
    // Chroma-subsampled formats need sizes that are multiples of the subsampling: pad by edge replication.
    int sx = 0, sy = 0;
    av_pix_fmt_get_chroma_sub_sample(pix_fmt, &sx, &sy);
    enc_w_ = (width + (1 << sx) - 1) & ~((1 << sx) - 1);
    enc_h_ = (height + (1 << sy) - 1) & ~((1 << sy) - 1);
    if (codec->id == AV_CODEC_ID_MPEG4 && (fps.num > 65535 || fps.den > 65535)) {
      fps = av_d2q(av_q2d(fps), 65535);  // MPEG-4 part 2 limits the time base to 16 bits
    }

    WFM_RETURN_IF_ERROR(MakeDirs(ParentDir(path)));
    // The temp file sits beside the target (same filesystem: rename is atomic); mode 0666 & ~umask.
    static std::atomic<uint64_t> counter{0};
    for (int attempt = 0; attempt < 100 && temp_path_.empty(); ++attempt) {
      std::string candidate = absl::StrCat(path, ".tmp.", getpid(), ".", counter++);
      int fd = ::open(candidate.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (fd >= 0) {
        ::close(fd);
        temp_path_ = candidate;
      } else if (errno != EEXIST) {
        return absl::PermissionDeniedError(
            absl::StrCat(path, ": cannot create a temp file beside it: ", std::strerror(errno)));
      }
    }
    if (temp_path_.empty()) return absl::InternalError(absl::StrCat(path, ": cannot create a temp file"));

    AVFormatContext* oc = nullptr;
    if (int err = avformat_alloc_output_context2(&oc, ofmt, nullptr, temp_path_.c_str()); err < 0) {
      return FfmpegError(err, absl::StrCat(path, ": cannot create the ", ofmt->name, " muxer"));
    }
    oc_.reset(oc);
    enc_.reset(avcodec_alloc_context3(codec));
    pkt_.reset(av_packet_alloc());
    frame_.reset(av_frame_alloc());
    if (!enc_ || !pkt_ || !frame_) return absl::ResourceExhaustedError("out of memory (FFmpeg)");
    AVCodecContext* enc = enc_.get();
    enc->width = enc_w_;
    enc->height = enc_h_;
    enc->pix_fmt = pix_fmt;
    enc->time_base = av_inv_q(fps);
    enc->framerate = fps;
    enc->sample_aspect_ratio = AVRational{1, 1};
    enc->color_range = AVCOL_RANGE_MPEG;
    enc->colorspace = AVCOL_SPC_BT709;
    enc->color_primaries = AVCOL_PRI_BT709;
    enc->color_trc = AVCOL_TRC_BT709;
    enc->thread_count = options.threads > 0 ? options.threads : DefaultNumThreads();
    if (oc->oformat->flags & AVFMT_GLOBALHEADER) enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    if (options.bit_rate > 0) {
      enc->bit_rate = options.bit_rate;
    } else if (HasPrivOption(enc, "crf")) {
      av_opt_set_int(enc->priv_data, "crf", options.crf, 0);
    } else if (HasPrivOption(enc, "cq")) {  // nvenc
      av_opt_set_int(enc->priv_data, "cq", options.crf, 0);
    } else {  // mpeg4 & co: constant quantiser, CRF 23 ~ q 5
      enc->flags |= AV_CODEC_FLAG_QSCALE;
      enc->global_quality = FF_QP2LAMBDA * std::min(31, std::max(2, (options.crf + 2) / 5));
    }
    if (!options.preset.empty() && HasPrivOption(enc, "preset")) {
      if (av_opt_set(enc->priv_data, "preset", options.preset.c_str(), 0) < 0) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": invalid preset '", options.preset, "' for ",
                                                       codec->name));
      }
    }
    if (int err = avcodec_open2(enc, codec, nullptr); err < 0) {
      return FfmpegError(err, absl::StrCat(path, ": cannot open the ", codec->name, " encoder (", enc_w_, "x",
                                           enc_h_, ", ", av_get_pix_fmt_name(pix_fmt), ", preset '",
                                           options.preset, "')"));
    }
    st_ = avformat_new_stream(oc, nullptr);
    if (!st_) return absl::ResourceExhaustedError("out of memory (FFmpeg)");
    st_->time_base = enc->time_base;
    st_->avg_frame_rate = fps;
    if (int err = avcodec_parameters_from_context(st_->codecpar, enc); err < 0) {
      return FfmpegError(err, absl::StrCat(path, ": codec parameters"));
    }
    if (!(oc->oformat->flags & AVFMT_NOFILE)) {
      if (int err = avio_open(&oc->pb, temp_path_.c_str(), AVIO_FLAG_WRITE); err < 0) {
        return FfmpegError(err, absl::StrCat(path, ": cannot open ", temp_path_, " for writing"));
      }
    }
    AVDictionary* mux_opts = nullptr;
    if (!strcmp(ofmt->name, "mp4") || !strcmp(ofmt->name, "mov")) {
      av_dict_set(&mux_opts, "movflags", "+faststart", 0);  // index first: playable while streaming
    }
    int err = avformat_write_header(oc, &mux_opts);
    av_dict_free(&mux_opts);
    if (err < 0) return FfmpegError(err, absl::StrCat(path, ": cannot write the ", ofmt->name, " header"));

    frame_->format = pix_fmt;
    frame_->width = enc_w_;
    frame_->height = enc_h_;
    if (int e = av_frame_get_buffer(frame_.get(), 0); e < 0) return FfmpegError(e, "allocating a frame");
    sws_.reset(sws_getContext(enc_w_, enc_h_, AV_PIX_FMT_RGB24, enc_w_, enc_h_, pix_fmt,
                              video_internal::kSwsEncodeFlags, nullptr, nullptr, nullptr));
    if (!sws_) return absl::UnimplementedError(absl::StrCat(path, ": cannot convert RGB to ", options.pix_fmt));
    const AVPixFmtDescriptor* desc = av_pix_fmt_desc_get(pix_fmt);
    if (desc && !(desc->flags & AV_PIX_FMT_FLAG_RGB)) {
      sws_setColorspaceDetails(sws_.get(), sws_getCoefficients(SWS_CS_DEFAULT), 1, sws_getCoefficients(SWS_CS_ITU709),
                               0, 0, 1 << 16, 1 << 16);
    }
    if (enc_w_ != width_ || enc_h_ != height_) pad_ = at::empty({enc_h_, enc_w_, 3}, at::kByte);
    return absl::OkStatus();
  }

  absl::Status Write(const at::Tensor& frames_thwc_u8) override {
    if (closed_) return absl::FailedPreconditionError(absl::StrCat(path_, ": writer is closed"));
    return CatchToStatus(path_, [&]() -> absl::Status {
      WFM_ASSIGN_OR_RETURN(at::Tensor frames, CheckFrames(frames_thwc_u8, path_));  // [t, H, W, 3]
      if (frames.size(1) != height_ || frames.size(2) != width_) {
        return absl::InvalidArgumentError(absl::StrCat(path_, ": frame size ", frames.size(2), "x", frames.size(1),
                                                       " differs from the writer's ", width_, "x", height_));
      }
      for (int64_t i = 0; i < frames.size(0); ++i) {
        at::Tensor rgb = frames[i];  // [H, W, 3]
        if (pad_.defined()) {
          pad_.narrow(0, 0, height_).narrow(1, 0, width_).copy_(rgb);
          if (enc_w_ > width_) pad_.narrow(1, width_, enc_w_ - width_).copy_(pad_.narrow(1, width_ - 1, 1));
          if (enc_h_ > height_) pad_.narrow(0, height_, enc_h_ - height_).copy_(pad_.narrow(0, height_ - 1, 1));
          rgb = pad_;
        }
        if (int err = av_frame_make_writable(frame_.get()); err < 0) return FfmpegError(err, "frame buffer");
        const uint8_t* src[4] = {rgb.data_ptr<uint8_t>(), nullptr, nullptr, nullptr};
        const int src_stride[4] = {enc_w_ * 3, 0, 0, 0};
        sws_scale(sws_.get(), src, src_stride, 0, enc_h_, frame_->data, frame_->linesize);
        frame_->pts = frames_written_;
#if LIBAVUTIL_VERSION_MAJOR >= 58
        frame_->duration = 1;
#else
        frame_->pkt_duration = 1;
#endif
        WFM_RETURN_IF_ERROR(Encode(frame_.get()), path_, ": encoding frame ", frames_written_);
        ++frames_written_;
      }
      return absl::OkStatus();
    });
  }

  absl::Status Close() override {
    if (closed_) return absl::FailedPreconditionError(absl::StrCat(path_, ": writer already closed"));
    closed_ = true;
    absl::Status s = Finish();
    if (!s.ok()) Discard();
    return s;
  }

  int64_t frames_written() const override { return frames_written_; }

 private:
  absl::Status Finish() {
    if (frames_written_ == 0) return absl::FailedPreconditionError(absl::StrCat(path_, ": no frames were written"));
    WFM_RETURN_IF_ERROR(Encode(nullptr), path_, ": flushing the encoder");  // drain delayed frames first
    if (int err = av_write_trailer(oc_.get()); err < 0) {
      return FfmpegError(err, absl::StrCat(path_, ": writing the trailer"));
    }
    if (oc_->pb && !(oc_->oformat->flags & AVFMT_NOFILE)) {
      if (int err = avio_closep(&oc_->pb); err < 0) return FfmpegError(err, absl::StrCat(path_, ": closing"));
    }
    oc_.reset();
    if (std::rename(temp_path_.c_str(), path_.c_str()) != 0) {
      return absl::InternalError(absl::StrCat(path_, ": cannot rename ", temp_path_, " into place"));
    }
    temp_path_.clear();
    return absl::OkStatus();
  }

  void Discard() {
    closed_ = true;
    oc_.reset();
    if (!temp_path_.empty()) std::remove(temp_path_.c_str());
    temp_path_.clear();
  }

  // send_frame, then drain receive_packet until EAGAIN/EOF; a null frame flushes the encoder.
  absl::Status Encode(const AVFrame* frame) {
    int err = avcodec_send_frame(enc_.get(), frame);
    if (err < 0 && err != AVERROR_EOF) return FfmpegError(err, "sending a frame to the encoder");
    while (true) {
      err = avcodec_receive_packet(enc_.get(), pkt_.get());
      if (err == AVERROR(EAGAIN) || err == AVERROR_EOF) return absl::OkStatus();
      if (err < 0) return FfmpegError(err, "encoding");
      if (pkt_->duration <= 0) pkt_->duration = 1;
      av_packet_rescale_ts(pkt_.get(), enc_->time_base, st_->time_base);
      pkt_->stream_index = st_->index;
      err = av_interleaved_write_frame(oc_.get(), pkt_.get());  // takes the packet's reference
      if (err < 0) return FfmpegError(err, "writing a packet");
    }
  }

  std::string path_, temp_path_;
  int width_ = 0, height_ = 0, enc_w_ = 0, enc_h_ = 0;
  AVFormatOutputPtr oc_;
  AVCodecContextPtr enc_;
  AVStream* st_ = nullptr;
  AVPacketPtr pkt_;
  AVFramePtr frame_;
  SwsContextPtr sws_;
  at::Tensor pad_;  // [enc_h, enc_w, 3] edge-replicated copy for odd sizes
  int64_t frames_written_ = 0;
  bool closed_ = false;
};

// One PNG encoder reused across frames of the same size.
class PngEncoder {
 public:
  absl::Status Open(int width, int height) {
    video_internal::InitFfmpeg();
    const AVCodec* codec = avcodec_find_encoder(AV_CODEC_ID_PNG);
    if (!codec) return absl::UnimplementedError("no PNG encoder in this FFmpeg");
    enc_.reset(avcodec_alloc_context3(codec));
    pkt_.reset(av_packet_alloc());
    frame_.reset(av_frame_alloc());
    if (!enc_ || !pkt_ || !frame_) return absl::ResourceExhaustedError("out of memory (FFmpeg)");
    enc_->width = width;
    enc_->height = height;
    enc_->pix_fmt = AV_PIX_FMT_RGB24;
    enc_->time_base = AVRational{1, 25};
    if (int err = avcodec_open2(enc_.get(), codec, nullptr); err < 0) return FfmpegError(err, "opening PNG encoder");
    frame_->format = AV_PIX_FMT_RGB24;
    frame_->width = width;
    frame_->height = height;
    if (int err = av_frame_get_buffer(frame_.get(), 0); err < 0) return FfmpegError(err, "allocating a frame");
    return absl::OkStatus();
  }

  // frame: contiguous uint8 [H, W, 3] -> PNG bytes.
  absl::StatusOr<std::string> Encode(const at::Tensor& frame) {
    if (int err = av_frame_make_writable(frame_.get()); err < 0) return FfmpegError(err, "frame buffer");
    const uint8_t* src = frame.data_ptr<uint8_t>();
    const int row = enc_->width * 3;
    for (int y = 0; y < enc_->height; ++y) {
      std::memcpy(frame_->data[0] + static_cast<int64_t>(y) * frame_->linesize[0], src + static_cast<int64_t>(y) * row,
                  row);
    }
    frame_->pts = pts_++;
    if (int err = avcodec_send_frame(enc_.get(), frame_.get()); err < 0) return FfmpegError(err, "PNG encoding");
    int err = avcodec_receive_packet(enc_.get(), pkt_.get());
    if (err < 0) return FfmpegError(err, "PNG encoding");
    PacketUnrefGuard unref{pkt_.get()};
    return std::string(reinterpret_cast<const char*>(pkt_->data), pkt_->size);
  }

 private:
  AVCodecContextPtr enc_;
  AVPacketPtr pkt_;
  AVFramePtr frame_;
  int64_t pts_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<VideoWriter>> VideoWriter::Open(const std::string& path, int width, int height,
                                                               const EncodeOptions& options) {
  auto writer = std::make_unique<WriterImpl>();
  WFM_RETURN_IF_ERROR(CatchToStatus(path, [&] { return writer->Open(path, width, height, options); }));
  return std::unique_ptr<VideoWriter>(std::move(writer));
}

absl::Status WriteVideo(const std::string& path, const at::Tensor& frames_thwc_u8, const EncodeOptions& options) {
  WFM_ASSIGN_OR_RETURN(at::Tensor frames, CheckFrames(frames_thwc_u8, path));  // [T, H, W, 3]
  WFM_ASSIGN_OR_RETURN(std::unique_ptr<VideoWriter> writer,
                       VideoWriter::Open(path, static_cast<int>(frames.size(2)), static_cast<int>(frames.size(1)),
                                         options));
  WFM_RETURN_IF_ERROR(writer->Write(frames));
  return writer->Close();
}

absl::Status WritePng(const std::string& path, const at::Tensor& frame_hwc_u8) {
  return CatchToStatus(path, [&]() -> absl::Status {
    WFM_ASSIGN_OR_RETURN(at::Tensor frames, CheckFrames(frame_hwc_u8, path));  // [1, H, W, 3]
    if (frames.size(0) != 1) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": WritePng takes one frame [H, W, 3]"));
    }
    PngEncoder png;
    WFM_RETURN_IF_ERROR(png.Open(static_cast<int>(frames.size(2)), static_cast<int>(frames.size(1))), path);
    WFM_ASSIGN_OR_RETURN(std::string bytes, png.Encode(frames[0]), path);
    return WriteFileAtomically(path, bytes);
  });
}

absl::Status WritePngFrames(const std::string& dir, const at::Tensor& frames_thwc_u8, const std::string& prefix) {
  return CatchToStatus(dir, [&]() -> absl::Status {
    WFM_ASSIGN_OR_RETURN(at::Tensor frames, CheckFrames(frames_thwc_u8, dir));  // [T, H, W, 3]
    WFM_RETURN_IF_ERROR(MakeDirs(dir));
    PngEncoder png;
    WFM_RETURN_IF_ERROR(png.Open(static_cast<int>(frames.size(2)), static_cast<int>(frames.size(1))), dir);
    for (int64_t i = 0; i < frames.size(0); ++i) {
      const std::string path = absl::StrFormat("%s/%s%06d.png", dir, prefix, i);
      WFM_ASSIGN_OR_RETURN(std::string bytes, png.Encode(frames[i]), path);
      WFM_RETURN_IF_ERROR(WriteFileAtomically(path, bytes));
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<at::Tensor> ReadImage(const std::string& path) {
  DecodeOptions o;
  o.num_frames = 1;
  o.threads = 1;
  WFM_ASSIGN_OR_RETURN(at::Tensor frames, DecodeVideo(path, o));  // [1, H, W, 3]
  return frames[0];
}

}  // namespace wfm
