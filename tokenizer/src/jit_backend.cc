// TorchScript tokenizer backend (see jit_backend.h). The only file that includes torch/script.h.
#include "jit_backend.h"

#include <torch/script.h>

#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "wfm/core/status.h"

namespace wfm::tokenizer::internal {
namespace fs = std::filesystem;

struct JitBackend::Impl {
  std::optional<torch::jit::Module> encoder, decoder, autoencoder;
  std::string encoder_path, decoder_path, autoencoder_path;
  TokenizerConfig config;
  c10::Device device{c10::kCPU};
  at::ScalarType dtype = at::kFloat;
};

namespace {
// The first tensor of a (possibly nested) tuple/list output.
std::vector<at::Tensor> Flatten(const c10::IValue& v) {
  std::vector<at::Tensor> out;
  if (v.isTensor()) {
    out.push_back(v.toTensor());
  } else if (v.isTuple()) {
    for (const auto& e : v.toTupleRef().elements()) {
      auto sub = Flatten(e);
      out.insert(out.end(), sub.begin(), sub.end());
    }
  } else if (v.isList()) {
    for (const auto& e : v.toListRef()) {
      auto sub = Flatten(e);
      out.insert(out.end(), sub.begin(), sub.end());
    }
  }
  return out;
}
}  // namespace

JitBackend::~JitBackend() = default;

absl::StatusOr<std::unique_ptr<JitBackend>> JitBackend::Load(const std::vector<std::string>& files,
                                                             const TokenizerConfig& config, c10::Device device,
                                                             at::ScalarType dtype) {
  std::unique_ptr<JitBackend> b(new JitBackend());
  b->impl_ = std::make_unique<Impl>();
  Impl& m = *b->impl_;
  m.config = config, m.device = device, m.dtype = dtype;
  for (const std::string& path : files) {
    const std::string name = fs::path(path).filename().string();
    auto loaded = CatchToStatus(path, [&]() -> absl::StatusOr<torch::jit::Module> {
      torch::jit::Module mod = torch::jit::load(path, device);
      mod.eval();
      mod.to(dtype);
      return mod;
    });
    if (!loaded.ok()) return Annotate(loaded.status(), "loading TorchScript");
    // encoder.jit / iter_N_enc.jit, decoder.jit / iter_N_dec.jit; anything else (autoencoder.jit,
    // iter_N_ema.jit, iter_N_reg.jit) is the whole network.
    const bool full = absl::StrContains(name, "autoencoder");
    if (!full && (absl::StrContains(name, "encoder") || absl::StrContains(name, "_enc"))) {
      m.encoder = std::move(*loaded), m.encoder_path = path;
    } else if (!full && (absl::StrContains(name, "decoder") || absl::StrContains(name, "_dec"))) {
      m.decoder = std::move(*loaded), m.decoder_path = path;
    } else {
      m.autoencoder = std::move(*loaded), m.autoencoder_path = path;
    }
  }
  return b;
}

bool JitBackend::has_encoder() const { return impl_->encoder.has_value(); }
bool JitBackend::has_decoder() const { return impl_->decoder.has_value(); }
bool JitBackend::has_autoencoder() const { return impl_->autoencoder.has_value(); }

std::string JitBackend::Describe() const {
  std::string s = "TorchScript";
  if (impl_->encoder) absl::StrAppend(&s, " encoder=", impl_->encoder_path);
  if (impl_->decoder) absl::StrAppend(&s, " decoder=", impl_->decoder_path);
  if (impl_->autoencoder) absl::StrAppend(&s, " autoencoder=", impl_->autoencoder_path);
  return s;
}

absl::StatusOr<std::pair<at::Tensor, at::Tensor>> JitBackend::Encode(const at::Tensor& x) {
  if (!impl_->encoder)
    return absl::FailedPreconditionError("the TorchScript backend has no encoder.jit to encode with");
  return CatchToStatus(impl_->encoder_path, [&]() -> absl::StatusOr<std::pair<at::Tensor, at::Tensor>> {
    torch::NoGradGuard ng;
    std::vector<at::Tensor> out = Flatten(impl_->encoder->forward({x.to(impl_->device, impl_->dtype)}));
    if (out.empty()) return absl::InternalError("encoder.jit returned no tensor");
    if (impl_->config.is_discrete()) {
      if (out.size() < 2) return absl::InternalError("discrete encoder.jit should return (indices, codes, loss)");
      return std::make_pair(out[0].to(at::kLong), out[1]);
    }
    return std::make_pair(out[0], at::Tensor());
  });
}

absl::StatusOr<at::Tensor> JitBackend::Decode(const at::Tensor& latent_or_indices) {
  if (!impl_->decoder)
    return absl::FailedPreconditionError("the TorchScript backend has no decoder.jit to decode with");
  return CatchToStatus(impl_->decoder_path, [&]() -> absl::StatusOr<at::Tensor> {
    torch::NoGradGuard ng;
    at::Tensor in = latent_or_indices.to(impl_->device);
    if (at::isFloatingType(in.scalar_type())) in = in.to(impl_->dtype);
    std::vector<at::Tensor> out = Flatten(impl_->decoder->forward({in}));
    if (out.empty()) return absl::InternalError("decoder.jit returned no tensor");
    return out[0];
  });
}

absl::StatusOr<at::Tensor> JitBackend::Reconstruct(const at::Tensor& x) {
  if (!impl_->autoencoder) return absl::FailedPreconditionError("no autoencoder.jit");
  return CatchToStatus(impl_->autoencoder_path, [&]() -> absl::StatusOr<at::Tensor> {
    torch::NoGradGuard ng;
    std::vector<at::Tensor> out = Flatten(impl_->autoencoder->forward({x.to(impl_->device, impl_->dtype)}));
    if (out.empty()) return absl::InternalError("autoencoder.jit returned no tensor");
    return out[0];
  });
}

}  // namespace wfm::tokenizer::internal
