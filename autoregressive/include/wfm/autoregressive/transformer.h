// The Cosmos-Predict1 autoregressive world model network: a Llama-style decoder over discrete video tokens
// (cosmos_predict1/autoregressive/networks/transformer.py Transformer, modules/attention.py Attention).
//
// Block: h = x + attention(attention_norm(x))                       (GQA, optional QK-norm, 3D RoPE, causal)
//        h = h + cross_attention(cross_attention_norm(h), text)     (every k-th layer; QK-norm, no RoPE)
//        out = h + feed_forward(ffn_norm(h))                        (SwiGLU w1/w2/w3)
// with the optional 3D sin-cos absolute embedding added to the hidden state before EVERY block (as the reference
// does), then norm -> output. Parameter names equal the reference state dict: tok_embeddings.weight,
// layers.N.attention.{wq,wk,wv,wo}.weight (or wqkv with fuse_qkv), layers.N.attention.{q_norm,k_norm}.weight,
// layers.N.cross_attention.*, layers.N.cross_attention_norm.weight, layers.N.feed_forward.{w1,w2,w3}.weight,
// layers.N.{attention_norm,ffn_norm}.weight, norm.weight, output.weight. The RoPE and sin-cos tables are not
// part of the state dict (non-persistent in the reference) and are rebuilt from the config.
//
// One forward serves training (no cache), full-sequence scoring, prefill and incremental decoding: tokens
// occupy absolute positions [start, start + S); with a KvCache their K/V are written at those positions and the
// queries attend over the filled prefix [0, start + S) only.
//
//   ar::ArTransformer net(config);
//   ar::KvCache cache = net->NewCache(/*batch=*/2, /*capacity=*/config.max_seq_len);
//   at::Tensor logits = net->forward(prompt, /*start=*/0, &cache);          // prefill  [2, P, V]
//   at::Tensor next = net->forward(tok, /*start=*/P, &cache, nullptr, true);  // decode   [2, 1, V]
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "wfm/autoregressive/config.h"
#include "wfm/core/nn/mlp.h"
#include "wfm/core/nn/norm.h"

namespace wfm::ar {

// Text conditioning for the cross-attention layers.
struct TextContext {
  at::Tensor embeddings;  // [B, L, context_dim] (B may be 1 and is then shared by every sample)
  at::Tensor mask;        // bool [B, L], true = valid token; undefined = all valid
};

// y = x @ w^T for decode-sized inputs: x [..., K] with at most 16 rows, w [N, K], float32, CPU, no autograd —
// the output projection of an incremental step (64000 x 256: the largest read of a step). LibTorch's CPU path for
// these shapes (at::linear -> sgemv) streams the weight at a fraction of memory bandwidth; this kernel (AVX2/FMA,
// picked at run time, rows split over the intra-op threads) reads each weight row once for all inputs. Same
// products, fp32 accumulation; only the summation order differs (~1e-7 relative). Falls back to at::linear for
// anything else (other dtypes/devices, grad mode, K % 8 != 0, no AVX2).
at::Tensor DecodeLinear(const at::Tensor& x, const at::Tensor& w);

// Preallocated KV cache (the reference keeps cache_k/cache_v [max_batch, kv_heads, max_seq, head_dim] inside
// each Attention; here it is a separate object so that one network serves several generations).
class KvCache {
 public:
  struct Layer {
    at::Tensor k, v;              // [B, Hkv, capacity, D]
    at::Tensor cross_k, cross_v;  // [B, Hkv, L, D] of the text context, computed on first use
  };
  KvCache() = default;
  KvCache(int64_t n_layers, int64_t batch, int64_t kv_heads, int64_t capacity, int64_t head_dim,
          at::ScalarType dtype, c10::Device device);

  int64_t batch() const { return batch_; }
  int64_t capacity() const { return capacity_; }
  // Positions [0, length) hold valid K/V (advanced by the network's forward).
  int64_t length() const { return length_; }
  void set_length(int64_t n);
  // Forgets the cached positions and text K/V (memory stays allocated).
  void Reset();
  // A new cache whose row i is row rows[i] of this one (positions [0, length) and the text K/V): prefill a prompt
  // once, then decode B different futures from it ("multiverse") with rows = {0, 0, ..., 0}.
  KvCache Gather(const std::vector<int64_t>& rows) const;
  // Bytes held by the self-attention K/V.
  int64_t bytes() const;

  std::vector<Layer> layers;

 private:
  int64_t batch_ = 0, capacity_ = 0, length_ = 0;
};

class ArAttentionImpl : public torch::nn::Cloneable<ArAttentionImpl> {
 public:
  ArAttentionImpl(const ArConfig& config, bool cross);
  void reset() override;
  // Self-attention: x [B, S, dim] at positions [start, start+S); cos/sin [1, S, 1, D] (already in x's dtype).
  at::Tensor SelfAttend(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, int64_t start,
                        KvCache::Layer* cache);
  // Cross-attention over the text context (no RoPE, no causal mask).
  at::Tensor CrossAttend(const at::Tensor& x, const TextContext& context, KvCache::Layer* cache);

  ArConfig config;
  bool cross = false;
  torch::nn::Linear wq{nullptr}, wk{nullptr}, wv{nullptr}, wo{nullptr}, wqkv{nullptr};
  nn::RMSNorm q_norm{nullptr}, k_norm{nullptr};

 private:
  std::pair<at::Tensor, at::Tensor> ContextKv(const TextContext& context);
  at::Tensor Output(const at::Tensor& attn, int64_t b, int64_t s);  // [B, Hq, S, D] -> wo -> [B, S, dim]
};
TORCH_MODULE(ArAttention);

class ArTransformerBlockImpl : public torch::nn::Cloneable<ArTransformerBlockImpl> {
 public:
  ArTransformerBlockImpl(const ArConfig& config, int64_t layer_id);
  void reset() override;
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, int64_t start,
                     KvCache::Layer* cache, const TextContext* context);

  ArConfig config;
  int64_t layer_id = 0;
  ArAttention attention{nullptr}, cross_attention{nullptr};
  nn::RMSNorm cross_attention_norm{nullptr}, attention_norm{nullptr}, ffn_norm{nullptr};
  nn::SwiGLU feed_forward{nullptr};
};
TORCH_MODULE(ArTransformerBlock);

class ArTransformerImpl : public torch::nn::Cloneable<ArTransformerImpl> {
 public:
  explicit ArTransformerImpl(const ArConfig& config);
  void reset() override;

  // tokens int64 [B, S] at positions [start, start+S) -> logits [B, S, vocab] (or [B, 1, vocab] for the last
  // position only with last_only). With `cache`, K/V are stored and the cache length becomes start+S (start must
  // equal the cache length: positions are filled in order). `context` is required iff the model has
  // cross-attention. Inputs are checked with TORCH_CHECK; library entry points wrap this in a Status.
  at::Tensor forward(const at::Tensor& tokens, int64_t start = 0, KvCache* cache = nullptr,
                     const TextContext* context = nullptr, bool last_only = false);
  // Final hidden states [B, S, dim] (after `norm`), same arguments.
  at::Tensor Hidden(const at::Tensor& tokens, int64_t start = 0, KvCache* cache = nullptr,
                    const TextContext* context = nullptr);

  // Inference speed option: run the output projection (vocab x dim, the largest read of a decode step) with its
  // weight in `dtype` (opt-in, inexact); logits come back in the parameters' dtype. Used only when autograd is off;
  // the converted weight is cached and refreshed when the parameter changes.
  //   at::kBFloat16: half the memory traffic; each weight rounded to bf16 (~0.4% relative), input kept in fp32 on
  //                  CPU for up to 16 rows (else cast to bf16 too).
  //   at::kChar:     int8 weight-only, symmetric per-row scale (w ~= q * max|w_row| / 127, error <= scale / 2 per
  //                  weight), a quarter of the traffic; fp32 input and accumulation.
  // nullopt (default): exact, in the parameters' dtype.
  void set_output_dtype(std::optional<at::ScalarType> dtype);

  // Batch-1 / small-batch (B <= 16) incremental steps (S = 1 with a cache) on CPU in float32 run a fused decode
  // path: every block's RMSNorm, QKV GEMV, QK-norm, RoPE, cache write, attention over the filled prefix, wo and
  // SwiGLU in plain C++ over the raw weights (AVX2), instead of ~250 small ATen ops per layer. Same results within
  // ~1e-6 relative. On by default; false forces the ATen path (tests, A/B measurements).
  void set_fused_decode(bool on) { fused_decode_ = on; }
  // Whether a one-token step of `batch` sequences with `cache` takes the fused path.
  bool FusedDecodeApplies(int64_t batch, const KvCache& cache) const;

  // A cache for `batch` sequences of up to `capacity` positions in the parameters' dtype / device.
  KvCache NewCache(int64_t batch, int64_t capacity) const;

  // Position tables over PositionTableLength() positions (float32, CPU): RoPE cos/sin [P, head_dim] (mscale
  // applied for pytorch_rope_version v1) and the absolute embedding [P, dim] (bfloat16-rounded as in the
  // reference; undefined without apply_abs_pos_emb).
  const at::Tensor& rope_cos() const { return cos_; }
  const at::Tensor& rope_sin() const { return sin_; }
  const at::Tensor& abs_pos_emb() const { return abs_; }

  // Llama-3 / TorchTitan initialisation (reference init_weights with depth_init): trunc-normal(0.02) for
  // wq/wk/wv/w1, 0.02/sqrt(2(layer+1)) for wo/w2/w3, N(0, 1) embeddings, output std dim^-0.5, norms 1.
  void InitWeights(uint64_t seed);

  ArConfig config;
  torch::nn::Embedding tok_embeddings{nullptr};
  torch::nn::ModuleList layers{nullptr};
  nn::RMSNorm norm{nullptr};
  torch::nn::Linear output{nullptr};

 private:
  void BuildTables();
  // Tables sliced to [start, start+n) and cast to (dtype, device), cached per dtype/device.
  void Tables(int64_t start, int64_t n, at::ScalarType dtype, c10::Device device, at::Tensor* cos, at::Tensor* sin,
              at::Tensor* abs);

  at::Tensor Output(const at::Tensor& h);
  // h [B, 1, dim] contiguous, updated to the last block's output (before `norm`); K/V written at position p.
  void DecodeFused(at::Tensor& h, int64_t p, KvCache* cache, const TextContext* context);

  at::Tensor cos_, sin_, abs_;
  std::optional<at::ScalarType> output_dtype_;
  at::Tensor output_weight_cast_, output_scale_;  // converted output weight [vocab, dim]; int8 row scales [vocab]
  bool fused_decode_ = true;
  std::vector<float> scratch_;  // fused decode buffers (grow only)
  int64_t output_weight_version_ = -1;
  at::Tensor cos_cast_, sin_cast_, abs_cast_;
  std::vector<ArTransformerBlock> blocks_;
};
TORCH_MODULE(ArTransformer);

}  // namespace wfm::ar
