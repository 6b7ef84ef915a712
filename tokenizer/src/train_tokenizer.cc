// The tokenizer training driver behind `wfm tokenizer train` (see tokenizer/train.h): data, model, losses,
// optional discriminator, the shared Trainer loop, evaluation with the EMA weights, grids, curves and export.
#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <filesystem>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "wfm/core/file_util.h"
#include "wfm/core/logging.h"
#include "wfm/core/runtime.h"
#include "wfm/core/status.h"
#include "wfm/core/train/checkpoint.h"
#include "wfm/core/train/distributed.h"
#include "wfm/core/train/ema.h"
#include "wfm/core/train/optimizer.h"
#include "wfm/core/train/trainer.h"
#include "wfm/core/train/visualize.h"
#include "wfm/core/video_io.h"
#include "wfm/tokenizer/train.h"
#include "wfm/tokenizer/weights.h"

namespace wfm::tokenizer {
namespace fs = std::filesystem;
namespace {

absl::Status ValidateOptions(const TokenizerTrainOptions& o) {
  if (o.inputs.empty()) return absl::InvalidArgumentError("no training inputs (videos or directories)");
  if (o.output_dir.empty()) return absl::InvalidArgumentError("an output directory is required");
  if (!o.config.is_video())
    return absl::UnimplementedError("tokenizer training supports the video tokenizers (CV, DV); got " + o.config.name);
  WFM_RETURN_IF_ERROR(o.config.Validate());
  const int64_t tc = o.config.time_factor(), sc = o.config.spatial_compression;
  if ((o.data.num_frames - 1) % tc != 0)
    return absl::InvalidArgumentError(absl::StrCat("--frames must be 1 + k*", tc, " for a ", tc, "x temporal tokenizer (",
                                                   1 + tc, ", ", 1 + 2 * tc, ", ", 1 + 4 * tc, ", ...), got ",
                                                   o.data.num_frames));
  if (o.data.width % sc != 0 || o.data.height % sc != 0)
    return absl::InvalidArgumentError(absl::StrCat("clip size ", o.data.width, "x", o.data.height,
                                                   " must be a multiple of the spatial compression ", sc));
  if (o.steps < 1 || o.batch_size < 1 || o.grad_accum < 1)
    return absl::InvalidArgumentError("steps, batch size and gradient accumulation must be >= 1");
  if (o.lr <= 0) return absl::InvalidArgumentError("the learning rate must be > 0");
  return absl::OkStatus();
}

// Batch PSNR in dB of float [-1, 1] tensors (no quantization; a cheap training-time signal).
double BatchPsnr(const at::Tensor& x, const at::Tensor& rec) {
  const double mse = (x - rec.to(x.scalar_type())).square().mean().item<double>();
  return 10.0 * std::log10(4.0 / std::max(mse, 1e-12));
}

}  // namespace

absl::StatusOr<TokenizerTrainResult> TrainTokenizer(const TokenizerTrainOptions& options) {
  WFM_RETURN_IF_ERROR(ValidateOptions(options));
  WFM_ASSIGN_OR_RETURN(c10::Device device, ParseDevice(options.device));
  WFM_ASSIGN_OR_RETURN(c10::ScalarType precision, train::ParsePrecision(options.precision, device));
  WFM_ASSIGN_OR_RETURN(std::shared_ptr<train::ProcessGroup> group, train::ProcessGroup::Create(options.distributed));
  const bool main = group->is_main();
  const std::string out = options.output_dir;
  WFM_RETURN_IF_ERROR(MakeDirs(out));

  // ---- data ----
  WFM_ASSIGN_OR_RETURN(std::unique_ptr<train::VideoClipDataset> data,
                       train::VideoClipDataset::Open(options.inputs, options.data));
  if (main) WFM_LOG(INFO) << "data: " << data->Summary();
  WFM_ASSIGN_OR_RETURN(std::vector<train::VideoClip> val_clips, data->ValidationClips(options.val_clips));

  // ---- model ----
  at::manual_seed(options.seed);
  TokenizerNetwork net(options.config);
  if (!options.init_weights.empty()) {
    WFM_ASSIGN_OR_RETURN(LoadReport loaded, LoadTokenizerWeights(*net, options.init_weights), "--init-weights");
    if (main) WFM_LOG(INFO) << "fine-tuning: " << loaded.Summary();
  }
  net->to(device);
  net->train();
  WFM_RETURN_IF_ERROR(train::BroadcastParameters(*group, *net));
  train::AdamW opt = train::AdamW::ForModule(
      *net, {.lr = options.lr, .beta1 = options.beta1, .beta2 = options.beta2, .weight_decay = options.weight_decay});
  train::Ema ema(*net, options.ema_decay);
  WFM_ASSIGN_OR_RETURN(train::LrSchedule::Kind kind, train::LrSchedule::ParseKind(options.schedule));
  const train::LrSchedule sched{kind, options.lr, options.warmup_steps, options.steps, options.min_lr};

  const bool adversarial = options.loss.adversarial > 0;
  PatchDiscriminator3d disc{nullptr};
  std::unique_ptr<train::AdamW> disc_opt;
  if (adversarial) {
    disc = PatchDiscriminator3d(options.disc_channels);
    disc->to(device);
    WFM_RETURN_IF_ERROR(train::BroadcastParameters(*group, *disc));
    disc_opt = std::make_unique<train::AdamW>(train::AdamW::ForModule(
        *disc, {.lr = options.disc_lr, .beta1 = 0.5, .beta2 = 0.9, .weight_decay = options.weight_decay}));
  }
  if (main) {
    int64_t params = 0;
    for (const auto& p : net->parameters()) params += p.numel();
    WFM_LOG(INFO) << "model: " << options.config.name << " " << options.config.temporal_compression << "x"
                  << options.config.spatial_compression << "x" << options.config.spatial_compression
                  << ", channels " << options.config.channels << ", " << params << " parameters; device "
                  << device.str() << ", " << c10::toString(precision) << ", " << group->world_size() << " process(es)";
  }

  // The config file next to the weights makes the output directory directly usable by encode/decode/eval.
  const std::string config_path = (fs::path(out) / "config.json").string();
  nlohmann::json run_config = {{"tokenizer", options.config.ToJson()},
                               {"command_line", options.command_line},
                               {"steps", options.steps},
                               {"batch_size", options.batch_size * group->world_size() * options.grad_accum},
                               {"lr", options.lr},
                               {"frames", options.data.num_frames},
                               {"size", {options.data.height, options.data.width}},
                               {"fps", options.data.fps}};
  if (main) {
    WFM_RETURN_IF_ERROR(WriteFileAtomically(config_path, options.config.ToJsonString() + "\n"));
    WFM_RETURN_IF_ERROR(WriteFileAtomically((fs::path(out) / "train_config.json").string(), run_config.dump(2) + "\n"));
  }

  // ---- the loop ----
  train::ClipBatchLoader loader(*data, options.batch_size, options.prefetch, group->rank(), group->world_size());
  train::Trainer trainer(train::TrainerOptions::From(options, out,
                                                     options.batch_size * options.grad_accum * group->world_size(),
                                                     "train tokenizer"),
                         group);
  trainer.items().modules["model"] = net.get();
  trainer.items().emas["model_ema"] = &ema;
  trainer.items().optimizers["optimizer"] = &opt;
  if (adversarial) {
    trainer.items().modules["discriminator"] = disc.get();
    trainer.items().optimizers["discriminator_optimizer"] = disc_opt.get();
  }
  trainer.set_config(run_config);
  trainer.AddState(
      "data", [&] { return loader.SaveState(); }, [&](const nlohmann::json& j) { return loader.LoadState(j); });

  MetricOptions metric_opts;  // TokenBench style: uint8, Gaussian SSIM
  const std::string samples_dir = (fs::path(out) / "samples").string();
  TokenizerTrainResult result;
  auto evaluate = [&](int64_t step) -> absl::StatusOr<train::Metrics> {
    train::Ema::ScopedSwap swap(ema);
    WFM_ASSIGN_OR_RETURN(EvalSummary s, EvaluateClips(*net, val_clips, metric_opts, device, /*show_progress=*/false));
    result.val_psnr = s.mean_psnr;
    result.val_ssim = s.mean_ssim;
    // Curves are refreshed at every evaluation, so they can be watched while training runs.
    train::WriteTrainingCurves(trainer.metrics_path(), (fs::path(out) / "curves.svg").string(),
                               {"loss", "l1", "psnr", "ssim", "grad_norm", "lr"})
        .IgnoreError();
    return train::Metrics{{"psnr", s.mean_psnr}, {"ssim", s.mean_ssim}, {"eval_s", s.seconds}};
  };
  trainer.OnEval(evaluate);
  trainer.OnSample([&](int64_t step) -> absl::Status {
    train::Ema::ScopedSwap swap(ema);
    net->eval();
    std::vector<at::Tensor> rows;
    for (size_t i = 0; i < std::min<size_t>(4, val_clips.size()); ++i) {
      at::Tensor rec, truth;
      WFM_RETURN_IF_ERROR(ScoreClip(*net, val_clips[i].frames, metric_opts, device, &rec, &truth).status());
      rows.push_back(truth);
      rows.push_back(rec);
    }
    net->train();
    return train::WriteImageGrid(absl::StrFormat("%s/recon_%08d.png", samples_dir, step), rows);
  });

  WFM_ASSIGN_OR_RETURN(const int64_t start, trainer.Resume());
  if (start > 0 && main) WFM_LOG(INFO) << "resuming at step " << start << " of " << options.steps;
  train::GradAccumulation accumulation(options.grad_accum);

  auto step_fn = [&](int64_t step) -> absl::StatusOr<train::Metrics> {
    const double lr = sched.At(step);
    const bool adv_on = adversarial && step >= options.loss.adversarial_start;
    opt.ZeroGrad();
    std::vector<std::pair<at::Tensor, at::Tensor>> for_disc;  // (x, rec) per micro-batch
    std::map<std::string, double> sums;
    if (adversarial)
      for (auto& p : disc->parameters()) p.set_requires_grad(false);
    for (int m = 0; m < accumulation.micro_steps(); ++m) {
      WFM_ASSIGN_OR_RETURN(at::Tensor x, loader.Next());
      x = x.to(device);  // [B, 3, T, H, W]
      at::Tensor rec, mean, logvar;
      {
        train::AutocastGuard autocast(device, precision);
        auto outp = net->forward(x);
        rec = outp.reconstruction;
        mean = outp.encoded.mean;
        logvar = outp.encoded.logvar;
      }
      rec = rec.to(at::kFloat);
      LossTerms terms = ReconstructionLoss(x, rec, options.loss, mean, logvar);
      at::Tensor total = terms.total;
      if (adv_on) {
        train::AutocastGuard autocast(device, precision);
        at::Tensor g = GeneratorHingeLoss(disc->forward(rec).to(at::kFloat));
        terms.parts["g_adv"] = g.detach();
        total = total + options.loss.adversarial * g;
      }
      (total * accumulation.loss_scale()).backward();
      accumulation.Advance();
      sums["loss"] += total.item<double>();
      for (const auto& [k, v] : terms.parts) sums[k] += v.item<double>();
      sums["psnr_train"] += BatchPsnr(x, rec.detach());
      if (adv_on) for_disc.emplace_back(x, rec.detach());
    }
    WFM_ASSIGN_OR_RETURN(double gnorm, train::ApplyGradients(opt, {.lr = lr, .clip_norm = options.clip_norm,
                                                                    .group = group.get(), .ema = &ema}));
    train::Metrics m;
    for (const auto& [k, v] : sums) m[k] = v / accumulation.micro_steps();
    m["grad_norm"] = gnorm;
    m["lr"] = lr;
    if (adv_on) {
      for (auto& p : disc->parameters()) p.set_requires_grad(true);
      disc_opt->ZeroGrad();
      double d_sum = 0;
      for (const auto& [x, rec] : for_disc) {
        train::AutocastGuard autocast(device, precision);
        at::Tensor d = DiscriminatorHingeLoss(disc->forward(x).to(at::kFloat), disc->forward(rec).to(at::kFloat));
        (d * accumulation.loss_scale()).backward();
        d_sum += d.item<double>();
      }
      const double disc_lr = options.disc_lr * lr / options.lr;
      WFM_ASSIGN_OR_RETURN(double dnorm, train::ApplyGradients(*disc_opt, {.lr = disc_lr, .clip_norm = options.clip_norm,
                                                                           .group = group.get()}));
      m["d_loss"] = d_sum / for_disc.size();
      m["d_grad_norm"] = dnorm;
    }
    return m;
  };

  WFM_ASSIGN_OR_RETURN(train::TrainerResult tr, trainer.Run(step_fn));
  result.steps = tr.end_step;
  result.train_seconds = tr.seconds;
  if (tr.last_eval.count("psnr")) {
    result.val_psnr = tr.last_eval.at("psnr");
    result.val_ssim = tr.last_eval.at("ssim");
  }

  // ---- export ----
  if (main) {
    result.weights_path = (fs::path(out) / "model_ema.safetensors").string();
    result.config_path = config_path;
    {
      train::Ema::ScopedSwap swap(ema);
      WFM_RETURN_IF_ERROR(SaveTokenizerWeights(*net, result.weights_path));
    }
    WFM_RETURN_IF_ERROR(SaveTokenizerWeights(*net, (fs::path(out) / "model.safetensors").string()));
    train::WriteTrainingCurves(trainer.metrics_path(), (fs::path(out) / "curves.svg").string(),
                               {"loss", "l1", "psnr", "ssim", "grad_norm", "lr"})
        .IgnoreError();
    nlohmann::json summary = {{"steps", result.steps},
                              {"train_seconds_this_run", result.train_seconds},
                              {"interrupted", tr.interrupted},
                              {"val_psnr", result.val_psnr},
                              {"val_ssim", result.val_ssim},
                              {"val_clips", val_clips.size()},
                              {"weights", result.weights_path},
                              {"config", config_path}};
    WFM_RETURN_IF_ERROR(WriteFileAtomically((fs::path(out) / "summary.json").string(), summary.dump(2) + "\n"));
  }
  return result;
}

}  // namespace wfm::tokenizer
