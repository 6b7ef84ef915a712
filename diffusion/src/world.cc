// Video2World / Text2World in one call: models from files, prompt encoding, frame resizing, encoding, sampling
// and decoding around DiffusionWorldModel (see world.h).
#include "wfm/diffusion/world.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <vector>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include "absl/strings/str_cat.h"
#include "wfm/core/logging.h"
#include "wfm/core/runtime.h"
#include "wfm/core/status.h"
#include "wfm/core/text/text_encoder.h"
#include "wfm/core/video_io.h"
#include "wfm/tokenizer/network.h"
#include "wfm/tokenizer/tokenizer.h"

namespace wfm::diffusion {
namespace {

using Clock = std::chrono::steady_clock;
double Seconds(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// The first statistics file beside the tokenizer weights or the DiT weights (Cosmos keeps mean_std.pt with the
// tokenizer; `wfm diffusion train` / the demo write latent_stats.safetensors beside the DiT).
std::string FindLatentStats(const WorldModelFiles& f) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (const std::string& w : {f.tokenizer_weights, f.weights}) {
    if (w.empty()) continue;
    const fs::path p(w);
    const fs::path dir = fs::is_directory(p, ec) ? p : p.parent_path();
    for (const char* name : {"mean_std.pt", "mean_std.safetensors", "latent_stats.safetensors"})
      if (fs::exists(dir / name, ec)) return (dir / name).string();
  }
  return "";
}

}  // namespace

WorldModels::WorldModels() = default;
WorldModels::WorldModels(WorldModels&&) noexcept = default;
WorldModels& WorldModels::operator=(WorldModels&&) noexcept = default;
WorldModels::~WorldModels() = default;

absl::StatusOr<WorldModels> LoadWorldModels(const WorldModelFiles& f) {
  WFM_ASSIGN_OR_RETURN(DiTConfig cfg, DiTConfig::FromPresetOrFile(f.config));
  WFM_ASSIGN_OR_RETURN(c10::Device device, ParseDevice(f.device));
  WFM_ASSIGN_OR_RETURN(tokenizer::TokenizerConfig tcfg, tokenizer::TokenizerConfig::FromPresetOrFile(f.tokenizer_config));
  if (tcfg.name != "CV")
    return absl::InvalidArgumentError(absl::StrCat("the diffusion model needs a continuous video tokenizer (CV), got ",
                                                    tcfg.name, " (", f.tokenizer_config, ")"));
  if (tcfg.latent_channels != cfg.latent_channels())
    return absl::InvalidArgumentError(absl::StrCat(
        "latent shape mismatch: the tokenizer gives ", tcfg.latent_channels, " latent channels but the DiT expects ",
        cfg.latent_channels(), " (", f.tokenizer_config, " and ", f.config, " do not belong together)"));
  if (f.weights.empty() && !f.random_init)
    return absl::InvalidArgumentError("the DiT weights are required (or random_init / --random-init for a smoke test)");
  if (f.tokenizer_weights.empty() && !f.random_init)
    return absl::InvalidArgumentError("the tokenizer weights are required (or random_init / --random-init)");

  WorldModels m;
  WFM_ASSIGN_OR_RETURN(std::shared_ptr<DiffusionNetwork> net, MakeDiffusionNetwork(cfg));
  if (!f.weights.empty()) WFM_RETURN_IF_ERROR(LoadDiTWeights(*net, f.weights));
  else WFM_LOG(WARNING) << "random DiT weights (smoke test; the video is noise)";
  WFM_RETURN_IF_ERROR(CatchToStatus("moving the DiT to " + device.str(), [&]() -> absl::Status {
    net->to(device, device.is_cuda() ? at::kBFloat16 : at::kFloat);
    net->eval();
    return absl::OkStatus();
  }));
  m.model = std::make_unique<DiffusionWorldModel>(net, DefaultParametrization(cfg));

  tokenizer::TokenizerOptions topt;
  topt.device = device.str();
  if (!f.tokenizer_weights.empty()) {
    WFM_ASSIGN_OR_RETURN(m.tokenizer, tokenizer::Tokenizer::Create(tcfg, f.tokenizer_weights, topt));
  } else {
    tokenizer::TokenizerNetwork tnet(tcfg);
    tnet->to(device);
    tnet->eval();
    WFM_ASSIGN_OR_RETURN(m.tokenizer, tokenizer::Tokenizer::FromNetwork(tnet, topt));
  }
  if (!f.text_encoder.empty()) {
    text::LoadTextEncoderOptions lo;
    lo.device = device.str();
    WFM_ASSIGN_OR_RETURN(m.text_encoder, text::LoadTextEncoder(f.text_encoder, lo));
    if (m.text_encoder->dim() != cfg.crossattn_emb_channels)
      return absl::InvalidArgumentError(absl::StrCat("the text encoder ", f.text_encoder, " gives ",
                                                     m.text_encoder->dim(), "-dim embeddings but the DiT's "
                                                     "crossattn_emb_channels is ", cfg.crossattn_emb_channels));
  }
  const std::string stats = f.latent_stats.empty() ? FindLatentStats(f) : f.latent_stats;
  if (!stats.empty()) {
    WFM_ASSIGN_OR_RETURN(m.stats, LatentStats::Load(stats, cfg.latent_channels()));
    WFM_LOG(INFO) << "latent statistics from " << stats;
  } else {
    m.stats = LatentStats::Identity(cfg.latent_channels());
    WFM_LOG(WARNING) << "no latent statistics (mean_std.pt / latent_stats.safetensors): latents are used unnormalised";
  }
  return m;
}

absl::StatusOr<TextConditioning> EncodePrompt(text::TextEncoder* encoder, const DiTConfig& cfg,
                                              const std::string& prompt, const std::string& negative,
                                              c10::Device device) {
  TextConditioning text;
  if (encoder == nullptr) {
    if (!prompt.empty() || !negative.empty())
      return absl::InvalidArgumentError(
          "a prompt needs a text encoder: pass --text-encoder DIR (T5) or a built-in encoder .safetensors "
          "(or --prompt-embedding FILE with precomputed embeddings)");
    // No prompt: the unconditional model (zero text embedding, as the conditioner's dropped text).
    text.crossattn_emb = at::zeros({1, 1, cfg.crossattn_emb_channels}, at::TensorOptions().device(device));
    return text;
  }
  if (encoder->dim() != cfg.crossattn_emb_channels)
    return absl::InvalidArgumentError(absl::StrCat("the text encoder ", encoder->model_id(), " gives ",
                                                   encoder->dim(), "-dim embeddings but the DiT's "
                                                   "crossattn_emb_channels is ", cfg.crossattn_emb_channels));
  WFM_ASSIGN_OR_RETURN(text::TextEmbeddings pos, encoder->Encode({prompt}), "encoding the prompt");
  text.crossattn_emb = pos.embeddings.to(device, at::kFloat);
  if (!negative.empty()) {
    WFM_ASSIGN_OR_RETURN(text::TextEmbeddings neg, encoder->Encode({negative}), "encoding the negative prompt");
    text.negative_crossattn_emb = neg.embeddings.to(device, at::kFloat);
  }
  return text;
}

absl::StatusOr<WorldResult> GenerateWorld(DiffusionWorldModel& model, tokenizer::Tokenizer& tok,
                                          const LatentStats& stats, const at::Tensor& frames,
                                          const TextConditioning& text, const WorldOptions& o) {
  const DiTConfig& cfg = model.config();
  const tokenizer::TokenizerConfig& tcfg = tok.config();
  auto bad = [](auto&&... parts) { return absl::InvalidArgumentError(absl::StrCat(parts...)); };
  if (tcfg.latent_channels != cfg.latent_channels())
    return bad("latent shape mismatch: the tokenizer gives ", tcfg.latent_channels,
               " latent channels but the DiT expects ", cfg.latent_channels());
  WFM_RETURN_IF_ERROR(stats.Validate(cfg.latent_channels()), "latent statistics");
  const int64_t S = tcfg.spatial_compression, TC = tcfg.temporal_compression;
  const bool has_video = frames.defined() && frames.numel() > 0;
  if (has_video) {
    if (frames.dim() != 4 || frames.size(3) != 3 || frames.scalar_type() != at::kByte)
      return bad("input frames must be uint8 [T, H, W, 3], got ", c10::str(frames.sizes()));
    if (!cfg.video_conditioned())
      return bad("input frames need a Video2World network (config in_channels = latent channels + 1)");
  }

  // ---- sizes: multiples of tokenizer x patch, within the DiT's position tables ----
  const int64_t align = S * cfg.patch_spatial;
  const int64_t max_h = std::min<int64_t>(704, cfg.max_img_h * S) / align * align;
  const int64_t max_w = std::min<int64_t>(1280, cfg.max_img_w * S) / align * align;
  int64_t height = o.height, width = o.width;
  if (height <= 0) height = has_video ? std::min(max_h, frames.size(1) / align * align) : max_h;
  if (width <= 0) width = has_video ? std::min(max_w, frames.size(2) / align * align) : max_w;
  if (height % align || width % align || height <= 0 || width <= 0)
    return bad("the output size ", height, "x", width, " must be positive multiples of ", align, " (tokenizer ", S,
               "x x DiT patch ", cfg.patch_spatial, ")");
  if (height / S > cfg.max_img_h || width / S > cfg.max_img_w)
    return bad(height, "x", width, " exceeds the DiT's maximum of ", cfg.max_img_h * S, "x", cfg.max_img_w * S,
               " pixels");

  // ---- frame counts ----
  WFM_RETURN_IF_ERROR(CheckPixelFrameCount(o.num_frames, TC, "--num-frames"));
  int64_t clip_latents = std::min<int64_t>(cfg.max_latent_frames(), LatentFramesFor(121, TC));
  if (o.clip_frames > 0) {
    WFM_RETURN_IF_ERROR(CheckPixelFrameCount(o.clip_frames, TC, "--clip-frames"));
    clip_latents = LatentFramesFor(o.clip_frames, TC);
    if (clip_latents > cfg.max_latent_frames())
      return bad("--clip-frames ", o.clip_frames, " exceeds the DiT's maximum of ",
                 PixelFramesFor(cfg.max_latent_frames(), TC), " frames");
  }
  const int64_t total_latents = LatentFramesFor(o.num_frames, TC);
  int64_t overlap = 1;
  if (total_latents > clip_latents) {
    WFM_RETURN_IF_ERROR(CheckPixelFrameCount(o.overlap_frames, TC, "--overlap-frames"));
    overlap = LatentFramesFor(o.overlap_frames, TC);
  }
  if (has_video) {
    WFM_RETURN_IF_ERROR(CheckPixelFrameCount(o.num_input_frames, TC, "--num-input-frames"));
    if (o.num_input_frames >= o.num_frames)
      return bad("--num-frames ", o.num_frames, " must exceed --num-input-frames ", o.num_input_frames);
    if (frames.size(0) < o.num_input_frames)
      return bad("the input video has ", frames.size(0), " frames, fewer than --num-input-frames ",
                 o.num_input_frames);
  }

  torch::NoGradGuard no_grad;
  WorldResult r;
  r.height = height;
  r.width = width;
  const c10::Device device = model.net().device();
  const double sigma_data = model.parametrization().sigma_data();
  VideoConditioning video;
  if (has_video) {
    // The clip continues the input: its last num_input_frames frames are the condition.
    const auto t0 = Clock::now();
    WFM_ASSIGN_OR_RETURN(at::Tensor x, CatchToStatus("preparing the input frames", [&]() -> absl::StatusOr<at::Tensor> {
      const at::Tensor last = frames.narrow(0, frames.size(0) - o.num_input_frames, o.num_input_frames);
      return FramesToModelInput(ResizeCoverCrop(last, height, width)).unsqueeze(0);  // [1, 3, T, H, W]
    }));
    WFM_ASSIGN_OR_RETURN(tokenizer::EncodeResult enc, tok.Encode(x), "encoding the input frames");
    video.latent = stats.Normalize(enc.latent.to(device, at::kFloat)) * sigma_data;
    video.num_frames = LatentFramesFor(o.num_input_frames, TC);
    r.encode_seconds = Seconds(t0);
  }

  const auto t1 = Clock::now();
  WFM_ASSIGN_OR_RETURN(at::Tensor x, model.GenerateLong(total_latents, clip_latents, overlap,
                                                        {cfg.latent_channels(), height / S, width / S}, text, video,
                                                        o.generation));
  r.latents = stats.Denormalize(x / sigma_data);  // raw tokenizer latent [N, C, t, h, w]
  r.sample_seconds = Seconds(t1);

  const auto t2 = Clock::now();
  tokenizer::ClipGeometry geometry;
  geometry.frames = o.num_frames;
  geometry.height = height;
  geometry.width = width;
  std::vector<at::Tensor> videos;
  for (int64_t i = 0; i < r.latents.size(0); ++i) {
    WFM_ASSIGN_OR_RETURN(at::Tensor rec, tok.Decode(r.latents.narrow(0, i, 1), geometry), "decoding sample ", i);
    videos.push_back(ModelOutputToFrames(rec[0].cpu()));  // uint8 [T, H, W, 3]
  }
  r.videos = at::stack(videos);
  r.decode_seconds = Seconds(t2);
  return r;
}

absl::StatusOr<WorldResult> GenerateWorld(WorldModels& m, const at::Tensor& frames, const std::string& prompt,
                                          const WorldOptions& o) {
  if (!m.model || !m.tokenizer) return absl::FailedPreconditionError("GenerateWorld: the models are not loaded");
  WFM_ASSIGN_OR_RETURN(TextConditioning text, EncodePrompt(m.text_encoder.get(), m.model->config(), prompt,
                                                           o.negative_prompt, m.model->net().device()));
  return GenerateWorld(*m.model, *m.tokenizer, m.stats, frames, text, o);
}

}  // namespace wfm::diffusion
