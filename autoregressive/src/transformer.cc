// The AR world-model network (see wfm/autoregressive/transformer.h). Port of
// cosmos_predict1/autoregressive/networks/transformer.py and modules/attention.py.
#include "wfm/autoregressive/transformer.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/nn/init.h>

#include "wfm/core/nn/attention.h"
#include "wfm/core/nn/embedding.h"
#include "wfm/core/nn/rope.h"

#include "decode_kernels.h"

namespace wfm::ar {
namespace {

// One weight of a (multi-)GEMV: y[:, offset + r] = scale[r] * dot(x, w[r]) for its n rows.
struct GemvPart {
  const void* w;
  decode::WeightType type;
  const float* scale;  // per row (int8), else null
  int64_t n, offset;
};

// The GEMVs of several weights that share the input x [M, K] (e.g. wq/wk/wv), in one parallel region: blocks of 4
// rows of one weight are split over the intra-op threads (~64 KB of fp32 weight per task at least).
void ParallelGemv(const float* x, int64_t m, int64_t k, std::initializer_list<GemvPart> parts, float* out,
                  int64_t stride) {
  int64_t total = 0;
  for (const GemvPart& p : parts) total += (p.n + 3) / 4;
  const int64_t grain = std::max<int64_t>(1, (1 << 14) / (4 * k));
  at::parallel_for(0, total, grain, [&](int64_t b0, int64_t b1) {
    int64_t first = 0;  // first block of the current part
    for (const GemvPart& p : parts) {
      const int64_t blocks = (p.n + 3) / 4, lo = std::max(b0, first), hi = std::min(b1, first + blocks);
      if (lo < hi)
        decode::GemvRows(x, p.w, p.type, p.scale, out + p.offset, m, k, stride, (lo - first) * 4,
                         std::min(p.n, (hi - first) * 4));
      first += blocks;
    }
  });
}

// x [..., K] float32 (at most 16 rows) through one weight -> [..., N].
at::Tensor GemvTensor(const at::Tensor& x, const GemvPart& part) {
  const int64_t k = x.size(-1), m = x.numel() / k;
  const at::Tensor xc = x.reshape({m, k}).contiguous();  // [M, K]
  at::Tensor out = at::empty({m, part.n}, x.options());  // [M, N]
  ParallelGemv(xc.data_ptr<float>(), m, k, {part}, out.data_ptr<float>(), part.n);
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = part.n;
  return out.view(shape);
}

const float* Ptr(const at::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; }

// A bias-free Linear through DecodeLinear (which is at::linear, i.e. Linear::forward, except for decode-sized
// inputs without autograd).
at::Tensor Lin(torch::nn::Linear l, const at::Tensor& x) {
  return l->bias.defined() ? l->forward(x) : DecodeLinear(x, l->weight);
}

torch::nn::Linear MakeLinear(int64_t in, int64_t out) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
}

nn::RotaryStyle Style(const ArConfig& c) {
  return c.pytorch_rope_version == "v1" ? nn::RotaryStyle::kInterleaved : nn::RotaryStyle::kHalf;
}

}  // namespace

// ---------------------------------------------------------------------------------------------- KvCache

KvCache::KvCache(int64_t n_layers, int64_t batch, int64_t kv_heads, int64_t capacity, int64_t head_dim,
                 at::ScalarType dtype, c10::Device device)
    : batch_(batch), capacity_(capacity) {
  const auto opts = at::TensorOptions().dtype(dtype).device(device);
  layers.resize(n_layers);
  for (auto& l : layers) {
    l.k = at::zeros({batch, kv_heads, capacity, head_dim}, opts);
    l.v = at::zeros({batch, kv_heads, capacity, head_dim}, opts);
  }
}

void KvCache::set_length(int64_t n) {
  TORCH_CHECK(n >= 0 && n <= capacity_, "KvCache: length ", n, " outside [0, ", capacity_, "]");
  length_ = n;
}

void KvCache::Reset() {
  length_ = 0;
  for (auto& l : layers) {
    l.cross_k = at::Tensor();
    l.cross_v = at::Tensor();
  }
}

KvCache KvCache::Gather(const std::vector<int64_t>& rows) const {
  for (int64_t r : rows) TORCH_CHECK(r >= 0 && r < batch_, "KvCache::Gather: row ", r, " of ", batch_);
  TORCH_CHECK(!rows.empty(), "KvCache::Gather: no rows");
  KvCache out;
  out.batch_ = static_cast<int64_t>(rows.size());
  out.capacity_ = capacity_;
  out.length_ = length_;
  out.layers.resize(layers.size());
  if (layers.empty()) return out;
  const at::Tensor index = at::tensor(rows, at::kLong).to(layers[0].k.device());
  for (size_t i = 0; i < layers.size(); ++i) {
    const Layer& l = layers[i];
    Layer& o = out.layers[i];
    const auto sizes = l.k.sizes();
    o.k = at::zeros({out.batch_, sizes[1], sizes[2], sizes[3]}, l.k.options());
    o.v = at::zeros_like(o.k);
    if (length_ > 0) {
      o.k.narrow(2, 0, length_).copy_(l.k.narrow(2, 0, length_).index_select(0, index));
      o.v.narrow(2, 0, length_).copy_(l.v.narrow(2, 0, length_).index_select(0, index));
    }
    if (l.cross_k.defined()) {  // a context of batch 1 is shared by every row
      o.cross_k = l.cross_k.size(0) == 1 ? l.cross_k : l.cross_k.index_select(0, index);
      o.cross_v = l.cross_v.size(0) == 1 ? l.cross_v : l.cross_v.index_select(0, index);
    }
  }
  return out;
}

int64_t KvCache::bytes() const {
  int64_t n = 0;
  for (const auto& l : layers) n += 2 * l.k.numel() * static_cast<int64_t>(l.k.element_size());
  return n;
}

// ---------------------------------------------------------------------------------------------- attention

ArAttentionImpl::ArAttentionImpl(const ArConfig& c, bool is_cross) : config(c), cross(is_cross) { reset(); }

void ArAttentionImpl::reset() {
  const int64_t hd = config.HeadDim(), q = config.n_heads * hd, kv = config.KvHeads() * hd;
  const int64_t ctx_dim = cross ? config.context_dim : config.dim;
  if (config.fuse_qkv && !cross) {
    wqkv = register_module("wqkv", MakeLinear(config.dim, q + 2 * kv));
  } else {
    wq = register_module("wq", MakeLinear(config.dim, q));
    wk = register_module("wk", MakeLinear(ctx_dim, kv));
    wv = register_module("wv", MakeLinear(ctx_dim, kv));
  }
  wo = register_module("wo", MakeLinear(q, config.dim));
  if (config.use_qk_normalization) {
    // The reference builds them with Attention's own norm_eps default (1e-5), not params["norm_eps"].
    q_norm = register_module("q_norm", nn::RMSNorm(nn::RMSNormOptions(hd).eps(1e-5)));
    k_norm = register_module("k_norm", nn::RMSNorm(nn::RMSNormOptions(hd).eps(1e-5)));
  }
}

at::Tensor ArAttentionImpl::Output(const at::Tensor& attn, int64_t b, int64_t s) {
  // [B, Hq, S, D] -> [B, S, Hq*D] -> [B, S, dim]
  return Lin(wo, attn.transpose(1, 2).reshape({b, s, config.n_heads * config.HeadDim()}));
}

at::Tensor ArAttentionImpl::SelfAttend(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                                       int64_t start, KvCache::Layer* cache) {
  const int64_t b = x.size(0), s = x.size(1), hd = config.HeadDim();
  const int64_t hq = config.n_heads, hkv = config.KvHeads();
  at::Tensor xq, xk, xv;
  if (wqkv) {
    const auto parts = Lin(wqkv, x).split_with_sizes({hq * hd, hkv * hd, hkv * hd}, -1);
    xq = parts[0], xk = parts[1], xv = parts[2];
  } else {
    xq = Lin(wq, x), xk = Lin(wk, x), xv = Lin(wv, x);
  }
  xq = xq.view({b, s, hq, hd});   // [B, S, Hq, D]
  xk = xk.view({b, s, hkv, hd});  // [B, S, Hkv, D]
  xv = xv.view({b, s, hkv, hd});
  if (q_norm) {
    xq = q_norm->forward(xq);
    xk = k_norm->forward(xk);
  }
  const nn::RotaryStyle style = Style(config);
  xq = nn::ApplyRotary(xq, cos, sin, style).transpose(1, 2);  // [B, Hq, S, D]
  xk = nn::ApplyRotary(xk, cos, sin, style).transpose(1, 2);  // [B, Hkv, S, D]
  xv = xv.transpose(1, 2);
  at::Tensor keys = xk, values = xv;
  if (cache != nullptr) {
    at::Tensor ck = cache->k.narrow(0, 0, b), cv = cache->v.narrow(0, 0, b);
    ck.narrow(2, start, s).copy_(xk);
    cv.narrow(2, start, s).copy_(xv);
    keys = ck.narrow(2, 0, start + s);  // [B, Hkv, start+S, D]: only the filled positions
    values = cv.narrow(2, 0, start + s);
  } else {
    TORCH_CHECK(start == 0, "ArAttention: a start position > 0 needs a KV cache");
  }
  const at::Tensor out = nn::Attention(xq, keys, values, nn::AttentionOptions().causal(config.causal_mask));
  return Output(out, b, s);
}

std::pair<at::Tensor, at::Tensor> ArAttentionImpl::ContextKv(const TextContext& context) {
  const int64_t b = context.embeddings.size(0), l = context.embeddings.size(1), hd = config.HeadDim();
  at::Tensor k = wk->forward(context.embeddings).view({b, l, config.KvHeads(), hd});
  const at::Tensor v = wv->forward(context.embeddings).view({b, l, config.KvHeads(), hd});
  if (k_norm) k = k_norm->forward(k);
  return {k.transpose(1, 2), v.transpose(1, 2)};  // [B, Hkv, L, D]
}

at::Tensor ArAttentionImpl::CrossAttend(const at::Tensor& x, const TextContext& context, KvCache::Layer* cache) {
  const int64_t b = x.size(0), s = x.size(1), hd = config.HeadDim();
  at::Tensor q = Lin(wq, x).view({b, s, config.n_heads, hd});
  if (q_norm) q = q_norm->forward(q);
  at::Tensor k, v;
  if (cache != nullptr && cache->cross_k.defined()) {
    k = cache->cross_k, v = cache->cross_v;
  } else {
    std::tie(k, v) = ContextKv(context);
    if (cache != nullptr) cache->cross_k = k, cache->cross_v = v;
  }
  if (k.size(0) != b) k = k.expand({b, -1, -1, -1}), v = v.expand({b, -1, -1, -1});
  nn::AttentionOptions o;
  if (context.mask.defined()) {
    const at::Tensor& m = context.mask;  // [B or 1, L] -> [B, 1, 1, L]
    o.mask(m.view({m.size(0), 1, 1, m.size(1)}));
  }
  return Output(nn::Attention(q.transpose(1, 2), k, v, o), b, s);
}

// ---------------------------------------------------------------------------------------------- block

ArTransformerBlockImpl::ArTransformerBlockImpl(const ArConfig& c, int64_t id) : config(c), layer_id(id) { reset(); }

void ArTransformerBlockImpl::reset() {
  attention = register_module("attention", ArAttention(config, /*cross=*/false));
  if (config.LayerHasCrossAttention(layer_id)) {
    cross_attention = register_module("cross_attention", ArAttention(config, /*cross=*/true));
    cross_attention_norm =
        register_module("cross_attention_norm", nn::RMSNorm(nn::RMSNormOptions(config.dim).eps(config.norm_eps)));
  }
  feed_forward = register_module("feed_forward", nn::SwiGLU(nn::SwiGLUOptions(config.dim, config.ffn_hidden_size)));
  attention_norm = register_module("attention_norm", nn::RMSNorm(nn::RMSNormOptions(config.dim).eps(config.norm_eps)));
  ffn_norm = register_module("ffn_norm", nn::RMSNorm(nn::RMSNormOptions(config.dim).eps(config.norm_eps)));
}

at::Tensor ArTransformerBlockImpl::forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                                           int64_t start, KvCache::Layer* cache, const TextContext* context) {
  // reference: TransformerBlock.forward
  at::Tensor h = x + attention->SelfAttend(attention_norm->forward(x), cos, sin, start, cache);
  if (cross_attention) {
    TORCH_CHECK(context != nullptr && context->embeddings.defined(),
                "ArTransformer: layer ", layer_id, " has cross-attention and needs a text context");
    h = h + cross_attention->CrossAttend(cross_attention_norm->forward(h), *context, cache);
  }
  const at::Tensor f = ffn_norm->forward(h);  // SwiGLU (nn::SwiGLU) with the decode-sized GEMV: w2(silu(w1 f) * w3 f)
  return h + Lin(feed_forward->w2, at::silu(Lin(feed_forward->w1, f)) * Lin(feed_forward->w3, f));
}

// ---------------------------------------------------------------------------------------------- transformer

ArTransformerImpl::ArTransformerImpl(const ArConfig& c) : config(c) {
  const absl::Status s = config.Validate();
  TORCH_CHECK(s.ok(), s.ToString());
  reset();
}

void ArTransformerImpl::reset() {
  tok_embeddings = register_module("tok_embeddings", torch::nn::Embedding(config.EmbeddingVocab(), config.dim));
  layers = register_module("layers", torch::nn::ModuleList());
  blocks_.clear();
  for (int64_t i = 0; i < config.n_layers; ++i) {
    blocks_.push_back(ArTransformerBlock(config, i));
    layers->push_back(blocks_.back());
  }
  norm = register_module("norm", nn::RMSNorm(nn::RMSNormOptions(config.dim).eps(config.norm_eps)));
  output = register_module("output", MakeLinear(config.dim, config.vocab_size));
  BuildTables();
}

void ArTransformerImpl::BuildTables() {
  const int64_t n = config.PositionTableLength(), hd = config.HeadDim();
  at::Tensor angles;  // [positions, head_dim]
  double mscale = 1.0;
  std::optional<nn::YarnOptions> yarn;
  if (config.apply_yarn) {
    yarn = nn::YarnOptions().scale(*config.yarn_scale).beta_fast(*config.yarn_beta_fast).beta_slow(
        *config.yarn_beta_slow);
    if (config.pytorch_rope_version == "v1") mscale = nn::YarnMscale(*yarn);
  }
  if (config.rope_dim == "3D") {
    const auto& l = config.video_latent_shape;
    nn::Rope3DOptions o(hd, {l[0], l[1], l[2]});
    o.theta(config.rope_theta);
    if (yarn) {
      const auto& ol = *config.original_latent_shape;
      o.yarn(yarn).original_latent_shape({ol[0], ol[1], ol[2]});
    }
    angles = nn::Rope3DAngles(o);  // [T*H*W, D]
    // text_to_video: a zero row for <bov> in front (RotaryPositionEmbeddingPytorchV2.create_rope_freqs)
    if (config.HasBov()) angles = at::cat({at::zeros({1, hd}), angles}, 0);
  } else {
    nn::Rope1DOptions o(hd);
    o.theta(config.rope_theta);
    if (yarn) o.yarn(yarn).original_max_len(*config.original_seq_len);
    angles = nn::Rope1DAngles(o, config.max_seq_len, Style(config));
  }
  if (angles.size(0) < n) angles = at::cat({angles, at::zeros({n - angles.size(0), hd})}, 0);  // zero padding
  std::tie(cos_, sin_) = nn::RopeCosSin(angles, mscale);
  abs_ = at::Tensor();
  if (config.apply_abs_pos_emb) {
    const auto& l = config.video_latent_shape;
    // SinCosPosEmbAxisTE keeps the table in bfloat16 (its default dtype); the values are bf16-rounded.
    at::Tensor e = nn::SinCos3DPositionEmbedding(nn::SinCos3DOptions(config.dim, {l[0], l[1], l[2]}))
                       .to(at::kBFloat16)
                       .to(at::kFloat);  // [T*H*W, dim]
    if (config.HasBov()) e = at::cat({at::zeros({1, config.dim}), e}, 0);
    if (e.size(0) < n) e = at::cat({e, at::zeros({n - e.size(0), config.dim})}, 0);
    abs_ = e;
  }
  cos_cast_ = sin_cast_ = abs_cast_ = at::Tensor();
}

void ArTransformerImpl::Tables(int64_t start, int64_t n, at::ScalarType dtype, c10::Device device, at::Tensor* cos,
                               at::Tensor* sin, at::Tensor* abs) {
  TORCH_CHECK(start >= 0 && start + n <= cos_.size(0), "ArTransformer: positions [", start, ", ", start + n,
              ") exceed the ", cos_.size(0), " positions of the model (max_seq_len ", config.max_seq_len, ")");
  if (!cos_cast_.defined() || cos_cast_.scalar_type() != dtype || cos_cast_.device() != device) {
    cos_cast_ = cos_.to(device, dtype);
    sin_cast_ = sin_.to(device, dtype);
    abs_cast_ = abs_.defined() ? abs_.to(device, dtype) : at::Tensor();
  }
  const int64_t d = cos_.size(1);
  *cos = cos_cast_.narrow(0, start, n).view({1, n, 1, d});  // [1, S, 1, D]
  *sin = sin_cast_.narrow(0, start, n).view({1, n, 1, d});
  *abs = abs_cast_.defined() ? abs_cast_.narrow(0, start, n).unsqueeze(0) : at::Tensor();  // [1, S, dim]
}

at::Tensor ArTransformerImpl::Hidden(const at::Tensor& tokens, int64_t start, KvCache* cache,
                                     const TextContext* context) {
  TORCH_CHECK(tokens.dim() == 2, "ArTransformer: tokens must be [B, S], got ", tokens.sizes());
  const int64_t b = tokens.size(0), s = tokens.size(1);
  TORCH_CHECK(s > 0, "ArTransformer: empty token sequence");
  if (cache != nullptr) {
    TORCH_CHECK(start == cache->length(), "ArTransformer: start ", start, " != cache length ", cache->length());
    TORCH_CHECK(b <= cache->batch(), "ArTransformer: batch ", b, " exceeds the cache batch ", cache->batch());
    TORCH_CHECK(start + s <= cache->capacity(), "ArTransformer: positions up to ", start + s,
                " exceed the cache capacity ", cache->capacity());
    TORCH_CHECK(static_cast<int64_t>(cache->layers.size()) == config.n_layers, "ArTransformer: cache has ",
                cache->layers.size(), " layers, model ", config.n_layers);
  }
  at::Tensor h = tok_embeddings->forward(tokens);  // [B, S, dim]
  if (cache != nullptr && s == 1 && h.is_contiguous() && FusedDecodeApplies(b, *cache)) {
    DecodeFused(h, start, cache, context);
    cache->set_length(start + 1);
    return norm->forward(h);
  }
  at::Tensor cos, sin, abs;
  Tables(start, s, h.scalar_type(), h.device(), &cos, &sin, &abs);
  for (int64_t i = 0; i < config.n_layers; ++i) {
    if (abs.defined()) h = h + abs;  // reference: added before every layer
    h = blocks_[i]->forward(h, cos, sin, start, cache ? &cache->layers[i] : nullptr, context);
  }
  if (cache != nullptr) cache->set_length(start + s);
  return norm->forward(h);
}

bool ArTransformerImpl::FusedDecodeApplies(int64_t batch, const KvCache& cache) const {
  const int64_t hd = config.HeadDim();
  const at::Tensor& emb = tok_embeddings->weight;
  if (!fused_decode_ || !decode::Available() || at::GradMode::is_enabled() || !emb.device().is_cpu() ||
      emb.scalar_type() != at::kFloat || batch > 16 || hd % 8 != 0 || config.dim % 8 != 0 ||
      config.ffn_hidden_size % 8 != 0 || cos_.size(1) != hd || (abs_.defined() && abs_.size(1) != config.dim))
    return false;
  for (const KvCache::Layer& l : cache.layers)
    if (!l.k.device().is_cpu() || l.k.scalar_type() != at::kFloat || !l.k.is_contiguous() ||
        l.v.scalar_type() != at::kFloat || !l.v.is_contiguous() || l.k.size(3) != hd || l.v.size(3) != hd)
      return false;
  for (const auto& blk : blocks_)
    for (const at::Tensor& p : blk->parameters())
      if (!p.device().is_cpu() || p.scalar_type() != at::kFloat || !p.is_contiguous()) return false;
  return true;
}

// The decode step of every block for one new position p per sequence, in plain C++ over the raw weights (no ATen
// dispatch per small op); cross-attention layers still call CrossAttend. Same operations and order as
// ArTransformerBlockImpl::forward / ArAttentionImpl::SelfAttend for S = 1 (test ArModelTest.FusedDecodeEqualsAtenPath).
void ArTransformerImpl::DecodeFused(at::Tensor& h, int64_t p, KvCache* cache, const TextContext* context) {
  TORCH_CHECK(p + 1 <= cos_.size(0), "ArTransformer: position ", p, " exceeds the ", cos_.size(0),
              " positions of the model (max_seq_len ", config.max_seq_len, ")");
  const int64_t b = h.size(0), dim = config.dim, hd = config.HeadDim(), hq = config.n_heads, hkv = config.KvHeads();
  const int64_t rep = hq / hkv, qd = hq * hd, kvd = hkv * hd, qs = qd + 2 * kvd, f = config.ffn_hidden_size;
  const int64_t n = p + 1;  // attended positions
  const bool interleaved = Style(config) == nn::RotaryStyle::kInterleaved;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));  // nn::Attention's default
  const int64_t need = b * (dim + qs + qd + dim + 3 * f) + b * hkv * rep * n;
  if (static_cast<int64_t>(scratch_.size()) < need) scratch_.resize(need);  // grows only
  float *xn = scratch_.data(), *qkv = xn + b * dim, *att = qkv + b * qs, *tmp = att + b * qd, *ff = tmp + b * dim;
  float *gate = ff + 2 * b * f, *scores = gate + b * f;
  const float *cosp = cos_.data_ptr<float>() + p * hd, *sinp = sin_.data_ptr<float>() + p * hd;
  const float* absp = abs_.defined() ? abs_.data_ptr<float>() + p * dim : nullptr;
  const auto add_rows = [&](float* hp, const float* y, int64_t stride) {  // hp[bi] += y[bi] (or += y for stride 0)
    for (int64_t bi = 0; bi < b; ++bi)
      for (int64_t j = 0; j < dim; ++j) hp[bi * dim + j] += y[bi * stride + j];
  };
  const auto lin = [](const torch::nn::Linear& l, int64_t n_rows, int64_t offset) {
    return GemvPart{l->weight.data_ptr<float>(), decode::WeightType::kFloat32, nullptr, n_rows, offset};
  };
  for (int64_t i = 0; i < config.n_layers; ++i) {
    ArTransformerBlockImpl& blk = *blocks_[i];
    ArAttentionImpl& a = *blk.attention;
    KvCache::Layer& layer = cache->layers[i];
    float* hp = h.data_ptr<float>();  // [B, dim]
    if (absp != nullptr) add_rows(hp, absp, 0);
    // attention_norm -> q, k, v  [B, Hq*D + 2*Hkv*D]
    for (int64_t bi = 0; bi < b; ++bi)
      decode::RmsNorm(hp + bi * dim, Ptr(blk.attention_norm->weight), blk.attention_norm->options.eps(), dim,
                      xn + bi * dim);
    if (a.wqkv) {
      ParallelGemv(xn, b, dim, {lin(a.wqkv, qs, 0)}, qkv, qs);
    } else {
      ParallelGemv(xn, b, dim, {lin(a.wq, qd, 0), lin(a.wk, kvd, qd), lin(a.wv, kvd, qd + kvd)}, qkv, qs);
    }
    // QK-norm, RoPE, q * scale; K/V into the cache at position p
    const int64_t cap = layer.k.size(2);
    float *kc = layer.k.data_ptr<float>(), *vc = layer.v.data_ptr<float>();  // [Bc, Hkv, capacity, D]
    for (int64_t bi = 0; bi < b; ++bi) {
      float* row = qkv + bi * qs;
      for (int64_t hh = 0; hh < hq; ++hh) {
        float* q = row + hh * hd;
        if (a.q_norm) decode::RmsNorm(q, Ptr(a.q_norm->weight), a.q_norm->options.eps(), hd, q);
        decode::Rotary(q, cosp, sinp, hd, interleaved);
        for (int64_t j = 0; j < hd; ++j) q[j] *= scale;
      }
      for (int64_t g = 0; g < hkv; ++g) {
        float* k = row + qd + g * hd;
        if (a.k_norm) decode::RmsNorm(k, Ptr(a.k_norm->weight), a.k_norm->options.eps(), hd, k);
        decode::Rotary(k, cosp, sinp, hd, interleaved);
        const int64_t at_p = ((bi * hkv + g) * cap + p) * hd;
        std::copy(k, k + hd, kc + at_p);
        std::copy(row + qd + kvd + g * hd, row + qd + kvd + (g + 1) * hd, vc + at_p);
      }
    }
    // attention over the filled prefix [0, p]: the rep query heads of one KV head together  -> att [B, Hq*D]
    at::parallel_for(0, b * hkv, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t bi = t / hkv, g = t % hkv, kv0 = (bi * hkv + g) * cap * hd;
        decode::AttendCached(qkv + bi * qs + g * rep * hd, kc + kv0, vc + kv0, rep, n, hd, scores + t * rep * n,
                             att + bi * qd + g * rep * hd);
      }
    });
    ParallelGemv(att, b, qd, {lin(a.wo, dim, 0)}, tmp, dim);
    add_rows(hp, tmp, dim);
    if (blk.cross_attention) {
      TORCH_CHECK(context != nullptr && context->embeddings.defined(), "ArTransformer: layer ", i,
                  " has cross-attention and needs a text context");
      h = (h + blk.cross_attention->CrossAttend(blk.cross_attention_norm->forward(h), *context, &layer)).contiguous();
      hp = h.data_ptr<float>();
    }
    // SwiGLU: w2(silu(w1 x) * w3 x), x = ffn_norm(h)
    for (int64_t bi = 0; bi < b; ++bi)
      decode::RmsNorm(hp + bi * dim, Ptr(blk.ffn_norm->weight), blk.ffn_norm->options.eps(), dim, xn + bi * dim);
    ParallelGemv(xn, b, dim, {lin(blk.feed_forward->w1, f, 0), lin(blk.feed_forward->w3, f, f)}, ff, 2 * f);
    for (int64_t bi = 0; bi < b; ++bi)
      for (int64_t j = 0; j < f; ++j) {
        const float x1 = ff[bi * 2 * f + j], x3 = ff[bi * 2 * f + f + j];
        gate[bi * f + j] = x1 / (1.f + std::exp(-x1)) * x3;
      }
    ParallelGemv(gate, b, f, {lin(blk.feed_forward->w2, dim, 0)}, tmp, dim);
    add_rows(hp, tmp, dim);
  }
}

at::Tensor ArTransformerImpl::forward(const at::Tensor& tokens, int64_t start, KvCache* cache,
                                      const TextContext* context, bool last_only) {
  at::Tensor h = Hidden(tokens, start, cache, context);
  if (last_only) h = h.narrow(1, h.size(1) - 1, 1);
  return Output(h);  // [B, S, vocab]
}

void ArTransformerImpl::set_output_dtype(std::optional<at::ScalarType> dtype) {
  TORCH_CHECK(!dtype || *dtype == at::kChar || at::isFloatingType(*dtype),
              "ArTransformer::set_output_dtype: a floating dtype or int8 (kChar), got ", *dtype);
  output_dtype_ = dtype;
}

at::Tensor ArTransformerImpl::Output(const at::Tensor& h) {
  const at::Tensor& w = output->weight;
  if (at::GradMode::is_enabled()) return output->forward(h);
  if (!output_dtype_ || *output_dtype_ == w.scalar_type()) return DecodeLinear(h, w);
  const at::ScalarType dtype = *output_dtype_;
  if (!output_weight_cast_.defined() || output_weight_version_ != w._version() ||
      output_weight_cast_.device() != w.device() || output_weight_cast_.scalar_type() != dtype) {
    const at::Tensor wd = w.detach();
    if (dtype == at::kChar) {  // symmetric per-row int8: w ~= q * scale, |q| <= 127
      output_scale_ = (wd.abs().amax(1).to(at::kFloat) / 127.0).clamp_min(1e-30).contiguous();  // [N]
      output_weight_cast_ =
          (wd.to(at::kFloat) / output_scale_.unsqueeze(1)).round().clamp(-127, 127).to(at::kChar).contiguous();
    } else {
      output_weight_cast_ = wd.to(dtype).contiguous();
      output_scale_ = at::Tensor();
    }
    output_weight_version_ = w._version();
  }
  const int64_t k = w.size(1), n = w.size(0), m = h.numel() / k;
  if (decode::Available() && h.device().is_cpu() && h.scalar_type() == at::kFloat && k % 8 == 0 && m <= 16 &&
      (dtype == at::kChar || dtype == at::kBFloat16)) {  // input stays fp32; weights widened exactly
    const bool q8 = dtype == at::kChar;
    return GemvTensor(h, {output_weight_cast_.data_ptr(), q8 ? decode::WeightType::kInt8 : decode::WeightType::kBFloat16,
                          q8 ? output_scale_.data_ptr<float>() : nullptr, n, 0});
  }
  if (dtype == at::kChar)  // other devices / larger batches: dequantised weight
    return at::linear(h, output_weight_cast_.to(h.scalar_type()) * output_scale_.to(h.scalar_type()).unsqueeze(1));
  return at::linear(h.to(dtype), output_weight_cast_).to(w.scalar_type());
}

at::Tensor DecodeLinear(const at::Tensor& x, const at::Tensor& w) {
  const int64_t k = w.size(-1), n = w.size(0), m = x.numel() / std::max<int64_t>(k, 1);
  if (decode::Available() && !at::GradMode::is_enabled() && x.device().is_cpu() && w.device().is_cpu() &&
      x.scalar_type() == at::kFloat && w.scalar_type() == at::kFloat && w.dim() == 2 && x.size(-1) == k &&
      k % 8 == 0 && m >= 1 && m <= 16) {
    const at::Tensor wc = w.contiguous();  // [N, K]
    return GemvTensor(x, {wc.data_ptr<float>(), decode::WeightType::kFloat32, nullptr, n, 0});
  }
  return at::linear(x, w);
}

KvCache ArTransformerImpl::NewCache(int64_t batch, int64_t capacity) const {
  const at::Tensor& w = tok_embeddings->weight;
  return KvCache(config.n_layers, batch, config.KvHeads(), capacity, config.HeadDim(), w.scalar_type(), w.device());
}

void ArTransformerImpl::InitWeights(uint64_t seed) {
  at::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  // Normal(0, std) truncated to [lo, hi] by resampling the values outside.
  const auto truncated = [&](at::Tensor& w, double std, double lo, double hi) {
    at::Tensor t = at::empty(w.sizes(), at::kFloat);
    t.normal_(0, std, gen);
    for (at::Tensor out = (t < lo).logical_or_(t > hi); out.any().item<bool>(); out = (t < lo).logical_or_(t > hi)) {
      at::Tensor fresh = at::empty(t.sizes(), at::kFloat);
      fresh.normal_(0, std, gen);
      t = at::where(out, fresh, t);
    }
    w.copy_(t);
  };
  const auto trunc_normal = [&](at::Tensor& w, double std) { truncated(w, std, -2.0, 2.0); };  // torch defaults
  {
    at::Tensor t = at::empty(tok_embeddings->weight.sizes(), at::kFloat);
    t.normal_(0, 1, gen);
    tok_embeddings->weight.copy_(t);
  }
  for (int64_t i = 0; i < config.n_layers; ++i) {
    auto& blk = blocks_[i];
    const double init_std = 0.02 / std::sqrt(2.0 * static_cast<double>(i + 1));
    for (ArAttention* a : {&blk->attention, &blk->cross_attention}) {
      if (!*a) continue;
      for (auto* lin : {&(*a)->wq, &(*a)->wk, &(*a)->wv, &(*a)->wqkv})
        if (*lin) trunc_normal((*lin)->weight, 0.02);
      trunc_normal((*a)->wo->weight, init_std);
      if ((*a)->q_norm) (*a)->q_norm->reset_parameters(), (*a)->k_norm->reset_parameters();
    }
    trunc_normal(blk->feed_forward->w1->weight, 0.02);
    trunc_normal(blk->feed_forward->w2->weight, init_std);
    trunc_normal(blk->feed_forward->w3->weight, init_std);
    blk->attention_norm->reset_parameters();
    blk->ffn_norm->reset_parameters();
    if (blk->cross_attention_norm) blk->cross_attention_norm->reset_parameters();
  }
  norm->reset_parameters();
  {
    const double std = 1.0 / std::sqrt(static_cast<double>(config.dim));
    truncated(output->weight, std, -3 * std, 3 * std);
  }
}

}  // namespace wfm::ar
