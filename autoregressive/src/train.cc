// AR training loss, text dropout and the synthetic moving-bar process (see wfm/autoregressive/train.h).
#include "wfm/autoregressive/train.h"

#include <optional>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "wfm/autoregressive/generate.h"
#include "wfm/core/status.h"

namespace wfm::ar {

absl::StatusOr<ArLossOutput> TeacherForcedLoss(ArTransformerImpl& net, const at::Tensor& tokens_in,
                                               const TextContext* text, const ArLossOptions& o,
                                               at::Generator* generator) {
  const ArConfig& c = net.config;
  const int64_t F = c.TokensPerFrame();
  if (!tokens_in.defined() || (tokens_in.dim() != 2 && tokens_in.dim() != 4))
    return absl::InvalidArgumentError("training tokens must be [B, t, h, w] or [B, N]");
  if (tokens_in.dim() == 4 && (tokens_in.size(2) != c.video_latent_shape[1] || tokens_in.size(3) != c.video_latent_shape[2]))
    return absl::InvalidArgumentError(absl::StrCat("training tokens have frames of ", tokens_in.size(2), "x",
                                                   tokens_in.size(3), ", the model ", c.video_latent_shape[1], "x",
                                                   c.video_latent_shape[2]));
  const at::Tensor tokens = tokens_in.reshape({tokens_in.size(0), -1});  // [B, N]
  const int64_t B = tokens.size(0), N = tokens.size(1);
  if (N % F != 0 || N / F > c.video_latent_shape[0])
    return absl::InvalidArgumentError(absl::StrCat("training sequences of ", N, " tokens are not 1..",
                                                   c.video_latent_shape[0], " whole latent frames of ", F));
  if (o.condition_frames < 0 || o.condition_frames >= N / F)
    return absl::InvalidArgumentError(absl::StrCat("condition_frames ", o.condition_frames, " leaves no frame of ",
                                                   N / F, " to predict"));
  WFM_RETURN_IF_ERROR(CheckTokenRange(tokens, c.vocab_size, "training tokens"));
  if (c.insert_cross_attn) {
    if (text == nullptr) return absl::InvalidArgumentError("the model has cross-attention: training needs text");
    WFM_RETURN_IF_ERROR(CheckTextContext(c, *text, B));
  }
  if (o.text_dropout > 0 && generator == nullptr)
    return absl::InvalidArgumentError("text dropout needs a generator");
  return CatchToStatus("AR training loss", [&]() -> absl::StatusOr<ArLossOutput> {
    const c10::Device device = net.tok_embeddings->weight.device();
    const at::Tensor seq_tokens = tokens.to(device, at::kLong);
    // Input / targets: the reference forwards the whole sequence and shifts logits against labels.
    at::Tensor input = seq_tokens.narrow(1, 0, N - 1), targets = seq_tokens.narrow(1, 1, N - 1);
    int64_t skip = o.condition_frames * F - 1;  // target index of the first predicted token
    if (c.HasBov()) {
      input = at::cat({at::full({B, 1}, c.BovToken(), seq_tokens.options()), input}, 1);  // [B, N]
      targets = seq_tokens;
      skip = o.condition_frames * F;
    }
    std::optional<TextContext> ctx;
    if (text != nullptr) {
      ctx = TextContext{text->embeddings.to(device), text->mask.defined() ? text->mask.to(device) : at::Tensor()};
      if (ctx->embeddings.size(0) == 1 && B > 1) ctx->embeddings = ctx->embeddings.expand({B, -1, -1});
      if (ctx->mask.defined() && ctx->mask.size(0) == 1 && B > 1) ctx->mask = ctx->mask.expand({B, -1});
      if (o.text_dropout > 0) {
        at::Tensor keep = at::empty({B, 1, 1}).bernoulli_(1.0 - o.text_dropout, *generator);
        ctx->embeddings = ctx->embeddings * keep.to(device, ctx->embeddings.scalar_type());
      }
    }
    // Only the predicted positions go through the output layer (the vocab x dim projection and the softmax over
    // the vocabulary dominate time and memory at 64000 codes).
    const at::Tensor hidden = net.Hidden(input, 0, nullptr, ctx ? &*ctx : nullptr);  // [B, N, dim]
    const int64_t n = targets.size(1) - skip;
    const at::Tensor l =
        net.output->forward(hidden.narrow(1, skip, n)).reshape({B * n, -1}).to(at::kFloat);  // [B*n, V]
    const at::Tensor t = targets.narrow(1, skip, n).reshape({B * n});
    const at::Tensor lse = at::logsumexp(l, -1);                                    // [B*n]
    const at::Tensor ce = (lse - l.gather(1, t.unsqueeze(1)).squeeze(1)).mean();    // cross-entropy
    at::Tensor loss = ce;
    ArLossOutput out;
    if (o.z_loss > 0) {
      const at::Tensor z = o.z_loss * lse.square().mean();
      loss = loss + z;
      out.z = z.item<double>();
    }
    out.loss = loss;
    out.ce = ce.item<double>();
    out.targets = B * n;
    out.accuracy = (l.argmax(-1) == t).to(at::kDouble).mean().item<double>();
    return out;
  });
}

at::Tensor MovingBarTokens(int64_t batch, int64_t frames, int64_t height, int64_t width, int64_t vocab,
                           at::Generator& gen, std::vector<int>* directions) {
  at::Tensor out = at::empty({batch, frames, height, width}, at::kLong);
  const at::Tensor draw = at::empty({batch, 3}, at::kLong).random_(0, vocab, gen);  // background, bar, column
  at::Tensor dir;
  if (directions != nullptr) {
    dir = at::empty({batch}, at::kLong).random_(0, 2, gen);
    directions->assign(static_cast<size_t>(batch), 1);
  }
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t bg = draw[b][0].item<int64_t>();
    int64_t bar = draw[b][1].item<int64_t>();
    if (bar == bg) bar = (bar + 1) % vocab;
    const int64_t x0 = draw[b][2].item<int64_t>() % width;
    const int64_t step = dir.defined() && dir[b].item<int64_t>() == 0 ? width - 1 : 1;  // -1 mod width: left
    if (directions != nullptr) (*directions)[static_cast<size_t>(b)] = step == 1 ? 1 : -1;
    out[b].fill_(bg);
    for (int64_t t = 0; t < frames; ++t) out[b][t].select(1, (x0 + t * step) % width).fill_(bar);
  }
  return out;
}

}  // namespace wfm::ar
