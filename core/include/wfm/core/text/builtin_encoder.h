// The built-in text encoder: a small T5 encoder (gated GELU, relative position buckets) over ByT5-style byte
// tokens, or over a SentencePiece model trained with `spm_train` on the project's captions. It needs no
// downloaded weights and trains jointly with a world model (autograd flows through Encode), for machines and
// demos without T5. Same TextEncoder interface as T5TextEncoder (it IS a T5TextEncoder, trainable).
//
// Checkpoint: ONE safetensors file holding the T5 state dict under Hugging Face names, metadata
// "wfm.format" = "builtin-text-encoder", "wfm.config" = T5 config.json text, "wfm.tokenizer" = "byte" or
// "sentencepiece" (then the model bytes are stored as the uint8 tensor "tokenizer.sentencepiece_model"), and
// "wfm.max_length".
//
//   text::BuiltinTextEncoderOptions o;                 // byte tokens, d_model 256, 4 layers, 4 heads
//   WFM_ASSIGN_OR_RETURN(auto enc, text::CreateBuiltinTextEncoder(o));
//   optimizer_params = enc->module()->parameters();    // train with the world model's loss
//   WFM_RETURN_IF_ERROR(text::SaveBuiltinTextEncoder(*enc, "run/text_encoder.safetensors"));
//   WFM_ASSIGN_OR_RETURN(auto again, text::LoadBuiltinTextEncoder("run/text_encoder.safetensors"));
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "wfm/core/text/t5.h"

namespace wfm::text {

struct BuiltinTextEncoderOptions {
  int64_t d_model = 256;
  int64_t num_layers = 4;
  int64_t num_heads = 4;
  int64_t d_kv = 64;
  int64_t d_ff = 512;
  double dropout_rate = 0.1;
  int64_t max_length = 256;        // bytes are ~4x more tokens than SentencePiece pieces
  std::string sentencepiece_model;  // "" = byte tokens; else a spiece.model path (its vocab sizes the embedding)
  uint64_t seed = 0;               // initialisation (T5 _init_weights scheme)
  std::string device = "cpu";
  bool pad_to_max_length = true;
};

// A freshly initialised, trainable built-in encoder.
absl::StatusOr<std::unique_ptr<T5TextEncoder>> CreateBuiltinTextEncoder(const BuiltinTextEncoderOptions& options);

// Saves weights + config + tokenizer into one safetensors file (atomically).
absl::Status SaveBuiltinTextEncoder(T5TextEncoder& encoder, const std::string& path);

// Loads a file written by SaveBuiltinTextEncoder (strictly). `trainable` decides whether Encode builds a graph.
struct LoadBuiltinOptions {
  std::string device = "cpu";
  bool trainable = true;
  int64_t max_length = 0;  // 0 = as saved
  bool pad_to_max_length = true;
};
absl::StatusOr<std::unique_ptr<T5TextEncoder>> LoadBuiltinTextEncoder(const std::string& path,
                                                                      const LoadBuiltinOptions& options = {});

}  // namespace wfm::text
