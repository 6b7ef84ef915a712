// Tokenizer evaluation: crop to the tokenizer's shape rules, reconstruct, score TokenBench-style
// (see tokenizer/train.h).
#include <ATen/ATen.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "wfm/core/progress.h"
#include "wfm/core/status.h"
#include "wfm/core/video_io.h"
#include "wfm/tokenizer/tokenizer.h"
#include "wfm/tokenizer/train.h"

namespace wfm::tokenizer {

absl::StatusOr<at::Tensor> CropToTokenizerShape(const TokenizerConfig& config, const at::Tensor& clip) {
  if (clip.dim() != 4 || clip.size(3) != 3 || clip.scalar_type() != at::kByte)
    return absl::InvalidArgumentError("expected uint8 frames [T, H, W, 3]");
  const int64_t tc = config.time_factor(), sc = config.spatial_compression;
  const int64_t t = config.is_video() ? 1 + (clip.size(0) - 1) / tc * tc : 1;
  const int64_t h = clip.size(1) / sc * sc, w = clip.size(2) / sc * sc;
  if (h == 0 || w == 0)
    return absl::InvalidArgumentError(absl::StrCat("frames of ", clip.size(1), "x", clip.size(2),
                                                   " are smaller than the spatial compression ", sc));
  return clip.narrow(0, 0, t).narrow(1, (clip.size(1) - h) / 2, h).narrow(2, (clip.size(2) - w) / 2, w);
}

absl::StatusOr<ClipScore> ScoreClip(TokenizerNetworkImpl& net, const at::Tensor& clip, const MetricOptions& metrics,
                                    c10::Device device, at::Tensor* reconstruction, at::Tensor* truth,
                                    const ServeOptions* serve) {
  WFM_ASSIGN_OR_RETURN(at::Tensor frames, CropToTokenizerShape(net.config(), clip));
  std::unique_ptr<Tokenizer> served;
  if (serve) {
    auto self = std::dynamic_pointer_cast<TokenizerNetworkImpl>(net.shared_from_this());
    WFM_ASSIGN_OR_RETURN(served, Tokenizer::FromNetwork(TokenizerNetwork(self)));
  }
  at::Tensor rec_u8;
  WFM_RETURN_IF_ERROR(CatchToStatus("reconstructing a clip", [&]() -> absl::Status {
    at::NoGradGuard no_grad;
    at::Tensor x = FramesToModelInput(frames).unsqueeze(0).to(device);  // [1, 3, T, H, W]
    if (!net.config().is_video()) x = x.select(2, 0);                    // [1, 3, H, W]
    at::Tensor rec;
    if (served) {
      WFM_ASSIGN_OR_RETURN(rec, served->Reconstruct(x, *serve));
      rec = rec.to(at::kCPU, at::kFloat);
    } else {
      rec = net.forward(x).reconstruction.to(at::kCPU, at::kFloat);
    }
    if (!net.config().is_video()) rec = rec.unsqueeze(2);
    rec_u8 = ModelOutputToFrames(rec[0]);                                // [T, H, W, 3]
    return absl::OkStatus();
  }));
  WFM_ASSIGN_OR_RETURN(VideoQuality q, CompareVideos(frames, rec_u8, metrics));
  ClipScore s;
  s.frames = frames.size(0);
  s.psnr = q.psnr;
  s.ssim = q.ssim;
  if (reconstruction) *reconstruction = rec_u8;
  if (truth) *truth = frames;
  return s;
}

absl::StatusOr<EvalSummary> EvaluateClips(TokenizerNetworkImpl& net, const std::vector<train::VideoClip>& clips,
                                          const MetricOptions& metrics, c10::Device device, bool show_progress,
                                          const ServeOptions* serve) {
  if (clips.empty()) return absl::InvalidArgumentError("no clips to evaluate");
  const auto start = std::chrono::steady_clock::now();
  const bool was_training = net.is_training();
  net.eval();
  EvalSummary out;
  ProgressOptions po;
  po.quiet = !show_progress;
  Progress progress("evaluate", static_cast<int64_t>(clips.size()), "clips", po);
  absl::Status status;
  for (const auto& c : clips) {
    auto s = ScoreClip(net, c.frames, metrics, device, nullptr, nullptr, serve);
    if (!s.ok()) {
      status = Annotate(s.status(), absl::StrCat(c.path, " at frame ", c.start_frame));
      break;
    }
    s->path = c.path;
    s->start_frame = c.start_frame;
    s->name = absl::StrCat(c.path, "@", c.start_frame);
    out.mean_psnr += s->psnr;
    out.mean_ssim += s->ssim;
    out.clips.push_back(*s);
    progress.Add(1);
  }
  if (was_training) net.train();
  WFM_RETURN_IF_ERROR(status);
  out.mean_psnr /= static_cast<double>(out.clips.size());
  out.mean_ssim /= static_cast<double>(out.clips.size());
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  progress.Finish();
  return out;
}

}  // namespace wfm::tokenizer
