// FFmpeg demux/decode loop for the curation pipeline (see decoder.h). Follows FFmpeg's doc/examples
// demux_decode.c: send_packet / receive_frame, EAGAIN and EOF are not errors, flush with a null packet.
#include "wfm/curation/decoder.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>

#include <ATen/ATen.h>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/hwcontext.h>
#include <libavutil/imgutils.h>
#include <libavutil/motion_vector.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
}

#include "wfm/core/ffmpeg_ptr.h"
#include "wfm/core/logging.h"
#include "wfm/core/status.h"
#include "wfm/curation/gpu.h"

namespace wfm::curation {
namespace {

// In-memory input for avio.
struct MemoryInput {
  const uint8_t* data = nullptr;
  int64_t size = 0, pos = 0;
  static int Read(void* opaque, uint8_t* buf, int n) {
    auto* m = static_cast<MemoryInput*>(opaque);
    int64_t left = m->size - m->pos;
    if (left <= 0) return AVERROR_EOF;
    int k = static_cast<int>(std::min<int64_t>(n, left));
    std::memcpy(buf, m->data + m->pos, k);
    m->pos += k;
    return k;
  }
  static int64_t Seek(void* opaque, int64_t offset, int whence) {
    auto* m = static_cast<MemoryInput*>(opaque);
    whence &= ~AVSEEK_FORCE;
    if (whence == AVSEEK_SIZE) return m->size;
    int64_t base = whence == SEEK_CUR ? m->pos : whence == SEEK_END ? m->size : 0;
    int64_t p = base + offset;
    if (p < 0 || p > m->size) return AVERROR(EINVAL);
    m->pos = p;
    return p;
  }
};

// yuvj* formats are yuv* with full range; swscale wants the plain format plus a range flag.
AVPixelFormat NormalizeFormat(AVPixelFormat f, bool* full_range) {
  switch (f) {
    case AV_PIX_FMT_YUVJ420P: *full_range = true; return AV_PIX_FMT_YUV420P;
    case AV_PIX_FMT_YUVJ422P: *full_range = true; return AV_PIX_FMT_YUV422P;
    case AV_PIX_FMT_YUVJ444P: *full_range = true; return AV_PIX_FMT_YUV444P;
    case AV_PIX_FMT_YUVJ440P: *full_range = true; return AV_PIX_FMT_YUV440P;
    case AV_PIX_FMT_YUVJ411P: *full_range = true; return AV_PIX_FMT_YUV411P;
    default: return f;
  }
}

bool HasDirectLuma(AVPixelFormat f) {
  switch (f) {
    case AV_PIX_FMT_YUV420P: case AV_PIX_FMT_YUVJ420P: case AV_PIX_FMT_YUV422P: case AV_PIX_FMT_YUVJ422P:
    case AV_PIX_FMT_YUV444P: case AV_PIX_FMT_YUVJ444P: case AV_PIX_FMT_YUV440P: case AV_PIX_FMT_YUVJ440P:
    case AV_PIX_FMT_YUV411P: case AV_PIX_FMT_YUVJ411P: case AV_PIX_FMT_YUV410P: case AV_PIX_FMT_NV12:
    case AV_PIX_FMT_NV21: case AV_PIX_FMT_GRAY8: case AV_PIX_FMT_YUVA420P:
      return true;
    default:
      return false;
  }
}

// FFmpeg's own messages (concealment reports, probe warnings) stay off stderr like in core's video IO: what
// matters comes back as a Status. WFM_LOG_LEVEL=debug shows them.
void QuietFfmpeg() {
  static std::once_flag once;
  std::call_once(once, [] { av_log_set_level(GetLogLevel() == LogLevel::kDebug ? AV_LOG_INFO : AV_LOG_FATAL); });
}

// FFmpeg CUDA device contexts, one per GPU for the whole process (creating a CUDA context costs ~100 ms and
// hundreds of MB of GPU memory; every decoder on that GPU shares it). Failures are remembered too. Never freed:
// they live as long as the process.
std::mutex cuda_mu;
std::map<int, AVBufferRef*> cuda_devices;
std::map<int, absl::Status> cuda_failures;

absl::StatusOr<AVBufferRef*> CudaDevice(int gpu) {
  std::lock_guard<std::mutex> lock(cuda_mu);
  if (auto it = cuda_devices.find(gpu); it != cuda_devices.end()) return it->second;
  if (auto it = cuda_failures.find(gpu); it != cuda_failures.end()) return it->second;
  AVBufferRef* ref = nullptr;
  int r = gpu < 0 ? AVERROR(ENODEV)
                  : av_hwdevice_ctx_create(&ref, AV_HWDEVICE_TYPE_CUDA, std::to_string(gpu).c_str(), nullptr, 0);
  if (r < 0) {
    absl::Status s = FfmpegError(r, absl::StrCat("cannot open CUDA device ", gpu, " for NVDEC"));
    cuda_failures.emplace(gpu, s);
    return s;
  }
  cuda_devices.emplace(gpu, ref);
  return ref;
}

// The pixel format of NVDEC output when `codec` can decode through a CUDA device, else AV_PIX_FMT_NONE.
AVPixelFormat CudaPixelFormat(const AVCodec* codec) {
  for (int i = 0;; ++i) {
    const AVCodecHWConfig* c = avcodec_get_hw_config(codec, i);
    if (!c) return AV_PIX_FMT_NONE;
    if ((c->methods & AV_CODEC_HW_CONFIG_METHOD_HW_DEVICE_CTX) && c->device_type == AV_HWDEVICE_TYPE_CUDA)
      return c->pix_fmt;
  }
}

// get_format: NVDEC when the decoder offers it; else (a profile, bit depth or size NVDEC rejects) the first
// software format, i.e. a software decode in the same context.
AVPixelFormat PickCudaFormat(AVCodecContext* ctx, const AVPixelFormat* formats) {
  for (const AVPixelFormat* p = formats; *p != AV_PIX_FMT_NONE; ++p)
    if (*p == AV_PIX_FMT_CUDA) return *p;
  *static_cast<bool*>(ctx->opaque) = false;
  for (const AVPixelFormat* p = formats; *p != AV_PIX_FMT_NONE; ++p) {
    const AVPixFmtDescriptor* d = av_pix_fmt_desc_get(*p);
    if (d && !(d->flags & AV_PIX_FMT_FLAG_HWACCEL)) return *p;
  }
  return AV_PIX_FMT_NONE;
}

}  // namespace

absl::Status OpenCudaDevice(int gpu) { return CudaDevice(gpu).status(); }

struct VideoDecoder::Impl {
  AVFormatInputPtr fmt;
  AVCodecContextPtr codec;
  AVFramePtr frame;    // the frame exposed by DecodedFrame
  AVFramePtr pending;  // decoded, waiting for its slot (constant frame rate)
  AVFramePtr download;  // NVDEC picture copied to system memory
  bool hardware = false;  // decoding on NVDEC (cleared by get_format when NVDEC declines the stream)
  AVPacketPtr packet;
  bool have_pending = false, cfr = true;
  int64_t repeats_left = 0;
  double fps = 25.0;
  AVIOContext* avio = nullptr;
  MemoryInput memory;
  int stream_index = -1;
  int max_errors = 200;
  AVRational time_base{1, 1};
  int64_t start_pts = 0;
  bool demux_done = false, flushed = false;
  std::string name;
  // Conversion cache: (src fmt, src w, src h, dst fmt, dst w, dst h, src full range) -> context.
  std::map<std::tuple<int, int, int, int, int, int, bool>, SwsContextPtr> sws;
  std::vector<uint8_t> luma;  // converted luma for formats without a direct plane
  int64_t luma_index = -1;

  ~Impl() {
    fmt.reset();
    if (avio) {
      av_freep(&avio->buffer);
      avio_context_free(&avio);
    }
  }

  absl::StatusOr<SwsContext*> Scaler(const AVFrame* f, AVPixelFormat dst_fmt, int w, int h) {
    bool full = f->color_range == AVCOL_RANGE_JPEG;
    AVPixelFormat src_fmt = NormalizeFormat(static_cast<AVPixelFormat>(f->format), &full);
    auto key = std::make_tuple(static_cast<int>(src_fmt), f->width, f->height, static_cast<int>(dst_fmt), w, h, full);
    auto it = sws.find(key);
    if (it != sws.end()) return it->second.get();
    int flags = (w < f->width || h < f->height) ? SWS_AREA : SWS_BILINEAR;
    SwsContext* c = sws_getContext(f->width, f->height, src_fmt, w, h, dst_fmt, flags, nullptr, nullptr, nullptr);
    if (!c) {
      return absl::InternalError(absl::StrCat(name, ": cannot convert ", av_get_pix_fmt_name(src_fmt), " ",
                                              f->width, "x", f->height, " to ", av_get_pix_fmt_name(dst_fmt)));
    }
    int cs = f->colorspace == AVCOL_SPC_BT709 ? SWS_CS_ITU709 : SWS_CS_ITU601;
    sws_setColorspaceDetails(c, sws_getCoefficients(cs), full ? 1 : 0, sws_getCoefficients(SWS_CS_ITU601), 1, 0,
                             1 << 16, 1 << 16);
    sws.emplace(key, SwsContextPtr(c));
    return c;
  }

  absl::Status Convert(const AVFrame* f, AVPixelFormat dst_fmt, int w, int h, uint8_t* dst, int channels) {
    if (w <= 0 || h <= 0) return absl::InvalidArgumentError(absl::StrCat("bad conversion size ", w, "x", h));
    WFM_ASSIGN_OR_RETURN(SwsContext * c, Scaler(f, dst_fmt, w, h));
    uint8_t* planes[4] = {dst, nullptr, nullptr, nullptr};
    int strides[4] = {w * channels, 0, 0, 0};
    int r = sws_scale(c, f->data, f->linesize, 0, f->height, planes, strides);
    if (r <= 0) return FfmpegError(r < 0 ? r : AVERROR_BUG, absl::StrCat(name, ": sws_scale"));
    return absl::OkStatus();
  }
};

VideoDecoder::VideoDecoder() : impl_(std::make_unique<Impl>()) {}
VideoDecoder::~VideoDecoder() = default;

absl::StatusOr<std::unique_ptr<VideoDecoder>> VideoDecoder::Open(const std::string& path,
                                                                 const DecoderOptions& options) {
  QuietFfmpeg();
  std::unique_ptr<VideoDecoder> d(new VideoDecoder());
  d->impl_->name = path;
  AVFormatContext* raw = nullptr;
  int r = avformat_open_input(&raw, path.c_str(), nullptr, nullptr);
  if (r < 0) return FfmpegError(r, absl::StrCat("opening ", path));
  d->impl_->fmt.reset(raw);
  WFM_RETURN_IF_ERROR(d->Init(options));
  return d;
}

absl::StatusOr<std::unique_ptr<VideoDecoder>> VideoDecoder::OpenBytes(absl::string_view data, const std::string& name,
                                                                      const DecoderOptions& options) {
  QuietFfmpeg();
  std::unique_ptr<VideoDecoder> d(new VideoDecoder());
  Impl& m = *d->impl_;
  m.name = name;
  m.memory.data = reinterpret_cast<const uint8_t*>(data.data());
  m.memory.size = static_cast<int64_t>(data.size());
  constexpr int kBuf = 1 << 16;
  auto* buf = static_cast<uint8_t*>(av_malloc(kBuf));
  if (!buf) return absl::ResourceExhaustedError("av_malloc");
  m.avio = avio_alloc_context(buf, kBuf, 0, &m.memory, &MemoryInput::Read, nullptr, &MemoryInput::Seek);
  if (!m.avio) {
    av_free(buf);
    return absl::ResourceExhaustedError("avio_alloc_context");
  }
  AVFormatContext* raw = avformat_alloc_context();
  raw->pb = m.avio;
  raw->flags |= AVFMT_FLAG_CUSTOM_IO;
  int r = avformat_open_input(&raw, nullptr, nullptr, nullptr);
  if (r < 0) return FfmpegError(r, absl::StrCat("opening ", name));
  m.fmt.reset(raw);
  WFM_RETURN_IF_ERROR(d->Init(options));
  return d;
}

absl::Status VideoDecoder::Init(const DecoderOptions& options) {
  Impl& m = *impl_;
  AVFormatContext* fmt = m.fmt.get();
  int r = avformat_find_stream_info(fmt, nullptr);
  if (r < 0) return FfmpegError(r, absl::StrCat("reading stream info of ", m.name));
  const AVCodec* codec = nullptr;
  r = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
  if (r == AVERROR_STREAM_NOT_FOUND) return absl::InvalidArgumentError(absl::StrCat(m.name, ": no video stream"));
  if (r == AVERROR_DECODER_NOT_FOUND || !codec) {
    return absl::UnimplementedError(absl::StrCat(m.name, ": no decoder for the video stream"));
  }
  if (r < 0) return FfmpegError(r, absl::StrCat("finding the video stream of ", m.name));
  m.stream_index = r;
  m.max_errors = options.max_decode_errors;
  AVStream* st = fmt->streams[r];
  for (unsigned i = 0; i < fmt->nb_streams; ++i) {
    if (static_cast<int>(i) != r) fmt->streams[i]->discard = AVDISCARD_ALL;
  }
  m.codec.reset(avcodec_alloc_context3(codec));
  if (!m.codec) return absl::ResourceExhaustedError("avcodec_alloc_context3");
  r = avcodec_parameters_to_context(m.codec.get(), st->codecpar);
  if (r < 0) return FfmpegError(r, absl::StrCat("codec parameters of ", m.name));
  m.codec->thread_count = options.threads;
  m.codec->thread_type = FF_THREAD_FRAME | FF_THREAD_SLICE;
  WFM_ASSIGN_OR_RETURN(std::string decode, ResolveDecode(options.decode, options.gpu), m.name);
  if (decode == "nvdec") {
    AVPixelFormat hw = CudaPixelFormat(codec);
    if (hw == AV_PIX_FMT_NONE && options.decode == "nvdec") {
      return absl::UnimplementedError(absl::StrCat(m.name, ": --decode nvdec: NVDEC cannot decode ", codec->name,
                                                   " (use --decode auto to decode such inputs on the CPU)"));
    }
    if (hw != AV_PIX_FMT_NONE) {
      WFM_ASSIGN_OR_RETURN(AVBufferRef * device, CudaDevice(options.gpu >= 0 ? options.gpu : ProcessGpu().gpu));
      m.codec->hw_device_ctx = av_buffer_ref(device);
      if (!m.codec->hw_device_ctx) return absl::ResourceExhaustedError("av_buffer_ref");
      m.hardware = true;
      m.codec->opaque = &m.hardware;
      m.codec->get_format = PickCudaFormat;
      m.codec->thread_count = 1;  // the GPU decodes; one thread feeds it (and keeps the surface pool small)
    }
  }
  if (options.export_motion_vectors) m.codec->flags2 |= AV_CODEC_FLAG2_EXPORT_MVS;
  m.codec->pkt_timebase = st->time_base;
  r = avcodec_open2(m.codec.get(), codec, nullptr);
  if (r < 0) return FfmpegError(r, absl::StrCat("opening the ", codec->name, " decoder for ", m.name));
  if (m.codec->width <= 0 || m.codec->height <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(m.name, ": video stream has no frame size"));
  }
  m.frame.reset(av_frame_alloc());
  m.pending.reset(av_frame_alloc());
  m.download.reset(av_frame_alloc());
  m.packet.reset(av_packet_alloc());
  if (!m.frame || !m.pending || !m.download || !m.packet) return absl::ResourceExhaustedError("av_frame_alloc");
  m.cfr = options.constant_frame_rate;
  m.time_base = st->time_base;
  m.start_pts = st->start_time != AV_NOPTS_VALUE ? st->start_time : 0;

  VideoInfo& info = info_;
  info.path = m.name;
  info.container = fmt->iformat ? fmt->iformat->name : "";
  info.codec = codec->name;
  info.width = m.codec->width;
  info.height = m.codec->height;
  AVRational rate = st->avg_frame_rate;
  if (rate.num <= 0 || rate.den <= 0 || av_q2d(rate) > 1000) rate = st->r_frame_rate;
  if (rate.num <= 0 || rate.den <= 0 || av_q2d(rate) > 1000) rate = AVRational{25, 1};
  info.fps = Rational{rate.num, rate.den};
  m.fps = av_q2d(rate);
  info.time_base = Rational{st->time_base.num, st->time_base.den};
  if (st->duration != AV_NOPTS_VALUE && st->duration > 0) {
    info.duration_s = st->duration * av_q2d(st->time_base);
  } else if (fmt->duration != AV_NOPTS_VALUE && fmt->duration > 0) {
    info.duration_s = fmt->duration / static_cast<double>(AV_TIME_BASE);
  }
  info.num_frames = st->nb_frames > 0 ? st->nb_frames : static_cast<int64_t>(info.duration_s * av_q2d(rate) + 0.5);
  info.num_frames_exact = false;
  info.bit_rate = st->codecpar->bit_rate > 0 ? st->codecpar->bit_rate : fmt->bit_rate;
  const char* pf = av_get_pix_fmt_name(static_cast<AVPixelFormat>(m.codec->pix_fmt));
  info.pix_fmt = pf ? pf : "";
  current_.decoder_ = this;
  current_.frame_ = m.frame.get();
  return absl::OkStatus();
}

absl::StatusOr<bool> VideoDecoder::Next() {
  Impl& m = *impl_;
  while (true) {
    if (m.have_pending) {
      if (m.repeats_left > 0) {
        // Repeat the picture currently exposed to fill a timestamp gap.
        --m.repeats_left;
        current_.index_ += 1;
        current_.repeated_ = true;
        current_.time_s_ = current_.index_ / m.fps;
        return true;
      }
      av_frame_unref(m.frame.get());
      av_frame_move_ref(m.frame.get(), m.pending.get());
      m.have_pending = false;
      current_.index_ += 1;
      current_.repeated_ = false;
      int64_t ts = m.frame->best_effort_timestamp;
      current_.pts_ = ts == AV_NOPTS_VALUE ? INT64_MIN : ts;
      current_.time_s_ = ts == AV_NOPTS_VALUE ? current_.index_ / m.fps : (ts - m.start_pts) * av_q2d(m.time_base);
      return true;
    }
    WFM_ASSIGN_OR_RETURN(bool got, ReceiveFrame(m.pending.get()));
    if (!got) return false;
    m.have_pending = true;
    m.repeats_left = 0;
    int64_t ts = m.pending->best_effort_timestamp;
    if (m.cfr && ts != AV_NOPTS_VALUE && current_.index_ >= 0) {
      const int64_t d = CfrDecision((ts - m.start_pts) * av_q2d(m.time_base) * m.fps, current_.index_ + 1, m.fps);
      if (d < 0) {
        m.have_pending = false;
        av_frame_unref(m.pending.get());
        continue;
      }
      m.repeats_left = d;
    }
  }
}

absl::StatusOr<bool> VideoDecoder::ReceiveFrame(AVFrame* out) {
  Impl& m = *impl_;
  while (true) {
    int r = avcodec_receive_frame(m.codec.get(), out);
    if (r == 0 && out->format == AV_PIX_FMT_CUDA) {
      // NVDEC: copy the picture to system memory (NV12 / P010) with its timestamps, flags and side data.
      AVFrame* d = m.download.get();
      av_frame_unref(d);
      int t = av_hwframe_transfer_data(d, out, 0);
      if (t >= 0) t = av_frame_copy_props(d, out);
      if (t < 0) return FfmpegError(t, absl::StrCat("copying an NVDEC frame of ", m.name, " to system memory"));
      av_frame_unref(out);
      av_frame_move_ref(out, d);
    }
    if (r == 0) {
      last_frame_corrupt_ = (out->flags & AV_FRAME_FLAG_CORRUPT) || out->decode_error_flags != 0;
      corrupt_frames_ += last_frame_corrupt_;
      return true;
    }
    if (r == AVERROR_EOF) return false;
    if (r != AVERROR(EAGAIN)) {
      if (++decode_errors_ > m.max_errors) return FfmpegError(r, absl::StrCat("decoding ", m.name));
    }
    if (m.demux_done) {
      if (m.flushed) return false;
      m.flushed = true;
      avcodec_send_packet(m.codec.get(), nullptr);
      continue;
    }
    r = av_read_frame(m.fmt.get(), m.packet.get());
    if (r < 0) {
      if (r != AVERROR_EOF) {
        read_error_ = true;
        char buf[AV_ERROR_MAX_STRING_SIZE] = {0};
        av_strerror(r, buf, sizeof(buf));
        read_error_message_ = buf;
      }
      m.demux_done = true;
      continue;
    }
    if (m.packet->stream_index == m.stream_index) {
      last_packet_corrupt_ = m.packet->flags & AV_PKT_FLAG_CORRUPT;
      corrupt_packets_ += last_packet_corrupt_;
      int s = avcodec_send_packet(m.codec.get(), m.packet.get());
      if (s < 0 && s != AVERROR(EAGAIN) && s != AVERROR_EOF && ++decode_errors_ > m.max_errors) {
        av_packet_unref(m.packet.get());
        return FfmpegError(s, absl::StrCat("decoding ", m.name, " (", decode_errors_, " corrupt packets)"));
      }
    }
    av_packet_unref(m.packet.get());
  }
}

int64_t CfrDecision(double position, int64_t next, double fps) {
  const double delta = position - static_cast<double>(next);
  if (delta < -1.1) return -1;
  if (delta > 1.1) return std::min<int64_t>(std::llround(delta), static_cast<int64_t>(fps * 60));
  return 0;
}

bool VideoDecoder::hardware() const { return impl_->hardware; }

bool DecodedFrame::key_frame() const {
#ifdef AV_FRAME_FLAG_KEY
  return frame_->flags & AV_FRAME_FLAG_KEY;
#else
  return frame_->key_frame != 0;
#endif
}
int DecodedFrame::width() const { return frame_->width; }
int DecodedFrame::height() const { return frame_->height; }

namespace {

// Area-averaging downscale of 8-bit 4:2:0 frames straight to RGB24 (the per-frame analysis thumbnail): box sums
// over the Y and chroma planes, then one YCbCr->RGB conversion per output pixel. About 3x cheaper than
// swscale's SWS_AREA path for 10x reductions; same colour handling (BT.709 when tagged, else BT.601).
bool AreaYuv420ToRgb(const AVFrame* f, int w, int h, uint8_t* dst) {
  auto fmt = static_cast<AVPixelFormat>(f->format);
  bool full = f->color_range == AVCOL_RANGE_JPEG;
  if (fmt == AV_PIX_FMT_YUVJ420P) {
    full = true;
  } else if (fmt != AV_PIX_FMT_YUV420P) {
    return false;
  }
  const int W = f->width, H = f->height;
  if (w * 2 > W || h * 2 > H || W < 2 || H < 2) return false;
  const int CW = (W + 1) / 2, CH = (H + 1) / 2;
  std::vector<int> x0(w + 1), cx0(w + 1);
  for (int i = 0; i <= w; ++i) {
    x0[i] = static_cast<int>(static_cast<int64_t>(i) * W / w);
    cx0[i] = static_cast<int>(static_cast<int64_t>(i) * CW / w);
  }
  std::vector<uint32_t> ry(W), ru(CW), rv(CW);
  // YCbCr -> RGB (fixed point, 16 fractional bits).
  const bool bt709 = f->colorspace == AVCOL_SPC_BT709;
  const double kr = bt709 ? 0.2126 : 0.299, kb = bt709 ? 0.0722 : 0.114, kg = 1 - kr - kb;
  const double ys = full ? 1.0 : 255.0 / 219.0, cs = full ? 1.0 : 255.0 / 224.0;
  const double crv = 2 * (1 - kr) * cs, cbu = 2 * (1 - kb) * cs;
  const double cgu = 2 * (1 - kb) * kb / kg * cs, cgv = 2 * (1 - kr) * kr / kg * cs;
  const double yoff = full ? 0 : 16;
  for (int oy = 0; oy < h; ++oy) {
    int y0 = static_cast<int>(static_cast<int64_t>(oy) * H / h), y1 = static_cast<int>(static_cast<int64_t>(oy + 1) * H / h);
    int c0 = static_cast<int>(static_cast<int64_t>(oy) * CH / h), c1 = static_cast<int>(static_cast<int64_t>(oy + 1) * CH / h);
    if (c1 <= c0) c1 = c0 + 1;
    std::fill(ry.begin(), ry.end(), 0u);
    std::fill(ru.begin(), ru.end(), 0u);
    std::fill(rv.begin(), rv.end(), 0u);
    // Boxes of 4+ rows use every other row: the frame is cold in this core's cache, so rows read are what costs;
    // 2+ samples per box row and all columns keep the average alias-free enough for the detectors.
    // __restrict: uint8_t may alias anything, which would keep these loops scalar.
    const int ystep = y1 - y0 >= 4 ? 2 : 1, cstep = c1 - c0 >= 4 ? 2 : 1;
    const int yrows = (y1 - y0 + ystep - 1) / ystep, crows = (c1 - c0 + cstep - 1) / cstep;
    uint32_t* __restrict ay = ry.data();
    for (int y = y0; y < y1; y += ystep) {
      const uint8_t* __restrict p = f->data[0] + static_cast<ptrdiff_t>(y) * f->linesize[0];
      for (int x = 0; x < W; ++x) ay[x] += p[x];
    }
    uint32_t* __restrict au = ru.data();
    uint32_t* __restrict av = rv.data();
    for (int y = c0; y < c1; y += cstep) {
      const uint8_t* __restrict u = f->data[1] + static_cast<ptrdiff_t>(y) * f->linesize[1];
      const uint8_t* __restrict v = f->data[2] + static_cast<ptrdiff_t>(y) * f->linesize[2];
      for (int x = 0; x < CW; ++x) {
        au[x] += u[x];
        av[x] += v[x];
      }
    }
    uint8_t* out = dst + static_cast<size_t>(oy) * w * 3;
    for (int ox = 0; ox < w; ++ox) {
      uint32_t sy = 0, su = 0, sv = 0;
      for (int x = x0[ox]; x < x0[ox + 1]; ++x) sy += ry[x];
      int ce = std::max(cx0[ox + 1], cx0[ox] + 1);
      for (int x = cx0[ox]; x < ce; ++x) {
        su += ru[x];
        sv += rv[x];
      }
      double Y = (static_cast<double>(sy) / ((x0[ox + 1] - x0[ox]) * yrows) - yoff) * ys;
      double n = static_cast<double>((ce - cx0[ox]) * crows);
      double U = su / n - 128.0, V = sv / n - 128.0;
      double r = Y + crv * V, g = Y - cgu * U - cgv * V, b = Y + cbu * U;
      out[3 * ox] = static_cast<uint8_t>(std::clamp(r + 0.5, 0.0, 255.0));
      out[3 * ox + 1] = static_cast<uint8_t>(std::clamp(g + 0.5, 0.0, 255.0));
      out[3 * ox + 2] = static_cast<uint8_t>(std::clamp(b + 0.5, 0.0, 255.0));
    }
  }
  return true;
}

}  // namespace

absl::Status DecodedFrame::ToRgb(int w, int h, uint8_t* dst) const {
  if (w > 0 && h > 0 && AreaYuv420ToRgb(frame_, w, h, dst)) return absl::OkStatus();
  return decoder_->impl_->Convert(frame_, AV_PIX_FMT_RGB24, w, h, dst, 3);
}

absl::Status DecodedFrame::ToGray(int w, int h, uint8_t* dst) const {
  return decoder_->impl_->Convert(frame_, AV_PIX_FMT_GRAY8, w, h, dst, 1);
}

absl::Status DecodedFrame::Luma(const uint8_t** data, int* stride, bool* full_range) const {
  auto fmt = static_cast<AVPixelFormat>(frame_->format);
  if (HasDirectLuma(fmt)) {
    *data = frame_->data[0];
    *stride = frame_->linesize[0];
    if (full_range) {
      bool full = frame_->color_range == AVCOL_RANGE_JPEG || fmt == AV_PIX_FMT_GRAY8;
      NormalizeFormat(fmt, &full);
      *full_range = full;
    }
    return absl::OkStatus();
  }
  auto& m = *decoder_->impl_;
  if (m.luma_index != index_) {
    m.luma.resize(static_cast<size_t>(frame_->width) * frame_->height);
    WFM_RETURN_IF_ERROR(m.Convert(frame_, AV_PIX_FMT_GRAY8, frame_->width, frame_->height, m.luma.data(), 1));
    m.luma_index = index_;
  }
  *data = m.luma.data();
  *stride = frame_->width;
  if (full_range) *full_range = true;
  return absl::OkStatus();
}

bool DecodedFrame::has_motion_vectors() const {
  if (repeated_) return false;
  const AVFrameSideData* sd = av_frame_get_side_data(frame_, AV_FRAME_DATA_MOTION_VECTORS);
  return sd && sd->size >= sizeof(AVMotionVector);
}

std::vector<MotionVector> DecodedFrame::MotionVectors() const {
  std::vector<MotionVector> out;
  const AVFrameSideData* sd = repeated_ ? nullptr : av_frame_get_side_data(frame_, AV_FRAME_DATA_MOTION_VECTORS);
  if (!sd) return out;
  const auto* mvs = reinterpret_cast<const AVMotionVector*>(sd->data);
  size_t n = sd->size / sizeof(AVMotionVector);
  out.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const AVMotionVector& a = mvs[i];
    out[i] = MotionVector{a.source, a.w, a.h, a.src_x, a.src_y, a.dst_x, a.dst_y, a.motion_x, a.motion_y,
                          static_cast<int32_t>(a.motion_scale)};
  }
  return out;
}

absl::StatusOr<at::Tensor> DecodeBytesToTensor(absl::string_view data, int width, int height,
                                               const std::string& name) {
  WFM_ASSIGN_OR_RETURN(auto dec, VideoDecoder::OpenBytes(data, name));
  int w = width > 0 ? width : dec->info().width;
  int h = height > 0 ? height : dec->info().height;
  std::vector<at::Tensor> frames;
  while (true) {
    WFM_ASSIGN_OR_RETURN(bool more, dec->Next());
    if (!more) break;
    at::Tensor t = at::empty({h, w, 3}, at::kByte);
    WFM_RETURN_IF_ERROR(dec->frame().ToRgb(w, h, t.data_ptr<uint8_t>()));
    frames.push_back(t);
  }
  if (frames.empty()) return absl::DataLossError(absl::StrCat(name, ": no frames decoded"));
  return at::stack(frames);  // [T, h, w, 3]
}

}  // namespace wfm::curation
