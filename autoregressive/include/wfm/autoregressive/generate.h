// Token generation with the AR world model: batched prefill of the prompt into a preallocated KV cache,
// incremental decode one token at a time in raster order (t, h, w), B different futures from one prompt (the
// "multiverse": the prompt is prefilled once and its cache copied to every sample), temperature / top-k / top-p
// policies with per-sample seeds, optional classifier-free guidance on the text, a per-latent-frame callback for
// streaming, and sliding-window rollouts past the trained context that keep tokens (never re-encode pixels): when
// the window is full, the oldest latent frames are dropped and the kept tokens are re-prefilled at positions
// 0.. (the model only knows positions of its latent grid).
//
//   ar::GenerationOptions o;
//   o.sampling.top_p = 0.8;  o.num_samples = 4;  o.seed = 7;
//   o.on_frame = [](int64_t t, const at::Tensor& frame) { ...; return absl::OkStatus(); };  // frame [B, H, W]
//   WFM_ASSIGN_OR_RETURN(ar::GenerationResult r, ar::GenerateTokens(*net, prompt, /*total_frames=*/5, &text, o));
//   // r.tokens: int64 [4, 5, H, W], prompt frames included
#pragma once

#include <cstdint>
#include <functional>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "wfm/autoregressive/sampling.h"
#include "wfm/autoregressive/transformer.h"

namespace wfm::ar {

struct GenerationOptions {
  SamplingOptions sampling;
  int64_t num_samples = 1;  // B futures from the one prompt
  uint64_t seed = 0;
  // Classifier-free guidance on the text (models with cross-attention): logits = u + guidance * (c - u) with u
  // from `unconditional` (e.g. the empty prompt). 1 = off (the reference AR sampler has none).
  double guidance = 1.0;
  // Sliding window: latent frames of context kept when the window slides (<= 0: the window size minus one).
  int64_t window_context_frames = 0;
  // After every completed latent frame: its index in the output (prompt frames count) and tokens int64 [B, H, W]
  // (CPU). A non-OK status stops generation and is returned.
  std::function<absl::Status(int64_t frame, const at::Tensor& tokens)> on_frame;
  bool show_progress = true;
};

struct GenerationResult {
  at::Tensor tokens;  // int64 [B, total_frames, H, W] (CPU), prompt frames first
  int64_t prompt_tokens = 0, generated_tokens = 0, window_slides = 0;
  double prefill_seconds = 0, decode_seconds = 0;
};

// `prompt`: int64 [P] or [1, P] latent tokens in raster order, a whole number k >= 0 of latent frames (k = 0 is
// Text2World and needs a text_to_video model, whose <bov> token the generator adds itself). Generates latent
// frames k .. total_frames-1. `text` is required iff the model has cross-attention (batch 1: shared by all
// samples); `unconditional` only with guidance != 1. Errors (InvalidArgument) name the problem: token outside the
// vocabulary, partial frames, no frame to generate, missing text, context mask without a valid token.
absl::StatusOr<GenerationResult> GenerateTokens(ArTransformerImpl& net, const at::Tensor& prompt,
                                                int64_t total_frames, const TextContext* text,
                                                const GenerationOptions& options,
                                                const TextContext* unconditional = nullptr);

// Checks tokens (any shape) lie in [0, limit); InvalidArgument naming the first offender otherwise.
absl::Status CheckTokenRange(const at::Tensor& tokens, int64_t limit, const char* what);
// Checks a text context against the model (batch, context_dim, mask with >= 1 valid token per row).
absl::Status CheckTextContext(const ArConfig& config, const TextContext& text, int64_t batch);

}  // namespace wfm::ar
