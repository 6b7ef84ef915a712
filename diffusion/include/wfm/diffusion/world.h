// Video2World and Text2World with the diffusion world model in one call: resize and encode the last frames of a
// video with a continuous (CV) tokenizer, encode the prompt, sample N futures of the clip in latent space (longer
// videos by autoregressive extension there), decode them to pixels. The counterpart of ar::GenerateWorld
// (autoregressive/world.h) for the diffusion model; `wfm diffusion generate` is this plus file handling.
// Follows cosmos_predict1/diffusion/inference/world_generation_pipeline.py (DiffusionVideo2WorldGenerationPipeline:
// the LAST num_input_frames frames are the condition, latents normalised by the tokenizer's mean/std).
//
//   WorldModelFiles f;  f.config = "run/config.json";  f.weights = "run/model_ema.safetensors";
//   f.tokenizer_config = "CV8x8x8";  f.tokenizer_weights = "tok/";  f.text_encoder = "t5/";
//   WFM_ASSIGN_OR_RETURN(WorldModels models, LoadWorldModels(f));
//   WorldOptions o;  o.num_input_frames = 9;  o.num_frames = 33;  o.generation.num_samples = 4;  // 4 futures
//   WFM_ASSIGN_OR_RETURN(WorldResult r, GenerateWorld(models, frames, "a robot arm picks up a cup", o));
//   // r.videos: uint8 [4, 33, H, W, 3]; future i is drawn from seed + i (the same whatever N is)
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "wfm/diffusion/world_model.h"

namespace wfm::text {
class TextEncoder;
}
namespace wfm::tokenizer {
class Tokenizer;
}

namespace wfm::diffusion {

struct WorldOptions {
  int64_t num_input_frames = 9;  // condition frames (the LAST of the input): 1 + k*tc; ignored without frames
  int64_t num_frames = 121;      // output frames, condition included: 1 + k*tc (tc = the tokenizer's, e.g. 8)
  // Output size, multiples of tokenizer compression x DiT patch (16 for CV8x8x8). 0 = the input's size rounded
  // down to such a multiple (Text2World: 704 x 1280), at most what the DiT's position tables hold.
  int64_t height = 0, width = 0;
  int64_t clip_frames = 0;       // frames per generated clip: 0 = min(121, the DiT's maximum); longer videos extend
  int64_t overlap_frames = 9;    // frames each extension clip is conditioned on
  std::string negative_prompt;   // the unconditional branch of guidance (needs a text encoder); "" = zeros
  GenerateOptions generation;    // steps, integrator, guidance, seed, num_samples (= futures), fps, callback
};

struct WorldResult {
  at::Tensor videos;   // uint8 [N, num_frames, H, W, 3] (condition frames as the tokenizer reconstructs them)
  at::Tensor latents;  // the raw (unnormalised) tokenizer latents [N, C, t, h, w]
  int64_t height = 0, width = 0;
  double encode_seconds = 0, sample_seconds = 0, decode_seconds = 0;
};

// The models of one diffusion world, loaded from files.
struct WorldModelFiles {
  std::string config;             // DiT config json (reference keys) or preset name
  std::string weights;            // DiT weights (safetensors / model.pt); "" with random_init
  std::string tokenizer_config;   // CV tokenizer config json or preset (CV8x8x8, ...)
  std::string tokenizer_weights;  // file or directory; "" with random_init
  std::string text_encoder;       // T5 directory or built-in encoder .safetensors; "" = no prompts
  // Latent mean/std (mean_std.pt / safetensors); "" = mean_std.{pt,safetensors} or latent_stats.safetensors
  // beside the tokenizer weights or the DiT weights, else identity.
  std::string latent_stats;
  std::string device = "cpu";     // cpu | cuda[:N] | auto
  bool random_init = false;       // random DiT / tokenizer where no weights are given (smoke tests)
};

struct WorldModels {
  std::unique_ptr<DiffusionWorldModel> model;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;
  std::unique_ptr<text::TextEncoder> text_encoder;  // null without WorldModelFiles::text_encoder
  LatentStats stats;
  WorldModels();
  WorldModels(WorldModels&&) noexcept;
  WorldModels& operator=(WorldModels&&) noexcept;
  ~WorldModels();
};

// Loads and cross-checks the models (a CV tokenizer whose latent channels the DiT takes, a text encoder of the
// DiT's crossattn_emb_channels); errors name the file and the problem.
absl::StatusOr<WorldModels> LoadWorldModels(const WorldModelFiles& files);

// The prompt's embeddings for the DiT: `prompt` (and `negative_prompt`) through `encoder`; an empty prompt without
// an encoder is the unconditional model (zero embedding, the conditioner's dropped text). A prompt without an
// encoder, or an encoder of another width than crossattn_emb_channels, is an error.
absl::StatusOr<TextConditioning> EncodePrompt(text::TextEncoder* encoder, const DiTConfig& config,
                                              const std::string& prompt, const std::string& negative_prompt,
                                              c10::Device device);

// `frames`: uint8 [T, H, W, 3] RGB with T >= num_input_frames, any size (resized to cover the output size and
// centre-cropped); undefined or empty for Text2World. Errors: frame counts not of the form 1 + k*tc (the message
// names valid ones), too short an input, sizes the tokenizer/DiT cannot take, a tokenizer that does not belong to
// the DiT, input frames for a Text2World network.
absl::StatusOr<WorldResult> GenerateWorld(DiffusionWorldModel& model, tokenizer::Tokenizer& tokenizer,
                                          const LatentStats& stats, const at::Tensor& frames,
                                          const TextConditioning& text, const WorldOptions& options);
// The same with the prompt encoded by `models.text_encoder`.
absl::StatusOr<WorldResult> GenerateWorld(WorldModels& models, const at::Tensor& frames, const std::string& prompt,
                                          const WorldOptions& options);

}  // namespace wfm::diffusion
