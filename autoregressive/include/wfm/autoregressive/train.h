// Model-specific parts of AR world-model training (the loop, optimizer, EMA, checkpoints and logging are the
// shared core/train infrastructure): the teacher-forced next-token loss of
// cosmos_predict1/autoregressive/training/model.py (cross-entropy over the video tokens after the condition
// frames + z-loss), text dropout for classifier-free guidance (utils/misc.py random_dropout: a dropped sample's
// text embeddings are zeroed), and a synthetic token process for tests and smoke runs.
//
//   ar::ArLossOptions lo;  lo.text_dropout = 0.1;
//   WFM_ASSIGN_OR_RETURN(ar::ArLossOutput out, ar::TeacherForcedLoss(*net, tokens, &text, lo, &gen));
//   out.loss.backward();
#pragma once

#include <cstdint>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "wfm/autoregressive/transformer.h"

namespace wfm::ar {

struct ArLossOptions {
  // Latent frames at the start that condition but are not predicted (the reference's num_condition_latents_t:
  // ignore_first_num_tokens = H*W*frames, minus one without <bov>).
  int64_t condition_frames = 1;
  double z_loss = 1e-4;        // z_loss_coeff * mean(logsumexp(logits)^2)
  double text_dropout = 0.0;   // per-sample probability of zeroing the text embeddings
};

struct ArLossOutput {
  at::Tensor loss;          // ce + z-loss (scalar, differentiable)
  double ce = 0, z = 0;     // their values
  double accuracy = 0;      // argmax == target over the predicted tokens
  int64_t targets = 0;      // predicted tokens in the batch
};

// tokens: int64 [B, t, h, w] (or [B, N] raster order), whole latent frames, t <= the model's latent window,
// with the model's frame size. `text` is required iff the model has cross-attention ([B or 1, L, D]).
// `generator` draws the text dropout (CPU; may be null when text_dropout is 0).
absl::StatusOr<ArLossOutput> TeacherForcedLoss(ArTransformerImpl& net, const at::Tensor& tokens,
                                               const TextContext* text, const ArLossOptions& options,
                                               at::Generator* generator = nullptr);

// A moving-bar process in token space: every sample has a background token, a bar token (both drawn from the
// vocabulary) and a vertical bar that moves one column right per latent frame (wrapping). Frame 0 determines the
// rest, so a model that learned the process predicts every later token. int64 [B, t, h, w].
at::Tensor MovingBarTokens(int64_t batch, int64_t frames, int64_t height, int64_t width, int64_t vocab,
                           at::Generator& generator);

}  // namespace wfm::ar
