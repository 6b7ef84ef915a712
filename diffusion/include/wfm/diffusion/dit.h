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
// Cosmos-Predict2's MiniTrainDIT / MinimalV1LVGDiT (cosmos_predict2/models/text2image_dit.py, video2world_dit.py)
// computes the same network with other names (blocks.N.self_attn.q_proj, adaln_modulation_self_attn, ...),
// per-frame noise levels (timesteps [B, T]; Video2World frame replacement gives condition frames their own),
// t_embedding_norm instead of affline_norm, optional RoPE fps modulation and an optional crossattn_proj; it is
// MiniTrainDiT below. Both implement DiffusionNetwork, which the sampler, the world model and training use.
//
//   WFM_ASSIGN_OR_RETURN(DiTConfig cfg, DiTConfig::Preset("predict1-7b-text2world"));
//   WFM_ASSIGN_OR_RETURN(std::shared_ptr<DiffusionNetwork> net, MakeDiffusionNetwork(cfg));
//   WFM_RETURN_IF_ERROR(LoadDiTWeights(*net, "model.pt"));
//   DiTInputs in; in.x = x; in.timesteps = c_noise; in.crossattn_emb = t5;   // [B,16,T,H,W], [B], [B,512,1024]
//   at::Tensor f = net->Forward(in);                                         // [B, 16, T, H, W]
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
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

enum class DiTArchitecture {
  kGeneralDit,    // Cosmos-Predict1 GeneralDIT / VideoExtendGeneralDIT (EDM)
  kMiniTrainDit,  // Cosmos-Predict2 MiniTrainDIT / MinimalV1LVGDiT (rectified flow)
};

// The networks' constructor arguments, spelled as in the reference network config (a fixture json's `config`
// object or a LazyCall dict). Defaults are the reference's FADITV2Config (Predict1 7B).
struct DiTConfig {
  DiTArchitecture architecture = DiTArchitecture::kGeneralDit;
  // MiniTrainDIT only: the Video2World class (MinimalV1LVGDiT adds the condition-mask channel to in_channels
  // itself; for GeneralDIT the reference config's in_channels already counts it).
  bool minitrain_video2world = false;
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
  // MiniTrainDIT keys.
  int64_t crossattn_proj_in_channels = 0;    // != crossattn_emb_channels (and > 0): Linear + GELU projection
  double min_fps = 1.0, max_fps = 30.0;
  bool rope_enable_fps_modulation = true;    // GeneralDIT always scales by fps
  std::string atten_backend = "transformer_engine";  // reference backend name; informative here

  bool is_general() const { return architecture == DiTArchitecture::kGeneralDit; }
  int64_t head_dim() const { return model_channels / num_heads; }
  // True for the Video2World networks: the condition mask is an input channel.
  bool video_conditioned() const {
    return is_general() ? in_channels == out_channels + 1 : minitrain_video2world;
  }
  // Latent channels of the noisy state x (without the condition-mask channel).
  int64_t latent_channels() const { return is_general() && video_conditioned() ? in_channels - 1 : in_channels; }
  // Channels of the patch embedding's input: latent + condition mask + padding mask.
  int64_t embedder_channels() const {
    return latent_channels() + (video_conditioned() ? 1 : 0) + (concat_padding_mask ? 1 : 0);
  }
  // The reference class this config builds.
  std::string ReferenceClass() const;
  int64_t max_latent_frames() const { return max_frames / patch_temporal; }

  absl::Status Validate() const;

  // Named presets: predict1-7b-text2world, predict1-7b-video2world, predict1-14b-text2world,
  // predict1-14b-video2world (the published shapes and their RoPE/absolute-embedding extrapolation ratios),
  // predict2-2b-video2world, predict2-14b-video2world (+ -text2image... shapes as *-text2world), and small CPU
  // sizes tiny / small / medium (each also as *-video2world; predict2-tiny for the Predict2 layout).
  static absl::StatusOr<DiTConfig> Preset(absl::string_view name);
  static std::vector<std::string> PresetNames();
  // Reads the reference keys; unknown keys are an error (a typo must not silently change the network), except
  // bookkeeping keys and MiniTrainDIT's training-only ones (sac_config, natten_parameters). The class comes from
  // `_target_` (GeneralDIT, VideoExtendGeneralDIT, MiniTrainDIT, MinimalV1LVGDiT; also the fixture json's
  // `reference` string), else from Predict2-only keys. Accepts the dict itself or an object with a `config`
  // member (the fixture json layout).
  static absl::StatusOr<DiTConfig> FromJson(const nlohmann::json& json);
  static absl::StatusOr<DiTConfig> FromJsonFile(const std::string& path);
  // A preset name, or else a json file path.
  static absl::StatusOr<DiTConfig> FromPresetOrFile(const std::string& name_or_path);
  nlohmann::json ToJson() const;
};

// Cross-attention keys and values of one text context, one entry per cross-attention layer in network order.
// The text context is the same at every denoising step (and for both branches of a CFG batch), so a sampler
// projects it once per sample and reuses K/V at every step (DiffusionWorldModel::Generate does this;
// GenerateOptions::cache_cross_attention). The entries belong to `context` and to the current weights: a context
// of other values refills the cache by itself; call Clear() after changing the weights. The networks ignore the
// cache while autograd records (training).
struct CrossAttentionCache {
  at::Tensor context;                                 // the crossattn_emb the entries were computed from
  std::vector<std::pair<at::Tensor, at::Tensor>> kv;  // per cross-attention layer: k, v [B, M, heads, head_dim]
  int64_t fills = 0, reuses = 0;                      // forward passes that computed / reused the entries

  void Clear();
  // Prepares a forward pass on `crossattn_emb`: true when the entries belong to it (the same tensor, or equal
  // values); otherwise clears them for the pass to fill.
  bool Bind(const at::Tensor& crossattn_emb);
  // The entry of cross-attention layer `index` (created empty on the first pass).
  std::pair<at::Tensor, at::Tensor>* Slot(size_t index);
};

// Inputs of one network evaluation.
struct DiTInputs {
  at::Tensor x;                          // [B, C, T, H, W], C = config.latent_channels()
  at::Tensor timesteps;                  // [B], or [B, T] per latent frame (MiniTrainDiT): the noise input c_noise
  at::Tensor crossattn_emb;              // [B, N, crossattn_emb_channels]
  at::Tensor padding_mask;               // [B, 1, H', W'] (resized to H, W; nearest). Undefined = zeros
  at::Tensor condition_video_input_mask; // [B, 1, T, H, W], Video2World only (1 = given frame)
  at::Tensor condition_video_augment_sigma;  // [B] c_noise of the condition augmentation (add_augment_sigma_embedding)
  std::optional<double> fps = 24.0;      // frame rate of the clip (RoPE time scaling); nullopt = image (T = 1)
  CrossAttentionCache* crossattn_cache = nullptr;  // optional: reuse cross-attention K/V across evaluations
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
  // x [B, S, D]; context [B, M, Dc] (cross-attention) or undefined; rope cos/sin [S, head_dim] (self only);
  // kv: a cross-attention cache entry (used when filled, else filled) or null.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& context, const at::Tensor& rope_cos,
                     const at::Tensor& rope_sin, std::pair<at::Tensor, at::Tensor>* kv = nullptr);

  int64_t heads, head_dim;
  bool self_attention;
  torch::nn::ModuleList to_q, to_k, to_v, to_out;
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr};  // to_{q,k,v,out}.0
  wfm::nn::RMSNorm q_norm{nullptr}, k_norm{nullptr};                                         // to_{q,k}.1
};
TORCH_MODULE(DiTAttention);

// blocks.py DITBuildingBlock: one AdaLN-modulated residual sublayer ("fa", "ca" or "mlp"). Registered as
// `block` (attention: VideoAttn holding `attn`; mlp: GPT2FeedForward with layer1/layer2) and `adaLN_modulation`.
class DiTBuildingBlockImpl : public torch::nn::Module {
 public:
  DiTBuildingBlockImpl(const std::string& block_type, const DiTConfig& config);
  // x [B, S, D]; emb [B, D] (normalised timestep embedding); adaln_lora [B, 3D] or undefined.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& emb, const at::Tensor& crossattn_emb,
                     const at::Tensor& rope_cos, const at::Tensor& rope_sin, const at::Tensor& adaln_lora,
                     std::pair<at::Tensor, at::Tensor>* kv = nullptr);

  std::string block_type;  // "fa", "ca" or "mlp"
  int64_t dim;
  DiTAttention attn{nullptr};              // block.attn (fa / ca)
  wfm::nn::GeluMlp mlp{nullptr};           // block (mlp)
  torch::nn::ModuleList adaLN_modulation;  // [SiLU, Linear(D, lora), Linear(lora, 3D)] or [SiLU, Linear(D, 3D)]
};
TORCH_MODULE(DiTBuildingBlock);

// What the sampler, the world model and training need from a diffusion transformer.
class DiffusionNetwork : public torch::nn::Module {
 public:
  // TORCH_CHECKs that the config is valid (callers run DiTConfig::Validate / MakeDiffusionNetwork first).
  explicit DiffusionNetwork(const DiTConfig& config);
  const DiTConfig& config() const { return config_; }
  // The network output F [B, out_channels, T, H, W]. TORCH_CHECKs shapes; callers validate user input with
  // ValidateInputs first.
  virtual at::Tensor Forward(const DiTInputs& inputs) = 0;
  // Checks ranks, channel counts, patch divisibility and that the latent grid fits the position tables; the
  // message says which sizes work.
  absl::Status ValidateInputs(const DiTInputs& inputs) const;
  // Re-initialises every parameter as the reference does, from the current torch seed.
  virtual void InitializeWeights() = 0;
  // Device and dtype of the weights.
  c10::Device device() const;
  at::ScalarType dtype() const;

  // The embedders both reference networks register under the same names.
  NamedModules x_embedder{nullptr};     // proj.1 = Linear(embedder_channels * pt * p * p, D, bias=False)
  torch::nn::Linear patch_proj{nullptr};
  NamedModules pos_embedder{nullptr};   // persistent buffer `seq` (+ Predict2's frequency ranges)
  NamedModules extra_pos_embedder{nullptr};
  at::Tensor pos_emb_h, pos_emb_w, pos_emb_t;  // [len_h|len_w|len_t, D] (extra_per_block_abs_pos_emb)

 protected:
  // Registers x_embedder (PatchEmbed), pos_embedder (VideoRopePosition3DEmb's buffers; the dim_*_range ones are
  // persistent in Predict2 only) and extra_pos_embedder (LearnablePosEmbAxis) when configured.
  void RegisterEmbedders(bool rope_range_buffers);
  DiTConfig config_;
};

// Builds the network the config describes (GeneralDiT or MiniTrainDiT), randomly initialised.
absl::StatusOr<std::shared_ptr<DiffusionNetwork>> MakeDiffusionNetwork(const DiTConfig& config);

// GeneralDIT / VideoExtendGeneralDIT (chosen by config.video_conditioned()).
class GeneralDiTImpl : public DiffusionNetwork {
 public:
  explicit GeneralDiTImpl(const DiTConfig& config);
  at::Tensor Forward(const DiTInputs& inputs) override;
  // xavier-uniform linears, N(0, 0.02) timestep embedder, zeroed block modulation outputs, truncated-normal
  // N(0, 0.02) absolute embeddings (general_dit.py initialize_weights).
  void InitializeWeights() override;

  // Registered submodules in the reference's naming (and the embedders of DiffusionNetwork).
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
};
TORCH_MODULE(GeneralDiT);

// One MiniTrainDIT attention (q_proj/k_proj/v_proj/output_proj, q_norm/k_norm RMSNorm per head).
class MiniTrainAttentionImpl : public torch::nn::Module {
 public:
  MiniTrainAttentionImpl(int64_t query_dim, int64_t context_dim, int64_t heads, bool self_attention);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& context, const at::Tensor& rope_cos,
                     const at::Tensor& rope_sin, std::pair<at::Tensor, at::Tensor>* kv = nullptr);
  int64_t heads, head_dim;
  bool self_attention;
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, output_proj{nullptr};
  wfm::nn::RMSNorm q_norm{nullptr}, k_norm{nullptr};
};
TORCH_MODULE(MiniTrainAttention);

// text2image_dit.py Block: self-attention, cross-attention and MLP, each with its own AdaLN modulation.
class MiniTrainBlockImpl : public torch::nn::Module {
 public:
  explicit MiniTrainBlockImpl(const DiTConfig& config);
  // x [B, T, HW, D]; emb [B, T, D]; adaln_lora [B, T, 3D] or undefined.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& emb, const at::Tensor& crossattn_emb,
                     const at::Tensor& rope_cos, const at::Tensor& rope_sin, const at::Tensor& adaln_lora,
                     const at::Tensor& extra_pos_emb, std::pair<at::Tensor, at::Tensor>* kv = nullptr);
  MiniTrainAttention self_attn{nullptr}, cross_attn{nullptr};
  wfm::nn::GeluMlp mlp{nullptr};
  torch::nn::ModuleList adaln_modulation_self_attn, adaln_modulation_cross_attn, adaln_modulation_mlp;
};
TORCH_MODULE(MiniTrainBlock);

// MiniTrainDIT / MinimalV1LVGDiT (Cosmos-Predict2).
class MiniTrainDiTImpl : public DiffusionNetwork {
 public:
  explicit MiniTrainDiTImpl(const DiTConfig& config);
  at::Tensor Forward(const DiTInputs& inputs) override;
  // Truncated-normal std 1/sqrt(fan_in) linears, zeroed modulation outputs (text2image_dit.py init_weights).
  void InitializeWeights() override;

  torch::nn::ModuleList t_embedder;
  torch::nn::Linear t_linear_1{nullptr}, t_linear_2{nullptr};
  wfm::nn::RMSNorm t_embedding_norm{nullptr};
  torch::nn::ModuleList crossattn_proj{nullptr};  // [Linear(in, D_ctx, bias), GELU]
  torch::nn::Linear crossattn_proj_linear{nullptr};
  torch::nn::ModuleList blocks;
  std::vector<MiniTrainBlock> block_list;
  NamedModules final_layer{nullptr};  // adaln_modulation.{1,2}, linear
  torch::nn::ModuleList final_adaln_modulation;
  torch::nn::Linear final_linear{nullptr};
};
TORCH_MODULE(MiniTrainDiT);

// Loads a checkpoint (any format the core reader takes: safetensors, torch .pt, TorchScript, sharded) into the
// network through the core checkpoint loader, strictly (every missing, unexpected or wrongly-shaped tensor is
// reported at once; nothing is copied unless all match). The name rules (DiTNameRules) are the one place that
// knows the DiT's foreign spellings: the `net.` prefix of DiffusionModel checkpoints, Transformer Engine
// `_extra_state`, and the `logvar.*` / `conditioner.*` entries beside the network; `use_ema` takes the EMA copy.
NameRules DiTNameRules(bool use_ema);
absl::Status LoadDiTWeights(DiffusionNetwork& net, const std::string& path, bool use_ema = false);
absl::Status LoadDiTWeights(DiffusionNetwork& net, const TensorMap& tensors, const std::string& source = "tensors");

}  // namespace wfm::diffusion
