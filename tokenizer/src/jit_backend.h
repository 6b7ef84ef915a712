// Private: running published TorchScript tokenizer files as they are (the alternative to loading their
// parameters into the native network). encoder.jit = nn.Sequential(encoder, quant_conv, distribution |
// quantizer) traced; decoder.jit = nn.Sequential([inv_quant,] post_quant_conv, decoder); autoencoder.jit = the
// whole network (reconstruction only). Files are recognised by name: encoder/enc, decoder/dec, else full.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "absl/status/statusor.h"
#include "wfm/tokenizer/config.h"

namespace wfm::tokenizer::internal {

class JitBackend {
 public:
  static absl::StatusOr<std::unique_ptr<JitBackend>> Load(const std::vector<std::string>& files,
                                                          const TokenizerConfig& config, c10::Device device,
                                                          at::ScalarType dtype);
  ~JitBackend();

  bool has_encoder() const;
  bool has_decoder() const;
  bool has_autoencoder() const;
  std::string Describe() const;

  // x [B, C, T, H, W] or [B, C, H, W] on any device. Continuous: the latent; discrete: (indices, codes).
  absl::StatusOr<std::pair<at::Tensor, at::Tensor>> Encode(const at::Tensor& x);
  // Continuous: latent; discrete: int64 indices (the decoder.jit starts with InvQuantizerJit).
  absl::StatusOr<at::Tensor> Decode(const at::Tensor& latent_or_indices);
  // autoencoder.jit: the reconstruction.
  absl::StatusOr<at::Tensor> Reconstruct(const at::Tensor& x);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace wfm::tokenizer::internal
