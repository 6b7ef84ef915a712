// Test videos for the curation suites (see curation_test_util.h).
#include "curation_test_util.h"

#include <cstdio>
#include <cstdlib>

#include <ATen/ATen.h>

#include "test_support.h"
#include "wfm/core/status.h"
#include "wfm/curation/decoder.h"

namespace wfm::curation::testing {

absl::StatusOr<at::Tensor> LoadFrames(const std::string& path, int w, int h, int64_t start, int64_t count) {
  WFM_ASSIGN_OR_RETURN(auto dec, VideoDecoder::Open(path));
  int ow = w > 0 ? w : dec->info().width, oh = h > 0 ? h : dec->info().height;
  std::vector<at::Tensor> frames;
  while (count < 0 || static_cast<int64_t>(frames.size()) < count) {
    WFM_ASSIGN_OR_RETURN(bool more, dec->Next());
    if (!more) break;
    if (dec->frame().index() < start) continue;
    at::Tensor t = at::empty({oh, ow, 3}, at::kByte);
    WFM_RETURN_IF_ERROR(dec->frame().ToRgb(ow, oh, t.data_ptr<uint8_t>()));
    frames.push_back(t);
  }
  if (frames.empty()) return absl::NotFoundError(absl::StrCat(path, ": no frames in range"));
  return at::stack(frames);
}

namespace {
// Streams raw RGB frames into an ffmpeg encoder process.
class FfmpegPipe {
 public:
  absl::Status Open(const std::string& path, int w, int h, double fps, const std::string& codec_args) {
    std::string cmd = absl::StrCat("ffmpeg -v error -y -f rawvideo -pix_fmt rgb24 -s ", w, "x", h, " -r ", fps,
                                   " -i - ", codec_args, " '", path, "'");
    pipe_ = popen(cmd.c_str(), "w");
    if (!pipe_) return absl::InternalError("cannot start ffmpeg");
    return absl::OkStatus();
  }
  absl::Status Write(const at::Tensor& frame) {
    at::Tensor f = frame.contiguous();
    if (std::fwrite(f.data_ptr<uint8_t>(), 1, f.numel(), pipe_) != static_cast<size_t>(f.numel())) {
      return absl::InternalError("writing to ffmpeg failed");
    }
    return absl::OkStatus();
  }
  absl::Status Close() {
    int rc = pclose(pipe_);
    pipe_ = nullptr;
    if (rc != 0) return absl::InternalError(absl::StrCat("ffmpeg exited with ", rc));
    return absl::OkStatus();
  }
  ~FfmpegPipe() {
    if (pipe_) pclose(pipe_);
  }

 private:
  FILE* pipe_ = nullptr;
};

struct Source {
  std::string file;
  double fps;
  int64_t first, last;  // usable source frames [first, last)
};

struct Region {
  double x0, y0, x1, y1;
  bool flip;
};
}  // namespace

absl::Status EncodeFrames(const at::Tensor& frames, double fps, const std::string& path, const std::string& codec_args) {
  FfmpegPipe pipe;
  WFM_RETURN_IF_ERROR(pipe.Open(path, frames.size(2), frames.size(1), fps, codec_args));
  for (int64_t i = 0; i < frames.size(0); ++i) WFM_RETURN_IF_ERROR(pipe.Write(frames[i]));
  return pipe.Close();
}

absl::StatusOr<Stitched> WriteStitchedVideo(const std::string& path, int w, int h, int num_segments, int seg_frames,
                                            int dissolve_frames, const std::string& codec_args, int variant) {
  const std::string media = wfm::testing::SharedPath("media");
  // cityCC0 has a cut at frame 116: its two shots are separate sources.
  const std::vector<Source> sources = {{media + "/cityCC0.mpg", 25.0, 0, 112},
                                       {media + "/vtest.avi", 10.0, 0, 795},
                                       {media + "/tree.avi", 15.0, 0, 444},
                                       {media + "/cityCC0.mpg", 25.0, 120, 190}};
  const std::vector<Region> regions = {{0, 0, 1, 1, false},         {0, 0, 0.6, 0.7, false}, {0.4, 0.3, 1, 1, true},
                                       {0.2, 0.1, 0.8, 0.9, false}, {0, 0.3, 0.5, 1, true},  {0.5, 0, 1, 0.6, false}};
  constexpr double kFps = 25.0;
  Stitched truth;
  FfmpegPipe pipe;
  WFM_RETURN_IF_ERROR(pipe.Open(path, w, h, kFps, codec_args));
  at::Tensor tail;  // the previous segment's last `dissolve_frames` frames, for a dissolve
  for (int i = 0; i < num_segments; ++i) {
    const Source& src = sources[i % sources.size()];
    const Region& reg = regions[(i / sources.size() + i + variant) % regions.size()];
    bool dissolve_in = i > 0 && i % 2 == 0;
    int overlap = dissolve_in ? dissolve_frames : 0;
    // Source frames for this segment, resampled to 25 fps from a varying start time.
    double avail_s = (src.last - src.first) / src.fps - (seg_frames + dissolve_frames) / kFps;
    double offset_s = avail_s > 0 ? std::fmod((i + 5 * variant) * 1.37 + 0.61 * variant, avail_s) : 0.0;
    int64_t first_src = src.first + static_cast<int64_t>(offset_s * src.fps);
    int64_t need_src = static_cast<int64_t>((seg_frames + 1) * src.fps / kFps) + 2;
    WFM_ASSIGN_OR_RETURN(at::Tensor raw, LoadFrames(src.file, 0, 0, first_src, need_src));
    int64_t H = raw.size(1), W = raw.size(2);
    int64_t y0 = static_cast<int64_t>(reg.y0 * H), y1 = static_cast<int64_t>(reg.y1 * H);
    int64_t x0 = static_cast<int64_t>(reg.x0 * W), x1 = static_cast<int64_t>(reg.x1 * W);
    at::Tensor crop = raw.slice(1, y0, y1).slice(2, x0, x1);
    if (reg.flip) crop = crop.flip({2});
    at::Tensor f = crop.permute({0, 3, 1, 2}).to(at::kFloat);
    f = at::upsample_bilinear2d(f, {h, w}, false);  // [t, 3, h, w]
    at::Tensor seg = f.round().clamp(0, 255).to(at::kByte).permute({0, 2, 3, 1}).contiguous();
    std::vector<at::Tensor> out;
    for (int k = 0; k < seg_frames; ++k) {
      int64_t idx = std::min<int64_t>(static_cast<int64_t>(k * src.fps / kFps + 1e-6), seg.size(0) - 1);
      out.push_back(seg[idx]);
    }
    if (i > 0) {
      if (dissolve_in) {
        // Blend the previous segment's tail into this segment's head.
        int64_t start = truth.num_frames;
        for (int j = 0; j < overlap; ++j) {
          double a = (j + 1.0) / (overlap + 1.0);
          at::Tensor m = (tail[j].to(at::kFloat) * (1 - a) + out[j].to(at::kFloat) * a).round().to(at::kByte);
          WFM_RETURN_IF_ERROR(pipe.Write(m));
        }
        truth.num_frames += overlap;
        truth.dissolves.push_back(start + overlap / 2);
      } else {
        for (int j = 0; j < tail.size(0); ++j) WFM_RETURN_IF_ERROR(pipe.Write(tail[j]));
        truth.num_frames += tail.size(0);
        truth.cuts.push_back(truth.num_frames);
      }
    }
    // Hold back the frames a following dissolve would blend.
    bool dissolve_out = i + 1 < num_segments && (i + 1) % 2 == 0;
    int keep = dissolve_out ? dissolve_frames : 0;
    int tail_n = i + 1 < num_segments ? std::max(keep, 0) : 0;
    int64_t body_end = seg_frames - tail_n;
    for (int64_t k = overlap; k < body_end; ++k) WFM_RETURN_IF_ERROR(pipe.Write(out[k]));
    truth.num_frames += body_end - overlap;
    if (i + 1 < num_segments) {
      std::vector<at::Tensor> t(out.begin() + body_end, out.end());
      tail = t.empty() ? at::empty({0, h, w, 3}, at::kByte) : at::stack(t);
    }
  }
  WFM_RETURN_IF_ERROR(pipe.Close());
  return truth;
}

bool HavePythonTorch() {
  return wfm::testing::RunCommand("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
}

}  // namespace wfm::curation::testing
