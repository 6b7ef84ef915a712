// Video decoding over FFmpeg: probe (container fields, exact frame count by decoding like
// `ffprobe -count_frames`), the FrameDecoder (canonical send/receive loop, threads, CUDA hwaccel), colour-correct
// RGB conversion, and the VideoReader that turns decoded frames into uint8 [t, H, W, 3] chunks with frame-range
// selection and nearest-timestamp fps resampling. Follows FFmpeg doc/examples demux_decode.c and hw_decode.c.
#include <dlfcn.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <mutex>

#include <ATen/ATen.h>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "video_io_internal.h"
#include "wfm/core/logging.h"
#include "wfm/core/runtime.h"
#include "wfm/core/status.h"
#include "wfm/core/video_io.h"

extern "C" {
#include <libavutil/display.h>
#include <libavutil/hwcontext.h>
#include <libavutil/imgutils.h>
#include <libavutil/pixdesc.h>
}

namespace wfm {
namespace video_internal {

void InitFfmpeg() {
  static std::once_flag once;
  // FFmpeg's own messages (concealment reports on damaged streams, ...) stay off stderr: everything that matters
  // comes back as a Status. WFM_LOG_LEVEL=debug shows them.
  std::call_once(once, [] { av_log_set_level(GetLogLevel() == LogLevel::kDebug ? AV_LOG_INFO : AV_LOG_FATAL); });
}

namespace {

bool IsUrl(const std::string& path) { return path.find("://") != std::string::npos; }

absl::Status CheckReadableFile(const std::string& path) {
  if (IsUrl(path)) return absl::OkStatus();
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat(path, ": no such file"));
  }
  if (S_ISDIR(st.st_mode)) return absl::InvalidArgumentError(absl::StrCat(path, ": is a directory, not a video"));
  if (S_ISREG(st.st_mode) && st.st_size == 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": file is empty"));
  }
  return absl::OkStatus();
}

std::string StreamTypes(const AVFormatContext* fmt) {
  std::string out;
  for (unsigned i = 0; i < fmt->nb_streams; ++i) {
    const char* t = av_get_media_type_string(fmt->streams[i]->codecpar->codec_type);
    absl::StrAppend(&out, i ? ", " : "", t ? t : "unknown", " (",
                    avcodec_get_name(fmt->streams[i]->codecpar->codec_id), ")");
  }
  return out.empty() ? "none" : out;
}

// Rotation in degrees clockwise (0/90/180/270) that a player applies, from the stream's display matrix.
int StreamRotation(const AVStream* st) {
  const uint8_t* matrix = nullptr;
#if LIBAVFORMAT_VERSION_INT >= AV_VERSION_INT(60, 15, 100)
  const AVPacketSideData* sd = av_packet_side_data_get(st->codecpar->coded_side_data,
                                                       st->codecpar->nb_coded_side_data, AV_PKT_DATA_DISPLAYMATRIX);
  if (sd && sd->size >= 9 * sizeof(int32_t)) matrix = sd->data;
#else
  size_t size = 0;
  matrix = av_stream_get_side_data(st, AV_PKT_DATA_DISPLAYMATRIX, &size);
  if (size < 9 * sizeof(int32_t)) matrix = nullptr;
#endif
  if (!matrix) return 0;
  double theta = -av_display_rotation_get(reinterpret_cast<const int32_t*>(matrix));  // as ffmpeg's get_rotation
  if (std::isnan(theta)) return 0;
  theta -= 360 * std::floor(theta / 360 + 0.9 / 360);
  int r = static_cast<int>(std::lround(theta / 90.0)) * 90;
  return ((r % 360) + 360) % 360;
}

}  // namespace

absl::StatusOr<Input> OpenInput(const std::string& path) {
  InitFfmpeg();
  WFM_RETURN_IF_ERROR(CheckReadableFile(path));
  Input in;
  in.path = path;
  AVFormatContext* raw = nullptr;
  if (int err = avformat_open_input(&raw, path.c_str(), nullptr, nullptr); err < 0) {
    return FfmpegError(err, absl::StrCat(path, ": cannot open as a media file"));  // raw is freed on failure
  }
  in.fmt.reset(raw);
  if (int err = avformat_find_stream_info(raw, nullptr); err < 0) {
    return FfmpegError(err, absl::StrCat(path, ": cannot read the stream information"));
  }
  int idx = av_find_best_stream(raw, AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
  if (idx < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": no video stream (", raw->iformat->name, " with streams: ", StreamTypes(raw), ")"));
  }
  in.stream_index = idx;
  in.stream = raw->streams[idx];
  const AVCodecParameters* par = in.stream->codecpar;
  if (par->codec_id == AV_CODEC_ID_NONE) {
    char tag[AV_FOURCC_MAX_STRING_SIZE] = {0};
    av_fourcc_make_string(tag, par->codec_tag);
    return absl::UnimplementedError(absl::StrCat(path, ": unknown video codec (tag '", tag, "')"));
  }
  return in;
}

VideoInfo InfoFromInput(const Input& in) {
  const AVFormatContext* fmt = in.fmt.get();
  const AVStream* st = in.stream;
  const AVCodecParameters* par = st->codecpar;
  VideoInfo info;
  info.path = in.path;
  info.container = fmt->iformat->name;
  info.codec = avcodec_get_name(par->codec_id);
  info.width = par->width;
  info.height = par->height;
  AVRational fps = st->avg_frame_rate;
  if (fps.num <= 0 || fps.den <= 0) fps = st->r_frame_rate;
  if (fps.num <= 0 || fps.den <= 0) fps = AVRational{0, 1};
  info.fps = {fps.num, fps.den};
  info.time_base = {st->time_base.num, st->time_base.den};
  if (st->duration != AV_NOPTS_VALUE && st->duration > 0) {
    info.duration_s = st->duration * av_q2d(st->time_base);
  } else if (fmt->duration != AV_NOPTS_VALUE && fmt->duration > 0) {
    info.duration_s = fmt->duration / static_cast<double>(AV_TIME_BASE);
  }
  if (st->nb_frames > 0) {
    info.num_frames = st->nb_frames;
  } else if (info.duration_s > 0 && fps.num > 0) {
    info.num_frames = std::llround(info.duration_s * av_q2d(fps));
  }
  info.rotation = StreamRotation(st);
  info.bit_rate = par->bit_rate > 0 ? par->bit_rate : fmt->bit_rate;
  const char* pf = av_get_pix_fmt_name(static_cast<AVPixelFormat>(par->format));
  info.pix_fmt = pf ? pf : "";
  return info;
}

// ---- FrameDecoder ----

AVPixelFormat FrameDecoder::GetFormat(AVCodecContext* ctx, const AVPixelFormat* formats) {
  auto* self = static_cast<FrameDecoder*>(ctx->opaque);
  for (const AVPixelFormat* p = formats; *p != AV_PIX_FMT_NONE; ++p) {
    if (*p == self->hw_fmt_) return *p;
  }
  // The hardware cannot take this stream (profile, size): fall back to the first software format.
  WFM_LOG(WARNING) << self->in_.path << ": hardware decoding not possible for this stream; decoding in software";
  self->hw_fmt_ = AV_PIX_FMT_NONE;
  for (const AVPixelFormat* p = formats; *p != AV_PIX_FMT_NONE; ++p) {
    const AVPixFmtDescriptor* d = av_pix_fmt_desc_get(*p);
    if (d && !(d->flags & AV_PIX_FMT_FLAG_HWACCEL)) return *p;
  }
  return AV_PIX_FMT_NONE;
}

absl::Status FrameDecoder::SetUpHwaccel(const AVCodec* codec, const std::string& hwaccel) {
  if (hwaccel.empty() || hwaccel == "none" || hwaccel == "cpu") return absl::OkStatus();
  const bool optional = hwaccel == "auto";
  const std::string name = optional ? "cuda" : hwaccel;
  AVHWDeviceType type = av_hwdevice_find_type_by_name(name.c_str());
  if (type == AV_HWDEVICE_TYPE_NONE) {
    return absl::InvalidArgumentError(absl::StrCat("unknown hwaccel '", hwaccel, "' (use cuda, auto or none)"));
  }
  if (type == AV_HWDEVICE_TYPE_CUDA) {
    // Check for the driver first: FFmpeg would print its own loader errors to stderr.
    void* driver = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
    if (!driver) {
      if (optional) return absl::OkStatus();
      return absl::FailedPreconditionError(
          absl::StrCat(in_.path, ": cannot use hwaccel 'cuda': no NVIDIA driver (libcuda.so.1) on this machine"));
    }
    dlclose(driver);
  }
  AVPixelFormat fmt = AV_PIX_FMT_NONE;
  for (int i = 0;; ++i) {
    const AVCodecHWConfig* cfg = avcodec_get_hw_config(codec, i);
    if (!cfg) break;
    if ((cfg->methods & AV_CODEC_HW_CONFIG_METHOD_HW_DEVICE_CTX) && cfg->device_type == type) {
      fmt = cfg->pix_fmt;
      break;
    }
  }
  if (fmt == AV_PIX_FMT_NONE) {
    if (optional) return absl::OkStatus();
    return absl::UnimplementedError(
        absl::StrCat(in_.path, ": the ", codec->name, " decoder has no ", name, " hardware acceleration"));
  }
  AVBufferRef* dev = nullptr;
  if (int err = av_hwdevice_ctx_create(&dev, type, nullptr, nullptr, 0); err < 0) {
    if (optional) {
      WFM_LOG(DEBUG) << "no CUDA device for hardware decoding; decoding in software";
      return absl::OkStatus();
    }
    return absl::FailedPreconditionError(absl::StrCat(
        in_.path, ": cannot use hwaccel '", name, "' (no usable GPU or driver): ", FfmpegError(err, "").message()));
  }
  hw_device_.reset(dev);
  hw_fmt_ = fmt;
  dec_->hw_device_ctx = av_buffer_ref(dev);
  dec_->opaque = this;
  dec_->get_format = &FrameDecoder::GetFormat;
  return absl::OkStatus();
}

absl::Status FrameDecoder::Open(const std::string& path, const Options& options) {
  WFM_ASSIGN_OR_RETURN(in_, OpenInput(path));
  const AVCodecParameters* par = in_.stream->codecpar;
  const AVCodec* codec = avcodec_find_decoder(par->codec_id);
  if (!codec) {
    return absl::UnimplementedError(
        absl::StrCat(path, ": no decoder for video codec '", avcodec_get_name(par->codec_id), "' in this FFmpeg"));
  }
  dec_.reset(avcodec_alloc_context3(codec));
  pkt_.reset(av_packet_alloc());
  frame_.reset(av_frame_alloc());
  sw_frame_.reset(av_frame_alloc());
  if (!dec_ || !pkt_ || !frame_ || !sw_frame_) return absl::ResourceExhaustedError("out of memory (FFmpeg)");
  if (int err = avcodec_parameters_to_context(dec_.get(), par); err < 0) {
    return FfmpegError(err, absl::StrCat(path, ": bad codec parameters"));
  }
  dec_->pkt_timebase = in_.stream->time_base;
  WFM_RETURN_IF_ERROR(SetUpHwaccel(codec, options.hwaccel));
  if (!using_hwaccel()) {
    dec_->thread_count = options.threads > 0 ? options.threads : DefaultNumThreads();
    dec_->thread_type = FF_THREAD_FRAME | FF_THREAD_SLICE;
  }
  if (options.count_only) dec_->skip_loop_filter = AVDISCARD_ALL;
  if (int err = avcodec_open2(dec_.get(), codec, nullptr); err < 0) {
    return FfmpegError(err, absl::StrCat(path, ": cannot open the ", codec->name, " decoder"));
  }
  return absl::OkStatus();
}

absl::StatusOr<AVFrame*> FrameDecoder::Next() {
  av_frame_unref(frame_.get());
  av_frame_unref(sw_frame_.get());
  while (!done_) {
    int err = avcodec_receive_frame(dec_.get(), frame_.get());
    if (err >= 0) {
      ++frames_;
      if (hw_fmt_ != AV_PIX_FMT_NONE && frame_->format == hw_fmt_) {
        if (int e = av_hwframe_transfer_data(sw_frame_.get(), frame_.get(), 0); e < 0) {
          return FfmpegError(e, absl::StrCat(in_.path, ": copying a frame from the GPU"));
        }
        av_frame_copy_props(sw_frame_.get(), frame_.get());
        av_frame_unref(frame_.get());
        return sw_frame_.get();
      }
      return frame_.get();
    }
    if (err == AVERROR_EOF) {
      done_ = true;
      break;
    }
    if (err != AVERROR(EAGAIN)) {
      if (err == AVERROR_INVALIDDATA) {  // a damaged frame (frame threads report it here): skip it
        ++corrupt_;
        continue;
      }
      return FfmpegError(err, absl::StrCat(in_.path, ": decoding frame ", frames_));
    }
    if (flushed_) {  // cannot happen with a conforming decoder; avoid spinning
      done_ = true;
      break;
    }
    // The decoder wants input: feed the next packet of our stream (or the flush packet at the end).
    err = av_read_frame(in_.fmt.get(), pkt_.get());
    if (err < 0) {
      if (err != AVERROR_EOF && !avio_feof(in_.fmt->pb)) {
        // A read error mid-file (truncated/damaged container). Like the ffmpeg tool, end the stream here, but
        // say so; a stream that yields no frame at all is reported as an error below.
        WFM_LOG(WARNING) << in_.path << ": stopped reading at a container error after " << frames_
                         << " frames: " << FfmpegError(err, "read").message();
      }
      flushed_ = true;
      if (int e = avcodec_send_packet(dec_.get(), nullptr); e < 0 && e != AVERROR_EOF) {
        return FfmpegError(e, absl::StrCat(in_.path, ": flushing the decoder"));
      }
      continue;
    }
    PacketUnrefGuard unref{pkt_.get()};
    if (pkt_->stream_index != in_.stream_index) continue;
    err = avcodec_send_packet(dec_.get(), pkt_.get());
    if (err < 0 && err != AVERROR(EAGAIN)) {
      if (err == AVERROR_INVALIDDATA) {
        ++corrupt_;
        continue;
      }
      return FfmpegError(err, absl::StrCat(in_.path, ": decoding packet after frame ", frames_));
    }
  }
  if (frames_ == 0) {
    return absl::InvalidArgumentError(absl::StrCat(in_.path, ": the ", avcodec_get_name(dec_->codec_id),
                                                   " video stream has no decodable frame",
                                                   corrupt_ ? absl::StrCat(" (", corrupt_, " corrupt packets)") : ""));
  }
  if (corrupt_ > 0) {
    WFM_LOG(DEBUG) << in_.path << ": skipped " << corrupt_ << " corrupt packets/frames";
  }
  return nullptr;
}

absl::Status FrameDecoder::Seek(int64_t timestamp) {
  if (int err = av_seek_frame(in_.fmt.get(), in_.stream_index, timestamp, AVSEEK_FLAG_BACKWARD); err < 0) {
    return FfmpegError(err, absl::StrCat(in_.path, ": seeking"));
  }
  avcodec_flush_buffers(dec_.get());
  flushed_ = done_ = false;
  return absl::OkStatus();
}

// ---- RGB conversion ----

absl::Status RgbConverter::Convert(const AVFrame* src, int width, int height, uint8_t* dst, int dst_linesize) {
  AVPixelFormat fmt = static_cast<AVPixelFormat>(src->format);
  bool full_range = src->color_range == AVCOL_RANGE_JPEG;
  switch (fmt) {  // the deprecated J formats are their plain counterparts with full range
    case AV_PIX_FMT_YUVJ420P: fmt = AV_PIX_FMT_YUV420P; full_range = true; break;
    case AV_PIX_FMT_YUVJ422P: fmt = AV_PIX_FMT_YUV422P; full_range = true; break;
    case AV_PIX_FMT_YUVJ444P: fmt = AV_PIX_FMT_YUV444P; full_range = true; break;
    case AV_PIX_FMT_YUVJ440P: fmt = AV_PIX_FMT_YUV440P; full_range = true; break;
    case AV_PIX_FMT_YUVJ411P: fmt = AV_PIX_FMT_YUV411P; full_range = true; break;
    default: break;
  }
  int colorspace = src->colorspace == AVCOL_SPC_UNSPECIFIED ? SWS_CS_DEFAULT : static_cast<int>(src->colorspace);
  const int key[7] = {src->width, src->height, fmt, width, height, colorspace, full_range ? 1 : 0};
  if (!ctx_ || !std::equal(key, key + 7, key_)) {
    const int* coeffs = sws_getCoefficients(colorspace);
    const bool default_matrix = std::equal(coeffs, coeffs + 4, sws_getCoefficients(SWS_CS_DEFAULT));  // BT.601
    const int flags = kSwsFlags | (!default_matrix || full_range ? SWS_ACCURATE_RND : 0);
    SwsContext* c = sws_getCachedContext(ctx_.release(), src->width, src->height, fmt, width, height,
                                         AV_PIX_FMT_RGB24, flags, nullptr, nullptr, nullptr);
    if (!c) {
      const char* name = av_get_pix_fmt_name(fmt);
      return absl::UnimplementedError(absl::StrCat("cannot convert ", name ? name : "?", " ", src->width, "x",
                                                   src->height, " frames to RGB ", width, "x", height));
    }
    ctx_.reset(c);
    const AVPixFmtDescriptor* desc = av_pix_fmt_desc_get(fmt);
    if (desc && !(desc->flags & AV_PIX_FMT_FLAG_RGB)) {
      sws_setColorspaceDetails(c, coeffs, full_range ? 1 : 0,
                               sws_getCoefficients(SWS_CS_DEFAULT), 1, 0, 1 << 16, 1 << 16);
    }
    std::copy(key, key + 7, key_);
  }
  // swscale's SIMD paths want 64-byte aligned rows; a packed [H, W, 3] tensor row (W * 3 bytes) usually is not,
  // and the unaligned tail of a row then comes out wrong. Convert into an aligned buffer and copy the rows.
  const int row_bytes = width * 3;
  const bool aligned = reinterpret_cast<uintptr_t>(dst) % 64 == 0 && dst_linesize % 64 == 0;
  uint8_t* out = dst;
  int out_linesize = dst_linesize;
  if (!aligned) {
    out_linesize = (row_bytes + 63) & ~63;
    const size_t need = static_cast<size_t>(out_linesize) * height + 64;
    if (scratch_.size() < need) scratch_.assign(need, 0);
    out = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(scratch_.data()) + 63) & ~uintptr_t{63});
  }
  uint8_t* dsts[4] = {out, nullptr, nullptr, nullptr};
  int strides[4] = {out_linesize, 0, 0, 0};
  int rows = sws_scale(ctx_.get(), src->data, src->linesize, 0, src->height, dsts, strides);
  if (rows <= 0) return absl::InternalError("swscale produced no output");
  if (!aligned) {
    for (int y = 0; y < height; ++y) {
      std::memcpy(dst + static_cast<int64_t>(y) * dst_linesize, out + static_cast<int64_t>(y) * out_linesize,
                  row_bytes);
    }
  }
  return absl::OkStatus();
}

int64_t FrameTimestamp(const AVFrame* frame) {
  return frame->best_effort_timestamp != AV_NOPTS_VALUE ? frame->best_effort_timestamp : frame->pts;
}

int64_t FrameDuration(const AVFrame* frame) {
#if LIBAVUTIL_VERSION_MAJOR >= 58
  return frame->duration > 0 ? frame->duration : 0;
#else
  return frame->pkt_duration > 0 ? frame->pkt_duration : 0;
#endif
}

}  // namespace video_internal

using video_internal::FrameDecoder;

// ---- probe ----

absl::StatusOr<VideoInfo> ProbeVideo(const std::string& path, bool exact) {
  if (!exact) {
    WFM_ASSIGN_OR_RETURN(video_internal::Input in, video_internal::OpenInput(path));
    return video_internal::InfoFromInput(in);
  }
  FrameDecoder dec;
  FrameDecoder::Options o;
  o.count_only = true;
  WFM_RETURN_IF_ERROR(dec.Open(path, o));
  VideoInfo info = video_internal::InfoFromInput(dec.input());
  while (true) {
    WFM_ASSIGN_OR_RETURN(AVFrame * f, dec.Next());
    if (!f) break;
  }
  info.num_frames = dec.frames_decoded();
  info.num_frames_exact = true;
  return info;
}

std::string VideoInfoToJson(const VideoInfo& info, int indent) {
  nlohmann::ordered_json j;
  j["path"] = info.path;
  j["container"] = info.container;
  j["codec"] = info.codec;
  j["width"] = info.width;
  j["height"] = info.height;
  j["fps"] = absl::StrCat(info.fps.num, "/", info.fps.den);
  j["fps_value"] = info.fps.value();
  j["time_base"] = absl::StrCat(info.time_base.num, "/", info.time_base.den);
  j["num_frames"] = info.num_frames;
  j["num_frames_exact"] = info.num_frames_exact;
  j["duration_s"] = info.duration_s;
  j["rotation"] = info.rotation;
  j["bit_rate"] = info.bit_rate;
  j["pix_fmt"] = info.pix_fmt;
  return j.dump(indent);
}

// ---- VideoReader ----

namespace {

constexpr double kUsPerSecond = 1e6;

class ReaderImpl : public VideoReader {
 public:
  absl::Status Open(const std::string& path, const DecodeOptions& options) {
    options_ = options;
    if (options.fps < 0 || options.width < 0 || options.height < 0 || options.start_frame < 0) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": negative fps, size or start frame in DecodeOptions"));
    }
    path_ = path;
    dec_options_.threads = options.threads;
    dec_options_.hwaccel = options.hwaccel;
    dec_ = std::make_unique<FrameDecoder>();
    WFM_RETURN_IF_ERROR(dec_->Open(path, dec_options_));
    info_ = video_internal::InfoFromInput(dec_->input());
    if (info_.width <= 0 || info_.height <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": video stream has no frame size"));
    }
    rotation_ = options.apply_rotation ? info_.rotation : 0;
    const bool swap = rotation_ == 90 || rotation_ == 270;
    const int src_w = swap ? info_.height : info_.width, src_h = swap ? info_.width : info_.height;
    out_w_ = options.width, out_h_ = options.height;
    if (out_w_ == 0 && out_h_ == 0) {
      out_w_ = src_w, out_h_ = src_h;
    } else if (out_w_ == 0) {
      out_w_ = std::max<int>(1, static_cast<int>(std::lround(static_cast<double>(out_h_) * src_w / src_h)));
    } else if (out_h_ == 0) {
      out_h_ = std::max<int>(1, static_cast<int>(std::lround(static_cast<double>(out_w_) * src_h / src_w)));
    }
    // swscale writes the unrotated picture; rotation is applied afterwards.
    conv_w_ = swap ? out_h_ : out_w_;
    conv_h_ = swap ? out_w_ : out_h_;
    resample_ = options.fps > 0;
    tb_ = dec_->input().stream->time_base;
    const AVRational fps = dec_->input().stream->avg_frame_rate;
    default_duration_us_ = fps.num > 0 && fps.den > 0 ? av_rescale_q(1, av_inv_q(fps), AV_TIME_BASE_Q) : 40000;
    held_.reset(av_frame_alloc());
    prev_.reset(av_frame_alloc());
    if (!held_ || !prev_) return absl::ResourceExhaustedError("out of memory (FFmpeg)");
    return absl::OkStatus();
  }

  const VideoInfo& info() const override { return info_; }
  int64_t position() const override { return out_index_; }
  int out_width() const { return out_w_; }
  int out_height() const { return out_h_; }

  absl::StatusOr<at::Tensor> Next(int64_t max_frames) override {
    if (max_frames <= 0) return absl::InvalidArgumentError("VideoReader::Next: max_frames must be positive");
    at::Tensor out = at::empty({max_frames, out_h_, out_w_, 3}, at::kByte);  // [t, H, W, 3]
    WFM_ASSIGN_OR_RETURN(int64_t n, ReadInto(out.data_ptr<uint8_t>(), max_frames));
    if (n == 0) return at::Tensor();
    return n == max_frames ? out : out.narrow(0, 0, n);
  }

  // Decodes up to `max_frames` output frames into dst (contiguous [max_frames, H, W, 3]); returns the count.
  absl::StatusOr<int64_t> ReadInto(uint8_t* dst, int64_t max_frames) {
    const int64_t frame_bytes = static_cast<int64_t>(out_h_) * out_w_ * 3;
    const int64_t end = options_.num_frames >= 0 ? options_.start_frame + options_.num_frames : INT64_MAX;
    if (!seek_checked_) {
      seek_checked_ = true;
      WFM_RETURN_IF_ERROR(MaybeSeek());
    }
    int64_t n = 0;
    while (n < max_frames) {
      if (out_index_ >= end) finished_ = true;
      if (finished_) break;
      if (repeats_ > 0) {
        if (out_index_ < options_.start_frame) {  // before the range: skip without converting
          const int64_t skip = std::min(repeats_, options_.start_frame - out_index_);
          out_index_ += skip;
          repeats_ -= skip;
          continue;
        }
        WFM_RETURN_IF_ERROR(Emit(held_.get(), dst + n * frame_bytes), info_.path, ": frame ", out_index_);
        ++n;
        ++out_index_;
        --repeats_;
        continue;
      }
      WFM_ASSIGN_OR_RETURN(AVFrame * f, dec_->Next());
      if (!f) {
        if (resample_ && have_prev_) {  // the last frame fills the slots up to its end time
          av_frame_unref(held_.get());
          av_frame_move_ref(held_.get(), prev_.get());
          have_prev_ = false;
          AssignSlots(SlotsBefore(prev_end_us_));
          continue;
        }
        finished_ = true;
        break;
      }
      if (!resample_) {
        av_frame_unref(held_.get());
        av_frame_move_ref(held_.get(), f);
        repeats_ = 1;
        continue;
      }
      TakeResampled(f);
    }
    return n;
  }

 private:
  // Resampling: output slot k (time k / fps from the first frame) shows the frame whose timestamp is nearest;
  // the previous frame owns every slot up to the midpoint between it and this one.
  void TakeResampled(AVFrame* f) {
    int64_t t_us = TimeUs(f);
    if (have_prev_) {
      t_us = std::max(t_us, prev_us_ + 1);  // keep time strictly increasing on broken timestamps
      av_frame_unref(held_.get());
      av_frame_move_ref(held_.get(), prev_.get());
      AssignSlots(SlotsUpTo((prev_us_ + t_us) / 2.0));
    }
    SetPrev(f, t_us);
  }

  void SetPrev(AVFrame* f, int64_t t_us) {
    const int64_t dur = video_internal::FrameDuration(f);
    const int64_t dur_us = dur > 0 ? av_rescale_q(dur, tb_, AV_TIME_BASE_Q) : default_duration_us_;
    prev_us_ = t_us;
    prev_end_us_ = static_cast<double>(t_us) + std::max<int64_t>(dur_us, 1);
    av_frame_unref(prev_.get());
    av_frame_move_ref(prev_.get(), f);
    have_prev_ = true;
  }

  // With fps resampling, output indices are times, so a range that starts deep into the video is reached by
  // seeking to the keyframe before it instead of decoding everything up to it. The result is the same as a
  // linear decode: every slot before the landing frame lies before the range. If the demuxer lands after the
  // target, earlier targets are tried, and finally the file is decoded from the start.
  absl::Status MaybeSeek() {
    if (!resample_ || options_.start_frame <= 0) return absl::OkStatus();
    const double target_us = options_.start_frame * kUsPerSecond / options_.fps;
    if (target_us < kMinSeekUs) return absl::OkStatus();  // decoding through is cheaper
    // The first frame fixes the time origin (and is the fallback's first frame).
    WFM_ASSIGN_OR_RETURN(AVFrame * first, dec_->Next());
    if (!first) return absl::OkStatus();
    TakeResampled(first);
    for (double back_us : {0.0, 5e6, 30e6}) {
      const int64_t ts = origin_ + av_rescale_q(static_cast<int64_t>(std::max(0.0, target_us - back_us)),
                                                AV_TIME_BASE_Q, tb_);
      if (!dec_->Seek(ts).ok()) break;
      WFM_ASSIGN_OR_RETURN(AVFrame * f, dec_->Next());
      if (!f) break;
      const int64_t t_us = av_rescale_q(video_internal::FrameTimestamp(f) - origin_, tb_, AV_TIME_BASE_Q);
      if (video_internal::FrameTimestamp(f) == AV_NOPTS_VALUE || t_us > target_us) continue;
      // Landed at or before the target: slots before this frame are all before the range.
      av_frame_unref(held_.get());
      repeats_ = 0;
      SetPrev(f, t_us);
      slots_assigned_ = out_index_ =
          std::clamp<int64_t>(SlotsBefore(static_cast<double>(t_us)), 0, options_.start_frame);
      return absl::OkStatus();
    }
    // Fall back to a linear decode from a fresh decoder.
    WFM_LOG(DEBUG) << path_ << ": seeking failed; decoding from the start";
    dec_ = std::make_unique<FrameDecoder>();
    WFM_RETURN_IF_ERROR(dec_->Open(path_, dec_options_));
    have_prev_ = false;
    origin_ = AV_NOPTS_VALUE;
    repeats_ = slots_assigned_ = out_index_ = 0;
    av_frame_unref(held_.get());
    av_frame_unref(prev_.get());
    return absl::OkStatus();
  }

  int64_t TimeUs(const AVFrame* f) {
    int64_t ts = video_internal::FrameTimestamp(f);
    if (ts == AV_NOPTS_VALUE) return have_prev_ ? prev_us_ + default_duration_us_ : 0;
    if (origin_ == AV_NOPTS_VALUE) origin_ = ts;
    return av_rescale_q(ts - origin_, tb_, AV_TIME_BASE_Q);
  }

  // Output slot k is at time k / fps. Slots with time <= x (ties go to the earlier frame, like ffmpeg's fps
  // filter when duplicating), and slots with time < x.
  int64_t SlotsUpTo(double x_us) const {
    return static_cast<int64_t>(std::floor(x_us * options_.fps / kUsPerSecond + 1e-6)) + 1;
  }
  int64_t SlotsBefore(double x_us) const {
    return static_cast<int64_t>(std::ceil(x_us * options_.fps / kUsPerSecond - 1e-6));
  }
  // Gives the held frame every not-yet-assigned slot below `slots`.
  void AssignSlots(int64_t slots) {
    repeats_ = std::max<int64_t>(0, slots - slots_assigned_);
    slots_assigned_ += repeats_;
  }

  absl::Status Emit(const AVFrame* f, uint8_t* dst) {
    if (rotation_ == 0) return conv_.Convert(f, conv_w_, conv_h_, dst, out_w_ * 3);
    if (!scratch_.defined()) scratch_ = at::empty({conv_h_, conv_w_, 3}, at::kByte);
    WFM_RETURN_IF_ERROR(conv_.Convert(f, conv_w_, conv_h_, scratch_.data_ptr<uint8_t>(), conv_w_ * 3));
    // rot90 with k = -1 turns the picture clockwise (numpy/torch convention: positive k is counter-clockwise).
    at::Tensor rotated = at::rot90(scratch_, -rotation_ / 90, {0, 1});  // [H, W, 3]
    at::from_blob(dst, {out_h_, out_w_, 3}, at::kByte).copy_(rotated);
    return absl::OkStatus();
  }

  static constexpr double kMinSeekUs = 3e6;

  DecodeOptions options_;
  std::string path_;
  FrameDecoder::Options dec_options_;
  std::unique_ptr<FrameDecoder> dec_;
  video_internal::RgbConverter conv_;
  VideoInfo info_;
  int out_w_ = 0, out_h_ = 0, conv_w_ = 0, conv_h_ = 0, rotation_ = 0;
  bool resample_ = false, finished_ = false, have_prev_ = false, seek_checked_ = false;
  AVRational tb_{1, 1};
  int64_t origin_ = AV_NOPTS_VALUE, default_duration_us_ = 0, prev_us_ = 0;
  double prev_end_us_ = 0;
  int64_t out_index_ = 0, repeats_ = 0, slots_assigned_ = 0;
  AVFramePtr held_, prev_;  // the frame being emitted; the last decoded frame (resampling)
  at::Tensor scratch_;
};

absl::StatusOr<std::unique_ptr<ReaderImpl>> OpenReader(const std::string& path, const DecodeOptions& options) {
  auto reader = std::make_unique<ReaderImpl>();
  WFM_RETURN_IF_ERROR(reader->Open(path, options));
  return reader;
}

}  // namespace

absl::StatusOr<std::unique_ptr<VideoReader>> VideoReader::Open(const std::string& path,
                                                               const DecodeOptions& options) {
  WFM_ASSIGN_OR_RETURN(std::unique_ptr<ReaderImpl> reader, OpenReader(path, options));
  return std::unique_ptr<VideoReader>(std::move(reader));
}

absl::StatusOr<int64_t> DecodeVideoStream(const std::string& path, const DecodeOptions& options,
                                          const FrameChunkCallback& callback) {
  return CatchToStatus(path, [&]() -> absl::StatusOr<int64_t> {
    WFM_ASSIGN_OR_RETURN(std::unique_ptr<ReaderImpl> reader, OpenReader(path, options));
    const int64_t chunk = options.chunk_frames > 0 ? options.chunk_frames : 32;
    // One chunk buffer, reused while the callback keeps no reference to it: a fresh multi-megabyte allocation
    // per chunk costs page faults comparable to the RGB conversion.
    at::Tensor buf;
    int64_t total = 0;
    while (true) {
      if (!buf.defined() || buf.use_count() > 1 || buf.storage().use_count() > 1) {  // kept: copy or view
        buf = at::empty({chunk, reader->out_height(), reader->out_width(), 3}, at::kByte);  // [t, H, W, 3]
      }
      const int64_t first = reader->position();
      WFM_ASSIGN_OR_RETURN(int64_t n, reader->ReadInto(buf.data_ptr<uint8_t>(), chunk));
      if (n == 0) break;
      total += n;
      WFM_RETURN_IF_ERROR(callback(n == chunk ? buf : buf.narrow(0, 0, n), first));
    }
    return total;
  });
}

absl::StatusOr<at::Tensor> DecodeVideo(const std::string& path, const DecodeOptions& options) {
  return CatchToStatus(path, [&]() -> absl::StatusOr<at::Tensor> {
    WFM_ASSIGN_OR_RETURN(std::unique_ptr<ReaderImpl> reader, OpenReader(path, options));
    const VideoInfo& info = reader->info();
    // Pre-size from the container's estimate, grow by 1.5x when it was short.
    int64_t estimate = info.num_frames;
    if (options.fps > 0 && info.duration_s > 0) estimate = std::llround(info.duration_s * options.fps);
    estimate = std::max<int64_t>(0, estimate - options.start_frame) + 1;
    if (options.num_frames >= 0) estimate = std::min(estimate, options.num_frames);
    int64_t capacity = std::max<int64_t>(1, std::min<int64_t>(estimate, 4096));
    const int64_t h = reader->out_height(), w = reader->out_width();
    at::Tensor buf = at::empty({capacity, h, w, 3}, at::kByte);  // [T, H, W, 3]
    int64_t n = 0;
    while (true) {
      if (n == capacity) {
        const int64_t grown = capacity + std::max<int64_t>(16, capacity / 2);
        at::Tensor bigger = at::empty({grown, h, w, 3}, at::kByte);
        bigger.narrow(0, 0, n).copy_(buf);
        buf = bigger;
        capacity = grown;
      }
      WFM_ASSIGN_OR_RETURN(int64_t got, reader->ReadInto(buf.data_ptr<uint8_t>() + n * h * w * 3, capacity - n));
      if (got == 0) break;
      n += got;
    }
    if (n == capacity) return buf;
    return n * 10 < capacity * 9 ? buf.narrow(0, 0, n).clone() : buf.narrow(0, 0, n);
  });
}

at::Tensor ResizeCoverCrop(const at::Tensor& frames, int64_t h, int64_t w) {
  TORCH_CHECK(frames.dim() == 4 && frames.size(3) == 3 && frames.scalar_type() == at::kByte,
              "ResizeCoverCrop: expected uint8 [T, H, W, 3], got ", frames.sizes());
  const int64_t h0 = frames.size(1), w0 = frames.size(2);
  if (h0 == h && w0 == w) return frames;
  at::Tensor x = frames.permute({0, 3, 1, 2}).to(at::kFloat);  // [T, 3, H, W] in [0, 255]
  const double s = std::max(static_cast<double>(w) / w0, static_cast<double>(h) / h0);
  const int64_t nh = std::max(h, static_cast<int64_t>(std::ceil(s * h0)));
  const int64_t nw = std::max(w, static_cast<int64_t>(std::ceil(s * w0)));
  x = at::_upsample_bilinear2d_aa(x, {nh, nw}, /*align_corners=*/false);
  // Python's round(): halves to even (torchvision center_crop), which std::nearbyint does in the default mode.
  const int64_t top = static_cast<int64_t>(std::nearbyint((nh - h) / 2.0));
  const int64_t left = static_cast<int64_t>(std::nearbyint((nw - w) / 2.0));
  x = x.narrow(2, top, h).narrow(3, left, w);
  return x.round().clamp(0, 255).to(at::kByte).permute({0, 2, 3, 1}).contiguous();  // [T, h, w, 3]
}

at::Tensor FramesToModelInput(const at::Tensor& frames_thwc_u8) {
  TORCH_CHECK(frames_thwc_u8.dim() == 4 && frames_thwc_u8.size(3) == 3,
              "FramesToModelInput: expected [T, H, W, 3], got ", frames_thwc_u8.sizes());
  const at::Tensor cthw = frames_thwc_u8.permute({3, 0, 1, 2});  // [3, T, H, W] view
  at::Tensor out = at::empty(cthw.sizes(), frames_thwc_u8.options().dtype(at::kFloat));
  out.copy_(cthw);  // one pass: gather + convert
  return out.div_(127.5).sub_(1.0);  // [0, 255] -> [-1, 1]
}

at::Tensor ModelOutputToFrames(const at::Tensor& video_cthw) {
  TORCH_CHECK(video_cthw.dim() == 4 && video_cthw.size(0) == 3,
              "ModelOutputToFrames: expected [3, T, H, W], got ", video_cthw.sizes());
  // [3, T, H, W] in [-1, 1] -> [T, H, W, 3] uint8
  return video_cthw.to(at::kFloat).add(1.0).mul_(127.5).round_().clamp_(0, 255).to(at::kByte)
      .permute({1, 2, 3, 0}).contiguous();
}

}  // namespace wfm
