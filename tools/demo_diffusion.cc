// Demo stage "diffusion": the diffusion world model on the CV tokenizer's continuous latents. Every curated training
// clip is cut into prediction windows (17 frames at starts 0 and 16), each encoded on its own (latent [16, 5, 8, 8]);
// per-channel latent statistics normalise them (x0 = sigma_data * (z - mean) / std). By default (plan.dit_residual)
// the latent frames after the given ones are the change from the last given latent frame, normalised with their own
// statistics (DemoLatentSpace): the denoiser's prior mean is "hold the last given latent frame" and it learns the
// motion on top. A small Cosmos-Predict1 Video2World DiT (wfm/diffusion, EDM) and a built-in text encoder are
// trained jointly with the reference's denoising loss (diffusion::DiffusionTrainingLoss: the first two latent frames
// given and kept exact, the loss on the generated frames, text dropout). Video2World = DiffusionWorldModel::Generate
// conditioned on the encoded given frames, then the CV decoder; a second row ("diffusion_change") applies the decoded
// change to the last given frame instead. Saves OUTPUT/diffusion/{model.safetensors, config.json,
// latent_stats.safetensors, residual_stats.safetensors (residual only), text_encoder.safetensors}.
#include <ATen/ATen.h>

#include <chrono>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "demo_common.h"
#include "wfm/core/checkpoint.h"
#include "wfm/core/file_util.h"
#include "wfm/core/runtime.h"
#include "wfm/core/safetensors.h"
#include "wfm/core/status.h"
#include "wfm/core/text/builtin_encoder.h"
#include "wfm/diffusion/dit.h"
#include "wfm/diffusion/training.h"
#include "wfm/diffusion/world_model.h"
#include "wfm/tokenizer/tokenizer.h"

namespace wfm::demo {
namespace {

// The demo's diffusion space: x = sigma_data * normalised latent [B, C, T, h, w]. With the residual
// parametrisation (plan.dit_residual) the latent frames from `given` on are first replaced by their change from
// the last given latent frame and normalised with the statistics of that change: the denoiser's prior mean is
// then "the last given latent frame, unchanged" (copy-last in latent space) and what it learns is the motion.
struct DemoLatentSpace {
  diffusion::LatentStats stats;     // of the absolute latents (all frames)
  diffusion::LatentStats residual;  // of the change from the last given frame; undefined: no residual
  int64_t given = 0;                // given (condition) latent frames
  double sigma_data = 0.5;

  at::Tensor ToDiffusion(const at::Tensor& z) const {
    at::Tensor x = stats.Normalize(z);  // [B, C, T, h, w]
    if (residual.mean.defined()) {
      const int64_t future = z.size(2) - given;
      x.narrow(2, given, future).copy_(residual.Normalize(z.narrow(2, given, future) - z.narrow(2, given - 1, 1)));
    }
    return x.mul(sigma_data);
  }
  at::Tensor FromDiffusion(const at::Tensor& x) const {
    at::Tensor z = stats.Denormalize(x.div(sigma_data));  // [B, C, T, h, w]
    if (residual.mean.defined()) {
      const int64_t future = x.size(2) - given;
      const at::Tensor change = residual.Denormalize(x.narrow(2, given, future).div(sigma_data));
      z.narrow(2, given, future).copy_(change + z.narrow(2, given - 1, 1));
    }
    return z;
  }
};

// Per-channel mean and std over dims {0, 2, 3, 4} of [W, C, t, h, w].
diffusion::LatentStats ChannelStats(const at::Tensor& z) {
  diffusion::LatentStats s;
  s.mean = z.mean({0, 2, 3, 4});                  // [C]
  s.std = z.std({0, 2, 3, 4}).clamp_min(1e-3);  // [C]
  return s;
}

absl::StatusOr<diffusion::DiTConfig> DemoDiTConfig(const DemoPlan& plan) {
  WFM_ASSIGN_OR_RETURN(diffusion::DiTConfig c, diffusion::DiTConfig::Preset("tiny-video2world"));
  c.model_channels = plan.dit_dim;
  c.num_blocks = plan.dit_blocks;
  c.num_heads = plan.dit_heads;
  c.adaln_lora_dim = std::max(16, plan.dit_dim / 4);
  c.crossattn_emb_channels = plan.text_dim;
  c.patch_spatial = plan.dit_patch;
  c.max_img_h = c.max_img_w = std::max(16, plan.size / plan.cv_spatial);
  c.max_frames = 16;
  c.base_fps = plan.fps;
  WFM_RETURN_IF_ERROR(c.Validate());
  return c;
}

absl::Status RunDiffusionStage(DemoContext& ctx) {
  WFM_ASSIGN_OR_RETURN(const DemoPlan plan, DemoPlan::For(ctx));
  WFM_ASSIGN_OR_RETURN(c10::Device device, ParseDevice(plan.device));
  WFM_ASSIGN_OR_RETURN(ClipSet train, LoadClipSet(OutPath(ctx, "data/train_clips.safetensors")));
  WFM_ASSIGN_OR_RETURN(std::unique_ptr<tokenizer::Tokenizer> cv, OpenDemoTokenizer(ctx, plan, "cv"));

  // Encode the training windows.
  WFM_ASSIGN_OR_RETURN(EncodedWindows windows,
                       EncodeClipWindows(train, plan, "diffusion encode",
                                         [&](const at::Tensor& w) -> absl::StatusOr<at::Tensor> {
                                           WFM_ASSIGN_OR_RETURN(tokenizer::EncodeResult enc, cv->Encode(w));
                                           return enc.latent;
                                         }));
  const at::Tensor& z = windows.codes;  // [W, C, t, h, w]
  const int64_t condition_frames = 1 + (plan.context_frames - 1) / cv->config().temporal_compression;
  DemoLatentSpace space;
  space.stats = ChannelStats(z);
  space.given = condition_frames;
  if (plan.dit_residual) {
    const int64_t future = z.size(2) - condition_frames;
    space.residual = ChannelStats(z.narrow(2, condition_frames, future) - z.narrow(2, condition_frames - 1, 1));
  }
  WFM_ASSIGN_OR_RETURN(diffusion::DiTConfig config, DemoDiTConfig(plan));
  WFM_ASSIGN_OR_RETURN(std::shared_ptr<diffusion::DiffusionNetwork> net, diffusion::MakeDiffusionNetwork(config));
  at::manual_seed(40);
  net->InitializeWeights();
  net->to(device);
  const std::unique_ptr<diffusion::Parametrization> param = diffusion::DefaultParametrization(config);
  space.sigma_data = param->sigma_data();
  const at::Tensor x0_all = space.ToDiffusion(z);  // diffusion space
  WFM_ASSIGN_OR_RETURN(std::unique_ptr<text::T5TextEncoder> text_encoder,
                       text::CreateBuiltinTextEncoder(DemoTextEncoderOptions(plan, 41)));
  int64_t net_params = 0;
  for (const at::Tensor& p : net->parameters()) net_params += p.numel();

  diffusion::DiffusionTrainingOptions lo;
  lo.text_dropout = 0.1;
  // Without given frames the residual has no reference frame: every sample is Video2World then.
  lo.condition_dropout = plan.dit_residual ? 0.0 : 0.1;
  lo.min_condition_frames = lo.max_condition_frames = condition_frames;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(42);
  const auto t0 = std::chrono::steady_clock::now();
  const DemoTrainOptions to{"diffusion train", OutPath(ctx, "diffusion/train"), plan.dit_steps, plan.dit_lr};
  WFM_ASSIGN_OR_RETURN(
      train::Metrics m,
      TrainDemoModel(to, {{"model", net.get()}, {"text_encoder", text_encoder->module().get()}},
                     [&](int64_t, train::Metrics* metrics) -> absl::StatusOr<at::Tensor> {
                       WFM_ASSIGN_OR_RETURN(WindowBatch b,
                                            SampleWindowBatch(train, windows, plan.dit_batch, *text_encoder, gen));
                       diffusion::TrainingBatch batch{x0_all.index_select(0, b.pick).to(device), b.text.embeddings,
                                                      plan.fps};
                       diffusion::LossOutput out = diffusion::DiffusionTrainingLoss(*net, *param, batch, lo, gen);
                       (*metrics)["mse"] = out.mse;
                       return out.loss;
                     }));
  const double loss = m["loss"], mse = m["mse"];
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const std::string dir = ctx.StageDir("diffusion");
  net->to(at::kCPU);
  WFM_RETURN_IF_ERROR(SaveModule(*net, dir + "/model.safetensors"));
  WFM_RETURN_IF_ERROR(WriteFileAtomically(dir + "/config.json", config.ToJson().dump(2) + "\n"));
  WFM_RETURN_IF_ERROR(
      WriteSafetensors(dir + "/latent_stats.safetensors", {{"mean", space.stats.mean}, {"std", space.stats.std}}));
  const std::string residual_path = dir + "/residual_stats.safetensors";
  if (plan.dit_residual) {
    WFM_RETURN_IF_ERROR(
        WriteSafetensors(residual_path, {{"mean", space.residual.mean}, {"std", space.residual.std}}));
  } else {
    std::filesystem::remove(residual_path);
  }
  WFM_RETURN_IF_ERROR(text::SaveBuiltinTextEncoder(*text_encoder, dir + "/text_encoder.safetensors"));
  ctx.Table("diffusion world model (denoising, training windows)",
            {"parameters", "windows", "latent", "steps", "loss", "x0 mse", "train s"},
            {{absl::StrFormat("%.2fM", net_params / 1e6), absl::StrCat(z.size(0)),
              absl::StrFormat("%dx%dx%dx%d", z.size(1), z.size(2), z.size(3), z.size(4)), absl::StrCat(plan.dit_steps),
              Fmt(loss, 4), Fmt(mse, 4), Fmt(seconds, 1)}});
  ctx.summary["diffusion"] = {{"parameters", net_params}, {"windows", z.size(0)}, {"steps", plan.dit_steps},
                              {"residual", plan.dit_residual != 0}, {"train_loss", loss}, {"train_x0_mse", mse},
                              {"train_seconds", seconds}};
  return absl::OkStatus();
}

// Video2World with the trained model: the given frames' latent conditions the first latent frames.
class DiffusionPredictor : public FuturePredictor {
 public:
  absl::StatusOr<at::Tensor> Predict(const at::Tensor& context, const std::string& caption, int64_t horizon,
                                     const std::vector<uint64_t>& seeds) override {
    at::NoGradGuard ng;
    const int64_t frames = context.size(0) + horizon;
    const int64_t tc = cv->config().temporal_compression;
    if ((frames - 1) % tc != 0 || (context.size(0) - 1) % tc != 0) {
      return absl::InvalidArgumentError(absl::StrCat("frame counts must be 1 + k*", tc));
    }
    WFM_ASSIGN_OR_RETURN(text::TextEmbeddings emb, text_encoder->Encode({caption}));
    WFM_ASSIGN_OR_RETURN(tokenizer::EncodeResult enc, cv->Encode(ToModel(context.unsqueeze(0))));
    const int64_t t_lat = 1 + (frames - 1) / tc;
    if (enc.latent.size(2) != space.given) {
      return absl::InvalidArgumentError(absl::StrCat(context.size(0), " given frames make ", enc.latent.size(2),
                                                      " latent frames; the model was trained with ", space.given));
    }
    const at::Tensor given = space.ToDiffusion(enc.latent.cpu());  // [1, C, tc, h, w]
    at::Tensor latent = at::zeros({1, given.size(1), t_lat, given.size(3), given.size(4)});
    latent.narrow(2, 0, given.size(2)).copy_(given);
    diffusion::TextConditioning text{emb.embeddings};
    diffusion::VideoConditioning video{latent.to(device), given.size(2)};
    diffusion::GenerateOptions o;
    o.num_steps = plan.sample_steps;
    o.guidance = plan.guidance;
    o.seed = seeds.empty() ? 0 : seeds[0];
    o.num_samples = static_cast<int64_t>(seeds.size());
    o.fps = plan.fps;
    WFM_ASSIGN_OR_RETURN(at::Tensor x, model->Generate({latent.size(1), t_lat, latent.size(3), latent.size(4)}, text,
                                                       video, o));  // [S, C, t, h, w]
    const at::Tensor z = space.FromDiffusion(x.cpu());
    tokenizer::ClipGeometry g;
    g.frames = frames;
    g.height = context.size(1);
    g.width = context.size(2);
    WFM_ASSIGN_OR_RETURN(at::Tensor video_out, cv->Decode(z, g));  // [S, 3, frames, H, W]
    if (decode_change) {
      // The predicted change, rendered by the decoder: decode(prediction) - decode(the given latent frames with the
      // last one held), added to the last given frame. Where the model predicts no change this is exactly
      // copy-last; the tokenizer's reconstruction error of what stays put cancels.
      at::Tensor held = z.narrow(0, 0, 1).clone();  // [1, C, t, h, w]
      const int64_t k = space.given, future = held.size(2) - space.given;
      held.narrow(2, k, future).copy_(held.narrow(2, k - 1, 1).expand({-1, -1, future, -1, -1}));
      WFM_ASSIGN_OR_RETURN(at::Tensor held_out, cv->Decode(held, g));  // [1, 3, frames, H, W]
      const at::Tensor last = ToModel(context.narrow(0, context.size(0) - 1, 1).unsqueeze(0));  // [1, 3, 1, H, W]
      video_out = (last + video_out - held_out).clamp(-1, 1);
    }
    return FromModel(video_out).narrow(1, context.size(0), horizon).contiguous();  // [S, horizon, H, W, 3]
  }

  DemoPlan plan;
  bool decode_change = false;  // output = last given frame + decoded change (see Predict)
  c10::Device device = at::kCPU;
  std::unique_ptr<diffusion::DiffusionWorldModel> model;
  DemoLatentSpace space;
  std::unique_ptr<tokenizer::Tokenizer> cv;
  std::unique_ptr<text::TextEncoder> text_encoder;
};

absl::StatusOr<std::unique_ptr<FuturePredictor>> LoadDiffusionPredictor(const DemoContext& ctx, const DemoPlan& plan) {
  const std::string dir = OutPath(ctx, "diffusion");
  if (!std::filesystem::exists(dir + "/model.safetensors")) {
    return absl::NotFoundError(dir + "/model.safetensors: not trained");
  }
  auto p = std::make_unique<DiffusionPredictor>();
  p->plan = plan;
  WFM_ASSIGN_OR_RETURN(p->device, ParseDevice(plan.device));
  WFM_ASSIGN_OR_RETURN(diffusion::DiTConfig config, diffusion::DiTConfig::FromJsonFile(dir + "/config.json"));
  WFM_ASSIGN_OR_RETURN(std::shared_ptr<diffusion::DiffusionNetwork> net, diffusion::MakeDiffusionNetwork(config));
  WFM_RETURN_IF_ERROR(diffusion::LoadDiTWeights(*net, dir + "/model.safetensors"));
  net->to(p->device);
  net->eval();
  p->model = std::make_unique<diffusion::DiffusionWorldModel>(net, diffusion::DefaultParametrization(config));
  WFM_ASSIGN_OR_RETURN(p->space.stats, diffusion::LatentStats::Load(dir + "/latent_stats.safetensors",
                                                                    config.latent_channels()));
  // The residual statistics are there when the model was trained with the residual parametrisation.
  if (std::filesystem::exists(dir + "/residual_stats.safetensors")) {
    WFM_ASSIGN_OR_RETURN(p->space.residual, diffusion::LatentStats::Load(dir + "/residual_stats.safetensors",
                                                                         config.latent_channels()));
  }
  p->space.sigma_data = p->model->parametrization().sigma_data();
  WFM_ASSIGN_OR_RETURN(p->cv, OpenDemoTokenizer(ctx, plan, "cv"));
  p->space.given = 1 + (plan.context_frames - 1) / p->cv->config().temporal_compression;
  WFM_ASSIGN_OR_RETURN(p->text_encoder, LoadDemoTextEncoder(dir + "/text_encoder.safetensors", plan));
  return p;
}

const DemoModelRegistrar kDiffusionModel({"diffusion", "diffusion (CV latents)", LoadDiffusionPredictor});
// The same model and samples, its decoded change applied to the last given frame.
const DemoModelRegistrar kDiffusionChangeModel(
    {"diffusion_change", "diffusion, decoded change on the last frame",
     [](const DemoContext& ctx, const DemoPlan& plan) -> absl::StatusOr<std::unique_ptr<FuturePredictor>> {
       WFM_ASSIGN_OR_RETURN(std::unique_ptr<FuturePredictor> p, LoadDiffusionPredictor(ctx, plan));
       static_cast<DiffusionPredictor*>(p.get())->decode_change = true;
       return p;
     }});

}  // namespace

WFM_REGISTER_DEMO_STAGE(70, "diffusion", "train the diffusion world model on CV latents (+ the built-in text encoder)",
                        RunDiffusionStage);

}  // namespace wfm::demo
