// GeneralDIT / VideoExtendGeneralDIT (Cosmos-Predict1 diffusion transformer): config, presets, forward pass and
// strict weight loading. See dit.h for the architecture; each function names the reference it follows.
#include "wfm/diffusion/dit.h"

#include <cmath>
#include <fstream>
#include <set>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <torch/nn/init.h>
#include <torch/nn/modules/linear.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "wfm/core/checkpoint.h"
#include "wfm/core/file_util.h"
#include "wfm/core/logging.h"
#include "wfm/core/nn/attention.h"
#include "wfm/core/nn/embedding.h"
#include "wfm/core/nn/rope.h"
#include "wfm/core/status.h"

namespace wfm::diffusion {
namespace {

torch::nn::Linear MakeLinear(int64_t in, int64_t out, bool bias) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
}

std::vector<std::string> BlockTypes(const std::string& block_config) {
  std::vector<std::string> types;
  for (absl::string_view t : absl::StrSplit(block_config, '-')) {
    const std::string n = absl::AsciiStrToLower(t);
    if (n == "fa" || n == "full_attn") types.push_back("fa");
    else if (n == "ca" || n == "cross_attn") types.push_back("ca");
    else if (n == "mlp" || n == "ff") types.push_back("mlp");
    else types.push_back("?" + n);
  }
  return types;
}

// blocks.py modulate / adaln_norm_state: LayerNorm(x, no affine, eps 1e-6) * (1 + scale) + shift.
at::Tensor AdaLnModulate(const at::Tensor& x, const at::Tensor& shift, const at::Tensor& scale) {
  const int64_t d = x.size(-1);
  return at::layer_norm(x, {d}, {}, {}, 1e-6) * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1);
}

// [SiLU, Linear(D, lora), Linear(lora, chunks*D)] or [SiLU, Linear(D, chunks*D)] (adaLN_modulation).
torch::nn::ModuleList MakeModulation(int64_t dim, int64_t chunks, bool lora, int64_t lora_dim,
                                     std::vector<torch::nn::Linear>* linears) {
  torch::nn::ModuleList list;
  list->push_back(torch::nn::Identity());  // nn.SiLU() in the reference: no parameters
  if (lora) {
    linears->push_back(MakeLinear(dim, lora_dim, false));
    linears->push_back(MakeLinear(lora_dim, chunks * dim, false));
  } else {
    linears->push_back(MakeLinear(dim, chunks * dim, false));
  }
  for (auto& l : *linears) list->push_back(l);
  return list;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// DiTConfig

absl::Status DiTConfig::Validate() const {
  auto bad = [](const std::string& m) { return absl::InvalidArgumentError("DiT config: " + m); };
  if (model_channels <= 0 || num_heads <= 0 || model_channels % num_heads != 0)
    return bad(absl::StrCat("model_channels ", model_channels, " must be a positive multiple of num_heads ",
                            num_heads));
  const int64_t hd = head_dim(), dim_h = hd / 6 * 2, dim_t = hd - 2 * dim_h;
  if (dim_h < 4 || dim_t < 4 || dim_t % 2 != 0)
    return bad(absl::StrCat("head dim ", hd, " is too small for the 3D RoPE split (need >= 12)"));
  if (num_blocks <= 0) return bad("num_blocks must be positive");
  if (patch_spatial <= 0 || patch_temporal <= 0) return bad("patch sizes must be positive");
  if (in_channels != out_channels && in_channels != out_channels + 1)
    return bad(absl::StrCat("in_channels ", in_channels, " must equal out_channels ", out_channels,
                            " (Text2World) or out_channels + 1 (Video2World)"));
  if (max_img_h < patch_spatial || max_img_w < patch_spatial || max_frames < patch_temporal)
    return bad("max_img_h/max_img_w/max_frames must cover at least one patch");
  for (const std::string& t : BlockTypes(block_config))
    if (t[0] == '?') return bad(absl::StrCat("unknown block type '", t.substr(1), "' in block_config '",
                                             block_config, "' (expected FA, CA, MLP)"));
  if (absl::AsciiStrToLower(pos_emb_cls) != "rope3d")
    return bad(absl::StrCat("pos_emb_cls '", pos_emb_cls, "' is not supported (rope3d)"));
  if (pos_emb_interpolation != "crop") return bad("pos_emb_interpolation must be 'crop'");
  if (extra_per_block_abs_pos_emb && absl::AsciiStrToLower(extra_per_block_abs_pos_emb_type) != "learnable")
    return bad(absl::StrCat("extra_per_block_abs_pos_emb_type '", extra_per_block_abs_pos_emb_type,
                            "' is not supported (learnable)"));
  if (use_cross_attn_mask) return bad("use_cross_attn_mask is not supported (the reference models do not use it)");
  if (use_adaln_lora && adaln_lora_dim <= 0) return bad("adaln_lora_dim must be positive");
  if (mlp_ratio <= 0) return bad("mlp_ratio must be positive");
  if (crossattn_emb_channels <= 0) return bad("crossattn_emb_channels must be positive");
  return absl::OkStatus();
}

std::vector<std::string> DiTConfig::PresetNames() {
  return {"predict1-7b-text2world", "predict1-7b-video2world", "predict1-14b-text2world",
          "predict1-14b-video2world", "tiny", "tiny-video2world", "small", "small-video2world",
          "medium", "medium-video2world"};
}

absl::StatusOr<DiTConfig> DiTConfig::Preset(absl::string_view name_in) {
  std::string name = absl::AsciiStrToLower(name_in);
  bool v2w = false;
  if (absl::EndsWith(name, "-video2world")) {
    v2w = true;
    name = name.substr(0, name.size() - std::string("-video2world").size());
  } else if (absl::EndsWith(name, "-text2world")) {
    name = name.substr(0, name.size() - std::string("-text2world").size());
  }
  DiTConfig c;  // FADITV2Config
  if (name == "predict1-7b") {
    // cosmos-1-diffusion-text2world.py Cosmos_Predict1_Text2World_7B
    c.rope_t_extrapolation_ratio = 2.0;
  } else if (name == "predict1-14b") {
    // FADITV2_14B_Config + Cosmos_Predict1_Text2World_14B
    c.model_channels = 5120;
    c.num_heads = 40;
    c.num_blocks = 36;
    c.rope_h_extrapolation_ratio = c.rope_w_extrapolation_ratio = c.rope_t_extrapolation_ratio = 2.0;
    c.extra_h_extrapolation_ratio = c.extra_w_extrapolation_ratio = c.extra_t_extrapolation_ratio = 2.0;
  } else if (name == "tiny") {  // the parity fixtures' shape; unit tests
    c.model_channels = 64;
    c.num_blocks = 2;
    c.num_heads = 4;
    c.adaln_lora_dim = 16;
    c.crossattn_emb_channels = 32;
    c.max_img_h = c.max_img_w = 64;
    c.max_frames = 16;
    c.rope_t_extrapolation_ratio = 2.0;
  } else if (name == "small") {  // CPU experiments; T5-sized text input
    c.model_channels = 384;
    c.num_blocks = 6;
    c.num_heads = 6;
    c.adaln_lora_dim = 96;
    c.max_img_h = c.max_img_w = 128;
    c.max_frames = 32;
    c.rope_t_extrapolation_ratio = 2.0;
  } else if (name == "medium") {
    c.model_channels = 768;
    c.num_blocks = 12;
    c.num_heads = 12;
    c.adaln_lora_dim = 192;
    c.max_img_h = c.max_img_w = 240;
    c.max_frames = 64;
    c.rope_t_extrapolation_ratio = 2.0;
  } else {
    return absl::NotFoundError(absl::StrCat("unknown DiT preset '", name_in, "'; known: ",
                                            absl::StrJoin(PresetNames(), ", ")));
  }
  if (v2w) c.in_channels = c.out_channels + 1;
  return c;
}

namespace {
template <typename T>
absl::Status ReadKey(const nlohmann::json& j, const std::string& key, T* out) {
  try {
    *out = j.at(key).get<T>();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("DiT config key '", key, "': ", e.what()));
  }
}
}  // namespace

absl::StatusOr<DiTConfig> DiTConfig::FromJson(const nlohmann::json& json_in) {
  const nlohmann::json& j = (json_in.is_object() && json_in.contains("config") && json_in["config"].is_object())
                                ? json_in["config"]
                                : json_in;
  if (!j.is_object()) return absl::InvalidArgumentError("DiT config must be a JSON object");
  DiTConfig c;
  std::vector<std::string> unknown;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    absl::Status s;
#define WFM_DIT_KEY(name) else if (k == #name) s = ReadKey(j, k, &c.name)
    if (k == "_target_" || k == "__class__" || k == "_recursive_") continue;
    else if (k == "patch_spatial" && it->is_array()) {
      // The reference type hint says tuple; every published config passes an int.
      std::vector<int64_t> p;
      s = ReadKey(j, k, &p);
      if (s.ok() && (p.empty() || std::any_of(p.begin(), p.end(), [&](int64_t v) { return v != p[0]; })))
        s = absl::InvalidArgumentError("DiT config: patch_spatial must be square");
      if (s.ok()) c.patch_spatial = p[0];
    }
    WFM_DIT_KEY(max_img_h); WFM_DIT_KEY(max_img_w); WFM_DIT_KEY(max_frames);
    WFM_DIT_KEY(in_channels); WFM_DIT_KEY(out_channels); WFM_DIT_KEY(patch_spatial); WFM_DIT_KEY(patch_temporal);
    WFM_DIT_KEY(concat_padding_mask); WFM_DIT_KEY(block_config); WFM_DIT_KEY(model_channels);
    WFM_DIT_KEY(num_blocks); WFM_DIT_KEY(num_heads); WFM_DIT_KEY(mlp_ratio); WFM_DIT_KEY(block_x_format);
    WFM_DIT_KEY(crossattn_emb_channels); WFM_DIT_KEY(use_cross_attn_mask); WFM_DIT_KEY(pos_emb_cls);
    WFM_DIT_KEY(pos_emb_learnable); WFM_DIT_KEY(pos_emb_interpolation); WFM_DIT_KEY(affline_emb_norm);
    WFM_DIT_KEY(use_adaln_lora); WFM_DIT_KEY(adaln_lora_dim);
    WFM_DIT_KEY(rope_h_extrapolation_ratio); WFM_DIT_KEY(rope_w_extrapolation_ratio);
    WFM_DIT_KEY(rope_t_extrapolation_ratio); WFM_DIT_KEY(extra_per_block_abs_pos_emb);
    WFM_DIT_KEY(extra_per_block_abs_pos_emb_type); WFM_DIT_KEY(extra_h_extrapolation_ratio);
    WFM_DIT_KEY(extra_w_extrapolation_ratio); WFM_DIT_KEY(extra_t_extrapolation_ratio);
    WFM_DIT_KEY(add_augment_sigma_embedding); WFM_DIT_KEY(base_fps);
    else unknown.push_back(k);
#undef WFM_DIT_KEY
    WFM_RETURN_IF_ERROR(s);
  }
  if (!unknown.empty())
    return absl::InvalidArgumentError(absl::StrCat("DiT config: unsupported key(s) ", absl::StrJoin(unknown, ", ")));
  WFM_RETURN_IF_ERROR(c.Validate());
  return c;
}

absl::StatusOr<DiTConfig> DiTConfig::FromJsonFile(const std::string& path) {
  WFM_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(path, ": not valid JSON"));
  auto c = FromJson(j);
  if (!c.ok()) return Annotate(c.status(), path);
  return c;
}

absl::StatusOr<DiTConfig> DiTConfig::FromPresetOrFile(const std::string& name_or_path) {
  auto preset = Preset(name_or_path);
  if (preset.ok()) return preset;
  if (absl::EndsWith(name_or_path, ".json") || name_or_path.find('/') != std::string::npos)
    return FromJsonFile(name_or_path);
  return absl::InvalidArgumentError(absl::StrCat("'", name_or_path, "' is neither a DiT preset (",
                                                 absl::StrJoin(PresetNames(), ", "), ") nor a .json file"));
}

nlohmann::json DiTConfig::ToJson() const {
  nlohmann::json j;
#define WFM_DIT_PUT(name) j[#name] = name
  WFM_DIT_PUT(max_img_h); WFM_DIT_PUT(max_img_w); WFM_DIT_PUT(max_frames); WFM_DIT_PUT(in_channels);
  WFM_DIT_PUT(out_channels); WFM_DIT_PUT(patch_spatial); WFM_DIT_PUT(patch_temporal);
  WFM_DIT_PUT(concat_padding_mask); WFM_DIT_PUT(block_config); WFM_DIT_PUT(model_channels);
  WFM_DIT_PUT(num_blocks); WFM_DIT_PUT(num_heads); WFM_DIT_PUT(mlp_ratio); WFM_DIT_PUT(block_x_format);
  WFM_DIT_PUT(crossattn_emb_channels); WFM_DIT_PUT(use_cross_attn_mask); WFM_DIT_PUT(pos_emb_cls);
  WFM_DIT_PUT(pos_emb_learnable); WFM_DIT_PUT(pos_emb_interpolation); WFM_DIT_PUT(affline_emb_norm);
  WFM_DIT_PUT(use_adaln_lora); WFM_DIT_PUT(adaln_lora_dim); WFM_DIT_PUT(rope_h_extrapolation_ratio);
  WFM_DIT_PUT(rope_w_extrapolation_ratio); WFM_DIT_PUT(rope_t_extrapolation_ratio);
  WFM_DIT_PUT(extra_per_block_abs_pos_emb); WFM_DIT_PUT(extra_per_block_abs_pos_emb_type);
  WFM_DIT_PUT(extra_h_extrapolation_ratio); WFM_DIT_PUT(extra_w_extrapolation_ratio);
  WFM_DIT_PUT(extra_t_extrapolation_ratio); WFM_DIT_PUT(add_augment_sigma_embedding); WFM_DIT_PUT(base_fps);
#undef WFM_DIT_PUT
  return j;
}

// ---------------------------------------------------------------------------------------------------------------
// Modules

DiTAttentionImpl::DiTAttentionImpl(int64_t query_dim, int64_t context_dim, int64_t heads_in, bool self_attn)
    : heads(heads_in), head_dim(query_dim / heads_in), self_attention(self_attn) {
  const int64_t inner = head_dim * heads;
  to_q = register_module("to_q", torch::nn::ModuleList());
  to_k = register_module("to_k", torch::nn::ModuleList());
  to_v = register_module("to_v", torch::nn::ModuleList());
  to_out = register_module("to_out", torch::nn::ModuleList());
  to_q->push_back(MakeLinear(query_dim, inner, false));
  to_q->push_back(wfm::nn::RMSNorm(wfm::nn::RMSNormOptions(head_dim).eps(1e-6)));
  to_k->push_back(MakeLinear(context_dim, inner, false));
  to_k->push_back(wfm::nn::RMSNorm(wfm::nn::RMSNormOptions(head_dim).eps(1e-6)));
  to_v->push_back(MakeLinear(context_dim, inner, false));
  to_v->push_back(torch::nn::Identity());
  to_out->push_back(MakeLinear(inner, query_dim, false));
  to_out->push_back(torch::nn::Identity());  // nn.Dropout(0)
}

// attention.py Attention.cal_qkv + cal_attn (per-head q/k RMSNorm; RoPE on self-attention only).
at::Tensor DiTAttentionImpl::forward(const at::Tensor& x, const at::Tensor& context, const at::Tensor& rope_cos,
                                     const at::Tensor& rope_sin) {
  const int64_t B = x.size(0), S = x.size(1);
  const at::Tensor& ctx = (self_attention || !context.defined()) ? x : context;
  const int64_t M = ctx.size(1);
  at::Tensor q = to_q[0]->as<torch::nn::Linear>()->forward(x).view({B, S, heads, head_dim});
  at::Tensor k = to_k[0]->as<torch::nn::Linear>()->forward(ctx).view({B, M, heads, head_dim});
  at::Tensor v = to_v[0]->as<torch::nn::Linear>()->forward(ctx).view({B, M, heads, head_dim});
  q = to_q[1]->as<wfm::nn::RMSNorm>()->forward(q);
  k = to_k[1]->as<wfm::nn::RMSNorm>()->forward(k);
  if (self_attention && rope_cos.defined()) {
    const at::Tensor c = rope_cos.view({1, S, 1, head_dim}), s = rope_sin.view({1, S, 1, head_dim});
    q = wfm::nn::ApplyRotary(q, c, s);
    k = wfm::nn::ApplyRotary(k, c, s);
  }
  const at::Tensor o = wfm::nn::Attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2));  // [B,H,S,hd]
  return to_out[0]->as<torch::nn::Linear>()->forward(o.transpose(1, 2).reshape({B, S, heads * head_dim}));
}

DiTBuildingBlockImpl::DiTBuildingBlockImpl(const std::string& type, const DiTConfig& c)
    : block_type(type), dim(c.model_channels) {
  if (type == "mlp") {
    mlp = register_module(
        "block", wfm::nn::GeluMlp(wfm::nn::GeluMlpOptions(dim, static_cast<int64_t>(dim * c.mlp_ratio))));
  } else {
    auto holder = register_module("block", NamedModules());
    attn = holder->add("attn", DiTAttention(dim, type == "ca" ? c.crossattn_emb_channels : dim, c.num_heads,
                                            type == "fa"));
  }
  std::vector<torch::nn::Linear> linears;
  adaLN_modulation = register_module("adaLN_modulation",
                                     MakeModulation(dim, 3, c.use_adaln_lora, c.adaln_lora_dim, &linears));
}

// blocks.py DITBuildingBlock.forward
at::Tensor DiTBuildingBlockImpl::forward(const at::Tensor& x, const at::Tensor& emb, const at::Tensor& crossattn_emb,
                                         const at::Tensor& rope_cos, const at::Tensor& rope_sin,
                                         const at::Tensor& adaln_lora) {
  at::Tensor mod = at::silu(emb);
  for (size_t i = 1; i < adaLN_modulation->size(); ++i) mod = adaLN_modulation[i]->as<torch::nn::Linear>()->forward(mod);
  if (adaln_lora.defined()) mod = mod + adaln_lora;
  const auto chunks = mod.chunk(3, 1);  // shift, scale, gate [B, D]
  const at::Tensor h = AdaLnModulate(x, chunks[0], chunks[1]);
  at::Tensor out;
  if (block_type == "mlp") out = mlp(h);
  else out = attn(h, block_type == "ca" ? crossattn_emb : at::Tensor(), rope_cos, rope_sin);
  return x + chunks[2].unsqueeze(1) * out;
}

GeneralDiTImpl::GeneralDiTImpl(const DiTConfig& config) : config_(config) {
  TORCH_CHECK(config_.Validate().ok(), config_.Validate().ToString());
  const DiTConfig& c = config_;
  const int64_t D = c.model_channels;
  // x_embedder = PatchEmbed: proj = Sequential(Rearrange, Linear(bias=False))
  x_embedder = register_module("x_embedder", NamedModules());
  auto proj = x_embedder->add("proj", torch::nn::ModuleList());
  const int64_t in_ch = c.in_channels + (c.concat_padding_mask ? 1 : 0);
  patch_proj = MakeLinear(in_ch * c.patch_spatial * c.patch_spatial * c.patch_temporal, D, false);
  proj->push_back(torch::nn::Identity());
  proj->push_back(patch_proj);

  const int64_t len_h = c.max_img_h / c.patch_spatial, len_w = c.max_img_w / c.patch_spatial,
                len_t = c.max_frames / c.patch_temporal;
  pos_embedder = register_module("pos_embedder", NamedModules());
  pos_embedder->register_buffer("seq", at::arange(std::max({len_h, len_w, len_t}), at::kFloat));
  if (c.extra_per_block_abs_pos_emb) {
    extra_pos_embedder = register_module("extra_pos_embedder", NamedModules());
    pos_emb_h = extra_pos_embedder->register_parameter("pos_emb_h", at::zeros({len_h, D}));
    pos_emb_w = extra_pos_embedder->register_parameter("pos_emb_w", at::zeros({len_w, D}));
    pos_emb_t = extra_pos_embedder->register_parameter("pos_emb_t", at::zeros({len_t, D}));
  }

  auto make_t_embedder = [&](torch::nn::Linear* l1, torch::nn::Linear* l2) {
    torch::nn::ModuleList list;
    list->push_back(wfm::nn::Timesteps(wfm::nn::TimestepsOptions(D)));
    auto te = NamedModules();
    *l1 = te->add("linear_1", MakeLinear(D, D, !c.use_adaln_lora));
    *l2 = te->add("linear_2", c.use_adaln_lora ? MakeLinear(D, 3 * D, false) : MakeLinear(D, D, true));
    list->push_back(te);
    return list;
  };
  t_embedder = register_module("t_embedder", make_t_embedder(&t_linear_1, &t_linear_2));
  if (c.video_conditioned() && c.add_augment_sigma_embedding)
    augment_sigma_embedder = register_module("augment_sigma_embedder", make_t_embedder(&aug_linear_1, &aug_linear_2));

  blocks = register_module("blocks", NamedModules());
  const std::vector<std::string> types = BlockTypes(c.block_config);
  for (int64_t b = 0; b < c.num_blocks; ++b) {
    auto tb = blocks->add(absl::StrCat("block", b), NamedModules());
    auto list = tb->add("blocks", torch::nn::ModuleList());
    layers.emplace_back();
    for (const std::string& t : types) {
      DiTBuildingBlock bb(t, c);
      list->push_back(bb);
      layers.back().push_back(bb);
    }
  }

  final_layer = register_module("final_layer", NamedModules());
  std::vector<torch::nn::Linear> fl;
  final_adaLN_modulation =
      final_layer->add("adaLN_modulation", MakeModulation(D, 2, c.use_adaln_lora, c.adaln_lora_dim, &fl));
  final_linear = final_layer->add(
      "linear", MakeLinear(D, c.patch_spatial * c.patch_spatial * c.patch_temporal * c.out_channels, false));
  if (c.affline_emb_norm)
    affline_norm = register_module("affline_norm", wfm::nn::RMSNorm(wfm::nn::RMSNormOptions(D).eps(1e-6)));
  InitializeWeights();
}

// general_dit.py GeneralDIT.initialize_weights (+ LearnablePosEmbAxis trunc_normal_(std=0.02)).
void GeneralDiTImpl::InitializeWeights() {
  torch::NoGradGuard no_grad;
  for (auto& m : modules(/*include_self=*/false)) {
    if (auto* l = m->as<torch::nn::Linear>()) {
      torch::nn::init::xavier_uniform_(l->weight);
      if (l->bias.defined()) l->bias.zero_();
    }
  }
  for (auto* l : {&t_linear_1, &t_linear_2, &aug_linear_1, &aug_linear_2}) {
    if (!*l) continue;
    (*l)->weight.normal_(0.0, 0.02);
    if ((*l)->bias.defined()) (*l)->bias.zero_();
  }
  for (auto& layer : layers)
    for (auto& bb : layer) bb->adaLN_modulation[bb->adaLN_modulation->size() - 1]->as<torch::nn::Linear>()->weight.zero_();
  for (at::Tensor* p : {&pos_emb_h, &pos_emb_w, &pos_emb_t})
    if (p->defined()) p->normal_(0.0, 0.02).clamp_(-2.0, 2.0);  // timm trunc_normal_(std=.02, a=-2, b=2)
  if (affline_norm) affline_norm->weight.fill_(1.0);
  for (auto& layer : layers)
    for (auto& bb : layer)
      if (bb->attn) {
        bb->attn->to_q[1]->as<wfm::nn::RMSNorm>()->weight.fill_(1.0);
        bb->attn->to_k[1]->as<wfm::nn::RMSNorm>()->weight.fill_(1.0);
      }
}

absl::Status GeneralDiTImpl::ValidateInputs(const DiTInputs& in) const {
  const DiTConfig& c = config_;
  auto bad = [](const std::string& m) { return absl::InvalidArgumentError(m); };
  if (!in.x.defined() || in.x.dim() != 5)
    return bad("DiT input x must be [B, C, T, H, W]");
  const int64_t B = in.x.size(0), C = in.x.size(1), T = in.x.size(2), H = in.x.size(3), W = in.x.size(4);
  if (C != c.latent_channels())
    return bad(absl::StrCat("DiT input has ", C, " latent channels, the network expects ", c.latent_channels()));
  if (H % c.patch_spatial || W % c.patch_spatial || T % c.patch_temporal)
    return bad(absl::StrCat("latent grid ", T, "x", H, "x", W, " is not divisible by the patch ", c.patch_temporal,
                            "x", c.patch_spatial, "x", c.patch_spatial));
  const int64_t tp = T / c.patch_temporal, hp = H / c.patch_spatial, wp = W / c.patch_spatial;
  if (hp > c.max_img_h / c.patch_spatial || wp > c.max_img_w / c.patch_spatial)
    return bad(absl::StrCat("latent size ", H, "x", W, " exceeds the network's maximum ", c.max_img_h, "x",
                            c.max_img_w, " (max_img_h x max_img_w)"));
  if (c.extra_per_block_abs_pos_emb && tp > c.max_latent_frames())
    return bad(absl::StrCat(T, " latent frames exceed the network's maximum of ", c.max_latent_frames(),
                            " (max_frames / patch_temporal)"));
  if (!in.fps.has_value() && T != 1) return bad("a clip of more than one latent frame needs an fps");
  if (!in.timesteps.defined() || in.timesteps.numel() != B)
    return bad(absl::StrCat("timesteps must have one value per sample (", B, ")"));
  if (!in.crossattn_emb.defined() || in.crossattn_emb.dim() != 3 || in.crossattn_emb.size(0) != B ||
      in.crossattn_emb.size(2) != c.crossattn_emb_channels)
    return bad(absl::StrCat("crossattn_emb must be [", B, ", N, ", c.crossattn_emb_channels, "]"));
  if (in.padding_mask.defined() && (in.padding_mask.dim() != 4 || in.padding_mask.size(0) != B ||
                                    in.padding_mask.size(1) != 1))
    return bad(absl::StrCat("padding_mask must be [", B, ", 1, H, W]"));
  if (c.video_conditioned()) {
    const auto& m = in.condition_video_input_mask;
    if (!m.defined() || m.dim() != 5 || m.size(0) != B || m.size(1) != 1 || m.size(2) != T || m.size(3) != H ||
        m.size(4) != W)
      return bad(absl::StrCat("the Video2World network needs condition_video_input_mask [", B, ", 1, ", T, ", ", H,
                              ", ", W, "]"));
    if (c.add_augment_sigma_embedding && in.condition_video_augment_sigma.defined() &&
        in.condition_video_augment_sigma.numel() != B)
      return bad("condition_video_augment_sigma must have one value per sample");
  }
  return absl::OkStatus();
}

// blocks.py Timesteps + TimestepEmbedding; general_dit_video_conditioned.py augment_sigma_embedder; affline_norm.
std::pair<at::Tensor, at::Tensor> GeneralDiTImpl::EmbedTimesteps(const DiTInputs& in) {
  const auto dtype = patch_proj->weight.scalar_type();
  auto embed = [&](torch::nn::ModuleList& te, torch::nn::Linear& l1, torch::nn::Linear& l2,
                   const at::Tensor& t) -> std::pair<at::Tensor, at::Tensor> {
    const at::Tensor sample = te[0]->as<wfm::nn::Timesteps>()->forward(t.flatten().to(at::kFloat)).to(dtype);
    const at::Tensor h = l2(at::silu(l1(sample)));
    if (config_.use_adaln_lora) return {sample, h};  // emb_B_D = sample, adaln_lora_B_3D = MLP(sample)
    return {h, at::Tensor()};
  };
  auto [emb, lora] = embed(t_embedder, t_linear_1, t_linear_2, in.timesteps);
  if (augment_sigma_embedder) {
    // Image batches / no condition frames use sigma 0 (the reference's zeros_like).
    const at::Tensor aug = in.condition_video_augment_sigma.defined()
                               ? in.condition_video_augment_sigma
                               : at::zeros({in.x.size(0)}, in.timesteps.options());
    emb = emb + embed(augment_sigma_embedder, aug_linear_1, aug_linear_2, aug).first;
  }
  if (affline_norm) emb = affline_norm(emb);
  return {emb, lora};
}

// general_dit.py GeneralDIT.forward (prepare_embedded_sequence, blocks, decoder_head).
at::Tensor GeneralDiTImpl::Forward(const DiTInputs& in) {
  const DiTConfig& c = config_;
  {
    const absl::Status s = ValidateInputs(in);
    TORCH_CHECK(s.ok(), s.message());
  }
  const auto dtype = patch_proj->weight.scalar_type();
  at::Tensor x = in.x.to(dtype);
  const int64_t B = x.size(0), T = x.size(2), H = x.size(3), W = x.size(4);
  if (c.video_conditioned()) x = at::cat({x, in.condition_video_input_mask.to(x.options())}, 1);
  if (c.concat_padding_mask) {
    at::Tensor pm = in.padding_mask.defined()
                        ? at::upsample_nearest2d(in.padding_mask.to(x.options()), {H, W})  // [B, 1, H, W]
                        : at::zeros({B, 1, H, W}, x.options());
    x = at::cat({x, pm.unsqueeze(2).expand({B, 1, T, H, W})}, 1);
  }
  // PatchEmbed: "b c (t r) (h m) (w n) -> b t h w (c r m n)"
  const int64_t pt = c.patch_temporal, p = c.patch_spatial, Tp = T / pt, Hp = H / p, Wp = W / p, Cin = x.size(1);
  x = x.view({B, Cin, Tp, pt, Hp, p, Wp, p}).permute({0, 2, 4, 6, 1, 3, 5, 7}).reshape({B, Tp * Hp * Wp, Cin * pt * p * p});
  x = patch_proj(x);  // [B, S, D]
  const int64_t S = Tp * Hp * Wp, D = c.model_channels;

  // RoPE (VideoRopePosition3DEmb) and the learnable absolute embedding (LearnablePosEmbAxis, normalised).
  wfm::nn::Rope3DOptions ro(c.head_dim(), {Tp, Hp, Wp});
  ro.h_extrapolation_ratio(c.rope_h_extrapolation_ratio)
      .w_extrapolation_ratio(c.rope_w_extrapolation_ratio)
      .t_extrapolation_ratio(c.rope_t_extrapolation_ratio)
      .base_fps(c.base_fps);
  if (in.fps.has_value()) ro.fps(*in.fps);
  auto [rope_cos, rope_sin] = wfm::nn::RopeCosSin(wfm::nn::Rope3DAngles(ro).to(x.device()));  // [S, head_dim]
  at::Tensor extra;
  if (c.extra_per_block_abs_pos_emb) {
    at::Tensor e = pos_emb_t.slice(0, 0, Tp).view({Tp, 1, 1, D}) + pos_emb_h.slice(0, 0, Hp).view({1, Hp, 1, D}) +
                   pos_emb_w.slice(0, 0, Wp).view({1, 1, Wp, D});  // [T, H, W, D]
    const at::Tensor norm = at::linalg_vector_norm(e, 2, {-1}, true, at::kFloat);
    e = e / (norm * std::sqrt(1.0 / D) + 1e-6).to(e.scalar_type());  // attention.py normalize(dim=-1, eps=1e-6)
    extra = e.reshape({1, S, D});
  }

  auto [emb, lora] = EmbedTimesteps(in);
  const at::Tensor ctx = in.crossattn_emb.to(dtype);
  for (auto& layer : layers) {  // GeneralDITTransformerBlock.forward
    if (extra.defined()) x = x + extra;
    for (auto& bb : layer) x = bb(x, emb, ctx, rope_cos, rope_sin, lora);
  }

  // FinalLayer: shift/scale from its own modulation + the first 2D of the LoRA term.
  at::Tensor mod = at::silu(emb);
  for (size_t i = 1; i < final_adaLN_modulation->size(); ++i)
    mod = final_adaLN_modulation[i]->as<torch::nn::Linear>()->forward(mod);
  if (lora.defined()) mod = mod + lora.narrow(1, 0, 2 * D);
  const auto ss = mod.chunk(2, 1);
  x = final_linear(AdaLnModulate(x, ss[0], ss[1]));  // [B, S, p*p*pt*C]
  // "(B T) (H W) (p1 p2 t C) -> B C (T t) (H p1) (W p2)"
  const int64_t Co = c.out_channels;
  return x.view({B, Tp, Hp, Wp, p, p, pt, Co}).permute({0, 7, 1, 6, 2, 4, 3, 5}).reshape({B, Co, T, H, W});
}

// ---------------------------------------------------------------------------------------------------------------
// Weights

NameRules DiTNameRules(bool use_ema) {
  NameRules rules = use_ema ? EmaNameRules() : DefaultNameRules();
  // DiffusionModel.model.state_dict() (published model.pt) holds, beside "net.*", the noise-level uncertainty
  // head and the conditioner; neither is part of the network.
  rules.insert(rules.begin(), NameRule::Drop("^(logvar|conditioner)\\."));
  return rules;
}

absl::Status LoadDiTWeights(GeneralDiTImpl& net, const TensorMap& tensors, const std::string& source) {
  LoadOptions o;
  o.rules = DiTNameRules(false);
  WFM_ASSIGN_OR_RETURN(LoadReport report, LoadStateDict(net, tensors, o, source));
  WFM_LOG(DEBUG) << report.Summary();
  return absl::OkStatus();
}

absl::Status LoadDiTWeights(GeneralDiTImpl& net, const std::string& path, bool use_ema) {
  LoadOptions o;
  o.rules = DiTNameRules(use_ema);
  WFM_ASSIGN_OR_RETURN(LoadReport report, LoadCheckpoint(net, path, o));
  WFM_LOG(INFO) << "DiT weights: " << report.Summary();
  return absl::OkStatus();
}

}  // namespace wfm::diffusion
