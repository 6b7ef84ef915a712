// Configuration of the autoregressive world model (Cosmos-Predict1 AR, REFERENCE.md section 2): the reference
// parameter dict (cosmos_predict1/autoregressive/configs/base/model.py ModelConfig, the `params` of
// networks/transformer.py Transformer) with its key names, presets for the published sizes, and JSON IO.
//
//   WFM_ASSIGN_OR_RETURN(ArConfig c, ArConfig::FromJsonFile("ar_v2w.json"));   // {"params": {...}} or {...}
//   ArConfig big = *ArConfig::Preset("5B-Video2World");
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <c10/core/ScalarType.h>
#include <nlohmann/json_fwd.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace wfm::ar {

struct ArConfig {
  // ---- reference keys (same names, same defaults as ModelConfig) ----
  int64_t dim = 4096;
  int64_t n_layers = 32;
  int64_t n_heads = 32;
  std::optional<int64_t> n_kv_heads = 8;  // null = n_heads
  std::optional<int64_t> head_dim;        // null = dim / n_heads
  int64_t vocab_size = 64000;
  int64_t ffn_hidden_size = 14336;
  double norm_eps = 1e-5;
  std::string norm_type = "rmsnorm";  // only "rmsnorm" is used by Cosmos AR checkpoints
  double rope_theta = 500000.0;
  bool apply_abs_pos_emb = false;
  int64_t max_batch_size = 1;
  int64_t max_seq_len = 12800;
  bool fuse_qkv = false;
  bool causal_mask = true;
  std::string precision = "bfloat16";  // "float32", "bfloat16", "float16"
  bool use_qk_normalization = false;
  int64_t tensor_model_parallel_size = 1;
  bool apply_yarn = false;
  std::optional<double> yarn_scale;
  std::optional<double> yarn_beta_fast;
  std::optional<double> yarn_beta_slow;
  std::optional<int64_t> original_seq_len;
  std::string rope_dim = "3D";             // "3D" (video) or "1D"
  std::string pytorch_rope_version = "v2";  // "v2": rotate-half (TE); "v1": interleaved pairs, mscale applied
  std::optional<std::vector<int64_t>> original_latent_shape;  // YaRN: [T, H, W] the model was trained on
  std::optional<int64_t> pad_to_multiple_of;
  bool insert_cross_attn = false;
  int64_t insert_cross_attn_every_k_layers = 1;
  int64_t context_dim = 1024;
  std::optional<int64_t> num_video_frames;
  std::optional<int64_t> video_height, video_width;
  std::vector<int64_t> video_latent_shape = {5, 40, 64};  // [T, H, W] of the token grid

  // ---- from the reference tokenizer config (not part of `params`) ----
  // "video_to_video" (base models) or "text_to_video" (Video2World): the latter prefixes every sequence with a
  // <bov> token (id = vocab_size) whose RoPE / absolute position entries are zero, and the token embedding is
  // expanded to round_up(vocab_size + 1, 64) rows while the output layer keeps vocab_size (model.py load_ar_model).
  std::string training_type = "video_to_video";

  // ---- derived ----
  int64_t HeadDim() const { return head_dim.value_or(dim / n_heads); }
  int64_t KvHeads() const { return n_kv_heads.value_or(n_heads); }
  bool HasBov() const { return training_type == "text_to_video"; }
  int64_t BovToken() const { return vocab_size; }
  int64_t EmbeddingVocab() const;  // rows of tok_embeddings
  int64_t TokensPerFrame() const { return video_latent_shape[1] * video_latent_shape[2]; }
  int64_t VideoTokens() const { return video_latent_shape[0] * TokensPerFrame(); }
  // Position entries the model has tables for: bov + T*H*W, padded as the reference pads (>= max_seq_len).
  int64_t PositionTableLength() const;
  bool LayerHasCrossAttention(int64_t layer) const {
    return insert_cross_attn && layer % insert_cross_attn_every_k_layers == 0;
  }
  c10::ScalarType Dtype() const;
  int64_t NumParameters() const;

  absl::Status Validate() const;

  // A reference params dict, or an object holding one under "params" (the fixture json). Unknown keys are
  // ignored with a warning (the reference dict carries training-only keys); wrong types are errors.
  static absl::StatusOr<ArConfig> FromJson(const nlohmann::json& j);
  static absl::StatusOr<ArConfig> FromJsonFile(const std::string& path);
  // A json file if `name_or_path` exists, else a preset name (the error lists the presets).
  static absl::StatusOr<ArConfig> FromPresetOrFile(const std::string& name_or_path);
  nlohmann::json ToJson() const;

  // "4B", "5B-Video2World", "12B", "13B-Video2World" (the published Cosmos-Predict1 AR models, 33 frames at
  // 640x1024 -> latent 5x40x64) and CPU-sized "tiny" (dim 64, 2 layers, vocab 512, 3x4x4: the fixtures' shape),
  // "small" (dim 256, 4 layers, vocab 64000, 4x16x16: the speed benchmark shape) and "tiny-v2w" / "small-v2w"
  // (the same in the Video2World layout: QK-norm, cross-attention every layer, sin-cos embedding, <bov>).
  static absl::StatusOr<ArConfig> Preset(const std::string& name);
  static std::vector<std::string> PresetNames();
};

}  // namespace wfm::ar
