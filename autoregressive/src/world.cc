// Video2World / Text2World pipeline and the tokenizer codec adapter (see wfm/autoregressive/world.h).
#include "wfm/autoregressive/world.h"

#include <chrono>
#include <cmath>
#include <filesystem>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "wfm/autoregressive/data.h"
#include "wfm/core/logging.h"
#include "wfm/core/runtime.h"
#include "wfm/core/status.h"
#include "wfm/core/text/text_encoder.h"
#include "wfm/core/video_io.h"
#include "wfm/tokenizer/config.h"
#include "wfm/tokenizer/network.h"
#include "wfm/tokenizer/tokenizer.h"

namespace wfm::ar {
namespace {

using Clock = std::chrono::steady_clock;
double Seconds(Clock::time_point a) { return std::chrono::duration<double>(Clock::now() - a).count(); }

// Default stream: decodes all frames pushed so far and returns the frames not returned yet.
class RedecodeStream final : public FrameStream {
 public:
  explicit RedecodeStream(VideoTokenCodec* codec) : codec_(codec) {}
  absl::StatusOr<at::Tensor> Push(const at::Tensor& indices) override {
    all_ = all_.defined() ? at::cat({all_, indices}, 1) : indices;
    WFM_ASSIGN_OR_RETURN(at::Tensor v, codec_->Decode(all_));
    const at::Tensor fresh = v.narrow(2, done_, v.size(2) - done_);
    done_ = v.size(2);
    return fresh;
  }

 private:
  VideoTokenCodec* codec_;
  at::Tensor all_;
  int64_t done_ = 0;
};

class TokenizerFrameStream final : public FrameStream {
 public:
  explicit TokenizerFrameStream(std::unique_ptr<tokenizer::DecodeStream> s) : s_(std::move(s)) {}
  absl::StatusOr<at::Tensor> Push(const at::Tensor& indices) override { return s_->Push(indices.to(at::kLong)); }

 private:
  std::unique_ptr<tokenizer::DecodeStream> s_;
};

// The tokenizer's serving facade: streaming (memory-bounded, equal to whole-clip) encode / decode.
class TokenizerCodec final : public VideoTokenCodec {
 public:
  explicit TokenizerCodec(std::unique_ptr<tokenizer::Tokenizer> tok) : tok_(std::move(tok)) {}
  int64_t vocab_size() const override { return tok_->config().codebook_size(); }
  int64_t temporal_compression() const override { return tok_->config().temporal_compression; }
  int64_t spatial_compression() const override { return tok_->config().spatial_compression; }
  absl::StatusOr<at::Tensor> Encode(const at::Tensor& video) override {
    WFM_ASSIGN_OR_RETURN(tokenizer::EncodeResult r, tok_->Encode(video), "tokenizer encode");
    return r.indices.to(at::kCPU);
  }
  absl::StatusOr<at::Tensor> Decode(const at::Tensor& indices) override {
    return tok_->Decode(indices.to(at::kLong));
  }
  absl::StatusOr<std::unique_ptr<FrameStream>> StartDecode() override {
    tokenizer::ServeOptions so;
    so.chunk_frames = tok_->config().temporal_compression;  // one latent frame at a time
    WFM_ASSIGN_OR_RETURN(std::unique_ptr<tokenizer::DecodeStream> s, tok_->StartDecode(tokenizer::ClipGeometry{}, so));
    return std::unique_ptr<FrameStream>(new TokenizerFrameStream(std::move(s)));
  }

 private:
  std::unique_ptr<tokenizer::Tokenizer> tok_;
};

// float [B, 3, T, H, W] in [-1, 1] -> uint8 [B, T, H, W, 3]
at::Tensor ToUint8(const at::Tensor& v) {
  return ((v.clamp(-1, 1) + 1) * 127.5).round().to(at::kByte).permute({0, 2, 3, 4, 1}).contiguous();
}

}  // namespace

absl::StatusOr<std::unique_ptr<FrameStream>> VideoTokenCodec::StartDecode() {
  return std::unique_ptr<FrameStream>(new RedecodeStream(this));
}

absl::StatusOr<std::unique_ptr<VideoTokenCodec>> LoadTokenizerCodec(const std::string& config,
                                                                    const std::string& weights,
                                                                    const std::string& device) {
  WFM_ASSIGN_OR_RETURN(tokenizer::TokenizerConfig tc, tokenizer::TokenizerConfig::FromPresetOrFile(config),
                       "tokenizer config '", config, "'");
  if (!tc.is_video() || !tc.is_discrete())
    return absl::InvalidArgumentError(absl::StrCat("the AR world model needs a discrete video (DV) tokenizer; '",
                                                   config, "' is ", tc.name));
  tokenizer::TokenizerOptions opts;
  opts.device = device;
  std::unique_ptr<tokenizer::Tokenizer> tok;
  if (!weights.empty()) {
    WFM_ASSIGN_OR_RETURN(tok, tokenizer::Tokenizer::Create(tc, weights, opts), "tokenizer weights");
  } else {
    WFM_LOG(WARNING) << "tokenizer: random weights (no tokenizer weights given); decoded pixels are noise";
    WFM_ASSIGN_OR_RETURN(c10::Device dev, ParseDevice(device));
    WFM_ASSIGN_OR_RETURN(tokenizer::TokenizerNetwork net,
                         CatchToStatus("building the tokenizer", [&]() -> absl::StatusOr<tokenizer::TokenizerNetwork> {
                           tokenizer::TokenizerNetwork n(tc);
                           n->eval();
                           n->to(dev);
                           return n;
                         }));
    WFM_ASSIGN_OR_RETURN(tok, tokenizer::Tokenizer::FromNetwork(net, opts));
  }
  return std::unique_ptr<VideoTokenCodec>(new TokenizerCodec(std::move(tok)));
}

std::vector<at::Tensor> RealTextRows(const text::TextEmbeddings& e) {
  std::vector<at::Tensor> rows;
  const at::Tensor lengths = e.mask.sum(1).cpu();  // [B]
  for (int64_t i = 0; i < e.embeddings.size(0); ++i)
    rows.push_back(e.embeddings[i].narrow(0, 0, lengths[i].item<int64_t>()));  // [n_i, D]
  return rows;
}

TextContext EncodedTextContext(const text::TextEmbeddings& e, int64_t pad_to) {
  auto [context, mask] = PadTextRows(RealTextRows(e), pad_to);
  return TextContext{context, mask};
}

int64_t TextPadLength(const std::string& path, const text::TextEncoder& encoder) {
  std::error_code ec;
  return std::filesystem::is_directory(path, ec) ? encoder.max_length() : 0;
}

absl::StatusOr<std::vector<at::Tensor>> TokenizeVideo(VideoTokenCodec& codec, const std::string& path,
                                                      const TokenizeOptions& o) {
  const int64_t tc = codec.temporal_compression();
  if (o.clip_frames < 1 || (o.clip_frames - 1) % tc != 0)
    return absl::InvalidArgumentError(absl::StrCat("clip frames must be 1 + k*", tc, ", got ", o.clip_frames));
  if (o.height % codec.spatial_compression() != 0 || o.width % codec.spatial_compression() != 0)
    return absl::InvalidArgumentError(absl::StrCat("clip size ", o.height, "x", o.width, " is not a multiple of ",
                                                   codec.spatial_compression()));
  std::vector<at::Tensor> clips, pending;
  int64_t have = 0;
  DecodeOptions d;
  d.fps = o.fps;
  absl::Status inner;
  const auto flush = [&]() -> absl::Status {
    at::Tensor frames = at::cat(pending, 0);  // [>= clip_frames, H, W, 3]
    pending.clear();
    if (frames.size(0) > o.clip_frames) pending.push_back(frames.narrow(0, o.clip_frames, frames.size(0) - o.clip_frames));
    have = frames.size(0) - o.clip_frames;
    WFM_ASSIGN_OR_RETURN(at::Tensor video, CatchToStatus("resizing", [&]() -> absl::StatusOr<at::Tensor> {
      return FramesToModelInput(ResizeCoverCrop(frames.narrow(0, 0, o.clip_frames), o.height, o.width)).unsqueeze(0);
    }));
    WFM_ASSIGN_OR_RETURN(at::Tensor idx, codec.Encode(video));
    clips.push_back(idx[0].contiguous());  // [t, h, w]
    return absl::OkStatus();
  };
  const absl::StatusOr<int64_t> n = DecodeVideoStream(path, d, [&](const at::Tensor& chunk, int64_t) {
    if (o.max_clips > 0 && static_cast<int64_t>(clips.size()) >= o.max_clips) return absl::CancelledError("enough");
    pending.push_back(chunk.clone());
    have += chunk.size(0);
    while (have >= o.clip_frames && (o.max_clips <= 0 || static_cast<int64_t>(clips.size()) < o.max_clips)) {
      inner = flush();
      if (!inner.ok()) return inner;
    }
    return absl::OkStatus();
  });
  if (!inner.ok()) return Annotate(inner, path);
  if (!n.ok() && !absl::IsCancelled(n.status())) return n.status();
  return clips;
}

absl::StatusOr<WorldResult> GenerateWorld(ArTransformerImpl& net, VideoTokenCodec& codec, const at::Tensor& frames,
                                          const TextContext* text, const WorldOptions& o,
                                          const TextContext* unconditional) {
  const ArConfig& c = net.config;
  if (codec.vocab_size() != c.vocab_size)
    return absl::InvalidArgumentError(absl::StrCat("tokenizer/model vocabulary mismatch: the tokenizer has ",
                                                   codec.vocab_size(), " codes, the model ", c.vocab_size,
                                                   " tokens"));
  const int64_t tc = codec.temporal_compression(), sc = codec.spatial_compression();
  const auto latent_frames = [&](int64_t n, const char* what) -> absl::StatusOr<int64_t> {
    if (n < 1 || (n - 1) % tc != 0)
      return absl::InvalidArgumentError(absl::StrCat(what, " must be 1 + k*", tc, " (1, ", 1 + tc, ", ", 1 + 2 * tc,
                                                     ", ...), got ", n));
    return 1 + (n - 1) / tc;
  };
  WFM_ASSIGN_OR_RETURN(const int64_t total_latent, latent_frames(o.num_frames, "num_frames"));
  int64_t prompt_latent = 0;
  if (o.num_input_frames > 0) {
    WFM_ASSIGN_OR_RETURN(prompt_latent, latent_frames(o.num_input_frames, "num_input_frames"));
    if (!frames.defined() || frames.dim() != 4 || frames.size(3) != 3 || frames.scalar_type() != at::kByte)
      return absl::InvalidArgumentError("prompt frames must be uint8 [T, H, W, 3]");
    if (frames.size(0) < o.num_input_frames)
      return absl::InvalidArgumentError(absl::StrCat("the prompt video has ", frames.size(0),
                                                     " frames, fewer than the ", o.num_input_frames,
                                                     " requested (--num-input-frames)"));
  }
  if (total_latent <= prompt_latent)
    return absl::InvalidArgumentError(absl::StrCat("num_frames ", o.num_frames, " leaves nothing to generate after ",
                                                   o.num_input_frames, " input frames"));
  const int64_t lh = c.video_latent_shape[1], lw = c.video_latent_shape[2];
  WorldResult result;
  at::Tensor prompt = at::empty({0}, at::kLong);
  if (prompt_latent > 0) {
    const auto t0 = Clock::now();
    WFM_ASSIGN_OR_RETURN(
        at::Tensor video, CatchToStatus("preparing the prompt frames", [&]() -> absl::StatusOr<at::Tensor> {
          const at::Tensor last = frames.narrow(0, frames.size(0) - o.num_input_frames, o.num_input_frames);
          return FramesToModelInput(ResizeCoverCrop(last, lh * sc, lw * sc)).unsqueeze(0);  // [1, 3, T, H, W]
        }));
    WFM_ASSIGN_OR_RETURN(at::Tensor idx, codec.Encode(video));
    if (idx.dim() != 4 || idx.size(1) != prompt_latent || idx.size(2) != lh || idx.size(3) != lw)
      return absl::InvalidArgumentError(absl::StrCat("the tokenizer produced a latent grid of [", idx.size(1), ", ",
                                                     idx.size(2), ", ", idx.size(3), "], the model expects [",
                                                     prompt_latent, ", ", lh, ", ", lw, "]"));
    prompt = idx.reshape(-1);
    result.encode_seconds = Seconds(t0);
  }
  GenerationOptions g = o.generation;
  std::unique_ptr<FrameStream> stream;
  std::vector<at::Tensor> streamed;  // uint8 [B, t, H, W, 3] pieces
  if (o.on_frames) {
    WFM_ASSIGN_OR_RETURN(stream, codec.StartDecode());
    const int64_t B = g.num_samples;
    const auto emit = [&](const at::Tensor& idx) -> absl::Status {  // idx [B, n, h, w]
      const auto t = Clock::now();
      WFM_ASSIGN_OR_RETURN(at::Tensor v, stream->Push(idx));
      result.decode_seconds += Seconds(t);
      if (v.size(2) == 0) return absl::OkStatus();
      streamed.push_back(ToUint8(v));
      return o.on_frames(streamed.back());
    };
    if (prompt_latent > 0)
      WFM_RETURN_IF_ERROR(emit(prompt.view({1, prompt_latent, lh, lw}).expand({B, -1, -1, -1}).contiguous()));
    const auto user = g.on_frame;
    g.on_frame = [&, user](int64_t frame, const at::Tensor& tokens) -> absl::Status {
      if (user) WFM_RETURN_IF_ERROR(user(frame, tokens));
      return emit(tokens.unsqueeze(1));
    };
  }
  WFM_ASSIGN_OR_RETURN(result.generation, GenerateTokens(net, prompt, total_latent, text, g, unconditional));
  result.tokens = result.generation.tokens;
  if (stream) {
    result.videos = at::cat(streamed, 1);
    return result;
  }
  const auto t1 = Clock::now();
  std::vector<at::Tensor> videos;
  for (int64_t b = 0; b < result.tokens.size(0); ++b) {
    WFM_ASSIGN_OR_RETURN(at::Tensor v, codec.Decode(result.tokens.narrow(0, b, 1)), "decoding sample ", b);
    videos.push_back(ToUint8(v));
  }
  result.videos = at::cat(videos, 0);
  result.decode_seconds = Seconds(t1);
  return result;
}

}  // namespace wfm::ar
