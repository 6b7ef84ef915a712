// Scaled dot-product attention with GQA, causal / boolean / additive masks and bias (see wfm/core/nn/attention.h).
// Follows cosmos_predict1/autoregressive/modules/attention.py scaled_dot_product_attention (and torch's math
// backend) for the numerics.
#include "wfm/core/nn/attention.h"

#include <cmath>
#include <limits>

#include <ATen/ATen.h>
#include <torch/version.h>

#if TORCH_VERSION_MAJOR >= 2
#define WFM_HAVE_SDPA 1
#else
#define WFM_HAVE_SDPA 0
#endif

namespace wfm::nn {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// Keys each query may attend under bottom-right causal alignment: keep[i, j] = j <= Sk - Sq + i.  [Sq, Sk]
at::Tensor CausalKeep(int64_t sq, int64_t sk, const at::Device& device) {
  return at::ones({sq, sk}, at::TensorOptions().dtype(at::kBool).device(device)).tril(sk - sq);
}

bool IsLowPrecision(at::ScalarType t) { return t == at::kHalf || t == at::kBFloat16; }

at::Tensor MathAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const AttentionOptions& o,
                         double scale) {
  const int64_t b = q.size(0), hq = q.size(1), sq = q.size(2), d = q.size(3);
  const int64_t hkv = k.size(1), sk = k.size(2), dv = v.size(3);
  const int64_t rep = hq / hkv;
  // Grouped heads share K/V: fold the `rep` query heads of one KV head into the row dimension.
  const at::Tensor qg = (q * scale).reshape({b, hkv, rep * sq, d});        // [B, Hkv, rep*Sq, D]
  at::Tensor scores = at::matmul(qg, k.transpose(-2, -1)).view({b, hq, sq, sk});  // [B, Hq, Sq, Sk]
  if (o.bias().defined()) scores.add_(o.bias());
  if (o.mask().defined()) {
    if (o.mask().scalar_type() == at::kBool) {
      scores.masked_fill_(o.mask().logical_not(), kNegInf);
    } else {
      scores.add_(o.mask());
    }
  }
  if (o.causal() && sq > 1) scores.masked_fill_(CausalKeep(sq, sk, q.device()).logical_not(), kNegInf);
  const at::Tensor probs = IsLowPrecision(scores.scalar_type())
                               ? at::softmax(scores, -1, at::kFloat).to(scores.scalar_type())
                               : at::softmax(scores, -1);  // [B, Hq, Sq, Sk]
  return at::matmul(probs.view({b, hkv, rep * sq, sk}), v).view({b, hq, sq, dv});  // [B, Hq, Sq, Dv]
}

#if WFM_HAVE_SDPA
at::Tensor SdpaAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const AttentionOptions& o,
                         double scale) {
  const int64_t hq = q.size(1), sq = q.size(2), d = q.size(3);
  const int64_t hkv = k.size(1), sk = k.size(2);
  // One combined mask: bias + additive mask, -inf where a boolean mask or causality forbids.
  at::Tensor m;
  if (o.bias().defined()) m = o.bias().to(q.scalar_type());
  if (o.mask().defined()) {
    const at::Tensor& mask = o.mask();
    if (mask.scalar_type() == at::kBool) {
      m = m.defined() ? m.masked_fill(mask.logical_not(), kNegInf) : mask;
    } else {
      m = m.defined() ? m + mask.to(q.scalar_type()) : mask.to(q.scalar_type());
    }
  }
  bool is_causal = false;
  if (o.causal() && sq > 1) {
    if (!m.defined() && sq == sk) {
      is_causal = true;
    } else {
      const at::Tensor keep = CausalKeep(sq, sk, q.device());
      if (!m.defined()) {
        m = keep;
      } else if (m.scalar_type() == at::kBool) {
        m = m.logical_and(keep);
      } else {
        m = m.masked_fill(keep.logical_not(), kNegInf);
      }
    }
  }
  at::Tensor kk = k, vv = v;
#if TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR < 5
  if (hq != hkv) {
    kk = RepeatKvHeads(k, hq / hkv);
    vv = RepeatKvHeads(v, hq / hkv);
  }
#endif
  const c10::optional<at::Tensor> mask_arg = m.defined() ? c10::optional<at::Tensor>(m) : c10::nullopt;
#if TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR == 0
  // 2.0 has no `scale` argument: pre-scale q so that its built-in 1/sqrt(D) yields `scale`.
  return at::scaled_dot_product_attention(q * (scale * std::sqrt(static_cast<double>(d))), kk, vv, mask_arg, 0.0,
                                          is_causal);
#elif TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR < 5
  (void)d;
  return at::scaled_dot_product_attention(q, kk, vv, mask_arg, 0.0, is_causal, scale);
#else
  (void)d;
  return at::scaled_dot_product_attention(q, kk, vv, mask_arg, 0.0, is_causal, scale, /*enable_gqa=*/hq != hkv);
#endif
}
#endif

}  // namespace

bool SdpaAvailable() { return WFM_HAVE_SDPA != 0; }

at::Tensor RepeatKvHeads(const at::Tensor& x, int64_t n_rep) {
  if (n_rep == 1) return x;
  const int64_t b = x.size(0), h = x.size(1), s = x.size(2), d = x.size(3);
  return x.unsqueeze(2).expand({b, h, n_rep, s, d}).reshape({b, h * n_rep, s, d});
}

at::Tensor Attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const AttentionOptions& options) {
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "Attention: q, k, v must be [B, H, S, D]; got ",
              q.sizes(), ", ", k.sizes(), ", ", v.sizes());
  TORCH_CHECK(k.size(0) == q.size(0) && v.size(0) == q.size(0), "Attention: batch mismatch ", q.sizes(), " vs ",
              k.sizes(), " / ", v.sizes());
  TORCH_CHECK(k.size(1) == v.size(1) && k.size(2) == v.size(2), "Attention: k ", k.sizes(), " and v ", v.sizes(),
              " disagree");
  TORCH_CHECK(k.size(3) == q.size(3), "Attention: q head dim ", q.size(3), " != k head dim ", k.size(3));
  TORCH_CHECK(k.size(1) > 0 && q.size(1) % k.size(1) == 0, "Attention: ", q.size(1),
              " query heads are not a multiple of ", k.size(1), " KV heads");
  TORCH_CHECK(!options.causal() || q.size(2) <= k.size(2), "Attention: causal with more queries (", q.size(2),
              ") than keys (", k.size(2), ")");
  const double scale = options.scale().has_value() ? *options.scale() : 1.0 / std::sqrt(static_cast<double>(q.size(3)));
  AttentionBackend backend = options.backend();
  if (backend == AttentionBackend::kAuto) backend = SdpaAvailable() ? AttentionBackend::kSdpa : AttentionBackend::kMath;
#if WFM_HAVE_SDPA
  if (backend == AttentionBackend::kSdpa) return SdpaAttention(q, k, v, options, scale);
#else
  TORCH_CHECK(backend != AttentionBackend::kSdpa,
              "Attention: the SDPA backend needs LibTorch >= 2.0 (this is ", TORCH_VERSION, ")");
#endif
  return MathAttention(q, k, v, options, scale);
}

}  // namespace wfm::nn
