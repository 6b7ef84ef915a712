// T5 encoder: config (presets, config.json), relative position buckets, the modules, and the text encoder.
// Port of transformers/models/t5/modeling_t5.py (T5LayerNorm, T5DenseActDense, T5DenseGatedActDense, T5Attention,
// T5LayerSelfAttention, T5LayerFF, T5Block, T5Stack, T5EncoderModel) and configuration_t5.py (T5Config).
#include "wfm/core/text/t5.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/functional.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "wfm/core/file_util.h"
#include "wfm/core/logging.h"
#include "wfm/core/nn/attention.h"
#include "wfm/core/runtime.h"
#include "wfm/core/status.h"

namespace wfm::text {
namespace {

namespace fs = std::filesystem;

const char* const kActivations[] = {"relu", "gelu", "gelu_new", "gelu_pytorch_tanh", "silu", "swish"};

std::vector<std::string> SplitProj(const std::string& proj) { return absl::StrSplit(proj, '-'); }

at::Tensor Activation(const std::string& name, const at::Tensor& x) {
  if (name == "relu") return at::relu(x);
  if (name == "gelu") return at::gelu(x);                                   // exact erf GELU
  if (name == "gelu_new" || name == "gelu_pytorch_tanh") return at::gelu(x, "tanh");  // 0.5x(1+tanh(...))
  return at::silu(x);                                                       // silu / swish
}

// The reference clamps fp16 activations after each sub-layer when an inf appeared (T5Block.forward).
at::Tensor ClampFp16(const at::Tensor& x) {
  if (x.scalar_type() != at::kHalf) return x;
  if (!at::isinf(x).any().item<bool>()) return x;
  const double clamp_value = 65504.0 - 1000.0;  // torch.finfo(float16).max - 1000
  return at::clamp(x, -clamp_value, clamp_value);
}

struct Preset {
  const char* name;
  int64_t d_model, d_kv, d_ff, num_layers, num_heads;
  const char* ffn;
};
// Hugging Face config.json of each published checkpoint (vocab 32128, 32 buckets, max distance 128, eps 1e-6).
constexpr Preset kPresets[] = {
    {"t5-small", 512, 64, 2048, 6, 8, "relu"},
    {"t5-base", 768, 64, 3072, 12, 12, "relu"},
    {"t5-large", 1024, 64, 4096, 24, 16, "relu"},
    {"t5-3b", 1024, 128, 16384, 24, 32, "relu"},
    {"t5-11b", 1024, 128, 65536, 24, 128, "relu"},
    {"t5-v1_1-small", 512, 64, 1024, 8, 6, "gated-gelu"},
    {"t5-v1_1-base", 768, 64, 2048, 12, 12, "gated-gelu"},
    {"t5-v1_1-large", 1024, 64, 2816, 24, 16, "gated-gelu"},
    {"t5-v1_1-xl", 2048, 64, 5120, 24, 32, "gated-gelu"},
    {"t5-v1_1-xxl", 4096, 64, 10240, 24, 64, "gated-gelu"},
    {"flan-t5-small", 512, 64, 1024, 8, 6, "gated-gelu"},
    {"flan-t5-base", 768, 64, 2048, 12, 12, "gated-gelu"},
    {"flan-t5-large", 1024, 64, 2816, 24, 16, "gated-gelu"},
    {"flan-t5-xl", 2048, 64, 5120, 24, 32, "gated-gelu"},
    {"flan-t5-xxl", 4096, 64, 10240, 24, 64, "gated-gelu"},
};

}  // namespace

// ---- T5Config ----

std::string T5Config::dense_act_fn() const {
  if (feed_forward_proj == "gated-gelu") return "gelu_new";  // configuration_t5.py backwards compatibility
  return SplitProj(feed_forward_proj).back();
}

bool T5Config::is_gated_act() const { return SplitProj(feed_forward_proj).front() == "gated"; }

absl::Status T5Config::Validate() const {
  const auto parts = SplitProj(feed_forward_proj);
  if ((parts.size() == 2 && parts[0] != "gated") || parts.size() > 2) {
    return absl::InvalidArgumentError(absl::StrCat("feed_forward_proj '", feed_forward_proj,
                                                   "' is not of the form '[gated-]ACT' (e.g. 'relu', 'gated-gelu')"));
  }
  const std::string act = dense_act_fn();
  if (std::find(std::begin(kActivations), std::end(kActivations), act) == std::end(kActivations)) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported T5 activation '", act, "' (feed_forward_proj '",
                                                   feed_forward_proj, "')"));
  }
  if (vocab_size < 1 || d_model < 1 || d_kv < 1 || d_ff < 1 || num_layers < 1 || num_heads < 1) {
    return absl::InvalidArgumentError(absl::StrCat("T5 config has a non-positive size: vocab ", vocab_size,
                                                   ", d_model ", d_model, ", d_kv ", d_kv, ", d_ff ", d_ff,
                                                   ", layers ", num_layers, ", heads ", num_heads));
  }
  if (relative_attention_num_buckets < 4 || relative_attention_max_distance < relative_attention_num_buckets / 4 + 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "T5 relative attention needs num_buckets >= 4 and max_distance > num_buckets / 4; got ",
        relative_attention_num_buckets, " and ", relative_attention_max_distance));
  }
  if (!(layer_norm_epsilon > 0) || !(dropout_rate >= 0 && dropout_rate < 1)) {
    return absl::InvalidArgumentError(absl::StrCat("T5 config: layer_norm_epsilon ", layer_norm_epsilon,
                                                   " must be > 0 and dropout_rate ", dropout_rate, " in [0, 1)"));
  }
  return absl::OkStatus();
}

std::vector<std::string> T5Config::PresetNames() {
  std::vector<std::string> names;
  for (const auto& p : kPresets) names.push_back(p.name);
  return names;
}

absl::StatusOr<T5Config> T5Config::Preset(const std::string& name) {
  std::string key = name;
  for (const char* prefix : {"google-t5/", "google/"}) {
    if (absl::StartsWith(key, prefix)) key = key.substr(std::strlen(prefix));
  }
  for (const auto& p : kPresets) {
    if (key == p.name) {
      T5Config c;
      c.name = p.name;
      c.d_model = p.d_model;
      c.d_kv = p.d_kv;
      c.d_ff = p.d_ff;
      c.num_layers = p.num_layers;
      c.num_heads = p.num_heads;
      c.feed_forward_proj = p.ffn;
      return c;
    }
  }
  return absl::NotFoundError(absl::StrCat("unknown T5 preset '", name, "'; known: ", absl::StrJoin(PresetNames(), ", ")));
}

absl::StatusOr<T5Config> T5Config::FromJson(const nlohmann::json& j) {
  if (!j.is_object()) return absl::InvalidArgumentError("T5 config is not a JSON object");
  T5Config c;  // transformers T5Config defaults
  try {
    const std::string model_type = j.value("model_type", std::string("t5"));
    if (model_type == "umt5") {
      return absl::UnimplementedError(
          "model_type 'umt5' has a relative attention bias in every layer; only T5/mT5/ByT5 encoders are supported");
    }
    if (model_type != "t5" && model_type != "mt5") {
      return absl::InvalidArgumentError(absl::StrCat("model_type '", model_type, "' is not a T5 model"));
    }
    c.name = j.value("_name_or_path", model_type);
    auto get_int = [&](const char* key, int64_t* out) {
      if (j.contains(key) && !j[key].is_null()) *out = j[key].get<int64_t>();
    };
    get_int("vocab_size", &c.vocab_size);
    get_int("d_model", &c.d_model);
    get_int("d_kv", &c.d_kv);
    get_int("d_ff", &c.d_ff);
    get_int("num_layers", &c.num_layers);
    get_int("num_heads", &c.num_heads);
    get_int("relative_attention_num_buckets", &c.relative_attention_num_buckets);
    get_int("relative_attention_max_distance", &c.relative_attention_max_distance);
    get_int("pad_token_id", &c.pad_token_id);
    get_int("eos_token_id", &c.eos_token_id);
    if (j.contains("layer_norm_epsilon")) c.layer_norm_epsilon = j["layer_norm_epsilon"].get<double>();
    if (j.contains("dropout_rate")) c.dropout_rate = j["dropout_rate"].get<double>();
    if (j.contains("feed_forward_proj")) c.feed_forward_proj = j["feed_forward_proj"].get<std::string>();
    // Newer transformers also save the parsed fields; PretrainedConfig lets them override the parsed values.
    if (j.contains("dense_act_fn") || j.contains("is_gated_act")) {
      const std::string act = j.value("dense_act_fn", c.dense_act_fn());
      const bool gated = j.value("is_gated_act", c.is_gated_act());
      c.feed_forward_proj = gated ? absl::StrCat("gated-", act) : act;
    }
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("T5 config: a value has the wrong type: ", e.what()));
  }
  WFM_RETURN_IF_ERROR(c.Validate());
  return c;
}

absl::StatusOr<T5Config> T5Config::FromJsonFile(const std::string& path) {
  WFM_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat("'", path, "' is not valid JSON"));
  WFM_ASSIGN_OR_RETURN(T5Config c, FromJson(j), "reading '", path, "'");
  return c;
}

nlohmann::json T5Config::ToJson() const {
  return nlohmann::json{{"model_type", "t5"},
                        {"architectures", {"T5EncoderModel"}},
                        {"_name_or_path", name},
                        {"vocab_size", vocab_size},
                        {"d_model", d_model},
                        {"d_kv", d_kv},
                        {"d_ff", d_ff},
                        {"num_layers", num_layers},
                        {"num_heads", num_heads},
                        {"relative_attention_num_buckets", relative_attention_num_buckets},
                        {"relative_attention_max_distance", relative_attention_max_distance},
                        {"layer_norm_epsilon", layer_norm_epsilon},
                        {"dropout_rate", dropout_rate},
                        {"feed_forward_proj", feed_forward_proj},
                        {"dense_act_fn", dense_act_fn()},
                        {"is_gated_act", is_gated_act()},
                        {"pad_token_id", pad_token_id},
                        {"eos_token_id", eos_token_id},
                        {"is_encoder_decoder", false}};
}

// ---- relative position buckets (T5Attention._relative_position_bucket) ----

int64_t RelativePositionBucket(int64_t relative_position, bool bidirectional, int64_t num_buckets,
                               int64_t max_distance) {
  int64_t bucket = 0;
  int64_t n = relative_position;
  if (bidirectional) {
    num_buckets /= 2;
    if (n > 0) bucket += num_buckets;
    n = n < 0 ? -n : n;
  } else {
    n = n < 0 ? -n : 0;
  }
  const int64_t max_exact = num_buckets / 2;
  if (n < max_exact) return bucket + n;
  // float32 arithmetic as the reference (torch.log of a float tensor; the Python-float divisor rounded to float).
  const float ratio = std::log(static_cast<float>(n) / static_cast<float>(max_exact)) /
                      static_cast<float>(std::log(static_cast<double>(max_distance) / static_cast<double>(max_exact)));
  int64_t large = max_exact + static_cast<int64_t>(ratio * static_cast<float>(num_buckets - max_exact));
  large = std::min(large, num_buckets - 1);
  return bucket + large;
}

at::Tensor RelativePositionBuckets(const at::Tensor& relative_position, bool bidirectional, int64_t num_buckets,
                                   int64_t max_distance) {
  at::Tensor buckets = at::zeros_like(relative_position);
  at::Tensor n = relative_position;
  if (bidirectional) {
    num_buckets /= 2;
    buckets = buckets + (n > 0).to(at::kLong) * num_buckets;
    n = at::abs(n);
  } else {
    n = -at::minimum(n, at::zeros_like(n));
  }
  const int64_t max_exact = num_buckets / 2;
  const at::Tensor is_small = n < max_exact;
  at::Tensor large = max_exact + (at::log(n.to(at::kFloat) / static_cast<double>(max_exact)) /
                                  std::log(static_cast<double>(max_distance) / static_cast<double>(max_exact)) *
                                  static_cast<double>(num_buckets - max_exact))
                                     .to(at::kLong);
  large = at::minimum(large, at::full_like(large, num_buckets - 1));
  return buckets + at::where(is_small, n, large);
}

// ---- modules ----

T5LinearImpl::T5LinearImpl(int64_t in_features, int64_t out_features, const at::TensorOptions& options) {
  weight = register_parameter("weight", at::empty({out_features, in_features}, options));
}

at::Tensor T5LinearImpl::forward(const at::Tensor& x) { return at::linear(x, weight); }

T5EmbeddingImpl::T5EmbeddingImpl(int64_t num_embeddings, int64_t dim, const at::TensorOptions& options) {
  weight = register_parameter("weight", at::empty({num_embeddings, dim}, options));
}

at::Tensor T5EmbeddingImpl::forward(const at::Tensor& ids) { return at::embedding(weight, ids); }

T5AttentionImpl::T5AttentionImpl(const T5Config& c, bool has_relative_attention_bias, const at::TensorOptions& options)
    : config(c) {
  const int64_t inner = c.inner_dim();
  q = register_module("q", T5Linear(c.d_model, inner, options));
  k = register_module("k", T5Linear(c.d_model, inner, options));
  v = register_module("v", T5Linear(c.d_model, inner, options));
  o = register_module("o", T5Linear(inner, c.d_model, options));
  if (has_relative_attention_bias) {
    relative_attention_bias =
        register_module("relative_attention_bias", T5Embedding(c.relative_attention_num_buckets, c.num_heads, options));
  }
}

at::Tensor T5AttentionImpl::ComputeBias(int64_t query_length, int64_t key_length) {
  TORCH_CHECK(!relative_attention_bias.is_empty(), "T5Attention::ComputeBias on a block without the bias table");
  const auto opts = at::TensorOptions().dtype(at::kLong).device(relative_attention_bias->weight.device());
  const at::Tensor context = at::arange(query_length, opts).unsqueeze(1);  // [Lq, 1]
  const at::Tensor memory = at::arange(key_length, opts).unsqueeze(0);     // [1, Lk]
  const at::Tensor buckets = RelativePositionBuckets(memory - context, /*bidirectional=*/true,
                                                     config.relative_attention_num_buckets,
                                                     config.relative_attention_max_distance);  // [Lq, Lk]
  return relative_attention_bias(buckets).permute({2, 0, 1}).unsqueeze(0);  // [1, H, Lq, Lk]
}

at::Tensor T5AttentionImpl::forward(const at::Tensor& x, const at::Tensor& position_bias, const at::Tensor& mask_bias) {
  const int64_t b = x.size(0), l = x.size(1), h = config.num_heads, dk = config.d_kv;
  const at::Tensor qh = q(x).view({b, l, h, dk}).transpose(1, 2);  // [B, H, L, dk]
  const at::Tensor kh = k(x).view({b, l, h, dk}).transpose(1, 2);  // [B, H, L, dk]
  const at::Tensor vh = v(x).view({b, l, h, dk}).transpose(1, 2);  // [B, H, L, dk]
  // No 1/sqrt(dk) scaling: T5 folds it into the initialisation of q.
  const at::Tensor out = wfm::nn::Attention(
      qh, kh, vh, wfm::nn::AttentionOptions().bias(position_bias).mask(mask_bias).scale(1.0));  // [B, H, L, dk]
  return o(out.transpose(1, 2).reshape({b, l, h * dk}));  // [B, L, d_model]
}

T5DenseImpl::T5DenseImpl(const T5Config& c, const at::TensorOptions& options) : config(c) {
  auto linear = [&](int64_t in, int64_t out) { return T5Linear(in, out, options); };
  if (c.is_gated_act()) {
    wi_0 = register_module("wi_0", linear(c.d_model, c.d_ff));
    wi_1 = register_module("wi_1", linear(c.d_model, c.d_ff));
  } else {
    wi = register_module("wi", linear(c.d_model, c.d_ff));
  }
  wo = register_module("wo", linear(c.d_ff, c.d_model));
}

at::Tensor T5DenseImpl::forward(const at::Tensor& x) {
  const std::string act = config.dense_act_fn();
  at::Tensor h = config.is_gated_act() ? Activation(act, wi_0(x)) * wi_1(x) : Activation(act, wi(x));  // [B, L, d_ff]
  if (is_training() && config.dropout_rate > 0) h = at::dropout(h, config.dropout_rate, true);
  return wo(h);  // [B, L, d_model]
}

T5LayerSelfAttentionImpl::T5LayerSelfAttentionImpl(const T5Config& c, bool has_relative_attention_bias,
                                                   const at::TensorOptions& options)
    : dropout(c.dropout_rate) {
  SelfAttention = register_module("SelfAttention", T5Attention(c, has_relative_attention_bias, options));
  layer_norm = register_module("layer_norm", T5LayerNorm(wfm::nn::RMSNormOptions(c.d_model).eps(c.layer_norm_epsilon)));
}

at::Tensor T5LayerSelfAttentionImpl::forward(const at::Tensor& x, const at::Tensor& position_bias,
                                             const at::Tensor& mask_bias) {
  at::Tensor y = SelfAttention(layer_norm(x), position_bias, mask_bias);
  if (is_training() && dropout > 0) y = at::dropout(y, dropout, true);
  return x + y;
}

T5LayerFFImpl::T5LayerFFImpl(const T5Config& c, const at::TensorOptions& options) : dropout(c.dropout_rate) {
  DenseReluDense = register_module("DenseReluDense", T5Dense(c, options));
  layer_norm = register_module("layer_norm", T5LayerNorm(wfm::nn::RMSNormOptions(c.d_model).eps(c.layer_norm_epsilon)));
}

at::Tensor T5LayerFFImpl::forward(const at::Tensor& x) {
  at::Tensor y = DenseReluDense(layer_norm(x));
  if (is_training() && dropout > 0) y = at::dropout(y, dropout, true);
  return x + y;
}

T5BlockImpl::T5BlockImpl(const T5Config& c, bool has_relative_attention_bias, const at::TensorOptions& options) {
  self_attention = T5LayerSelfAttention(c, has_relative_attention_bias, options);
  ff = T5LayerFF(c, options);
  register_module("layer", torch::nn::ModuleList(self_attention, ff));
}

at::Tensor T5BlockImpl::forward(const at::Tensor& x, const at::Tensor& position_bias, const at::Tensor& mask_bias) {
  return ClampFp16(ff(ClampFp16(self_attention(x, position_bias, mask_bias))));
}

T5StackImpl::T5StackImpl(const T5Config& c, const at::TensorOptions& options) : config(c) {
  block = register_module("block", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_layers; ++i) {
    block->push_back(T5Block(c, /*has_relative_attention_bias=*/i == 0, options));
  }
  final_layer_norm =
      register_module("final_layer_norm", T5LayerNorm(wfm::nn::RMSNormOptions(c.d_model).eps(c.layer_norm_epsilon)));
}

at::Tensor T5StackImpl::forward(const at::Tensor& embeds, const at::Tensor& mask) {
  at::Tensor x = embeds;  // [B, L, d_model]
  if (is_training() && config.dropout_rate > 0) x = at::dropout(x, config.dropout_rate, true);
  const int64_t l = x.size(1);
  // The first block owns the relative position table; its bias is shared by all blocks (T5Stack.forward).
  auto first = block->ptr<T5BlockImpl>(0);
  const at::Tensor position_bias =
      first->self_attention->SelfAttention->ComputeBias(l, l).to(x.scalar_type()).contiguous();  // [1, H, L, L]
  at::Tensor mask_bias;  // undefined when every position is a real token (nothing to mask)
  if (mask.defined() && !mask.all().item<bool>()) {
    // get_extended_attention_mask: (1 - mask) * finfo(dtype).min, broadcast over heads and queries. The reference
    // adds it to the position bias first; for unmasked keys the sum is the same, masked keys get probability 0.
    const double min_value = x.scalar_type() == at::kHalf       ? -65504.0
                             : x.scalar_type() == at::kBFloat16 ? -3.3895313892515355e38
                                                                : static_cast<double>(std::numeric_limits<float>::lowest());
    mask_bias = (1.0 - mask.to(x.scalar_type())).mul(min_value).view({mask.size(0), 1, 1, l});  // [B, 1, 1, L]
  }
  for (size_t i = 0; i < block->size(); ++i) x = block->ptr<T5BlockImpl>(i)->forward(x, position_bias, mask_bias);
  x = final_layer_norm(x);
  if (is_training() && config.dropout_rate > 0) x = at::dropout(x, config.dropout_rate, true);
  return x;
}

T5EncoderModelImpl::T5EncoderModelImpl(const T5Config& c, const at::TensorOptions& options) : config(c) {
  shared = register_module("shared", T5Embedding(c.vocab_size, c.d_model, options));
  encoder = register_module("encoder", T5Stack(c, options));
  to(options.device(), options.dtype().toScalarType());  // the layer norms (created as float32 ones on the CPU)
}

at::Tensor T5EncoderModelImpl::forward(const at::Tensor& ids, const at::Tensor& mask) {
  return encoder(shared(ids), mask);  // [B, L, d_model]
}

// transformers T5PreTrainedModel._init_weights (initializer_factor 1).
void InitT5Weights(T5EncoderModel& model, uint64_t seed) {
  const T5Config& c = model->config;
  at::Generator gen = at::detail::createCPUGenerator(seed);
  at::NoGradGuard no_grad;
  auto normal = [&](at::Tensor& p, double std) {
    p.copy_(at::empty(p.sizes(), at::kFloat).normal_(0.0, std, gen));
  };
  const double dm = static_cast<double>(c.d_model);
  normal(model->shared->weight, 1.0);
  for (size_t i = 0; i < model->encoder->block->size(); ++i) {
    auto block = model->encoder->block->ptr<T5BlockImpl>(i);
    auto& attn = *block->self_attention->SelfAttention;
    normal(attn.q->weight, 1.0 / std::sqrt(dm * static_cast<double>(c.d_kv)));
    normal(attn.k->weight, 1.0 / std::sqrt(dm));
    normal(attn.v->weight, 1.0 / std::sqrt(dm));
    normal(attn.o->weight, 1.0 / std::sqrt(static_cast<double>(c.num_heads * c.d_kv)));
    if (!attn.relative_attention_bias.is_empty()) normal(attn.relative_attention_bias->weight, 1.0 / std::sqrt(dm));
    auto& ffn = *block->ff->DenseReluDense;
    if (c.is_gated_act()) {
      normal(ffn.wi_0->weight, 1.0 / std::sqrt(dm));
      normal(ffn.wi_1->weight, 1.0 / std::sqrt(dm));
    } else {
      normal(ffn.wi->weight, 1.0 / std::sqrt(dm));
    }
    normal(ffn.wo->weight, 1.0 / std::sqrt(static_cast<double>(c.d_ff)));
    block->self_attention->layer_norm->weight.fill_(1.0);
    block->ff->layer_norm->weight.fill_(1.0);
  }
  model->encoder->final_layer_norm->weight.fill_(1.0);
}

}  // namespace wfm::text
