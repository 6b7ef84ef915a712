// Token generation: prefill, multiverse cache broadcast, incremental decode, CFG, sliding window
// (see wfm/autoregressive/generate.h). Follows cosmos_predict1/autoregressive/model.py AutoRegressiveModel.generate
// and utils/sampling.py prefill / decode_n_tokens, without their whole-cache attention per step.
#include "wfm/autoregressive/generate.h"

#include <chrono>
#include <optional>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "wfm/core/logging.h"
#include "wfm/core/progress.h"
#include "wfm/core/status.h"

namespace wfm::ar {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a) { return std::chrono::duration<double>(Clock::now() - a).count(); }

// Pads a context to `length` tokens (zeros, mask false) and gives it an explicit mask.
TextContext PadContext(const TextContext& t, int64_t length) {
  const int64_t b = t.embeddings.size(0), l = t.embeddings.size(1);
  at::Tensor mask = t.mask.defined() ? t.mask.to(at::kBool)
                                     : at::ones({b, l}, t.embeddings.options().dtype(at::kBool));
  if (l == length) return TextContext{t.embeddings, mask};
  return TextContext{at::constant_pad_nd(t.embeddings, {0, 0, 0, length - l}), at::constant_pad_nd(mask, {0, length - l})};
}

// Rows [a x n, b x n] of two batch-1 contexts (padded to a common length).
TextContext StackContexts(const TextContext& a, const TextContext& b, int64_t n) {
  const int64_t l = std::max(a.embeddings.size(1), b.embeddings.size(1));
  const TextContext pa = PadContext(a, l), pb = PadContext(b, l);
  return TextContext{at::cat({pa.embeddings.expand({n, -1, -1}), pb.embeddings.expand({n, -1, -1})}, 0),
                     at::cat({pa.mask.expand({n, -1}), pb.mask.expand({n, -1})}, 0)};
}

}  // namespace

absl::Status CheckTokenRange(const at::Tensor& tokens, int64_t limit, const char* what) {
  if (tokens.numel() == 0) return absl::OkStatus();
  if (at::isFloatingType(tokens.scalar_type()))
    return absl::InvalidArgumentError(absl::StrCat(what, ": tokens must be integers, got ", std::string(tokens.dtype().name())));
  const at::Tensor flat = tokens.reshape(-1).to(at::kLong);
  const at::Tensor bad = (flat < 0).logical_or_(flat >= limit);
  if (bad.any().item<bool>()) {
    const int64_t i = bad.nonzero()[0][0].item<int64_t>();
    return absl::InvalidArgumentError(absl::StrCat(what, ": token ", flat[i].item<int64_t>(), " at index ", i,
                                                   " is outside the vocabulary [0, ", limit,
                                                   ") - was it made by a tokenizer with another codebook?"));
  }
  return absl::OkStatus();
}

absl::Status CheckTextContext(const ArConfig& config, const TextContext& text, int64_t batch) {
  const at::Tensor& e = text.embeddings;
  if (!e.defined() || e.dim() != 3)
    return absl::InvalidArgumentError("text context: embeddings must be [B, L, context_dim]");
  if (e.size(2) != config.context_dim)
    return absl::InvalidArgumentError(absl::StrCat("text context: embedding width ", e.size(2),
                                                   " != the model's context_dim ", config.context_dim));
  if (e.size(0) != batch && e.size(0) != 1)
    return absl::InvalidArgumentError(absl::StrCat("text context: batch ", e.size(0), " for ", batch, " sequences"));
  if (e.size(1) == 0) return absl::InvalidArgumentError("text context: no tokens");
  if (text.mask.defined()) {
    if (text.mask.dim() != 2 || text.mask.size(0) != e.size(0) || text.mask.size(1) != e.size(1))
      return absl::InvalidArgumentError(absl::StrCat("text context: mask of ", text.mask.dim(), " dims [",
                                                     text.mask.size(0), ", ", text.mask.size(-1),
                                                     "] does not match embeddings [", e.size(0), ", ", e.size(1), ", D]"));
    if (!text.mask.to(at::kBool).any(1).all().item<bool>())
      return absl::InvalidArgumentError("text context: a mask row has no valid token (attention would be NaN)");
  }
  return absl::OkStatus();
}

absl::StatusOr<GenerationResult> GenerateTokens(ArTransformerImpl& net, const at::Tensor& prompt_in,
                                                int64_t total_frames, const TextContext* text,
                                                const GenerationOptions& options,
                                                const TextContext* unconditional) {
  const ArConfig& c = net.config;
  const int64_t F = c.TokensPerFrame(), W = c.video_latent_shape[0];
  const int64_t H = c.video_latent_shape[1], Wd = c.video_latent_shape[2];
  const int64_t bov = c.HasBov() ? 1 : 0;
  const int64_t B = options.num_samples;
  if (B < 1) return absl::InvalidArgumentError(absl::StrCat("num_samples must be >= 1, got ", B));
  if (!prompt_in.defined() || prompt_in.dim() > 2 || (prompt_in.dim() == 2 && prompt_in.size(0) != 1))
    return absl::InvalidArgumentError("prompt tokens must be [P] or [1, P]");
  const at::Tensor prompt = prompt_in.reshape(-1).to(at::kCPU, at::kLong);
  const int64_t P = prompt.numel();
  if (P % F != 0)
    return absl::InvalidArgumentError(absl::StrCat("prompt has ", P, " tokens, not a whole number of latent frames of ",
                                                   H, "x", Wd, " = ", F, " tokens"));
  const int64_t k = P / F;
  if (total_frames <= k)
    return absl::InvalidArgumentError(absl::StrCat("nothing to generate: ", total_frames, " latent frames requested, ",
                                                   k, " given as prompt"));
  if (k == 0 && !bov)
    return absl::InvalidArgumentError(
        "generation from text alone needs a text_to_video (Video2World) model; this one needs >= 1 prompt frame");
  WFM_RETURN_IF_ERROR(CheckTokenRange(prompt, c.vocab_size, "prompt"));
  const bool guided = options.guidance != 1.0;
  if (c.insert_cross_attn) {
    if (text == nullptr) return absl::InvalidArgumentError("this model has cross-attention: a text context is required");
    WFM_RETURN_IF_ERROR(CheckTextContext(c, *text, 1), "text");
    if (text->embeddings.size(0) != 1) return absl::InvalidArgumentError("text context: give one prompt (batch 1)");
    if (guided) {
      if (unconditional == nullptr) return absl::InvalidArgumentError("guidance needs an unconditional text context");
      WFM_RETURN_IF_ERROR(CheckTextContext(c, *unconditional, 1), "unconditional text");
      if (unconditional->embeddings.size(0) != 1)
        return absl::InvalidArgumentError("unconditional text context: batch must be 1");
    }
  } else {
    if (guided) return absl::InvalidArgumentError("guidance needs a model with cross-attention");
    if (text != nullptr) WFM_LOG(WARNING) << "the model has no cross-attention; ignoring the text context";
    text = nullptr;
  }
  WFM_ASSIGN_OR_RETURN(std::unique_ptr<TokenPolicy> policy, MakeTokenPolicy(options.sampling));

  const int64_t capacity = bov + W * F;
  if (capacity > c.PositionTableLength())
    return absl::InvalidArgumentError(absl::StrCat("latent window of ", capacity, " positions exceeds the model's ",
                                                   c.PositionTableLength()));
  const int64_t ctx_frames =
      options.window_context_frames > 0 ? std::min(options.window_context_frames, W - 1) : W - 1;
  const int64_t R = guided ? 2 : 1;  // prefill rows: conditional (+ unconditional)

  return CatchToStatus("AR generation", [&]() -> absl::StatusOr<GenerationResult> {
    at::NoGradGuard no_grad;
    const c10::Device device = net.tok_embeddings->weight.device();
    GenerationResult result;
    result.prompt_tokens = P;
    at::Tensor all = at::zeros({B, total_frames * F}, at::kLong);  // [B, T*H*W]
    if (P > 0) all.narrow(1, 0, P).copy_(prompt.unsqueeze(0).expand({B, P}));

    // Contexts: prefill (R rows) and decode (R*B rows, or 1 shared row).
    std::optional<TextContext> prefill_ctx, decode_ctx;
    if (text != nullptr) {
      if (guided) {
        prefill_ctx = StackContexts(*text, *unconditional, 1);
        decode_ctx = StackContexts(*text, *unconditional, B);
      } else {
        prefill_ctx = decode_ctx = *text;
      }
      for (auto* t : {&*prefill_ctx, &*decode_ctx}) {
        t->embeddings = t->embeddings.to(device, net.tok_embeddings->weight.scalar_type());
        if (t->mask.defined()) t->mask = t->mask.to(device, at::kBool);
      }
    }
    const auto window_tokens = [&](int64_t first_frame, int64_t end, int64_t rows_b) {
      // [bov] + all[:, first_frame*F : end] for rows_b rows (the same rows repeated for guidance)
      at::Tensor t = all.narrow(0, 0, rows_b).narrow(1, first_frame * F, end - first_frame * F);
      if (bov) t = at::cat({at::full({rows_b, 1}, c.BovToken(), at::kLong), t}, 1);
      return t;
    };

    // ---- prefill the prompt once ----
    const int64_t s0 = k > W - 1 ? k - ctx_frames : 0;
    const auto t0 = Clock::now();
    at::Tensor seq = window_tokens(s0, P, 1).expand({R, -1}).contiguous().to(device);
    KvCache cache0 = net.NewCache(R, capacity);
    at::Tensor logits = net.forward(seq, 0, &cache0, prefill_ctx ? &*prefill_ctx : nullptr, true).select(1, 0);
    std::vector<int64_t> rows;
    for (int64_t r = 0; r < R; ++r)
      for (int64_t i = 0; i < B; ++i) rows.push_back(r);
    KvCache cache = cache0.Gather(rows);
    logits = logits.index_select(0, at::tensor(rows, at::kLong).to(device));  // [R*B, V]
    result.prefill_seconds = Seconds(t0);

    // ---- decode ----
    std::vector<at::Generator> gens = SampleGenerators(options.seed, B);
    const int64_t total = total_frames * F;
    Progress progress("AR generate", total - P, "tokens", ProgressOptions{.quiet = !options.show_progress});
    const auto t1 = Clock::now();
    int64_t window_first = s0;
    for (int64_t pos = P; pos < total;) {
      at::Tensor l = logits;  // [R*B, V]
      if (guided) {
        const at::Tensor cond = l.narrow(0, 0, B), unc = l.narrow(0, B, B);
        l = unc + options.guidance * (cond - unc);
      }
      const at::Tensor next = policy->Choose(l, gens);  // [B]
      all.select(1, pos).copy_(next.to(at::kCPU));
      ++pos;
      progress.Add(1);
      if (pos % F == 0 && options.on_frame) {
        const int64_t frame = pos / F - 1;
        WFM_RETURN_IF_ERROR(options.on_frame(frame, all.narrow(1, frame * F, F).view({B, H, Wd}).clone()),
                            "frame callback");
      }
      if (pos == total) break;
      const at::Tensor fed = next.view({B, 1}).repeat({R, 1}).to(device);  // [R*B, 1]
      if (cache.length() == capacity) {
        // The window is full and `next` opens a new latent frame: keep ctx_frames frames and re-prefill them at
        // positions 0.. together with `next`.
        window_first = (pos - 1) / F - ctx_frames;
        cache.Reset();
        at::Tensor re = window_tokens(window_first, pos, B).repeat({R, 1}).to(device);
        logits = net.forward(re, 0, &cache, decode_ctx ? &*decode_ctx : nullptr, true).select(1, 0);
        ++result.window_slides;
      } else {
        logits = net.forward(fed, cache.length(), &cache, decode_ctx ? &*decode_ctx : nullptr, true).select(1, 0);
      }
    }
    result.decode_seconds = Seconds(t1);
    progress.Finish();
    result.generated_tokens = total - P;
    result.tokens = all.view({B, total_frames, H, Wd});
    return result;
  });
}

}  // namespace wfm::ar
