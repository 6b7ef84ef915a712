// ArConfig: reference parameter dict IO, presets and validation (see wfm/autoregressive/config.h).
#include "wfm/autoregressive/config.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "wfm/core/logging.h"
#include "wfm/core/status.h"
#include "wfm/core/nn/rope.h"

namespace wfm::ar {
namespace {

using json = nlohmann::json;

template <typename T>
absl::Status Read(const json& j, const char* key, T* out) {
  auto it = j.find(key);
  if (it == j.end()) return absl::OkStatus();
  try {
    *out = it->get<T>();
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("AR config key '", key, "': ", e.what()));
  }
  return absl::OkStatus();
}

template <typename T>
absl::Status Read(const json& j, const char* key, std::optional<T>* out) {
  auto it = j.find(key);
  if (it == j.end()) return absl::OkStatus();
  if (it->is_null()) {
    out->reset();
    return absl::OkStatus();
  }
  T v;
  WFM_RETURN_IF_ERROR(Read(j, key, &v));
  *out = v;
  return absl::OkStatus();
}

template <typename T>
json Opt(const std::optional<T>& v) {
  return v.has_value() ? json(*v) : json(nullptr);
}

int64_t RoundUp(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

ArConfig CosmosBase(int64_t n_layers, int64_t dim, std::optional<int64_t> head_dim) {
  // model_config.py create_video2world_model_config(model_family="cosmos", rope_dim="3D",
  // add_special_tokens=False, pixel_chunk_duration=33, num_video_frames=33, video 640x1024, compression 8x16x16)
  ArConfig c;
  c.n_layers = n_layers;
  c.dim = dim;
  c.n_heads = 32;
  c.n_kv_heads = 8;
  c.head_dim = head_dim;
  c.ffn_hidden_size = 14336;
  c.norm_eps = 1e-5;
  c.vocab_size = 64000;
  c.rope_theta = 500000.0;
  c.use_qk_normalization = true;
  c.video_latent_shape = {5, 40, 64};
  c.num_video_frames = 33;
  c.video_height = 640;
  c.video_width = 1024;
  c.original_seq_len = 8192;
  c.pad_to_multiple_of = 64;
  c.max_seq_len = 12800;
  c.precision = "bfloat16";
  return c;
}

void MakeVideo2World(ArConfig* c) {
  // world_generation_pipeline.py create_inference_config(inference_type="video2world")
  c->insert_cross_attn = true;
  c->insert_cross_attn_every_k_layers = 1;
  c->context_dim = 1024;
  c->apply_abs_pos_emb = true;
  c->training_type = "text_to_video";
  c->max_seq_len = RoundUp(c->VideoTokens() + 1, c->pad_to_multiple_of.value_or(1));
}

void MakeYarn(ArConfig* c) {
  // COSMOS_YARN_CONFIG (12B)
  c->apply_yarn = true;
  c->yarn_scale = 2;
  c->yarn_beta_fast = 4;
  c->yarn_beta_slow = 1;
  c->original_latent_shape = std::vector<int64_t>{3, 40, 64};
}

}  // namespace

int64_t ArConfig::EmbeddingVocab() const { return HasBov() ? RoundUp(vocab_size + 1, 64) : vocab_size; }

int64_t ArConfig::PositionTableLength() const {
  int64_t n = rope_dim == "3D" ? VideoTokens() + (HasBov() ? 1 : 0) : max_seq_len;
  if (pad_to_multiple_of.has_value() && *pad_to_multiple_of > 0) n = RoundUp(n, *pad_to_multiple_of);
  return std::max(n, max_seq_len);
}

c10::ScalarType ArConfig::Dtype() const {
  if (precision == "bfloat16") return c10::kBFloat16;
  if (precision == "float16") return c10::kHalf;
  return c10::kFloat;
}

int64_t ArConfig::NumParameters() const {
  const int64_t hd = HeadDim(), q = n_heads * hd, kv = KvHeads() * hd;
  int64_t n = EmbeddingVocab() * dim + vocab_size * dim + dim;  // tok_embeddings, output, norm
  for (int64_t l = 0; l < n_layers; ++l) {
    n += dim * q + 2 * dim * kv + q * dim + 2 * dim + 3 * dim * ffn_hidden_size;
    if (use_qk_normalization) n += 2 * hd;
    if (LayerHasCrossAttention(l)) {
      n += dim * q + 2 * context_dim * kv + q * dim + dim;
      if (use_qk_normalization) n += 2 * hd;
    }
  }
  return n;
}

absl::Status ArConfig::Validate() const {
  const auto bad = [](auto... parts) { return absl::InvalidArgumentError(absl::StrCat("AR config: ", parts...)); };
  if (dim <= 0 || n_layers <= 0 || n_heads <= 0 || vocab_size <= 0 || ffn_hidden_size <= 0)
    return bad("dim, n_layers, n_heads, vocab_size and ffn_hidden_size must be positive");
  if (KvHeads() <= 0 || n_heads % KvHeads() != 0)
    return bad("n_heads (", n_heads, ") must be a multiple of n_kv_heads (", KvHeads(), ")");
  if (HeadDim() <= 0 || HeadDim() % 2 != 0) return bad("head_dim must be positive and even, got ", HeadDim());
  if (!head_dim.has_value() && dim % n_heads != 0)
    return bad("dim (", dim, ") is not divisible by n_heads (", n_heads, "); set head_dim");
  if (norm_type != "rmsnorm") return bad("norm_type '", norm_type, "' is not supported (only rmsnorm)");
  if (precision != "float32" && precision != "bfloat16" && precision != "float16")
    return bad("precision must be float32, bfloat16 or float16, got '", precision, "'");
  if (tensor_model_parallel_size != 1)
    return bad("tensor_model_parallel_size ", tensor_model_parallel_size,
               " is not supported; merge tensor-parallel shards into one checkpoint first");
  if (max_seq_len <= 0 || max_batch_size <= 0) return bad("max_seq_len and max_batch_size must be positive");
  if (rope_dim != "3D" && rope_dim != "1D") return bad("rope_dim must be \"3D\" or \"1D\", got '", rope_dim, "'");
  if (pytorch_rope_version != "v1" && pytorch_rope_version != "v2")
    return bad("pytorch_rope_version must be v1 or v2, got '", pytorch_rope_version, "'");
  if (training_type != "video_to_video" && training_type != "text_to_video")
    return bad("training_type must be video_to_video or text_to_video, got '", training_type, "'");
  if (video_latent_shape.size() != 3 || video_latent_shape[0] <= 0 || video_latent_shape[1] <= 0 ||
      video_latent_shape[2] <= 0)
    return bad("video_latent_shape must be 3 positive numbers [T, H, W]");
  if (rope_dim == "3D") {
    const auto split = nn::SplitHeadDim3D(HeadDim());
    if (split.h < 2 || split.t < 2 || split.t % 2) return bad("head_dim ", HeadDim(), " is too small for 3D RoPE");
    if (max_seq_len > PositionTableLength())
      return bad("max_seq_len ", max_seq_len, " exceeds the ", PositionTableLength(), " positions of the latent grid");
  }
  if (apply_abs_pos_emb && rope_dim != "3D") return bad("apply_abs_pos_emb needs rope_dim 3D");
  if (insert_cross_attn && (context_dim <= 0 || insert_cross_attn_every_k_layers <= 0))
    return bad("cross-attention needs positive context_dim and insert_cross_attn_every_k_layers");
  if (apply_yarn) {
    if (!yarn_scale || !yarn_beta_fast || !yarn_beta_slow) return bad("apply_yarn needs yarn_scale and yarn betas");
    if (rope_dim == "3D" && (!original_latent_shape || original_latent_shape->size() != 3))
      return bad("apply_yarn with 3D RoPE needs original_latent_shape [T, H, W]");
    if (rope_dim == "1D" && !original_seq_len) return bad("apply_yarn with 1D RoPE needs original_seq_len");
  }
  if (HasBov() && VideoTokens() + 1 > max_seq_len)
    return bad("text_to_video needs max_seq_len >= T*H*W + 1 = ", VideoTokens() + 1, ", got ", max_seq_len);
  return absl::OkStatus();
}

absl::StatusOr<ArConfig> ArConfig::FromJson(const json& j_in) {
  if (!j_in.is_object()) return absl::InvalidArgumentError("AR config: expected a JSON object");
  const json& j = j_in.contains("params") && j_in["params"].is_object() ? j_in["params"] : j_in;
  static const std::set<std::string> kIgnored = {
      // training / infrastructure keys of ModelConfig and TrainingModelConfig with no effect on the network
      "ckpt_dir", "ckpt_path", "tokenizer", "vision_encoder", "vision_encoder_in_channels", "mm_projector",
      "cache_dir", "ema", "backend", "fsdp_enabled", "fsdp", "act_ckpt_enabled", "inference", "flash_attn",
      "embedding_dropout", "attention_dropout", "hidden_dropout", "depth_init", "context_parallel_size",
      "sequence_parallel", "set_parallel_mode", "attention_tp", "peft_last_n_layers", "peft_every_n_layers",
      "freeze_vision_encoder", "finetune_layers_with_cross_attn", "finetune_layers_without_cross_attn",
      "z_loss_coeff", "multiple_of", "ffn_dim_multiplier", "image_latent_shape"};
  ArConfig c;
  std::set<std::string> known;  // every key read below
  const auto rd = [&](const char* key, auto* out) {
    known.insert(key);
    return Read(j, key, out);
  };
  WFM_RETURN_IF_ERROR(rd("dim", &c.dim));
  WFM_RETURN_IF_ERROR(rd("n_layers", &c.n_layers));
  WFM_RETURN_IF_ERROR(rd("n_heads", &c.n_heads));
  WFM_RETURN_IF_ERROR(rd("n_kv_heads", &c.n_kv_heads));
  WFM_RETURN_IF_ERROR(rd("head_dim", &c.head_dim));
  WFM_RETURN_IF_ERROR(rd("vocab_size", &c.vocab_size));
  WFM_RETURN_IF_ERROR(rd("ffn_hidden_size", &c.ffn_hidden_size));
  WFM_RETURN_IF_ERROR(rd("norm_eps", &c.norm_eps));
  WFM_RETURN_IF_ERROR(rd("norm_type", &c.norm_type));
  WFM_RETURN_IF_ERROR(rd("rope_theta", &c.rope_theta));
  WFM_RETURN_IF_ERROR(rd("apply_abs_pos_emb", &c.apply_abs_pos_emb));
  WFM_RETURN_IF_ERROR(rd("max_batch_size", &c.max_batch_size));
  WFM_RETURN_IF_ERROR(rd("max_seq_len", &c.max_seq_len));
  WFM_RETURN_IF_ERROR(rd("fuse_qkv", &c.fuse_qkv));
  WFM_RETURN_IF_ERROR(rd("causal_mask", &c.causal_mask));
  WFM_RETURN_IF_ERROR(rd("precision", &c.precision));
  WFM_RETURN_IF_ERROR(rd("use_qk_normalization", &c.use_qk_normalization));
  WFM_RETURN_IF_ERROR(rd("tensor_model_parallel_size", &c.tensor_model_parallel_size));
  WFM_RETURN_IF_ERROR(rd("apply_yarn", &c.apply_yarn));
  WFM_RETURN_IF_ERROR(rd("yarn_scale", &c.yarn_scale));
  WFM_RETURN_IF_ERROR(rd("yarn_beta_fast", &c.yarn_beta_fast));
  WFM_RETURN_IF_ERROR(rd("yarn_beta_slow", &c.yarn_beta_slow));
  WFM_RETURN_IF_ERROR(rd("original_seq_len", &c.original_seq_len));
  WFM_RETURN_IF_ERROR(rd("rope_dim", &c.rope_dim));
  WFM_RETURN_IF_ERROR(rd("pytorch_rope_version", &c.pytorch_rope_version));
  WFM_RETURN_IF_ERROR(rd("original_latent_shape", &c.original_latent_shape));
  WFM_RETURN_IF_ERROR(rd("pad_to_multiple_of", &c.pad_to_multiple_of));
  WFM_RETURN_IF_ERROR(rd("insert_cross_attn", &c.insert_cross_attn));
  WFM_RETURN_IF_ERROR(rd("insert_cross_attn_every_k_layers", &c.insert_cross_attn_every_k_layers));
  WFM_RETURN_IF_ERROR(rd("context_dim", &c.context_dim));
  WFM_RETURN_IF_ERROR(rd("num_video_frames", &c.num_video_frames));
  WFM_RETURN_IF_ERROR(rd("video_height", &c.video_height));
  WFM_RETURN_IF_ERROR(rd("video_width", &c.video_width));
  WFM_RETURN_IF_ERROR(rd("video_latent_shape", &c.video_latent_shape));
  WFM_RETURN_IF_ERROR(rd("training_type", &c.training_type));
  // The fixture's wrapper may name the tokenizer's training type next to the params.
  if (&j != &j_in) WFM_RETURN_IF_ERROR(Read(j_in, "training_type", &c.training_type));
  std::vector<std::string> unknown;
  for (auto it = j.begin(); it != j.end(); ++it)
    if (!known.count(it.key()) && !kIgnored.count(it.key())) unknown.push_back(it.key());
  if (!unknown.empty()) WFM_LOG(WARNING) << "AR config: ignoring unknown keys: " << absl::StrJoin(unknown, ", ");
  WFM_RETURN_IF_ERROR(c.Validate());
  return c;
}

absl::StatusOr<ArConfig> ArConfig::FromJsonFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open AR config '", path, "'"));
  json j;
  try {
    in >> j;
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("AR config '", path, "' is not valid JSON: ", e.what()));
  }
  WFM_ASSIGN_OR_RETURN(ArConfig c, FromJson(j), path);
  return c;
}

json ArConfig::ToJson() const {
  json j;
  j["dim"] = dim;
  j["n_layers"] = n_layers;
  j["n_heads"] = n_heads;
  j["n_kv_heads"] = Opt(n_kv_heads);
  j["head_dim"] = Opt(head_dim);
  j["vocab_size"] = vocab_size;
  j["ffn_hidden_size"] = ffn_hidden_size;
  j["norm_eps"] = norm_eps;
  j["norm_type"] = norm_type;
  j["rope_theta"] = rope_theta;
  j["apply_abs_pos_emb"] = apply_abs_pos_emb;
  j["max_batch_size"] = max_batch_size;
  j["max_seq_len"] = max_seq_len;
  j["fuse_qkv"] = fuse_qkv;
  j["causal_mask"] = causal_mask;
  j["precision"] = precision;
  j["use_qk_normalization"] = use_qk_normalization;
  j["tensor_model_parallel_size"] = tensor_model_parallel_size;
  j["apply_yarn"] = apply_yarn;
  j["yarn_scale"] = Opt(yarn_scale);
  j["yarn_beta_fast"] = Opt(yarn_beta_fast);
  j["yarn_beta_slow"] = Opt(yarn_beta_slow);
  j["original_seq_len"] = Opt(original_seq_len);
  j["rope_dim"] = rope_dim;
  j["pytorch_rope_version"] = pytorch_rope_version;
  j["original_latent_shape"] = Opt(original_latent_shape);
  j["pad_to_multiple_of"] = Opt(pad_to_multiple_of);
  j["insert_cross_attn"] = insert_cross_attn;
  j["insert_cross_attn_every_k_layers"] = insert_cross_attn_every_k_layers;
  j["context_dim"] = context_dim;
  j["num_video_frames"] = Opt(num_video_frames);
  j["video_height"] = Opt(video_height);
  j["video_width"] = Opt(video_width);
  j["video_latent_shape"] = video_latent_shape;
  j["training_type"] = training_type;
  return j;
}

absl::StatusOr<ArConfig> ArConfig::FromPresetOrFile(const std::string& name_or_path) {
  std::error_code ec;
  if (std::filesystem::exists(name_or_path, ec)) return FromJsonFile(name_or_path);
  auto preset = Preset(name_or_path);
  if (preset.ok()) return preset;
  return absl::NotFoundError(absl::StrCat("AR config '", name_or_path, "' is neither a file nor a preset (",
                                          absl::StrJoin(PresetNames(), ", "), ")"));
}

std::vector<std::string> ArConfig::PresetNames() {
  return {"4B", "5B-Video2World", "12B", "13B-Video2World", "tiny", "tiny-v2w", "small", "small-v2w"};
}

absl::StatusOr<ArConfig> ArConfig::Preset(const std::string& name) {
  ArConfig c;
  if (name == "4B") {
    c = CosmosBase(16, 4096, std::nullopt);
  } else if (name == "5B-Video2World") {
    c = CosmosBase(16, 4096, std::nullopt);
    MakeVideo2World(&c);
  } else if (name == "12B") {
    c = CosmosBase(40, 5120, 128);
    MakeYarn(&c);
  } else if (name == "13B-Video2World") {
    c = CosmosBase(40, 5120, 128);
    MakeYarn(&c);
    MakeVideo2World(&c);
  } else if (name == "tiny" || name == "tiny-v2w" || name == "small" || name == "small-v2w") {
    const bool tiny = name == "tiny" || name == "tiny-v2w";
    c.dim = tiny ? 64 : 256;
    c.n_layers = tiny ? 2 : 4;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = std::nullopt;
    c.ffn_hidden_size = tiny ? 96 : 768;
    c.vocab_size = tiny ? 512 : 64000;
    c.video_latent_shape = tiny ? std::vector<int64_t>{3, 4, 4} : std::vector<int64_t>{4, 16, 16};
    c.max_seq_len = c.VideoTokens();
    c.max_batch_size = 8;
    c.precision = "float32";
    c.use_qk_normalization = true;
    c.context_dim = tiny ? 32 : 256;
    c.pad_to_multiple_of = std::nullopt;
    c.original_seq_len = c.max_seq_len;
    if (name == "tiny-v2w" || name == "small-v2w") {
      c.insert_cross_attn = true;
      c.apply_abs_pos_emb = true;
      c.training_type = "text_to_video";
      c.max_seq_len = c.VideoTokens() + 1;
    }
  } else {
    return absl::NotFoundError(absl::StrCat("unknown AR preset '", name, "'; known: ",
                                            absl::StrJoin(PresetNames(), ", ")));
  }
  WFM_RETURN_IF_ERROR(c.Validate(), "preset ", name);
  return c;
}

}  // namespace wfm::ar
