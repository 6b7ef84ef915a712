// Demo stage "evaluate": Video2World on the held-out windows. Every predictor (the learned world models that
// were trained, several seeds each, and the two baselines of wfm/core/world.h: copy-last-frame and
// constant-velocity; plus, as the tokenizers' ceiling, each tokenizer's encode + decode of the true frames) gets the window's first frames and the clip's caption and predicts the rest. Scores per
// horizon step: PSNR and SSIM against the true frames (wfm/core/metrics.h), and the object-position error of the
// colour detector (world::DetectObjects on the prediction vs the simulator's true positions; an object the
// detector cannot find in a predicted frame counts as kMissPenalty of the frame width). Writes
// OUTPUT/metrics.json and OUTPUT/predictions/: per window an MP4 (truth | models | baselines side by side, 2x) and a PNG
// frame strip (a row per predictor).
#include <ATen/ATen.h>

#include <chrono>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "demo_common.h"
#include "wfm/core/file_util.h"
#include "wfm/core/metrics.h"
#include "wfm/core/progress.h"
#include "wfm/core/status.h"
#include "wfm/core/video_io.h"
#include "wfm/core/world.h"
#include "wfm/tokenizer/tokenizer.h"

namespace wfm::demo {
namespace {

constexpr double kMissPenalty = 0.25;   // of the frame width, per object the detector misses
constexpr double kMinVisible = 0.5;     // objects less visible than this in the truth are not scored
constexpr int kStripWindows = 4;        // windows shown as frame strips / MP4s

// Scores of one predictor, accumulated per horizon step over windows and seeds.
struct Scores {
  std::vector<double> psnr, ssim, pos_err, detected;  // sums per step
  std::vector<int64_t> n, n_obj;                      // samples / scored objects per step
  void Resize(int64_t horizon) {
    psnr.assign(horizon, 0);
    ssim.assign(horizon, 0);
    pos_err.assign(horizon, 0);
    detected.assign(horizon, 0);
    n.assign(horizon, 0);
    n_obj.assign(horizon, 0);
  }
};

absl::Status Score(const EvalWindow& w, const at::Tensor& pred, int64_t size, Scores& s) {
  // pred: uint8 [horizon, H, W, 3]
  // TokenBench-style per-frame PSNR and SSIM (Gaussian 11x11, valid region) of uint8 frames.
  WFM_ASSIGN_OR_RETURN(const std::vector<double> psnr, wfm::PsnrPerFrame(w.future, pred));
  WFM_ASSIGN_OR_RETURN(const std::vector<double> ssim, wfm::SsimPerFrame(w.future, pred));
  const std::vector<world::Rgb> colors = w.clip.ObjectColors();
  for (int64_t k = 0; k < pred.size(0); ++k) {
    s.psnr[k] += psnr[k];
    s.ssim[k] += ssim[k];
    ++s.n[k];
    const int64_t frame = w.start + w.context.size(0) + k;  // in the clip
    const std::vector<world::Detection> det = world::DetectObjects(pred[k], colors);
    for (size_t o = 0; o < w.clip.tracks.size(); ++o) {
      const world::ObjectTrack& t = w.clip.tracks[o];
      if (t.visible_fraction[frame] < kMinVisible) continue;
      ++s.n_obj[k];
      if (!det[o].found) {
        s.pos_err[k] += kMissPenalty * size;
        continue;
      }
      s.detected[k] += 1;
      s.pos_err[k] += std::hypot(det[o].x - t.positions[frame][0], det[o].y - t.positions[frame][1]);
    }
  }
  return absl::OkStatus();
}

double Mean(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m += x;
  return v.empty() ? std::numeric_limits<double>::quiet_NaN() : m / v.size();
}

// Per-step means and the overall means of one predictor.
nlohmann::ordered_json ScoresJson(const Scores& s) {
  std::vector<double> psnr, ssim, err, det;
  for (size_t k = 0; k < s.n.size(); ++k) {
    psnr.push_back(s.psnr[k] / std::max<int64_t>(1, s.n[k]));
    ssim.push_back(s.ssim[k] / std::max<int64_t>(1, s.n[k]));
    err.push_back(s.n_obj[k] ? s.pos_err[k] / s.n_obj[k] : std::numeric_limits<double>::quiet_NaN());
    det.push_back(s.n_obj[k] ? s.detected[k] / s.n_obj[k] : std::numeric_limits<double>::quiet_NaN());
  }
  return {{"mean", {{"psnr", Mean(psnr)}, {"ssim", Mean(ssim)}, {"pos_err_px", Mean(err)}, {"detected", Mean(det)}}},
          {"per_step", {{"psnr", psnr}, {"ssim", ssim}, {"pos_err_px", err}, {"detected", det}}}};
}

// A predictor under evaluation: a learned model or a baseline.
struct Entry {
  std::string name, label, kind;  // kind: "model" | "baseline"
  std::unique_ptr<FuturePredictor> model;
  std::string status = "ok";
  Scores scores;
  double seconds = 0;
};

// The tokenizer's own ceiling: encode + decode of the TRUE window (given + future frames), scored on the future
// frames. A world model whose output goes through this decoder is capped near it, so the gap between a model and
// copy-last splits into this part (the tokenizer) and the model's own.
class TokenizerRoundTrip : public FuturePredictor {
 public:
  TokenizerRoundTrip(std::unique_ptr<tokenizer::Tokenizer> tok, const EvalWindow* const* window)
      : tok_(std::move(tok)), window_(window) {}
  absl::StatusOr<at::Tensor> Predict(const at::Tensor& context, const std::string&, int64_t horizon,
                                     const std::vector<uint64_t>&) override {
    at::NoGradGuard ng;
    const at::Tensor video = at::cat({context, (*window_)->future.narrow(0, 0, horizon)}).unsqueeze(0);
    WFM_ASSIGN_OR_RETURN(at::Tensor rec, tok_->Reconstruct(ToModel(video)));  // [1, 3, T, H, W]
    return FromModel(rec.cpu()).narrow(1, context.size(0), horizon).contiguous();  // [1, horizon, H, W, 3]
  }

 private:
  std::unique_ptr<tokenizer::Tokenizer> tok_;
  const EvalWindow* const* window_;  // the window being evaluated (its true future)
};

class CopyLast : public FuturePredictor {
 public:
  absl::StatusOr<at::Tensor> Predict(const at::Tensor& context, const std::string&, int64_t horizon,
                                     const std::vector<uint64_t>&) override {
    return world::PredictCopyLast(context, horizon).unsqueeze(0);
  }
};
class ConstantVelocity : public FuturePredictor {
 public:
  explicit ConstantVelocity(const EvalWindow* const* window) : window_(window) {}
  absl::StatusOr<at::Tensor> Predict(const at::Tensor& context, const std::string&, int64_t horizon,
                                     const std::vector<uint64_t>&) override {
    return world::PredictConstantVelocity(context, (*window_)->clip.ObjectColors(), horizon).unsqueeze(0);
  }

 private:
  const EvalWindow* const* window_;  // the window being evaluated (the detector's colours)
};

// uint8 [H, W, 3] images joined along `dim` (1: side by side, 0: stacked) with a 2 px grey gap.
at::Tensor Join(const std::vector<at::Tensor>& images, int64_t dim) {
  std::vector<at::Tensor> parts;
  for (size_t i = 0; i < images.size(); ++i) {
    if (i) {
      std::vector<int64_t> gap = images[i].sizes().vec();
      gap[dim] = 2;
      parts.push_back(at::full(gap, 128, at::kByte));
    }
    parts.push_back(images[i]);
  }
  return at::cat(parts, dim);
}
at::Tensor Upscale2x(const at::Tensor& image) {
  return image.repeat_interleave(2, 0).repeat_interleave(2, 1).contiguous();
}

absl::Status RunEvaluateStage(DemoContext& ctx) {
  WFM_ASSIGN_OR_RETURN(const DemoPlan plan, DemoPlan::For(ctx));
  const std::string dir = ctx.StageDir("predictions");
  std::vector<Entry> entries;
  for (const DemoModel& m : DemoModels()) {
    Entry e{m.name, m.label, "model"};
    auto loaded = m.load(ctx, plan);
    if (loaded.ok()) {
      e.model = std::move(*loaded);
    } else {
      e.status = absl::StrCat("not evaluated: ", loaded.status().message());
    }
    entries.push_back(std::move(e));
  }
  // Models whose stage is not part of this build yet are listed too, so the report says so.
  for (const char* name : {"ar", "diffusion"}) {
    bool known = false;
    for (const Entry& e : entries) known |= e.name == name;
    if (!known) {
      entries.push_back({name, std::string(name) == "ar" ? "AR (DV tokens)" : "diffusion (CV latents)", "model",
                         nullptr, "not evaluated: this build has no training stage for it yet"});
    }
  }
  const EvalWindow* current = nullptr;
  entries.push_back({"copy_last", "copy last frame", "baseline", std::make_unique<CopyLast>()});
  entries.push_back({"constant_velocity", "constant velocity", "baseline", std::make_unique<ConstantVelocity>(&current)});
  for (const auto& [name, label] : {std::make_pair("cv_roundtrip", "CV tokenizer on the true future (ceiling)"),
                                    std::make_pair("dv_roundtrip", "DV tokenizer on the true future (ceiling)")}) {
    absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> tok =
        OpenDemoTokenizer(ctx, plan, std::string(name).substr(0, 2));
    if (tok.ok()) {
      entries.push_back({name, label, "reference", std::make_unique<TokenizerRoundTrip>(std::move(*tok), &current)});
    } else {
      entries.push_back({name, label, "reference", nullptr, absl::StrCat("not evaluated: ", tok.status().message())});
    }
  }

  const std::vector<EvalWindow> windows = HeldoutWindows(plan);
  if (windows.empty()) return absl::FailedPreconditionError("no held-out windows (heldout_clips = 0?)");
  std::vector<uint64_t> seeds;
  for (int s = 0; s < plan.seeds; ++s) seeds.push_back(1000 + s);
  for (Entry& e : entries) e.scores.Resize(plan.future_frames);

  Progress progress("evaluate", static_cast<int64_t>(windows.size()), "windows");
  nlohmann::ordered_json shown = nlohmann::ordered_json::array();
  for (size_t wi = 0; wi < windows.size(); ++wi) {
    const EvalWindow& w = windows[wi];
    current = &w;
    std::vector<at::Tensor> strip_rows = {at::cat({w.context.narrow(0, w.context.size(0) - 1, 1), w.future})};
    std::vector<std::string> row_names = {"truth"};
    std::vector<at::Tensor> video_columns = {at::cat({w.context, w.future})};  // [T, H, W, 3] each
    for (Entry& e : entries) {
      if (!e.model) continue;
      const auto t0 = std::chrono::steady_clock::now();
      absl::StatusOr<at::Tensor> pred = e.model->Predict(w.context, w.clip.caption, plan.future_frames, seeds);
      e.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (!pred.ok()) {
        e.status = absl::StrCat("failed on ", w.name, ": ", pred.status().message());
        e.model.reset();
        continue;
      }
      for (int64_t s = 0; s < pred->size(0); ++s) {
        WFM_RETURN_IF_ERROR(Score(w, (*pred)[s], plan.size, e.scores), e.name, " on ", w.name);
      }
      const at::Tensor first = (*pred)[0];  // seed 0 is shown
      strip_rows.push_back(at::cat({w.context.narrow(0, w.context.size(0) - 1, 1), first}));
      row_names.push_back(e.label);
      video_columns.push_back(at::cat({w.context, first}));
    }
    if (static_cast<int>(wi) < kStripWindows) {
      const std::string stem = absl::StrCat("window_", wi);
      std::vector<at::Tensor> strip;
      for (const at::Tensor& row : strip_rows) strip.push_back(Join(row.unbind(0), 1));
      WFM_RETURN_IF_ERROR(WritePng(absl::StrCat(dir, "/", stem, ".png"), Upscale2x(Join(strip, 0))));
      std::vector<at::Tensor> frames;
      for (int64_t t = 0; t < video_columns[0].size(0); ++t) {
        std::vector<at::Tensor> row;
        for (const at::Tensor& c : video_columns) row.push_back(c[t]);
        frames.push_back(Upscale2x(Join(row, 1)));
      }
      EncodeOptions enc;
      enc.fps = plan.fps / 2;  // half speed: easier to follow
      enc.crf = 16;
      WFM_RETURN_IF_ERROR(WriteVideo(absl::StrCat(dir, "/", stem, ".mp4"), at::stack(frames), enc));
      shown.push_back({{"window", w.name}, {"caption", w.clip.caption}, {"png", stem + ".png"},
                       {"mp4", stem + ".mp4"}, {"rows", row_names}});
    }
    progress.Add(1);
  }
  progress.Finish();

  nlohmann::ordered_json metrics;
  metrics["task"] = {{"context_frames", plan.context_frames}, {"future_frames", plan.future_frames},
                     {"windows", windows.size()}, {"seeds", plan.seeds}, {"size", plan.size},
                     {"miss_penalty_px", kMissPenalty * plan.size}, {"min_visible", kMinVisible}};
  std::vector<std::vector<std::string>> rows;
  for (const Entry& e : entries) {
    nlohmann::ordered_json j = {{"label", e.label}, {"kind", e.kind}, {"status", e.status}};
    if (e.status == "ok") {
      j.update(ScoresJson(e.scores));
      j["seconds_per_window"] = e.seconds / windows.size();
      rows.push_back({e.label, Fmt(j["mean"]["psnr"]), Fmt(j["mean"]["ssim"], 3), Fmt(j["mean"]["pos_err_px"]),
                      Fmt(j["mean"]["detected"], 2)});
    } else {
      rows.push_back({e.label, "-", "-", "-", e.status});
    }
    metrics["predictors"][e.name] = j;
  }
  metrics["shown"] = shown;
  WFM_RETURN_IF_ERROR(WriteFileAtomically(OutPath(ctx, "metrics.json"), metrics.dump(2) + "\n"));
  ctx.Table(absl::StrFormat("Video2World on %d held-out windows (%d given frames -> %d predicted; means over the "
                            "horizon)", windows.size(), plan.context_frames, plan.future_frames),
            {"predictor", "PSNR dB", "SSIM", "pos err px", "detected"}, rows);
  ctx.summary["evaluate"] = {{"metrics", OutPath(ctx, "metrics.json")}};
  return absl::OkStatus();
}

}  // namespace

WFM_REGISTER_DEMO_STAGE(80, "evaluate", "Video2World on held-out clips vs copy-last and constant-velocity baselines",
                        RunEvaluateStage);

}  // namespace wfm::demo
