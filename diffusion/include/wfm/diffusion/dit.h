// The diffusion transformer (DiT) of the Cosmos diffusion world models: it maps a noisy clip of continuous
// tokenizer latents, a noise level and text embeddings to the network output F of the parametrisation
// (parametrization.h).
//
// Architecture (REFERENCE.md section 3; cosmos_predict1/diffusion/networks/general_dit.py GeneralDIT,
// general_dit_video_conditioned.py VideoExtendGeneralDIT, module/blocks.py, module/attention.py,
// module/position_embedding.py):
//   x [B, C, T, H, W] (+ condition-mask channel for Video2World, + padding-mask channel)
//     -> 1x2x2 patchify + linear            x_embedder.proj.1                       [B, T, H/2, W/2, D]
//     -> per transformer block (blocks.blockK): + learnable absolute embedding (extra_pos_embedder, normalised),
//        then for each of "FA-CA-MLP" (blocks.blockK.blocks.{0,1,2}):
//          x += gate * sublayer(LayerNorm(x) * (1 + scale) + shift)
//          (shift, scale, gate) = adaLN_modulation(emb) [+ AdaLN-LoRA term from the timestep embedder]
//          FA: self-attention, per-head RMSNorm on q/k, 3D RoPE (rotate-half); CA: cross-attention to text
//          (no RoPE); MLP: GELU, ratio 4
//     -> final AdaLN + linear (final_layer) -> unpatchify                          [B, out_channels, T, H, W]
// State-dict names equal GeneralDIT.state_dict() byte for byte (including the `pos_embedder.seq` buffer).
//
//   WFM_ASSIGN_OR_RETURN(DiTConfig cfg, DiTConfig::Preset("predict1-7b-text2world"));
//   auto net = std::make_shared<GeneralDiT>(cfg);
//   WFM_RETURN_IF_ERROR(LoadDiTWeights(*net, "model.pt"));
//   DiTInputs in; in.x = x; in.timesteps = c_noise; in.crossattn_emb = t5;   // [B,16,T,H,W], [B], [B,512,1024]
//   at::Tensor f = net->Forward(in);                                         // [B, 16, T, H, W]
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json_fwd.hpp>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "wfm/core/checkpoint.h"
#include "wfm/core/nn/mlp.h"
#include "wfm/core/nn/norm.h"
#include "wfm/core/tensor_map.h"

namespace wfm::diffusion {

// GeneralDIT's constructor arguments, spelled as in the reference network config (a fixture json's `config`
// object or a LazyCall dict). Defaults are the reference's FADITV2Config (Predict1 7B).
struct DiTConfig {
  int64_t max_img_h = 240, max_img_w = 240, max_frames = 128;  // latent extents the position tables cover
  int64_t in_channels = 16;   // 17 = Video2World (VideoExtendGeneralDIT: + condition mask channel)
  int64_t out_channels = 16;
  int64_t patch_spatial = 2, patch_temporal = 1;
  bool concat_padding_mask = true;
  std::string block_config = "FA-CA-MLP";
  int64_t model_channels = 4096;
  int64_t num_blocks = 28;
  int64_t num_heads = 32;
  double mlp_ratio = 4.0;
  std::string block_x_format = "THWBD";  // memory layout in the reference; numerically irrelevant here
  int64_t crossattn_emb_channels = 1024;
  bool use_cross_attn_mask = false;
  std::string pos_emb_cls = "rope3d";
  bool pos_emb_learnable = false;
  std::string pos_emb_interpolation = "crop";
  bool affline_emb_norm = true;
  bool use_adaln_lora = true;
  int64_t adaln_lora_dim = 256;
  double rope_h_extrapolation_ratio = 1.0, rope_w_extrapolation_ratio = 1.0, rope_t_extrapolation_ratio = 1.0;
  bool extra_per_block_abs_pos_emb = true;
  std::string extra_per_block_abs_pos_emb_type = "learnable";
  double extra_h_extrapolation_ratio = 1.0, extra_w_extrapolation_ratio = 1.0, extra_t_extrapolation_ratio = 1.0;
  bool add_augment_sigma_embedding = false;  // VideoExtendGeneralDIT option
  double base_fps = 24.0;                    // RoPE time positions are scaled by base_fps / fps

  int64_t head_dim() const { return model_channels / num_heads; }
  // True for the Video2World network (VideoExtendGeneralDIT): the condition mask is an input channel.
  bool video_conditioned() const { return in_channels == out_channels + 1; }
  // Latent channels of the noisy state x (without the condition-mask channel).
  int64_t latent_channels() const { return video_conditioned() ? in_channels - 1 : in_channels; }
  int64_t max_latent_frames() const { return max_frames / patch_temporal; }

  absl::Status Validate() const;

  // Named presets: predict1-7b-text2world, predict1-7b-video2world, predict1-14b-text2world,
  // predict1-14b-video2world (the published shapes and their RoPE/absolute-embedding extrapolation ratios), and
  // small CPU sizes tiny / small / medium (each also as *-video2world).
  static absl::StatusOr<DiTConfig> Preset(absl::string_view name);
  static std::vector<std::string> PresetNames();
  // Reads the reference keys; unknown keys are an error (a typo must not silently change the network), except
  // bookkeeping keys (`_target_`, `__class__`). Accepts the dict itself or an object with a `config` member
  // (the fixture json layout).
  static absl::StatusOr<DiTConfig> FromJson(const nlohmann::json& json);
  static absl::StatusOr<DiTConfig> FromJsonFile(const std::string& path);
  // A preset name, or else a json file path.
  static absl::StatusOr<DiTConfig> FromPresetOrFile(const std::string& name_or_path);
  nlohmann::json ToJson() const;
};

// Inputs of one network evaluation.
struct DiTInputs {
  at::Tensor x;                          // [B, C, T, H, W], C = config.latent_channels()
  at::Tensor timesteps;                  // [B]: the noise input c_noise of the parametrisation
  at::Tensor crossattn_emb;              // [B, N, crossattn_emb_channels]
  at::Tensor padding_mask;               // [B, 1, H', W'] (resized to H, W; nearest). Undefined = zeros
  at::Tensor condition_video_input_mask; // [B, 1, T, H, W], Video2World only (1 = given frame)
  at::Tensor condition_video_augment_sigma;  // [B] c_noise of the condition augmentation (add_augment_sigma_embedding)
  std::optional<double> fps = 24.0;      // frame rate of the clip (RoPE time scaling); nullopt = image (T = 1)
};

// Holds submodules under arbitrary names ("block0", "1", ...) so that state-dict keys match the reference's
// nn.ModuleDict / nn.Sequential nesting.
class NamedModulesImpl : public torch::nn::Module {
 public:
  template <typename M>
  M add(const std::string& name, M module) {
    return register_module(name, std::move(module));
  }
};
TORCH_MODULE(NamedModules);

// module/attention.py Attention with qkv_norm "RRI": to_q = [Linear, RMSNorm(head_dim)], to_k likewise,
// to_v = [Linear, Identity], to_out = [Linear, Dropout].
class DiTAttentionImpl : public torch::nn::Module {
 public:
  DiTAttentionImpl(int64_t query_dim, int64_t context_dim, int64_t heads, bool self_attention);
  // x [B, S, D]; context [B, M, Dc] (cross-attention) or undefined; rope cos/sin [S, head_dim] (self only).
  at::Tensor forward(const at::Tensor& x, const at::Tensor& context, const at::Tensor& rope_cos,
                     const at::Tensor& rope_sin);

  int64_t heads, head_dim;
  bool self_attention;
  torch::nn::ModuleList to_q, to_k, to_v, to_out;
};
TORCH_MODULE(DiTAttention);

// blocks.py DITBuildingBlock: one AdaLN-modulated residual sublayer ("fa", "ca" or "mlp"). Registered as
// `block` (attention: VideoAttn holding `attn`; mlp: GPT2FeedForward with layer1/layer2) and `adaLN_modulation`.
class DiTBuildingBlockImpl : public torch::nn::Module {
 public:
  DiTBuildingBlockImpl(const std::string& block_type, const DiTConfig& config);
  // x [B, S, D]; emb [B, D] (normalised timestep embedding); adaln_lora [B, 3D] or undefined.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& emb, const at::Tensor& crossattn_emb,
                     const at::Tensor& rope_cos, const at::Tensor& rope_sin, const at::Tensor& adaln_lora);

  std::string block_type;  // "fa", "ca" or "mlp"
  int64_t dim;
  DiTAttention attn{nullptr};              // block.attn (fa / ca)
  wfm::nn::GeluMlp mlp{nullptr};           // block (mlp)
  torch::nn::ModuleList adaLN_modulation;  // [SiLU, Linear(D, lora), Linear(lora, 3D)] or [SiLU, Linear(D, 3D)]
};
TORCH_MODULE(DiTBuildingBlock);

// GeneralDIT / VideoExtendGeneralDIT (chosen by config.video_conditioned()).
class GeneralDiTImpl : public torch::nn::Module {
 public:
  explicit GeneralDiTImpl(const DiTConfig& config);
  // The network output F [B, out_channels, T, H, W]. TORCH_CHECKs shapes; callers validate user input with
  // ValidateInputs first.
  at::Tensor Forward(const DiTInputs& inputs);
  // Checks ranks, channel counts, patch divisibility and that the latent grid fits the position tables; the
  // message says which sizes work.
  absl::Status ValidateInputs(const DiTInputs& inputs) const;
  const DiTConfig& config() const { return config_; }
  // Re-initialises every parameter as the reference does (xavier-uniform linears, N(0, 0.02) timestep embedder,
  // zeroed block modulation outputs, truncated-normal N(0, 0.02) absolute embeddings) from the current torch seed.
  void InitializeWeights();

  // Registered submodules in the reference's naming.
  NamedModules x_embedder{nullptr};     // proj.1 = Linear((in_ch + pad) * pt * p * p, D, bias=False)
  torch::nn::Linear patch_proj{nullptr};
  NamedModules pos_embedder{nullptr};   // persistent buffer `seq` (arange of the longest position table)
  NamedModules extra_pos_embedder{nullptr};
  at::Tensor pos_emb_h, pos_emb_w, pos_emb_t;  // [len_h|len_w|len_t, D]
  torch::nn::ModuleList t_embedder;     // [Timesteps, TimestepEmbedding{linear_1, linear_2}]
  torch::nn::Linear t_linear_1{nullptr}, t_linear_2{nullptr};
  torch::nn::ModuleList augment_sigma_embedder{nullptr};
  torch::nn::Linear aug_linear_1{nullptr}, aug_linear_2{nullptr};
  NamedModules blocks{nullptr};         // blockK.blocks.{0,1,2}
  std::vector<std::vector<DiTBuildingBlock>> layers;  // [num_blocks][sublayers]
  NamedModules final_layer{nullptr};    // adaLN_modulation.{1,2}, linear
  torch::nn::ModuleList final_adaLN_modulation;
  torch::nn::Linear final_linear{nullptr};
  wfm::nn::RMSNorm affline_norm{nullptr};  // affline_emb_norm (RMSNorm eps 1e-6)

 private:
  // (emb [B, D] after affline_norm, adaln_lora [B, 3D] or undefined) from the network's noise input.
  std::pair<at::Tensor, at::Tensor> EmbedTimesteps(const DiTInputs& inputs);
  DiTConfig config_;
};
TORCH_MODULE(GeneralDiT);

// Loads a checkpoint (any format the core reader takes: safetensors, torch .pt, TorchScript, sharded) into the
// network through the core checkpoint loader, strictly (every missing, unexpected or wrongly-shaped tensor is
// reported at once; nothing is copied unless all match). The name rules (DiTNameRules) are the one place that
// knows the DiT's foreign spellings: the `net.` prefix of DiffusionModel checkpoints, Transformer Engine
// `_extra_state`, and the `logvar.*` / `conditioner.*` entries beside the network; `use_ema` takes the EMA copy.
NameRules DiTNameRules(bool use_ema);
absl::Status LoadDiTWeights(GeneralDiTImpl& net, const std::string& path, bool use_ema = false);
absl::Status LoadDiTWeights(GeneralDiTImpl& net, const TensorMap& tensors, const std::string& source = "tensors");

}  // namespace wfm::diffusion
