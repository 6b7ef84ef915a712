// Pre-tokenized training clips for the AR world model: a folder of safetensors files, one clip each, holding
// `indices` int64 [t, h, w] (or [1, t, h, w], as `wfm tokenizer encode` writes), optionally `crossattn_emb`
// float [N, D] (precomputed text embeddings) and the caption in metadata "caption" (the layout of the diffusion
// model's latent folders). `wfm ar tokenize` makes such folders from videos.
//
// TokenBatcher draws training batches as a pure function of (seed, step, rank): B clips from the training split,
// each cut to a random window of `frames` latent frames; the last `val_fraction` of the clips (by sorted name)
// are held out for validation.
//
//   WFM_ASSIGN_OR_RETURN(ar::TokenFolder folder, ar::TokenFolder::Open("clips/"));
//   ar::TokenBatcher batcher(folder, /*frames=*/5, /*val_fraction=*/0.1, /*seed=*/0);
//   WFM_ASSIGN_OR_RETURN(ar::TokenBatch b, batcher.Train(step, /*batch=*/8));   // b.tokens [8, 5, h, w]
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace wfm::ar {

struct TokenClip {
  std::string path;
  at::Tensor tokens;         // int64 [t, h, w]
  at::Tensor crossattn_emb;  // float [N, D] (the caption's real rows, unpadded) or undefined
  std::string caption;
  int64_t crossattn_pad_to = 0;  // padding rule of crossattn_emb (PadTextRows); metadata "crossattn_pad_to"
};

// THE text padding rule of the AR model. Every path that turns text embeddings into the cross-attention context
// goes through here: `wfm ar tokenize` -> TokenBatcher (training on stored embeddings), `wfm ar train` on captions,
// `wfm ar generate` / GenerateWorld callers (EncodedTextContext in world.h). `rows` are the real (unpadded)
// embeddings [n_i, D] of B prompts; returns context [B, L, D] and mask bool [B, L].
//  - pad_to > 0 (T5 directories, i.e. the published Cosmos models, pad_to = 512): every row is zero-padded to
//    pad_to and ALL positions are attended. This is what cosmos-predict1 does: CosmosT5TextEncoder.encode_prompts
//    (auxiliary/t5_text_encoder.py) pads to max_length 512 and zeroes the rows past each prompt's length, and
//    ARVideo2WorldGenerationPipeline._run_model (autoregressive/inference/world_generation_pipeline.py) replaces the
//    context_mask by torch.ones_like(...), so the zero rows take part in the cross-attention softmax.
//  - pad_to == 0 (the built-in encoder: models trained here): padded to the longest prompt, mask true at real rows.
// A row longer than pad_to is an error (TORCH_CHECK; callers truncate to the encoder's max_length first).
std::pair<at::Tensor, at::Tensor> PadTextRows(const std::vector<at::Tensor>& rows, int64_t pad_to);

class TokenFolder {
 public:
  // Lists *.safetensors under `dir` (recursively, sorted) and checks that every clip has `indices` with one frame
  // size [h, w]; the error names the first bad file.
  static absl::StatusOr<TokenFolder> Open(const std::string& dir);
  int64_t size() const { return static_cast<int64_t>(files_.size()); }
  int64_t height() const { return h_; }
  int64_t width() const { return w_; }
  // Latent frames of clip i (from the index, no data read).
  int64_t frames(int64_t i) const { return frames_[static_cast<size_t>(i)]; }
  absl::StatusOr<TokenClip> Get(int64_t index) const;
  // Writes one clip atomically in the format Get reads.
  static absl::Status Write(const std::string& path, const TokenClip& clip);

 private:
  std::vector<std::string> files_;
  std::vector<int64_t> frames_;
  int64_t h_ = 0, w_ = 0;
};

struct TokenBatch {
  at::Tensor tokens;                  // int64 [B, frames, h, w]
  at::Tensor context, context_mask;   // [B, L, D] float / [B, L] bool when every clip has crossattn_emb (PadTextRows)
  std::vector<std::string> captions;  // one per sample ("" when none)
};

class TokenBatcher {
 public:
  // Clips shorter than `frames` latent frames are skipped (with a warning); at least one must remain per split.
  TokenBatcher(const TokenFolder& folder, int64_t frames, double val_fraction, uint64_t seed);
  absl::Status status() const { return status_; }
  int64_t train_clips() const { return static_cast<int64_t>(train_.size()); }
  int64_t val_clips() const { return static_cast<int64_t>(val_.size()); }
  // Batch number `step` of rank `rank` of `world` (random clips and windows).
  absl::StatusOr<TokenBatch> Train(int64_t step, int64_t batch_size, int rank = 0, int world = 1) const;
  // The first `batch_size` validation clips (cycled), each cut to its first `frames` latent frames.
  absl::StatusOr<TokenBatch> Validation(int64_t batch_size) const;

 private:
  absl::StatusOr<TokenBatch> Assemble(const std::vector<std::pair<int64_t, int64_t>>& picks) const;  // (clip, start)

  const TokenFolder* folder_;
  int64_t frames_;
  uint64_t seed_;
  std::vector<int64_t> train_, val_;
  absl::Status status_;
};

}  // namespace wfm::ar
