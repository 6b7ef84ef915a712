// The AR world-model network (see wfm/autoregressive/transformer.h). Port of
// cosmos_predict1/autoregressive/networks/transformer.py and modules/attention.py.
#include "wfm/autoregressive/transformer.h"

#include <algorithm>
#include <cmath>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/nn/init.h>

#include "wfm/core/nn/attention.h"
#include "wfm/core/nn/embedding.h"
#include "wfm/core/nn/rope.h"

namespace wfm::ar {
namespace {

#if defined(__x86_64__) && defined(__GNUC__)
// Sums of the 8 lanes of a0..a3 -> [sum a0, sum a1, sum a2, sum a3].
__attribute__((target("avx2,fma"))) inline __m128 Hsum4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
  const __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
  return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

// out[m, r] = dot(x[m], w[r]) for rows r in [r0, r1): 4 weight rows (16 KB at K = 1024) stay in L1 while the
// input rows pass over them two at a time (8 accumulators), so the weight is streamed from memory once. K % 8 == 0.
__attribute__((target("avx2,fma"))) void GemvRowsAvx2(const float* x, const float* w, float* out, int64_t m_rows,
                                                      int64_t k_dim, int64_t n_rows, int64_t r0, int64_t r1) {
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) {
    const float *w0 = w + r * k_dim, *w1 = w0 + k_dim, *w2 = w1 + k_dim, *w3 = w2 + k_dim;
    int64_t m = 0;
    for (; m + 2 <= m_rows; m += 2) {
      const float *xa = x + m * k_dim, *xb = xa + k_dim;
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
      for (int64_t k = 0; k < k_dim; k += 8) {
        const __m256 xva = _mm256_loadu_ps(xa + k), xvb = _mm256_loadu_ps(xb + k);
        const __m256 v0 = _mm256_loadu_ps(w0 + k), v1 = _mm256_loadu_ps(w1 + k);
        const __m256 v2 = _mm256_loadu_ps(w2 + k), v3 = _mm256_loadu_ps(w3 + k);
        a0 = _mm256_fmadd_ps(v0, xva, a0), b0 = _mm256_fmadd_ps(v0, xvb, b0);
        a1 = _mm256_fmadd_ps(v1, xva, a1), b1 = _mm256_fmadd_ps(v1, xvb, b1);
        a2 = _mm256_fmadd_ps(v2, xva, a2), b2 = _mm256_fmadd_ps(v2, xvb, b2);
        a3 = _mm256_fmadd_ps(v3, xva, a3), b3 = _mm256_fmadd_ps(v3, xvb, b3);
      }
      _mm_storeu_ps(out + m * n_rows + r, Hsum4(a0, a1, a2, a3));
      _mm_storeu_ps(out + (m + 1) * n_rows + r, Hsum4(b0, b1, b2, b3));
    }
    for (; m < m_rows; ++m) {
      const float* xa = x + m * k_dim;
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      for (int64_t k = 0; k < k_dim; k += 8) {
        const __m256 xv = _mm256_loadu_ps(xa + k);
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + k), xv, a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + k), xv, a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + k), xv, a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + k), xv, a3);
      }
      _mm_storeu_ps(out + m * n_rows + r, Hsum4(a0, a1, a2, a3));
    }
  }
  for (; r < r1; ++r)  // tail rows
    for (int64_t m = 0; m < m_rows; ++m) {
      __m256 a = _mm256_setzero_ps();
      for (int64_t k = 0; k < k_dim; k += 8)
        a = _mm256_fmadd_ps(_mm256_loadu_ps(w + r * k_dim + k), _mm256_loadu_ps(x + m * k_dim + k), a);
      const __m256 z = _mm256_setzero_ps();
      out[m * n_rows + r] = _mm_cvtss_f32(Hsum4(a, z, z, z));
    }
}

bool HaveAvx2Fma() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
}
#endif

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
  at::Tensor cos, sin, abs;
  Tables(start, s, h.scalar_type(), h.device(), &cos, &sin, &abs);
  for (int64_t i = 0; i < config.n_layers; ++i) {
    if (abs.defined()) h = h + abs;  // reference: added before every layer
    h = blocks_[i]->forward(h, cos, sin, start, cache ? &cache->layers[i] : nullptr, context);
  }
  if (cache != nullptr) cache->set_length(start + s);
  return norm->forward(h);
}

at::Tensor ArTransformerImpl::forward(const at::Tensor& tokens, int64_t start, KvCache* cache,
                                      const TextContext* context, bool last_only) {
  at::Tensor h = Hidden(tokens, start, cache, context);
  if (last_only) h = h.narrow(1, h.size(1) - 1, 1);
  return Output(h);  // [B, S, vocab]
}

at::Tensor ArTransformerImpl::Output(const at::Tensor& h) {
  const at::Tensor& w = output->weight;
  if (at::GradMode::is_enabled()) return output->forward(h);
  if (!output_dtype_ || *output_dtype_ == w.scalar_type()) return DecodeLinear(h, w);
  if (!output_weight_cast_.defined() || output_weight_version_ != w._version() ||
      output_weight_cast_.device() != w.device()) {
    output_weight_cast_ = w.detach().to(*output_dtype_);
    output_weight_version_ = w._version();
  }
  return at::linear(h.to(*output_dtype_), output_weight_cast_).to(w.scalar_type());
}

at::Tensor DecodeLinear(const at::Tensor& x, const at::Tensor& w) {
#if defined(__x86_64__) && defined(__GNUC__)
  const int64_t k = w.size(-1), n = w.size(0), m = x.numel() / std::max<int64_t>(k, 1);
  if (HaveAvx2Fma() && !at::GradMode::is_enabled() && x.device().is_cpu() && w.device().is_cpu() &&
      x.scalar_type() == at::kFloat && w.scalar_type() == at::kFloat && w.dim() == 2 && x.size(-1) == k &&
      k % 8 == 0 && m >= 1 && m <= 16) {
    const at::Tensor xc = x.reshape({m, k}).contiguous(), wc = w.contiguous();  // [M, K], [N, K]
    std::vector<int64_t> shape = x.sizes().vec();
    shape.back() = n;
    at::Tensor out = at::empty({m, n}, x.options());  // [M, N]
    const float *xp = xc.data_ptr<float>(), *wp = wc.data_ptr<float>();
    float* op = out.data_ptr<float>();
    // blocks of 4 rows; grain ~256 KB of weight per task
    const int64_t blocks = (n + 3) / 4, grain = std::max<int64_t>(1, (1 << 16) / (4 * k));
    at::parallel_for(0, blocks, grain, [&](int64_t b0, int64_t b1) {
      GemvRowsAvx2(xp, wp, op, m, k, n, b0 * 4, std::min(n, b1 * 4));
    });
    return out.view(shape);
  }
#endif
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
