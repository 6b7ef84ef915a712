// T5 encoder (Hugging Face transformers models/t5/modeling_t5.py, T5EncoderModel), native in LibTorch.
//
// Numerics follow the reference exactly: relative-position buckets (bidirectional) computed once from the first
// block's `relative_attention_bias` and shared by every block; T5LayerNorm = RMS norm without mean subtraction or
// bias (variance in float32; wfm::nn::RMSNorm); attention logits NOT scaled by 1/sqrt(d_kv) (wfm::nn::Attention with
// scale 1 and an additive bias); padding mask added as finfo(dtype).min; FFN = ReLU (original t5-*) or gated GELU (v1.1 / flan, gelu_new = tanh approximation);
// final layer norm; fp16 activations clamped as the reference does.
//
// Module and parameter names equal the reference state dict ("shared.weight",
// "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
// "encoder.block.3.layer.1.DenseReluDense.wi_0.weight", "encoder.final_layer_norm.weight", ...).
//
//   WFM_ASSIGN_OR_RETURN(auto enc, text::T5TextEncoder::Load("checkpoints/google-t5/t5-11b", {}));
//   WFM_ASSIGN_OR_RETURN(text::TextEmbeddings e, enc->Encode({"A robot arm picks up a cup."}));
//   // e.embeddings: float32 [1, 512, 1024], zero after the prompt's tokens; e.mask: bool [1, 512]
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <nlohmann/json_fwd.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "wfm/core/checkpoint.h"
#include "wfm/core/nn/norm.h"
#include "wfm/core/tensor_map.h"
#include "wfm/core/text/text_encoder.h"
#include "wfm/core/text/tokenizer.h"

namespace wfm::text {

// ---- configuration ----

struct T5Config {
  std::string name = "t5-small";
  int64_t vocab_size = 32128;
  int64_t d_model = 512;
  int64_t d_kv = 64;   // per-head width; inner width = num_heads * d_kv (may differ from d_model)
  int64_t d_ff = 2048;
  int64_t num_layers = 6;  // encoder blocks
  int64_t num_heads = 8;
  int64_t relative_attention_num_buckets = 32;
  int64_t relative_attention_max_distance = 128;
  double layer_norm_epsilon = 1e-6;
  double dropout_rate = 0.1;  // used only in training mode
  // "relu" (t5-*), "gated-gelu" (v1.1 / flan: gelu_new), or "[gated-]ACT" with ACT in relu|gelu|gelu_new|silu.
  std::string feed_forward_proj = "relu";
  int64_t pad_token_id = 0;
  int64_t eos_token_id = 1;

  // Parsed from feed_forward_proj (as T5Config.__init__): activation name and whether the FFN is gated.
  std::string dense_act_fn() const;
  bool is_gated_act() const;
  int64_t inner_dim() const { return num_heads * d_kv; }
  absl::Status Validate() const;

  // Presets: t5-small, t5-base, t5-large, t5-3b, t5-11b (ReLU); t5-v1_1-{small,base,large,xl,xxl} and
  // flan-t5-{small,base,large,xl,xxl} (gated GELU); "google/" and "google-t5/" prefixes are accepted.
  static absl::StatusOr<T5Config> Preset(const std::string& name);
  static std::vector<std::string> PresetNames();
  // Reads a Hugging Face config.json (object or file). Missing keys take the T5Config defaults of transformers;
  // model_type other than "t5" (e.g. "umt5", "mt5" is fine) is rejected when it changes the architecture.
  static absl::StatusOr<T5Config> FromJson(const nlohmann::json& json);
  static absl::StatusOr<T5Config> FromJsonFile(const std::string& path);
  nlohmann::json ToJson() const;  // Hugging Face keys
};

// The bucket of one relative position (memory_position - query_position), as
// T5Attention._relative_position_bucket.
int64_t RelativePositionBucket(int64_t relative_position, bool bidirectional, int64_t num_buckets,
                               int64_t max_distance);
// The same for a whole int64 tensor of relative positions (any device).
at::Tensor RelativePositionBuckets(const at::Tensor& relative_position, bool bidirectional, int64_t num_buckets,
                                   int64_t max_distance);

// ---- modules (names = reference names) ----

// Bias-free linear layer (state dict of torch.nn.Linear(bias=False): "weight" [out, in]) whose weight is only
// allocated, with the model's dtype/device: a checkpoint overwrites it and InitT5Weights initialises fresh models,
// so an 11B encoder is never randomly initialised in float32 on the CPU first.
class T5LinearImpl : public torch::nn::Module {
 public:
  T5LinearImpl(int64_t in_features, int64_t out_features, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x);  // [..., in] -> [..., out]
  at::Tensor weight;                        // [out, in]
};
TORCH_MODULE(T5Linear);

// Embedding table ("weight" [num, dim]), allocated like T5Linear.
class T5EmbeddingImpl : public torch::nn::Module {
 public:
  T5EmbeddingImpl(int64_t num_embeddings, int64_t dim, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& ids);  // int64 [...] -> [..., dim]
  at::Tensor weight;                          // [num, dim]
};
TORCH_MODULE(T5Embedding);

// T5LayerNorm is wfm::nn::RMSNorm (weight * x / sqrt(mean(x^2) + eps), statistics in float32, no mean, no bias).
using T5LayerNorm = wfm::nn::RMSNorm;

class T5AttentionImpl : public torch::nn::Module {
 public:
  T5AttentionImpl(const T5Config& config, bool has_relative_attention_bias, const at::TensorOptions& options);
  // x: [B, L, d_model]; position_bias: [1, H, L, L]; mask_bias: additive [B, 1, 1, L] or undefined.
  // Returns [B, L, d_model]. Attention dropout is not applied in training (wfm::nn::Attention has none).
  at::Tensor forward(const at::Tensor& x, const at::Tensor& position_bias, const at::Tensor& mask_bias);
  // The relative position bias [1, H, Lq, Lk] (only for the block that owns relative_attention_bias).
  at::Tensor ComputeBias(int64_t query_length, int64_t key_length);

  T5Linear q{nullptr}, k{nullptr}, v{nullptr}, o{nullptr};
  T5Embedding relative_attention_bias{nullptr};  // [num_buckets, H]; first block only
  T5Config config;
};
TORCH_MODULE(T5Attention);

// "DenseReluDense": wi -> act -> wo, or gated: act(wi_0) * wi_1 -> wo.
class T5DenseImpl : public torch::nn::Module {
 public:
  T5DenseImpl(const T5Config& config, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x);
  T5Linear wi{nullptr}, wi_0{nullptr}, wi_1{nullptr}, wo{nullptr};
  T5Config config;
};
TORCH_MODULE(T5Dense);

// layer.0 = {SelfAttention, layer_norm}; layer.1 = {DenseReluDense, layer_norm}.
class T5LayerSelfAttentionImpl : public torch::nn::Module {
 public:
  T5LayerSelfAttentionImpl(const T5Config& config, bool has_relative_attention_bias,
                           const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& position_bias, const at::Tensor& mask_bias);
  T5Attention SelfAttention{nullptr};
  T5LayerNorm layer_norm{nullptr};
  double dropout;
};
TORCH_MODULE(T5LayerSelfAttention);

class T5LayerFFImpl : public torch::nn::Module {
 public:
  T5LayerFFImpl(const T5Config& config, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x);
  T5Dense DenseReluDense{nullptr};
  T5LayerNorm layer_norm{nullptr};
  double dropout;
};
TORCH_MODULE(T5LayerFF);

class T5BlockImpl : public torch::nn::Module {
 public:
  T5BlockImpl(const T5Config& config, bool has_relative_attention_bias, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& position_bias, const at::Tensor& mask_bias);
  T5LayerSelfAttention self_attention{nullptr};  // registered as "layer.0"
  T5LayerFF ff{nullptr};                         // registered as "layer.1"
};
TORCH_MODULE(T5Block);

// The encoder stack ("encoder."): blocks + final_layer_norm. The token embedding is the model's `shared`.
class T5StackImpl : public torch::nn::Module {
 public:
  T5StackImpl(const T5Config& config, const at::TensorOptions& options);
  // embeds: [B, L, d_model]; mask: bool [B, L] (true = real token) or undefined (all real).
  at::Tensor forward(const at::Tensor& embeds, const at::Tensor& mask);
  torch::nn::ModuleList block{nullptr};
  T5LayerNorm final_layer_norm{nullptr};
  T5Config config;
};
TORCH_MODULE(T5Stack);

// T5EncoderModel: "shared" token embedding + "encoder" stack. Returns last_hidden_state (not zeroed).
class T5EncoderModelImpl : public torch::nn::Module {
 public:
  // Parameters are allocated with `options` (dtype/device) and left uninitialised, except the layer norms (ones):
  // load a checkpoint or call InitT5Weights.
  explicit T5EncoderModelImpl(const T5Config& config, const at::TensorOptions& options = {});
  // ids: int64 [B, L]; mask: bool/int [B, L] or undefined. Returns [B, L, d_model] in the parameters' dtype.
  at::Tensor forward(const at::Tensor& ids, const at::Tensor& mask = {});
  T5Embedding shared{nullptr};  // [vocab, d_model]
  T5Stack encoder{nullptr};
  T5Config config;
};
TORCH_MODULE(T5EncoderModel);

// Initialises T5 weights as transformers' T5PreTrainedModel._init_weights (factor 1.0): embeddings N(0, 1),
// q N(0, (d_model*d_kv)^-1/2), k/v N(0, d_model^-1/2), o N(0, (H*d_kv)^-1/2), wi N(0, d_model^-1/2),
// wo N(0, d_ff^-1/2), relative bias N(0, d_model^-1/2), norms 1.
void InitT5Weights(T5EncoderModel& model, uint64_t seed);

// ---- checkpoints ----

// Name rules mapping Hugging Face T5 checkpoints onto T5EncoderModel (wfm/core/checkpoint.h): the default rules,
// plus "decoder.*" and "lm_head.weight" of full T5ForConditionalGeneration checkpoints dropped, and
// "encoder.embed_tokens.weight" (the tied alias of "shared.weight") dropped when the file also has
// "shared.weight", else read as "shared.weight".
NameRules T5NameRules(bool has_shared_weight);

// Loads Hugging Face T5 weights strictly through the core checkpoint loader: every encoder parameter must be
// present with its exact shape, nothing unknown may remain, all problems are reported at once, and values are
// converted to the parameters' dtype/device. `path` is a model directory (model.safetensors, its sharded
// index, pytorch_model.bin or its index) or one checkpoint file. Decoder tensors are never read. Weights holding
// NaN/Inf are an error. `files` receives the files that hold the weights.
absl::StatusOr<LoadReport> LoadT5Checkpoint(T5EncoderModel& model, const std::string& path,
                                            std::vector<std::string>* files = nullptr);
// The same for tensors in memory; `source` names them in errors.
absl::Status LoadT5StateDict(T5EncoderModel& model, const TensorMap& state_dict, const std::string& source);

// ---- the text encoder ----

struct T5EncoderOptions {
  int64_t max_length = 512;       // tokens per prompt incl. EOS (Cosmos: 512)
  bool pad_to_max_length = true;  // output L = max_length (Cosmos); false: L = longest prompt in the batch
  std::string device = "cpu";     // "cpu", "cuda", "cuda:N", "auto"
  std::string dtype = "float32";  // compute dtype: float32 | bfloat16 | float16 (outputs are always float32)
  bool trainable = false;         // false: frozen weights, Encode runs without autograd
};

// Tokeniser + T5 encoder behind the TextEncoder interface. The encoder runs only over the batch's longest prompt
// (the attention mask makes longer padding irrelevant) and the result is zero-padded to max_length.
class T5TextEncoder : public TextEncoder {
 public:
  // A Hugging Face directory: config.json + weights (see LoadT5Checkpoint) + spiece.model. A directory without
  // spiece.model whose tokenizer_config.json names ByT5Tokenizer (or whose config says vocab 384) uses bytes.
  static absl::StatusOr<std::unique_ptr<T5TextEncoder>> Load(const std::string& model_dir,
                                                             const T5EncoderOptions& options = {});
  // Builds an encoder from parts, with InitT5Weights(seed) weights; checks that the tokenizer fits the
  // vocabulary.
  static absl::StatusOr<std::unique_ptr<T5TextEncoder>> Create(const T5Config& config,
                                                               std::shared_ptr<Tokenizer> tokenizer,
                                                               const T5EncoderOptions& options = {},
                                                               uint64_t seed = 0);

  absl::StatusOr<TextEmbeddings> Encode(const std::vector<std::string>& prompts) override;
  // The encoder on already tokenised input (ids int64 [B, L], mask bool [B, L]); padded positions are zeroed.
  absl::StatusOr<TextEmbeddings> EncodeTokens(const at::Tensor& ids, const at::Tensor& mask);
  int64_t dim() const override { return config_.d_model; }
  int64_t max_length() const override { return options_.max_length; }
  std::string model_id() const override { return model_id_; }
  c10::Device device() const override { return device_; }
  std::shared_ptr<torch::nn::Module> module() override { return model_.ptr(); }

  const T5Config& config() const { return config_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  T5EncoderModel& model() { return model_; }
  const T5EncoderOptions& options() const { return options_; }
  // Identity string for caches; Load() derives it from config.json, spiece.model and the weight files.
  void set_model_id(std::string id) { model_id_ = std::move(id); }

 private:
  T5TextEncoder(T5Config config, std::shared_ptr<Tokenizer> tokenizer, T5EncoderOptions options,
                c10::Device device);
  // Create() without initialising the weights (Load() overwrites them all).
  static absl::StatusOr<std::unique_ptr<T5TextEncoder>> CreateUninitialized(const T5Config& config,
                                                                            std::shared_ptr<Tokenizer> tokenizer,
                                                                            const T5EncoderOptions& options);
  T5Config config_;
  std::shared_ptr<Tokenizer> tokenizer_;
  T5EncoderOptions options_;
  c10::Device device_;
  T5EncoderModel model_{nullptr};
  std::string model_id_;
};

}  // namespace wfm::text
