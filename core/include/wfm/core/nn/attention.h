// Scaled dot-product attention shared by every model: grouped-query heads, causal / boolean / additive masks,
// an additive bias (T5 relative position bias) and a custom scale (T5 uses 1).
//
// Two backends that give the same numbers (tests/core/nn_attention_test.cc):
//   kSdpa — at::scaled_dot_product_attention (LibTorch >= 2.0; flash / memory-efficient kernels where the inputs
//           allow them). Not compiled on LibTorch 1.13.
//   kMath — explicit softmax(q k^T * scale + bias + mask) v in the input dtype (softmax in float32 for 16-bit
//           inputs). Grouped-query heads are handled by reshaping the queries, never by copying K/V.
// kAuto picks kSdpa when it exists, else kMath.
//
// Shapes: q [B, Hq, Sq, D], k [B, Hkv, Sk, D], v [B, Hkv, Sk, Dv] with Hq % Hkv == 0 (query head h reads KV head
// h / (Hq / Hkv), i.e. the reference's repeat_interleave). Returns [B, Hq, Sq, Dv].
//
// Causal: query i sits at absolute position (Sk - Sq + i) and attends keys 0..Sk-Sq+i ("bottom-right" alignment),
// so a decode step (Sq = 1 over a cache of Sk keys) needs no mask. Masks broadcast to [B, Hq, Sq, Sk]:
// bool (true = attend) or floating (added to the scores). A row that masks out every key gives NaN, as torch does.
//
//   at::Tensor o = wfm::nn::Attention(q, k, v, wfm::nn::AttentionOptions().causal(true));
#pragma once

#include <optional>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>

namespace wfm::nn {

enum class AttentionBackend { kAuto, kMath, kSdpa };

struct AttentionOptions {
  TORCH_ARG(bool, causal) = false;
  // bool (true = attend) or additive float; broadcastable to [B, Hq, Sq, Sk]. Undefined = none.
  TORCH_ARG(at::Tensor, mask);
  // Additive float bias broadcastable to [B, Hq, Sq, Sk] (e.g. T5 relative position bias). Undefined = none.
  TORCH_ARG(at::Tensor, bias);
  // Multiplies q k^T; default 1/sqrt(D).
  TORCH_ARG(std::optional<double>, scale) = std::nullopt;
  TORCH_ARG(AttentionBackend, backend) = AttentionBackend::kAuto;
};

// True when this LibTorch has at::scaled_dot_product_attention (>= 2.0).
bool SdpaAvailable();

// See the file comment. Inputs are validated with TORCH_CHECK (shape mistakes are programming errors).
at::Tensor Attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     const AttentionOptions& options = {});

// Expands KV heads for grouped-query attention: [B, Hkv, S, D] -> [B, Hkv * n_rep, S, D] (repeat_interleave).
at::Tensor RepeatKvHeads(const at::Tensor& x, int64_t n_rep);

}  // namespace wfm::nn
