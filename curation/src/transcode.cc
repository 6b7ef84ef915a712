// Clip transcoder and stream copier (see transcode.h). Encode loop after FFmpeg doc/examples/transcode.c:
// send_frame / receive_packet, timestamps rescaled to the stream time base, encoder flushed before the trailer.
#include "wfm/curation/transcode.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <mutex>
#include <utility>
#include <vector>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
}

#include "absl/strings/str_cat.h"
#include "wfm/core/ffmpeg_ptr.h"
#include "wfm/core/status.h"
#include "wfm/curation/decoder.h"
#include "wfm/curation/gpu.h"

namespace wfm::curation {
namespace fs = std::filesystem;

namespace {

// One MP4 being written; renamed into place by Close().
class ClipEncoder {
 public:
  static absl::StatusOr<std::unique_ptr<ClipEncoder>> Open(const std::string& path, const std::string& encoder,
                                                           int w, int h, AVRational fps, const TranscodeOptions& o) {
    std::unique_ptr<ClipEncoder> e(new ClipEncoder());
    e->path_ = path;
    e->tmp_ = path + ".tmp";
    const AVCodec* codec = avcodec_find_encoder_by_name(encoder.c_str());
    if (!codec) return absl::UnimplementedError(absl::StrCat("encoder ", encoder, " is not available in this FFmpeg"));
    e->ctx_.reset(avcodec_alloc_context3(codec));
    AVCodecContext* c = e->ctx_.get();
    c->width = w;
    c->height = h;
    c->pix_fmt = AV_PIX_FMT_YUV420P;
    c->time_base = AVRational{fps.den, fps.num};
    c->framerate = fps;
    c->thread_count = o.threads;
    if (o.bit_rate > 0) {
      c->bit_rate = o.bit_rate;
    } else if (encoder == "libx264") {
      av_opt_set_int(c->priv_data, "crf", o.crf, 0);
    } else if (encoder == "h264_nvenc") {
      av_opt_set(c->priv_data, "rc", "vbr", 0);
      av_opt_set_int(c->priv_data, "cq", o.crf, 0);
    }
    if (encoder == "libx264" && !o.preset.empty()) av_opt_set(c->priv_data, "preset", o.preset.c_str(), 0);
    if (encoder == "h264_nvenc") {
      // The same GPU as the decode (one rank per GPU); -1 lets NVENC pick (its "any" default).
      const int gpu = o.gpu >= 0 ? o.gpu : ProcessGpu().gpu;
      if (gpu >= 0) av_opt_set_int(c->priv_data, "gpu", gpu, 0);
    }
    AVFormatContext* oc = nullptr;
    int r = avformat_alloc_output_context2(&oc, nullptr, "mp4", e->tmp_.c_str());
    if (r < 0 || !oc) return FfmpegError(r, absl::StrCat("creating ", path));
    e->oc_.reset(oc);
    if (oc->oformat->flags & AVFMT_GLOBALHEADER) c->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    r = avcodec_open2(c, codec, nullptr);
    if (r < 0) return FfmpegError(r, absl::StrCat("opening encoder ", encoder, " for ", path));
    e->st_ = avformat_new_stream(oc, nullptr);
    if (!e->st_) return absl::ResourceExhaustedError("avformat_new_stream");
    avcodec_parameters_from_context(e->st_->codecpar, c);
    e->st_->time_base = c->time_base;
    e->st_->avg_frame_rate = fps;
    r = avio_open(&oc->pb, e->tmp_.c_str(), AVIO_FLAG_WRITE);
    if (r < 0) return FfmpegError(r, absl::StrCat("opening ", e->tmp_));
    AVDictionary* opts = nullptr;
    av_dict_set(&opts, "movflags", "+faststart", 0);
    r = avformat_write_header(oc, &opts);
    av_dict_free(&opts);
    if (r < 0) return FfmpegError(r, absl::StrCat("writing the header of ", path));
    e->frame_.reset(av_frame_alloc());
    e->frame_->format = AV_PIX_FMT_YUV420P;
    e->frame_->width = w;
    e->frame_->height = h;
    r = av_frame_get_buffer(e->frame_.get(), 32);
    if (r < 0) return FfmpegError(r, "av_frame_get_buffer");
    e->packet_.reset(av_packet_alloc());
    return e;
  }

  ~ClipEncoder() {
    sws_freeContext(sws_);
    if (!closed_) {
      oc_.reset();
      std::error_code ec;
      fs::remove(tmp_, ec);
    }
  }

  // Converts (crop already applied to `src`) and encodes one frame.
  absl::Status Write(const AVFrame* src) {
    AVFrame* f = frame_.get();
    int r = av_frame_make_writable(f);
    if (r < 0) return FfmpegError(r, "av_frame_make_writable");
    sws_ = sws_getCachedContext(sws_, src->width, src->height, static_cast<AVPixelFormat>(src->format), f->width,
                                f->height, AV_PIX_FMT_YUV420P, SWS_BICUBIC, nullptr, nullptr, nullptr);
    if (!sws_) return absl::InternalError(absl::StrCat(path_, ": cannot convert the source frames"));
    sws_scale(sws_, src->data, src->linesize, 0, src->height, f->data, f->linesize);
    f->pts = frames_++;
    return Send(f);
  }

  absl::Status Close() {
    WFM_RETURN_IF_ERROR(Send(nullptr));
    int r = av_write_trailer(oc_.get());
    if (r < 0) return FfmpegError(r, absl::StrCat("finishing ", path_));
    oc_.reset();  // closes the file
    std::error_code ec;
    fs::rename(tmp_, path_, ec);
    if (ec) return absl::InternalError(absl::StrCat("renaming ", tmp_, ": ", ec.message()));
    closed_ = true;
    return absl::OkStatus();
  }

  int64_t frames() const { return frames_; }
  ClipEncoder(const ClipEncoder&) = delete;
  ClipEncoder& operator=(const ClipEncoder&) = delete;

 private:
  ClipEncoder() = default;
  absl::Status Send(AVFrame* f) {
    int r = avcodec_send_frame(ctx_.get(), f);
    if (r < 0 && r != AVERROR_EOF) return FfmpegError(r, absl::StrCat("encoding ", path_));
    while (true) {
      r = avcodec_receive_packet(ctx_.get(), packet_.get());
      if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return absl::OkStatus();
      if (r < 0) return FfmpegError(r, absl::StrCat("encoding ", path_));
      av_packet_rescale_ts(packet_.get(), ctx_->time_base, st_->time_base);
      packet_->stream_index = st_->index;
      r = av_interleaved_write_frame(oc_.get(), packet_.get());
      if (r < 0) return FfmpegError(r, absl::StrCat("writing ", path_));
    }
  }

  std::string path_, tmp_;
  AVCodecContextPtr ctx_;
  AVFormatOutputPtr oc_;
  AVStream* st_ = nullptr;
  AVFramePtr frame_;
  AVPacketPtr packet_;
  SwsContext* sws_ = nullptr;
  int64_t frames_ = 0;
  bool closed_ = false;
};

bool CopyableCodec(AVCodecID id) {
  return id == AV_CODEC_ID_H264 || id == AV_CODEC_ID_HEVC || id == AV_CODEC_ID_MPEG4 || id == AV_CODEC_ID_AV1 ||
         id == AV_CODEC_ID_VP9;
}

// Copies the packets of [start_pts, end_pts) into an MP4 without decoding.
absl::StatusOr<ClipOutput> StreamCopy(const std::string& source, const ClipJob& job, double fps) {
  AVFormatContext* raw = nullptr;
  int r = avformat_open_input(&raw, source.c_str(), nullptr, nullptr);
  if (r < 0) return FfmpegError(r, absl::StrCat("opening ", source));
  AVFormatInputPtr in(raw);
  r = avformat_find_stream_info(in.get(), nullptr);
  if (r < 0) return FfmpegError(r, absl::StrCat("stream info of ", source));
  int vi = av_find_best_stream(in.get(), AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
  if (vi < 0) return FfmpegError(vi, absl::StrCat("video stream of ", source));
  AVStream* ist = in->streams[vi];
  if (ist->codecpar->video_delay > 0 && !job.end_key) {
    // With B-frames, packets just before a non-key end frame may reference frames after it.
    return absl::FailedPreconditionError("clip end is not keyframe-aligned in a stream with B-frames");
  }
  std::string tmp = job.output + ".tmp";
  AVFormatContext* oraw = nullptr;
  r = avformat_alloc_output_context2(&oraw, nullptr, "mp4", tmp.c_str());
  if (r < 0 || !oraw) return FfmpegError(r, "creating the stream-copy output");
  AVFormatOutputPtr out(oraw);
  out->avoid_negative_ts = AVFMT_AVOID_NEG_TS_MAKE_ZERO;
  AVStream* ost = avformat_new_stream(out.get(), nullptr);
  avcodec_parameters_copy(ost->codecpar, ist->codecpar);
  ost->codecpar->codec_tag = 0;
  ost->time_base = ist->time_base;
  r = avio_open(&out->pb, tmp.c_str(), AVIO_FLAG_WRITE);
  if (r < 0) return FfmpegError(r, absl::StrCat("opening ", tmp));
  AVDictionary* opts = nullptr;
  av_dict_set(&opts, "movflags", "+faststart", 0);
  r = avformat_write_header(out.get(), &opts);
  av_dict_free(&opts);
  if (r < 0) return FfmpegError(r, "writing the stream-copy header");
  av_seek_frame(in.get(), vi, job.start_pts, AVSEEK_FLAG_BACKWARD);
  AVPacketPtr pkt(av_packet_alloc());
  int64_t frames = 0;
  bool started = false;
  std::vector<int64_t> copied_pts;
  while (av_read_frame(in.get(), pkt.get()) >= 0) {
    if (pkt->stream_index != vi || pkt->pts == AV_NOPTS_VALUE) {
      av_packet_unref(pkt.get());
      continue;
    }
    bool key = pkt->flags & AV_PKT_FLAG_KEY;
    if (!started && !(key && pkt->pts >= job.start_pts)) {
      av_packet_unref(pkt.get());
      continue;
    }
    if (job.end_pts > job.start_pts && key && pkt->pts >= job.end_pts) {
      av_packet_unref(pkt.get());
      break;
    }
    if (job.end_pts > job.start_pts && pkt->pts >= job.end_pts) {
      av_packet_unref(pkt.get());
      continue;
    }
    started = true;
    copied_pts.push_back(pkt->pts);
    pkt->pts -= job.start_pts;
    if (pkt->dts != AV_NOPTS_VALUE) pkt->dts -= job.start_pts;
    // The muxer may have chosen another time base than the source's (MP4 raises timescales below 10000, e.g. a
    // phone's 600): packets must be rescaled or the clip plays hundreds of times too fast.
    av_packet_rescale_ts(pkt.get(), ist->time_base, ost->time_base);
    pkt->stream_index = 0;
    pkt->pos = -1;
    r = av_interleaved_write_frame(out.get(), pkt.get());
    av_packet_unref(pkt.get());
    if (r < 0) return FfmpegError(r, absl::StrCat("writing ", job.output));
    ++frames;
  }
  // The copy is exact only when the analysis' constant-frame-rate numbering maps the copied pictures 1:1 onto
  // [start_frame, end_frame): always for a constant-frame-rate source; a variable-frame-rate span (pictures the
  // numbering drops or repeats, e.g. a phone's 30 fps stream slowing to 15 fps in the dark) would give a clip
  // whose frames and frame count differ from its metadata, so it is declined and re-encoded at the nominal rate.
  std::sort(copied_pts.begin(), copied_pts.end());
  const int64_t stream_start = ist->start_time != AV_NOPTS_VALUE ? ist->start_time : 0;
  std::string mismatch;
  if (copied_pts.empty() || copied_pts.front() != job.start_pts) {
    mismatch = "the first copied picture is not the clip's first frame";
  } else {
    int64_t next = job.start_frame + 1;
    for (size_t k = 1; k < copied_pts.size() && mismatch.empty(); ++k, ++next) {
      const double t = (copied_pts[k] - stream_start) * av_q2d(ist->time_base);
      const int64_t d = CfrDecision(t * fps, next, fps);
      if (d != 0) {
        mismatch = absl::StrCat("variable frame rate: the picture at ", absl::SixDigits(t), " s is ",
                                d < 0 ? "dropped" : absl::StrCat("preceded by ", d, " repeated frame(s)"),
                                " in the clip's ", absl::SixDigits(fps), " fps frame numbering");
      }
    }
    if (mismatch.empty() && next != job.end_frame) {
      mismatch = absl::StrCat(copied_pts.size(), " pictures in [start_pts, end_pts) for ",
                              job.end_frame - job.start_frame, " clip frames");
    }
  }
  if (!mismatch.empty()) {
    out.reset();
    std::error_code ec;
    fs::remove(tmp, ec);
    return absl::FailedPreconditionError(mismatch);
  }
  r = av_write_trailer(out.get());
  if (r < 0) return FfmpegError(r, absl::StrCat("finishing ", job.output));
  out.reset();
  std::error_code ec;
  fs::rename(tmp, job.output, ec);
  if (ec) return absl::InternalError(absl::StrCat("renaming ", tmp, ": ", ec.message()));
  ClipOutput o;
  o.width = ist->codecpar->width;
  o.height = ist->codecpar->height;
  o.fps = fps;
  o.num_frames = frames;
  o.num_bytes = static_cast<int64_t>(fs::file_size(job.output, ec));
  o.codec = avcodec_get_name(ist->codecpar->codec_id);
  o.stream_copied = true;
  return o;
}

}  // namespace

ClipJob JobForClip(const ClipRecord& clip, std::string output) {
  ClipJob j;
  j.start_frame = clip.start_frame;
  j.end_frame = clip.end_frame;
  j.crop = clip.crop;
  j.output = std::move(output);
  j.start_pts = clip.start_pts;
  j.end_pts = clip.end_pts;
  j.start_key = clip.start_key;
  j.end_key = clip.end_key;
  return j;
}

std::string ResolveEncoder(const std::string& requested) {
  if (requested != "auto") return requested;
  static std::once_flag once;
  static std::string resolved;
  std::call_once(once, [] {
    for (const char* name : {"h264_nvenc", "libx264", "libopenh264", "mpeg4"}) {
      const AVCodec* codec = avcodec_find_encoder_by_name(name);
      if (!codec) continue;
      AVCodecContextPtr c(avcodec_alloc_context3(codec));
      c->width = 256;
      c->height = 256;
      c->pix_fmt = AV_PIX_FMT_YUV420P;
      c->time_base = AVRational{1, 25};
      int saved = av_log_get_level();
      av_log_set_level(AV_LOG_QUIET);
      int r = avcodec_open2(c.get(), codec, nullptr);
      av_log_set_level(saved);
      if (r >= 0) {
        resolved = name;
        return;
      }
    }
    resolved = "mpeg4";
  });
  return resolved;
}

absl::StatusOr<std::vector<ClipOutput>> TranscodeClips(const std::string& source, const std::vector<ClipJob>& jobs,
                                                       const TranscodeOptions& o) {
  std::vector<ClipOutput> outputs(jobs.size());
  if (jobs.empty()) return outputs;
  for (size_t i = 1; i < jobs.size(); ++i) {
    if (jobs[i].start_frame < jobs[i - 1].end_frame) {
      return absl::InvalidArgumentError("TranscodeClips: jobs must be sorted and must not overlap");
    }
  }
  DecoderOptions dopt;
  dopt.threads = o.threads;
  dopt.decode = o.decode;
  dopt.gpu = o.gpu;
  WFM_ASSIGN_OR_RETURN(auto dec, VideoDecoder::Open(source, dopt));
  const VideoInfo& info = dec->info();
  AVRational src_fps{static_cast<int>(info.fps.num), static_cast<int>(info.fps.den)};
  AVRational out_fps = o.fps > 0 ? av_d2q(o.fps, 100000) : src_fps;
  const std::string encoder = ResolveEncoder(o.encoder);

  // Stream copies first (no decode); the rest is encoded in one pass.
  std::vector<bool> copied(jobs.size(), false);
  for (size_t i = 0; i < jobs.size(); ++i) {
    const ClipJob& j = jobs[i];
    bool full = j.crop.w == 0 || !o.crop || (j.crop.x == 0 && j.crop.y == 0 && j.crop.w >= info.width - 1 &&
                                              j.crop.h >= info.height - 1);
    if (!o.stream_copy) continue;
    const AVCodecDescriptor* desc = avcodec_descriptor_get_by_name(info.codec.c_str());
    std::string& why = outputs[i].copy_declined;
    if (!full) {
      why = "the clip is cropped (black borders)";
    } else if (o.height != 0 || o.fps != 0) {
      why = "a new size or frame rate was asked for";
    } else if (!j.start_key) {
      why = "the clip does not start on a keyframe";
    } else if (j.end_pts <= j.start_pts) {
      why = "the clip's end timestamp is unknown";
    } else if (!desc || !CopyableCodec(desc->id)) {
      why = absl::StrCat(info.codec, " is not stream-copied into MP4");
    } else {
      auto r = StreamCopy(source, j, info.fps.value());
      if (r.ok()) {
        outputs[i] = *r;
        copied[i] = true;
      } else {
        why = std::string(r.status().message());
      }
    }
  }

  size_t next = 0;
  while (next < jobs.size() && copied[next]) ++next;
  std::unique_ptr<ClipEncoder> enc;
  size_t active = jobs.size();
  int64_t out_index = 0;
  AVFramePtr view(av_frame_alloc());
  while (next < jobs.size() || enc) {
    WFM_ASSIGN_OR_RETURN(bool more, dec->Next());
    if (!more) break;
    const DecodedFrame& f = dec->frame();
    const int64_t i = f.index();
    if (!enc && next < jobs.size() && i == jobs[next].start_frame) {
      const ClipJob& j = jobs[next];
      CropBox b = (o.crop && j.crop.w > 0) ? j.crop : CropBox{0, 0, f.width(), f.height()};
      int w = b.w & ~1, h = b.h & ~1;
      if (o.height > 0) {
        h = std::max(2, o.height & ~1);
        w = std::max(2, static_cast<int>(std::lround(b.w * static_cast<double>(h) / b.h / 2.0)) * 2);
      }
      WFM_ASSIGN_OR_RETURN(enc, ClipEncoder::Open(j.output, encoder, w, h, out_fps, o));
      active = next;
      out_index = 0;
      ClipOutput& out = outputs[active];
      out.width = w;
      out.height = h;
      out.fps = av_q2d(out_fps);
      out.codec = encoder == "mpeg4" ? "mpeg4" : "h264";
    }
    if (enc) {
      const ClipJob& j = jobs[active];
      if (i < j.end_frame) {
        // Source frame r of the clip feeds the output frames whose nearest source frame it is.
        const int64_t r = i - j.start_frame;
        const double ratio = av_q2d(src_fps) / av_q2d(out_fps);
        av_frame_unref(view.get());
        av_frame_ref(view.get(), f.av_frame());
        if (o.crop && j.crop.w > 0) {
          view->crop_left = j.crop.x;
          view->crop_top = j.crop.y;
          view->crop_right = std::max(0, f.width() - j.crop.x - j.crop.w);
          view->crop_bottom = std::max(0, f.height() - j.crop.y - j.crop.h);
          av_frame_apply_cropping(view.get(), AV_FRAME_CROP_UNALIGNED);
        }
        while (std::llround(out_index * ratio) == r) {
          WFM_RETURN_IF_ERROR(enc->Write(view.get()));
          ++out_index;
        }
      }
      if (i + 1 >= j.end_frame) {
        WFM_RETURN_IF_ERROR(enc->Close());
        outputs[active].num_frames = enc->frames();
        std::error_code ec;
        outputs[active].num_bytes = static_cast<int64_t>(fs::file_size(j.output, ec));
        enc.reset();
        ++next;
        while (next < jobs.size() && copied[next]) ++next;
      }
    }
  }
  if (enc) {  // the source ended early
    WFM_RETURN_IF_ERROR(enc->Close());
    outputs[active].num_frames = enc->frames();
    std::error_code ec;
    outputs[active].num_bytes = static_cast<int64_t>(fs::file_size(jobs[active].output, ec));
    ++next;
  }
  for (size_t k = 0; k < jobs.size(); ++k) {
    if (outputs[k].num_frames == 0) {
      return absl::DataLossError(absl::StrCat(source, ": clip [", jobs[k].start_frame, ", ", jobs[k].end_frame,
                                              ") got no frames (the source has ", dec->frames_decoded(), ")"));
    }
  }
  return outputs;
}

}  // namespace wfm::curation
