// Haar wavelet / rearrange patching, 2D and 3D (see patching.h). Follows Patcher._dwt, Patcher3D._dwt and the
// UnPatcher inverses of cosmos_predict1/tokenizer/modules/patching.py. One Haar level over d axes is a
// Walsh-Hadamard transform of each 2^d block: band[b] = s * sum_k (-1)^popcount(b & k) x[k], computed with d
// butterfly stages on strided views instead of 2*d grouped convolutions. With the reference rescaling the
// forward scale is 1/4 (2D) or 1/8 (3D) and the inverse scale is 1.
#include "wfm/tokenizer/patching.h"

#include <ATen/ATen.h>

#include "wfm/tokenizer/causal_cache.h"

namespace wfm::tokenizer {
namespace {

constexpr double kInvSqrt2 = 0.7071067811865476;

at::Tensor HaarWavelets() { return at::tensor({kInvSqrt2, kInvSqrt2}, at::kFloat); }
at::Tensor RearrangeWavelets() { return at::tensor({1.0, 1.0}, at::kFloat); }

int64_t Levels(int64_t patch_size) {
  int64_t n = 0;
  while ((int64_t{1} << n) < patch_size) ++n;
  return n;
}

// Reflect-pads `dim` by one element on the right when its size is odd (F.pad(..., (0, 1), mode="reflect")).
at::Tensor PadEven(const at::Tensor& x, int64_t dim) {
  const int64_t n = x.size(dim);
  if (n % 2 == 0) return x;
  TORCH_CHECK(n >= 2, "Haar patching needs at least 2 samples along dim ", dim, " (got ", n, ")");
  return at::cat({x, x.narrow(dim, n - 2, 1)}, dim);
}

// In-place Walsh-Hadamard butterflies over a list of 2^d tensors.
void Hadamard(std::vector<at::Tensor>& v) {
  const size_t n = v.size();
  for (size_t bit = n / 2; bit >= 1; bit /= 2) {
    for (size_t k = 0; k < n; ++k) {
      if (k & bit) continue;
      at::Tensor a = v[k], b = v[k | bit];
      v[k] = a + b;
      v[k | bit] = a - b;
    }
  }
}

// One Haar level of x over `dims` (2 or 3 axes, in the order that defines the band index bits, most significant
// first). Returns band-major channels [B, 2^d * C, ...].
at::Tensor HaarLevel(at::Tensor x, const std::vector<int64_t>& dims, double scale) {
  for (int64_t d : dims) x = PadEven(x, d);
  // Element k of each 2^d block: bit (d-1-i) of k = parity along dims[i].
  const size_t nd = dims.size();
  std::vector<at::Tensor> v(size_t{1} << nd);
  for (size_t k = 0; k < v.size(); ++k) {
    at::Tensor e = x;
    for (size_t i = 0; i < nd; ++i) {
      const int64_t parity = (k >> (nd - 1 - i)) & 1;
      e = e.slice(dims[i], parity, c10::nullopt, 2);
    }
    v[k] = e;
  }
  Hadamard(v);
  at::Tensor out = at::cat(v, 1);  // [B, 2^d * C, ...]
  return out.mul_(scale);
}

// Inverse of HaarLevel: splits the channels into 2^d bands, undoes the transform and interleaves the samples.
// `dims` must be the trailing axes of x (in any order).
at::Tensor HaarLevelInverse(const at::Tensor& x, const std::vector<int64_t>& dims) {
  const int64_t nd = static_cast<int64_t>(dims.size());
  const int64_t nb = int64_t{1} << nd;
  TORCH_CHECK(x.size(1) % nb == 0, "inverse Haar: channels ", x.size(1), " not divisible by ", nb);
  std::vector<at::Tensor> v = x.chunk(nb, 1);
  Hadamard(v);  // v[k]: the samples at parity k (bit nd-1-i of k = parity along dims[i])
  // [B, C, 2 (dims[0]), ..., 2 (dims[nd-1]), S_2, ..., S_{nd+1}]
  at::Tensor s = at::stack(v, 2);
  std::vector<int64_t> shape = {x.size(0), x.size(1) / nb};
  for (int64_t i = 0; i < nd; ++i) shape.push_back(2);
  for (int64_t d = 2; d < x.dim(); ++d) shape.push_back(x.size(d));
  s = s.view(shape);
  // -> [B, C, S_2, parity(2), S_3, parity(3), ...]
  std::vector<int64_t> perm = {0, 1}, out_shape = {x.size(0), x.size(1) / nb};
  for (int64_t d = 2; d < x.dim(); ++d) {
    const int64_t i = std::find(dims.begin(), dims.end(), d) - dims.begin();
    TORCH_CHECK(i < nd, "inverse Haar: dims must be the trailing axes");
    perm.push_back(2 + nd + (d - 2));
    perm.push_back(2 + i);
    out_shape.push_back(2 * x.size(d));
  }
  return s.permute(perm).reshape(out_shape);
}

void CheckWavelets(const std::string& method) {
  TORCH_CHECK(method == "haar" || method == "rearrange", "unknown patch method: ", method);
}

}  // namespace

std::pair<at::Tensor, at::Tensor> HaarSplit(const at::Tensor& x_in, int64_t dim) {
  at::Tensor x = PadEven(x_in, dim);
  at::Tensor a = x.slice(dim, 0, c10::nullopt, 2), b = x.slice(dim, 1, c10::nullopt, 2);
  return {(a + b).mul_(kInvSqrt2), (a - b).mul_(kInvSqrt2)};
}

at::Tensor HaarMerge(const at::Tensor& low, const at::Tensor& high, int64_t dim) {
  at::Tensor s = at::stack({(low + high).mul_(kInvSqrt2), (low - high).mul_(kInvSqrt2)}, dim + 1);
  std::vector<int64_t> merged = s.sizes().vec();
  merged[dim] *= 2;
  merged.erase(merged.begin() + dim + 1);
  return s.reshape(merged);
}

// ---------------------------------------------------------------------------------------------------------------
// 2D

PatcherImpl::PatcherImpl(int64_t patch_size, std::string patch_method)
    : patch_size_(patch_size), method_(std::move(patch_method)) {
  CheckWavelets(method_);
  wavelets_ = register_buffer("wavelets", method_ == "haar" ? HaarWavelets() : RearrangeWavelets());
  arange_ = register_buffer("_arange", at::arange(2, at::kLong));
}

at::Tensor PatcherImpl::forward(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 4, "Patcher expects [B, C, H, W], got ", x.sizes());
  if (patch_size_ == 1) return x;
  if (method_ == "haar") {
    at::Tensor h = x;
    // Band index = w_band * 2 + h_band (Patcher._dwt filters width first).
    for (int64_t i = 0, n = Levels(patch_size_); i < n; ++i) h = HaarLevel(h, {3, 2}, 0.25);
    return h;
  }
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), p = patch_size_;
  // "b c (h p1) (w p2) -> b (c p1 p2) h w"
  return x.reshape({B, C, H / p, p, W / p, p}).permute({0, 1, 3, 5, 2, 4}).reshape({B, C * p * p, H / p, W / p});
}

UnPatcherImpl::UnPatcherImpl(int64_t patch_size, std::string patch_method)
    : patch_size_(patch_size), method_(std::move(patch_method)) {
  CheckWavelets(method_);
  wavelets_ = register_buffer("wavelets", method_ == "haar" ? HaarWavelets() : RearrangeWavelets());
  arange_ = register_buffer("_arange", at::arange(2, at::kLong));
}

at::Tensor UnPatcherImpl::forward(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 4, "UnPatcher expects [B, C, H, W], got ", x.sizes());
  if (patch_size_ == 1) return x;
  if (method_ == "haar") {
    at::Tensor h = x;
    for (int64_t i = 0, n = Levels(patch_size_); i < n; ++i) h = HaarLevelInverse(h, {3, 2});
    return h;
  }
  const int64_t B = x.size(0), p = patch_size_, C = x.size(1) / (p * p), H = x.size(2), W = x.size(3);
  return x.reshape({B, C, p, p, H, W}).permute({0, 1, 4, 2, 5, 3}).reshape({B, C, H * p, W * p});
}

// ---------------------------------------------------------------------------------------------------------------
// 3D

Patcher3DImpl::Patcher3DImpl(int64_t patch_size, std::string patch_method)
    : patch_size_(patch_size), method_(std::move(patch_method)) {
  CheckWavelets(method_);
  wavelets_ = register_buffer("wavelets", method_ == "haar" ? HaarWavelets() : RearrangeWavelets());
  arange_ = register_buffer("_arange", at::arange(2, at::kLong));
  patch_size_buffer_ = register_buffer("patch_size_buffer", at::full({1}, patch_size, at::kInt));
}

at::Tensor Patcher3DImpl::forward(const at::Tensor& x_in, CausalCache* cache) {
  TORCH_CHECK(x_in.dim() == 5, "Patcher3D expects [B, C, T, H, W], got ", x_in.sizes());
  const int64_t p = patch_size_;
  // Patcher3D._haar: the first frame is repeated p times (first chunk of a stream only).
  at::Tensor x = x_in;
  if (p > 1 && (cache == nullptr || stream::FirstChunk(cache))) x = stream::RepeatFirstFrame(x, p - 1);
  if (p == 1) return x;
  if (method_ == "haar") {
    for (int64_t i = 0, n = Levels(p); i < n; ++i) x = HaarLevel(x, {2, 3, 4}, 0.125);
    return x;
  }
  const int64_t B = x.size(0), C = x.size(1), T = x.size(2), H = x.size(3), W = x.size(4);
  // "b c (t p1) (h p2) (w p3) -> b (c p1 p2 p3) t h w"
  return x.reshape({B, C, T / p, p, H / p, p, W / p, p})
      .permute({0, 1, 3, 5, 7, 2, 4, 6})
      .reshape({B, C * p * p * p, T / p, H / p, W / p});
}

UnPatcher3DImpl::UnPatcher3DImpl(int64_t patch_size, std::string patch_method)
    : patch_size_(patch_size), method_(std::move(patch_method)) {
  CheckWavelets(method_);
  wavelets_ = register_buffer("wavelets", method_ == "haar" ? HaarWavelets() : RearrangeWavelets());
  arange_ = register_buffer("_arange", at::arange(2, at::kLong));
}

at::Tensor UnPatcher3DImpl::forward(const at::Tensor& x, CausalCache* cache) {
  TORCH_CHECK(x.dim() == 5, "UnPatcher3D expects [B, C, T, H, W], got ", x.sizes());
  const int64_t p = patch_size_;
  at::Tensor y;
  if (p == 1) {
    y = x;
  } else if (method_ == "haar") {
    y = x;
    for (int64_t i = 0, n = Levels(p); i < n; ++i) y = HaarLevelInverse(y, {2, 3, 4});
  } else {
    const int64_t B = x.size(0), C = x.size(1) / (p * p * p), T = x.size(2), H = x.size(3), W = x.size(4);
    y = x.reshape({B, C, p, p, p, T, H, W})
            .permute({0, 1, 5, 2, 6, 3, 7, 4})
            .reshape({B, C, T * p, H * p, W * p});
  }
  // UnPatcher3D._ihaar: drop the p - 1 repeated first frames (first chunk of a stream only).
  if (p > 1 && (cache == nullptr || stream::FirstChunk(cache))) y = y.slice(2, p - 1);
  return y;
}

}  // namespace wfm::tokenizer
