// GeneralDIT / VideoExtendGeneralDIT (Cosmos-Predict1 diffusion transformer), the pieces it shares with
// MiniTrainDiT (dit_internal.h), input validation and weight loading. See dit.h for the architecture; each
// function names the reference it follows.
#include "wfm/diffusion/dit.h"

#include <cmath>
#include <tuple>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/linear.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "dit_internal.h"
#include "wfm/core/checkpoint.h"
#include "wfm/core/logging.h"
#include "wfm/core/nn/attention.h"
#include "wfm/core/nn/embedding.h"
#include "wfm/core/nn/rope.h"
#include "wfm/core/status.h"

namespace wfm::diffusion {

// ---------------------------------------------------------------------------------------------------------------
// Shared pieces

namespace internal {

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

torch::nn::ModuleList MakeModulation(int64_t dim, int64_t chunks, bool lora, int64_t lora_dim) {
  torch::nn::ModuleList list;
  list->push_back(torch::nn::Identity());  // nn.SiLU() in the reference: no parameters
  if (lora) {
    list->push_back(MakeLinear(dim, lora_dim, false));
    list->push_back(MakeLinear(lora_dim, chunks * dim, false));
  } else {
    list->push_back(MakeLinear(dim, chunks * dim, false));
  }
  return list;
}

at::Tensor ApplyModulation(torch::nn::ModuleList& modulation, const at::Tensor& emb) {
  at::Tensor h = at::silu(emb);
  for (size_t i = 1; i < modulation->size(); ++i) h = modulation[i]->as<torch::nn::Linear>()->forward(h);
  return h;
}

// blocks.py modulate / adaln_norm_state.
at::Tensor AdaLnModulate(const at::Tensor& x, const at::Tensor& shift, const at::Tensor& scale) {
  return at::layer_norm(x, {x.size(-1)}, {}, {}, 1e-6) * (1 + scale) + shift;
}

// general_dit.py prepare_embedded_sequence (padding-mask channel) + blocks.py PatchEmbed's Rearrange;
// general_dit_video_conditioned.py / video2world_dit.py concatenate the condition mask first.
at::Tensor PatchifyInputs(const DiTConfig& c, const DiTInputs& in, at::ScalarType dtype) {
  at::Tensor x = in.x.to(dtype);
  const int64_t B = x.size(0), T = x.size(2), H = x.size(3), W = x.size(4);
  if (c.video_conditioned()) {
    x = at::cat({x, in.condition_video_input_mask.defined() ? in.condition_video_input_mask.to(x.options())
                                                            : at::zeros({B, 1, T, H, W}, x.options())},
                1);
  }
  if (c.concat_padding_mask) {
    const at::Tensor pm = in.padding_mask.defined()
                              ? at::upsample_nearest2d(in.padding_mask.to(x.options()), {H, W})  // [B, 1, H, W]
                              : at::zeros({B, 1, H, W}, x.options());
    x = at::cat({x, pm.unsqueeze(2).expand({B, 1, T, H, W})}, 1);
  }
  const int64_t pt = c.patch_temporal, p = c.patch_spatial, C = x.size(1);
  return x.view({B, C, T / pt, pt, H / p, p, W / p, p})
      .permute({0, 2, 4, 6, 1, 3, 5, 7})
      .reshape({B, T / pt, H / p, W / p, C * pt * p * p});
}

at::Tensor Unpatchify(const DiTConfig& c, const at::Tensor& x) {
  const int64_t B = x.size(0), Tp = x.size(1), Hp = x.size(2), Wp = x.size(3);
  const int64_t p = c.patch_spatial, pt = c.patch_temporal, Co = c.out_channels;
  return x.reshape({B, Tp, Hp, Wp, p, p, pt, Co})
      .permute({0, 7, 1, 6, 2, 4, 3, 5})
      .reshape({B, Co, Tp * pt, Hp * p, Wp * p});
}

std::pair<at::Tensor, at::Tensor> RopeTables(const DiTConfig& c, int64_t tp, int64_t hp, int64_t wp,
                                             std::optional<double> fps, bool fps_modulation, c10::Device device) {
  wfm::nn::Rope3DOptions ro(c.head_dim(), {tp, hp, wp});
  ro.h_extrapolation_ratio(c.rope_h_extrapolation_ratio)
      .w_extrapolation_ratio(c.rope_w_extrapolation_ratio)
      .t_extrapolation_ratio(c.rope_t_extrapolation_ratio)
      .base_fps(c.base_fps);
  if (fps_modulation && fps.has_value()) ro.fps(*fps);
  return wfm::nn::RopeCosSin(wfm::nn::Rope3DAngles(ro).to(device));  // [S, head_dim] each
}

at::Tensor LearnableAbsEmbedding(const at::Tensor& pos_emb_t, const at::Tensor& pos_emb_h, const at::Tensor& pos_emb_w,
                                 int64_t tp, int64_t hp, int64_t wp) {
  const int64_t D = pos_emb_t.size(1);
  const at::Tensor e = pos_emb_t.slice(0, 0, tp).view({tp, 1, 1, D}) + pos_emb_h.slice(0, 0, hp).view({1, hp, 1, D}) +
                       pos_emb_w.slice(0, 0, wp).view({1, 1, wp, D});  // [T, H, W, D]
  const at::Tensor norm = at::linalg_vector_norm(e, 2, {-1}, true, at::kFloat);
  return e / (norm * std::sqrt(1.0 / D) + 1e-6).to(e.scalar_type());
}

// attention.py Attention.cal_qkv + cal_attn; text2image_dit.py Attention.compute_qkv + compute_attention.
at::Tensor AttentionCore(torch::nn::Linear& q_proj, torch::nn::Linear& k_proj, torch::nn::Linear& v_proj,
                         torch::nn::Linear& out_proj, wfm::nn::RMSNorm& q_norm, wfm::nn::RMSNorm& k_norm,
                         int64_t heads, bool self_attention, const at::Tensor& x, const at::Tensor& context,
                         const at::Tensor& rope_cos, const at::Tensor& rope_sin,
                         std::pair<at::Tensor, at::Tensor>* kv) {
  const int64_t B = x.size(0), S = x.size(1), hd = x.size(2) / heads;
  at::Tensor q = q_norm(q_proj(x).view({B, S, heads, hd}));
  at::Tensor k, v;  // [B, M, heads, hd]
  if (!self_attention && kv != nullptr && kv->first.defined()) {
    std::tie(k, v) = *kv;
  } else {
    const at::Tensor& ctx = (self_attention || !context.defined()) ? x : context;
    const int64_t M = ctx.size(1);
    k = k_norm(k_proj(ctx).view({B, M, heads, hd}));
    v = v_proj(ctx).view({B, M, heads, hd});
    if (self_attention && rope_cos.defined()) {  // RoPE on self-attention only
      const at::Tensor c = rope_cos.view({1, S, 1, hd}), s = rope_sin.view({1, S, 1, hd});
      q = wfm::nn::ApplyRotary(q, c, s);
      k = wfm::nn::ApplyRotary(k, c, s);
    }
    if (!self_attention && kv != nullptr) *kv = {k, v};
  }
  const at::Tensor o = wfm::nn::Attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2));  // [B,H,S,hd]
  return out_proj(o.transpose(1, 2).reshape({B, S, heads * hd}));
}

CrossAttentionCache* UsableCache(const DiTInputs& in, bool* reuse) {
  *reuse = false;
  if (in.crossattn_cache == nullptr || at::GradMode::is_enabled()) return nullptr;
  *reuse = in.crossattn_cache->Bind(in.crossattn_emb);
  return in.crossattn_cache;
}

at::Tensor TimestepSinusoid(const at::Tensor& t, int64_t dim, at::ScalarType dtype) {
  return wfm::nn::SinusoidalTimestepEmbedding(t.flatten().to(at::kFloat), wfm::nn::TimestepsOptions(dim)).to(dtype);
}

}  // namespace internal

using namespace internal;

// ---------------------------------------------------------------------------------------------------------------
// CrossAttentionCache

void CrossAttentionCache::Clear() {
  context = at::Tensor();
  kv.clear();
}

bool CrossAttentionCache::Bind(const at::Tensor& emb) {
  if (context.defined() && !kv.empty()) {
    if (context.is_same(emb)) return true;
    if (context.sizes() == emb.sizes() && context.scalar_type() == emb.scalar_type() &&
        context.device() == emb.device() && at::equal(context, emb)) {
      context = emb;  // the next pass on this tensor skips the comparison
      return true;
    }
  }
  Clear();
  context = emb;
  return false;
}

std::pair<at::Tensor, at::Tensor>* CrossAttentionCache::Slot(size_t index) {
  if (kv.size() <= index) kv.resize(index + 1);
  return &kv[index];
}

// ---------------------------------------------------------------------------------------------------------------
// DiffusionNetwork

DiffusionNetwork::DiffusionNetwork(const DiTConfig& config) : config_(config) {
  const absl::Status s = config_.Validate();
  TORCH_CHECK(s.ok(), s.ToString());
}

void DiffusionNetwork::RegisterEmbedders(bool rope_range_buffers) {
  const DiTConfig& c = config_;
  const int64_t D = c.model_channels;
  // PatchEmbed: proj = Sequential(Rearrange, Linear(bias=False))
  x_embedder = register_module("x_embedder", NamedModules());
  auto proj = x_embedder->add("proj", torch::nn::ModuleList());
  patch_proj = MakeLinear(c.embedder_channels() * c.patch_spatial * c.patch_spatial * c.patch_temporal, D, false);
  proj->push_back(torch::nn::Identity());
  proj->push_back(patch_proj);
  const int64_t len_h = c.max_img_h / c.patch_spatial, len_w = c.max_img_w / c.patch_spatial,
                len_t = c.max_frames / c.patch_temporal;
  pos_embedder = register_module("pos_embedder", NamedModules());
  pos_embedder->register_buffer("seq", at::arange(std::max({len_h, len_w, len_t}), at::kFloat));
  if (rope_range_buffers) {
    const int64_t hd = c.head_dim(), dim_h = hd / 6 * 2, dim_t = hd - 2 * dim_h;
    pos_embedder->register_buffer("dim_spatial_range",
                                  at::arange(0, dim_h, 2, at::kLong).slice(0, 0, dim_h / 2).to(at::kFloat) / dim_h);
    pos_embedder->register_buffer("dim_temporal_range",
                                  at::arange(0, dim_t, 2, at::kLong).slice(0, 0, dim_t / 2).to(at::kFloat) / dim_t);
  }
  if (c.extra_per_block_abs_pos_emb) {
    extra_pos_embedder = register_module("extra_pos_embedder", NamedModules());
    pos_emb_h = extra_pos_embedder->register_parameter("pos_emb_h", at::zeros({len_h, D}));
    pos_emb_w = extra_pos_embedder->register_parameter("pos_emb_w", at::zeros({len_w, D}));
    pos_emb_t = extra_pos_embedder->register_parameter("pos_emb_t", at::zeros({len_t, D}));
  }
}

c10::Device DiffusionNetwork::device() const {
  const auto p = parameters();
  return p.empty() ? c10::Device(c10::kCPU) : p.front().device();
}

at::ScalarType DiffusionNetwork::dtype() const {
  const auto p = parameters();
  return p.empty() ? at::kFloat : p.front().scalar_type();
}

absl::Status DiffusionNetwork::ValidateInputs(const DiTInputs& in) const {
  const DiTConfig& c = config_;
  auto bad = [](const std::string& m) { return absl::InvalidArgumentError(m); };
  if (!in.x.defined() || in.x.dim() != 5) return bad("DiT input x must be [B, C, T, H, W]");
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
  if (tp > c.max_latent_frames())
    return bad(absl::StrCat(T, " latent frames exceed the network's maximum of ", c.max_latent_frames(),
                            " (max_frames / patch_temporal)"));
  if (!in.fps.has_value() && T != 1) return bad("a clip of more than one latent frame needs an fps");
  const auto& ts = in.timesteps;
  const bool per_frame = ts.defined() && ts.dim() == 2 && ts.size(0) == B && (ts.size(1) == T || ts.size(1) == 1);
  if (!ts.defined() || !(ts.numel() == B || (per_frame && !c.is_general())))
    return bad(absl::StrCat("timesteps must have one value per sample (", B, ")",
                            c.is_general() ? "" : " or per sample and latent frame [B, T]"));
  if (per_frame && ts.size(1) == T && T > 1 && c.patch_temporal != 1)
    return bad("per-frame timesteps need patch_temporal 1");
  if (!in.crossattn_emb.defined() || in.crossattn_emb.dim() != 3 || in.crossattn_emb.size(0) != B)
    return bad(absl::StrCat("crossattn_emb must be [", B, ", N, D]"));
  const int64_t ctx_dim = c.crossattn_proj_in_channels > 0 && !c.is_general() ? c.crossattn_proj_in_channels
                                                                               : c.crossattn_emb_channels;
  if (in.crossattn_emb.size(2) != ctx_dim)
    return bad(absl::StrCat("crossattn_emb has ", in.crossattn_emb.size(2), " channels, the network expects ",
                            ctx_dim));
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

absl::StatusOr<std::shared_ptr<DiffusionNetwork>> MakeDiffusionNetwork(const DiTConfig& config) {
  WFM_RETURN_IF_ERROR(config.Validate());
  return CatchToStatus("building the DiT", [&]() -> absl::StatusOr<std::shared_ptr<DiffusionNetwork>> {
    if (config.is_general()) return std::shared_ptr<DiffusionNetwork>(std::make_shared<GeneralDiTImpl>(config));
    return std::shared_ptr<DiffusionNetwork>(std::make_shared<MiniTrainDiTImpl>(config));
  });
}

// ---------------------------------------------------------------------------------------------------------------
// GeneralDiT modules

DiTAttentionImpl::DiTAttentionImpl(int64_t query_dim, int64_t context_dim, int64_t heads_in, bool self_attn)
    : heads(heads_in), head_dim(query_dim / heads_in), self_attention(self_attn) {
  const int64_t inner = head_dim * heads;
  to_q = register_module("to_q", torch::nn::ModuleList());
  to_k = register_module("to_k", torch::nn::ModuleList());
  to_v = register_module("to_v", torch::nn::ModuleList());
  to_out = register_module("to_out", torch::nn::ModuleList());
  q_proj = MakeLinear(query_dim, inner, false);
  k_proj = MakeLinear(context_dim, inner, false);
  v_proj = MakeLinear(context_dim, inner, false);
  out_proj = MakeLinear(inner, query_dim, false);
  q_norm = wfm::nn::RMSNorm(wfm::nn::RMSNormOptions(head_dim).eps(1e-6));
  k_norm = wfm::nn::RMSNorm(wfm::nn::RMSNormOptions(head_dim).eps(1e-6));
  to_q->push_back(q_proj);
  to_q->push_back(q_norm);
  to_k->push_back(k_proj);
  to_k->push_back(k_norm);
  to_v->push_back(v_proj);
  to_v->push_back(torch::nn::Identity());
  to_out->push_back(out_proj);
  to_out->push_back(torch::nn::Identity());  // nn.Dropout(0)
}

at::Tensor DiTAttentionImpl::forward(const at::Tensor& x, const at::Tensor& context, const at::Tensor& rope_cos,
                                     const at::Tensor& rope_sin, std::pair<at::Tensor, at::Tensor>* kv) {
  return AttentionCore(q_proj, k_proj, v_proj, out_proj, q_norm, k_norm, heads, self_attention, x, context, rope_cos,
                       rope_sin, kv);
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
  adaLN_modulation =
      register_module("adaLN_modulation", MakeModulation(dim, 3, c.use_adaln_lora, c.adaln_lora_dim));
}

// blocks.py DITBuildingBlock.forward; x [B, S, D], modulation per sample.
at::Tensor DiTBuildingBlockImpl::forward(const at::Tensor& x, const at::Tensor& emb, const at::Tensor& crossattn_emb,
                                         const at::Tensor& rope_cos, const at::Tensor& rope_sin,
                                         const at::Tensor& adaln_lora, std::pair<at::Tensor, at::Tensor>* kv) {
  at::Tensor mod = ApplyModulation(adaLN_modulation, emb);
  if (adaln_lora.defined()) mod = mod + adaln_lora;
  const auto chunks = mod.unsqueeze(1).chunk(3, -1);  // shift, scale, gate [B, 1, D]
  const at::Tensor h = AdaLnModulate(x, chunks[0], chunks[1]);
  at::Tensor out;
  if (block_type == "mlp") out = mlp(h);
  else if (block_type == "ca") out = attn(h, crossattn_emb, rope_cos, rope_sin, kv);
  else out = attn(h, at::Tensor(), rope_cos, rope_sin);
  return x + chunks[2] * out;
}

GeneralDiTImpl::GeneralDiTImpl(const DiTConfig& config) : DiffusionNetwork(config) {
  TORCH_CHECK(config_.is_general(), "GeneralDiT built from a MiniTrainDIT config");
  const DiTConfig& c = config_;
  const int64_t D = c.model_channels;
  RegisterEmbedders(/*rope_range_buffers=*/false);  // non-persistent in Predict1

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
  final_adaLN_modulation = final_layer->add("adaLN_modulation", MakeModulation(D, 2, c.use_adaln_lora, c.adaln_lora_dim));
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
    if (auto* n = m->as<wfm::nn::RMSNorm>()) n->weight.fill_(1.0);
  }
  for (auto* l : {&t_linear_1, &t_linear_2, &aug_linear_1, &aug_linear_2}) {
    if (!*l) continue;
    (*l)->weight.normal_(0.0, 0.02);
    if ((*l)->bias.defined()) (*l)->bias.zero_();
  }
  for (auto& layer : layers)
    for (auto& bb : layer)
      bb->adaLN_modulation[bb->adaLN_modulation->size() - 1]->as<torch::nn::Linear>()->weight.zero_();
  for (at::Tensor* p : {&pos_emb_h, &pos_emb_w, &pos_emb_t})
    if (p->defined()) p->normal_(0.0, 0.02).clamp_(-2.0, 2.0);  // timm trunc_normal_(std=.02, a=-2, b=2)
}

// blocks.py Timesteps + TimestepEmbedding; general_dit_video_conditioned.py augment_sigma_embedder; affline_norm.
std::pair<at::Tensor, at::Tensor> GeneralDiTImpl::EmbedTimesteps(const DiTInputs& in) {
  const auto dtype = patch_proj->weight.scalar_type();
  const int64_t D = config_.model_channels;
  auto embed = [&](torch::nn::Linear& l1, torch::nn::Linear& l2, const at::Tensor& t) -> std::pair<at::Tensor, at::Tensor> {
    const at::Tensor sample = TimestepSinusoid(t, D, dtype);  // [B, D]
    const at::Tensor h = l2(at::silu(l1(sample)));
    if (config_.use_adaln_lora) return {sample, h};  // emb_B_D = sample, adaln_lora_B_3D = MLP(sample)
    return {h, at::Tensor()};
  };
  auto [emb, lora] = embed(t_linear_1, t_linear_2, in.timesteps);
  if (augment_sigma_embedder) {
    // Image batches / no condition frames use sigma 0 (the reference's zeros_like).
    const at::Tensor aug = in.condition_video_augment_sigma.defined()
                               ? in.condition_video_augment_sigma
                               : at::zeros({in.x.size(0)}, in.timesteps.options());
    emb = emb + embed(aug_linear_1, aug_linear_2, aug).first;
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
  at::Tensor x = patch_proj(PatchifyInputs(c, in, dtype));  // [B, Tp, Hp, Wp, D]
  const int64_t B = x.size(0), Tp = x.size(1), Hp = x.size(2), Wp = x.size(3), D = c.model_channels;
  const int64_t S = Tp * Hp * Wp;
  x = x.reshape({B, S, D});
  auto [rope_cos, rope_sin] = RopeTables(c, Tp, Hp, Wp, in.fps, /*fps_modulation=*/true, x.device());
  at::Tensor extra;
  if (c.extra_per_block_abs_pos_emb) extra = LearnableAbsEmbedding(pos_emb_t, pos_emb_h, pos_emb_w, Tp, Hp, Wp).reshape({1, S, D});

  auto [emb, lora] = EmbedTimesteps(in);
  bool reuse = false;
  CrossAttentionCache* cache = UsableCache(in, &reuse);
  const at::Tensor ctx = reuse ? at::Tensor() : in.crossattn_emb.to(dtype);
  size_t ca_index = 0;
  for (auto& layer : layers) {  // GeneralDITTransformerBlock.forward
    if (extra.defined()) x = x + extra;
    for (auto& bb : layer) {
      std::pair<at::Tensor, at::Tensor>* kv = cache && bb->block_type == "ca" ? cache->Slot(ca_index++) : nullptr;
      x = bb(x, emb, ctx, rope_cos, rope_sin, lora, kv);
    }
  }
  if (cache) ++(reuse ? cache->reuses : cache->fills);
  // FinalLayer: shift/scale from its own modulation + the first 2D of the LoRA term.
  at::Tensor mod = ApplyModulation(final_adaLN_modulation, emb);
  if (lora.defined()) mod = mod + lora.narrow(1, 0, 2 * D);
  const auto ss = mod.unsqueeze(1).chunk(2, -1);
  x = final_linear(AdaLnModulate(x, ss[0], ss[1]));  // [B, S, p*p*pt*C]
  return Unpatchify(c, x.view({B, Tp, Hp, Wp, x.size(-1)}));
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

absl::Status LoadDiTWeights(DiffusionNetwork& net, const TensorMap& tensors, const std::string& source) {
  LoadOptions o;
  o.rules = DiTNameRules(false);
  WFM_ASSIGN_OR_RETURN(LoadReport report, LoadStateDict(net, tensors, o, source));
  WFM_LOG(DEBUG) << report.Summary();
  return absl::OkStatus();
}

absl::Status LoadDiTWeights(DiffusionNetwork& net, const std::string& path, bool use_ema) {
  LoadOptions o;
  o.rules = DiTNameRules(use_ema);
  WFM_ASSIGN_OR_RETURN(LoadReport report, LoadCheckpoint(net, path, o));
  WFM_LOG(INFO) << "DiT weights: " << report.Summary();
  return absl::OkStatus();
}

}  // namespace wfm::diffusion
