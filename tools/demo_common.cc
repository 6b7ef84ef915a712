// Shared pieces of the demo stages (see demo_common.h): the plan per mode, clip-set IO, layout conversions,
// window sampling, CPU time.
#include "demo_common.h"

#include <sys/resource.h>

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "wfm/core/file_util.h"
#include "wfm/core/progress.h"
#include "wfm/core/runtime.h"
#include "wfm/core/safetensors.h"
#include "wfm/core/status.h"
#include "wfm/core/train/optimizer.h"
#include "wfm/tokenizer/tokenizer.h"

namespace wfm::demo {

namespace {

// The tunable knobs by name (--set NAME=VALUE).
struct Knob {
  const char* name;
  int* i = nullptr;
  double* d = nullptr;
};
std::vector<Knob> Knobs(DemoPlan& p) {
  return {{"train_clips", &p.train_clips},   {"heldout_clips", &p.heldout_clips},
          {"max_objects", &p.max_objects},   {"tok_channels", &p.tok_channels},
          {"tok_steps", &p.tok_steps},       {"tok_batch", &p.tok_batch},
          {"tok_frames", &p.tok_frames},     {"tok_lr", nullptr, &p.tok_lr},
          {"tok_scaled_init", &p.tok_scaled_init},
          {"cv_spatial", &p.cv_spatial},     {"dv_spatial", &p.dv_spatial},
          {"tok_patch", &p.tok_patch},       {"tok_latent", &p.tok_latent},
          {"dit_patch", &p.dit_patch},
          {"text_dim", &p.text_dim},         {"text_layers", &p.text_layers},
          {"text_max_length", &p.text_max_length},
          {"ar_dim", &p.ar_dim},             {"ar_layers", &p.ar_layers},
          {"ar_heads", &p.ar_heads},         {"ar_steps", &p.ar_steps},
          {"ar_batch", &p.ar_batch},         {"ar_lr", nullptr, &p.ar_lr},
          {"top_p", nullptr, &p.top_p},      {"temperature", nullptr, &p.temperature},
          {"dit_dim", &p.dit_dim},           {"dit_blocks", &p.dit_blocks},
          {"dit_heads", &p.dit_heads},       {"dit_steps", &p.dit_steps},
          {"dit_batch", &p.dit_batch},       {"dit_lr", nullptr, &p.dit_lr},
          {"sample_steps", &p.sample_steps}, {"guidance", nullptr, &p.guidance},
          {"dit_residual", &p.dit_residual},
          {"seeds", &p.seeds}};
}

}  // namespace

std::vector<std::string> DemoPlan::KnobNames() {
  DemoPlan p;
  std::vector<std::string> names;
  for (const Knob& k : Knobs(p)) names.push_back(k.name);
  return names;
}

absl::Status DemoPlan::Set(const std::string& knob, const std::string& value) {
  for (const Knob& k : Knobs(*this)) {
    if (knob != k.name) continue;
    if (k.i != nullptr ? absl::SimpleAtoi(value, k.i) : absl::SimpleAtod(value, k.d)) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat("--set ", knob, ": bad value '", value, "'"));
  }
  return absl::InvalidArgumentError(absl::StrCat("--set: unknown knob '", knob, "'; known: ",
                                                 absl::StrJoin(KnobNames(), ", ")));
}

absl::StatusOr<DemoPlan> DemoPlan::For(const DemoContext& ctx) {
  DemoPlan p;
  p.device = ctx.device;
  const bool cuda = ctx.device.rfind("cuda", 0) == 0;
  if (ctx.quick) {
    // End to end in well under 3 minutes on 2 cores: the same pipeline at toy sizes (learns little).
    p.mode = "quick";
    p.train_clips = 24;
    p.heldout_clips = 2;
    p.eval_starts = {0};
    p.real_clip_frames = 120;
    p.tok_channels = 16;
    p.tok_steps = 16;
    p.tok_batch = 2;
    p.tok_frames = 5;
    p.text_dim = 64;
    p.text_layers = 1;
    p.text_heads = 2;
    p.text_ff = 128;
    p.ar_dim = 64;
    p.ar_layers = 2;
    p.ar_heads = 2;
    p.ar_steps = 20;
    p.ar_batch = 8;
    p.dit_dim = 64;
    p.dit_blocks = 2;
    p.dit_heads = 2;
    p.dit_steps = 20;
    p.dit_batch = 8;
    p.sample_steps = 8;
    p.seeds = 2;
  } else if (cuda) {
    p.mode = "cuda";
    p.train_clips = 2048;
    p.heldout_clips = 32;
    p.eval_starts = {0, 8, 16};
    p.tok_channels = 64;
    p.tok_steps = 4000;
    p.tok_batch = 16;
    p.text_dim = 256;
    p.text_layers = 4;
    p.ar_dim = 512;
    p.ar_layers = 8;
    p.ar_heads = 8;
    p.ar_steps = 6000;
    p.ar_batch = 32;
    p.dit_dim = 512;
    p.dit_blocks = 8;
    p.dit_heads = 8;
    p.dit_steps = 6000;
    p.dit_batch = 32;
    p.sample_steps = 35;
    p.seeds = 4;
  } else {
    p.mode = "full";
    // Sized for about 15 minutes on 2 free CPU cores (3D convolutions dominate: see docs/PERFORMANCE.md, demo
    // section); every knob is a --set, and --device cuda scales them up.
    p.train_clips = 128;
    p.heldout_clips = 8;
    p.seeds = 2;
    p.tok_channels = 16;
    p.tok_steps = 600;
    p.tok_batch = 4;
    p.tok_frames = 5;
    p.ar_dim = 96;
    p.ar_layers = 3;
    p.ar_heads = 4;
    p.ar_steps = 200;
    p.ar_batch = 8;
    p.dit_dim = 96;
    p.dit_blocks = 3;
    p.dit_heads = 4;
    p.dit_steps = 250;
    p.dit_batch = 16;
    p.sample_steps = 16;
  }
  for (const std::string& o : ctx.overrides) {
    std::vector<std::string> kv = absl::StrSplit(o, absl::MaxSplits('=', 1));
    if (kv.size() != 2) return absl::InvalidArgumentError(absl::StrCat("--set expects KNOB=VALUE, got '", o, "'"));
    WFM_RETURN_IF_ERROR(p.Set(kv[0], kv[1]));
  }
  return p;
}

nlohmann::json DemoPlan::ToJson() const {
  return {{"mode", mode},
          {"device", device},
          {"world", {{"size", size}, {"fps", fps}, {"clip_frames", clip_frames}, {"max_objects", max_objects},
                     {"train_clips", train_clips}, {"heldout_clips", heldout_clips}, {"train_seed", train_seed},
                     {"heldout_seed", heldout_seed}}},
          {"task", {{"context_frames", context_frames}, {"future_frames", future_frames},
                    {"eval_starts", eval_starts}, {"seeds", seeds}}},
          {"tokenizer", {{"channels", tok_channels}, {"cv_spatial", cv_spatial}, {"dv_spatial", dv_spatial},
                         {"patch", tok_patch}, {"latent_channels", tok_latent}, {"steps", tok_steps},
                         {"batch", tok_batch}, {"frames", tok_frames}, {"lr", tok_lr}, {"scaled_init", tok_scaled_init}, {"fsq_levels", fsq_levels}}},
          {"text_encoder", {{"d_model", text_dim}, {"layers", text_layers}, {"heads", text_heads},
                            {"d_ff", text_ff}, {"max_length", text_max_length}}},
          {"ar", {{"dim", ar_dim}, {"layers", ar_layers}, {"heads", ar_heads}, {"steps", ar_steps},
                  {"batch", ar_batch}, {"lr", ar_lr}, {"top_p", top_p}, {"temperature", temperature}}},
          {"diffusion", {{"dim", dit_dim}, {"blocks", dit_blocks}, {"heads", dit_heads}, {"patch", dit_patch},
                         {"steps", dit_steps},
                         {"batch", dit_batch}, {"lr", dit_lr}, {"sample_steps", sample_steps},
                         {"guidance", guidance}, {"residual", dit_residual}}}};
}

std::vector<DemoModel>& DemoModels() {
  static auto* models = new std::vector<DemoModel>();
  return *models;
}

world::WorldOptions DemoWorldOptions(const DemoPlan& plan) {
  world::WorldOptions o;
  o.width = o.height = plan.size;
  o.fps = plan.fps;
  o.num_frames = plan.clip_frames;
  o.max_objects = plan.max_objects;
  return o;
}

std::vector<EvalWindow> HeldoutWindows(const DemoPlan& plan) {
  std::vector<EvalWindow> windows;
  for (int i = 0; i < plan.heldout_clips; ++i) {
    world::Clip clip = world::SimulateClip(DemoWorldOptions(plan), plan.heldout_seed + i);
    for (int start : plan.eval_starts) {
      if (start + plan.window_frames() > clip.frames.size(0)) continue;
      EvalWindow w;
      w.name = absl::StrFormat("heldout_%06d@%d", i, start);
      w.start = start;
      w.context = clip.frames.narrow(0, start, plan.context_frames);
      w.future = clip.frames.narrow(0, start + plan.context_frames, plan.future_frames);
      w.clip = clip;
      windows.push_back(std::move(w));
    }
  }
  return windows;
}

std::string OutPath(const DemoContext& ctx, const std::string& rel) { return absl::StrCat(ctx.output_dir, "/", rel); }

absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> OpenDemoTokenizer(const DemoContext& ctx, const DemoPlan& plan,
                                                                         const std::string& name) {
  WFM_ASSIGN_OR_RETURN(tokenizer::TokenizerConfig config,
                       tokenizer::TokenizerConfig::FromPresetOrFile(OutPath(ctx, "tokenizer/" + name + ".json")));
  tokenizer::TokenizerOptions o;
  o.device = plan.device;
  o.dtype = "float32";
  return tokenizer::Tokenizer::Create(config, OutPath(ctx, "tokenizer/" + name + ".safetensors"), o);
}

double CpuSeconds() {
  struct rusage u;
  if (getrusage(RUSAGE_SELF, &u) != 0) return 0.0;
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + 1e-6 * (u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

absl::Status SaveClipSet(const ClipSet& set, const std::string& path) {
  if (!set.frames.defined() || set.frames.dim() != 5 || set.frames.size(0) != static_cast<int64_t>(set.captions.size()) ||
      set.names.size() != set.captions.size()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": clip set frames/captions/names disagree"));
  }
  nlohmann::json meta = {{"captions", set.captions}, {"names", set.names}};
  return WriteSafetensors(path, {{"frames", set.frames}}, {{"wfm.demo.clips", meta.dump()}});
}

absl::StatusOr<ClipSet> LoadClipSet(const std::string& path) {
  WFM_ASSIGN_OR_RETURN(std::shared_ptr<SafetensorsFile> f, SafetensorsFile::Open(path));
  ClipSet set;
  WFM_ASSIGN_OR_RETURN(set.frames, f->GetCopy("frames"), path);
  auto it = f->metadata().find("wfm.demo.clips");
  if (it == f->metadata().end()) return absl::InvalidArgumentError(absl::StrCat(path, ": no clip metadata"));
  try {
    nlohmann::json meta = nlohmann::json::parse(it->second);
    set.captions = meta.at("captions").get<std::vector<std::string>>();
    set.names = meta.at("names").get<std::vector<std::string>>();
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": bad clip metadata: ", e.what()));
  }
  if (set.frames.dim() != 5 || set.frames.scalar_type() != at::kByte ||
      set.frames.size(0) != static_cast<int64_t>(set.captions.size())) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": expected uint8 frames [N, T, H, W, 3] for ",
                                                   set.captions.size(), " captions"));
  }
  return set;
}

at::Tensor ToModel(const at::Tensor& frames) {
  // [B, T, H, W, 3] uint8 -> [B, 3, T, H, W] float in [-1, 1]
  return frames.permute({0, 4, 1, 2, 3}).to(at::kFloat).div(127.5).sub(1.0).contiguous();
}

at::Tensor FromModel(const at::Tensor& video) {
  // [B, 3, T, H, W] -> [B, T, H, W, 3] uint8
  return video.detach().to(at::kCPU, at::kFloat).add(1.0).mul(127.5).round().clamp(0, 255).to(at::kByte)
      .permute({0, 2, 3, 4, 1}).contiguous();
}

at::Tensor SampleWindows(const ClipSet& set, int64_t batch, int64_t frames, at::Generator& gen,
                         std::vector<int64_t>* clip_index, std::vector<int64_t>* start) {
  const int64_t n = set.frames.size(0), t = set.frames.size(1);
  TORCH_CHECK(frames <= t, "window of ", frames, " frames from clips of ", t);
  at::Tensor idx = at::randint(n, {batch}, gen, at::kLong);
  at::Tensor st = at::randint(t - frames + 1, {batch}, gen, at::kLong);
  std::vector<at::Tensor> out;
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t i = idx[b].item<int64_t>(), s = st[b].item<int64_t>();
    out.push_back(set.frames[i].narrow(0, s, frames));
    if (clip_index) clip_index->push_back(i);
    if (start) start->push_back(s);
  }
  return at::stack(out);
}

at::Tensor ClipWindows(const ClipSet& set, int64_t clip, const DemoPlan& plan) {
  std::vector<at::Tensor> windows;
  for (int64_t s = 0; s + plan.window_frames() <= set.frames.size(1); s += kWindowStride) {
    windows.push_back(set.frames[clip].narrow(0, s, plan.window_frames()));
  }
  return at::stack(windows);
}

absl::StatusOr<EncodedWindows> EncodeClipWindows(
    const ClipSet& set, const DemoPlan& plan, const std::string& label,
    const std::function<absl::StatusOr<at::Tensor>(const at::Tensor& window)>& encode) {
  WFM_ASSIGN_OR_RETURN(c10::Device device, ParseDevice(plan.device));
  at::NoGradGuard ng;
  const int64_t n = set.frames.size(0);
  EncodedWindows out;
  std::vector<at::Tensor> codes;
  Progress progress(label, n, "clips");
  for (int64_t i = 0; i < n; ++i) {
    const at::Tensor windows = ClipWindows(set, i, plan);  // uint8 [w, F, H, W, 3]
    for (int64_t k = 0; k < windows.size(0); ++k) {
      WFM_ASSIGN_OR_RETURN(at::Tensor c, encode(ToModel(windows.narrow(0, k, 1)).to(device)), label, ": clip ",
                           set.names[i], " window ", k);
      codes.push_back(c.cpu());  // [1, ...]
      out.clip_of.push_back(i);
    }
    progress.Add(1);
  }
  progress.Finish();
  if (codes.empty()) return absl::InvalidArgumentError(absl::StrCat(label, ": no training windows"));
  out.codes = at::cat(codes);  // [W, ...]
  return out;
}

absl::StatusOr<WindowBatch> SampleWindowBatch(const ClipSet& set, const EncodedWindows& windows, int64_t batch,
                                              text::TextEncoder& text_encoder, at::Generator& gen) {
  WindowBatch b;
  b.pick = at::randint(windows.codes.size(0), {batch}, gen, at::kLong);
  WFM_ASSIGN_OR_RETURN(b.text, text_encoder.Encode(PickCaptions(set, windows.clip_of, b.pick)));
  return b;
}

std::vector<std::string> PickCaptions(const ClipSet& set, const std::vector<int64_t>& clip_of, const at::Tensor& pick) {
  std::vector<std::string> captions;
  for (int64_t b = 0; b < pick.size(0); ++b) captions.push_back(set.captions[clip_of[pick[b].item<int64_t>()]]);
  return captions;
}

text::BuiltinTextEncoderOptions DemoTextEncoderOptions(const DemoPlan& plan, uint64_t seed) {
  text::BuiltinTextEncoderOptions o;
  o.d_model = plan.text_dim;
  o.num_layers = plan.text_layers;
  o.num_heads = plan.text_heads;
  o.d_kv = plan.text_dim / plan.text_heads;
  o.d_ff = plan.text_ff;
  o.dropout_rate = 0.0;
  o.max_length = plan.text_max_length;
  o.seed = seed;
  o.device = plan.device;
  o.pad_to_max_length = false;  // pad to the batch's longest caption
  return o;
}

absl::StatusOr<std::unique_ptr<text::TextEncoder>> LoadDemoTextEncoder(const std::string& path, const DemoPlan& plan) {
  text::LoadBuiltinOptions o;
  o.device = plan.device;
  o.trainable = false;
  o.pad_to_max_length = false;
  WFM_ASSIGN_OR_RETURN(std::unique_ptr<text::T5TextEncoder> encoder, text::LoadBuiltinTextEncoder(path, o));
  return std::unique_ptr<text::TextEncoder>(std::move(encoder));
}

absl::StatusOr<train::Metrics> TrainDemoModel(
    const DemoTrainOptions& options, const std::map<std::string, torch::nn::Module*>& modules,
    const std::function<absl::StatusOr<at::Tensor>(int64_t, train::Metrics*)>& step_fn) {
  std::vector<train::NamedParameter> params;
  for (const auto& [name, module] : modules) {
    for (const auto& item : module->named_parameters()) {
      if (item.value().requires_grad()) params.push_back({absl::StrCat(name, ".", item.key()), item.value()});
    }
  }
  train::AdamWOptions ao;
  ao.lr = options.lr;
  ao.beta1 = 0.9;
  ao.beta2 = 0.99;
  ao.weight_decay = 0.0;
  train::AdamW opt({train::ParamGroup{"all", std::move(params), 0.0, 1.0}}, ao);
  train::LrSchedule sched;
  sched.kind = train::LrSchedule::kCosine;
  sched.base_lr = options.lr;
  sched.warmup_steps = std::min(options.warmup, options.steps / 4 + 1);
  sched.total_steps = options.steps;
  sched.min_lr = 0.1 * options.lr;

  train::TrainerOptions to;
  to.output_dir = options.output_dir;
  to.total_steps = options.steps;
  to.log_every = 10;
  to.keep_checkpoints = 1;
  to.resume = false;  // the demo retrains from scratch on every run (its plan may have changed)
  to.progress_label = options.label;
  train::Trainer trainer(to);
  for (const auto& [name, module] : modules) trainer.items().modules[name] = module;
  trainer.items().optimizers["optimizer"] = &opt;
  WFM_ASSIGN_OR_RETURN(
      train::TrainerResult result,
      trainer.Run([&](int64_t step) -> absl::StatusOr<train::Metrics> {
        train::Metrics m;
        opt.ZeroGrad();
        WFM_ASSIGN_OR_RETURN(at::Tensor loss, step_fn(step, &m));
        m["loss"] = loss.item<double>();
        if (!std::isfinite(m["loss"])) return m;  // the trainer skips it (and stops after too many in a row)
        const double lr = sched.At(step);
        WFM_RETURN_IF_ERROR(CatchToStatus(options.label + " backward", [&]() {
          loss.backward();
          return absl::OkStatus();
        }));
        train::UpdateOptions uo;
        uo.lr = lr;
        uo.clip_norm = 1.0;
        WFM_ASSIGN_OR_RETURN(m["grad_norm"], train::ApplyGradients(opt, uo));
        m["lr"] = lr;
        return m;
      }),
      options.label);
  if (result.interrupted) return absl::CancelledError(absl::StrCat(options.label, ": interrupted"));
  return result.last_train;
}

std::string Fmt(double v, int digits) {
  if (!std::isfinite(v)) return "nan";
  return absl::StrFormat("%.*f", digits, v);
}

}  // namespace wfm::demo
