// Internal to wfm_diffusion: the pieces GeneralDiT (dit.cc) and MiniTrainDiT (minitrain_dit.cc) share — patch
// embedding input, unpatchify, position tables, AdaLN modulation and the attention core. Not a public header.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>

#include "wfm/core/nn/norm.h"
#include "wfm/diffusion/dit.h"

namespace wfm::diffusion::internal {

torch::nn::Linear MakeLinear(int64_t in, int64_t out, bool bias);

// "FA-CA-MLP" -> {"fa", "ca", "mlp"}; unknown tokens come back as "?token".
std::vector<std::string> BlockTypes(const std::string& block_config);

// [SiLU, Linear(D, lora, no bias), Linear(lora, chunks*D, no bias)] or [SiLU, Linear(D, chunks*D, no bias)]: the
// reference's adaLN_modulation Sequential (SiLU has no parameters; index 0 holds an Identity).
torch::nn::ModuleList MakeModulation(int64_t dim, int64_t chunks, bool lora, int64_t lora_dim);
// Runs such a list on emb [..., D].
at::Tensor ApplyModulation(torch::nn::ModuleList& modulation, const at::Tensor& emb);

// LayerNorm(x, no affine, eps 1e-6) * (1 + scale) + shift; shift/scale broadcast against x.
at::Tensor AdaLnModulate(const at::Tensor& x, const at::Tensor& shift, const at::Tensor& scale);

// The patch embedding's input: x (+ condition mask) (+ padding mask resized to H, W, nearest), cast to `dtype`,
// rearranged "b c (t r) (h m) (w n) -> b t h w (c r m n)": [B, T/pt, H/p, W/p, C_in * pt * p * p].
at::Tensor PatchifyInputs(const DiTConfig& config, const DiTInputs& inputs, at::ScalarType dtype);
// "B T H W (p1 p2 t C) -> B C (T t) (H p1) (W p2)" for x [B, Tp, Hp, Wp, p*p*pt*C].
at::Tensor Unpatchify(const DiTConfig& config, const at::Tensor& x);

// RoPE cos/sin [Tp*Hp*Wp, head_dim] (VideoRopePosition3DEmb; time positions scaled by base_fps / fps when
// `fps_modulation` and an fps is given).
std::pair<at::Tensor, at::Tensor> RopeTables(const DiTConfig& config, int64_t tp, int64_t hp, int64_t wp,
                                             std::optional<double> fps, bool fps_modulation, c10::Device device);
// LearnablePosEmbAxis: pos_emb_t[t] + pos_emb_h[h] + pos_emb_w[w], normalised to RMS 1 per token
// (attention.py normalize, eps 1e-6): [Tp, Hp, Wp, D].
at::Tensor LearnableAbsEmbedding(const at::Tensor& pos_emb_t, const at::Tensor& pos_emb_h, const at::Tensor& pos_emb_w,
                                 int64_t tp, int64_t hp, int64_t wp);

// Multi-head attention with per-head q/k RMSNorm and (self-attention only) rotate-half RoPE:
// x [B, S, D], context [B, M, Dc] or undefined (self). Returns [B, S, D] after the output projection.
// kv (cross-attention only, may be null): a filled entry replaces the K/V projections of `context` (which may
// then be undefined); an empty one receives them.
at::Tensor AttentionCore(torch::nn::Linear& q_proj, torch::nn::Linear& k_proj, torch::nn::Linear& v_proj,
                         torch::nn::Linear& out_proj, wfm::nn::RMSNorm& q_norm, wfm::nn::RMSNorm& k_norm,
                         int64_t heads, bool self_attention, const at::Tensor& x, const at::Tensor& context,
                         const at::Tensor& rope_cos, const at::Tensor& rope_sin,
                         std::pair<at::Tensor, at::Tensor>* kv = nullptr);

// The cache a forward pass may use: inputs.crossattn_cache unless autograd is recording; `reuse` tells whether
// its entries belong to inputs.crossattn_emb (the pass then need not transform the context at all).
CrossAttentionCache* UsableCache(const DiTInputs& inputs, bool* reuse);

// Timesteps(D): cat(cos, sin) of t * exp(-ln(1e4) * arange(D/2) / (D/2)), computed in float32, cast to `dtype`.
at::Tensor TimestepSinusoid(const at::Tensor& t, int64_t dim, at::ScalarType dtype);

}  // namespace wfm::diffusion::internal
