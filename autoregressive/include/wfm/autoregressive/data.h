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
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace wfm::ar {

struct TokenClip {
  std::string path;
  at::Tensor tokens;         // int64 [t, h, w]
  at::Tensor crossattn_emb;  // float [N, D] or undefined
  std::string caption;
};

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
  at::Tensor context, context_mask;   // [B, L, D] float / [B, L] bool when every clip has crossattn_emb
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
