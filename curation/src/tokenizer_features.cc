// Tokenizer-backed embedder and latent writer (see tokenizer_features.h).
#include "wfm/curation/tokenizer_features.h"

#include <cmath>
#include <mutex>

#include <ATen/ATen.h>

#include "wfm/core/status.h"

#ifdef WFM_HAVE_TOKENIZER
#include "wfm/core/safetensors.h"
#include "wfm/core/video_io.h"
#include "wfm/tokenizer/config.h"
#include "wfm/tokenizer/tokenizer.h"
#endif

namespace wfm::curation {

#ifdef WFM_HAVE_TOKENIZER
namespace {

absl::StatusOr<std::shared_ptr<tokenizer::Tokenizer>> Load(const TokenizerSpec& spec) {
  WFM_ASSIGN_OR_RETURN(tokenizer::TokenizerConfig cfg, tokenizer::TokenizerConfig::FromPresetOrFile(spec.config),
                       "tokenizer config ", spec.config);
  tokenizer::TokenizerOptions to;
  to.device = spec.device;
  WFM_ASSIGN_OR_RETURN(auto tok, tokenizer::Tokenizer::Create(cfg, spec.weights, to), "tokenizer ", spec.weights);
  return std::shared_ptr<tokenizer::Tokenizer>(std::move(tok));
}

class TokenizerEmbedder : public ClipEmbedder {
 public:
  TokenizerEmbedder(std::shared_ptr<tokenizer::Tokenizer> tok, int w, int h, std::string name)
      : tok_(std::move(tok)), w_(w), h_(h), name_(std::move(name)) {}
  int width() const override { return w_; }
  int height() const override { return h_; }
  absl::StatusOr<std::vector<float>> Embed(const at::Tensor& frames) override {
    std::lock_guard<std::mutex> lock(mu_);
    at::Tensor x = FramesToModelInput(frames).unsqueeze(0);  // [1, 3, T, H, W] in [-1, 1]
    WFM_ASSIGN_OR_RETURN(tokenizer::EncodeResult r, tok_->Encode(x));
    at::Tensor l = r.latent.to(at::kFloat);  // [1, C, t, h, w] (discrete: the normalised FSQ codes)
    if (l.dim() == 4) l = l.unsqueeze(2);
    at::Tensor pooled = at::adaptive_avg_pool3d(l, {1, 2, 2}).reshape({-1});  // [4 C]
    double n = pooled.norm().item<double>();
    if (!(n > 0) || !std::isfinite(n)) return absl::InvalidArgumentError("tokenizer embedding is zero or not finite");
    pooled = (pooled / n).contiguous();
    return std::vector<float>(pooled.data_ptr<float>(), pooled.data_ptr<float>() + pooled.numel());
  }
  std::string name() const override { return name_; }

 private:
  std::shared_ptr<tokenizer::Tokenizer> tok_;
  int w_, h_;
  std::string name_;
  std::mutex mu_;
};

}  // namespace

bool TokenizerAvailable() { return true; }

absl::StatusOr<std::unique_ptr<ClipEmbedder>> MakeTokenizerEmbedder(const TokenizerSpec& spec, int width, int height) {
  WFM_ASSIGN_OR_RETURN(auto tok, Load(spec));
  return std::unique_ptr<ClipEmbedder>(std::make_unique<TokenizerEmbedder>(std::move(tok), width, height,
                                                                          "tokenizer:" + spec.config));
}

absl::StatusOr<LatentWriter> MakeLatentWriter(const TokenizerSpec& spec) {
  WFM_ASSIGN_OR_RETURN(auto tok, Load(spec));
  auto mu = std::make_shared<std::mutex>();
  return LatentWriter([tok, mu, spec](const std::string& clip, const std::string& out) -> absl::Status {
    std::lock_guard<std::mutex> lock(*mu);
    tokenizer::ServeOptions so;
    so.chunk_frames = spec.chunk_frames;
    WFM_ASSIGN_OR_RETURN(auto stream, tok->StartEncode(so));
    std::vector<at::Tensor> latents, indices;
    DecodeOptions d;
    d.height = spec.height;
    d.chunk_frames = spec.chunk_frames;
    auto collect = [&](const tokenizer::EncodeResult& r) {
      if (r.latent.defined() && r.latent.dim() == 5 && r.latent.size(2) > 0) latents.push_back(r.latent[0].cpu());
      if (r.indices.defined() && r.indices.dim() == 4 && r.indices.size(1) > 0) indices.push_back(r.indices[0].cpu());
    };
    WFM_RETURN_IF_ERROR(DecodeVideoStream(clip, d, [&](const at::Tensor& chunk, int64_t) -> absl::Status {
                          WFM_ASSIGN_OR_RETURN(tokenizer::EncodeResult r,
                                               stream->Push(FramesToModelInput(chunk).unsqueeze(0)));
                          collect(r);
                          return absl::OkStatus();
                        }).status(),
                        "decoding ", clip, " for the tokenizer");
    WFM_ASSIGN_OR_RETURN(tokenizer::EncodeResult last, stream->Finish());
    collect(last);
    TensorMap tensors;
    if (tok->config().is_discrete()) {
      if (indices.empty()) return absl::InternalError(absl::StrCat(clip, ": the tokenizer returned no indices"));
      tensors["indices"] = at::cat(indices, 0).to(at::kInt).contiguous();  // [t, h, w]
    } else {
      if (latents.empty()) return absl::InternalError(absl::StrCat(clip, ": the tokenizer returned no latent"));
      tensors["latent"] = at::cat(latents, 1).to(at::kFloat).contiguous();  // [C, t, h, w]
    }
    std::map<std::string, std::string> meta = last.geometry.ToMetadata();
    meta["wfm.tokenizer.config"] = spec.config;
    return WriteSafetensors(out, tensors, meta);
  });
}

#else  // built without the tokenizer

bool TokenizerAvailable() { return false; }

absl::StatusOr<std::unique_ptr<ClipEmbedder>> MakeTokenizerEmbedder(const TokenizerSpec&, int, int) {
  return absl::UnimplementedError("this wfm was built without the tokenizer module");
}

absl::StatusOr<LatentWriter> MakeLatentWriter(const TokenizerSpec&) {
  return absl::UnimplementedError("this wfm was built without the tokenizer module");
}

#endif

}  // namespace wfm::curation
