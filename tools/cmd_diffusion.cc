// `wfm diffusion ...`: the diffusion world model from the command line.
//   forward   run the DiT once on stored inputs (parity checks against the Python reference)
//   generate  Text2World / Video2World clips and long videos (autoregressive extension in latent space)
#include <filesystem>
#include <string>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cli.h"
#include "wfm/core/logging.h"
#include "wfm/core/progress.h"
#include "wfm/core/runtime.h"
#include "wfm/core/safetensors.h"
#include "wfm/core/status.h"
#include "wfm/core/text/text_encoder.h"
#include "wfm/core/video_io.h"
#include "wfm/diffusion/dit.h"
#include "wfm/diffusion/world.h"
#include "wfm/diffusion/world_model.h"
#include "wfm/tokenizer/tokenizer.h"

namespace wfm::cli {
namespace {

absl::StatusOr<c10::ScalarType> ParseDtype(const std::string& name) {
  if (name == "float32" || name == "fp32") return at::kFloat;
  if (name == "bfloat16" || name == "bf16") return at::kBFloat16;
  if (name == "float16" || name == "fp16") return at::kHalf;
  return absl::InvalidArgumentError(absl::StrCat("--dtype must be float32, bfloat16 or float16, got '", name, "'"));
}

absl::Status Forward(const std::string& config_path, const std::string& weights, const std::string& input,
                     const std::string& output, const std::string& device_name, const std::string& dtype_name,
                     double fps) {
  using namespace wfm::diffusion;
  WFM_ASSIGN_OR_RETURN(DiTConfig config, DiTConfig::FromPresetOrFile(config_path));
  WFM_ASSIGN_OR_RETURN(c10::Device device, ParseDevice(device_name));
  WFM_ASSIGN_OR_RETURN(c10::ScalarType dtype, ParseDtype(dtype_name));
  WFM_ASSIGN_OR_RETURN(TensorMap io, ReadSafetensors(input));
  auto get = [&](const char* name, bool required) -> absl::StatusOr<at::Tensor> {
    auto it = io.find(name);
    if (it == io.end()) {
      if (required) return absl::InvalidArgumentError(absl::StrCat(input, ": missing tensor '", name, "'"));
      return at::Tensor();
    }
    if (it->second.is_floating_point() && !at::isfinite(it->second).all().item<bool>())
      return absl::InvalidArgumentError(absl::StrCat(input, ": tensor '", name, "' has NaN or Inf values"));
    return it->second.to(device);
  };
  DiTInputs in;
  WFM_ASSIGN_OR_RETURN(in.x, get("x", true));
  WFM_ASSIGN_OR_RETURN(in.timesteps, get("timesteps", true));
  WFM_ASSIGN_OR_RETURN(in.crossattn_emb, get("crossattn_emb", true));
  WFM_ASSIGN_OR_RETURN(in.padding_mask, get("padding_mask", false));
  WFM_ASSIGN_OR_RETURN(in.condition_video_input_mask, get("condition_video_input_mask", config.video_conditioned()));
  WFM_ASSIGN_OR_RETURN(in.condition_video_augment_sigma, get("condition_video_augment_sigma", false));
  WFM_ASSIGN_OR_RETURN(at::Tensor fps_t, get("fps", false));
  in.fps = fps_t.defined() ? fps_t.flatten()[0].item<double>() : fps;

  WFM_ASSIGN_OR_RETURN(std::shared_ptr<DiffusionNetwork> net, MakeDiffusionNetwork(config));
  WFM_RETURN_IF_ERROR(LoadDiTWeights(*net, weights));
  WFM_RETURN_IF_ERROR(net->ValidateInputs(in), input);
  return CatchToStatus("DiT forward", [&]() -> absl::Status {
    net->to(device, dtype);
    net->eval();
    torch::NoGradGuard no_grad;
    const at::Tensor out = net->Forward(in).to(at::kFloat).cpu();
    WFM_LOG(INFO) << config.ReferenceClass() << " output " << c10::str(out.sizes()) << " -> " << output;
    return WriteSafetensors(output, {{"output", out}}, {{"network", config.video_conditioned() ? "v2w" : "t2w"}});
  });
}

int RunForward(int argc, char** argv) {
  std::string config, weights, input, output, device = "cpu", dtype = "float32";
  double fps = 24.0;
  ArgParser p("wfm diffusion forward",
              "Run the diffusion transformer once on stored inputs and write its output F(x) (before the EDM "
              "c_skip/c_out combination). The Video2World network is used when the config's in_channels is "
              "out_channels + 1.");
  p.Option("config", &config, "reference network config: a fixture json (its `config`) or the dict itself", true)
      .Option("weights", &weights, "network weights (safetensors; reference names, `net.` prefix allowed)", true)
      .Option("input", &input,
              "safetensors with x [B,C,T,H,W], timesteps [B] (c_noise), crossattn_emb [B,N,D], optional "
              "padding_mask [B,1,H',W'], condition_video_input_mask [B,1,T,H,W] (Video2World), fps",
              true)
      .Option("output", &output, "safetensors to write with `output` [B,C,T,H,W] (float32)", true)
      .Option("device", &device, "cpu | cuda | cuda:N | auto (default cpu)")
      .Option("dtype", &dtype, "float32 | bfloat16 | float16 (default float32)")
      .Option("fps", &fps, "frame rate for the RoPE time scale when the input has no `fps` (default 24)")
      .Epilog("example:\n  wfm diffusion forward --config ../shared/fixtures/diffusion/dit_t2w.json \\\n"
              "    --weights ../shared/fixtures/diffusion/dit_t2w.weights.safetensors \\\n"
              "    --input ../shared/fixtures/diffusion/dit_t2w.io.safetensors --output out.safetensors\n");
  if (auto rc = p.Parse(argc, argv)) return *rc;
  const absl::Status s = Forward(config, weights, input, output, device, dtype, fps);
  return s.ok() ? kExitOk : ReportError(s);
}

WFM_REGISTER_COMMAND("diffusion forward", "run the diffusion DiT once on stored inputs", RunForward);

// ---------------------------------------------------------------------------------------------------------------
// generate

struct GenerateArgs {
  std::string config, weights, tokenizer_config, tokenizer_weights, text_encoder, latent_stats;
  std::string input_video, prompt, negative_prompt, prompt_embedding, output, save_latents;
  std::string sampler = "res", device = "auto", dtype = "auto";
  int64_t num_input_frames = 9, num_frames = 121, clip_frames = 0, overlap_frames = 9;
  int64_t height = 0, width = 0, num_samples = 1, seed = 0;
  int steps = 35;
  double guidance = 7.0, fps = 24.0, s_churn = 0.0;
  bool random_init = false, prompt_given = false;
};

// "out.mp4" -> "out_1.mp4" for sample 1 of several.
std::string SamplePath(const std::string& out, int64_t i, int64_t n) {
  if (n == 1) return out;
  const std::filesystem::path p(out);
  return (p.parent_path() / (p.stem().string() + "_" + std::to_string(i) + p.extension().string())).string();
}

// Text conditioning: precomputed embeddings (safetensors `crossattn_emb` [1|B, N, D], optional
// `negative_crossattn_emb`) or the prompt through the text encoder (diffusion::EncodePrompt).
absl::StatusOr<diffusion::TextConditioning> LoadText(const GenerateArgs& a, diffusion::WorldModels& m) {
  const c10::Device device = m.model->net().device();
  if (a.prompt_embedding.empty())
    return diffusion::EncodePrompt(m.text_encoder.get(), m.model->config(), a.prompt, a.negative_prompt, device);
  diffusion::TextConditioning text;
  WFM_ASSIGN_OR_RETURN(TensorMap t, ReadSafetensors(a.prompt_embedding));
  auto it = t.find("crossattn_emb");
  if (it == t.end())
    return absl::InvalidArgumentError(absl::StrCat(a.prompt_embedding, ": missing tensor 'crossattn_emb'"));
  text.crossattn_emb = it->second.to(device, at::kFloat);
  if (text.crossattn_emb.dim() == 2) text.crossattn_emb = text.crossattn_emb.unsqueeze(0);
  if (t.count("negative_crossattn_emb")) {
    text.negative_crossattn_emb = t.at("negative_crossattn_emb").to(device, at::kFloat);
    if (text.negative_crossattn_emb.dim() == 2) text.negative_crossattn_emb = text.negative_crossattn_emb.unsqueeze(0);
  }
  return text;
}

absl::Status Generate(const GenerateArgs& a) {
  using namespace wfm::diffusion;
  // ---- models (DiT, CV tokenizer, text encoder, latent statistics) ----
  WorldModelFiles files;
  files.config = a.config;
  files.weights = a.weights;
  files.tokenizer_config = a.tokenizer_config;
  files.tokenizer_weights = a.tokenizer_weights;
  files.text_encoder = a.text_encoder;
  files.latent_stats = a.latent_stats;
  files.device = a.device;
  files.random_init = a.random_init;
  WFM_ASSIGN_OR_RETURN(Integrator integrator, ParseIntegrator(a.sampler));
  WFM_ASSIGN_OR_RETURN(WorldModels models, LoadWorldModels(files));
  const DiTConfig& cfg = models.model->config();
  if (a.dtype != "auto") {
    WFM_ASSIGN_OR_RETURN(c10::ScalarType dtype, ParseDtype(a.dtype));
    models.model->net().to(dtype);
  }
  if (!a.input_video.empty() && !cfg.video_conditioned())
    return absl::InvalidArgumentError("--input-video needs a Video2World network (config in_channels = 17)");
  WFM_ASSIGN_OR_RETURN(TextConditioning text, LoadText(a, models));

  WorldOptions o;
  o.num_input_frames = a.num_input_frames;
  o.num_frames = a.num_frames;
  o.height = a.height;
  o.width = a.width;
  o.clip_frames = a.clip_frames;
  o.overlap_frames = a.overlap_frames;
  o.generation.num_steps = a.steps;
  o.generation.integrator = integrator;
  o.generation.guidance = a.guidance;
  o.generation.seed = static_cast<uint64_t>(a.seed);
  o.generation.num_samples = a.num_samples;
  o.generation.fps = a.fps;
  o.generation.s_churn = a.s_churn;
  at::Tensor frames;  // uint8 [T, H, W, 3]; resized to cover the output size by GenerateWorld
  if (!a.input_video.empty()) {
    WFM_ASSIGN_OR_RETURN(frames, DecodeVideo(a.input_video));
  }
  // Progress over every sampling step of every clip (clips of the DiT's length overlapping by --overlap-frames).
  const int64_t tc = models.tokenizer->config().temporal_compression;
  const int64_t clip = a.clip_frames > 0 ? LatentFramesFor(a.clip_frames, tc)
                                         : std::min<int64_t>(cfg.max_latent_frames(), LatentFramesFor(121, tc));
  const int64_t total = LatentFramesFor(a.num_frames, tc), step = clip - LatentFramesFor(a.overlap_frames, tc);
  const int64_t clips = total <= clip || step < 1 ? 1 : 1 + (total - clip + step - 1) / step;
  Progress progress("diffusion", clips * a.steps, "steps");
  o.generation.callback = [&](const StepInfo&) { progress.Add(1); };
  WFM_LOG(INFO) << "generating " << a.num_samples << " x " << a.num_frames << " frames, " << clips << " clip(s), "
                << IntegratorName(integrator) << " " << a.steps << " steps, guidance " << a.guidance;
  WFM_ASSIGN_OR_RETURN(WorldResult r, GenerateWorld(*models.model, *models.tokenizer, models.stats, frames, text, o));
  progress.Finish();
  if (!a.save_latents.empty())
    WFM_RETURN_IF_ERROR(WriteSafetensors(a.save_latents, {{"latent", r.latents.cpu()}}));
  for (int64_t i = 0; i < a.num_samples; ++i) {
    const std::string path = SamplePath(a.output, i, a.num_samples);
    EncodeOptions e;
    e.fps = a.fps;
    WFM_RETURN_IF_ERROR(WriteVideo(path, r.videos[i], e));
    WFM_LOG(INFO) << "wrote " << path << " (" << r.height << "x" << r.width << ")";
  }
  return absl::OkStatus();
}

int RunGenerate(int argc, char** argv) {
  GenerateArgs a;
  ArgParser p("wfm diffusion generate",
              "Generate videos with the diffusion world model: Text2World from a prompt, Video2World from the last "
              "frames of an input video, and videos longer than one clip by autoregressive extension in latent "
              "space (each clip conditioned on the last --overlap-frames of the previous one; pixels are never "
              "re-encoded). Frame counts must be 1 + k*8 for the 8x temporal tokenizer (1, 9, 17, ..., 121, ...).");
  p.Option("config", &a.config, "DiT config json (reference keys; Video2World when in_channels is 17) or a preset", true)
      .Option("weights", &a.weights, "DiT weights (safetensors / model.pt)")
      .Flag("random-init", &a.random_init, "random DiT (and tokenizer, without --tokenizer-weights): smoke tests")
      .Option("tokenizer-config", &a.tokenizer_config, "tokenizer config json or preset (e.g. CV8x8x8)", true)
      .Option("tokenizer-weights", &a.tokenizer_weights, "tokenizer weights (file or directory)")
      .Option("latent-stats", &a.latent_stats, "latent mean/std (mean_std.pt); default: beside the tokenizer weights")
      .Option("text-encoder", &a.text_encoder, "text encoder: a T5 directory or a built-in encoder .safetensors")
      .Option("prompt", &a.prompt, "the text prompt")
      .Option("negative-prompt", &a.negative_prompt, "negative prompt for guidance (needs a text encoder)")
      .Option("prompt-embedding", &a.prompt_embedding,
              "precomputed text embeddings: safetensors with crossattn_emb [N, D] (+ negative_crossattn_emb)")
      .Option("input-video", &a.input_video, "condition on this video's last --num-input-frames frames")
      .Option("num-input-frames", &a.num_input_frames, "condition frames: 1 (image) or 9 (default), or 1 + k*8")
      .Option("num-frames", &a.num_frames, "frames to generate in total, input included (default 121)")
      .Option("clip-frames", &a.clip_frames, "frames per clip (default: 121 or what the DiT holds)")
      .Option("overlap-frames", &a.overlap_frames, "frames each extension clip is conditioned on (default 9)")
      .Option("height", &a.height, "output height (multiple of 16; default 704 or the DiT's maximum)")
      .Option("width", &a.width, "output width (multiple of 16; default 1280 or the DiT's maximum)")
      .Option("guidance", &a.guidance, "classifier-free guidance: cond + g (cond - uncond) (default 7)")
      .Option("steps", &a.steps, "sampling steps (default 35)")
      .Option("sampler", &a.sampler, "res (= Cosmos 2ab, default) | heun | euler | 2mid")
      .Option("s-churn", &a.s_churn, "EDM stochastic sampling strength (default 0: deterministic)")
      .Option("seed", &a.seed, "random seed; sample i uses seed + i (default 0)")
      .Option("num-samples", &a.num_samples, "videos to generate (default 1)")
      .Option("fps", &a.fps, "frame rate (RoPE time scale and output; default 24)")
      .Option("device", &a.device, "cpu | cuda | auto (default auto)")
      .Option("dtype", &a.dtype, "auto (bfloat16 on CUDA) | float32 | bfloat16")
      .Option("save-latents", &a.save_latents, "also write the generated latents (safetensors `latent`)")
      .Option("output", &a.output, "output video (sample i of several: NAME_i.EXT)", true)
      .Epilog("example (smoke test):\n  wfm diffusion generate --config dit.json --random-init --tokenizer-config "
              "CV8x8x8 --num-frames 17 --height 64 --width 64 --steps 4 --output out.mp4\n");
  if (auto rc = p.Parse(argc, argv)) return *rc;
  a.prompt_given = p.Given("prompt");
  if (!a.negative_prompt.empty() && a.text_encoder.empty())
    return ReportError(absl::InvalidArgumentError("--negative-prompt needs --text-encoder"), true);
  const absl::Status s = Generate(a);
  return s.ok() ? kExitOk : ReportError(s);
}

WFM_REGISTER_COMMAND("diffusion generate", "generate videos with the diffusion world model", RunGenerate);

}  // namespace
}  // namespace wfm::cli
