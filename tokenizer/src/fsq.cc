// FSQ (see fsq.h). The op sequence mirrors FSQuantizer.bound/quantize/codes_to_indices/indices_to_codes so that
// float32 results (and therefore the indices) match the reference bit for bit on the same hardware.
#include "wfm/tokenizer/fsq.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

namespace wfm::tokenizer {

FSQuantizerImpl::FSQuantizerImpl(std::vector<int64_t> levels) : levels_vec_(std::move(levels)) {
  TORCH_CHECK(!levels_vec_.empty(), "FSQ needs at least one level");
  codebook_size_ = 1;
  std::vector<int64_t> basis;
  for (int64_t l : levels_vec_) basis.push_back(codebook_size_), codebook_size_ *= l;
  levels_ = register_buffer("_levels", at::tensor(levels_vec_, at::kLong).to(at::kInt));
  basis_ = register_buffer("_basis", at::tensor(basis, at::kLong).to(at::kInt));
  // The reference stores it in FSQuantizer.dtype (bfloat16 by default); the values (multiples of 1/(L//2)) are
  // exact in bfloat16.
  implicit_codebook_ = register_buffer(
      "implicit_codebook",
      IndicesToCodes(at::arange(codebook_size_, at::kLong).unsqueeze(0)).squeeze(0).t().contiguous().to(at::kBFloat16));
}

at::Tensor FSQuantizerImpl::Bound(const at::Tensor& z) const {
  // half_l = (levels - 1) * (1 + eps) / 2; offset = 0.5 for even levels; shift = atanh(offset / half_l)
  const at::Tensor levels = levels_.to(z.device(), at::kInt);
  at::Tensor half_l = (levels - 1).mul(1.0 + 1e-3).div(2);
  at::Tensor offset = at::where(levels.remainder(2).eq(0), at::scalar_tensor(0.5, half_l.options()),
                                at::scalar_tensor(0.0, half_l.options()));
  at::Tensor shift = (offset / half_l).atanh();
  return (z + shift).tanh() * half_l - offset;
}

FSQuantizerImpl::Output FSQuantizerImpl::forward(const at::Tensor& z_in) {
  TORCH_CHECK(z_in.dim() >= 2 && z_in.size(1) == dim(), "FSQ expects [B, ", dim(), ", ...], got ", z_in.sizes());
  at::Tensor z = z_in.to(at::kFloat).movedim(1, -1);  // [B, ..., D]
  at::Tensor bounded = Bound(z);
  at::Tensor rounded = bounded.round();
  // round_ste: z + (zhat - z).detach() -- exactly zhat in value (Sterbenz), gradient of z.
  at::Tensor quantized = c10::GradMode::is_enabled() && bounded.requires_grad()
                             ? bounded + (rounded - bounded).detach()
                             : rounded;
  const at::Tensor half_width = levels_.to(z.device(), at::kInt).div(2, "floor");
  at::Tensor codes = quantized / half_width;  // [B, ..., D]
  at::Tensor idx = ((codes * half_width) + half_width).to(at::kFloat).mul(basis_.to(z.device(), at::kInt))
                       .sum(-1).to(at::kInt).to(at::kLong);
  return {idx.detach(), codes.movedim(-1, 1).contiguous()};
}

at::Tensor FSQuantizerImpl::CodesToIndices(const at::Tensor& codes) const {
  at::Tensor c = codes.to(at::kFloat).movedim(1, -1);
  const at::Tensor half_width = levels_.to(c.device(), at::kInt).div(2, "floor");
  return ((c * half_width) + half_width).mul(basis_.to(c.device(), at::kInt)).sum(-1).to(at::kInt).to(at::kLong);
}

at::Tensor FSQuantizerImpl::IndicesToCodes(const at::Tensor& indices) const {
  const at::Tensor levels = levels_.to(indices.device(), at::kInt), basis = basis_.to(indices.device(), at::kInt);
  at::Tensor idx = indices.to(at::kLong).unsqueeze(-1);  // [B, ..., 1]
  at::Tensor non_centered = idx.div(basis, "floor").remainder(levels);
  const at::Tensor half_width = levels.div(2, "floor");
  at::Tensor codes = (non_centered - half_width).div(half_width).to(at::kFloat);  // [B, ..., D]
  return codes.movedim(-1, 1).contiguous();
}

}  // namespace wfm::tokenizer
