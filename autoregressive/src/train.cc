// AR training loss, text dropout and the synthetic moving-bar process (see wfm/autoregressive/train.h).
#include "wfm/autoregressive/train.h"

#include <algorithm>
#include <optional>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

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
    const at::Tensor h = hidden.narrow(1, skip, n).reshape({B * n, -1});  // [B*n, dim]
    const at::Tensor t = targets.narrow(1, skip, n).reshape({B * n});     // [B*n]
    ArLossOutput out;
    out.targets = B * n;
    if (o.ce_chunk < 0) {  // plain: all logits at once
      const at::Tensor l = net.output->forward(h).to(at::kFloat);                   // [B*n, V]
      const at::Tensor lse = at::logsumexp(l, -1);                                  // [B*n]
      const at::Tensor ce = (lse - l.gather(1, t.unsqueeze(1)).squeeze(1)).mean();  // cross-entropy
      const at::Tensor z = o.z_loss * lse.square().mean();
      out.loss = o.z_loss > 0 ? ce + z : ce;
      out.ce = ce.item<double>();
      out.z = o.z_loss > 0 ? z.item<double>() : 0.0;
      out.accuracy = (l.argmax(-1) == t).to(at::kDouble).mean().item<double>();
      return out;
    }
    const int64_t chunk = o.ce_chunk > 0 ? o.ce_chunk : std::max<int64_t>(1, (int64_t{1} << 24) / c.vocab_size);
    ChunkedCeOutput r = ChunkedCrossEntropy(h, net.output->weight, t, std::max(0.0, o.z_loss), chunk);
    const at::Tensor stats = r.stats.to(at::kCPU, at::kDouble);
    out.loss = r.loss;
    out.ce = stats[0].item<double>();
    out.z = stats[1].item<double>();
    out.accuracy = stats[2].item<double>() / static_cast<double>(B * n);
    return out;
  });
}

namespace {

// The custom autograd node of ChunkedCrossEntropy: inputs hidden [M, D], weight [V, D]; outputs loss (scalar) and
// stats [3] (non-differentiable). Gradients for a unit upstream gradient are formed in forward, per chunk:
//   p = softmax(logits),  d loss / d logits = (p - onehot(target)) / M + z_coeff * 2 * lse / M * p   (fp32)
//   d hidden[chunk] = g @ weight,  d weight += g^T @ hidden[chunk]   (g cast to the inputs' dtype, as autograd
// through `.to(float)` would). Backward multiplies them by the upstream gradient.
struct ChunkedCeFunction : public torch::autograd::Function<ChunkedCeFunction> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& hidden,
                                                const at::Tensor& weight, const at::Tensor& targets, double z_coeff,
                                                int64_t chunk) {
    const int64_t M = hidden.size(0);
    const bool need_h = hidden.requires_grad(), need_w = weight.requires_grad();
    const auto f32 = hidden.options().dtype(at::kFloat);
    at::Tensor ce_sum = at::zeros({}, f32), z_sum = at::zeros({}, f32), correct = at::zeros({}, f32);
    at::Tensor grad_h = need_h ? at::empty_like(hidden) : at::Tensor();
    at::Tensor grad_w = need_w ? at::zeros(weight.sizes(), weight.options().dtype(at::kFloat)) : at::Tensor();
    const double inv_m = 1.0 / static_cast<double>(M);
    for (int64_t s = 0; s < M; s += chunk) {
      const int64_t c = std::min(chunk, M - s);
      const at::Tensor hc = hidden.narrow(0, s, c), tc = targets.narrow(0, s, c).unsqueeze(1);  // [c, D], [c, 1]
      at::Tensor logits = at::matmul(hc, weight.t()).to(at::kFloat);                            // [c, V]
      const at::Tensor lse = at::logsumexp(logits, -1, /*keepdim=*/true);                      // [c, 1]
      ce_sum += (lse - logits.gather(1, tc)).sum();
      z_sum += lse.square().sum();
      correct += (logits.argmax(-1, /*keepdim=*/true) == tc).sum().to(at::kFloat);
      if (!need_h && !need_w) continue;
      // logits -> d loss / d logits in place (the chunk's only [c, V] buffer besides the GEMM output)
      logits.sub_(lse).exp_().mul_(lse * (2.0 * z_coeff * inv_m) + inv_m);
      logits.scatter_add_(1, tc, at::full({c, 1}, -inv_m, logits.options()));
      const at::Tensor g = logits.to(hidden.scalar_type());
      if (need_h) grad_h.narrow(0, s, c).copy_(at::matmul(g, weight));
      if (need_w) grad_w.addmm_(g.t().to(at::kFloat), hc.to(at::kFloat));  // [V, D] accumulated in fp32
    }
    const at::Tensor ce = ce_sum * inv_m, z = z_sum * (z_coeff * inv_m);
    const at::Tensor loss = ce + z;
    const at::Tensor stats = at::stack({ce, z, correct});
    ctx->mark_non_differentiable({stats});
    ctx->save_for_backward({grad_h, need_w ? grad_w.to(weight.scalar_type()) : at::Tensor()});
    return {loss, stats};
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& g = grads[0];  // scalar
    return {saved[0].defined() ? saved[0] * g.to(saved[0].scalar_type()) : at::Tensor(),
            saved[1].defined() ? saved[1] * g.to(saved[1].scalar_type()) : at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor()};
  }
};

}  // namespace

ChunkedCeOutput ChunkedCrossEntropy(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                                    double z_coeff, int64_t chunk) {
  TORCH_CHECK(hidden.dim() == 2 && weight.dim() == 2 && hidden.size(1) == weight.size(1),
              "ChunkedCrossEntropy: hidden [M, D] and weight [V, D], got ", hidden.sizes(), " and ", weight.sizes());
  TORCH_CHECK(targets.dim() == 1 && targets.size(0) == hidden.size(0) && hidden.size(0) > 0,
              "ChunkedCrossEntropy: targets must be [M] with M > 0");
  TORCH_CHECK(chunk > 0, "ChunkedCrossEntropy: chunk must be positive");
  auto out = ChunkedCeFunction::apply(hidden, weight, targets.to(hidden.device(), at::kLong), z_coeff, chunk);
  return {out[0], out[1]};
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
