// TextEncoder: the one interface through which the world models get text conditioning.
//
// Contract (what the autoregressive and diffusion models rely on):
//   Encode(prompts) -> {embeddings, mask}
//     embeddings: float32 [B, L, D] on device(); rows past each prompt's tokens are exactly 0 (as Cosmos zeroes
//                 them after T5), so cross-attention may use the mask or not.
//     mask:       bool [B, L] on device(); true at real tokens (the EOS included), a prefix of each row.
//     L = max_length() by default (Cosmos uses 512), or the longest prompt when the encoder is configured to
//     pad to the batch; D = dim(). Longer prompts are truncated to max_length() tokens with a warning.
//   Empty prompts ("") are valid (EOS only). An empty batch is InvalidArgument.
//   Gradients: frozen encoders (pretrained T5) run without autograd; trainable ones (the built-in encoder) build a
//   graph when GradMode is on, so the world model's loss trains them too (optimise module()->parameters()).
//   model_id() names the model and everything that changes its outputs; caches key on (model_id, prompt).
//
// Implementations: T5TextEncoder (t5.h, Hugging Face T5 weights), the built-in byte-level encoder
// (builtin_encoder.h), CachedTextEncoder (embedding_cache.h). LoadTextEncoder() picks one from a path.
//
//   WFM_ASSIGN_OR_RETURN(std::unique_ptr<text::TextEncoder> enc, text::LoadTextEncoder("checkpoints/t5-11b"));
//   WFM_ASSIGN_OR_RETURN(text::TextEmbeddings cond, enc->Encode({"a car turns left", ""}));
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "absl/status/statusor.h"

namespace torch::nn {
class Module;
}

namespace wfm::text {

struct TextEmbeddings {
  at::Tensor embeddings;  // float32 [B, L, D], zero at padded positions
  at::Tensor mask;        // bool [B, L], true at real tokens
};

class TextEncoder {
 public:
  virtual ~TextEncoder() = default;
  virtual absl::StatusOr<TextEmbeddings> Encode(const std::vector<std::string>& prompts) = 0;
  virtual int64_t dim() const = 0;         // D
  virtual int64_t max_length() const = 0;  // tokens per prompt, EOS included
  virtual std::string model_id() const = 0;
  virtual c10::Device device() const = 0;
  // The trainable/loadable module (parameters, train()/eval()); nullptr when there is none.
  virtual std::shared_ptr<torch::nn::Module> module() = 0;
};

// Opens a text encoder from a path:
//   - a directory with config.json (Hugging Face T5 / ByT5: weights + spiece.model) -> T5TextEncoder
//   - a .safetensors file written by SaveBuiltinTextEncoder                        -> the built-in encoder
// `max_length` <= 0 keeps the default (512); `device` as ParseDevice ("cpu", "cuda", "auto").
struct LoadTextEncoderOptions {
  int64_t max_length = 0;
  std::string device = "cpu";
  std::string dtype = "float32";
  bool pad_to_max_length = true;
};
absl::StatusOr<std::unique_ptr<TextEncoder>> LoadTextEncoder(const std::string& path,
                                                             const LoadTextEncoderOptions& options = {});

// Zeroes embeddings where mask is false: embeddings [B, L, D], mask bool [B, L]. Differentiable.
at::Tensor ZeroPadded(const at::Tensor& embeddings, const at::Tensor& mask);
// Pads (with zeros / false) or checks [B, l, D] + [B, l] to length `length` >= l.
TextEmbeddings PadTo(const TextEmbeddings& e, int64_t length);

}  // namespace wfm::text
