// MiniTrainDIT / MinimalV1LVGDiT: the Cosmos-Predict2 diffusion transformer (cosmos_predict2/models/
// text2image_dit.py, video2world_dit.py). Same computation as GeneralDIT with the Predict2 names, per-frame
// noise levels and modulation, t_embedding_norm and an optional crossattn_proj (see dit.h).
#include <cmath>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "dit_internal.h"
#include "wfm/core/status.h"
#include "wfm/diffusion/dit.h"

namespace wfm::diffusion {

using namespace internal;

MiniTrainAttentionImpl::MiniTrainAttentionImpl(int64_t query_dim, int64_t context_dim, int64_t heads_in,
                                               bool self_attn)
    : heads(heads_in), head_dim(query_dim / heads_in), self_attention(self_attn) {
  const int64_t inner = head_dim * heads;
  q_proj = register_module("q_proj", MakeLinear(query_dim, inner, false));
  q_norm = register_module("q_norm", wfm::nn::RMSNorm(wfm::nn::RMSNormOptions(head_dim).eps(1e-6)));
  k_proj = register_module("k_proj", MakeLinear(context_dim, inner, false));
  k_norm = register_module("k_norm", wfm::nn::RMSNorm(wfm::nn::RMSNormOptions(head_dim).eps(1e-6)));
  v_proj = register_module("v_proj", MakeLinear(context_dim, inner, false));
  output_proj = register_module("output_proj", MakeLinear(inner, query_dim, false));
}

at::Tensor MiniTrainAttentionImpl::forward(const at::Tensor& x, const at::Tensor& context, const at::Tensor& rope_cos,
                                           const at::Tensor& rope_sin, std::pair<at::Tensor, at::Tensor>* kv) {
  return AttentionCore(q_proj, k_proj, v_proj, output_proj, q_norm, k_norm, heads, self_attention, x, context,
                       rope_cos, rope_sin, kv);
}

MiniTrainBlockImpl::MiniTrainBlockImpl(const DiTConfig& c) {
  const int64_t D = c.model_channels;
  self_attn = register_module("self_attn", MiniTrainAttention(D, D, c.num_heads, true));
  cross_attn = register_module("cross_attn", MiniTrainAttention(D, c.crossattn_emb_channels, c.num_heads, false));
  mlp = register_module("mlp", wfm::nn::GeluMlp(wfm::nn::GeluMlpOptions(D, static_cast<int64_t>(D * c.mlp_ratio))));
  adaln_modulation_self_attn = register_module("adaln_modulation_self_attn",
                                               MakeModulation(D, 3, c.use_adaln_lora, c.adaln_lora_dim));
  adaln_modulation_cross_attn = register_module("adaln_modulation_cross_attn",
                                                MakeModulation(D, 3, c.use_adaln_lora, c.adaln_lora_dim));
  adaln_modulation_mlp = register_module("adaln_modulation_mlp", MakeModulation(D, 3, c.use_adaln_lora, c.adaln_lora_dim));
}

// text2image_dit.py Block.forward; x [B, T, HW, D], modulation per frame [B, T, 1, D].
at::Tensor MiniTrainBlockImpl::forward(const at::Tensor& x_in, const at::Tensor& emb, const at::Tensor& crossattn_emb,
                                       const at::Tensor& rope_cos, const at::Tensor& rope_sin,
                                       const at::Tensor& adaln_lora, const at::Tensor& extra_pos_emb,
                                       std::pair<at::Tensor, at::Tensor>* kv) {
  at::Tensor x = extra_pos_emb.defined() ? x_in + extra_pos_emb : x_in;
  const int64_t B = x.size(0), T = x.size(1), HW = x.size(2), D = x.size(3);
  auto mods = [&](torch::nn::ModuleList& m) {
    at::Tensor h = ApplyModulation(m, emb);
    if (adaln_lora.defined()) h = h + adaln_lora;
    return h.unsqueeze(2).chunk(3, -1);  // shift, scale, gate [B, T, 1, D]
  };
  const auto sa = mods(adaln_modulation_self_attn), ca = mods(adaln_modulation_cross_attn), ml = mods(adaln_modulation_mlp);
  const auto tokens = [&](const at::Tensor& t) { return t.reshape({B, T * HW, D}); };
  const auto grid = [&](const at::Tensor& t) { return t.view({B, T, HW, D}); };
  x = x + sa[2] * grid(self_attn(tokens(AdaLnModulate(x, sa[0], sa[1])), at::Tensor(), rope_cos, rope_sin));
  x = grid(cross_attn(tokens(AdaLnModulate(x, ca[0], ca[1])), crossattn_emb, rope_cos, rope_sin, kv)) * ca[2] + x;
  return x + ml[2] * mlp(AdaLnModulate(x, ml[0], ml[1]));
}

MiniTrainDiTImpl::MiniTrainDiTImpl(const DiTConfig& config) : DiffusionNetwork(config) {
  TORCH_CHECK(!config_.is_general(), "MiniTrainDiT built from a GeneralDIT config");
  const DiTConfig& c = config_;
  const int64_t D = c.model_channels;
  RegisterEmbedders(/*rope_range_buffers=*/true);  // Predict2 keeps the RoPE ranges as persistent buffers
  t_embedder = register_module("t_embedder", torch::nn::ModuleList());
  t_embedder->push_back(torch::nn::Identity());  // Timesteps: no parameters
  auto te = NamedModules();
  t_linear_1 = te->add("linear_1", MakeLinear(D, D, !c.use_adaln_lora));
  t_linear_2 = te->add("linear_2", MakeLinear(D, c.use_adaln_lora ? 3 * D : D, false));
  t_embedder->push_back(te);

  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t b = 0; b < c.num_blocks; ++b) {
    MiniTrainBlock blk(c);
    blocks->push_back(blk);
    block_list.push_back(blk);
  }
  final_layer = register_module("final_layer", NamedModules());
  final_adaln_modulation = final_layer->add("adaln_modulation", MakeModulation(D, 2, c.use_adaln_lora, c.adaln_lora_dim));
  final_linear = final_layer->add(
      "linear", MakeLinear(D, c.patch_spatial * c.patch_spatial * c.patch_temporal * c.out_channels, false));
  if (c.crossattn_proj_in_channels > 0 && c.crossattn_proj_in_channels != c.crossattn_emb_channels) {
    crossattn_proj = register_module("crossattn_proj", torch::nn::ModuleList());
    crossattn_proj_linear = MakeLinear(c.crossattn_proj_in_channels, c.crossattn_emb_channels, true);
    crossattn_proj->push_back(crossattn_proj_linear);
    crossattn_proj->push_back(torch::nn::Identity());  // nn.GELU()
  }
  t_embedding_norm = register_module("t_embedding_norm", wfm::nn::RMSNorm(wfm::nn::RMSNormOptions(D).eps(1e-6)));
  InitializeWeights();
}

// text2image_dit.py *.init_weights: truncated normal (+-3 std), std 1/sqrt(fan_in); zeroed modulation outputs.
void MiniTrainDiTImpl::InitializeWeights() {
  torch::NoGradGuard no_grad;
  auto trunc = [](at::Tensor& w, double std) { w.normal_(0.0, std).clamp_(-3 * std, 3 * std); };
  for (auto& m : modules(/*include_self=*/false)) {
    if (auto* l = m->as<torch::nn::Linear>()) {
      trunc(l->weight, 1.0 / std::sqrt(static_cast<double>(l->weight.size(1))));
      if (l->bias.defined()) l->bias.zero_();
    }
    if (auto* n = m->as<wfm::nn::RMSNorm>()) n->weight.fill_(1.0);
  }
  for (auto& blk : block_list)
    for (auto* m : {&blk->adaln_modulation_self_attn, &blk->adaln_modulation_cross_attn, &blk->adaln_modulation_mlp})
      (*m)[(*m)->size() - 1]->as<torch::nn::Linear>()->weight.zero_();
  final_adaln_modulation[final_adaln_modulation->size() - 1]->as<torch::nn::Linear>()->weight.zero_();
  for (at::Tensor* p : {&pos_emb_h, &pos_emb_w, &pos_emb_t})
    if (p->defined()) trunc(*p, 1.0 / std::sqrt(static_cast<double>(config_.model_channels)));
}

// text2image_dit.py MiniTrainDIT.forward (+ video2world_dit.py MinimalV1LVGDiT's mask channel).
at::Tensor MiniTrainDiTImpl::Forward(const DiTInputs& in) {
  const DiTConfig& c = config_;
  {
    const absl::Status s = ValidateInputs(in);
    TORCH_CHECK(s.ok(), s.message());
  }
  const auto dtype = patch_proj->weight.scalar_type();
  at::Tensor x = patch_proj(PatchifyInputs(c, in, dtype));  // [B, Tp, Hp, Wp, D]
  const int64_t B = x.size(0), Tp = x.size(1), Hp = x.size(2), Wp = x.size(3), D = c.model_channels;
  x = x.reshape({B, Tp, Hp * Wp, D});
  auto [rope_cos, rope_sin] = RopeTables(c, Tp, Hp, Wp, in.fps, c.rope_enable_fps_modulation, x.device());
  at::Tensor extra;
  if (c.extra_per_block_abs_pos_emb)
    extra = LearnableAbsEmbedding(pos_emb_t, pos_emb_h, pos_emb_w, Tp, Hp, Wp).reshape({1, Tp, Hp * Wp, D});
  bool reuse = false;
  CrossAttentionCache* cache = UsableCache(in, &reuse);
  at::Tensor ctx;  // not needed when every cross-attention layer reuses its cached K/V
  if (!reuse) {
    ctx = in.crossattn_emb.to(dtype);
    if (crossattn_proj) ctx = at::gelu(crossattn_proj_linear(ctx));
  }

  // Timesteps [B] or [B, T] -> per-frame embedding [B, T', D] (T' = 1 broadcasts over frames).
  const at::Tensor ts = in.timesteps.dim() == 1 ? in.timesteps.unsqueeze(1) : in.timesteps;
  const int64_t tt = ts.size(1);
  const at::Tensor sample = TimestepSinusoid(ts, D, dtype).view({B, tt, D});
  const at::Tensor h = t_linear_2(at::silu(t_linear_1(sample)));
  at::Tensor emb = c.use_adaln_lora ? sample : h, lora = c.use_adaln_lora ? h : at::Tensor();
  emb = t_embedding_norm(emb);

  for (size_t i = 0; i < block_list.size(); ++i)
    x = block_list[i](x, emb, ctx, rope_cos, rope_sin, lora, extra, cache ? cache->Slot(i) : nullptr);
  if (cache) ++(reuse ? cache->reuses : cache->fills);
  at::Tensor mod = ApplyModulation(final_adaln_modulation, emb);
  if (lora.defined()) mod = mod + lora.narrow(-1, 0, 2 * D);
  const auto ss = mod.unsqueeze(2).chunk(2, -1);  // [B, T', 1, D]
  x = final_linear(AdaLnModulate(x, ss[0], ss[1]));  // [B, Tp, HW, p*p*pt*C]
  return Unpatchify(c, x.view({B, Tp, Hp, Wp, x.size(-1)}));
}

}  // namespace wfm::diffusion
