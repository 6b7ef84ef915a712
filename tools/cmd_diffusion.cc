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
// `negative_crossattn_emb`) or a text encoder.
absl::StatusOr<diffusion::TextConditioning> LoadText(const GenerateArgs& a, const diffusion::DiTConfig& cfg,
                                                     c10::Device device) {
  diffusion::TextConditioning text;
  if (!a.prompt_embedding.empty()) {
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
  if (!a.text_encoder.empty()) {
    text::LoadTextEncoderOptions lo;
    lo.device = device.str();
    WFM_ASSIGN_OR_RETURN(std::unique_ptr<text::TextEncoder> enc, text::LoadTextEncoder(a.text_encoder, lo));
    if (enc->dim() != cfg.crossattn_emb_channels)
      return absl::InvalidArgumentError(absl::StrCat("the text encoder ", a.text_encoder, " gives ", enc->dim(),
                                                     "-dim embeddings but the DiT's crossattn_emb_channels is ",
                                                     cfg.crossattn_emb_channels));
    WFM_ASSIGN_OR_RETURN(text::TextEmbeddings pos, enc->Encode({a.prompt}), a.text_encoder);
    text.crossattn_emb = pos.embeddings.to(device, at::kFloat);
    if (!a.negative_prompt.empty()) {
      WFM_ASSIGN_OR_RETURN(text::TextEmbeddings neg, enc->Encode({a.negative_prompt}), a.text_encoder);
      text.negative_crossattn_emb = neg.embeddings.to(device, at::kFloat);
    }
    return text;
  }
  if (a.prompt_given && !a.prompt.empty())
    return absl::InvalidArgumentError(
        "a --prompt needs a text encoder: pass --text-encoder DIR (T5) or --prompt-embedding FILE with "
        "precomputed embeddings (crossattn_emb [N, D])");
  // No prompt: the unconditional model (zero text embedding, as the conditioner's dropped text).
  text.crossattn_emb = at::zeros({1, 1, cfg.crossattn_emb_channels}, at::TensorOptions().device(device));
  return text;
}

absl::Status Generate(const GenerateArgs& a) {
  using namespace wfm::diffusion;
  // ---- networks ----
  WFM_ASSIGN_OR_RETURN(DiTConfig cfg, DiTConfig::FromPresetOrFile(a.config));
  WFM_ASSIGN_OR_RETURN(c10::Device device, ParseDevice(a.device));
  c10::ScalarType dtype = device.is_cuda() ? at::kBFloat16 : at::kFloat;
  if (a.dtype != "auto") {
    WFM_ASSIGN_OR_RETURN(dtype, ParseDtype(a.dtype));
  }
  WFM_ASSIGN_OR_RETURN(Integrator integrator, ParseIntegrator(a.sampler));
  if (a.weights.empty() && !a.random_init)
    return absl::InvalidArgumentError("--weights is required (or --random-init for a smoke test)");
  WFM_ASSIGN_OR_RETURN(tokenizer::TokenizerConfig tcfg, tokenizer::TokenizerConfig::FromPresetOrFile(a.tokenizer_config));
  if (tcfg.name != "CV")
    return absl::InvalidArgumentError(absl::StrCat("the diffusion model needs a continuous video tokenizer (CV), got ",
                                                    tcfg.name));
  if (tcfg.latent_channels != cfg.latent_channels())
    return absl::InvalidArgumentError(absl::StrCat(
        "latent shape mismatch: the tokenizer gives ", tcfg.latent_channels, " latent channels but the DiT expects ",
        cfg.latent_channels(), " (", a.tokenizer_config, " and ", a.config, " do not belong together)"));
  const int64_t S = tcfg.spatial_compression, TC = tcfg.temporal_compression;

  // ---- sizes and frame counts ----
  const int64_t align = S * cfg.patch_spatial;
  int64_t height = a.height, width = a.width;
  if (height <= 0) height = std::min<int64_t>(704, cfg.max_img_h * S) / align * align;
  if (width <= 0) width = std::min<int64_t>(1280, cfg.max_img_w * S) / align * align;
  if (height % align || width % align || height <= 0 || width <= 0)
    return absl::InvalidArgumentError(absl::StrCat("--height/--width ", height, "x", width,
                                                   " must be positive multiples of ", align,
                                                   " (tokenizer ", S, "x x DiT patch ", cfg.patch_spatial, ")"));
  if (height / S > cfg.max_img_h || width / S > cfg.max_img_w)
    return absl::InvalidArgumentError(absl::StrCat(height, "x", width, " exceeds the DiT's maximum of ",
                                                   cfg.max_img_h * S, "x", cfg.max_img_w * S, " pixels"));
  WFM_RETURN_IF_ERROR(CheckPixelFrameCount(a.num_frames, TC, "--num-frames"));
  const int64_t max_clip = std::min<int64_t>(cfg.max_latent_frames(), LatentFramesFor(121, TC));
  int64_t clip_latents = a.clip_frames > 0 ? 0 : max_clip;
  if (a.clip_frames > 0) {
    WFM_RETURN_IF_ERROR(CheckPixelFrameCount(a.clip_frames, TC, "--clip-frames"));
    clip_latents = LatentFramesFor(a.clip_frames, TC);
    if (clip_latents > cfg.max_latent_frames())
      return absl::InvalidArgumentError(absl::StrCat("--clip-frames ", a.clip_frames, " exceeds the DiT's maximum of ",
                                                     PixelFramesFor(cfg.max_latent_frames(), TC), " frames"));
  }
  const int64_t total_latents = LatentFramesFor(a.num_frames, TC);
  int64_t overlap = 0;
  if (total_latents > clip_latents) {
    WFM_RETURN_IF_ERROR(CheckPixelFrameCount(a.overlap_frames, TC, "--overlap-frames"));
    overlap = LatentFramesFor(a.overlap_frames, TC);
  }
  int64_t cond_latents = 0;
  if (!a.input_video.empty()) {
    WFM_RETURN_IF_ERROR(CheckPixelFrameCount(a.num_input_frames, TC, "--num-input-frames"));
    cond_latents = LatentFramesFor(a.num_input_frames, TC);
    if (!cfg.video_conditioned())
      return absl::InvalidArgumentError("--input-video needs a Video2World network (config in_channels = 17)");
    if (a.num_input_frames >= a.num_frames)
      return absl::InvalidArgumentError(absl::StrCat("--num-frames ", a.num_frames,
                                                     " must exceed --num-input-frames ", a.num_input_frames));
  }

  WFM_ASSIGN_OR_RETURN(TextConditioning text, LoadText(a, cfg, device));

  // ---- models ----
  WFM_ASSIGN_OR_RETURN(std::shared_ptr<DiffusionNetwork> net, MakeDiffusionNetwork(cfg));
  if (!a.weights.empty()) WFM_RETURN_IF_ERROR(LoadDiTWeights(*net, a.weights));
  else WFM_LOG(WARNING) << "--random-init: the DiT has random weights (smoke test; the video is noise)";
  net->to(device, dtype);
  tokenizer::TokenizerOptions topt;
  topt.device = device.str();
  std::unique_ptr<tokenizer::Tokenizer> tok;
  if (!a.tokenizer_weights.empty()) {
    WFM_ASSIGN_OR_RETURN(tok, tokenizer::Tokenizer::Create(tcfg, a.tokenizer_weights, topt));
  } else if (a.random_init) {
    tokenizer::TokenizerNetwork tnet(tcfg);
    tnet->to(device);
    tnet->eval();
    WFM_ASSIGN_OR_RETURN(tok, tokenizer::Tokenizer::FromNetwork(tnet, topt));
  } else {
    return absl::InvalidArgumentError("--tokenizer-weights is required (or --random-init)");
  }
  // Latent statistics: --latent-stats, else mean_std.pt beside the tokenizer weights, else identity.
  LatentStats stats = LatentStats::Identity(cfg.latent_channels());
  std::string stats_path = a.latent_stats;
  if (stats_path.empty() && !a.tokenizer_weights.empty()) {
    namespace fs = std::filesystem;
    const fs::path tw(a.tokenizer_weights);
    const fs::path dir = fs::is_directory(tw) ? tw : tw.parent_path();
    for (const char* name : {"mean_std.pt", "mean_std.safetensors"})
      if (fs::exists(dir / name)) stats_path = (dir / name).string();
  }
  if (!stats_path.empty()) {
    WFM_ASSIGN_OR_RETURN(stats, LatentStats::Load(stats_path, cfg.latent_channels()));
    WFM_LOG(INFO) << "latent statistics from " << stats_path;
  } else {
    WFM_LOG(WARNING) << "no latent statistics (--latent-stats / mean_std.pt): latents are used unnormalised";
  }
  std::unique_ptr<Parametrization> parametrization = DefaultParametrization(cfg);
  const double sigma_data = parametrization->sigma_data();

  // ---- Video2World input ----
  VideoConditioning video;
  if (!a.input_video.empty()) {
    DecodeOptions d;
    d.width = static_cast<int>(width);
    d.height = static_cast<int>(height);
    WFM_ASSIGN_OR_RETURN(at::Tensor frames, DecodeVideo(a.input_video, d));  // [T, H, W, 3]
    if (frames.size(0) < a.num_input_frames)
      return absl::InvalidArgumentError(absl::StrCat(a.input_video, " has ", frames.size(0),
                                                     " frames, fewer than --num-input-frames ", a.num_input_frames));
    // The clip continues the input: its last num_input_frames frames are the condition.
    frames = frames.narrow(0, frames.size(0) - a.num_input_frames, a.num_input_frames);
    const at::Tensor x = FramesToModelInput(frames).unsqueeze(0);  // [1, 3, T, H, W]
    WFM_ASSIGN_OR_RETURN(tokenizer::EncodeResult enc, tok->Encode(x), a.input_video);
    video.latent = stats.Normalize(enc.latent.to(device, at::kFloat)) * sigma_data;
    video.num_frames = cond_latents;
  }

  // ---- sampling ----
  DiffusionWorldModel wm(net, std::move(parametrization));
  GenerateOptions o;
  o.num_steps = a.steps;
  o.integrator = integrator;
  o.guidance = a.guidance;
  o.seed = static_cast<uint64_t>(a.seed);
  o.num_samples = a.num_samples;
  o.fps = a.fps;
  o.s_churn = a.s_churn;
  const int64_t first = std::min(clip_latents, total_latents);
  const int64_t clips = total_latents <= first ? 1 : 1 + (total_latents - first + (clip_latents - overlap) - 1) /
                                                         (clip_latents - overlap);
  Progress progress("diffusion", clips * a.steps, "steps");
  o.callback = [&](const StepInfo&) { progress.Add(1); };
  WFM_LOG(INFO) << "generating " << a.num_samples << " x " << a.num_frames << " frames " << height << "x" << width
                << " (latent " << total_latents << "x" << height / S << "x" << width / S << ", " << clips
                << " clip(s)), " << IntegratorName(integrator) << " " << a.steps << " steps, guidance " << a.guidance;
  WFM_ASSIGN_OR_RETURN(at::Tensor x,
                       wm.GenerateLong(total_latents, clip_latents, std::max<int64_t>(overlap, 1),
                                       {cfg.latent_channels(), height / S, width / S}, text, video, o));
  progress.Finish();
  const at::Tensor latent = stats.Denormalize(x / sigma_data);  // raw tokenizer latent [B, C, T, h, w]
  if (!a.save_latents.empty())
    WFM_RETURN_IF_ERROR(WriteSafetensors(a.save_latents, {{"latent", latent.cpu()}}));

  // ---- decode and write ----
  tokenizer::ClipGeometry geometry;
  geometry.frames = a.num_frames;
  geometry.height = height;
  geometry.width = width;
  for (int64_t i = 0; i < a.num_samples; ++i) {
    WFM_ASSIGN_OR_RETURN(at::Tensor rec, tok->Decode(latent.narrow(0, i, 1), geometry), "decoding sample ", i);
    const std::string path = SamplePath(a.output, i, a.num_samples);
    EncodeOptions e;
    e.fps = a.fps;
    WFM_RETURN_IF_ERROR(WriteVideo(path, ModelOutputToFrames(rec[0]), e));
    WFM_LOG(INFO) << "wrote " << path;
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
