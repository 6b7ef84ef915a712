// Demo stage "tokenizer": trains the two small causal video tokenizers the world models use, in the
// Cosmos-Tokenize1 causal layout (factorized causal 3D convolutions, Haar patching, mid-block attention; 4x8x8 by
// default, --set cv_spatial/dv_spatial=4 for 4x4x4) at a reduced width: CV (16 continuous latent channels, for
// the diffusion model) and DV (FSQ codes, the AR model's vocabulary). Loss: L1 reconstruction on random windows of the curated world clips (the reference adds
// perceptual/flow/adversarial terms for real video; the embedded world does not need them), after scaling the
// skip path to the data (tokenizer::ScaleSkipPathToData; --set tok_scaled_init=0 keeps the default
// initialisation). Each is scored on
// the held-out clips (PSNR/SSIM of reconstructions) and saved as OUTPUT/tokenizer/{cv,dv}.safetensors with the
// config in the file's metadata and beside it as {cv,dv}.json.
#include <ATen/ATen.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "demo_common.h"
#include "wfm/core/file_util.h"
#include "wfm/core/logging.h"
#include "wfm/core/progress.h"
#include "wfm/core/runtime.h"
#include "wfm/core/status.h"
#include "wfm/core/world.h"
#include "wfm/tokenizer/config.h"
#include "wfm/tokenizer/network.h"
#include "wfm/tokenizer/train.h"
#include "wfm/tokenizer/weights.h"

namespace wfm::demo {

tokenizer::TokenizerConfig DemoTokenizerConfig(const DemoPlan& plan, bool discrete) {
  tokenizer::TokenizerConfig c = tokenizer::BaseConfig(discrete ? "DV" : "CV");
  c.channels = plan.tok_channels;
  c.channels_mult = {2, 4};
  c.num_res_blocks = 1;
  c.attn_resolutions = {};
  c.resolution = plan.size;
  c.patch_size = plan.tok_patch;
  c.spatial_compression = discrete ? plan.dv_spatial : plan.cv_spatial;
  c.temporal_compression = 4;
  c.latent_channels = plan.tok_latent;
  c.z_channels = plan.tok_latent;
  if (discrete) {
    c.levels = plan.fsq_levels;
    c.embedding_dim = static_cast<int64_t>(plan.fsq_levels.size());
  }
  return c;
}

namespace {

double PsnrU8(const at::Tensor& a, const at::Tensor& b) {
  const double mse = (a.to(at::kDouble) - b.to(at::kDouble)).pow(2).mean().item<double>();
  return mse <= 1e-12 ? 99.0 : 10.0 * std::log10(255.0 * 255.0 / mse);
}

struct TokResult {
  double psnr = 0, loss = 0, seconds = 0, cpu_seconds = 0;
  int64_t parameters = 0;
};

absl::StatusOr<TokResult> TrainTokenizer(DemoContext& ctx, const DemoPlan& plan, const ClipSet& train,
                                         const at::Tensor& heldout, bool discrete) {
  const std::string tag = discrete ? "dv" : "cv";
  const tokenizer::TokenizerConfig config = DemoTokenizerConfig(plan, discrete);
  WFM_RETURN_IF_ERROR(config.Validate());
  WFM_ASSIGN_OR_RETURN(c10::Device device, ParseDevice(plan.device));
  const auto t0 = std::chrono::steady_clock::now();
  const double c0 = CpuSeconds();
  at::manual_seed(discrete ? 11 : 10);
  tokenizer::TokenizerNetwork net(config);
  net->to(device);
  if (plan.tok_scaled_init) {  // see tokenizer::ScaleSkipPathToData; its own windows, so training draws the same
    at::Generator init_gen = at::make_generator<at::CPUGeneratorImpl>(discrete ? 31 : 30);
    WFM_RETURN_IF_ERROR(tokenizer::ScaleSkipPathToData(
        *net, ToModel(SampleWindows(train, 8, plan.tok_frames, init_gen)).to(device)));
  }
  TokResult r;
  for (const auto& p : net->parameters()) r.parameters += p.numel();
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(discrete ? 21 : 20);
  const DemoTrainOptions to{absl::StrCat("tokenizer ", discrete ? "DV" : "CV"),
                            OutPath(ctx, absl::StrCat("tokenizer/train_", tag)), plan.tok_steps, plan.tok_lr};
  auto l1_step = [&](int64_t, train::Metrics*) -> absl::StatusOr<at::Tensor> {
    at::Tensor x = ToModel(SampleWindows(train, plan.tok_batch, plan.tok_frames, gen));
    if (at::rand({1}, gen).item<double>() < 0.5) x = x.flip({4});  // mirrored world
    x = x.to(device);                                              // [B, 3, F, H, W]
    return (net->forward(x).reconstruction - x).abs().mean();      // L1
  };
  WFM_ASSIGN_OR_RETURN(train::Metrics m, TrainDemoModel(to, {{"model", net.get()}}, l1_step));
  r.loss = m["loss"];

  // Held-out reconstruction of whole windows.
  net->eval();
  {
    at::NoGradGuard ng;
    at::Tensor x = ToModel(heldout).to(device);
    at::Tensor rec = net->forward(x).reconstruction;
    r.psnr = PsnrU8(FromModel(rec), heldout);
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.cpu_seconds = CpuSeconds() - c0;
  net->to(at::kCPU);
  const std::string dir = ctx.StageDir("tokenizer");
  WFM_RETURN_IF_ERROR(tokenizer::SaveTokenizerWeights(*net, absl::StrCat(dir, "/", tag, ".safetensors")));
  WFM_RETURN_IF_ERROR(WriteFileAtomically(absl::StrCat(dir, "/", tag, ".json"), config.ToJsonString()));
  return r;
}

absl::Status RunTokenizerStage(DemoContext& ctx) {
  WFM_ASSIGN_OR_RETURN(const DemoPlan plan, DemoPlan::For(ctx));
  WFM_ASSIGN_OR_RETURN(ClipSet train, LoadClipSet(OutPath(ctx, "data/train_clips.safetensors")));
  // Held-out windows straight from the simulator (the truth, never curated or compressed).
  std::vector<at::Tensor> held;
  for (const EvalWindow& w : HeldoutWindows(plan)) held.push_back(at::cat({w.context, w.future}));
  at::Tensor heldout = at::stack(held);  // [N, 17, H, W, 3]
  std::vector<std::vector<std::string>> rows;
  for (bool discrete : {false, true}) {
    WFM_ASSIGN_OR_RETURN(TokResult r, TrainTokenizer(ctx, plan, train, heldout, discrete));
    const tokenizer::TokenizerConfig config = DemoTokenizerConfig(plan, discrete);
    const std::string name = absl::StrCat(discrete ? "DV" : "CV", config.temporal_compression, "x",
                                          config.spatial_compression, "x", config.spatial_compression);
    rows.push_back({name, absl::StrFormat("%.2fM", r.parameters / 1e6), absl::StrCat(plan.tok_steps), Fmt(r.loss, 4),
                    Fmt(r.psnr), Fmt(r.seconds, 1), Fmt(r.cpu_seconds, 1)});
    ctx.summary["tokenizer"][discrete ? "dv" : "cv"] = {{"name", name}, {"parameters", r.parameters},
                                                       {"steps", plan.tok_steps}, {"train_l1", r.loss},
                                                       {"heldout_psnr", r.psnr}, {"seconds", r.seconds},
                                                       {"cpu_seconds", r.cpu_seconds}};
  }
  ctx.Table("tokenizers (held-out reconstruction)",
            {"tokenizer", "params", "steps", "train L1", "PSNR dB", "wall s", "CPU s"}, rows);
  return absl::OkStatus();
}

}  // namespace

WFM_REGISTER_DEMO_STAGE(50, "tokenizer", "train the small CV and DV video tokenizers", RunTokenizerStage);

}  // namespace wfm::demo
