// Wavelet patching (cosmos_predict1/tokenizer/modules/patching.py): Patcher/UnPatcher (2D, images) and
// Patcher3D/UnPatcher3D (video). "haar": log2(patch_size) levels of an orthonormal Haar DWT applied to every
// band (each level: channels x4 in 2D, x8 in 3D, spatial size /2, time /2), rescaled by 1/2 (2D) or 1/(2*sqrt 2)
// (3D) per level; "rearrange": a plain space(-time)-to-channel shuffle. Video: the first frame is repeated
// patch_size times before the transform (so 1 + k*p frames -> 1 + k patched frames), and the inverse drops the
// extra frames. The module buffers (`wavelets`, `_arange`, 3D patcher `patch_size_buffer`) exist for state-dict
// compatibility; the filter taps are fixed by the method (a checkpoint with other taps is refused at load).
//
// Channel order follows the reference exactly: per level, bands are concatenated as
// 2D [LL, LH, HL, HH] (first letter = width band, second = height band); 3D [LLL, LLH, ..., HHH] with letters
// (time, height, width), each band holding all input channels.
#pragma once

#include <cstdint>
#include <string>

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

namespace wfm::tokenizer {

class CausalCache;

class PatcherImpl : public torch::nn::Module {
 public:
  PatcherImpl(int64_t patch_size, std::string patch_method);
  // [B, C, H, W] -> [B, C*p*p, H/p, W/p]
  at::Tensor forward(const at::Tensor& x);
  int64_t patch_size() const { return patch_size_; }

 protected:
  int64_t patch_size_;
  std::string method_;
  at::Tensor wavelets_, arange_;
};
TORCH_MODULE(Patcher);

class UnPatcherImpl : public torch::nn::Module {
 public:
  UnPatcherImpl(int64_t patch_size, std::string patch_method);
  // [B, C*p*p, h, w] -> [B, C, h*p, w*p]
  at::Tensor forward(const at::Tensor& x);

 protected:
  int64_t patch_size_;
  std::string method_;
  at::Tensor wavelets_, arange_;
};
TORCH_MODULE(UnPatcher);

class Patcher3DImpl : public torch::nn::Module {
 public:
  Patcher3DImpl(int64_t patch_size, std::string patch_method);
  // [B, C, 1 + k*p, H, W] -> [B, C*p^3, 1 + k, H/p, W/p]. With a cache, chunks after the first are not
  // prefixed with the repeated first frame.
  at::Tensor forward(const at::Tensor& x, CausalCache* cache = nullptr);

 private:
  int64_t patch_size_;
  std::string method_;
  at::Tensor wavelets_, arange_, patch_size_buffer_;
};
TORCH_MODULE(Patcher3D);

class UnPatcher3DImpl : public torch::nn::Module {
 public:
  UnPatcher3DImpl(int64_t patch_size, std::string patch_method);
  // [B, C*p^3, t, h, w] -> [B, C, (t-1)*p + 1, h*p, w*p] (first chunk; later chunks give t*p frames).
  at::Tensor forward(const at::Tensor& x, CausalCache* cache = nullptr);

 private:
  int64_t patch_size_;
  std::string method_;
  at::Tensor wavelets_, arange_;
};
TORCH_MODULE(UnPatcher3D);

// The single-level Haar analysis along one dimension of `x` (reflect-padded by one when odd), returning the
// (low, high) halves: low = (a + b)/sqrt2, high = (a - b)/sqrt2 for consecutive pairs (a, b).
std::pair<at::Tensor, at::Tensor> HaarSplit(const at::Tensor& x, int64_t dim);
// The inverse: interleaves (low + high)/sqrt2, (low - high)/sqrt2 along `dim`.
at::Tensor HaarMerge(const at::Tensor& low, const at::Tensor& high, int64_t dim);

}  // namespace wfm::tokenizer
