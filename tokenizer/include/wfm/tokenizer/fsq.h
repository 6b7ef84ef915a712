// Finite Scalar Quantization (cosmos_predict1/tokenizer/modules/quantizers.py FSQuantizer, after
// Mentzer et al. 2023): each of the D channels is bounded with
//   half = (L - 1)(1 + 1e-3)/2, offset = 0.5 for even L, z' = tanh(z + atanh(offset/half)) * half - offset,
// rounded (straight-through gradient), and divided by L//2, giving codes in [-1, 1]. The index of a code is
// sum_d (code_d * (L_d//2) + L_d//2) * basis_d with basis = cumprod([1, L_0, ..., L_{D-2}]).
// Buffers (reference names): "_levels" int32 [D], "_basis" int32 [D], "implicit_codebook" float [N, D].
// FSQ needs no codebook loss; the reference returns a zero "dummy" loss.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

namespace wfm::tokenizer {

class FSQuantizerImpl : public torch::nn::Module {
 public:
  explicit FSQuantizerImpl(std::vector<int64_t> levels);

  struct Output {
    at::Tensor indices;  // int64 [B, ...]
    at::Tensor codes;    // float32 [B, D, ...], in [-1, 1] (straight-through: gradients flow to z)
  };
  // z: [B, D, ...] (any float dtype; computed in float32).
  Output forward(const at::Tensor& z);

  // codes [B, D, ...] -> int64 indices [B, ...].
  at::Tensor CodesToIndices(const at::Tensor& codes) const;
  // int64 indices [B, ...] -> float32 codes [B, D, ...].
  at::Tensor IndicesToCodes(const at::Tensor& indices) const;
  // The bounded (pre-rounding) values for z with the code dimension LAST: [..., D].
  at::Tensor Bound(const at::Tensor& z_last) const;

  int64_t dim() const { return static_cast<int64_t>(levels_vec_.size()); }
  int64_t codebook_size() const { return codebook_size_; }
  const std::vector<int64_t>& levels() const { return levels_vec_; }

 private:
  std::vector<int64_t> levels_vec_;
  int64_t codebook_size_;
  at::Tensor levels_, basis_, implicit_codebook_;
};
TORCH_MODULE(FSQuantizer);

}  // namespace wfm::tokenizer
