// Video2World and Text2World with the AR world model: encode the prompt frames to discrete video tokens with a DV
// tokenizer, generate the remaining latent frames token by token (raster order t, h, w), decode to pixels.
// Follows cosmos_predict1/autoregressive/inference/world_generation_pipeline.py (ARBaseGenerationPipeline /
// ARVideo2WorldGenerationPipeline) and utils/inference.py (the LAST num_input_frames frames of the input are the
// prompt; frames are resized to cover the model resolution and centre-cropped).
//
//   WFM_ASSIGN_OR_RETURN(auto codec, ar::LoadTokenizerCodec("DV8x16x16", "tokenizer/ckpt", "cpu"));
//   ar::WorldOptions o;  o.num_input_frames = 9;  o.num_frames = 33;  o.generation.num_samples = 2;
//   WFM_ASSIGN_OR_RETURN(ar::WorldResult r, ar::GenerateWorld(*net, *codec, frames, &text, o));
//   // r.videos: uint8 [2, 33, 640, 1024, 3]
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "wfm/autoregressive/generate.h"
#include "wfm/autoregressive/transformer.h"

namespace wfm::text {
struct TextEmbeddings;
class TextEncoder;
}

namespace wfm::ar {

// Incremental decoding of latent frames as they are generated.
class FrameStream {
 public:
  virtual ~FrameStream() = default;
  // The next latent frames, int64 [B, n, h, w] -> the new pixel frames, float [B, 3, T', H, W] in [-1, 1].
  virtual absl::StatusOr<at::Tensor> Push(const at::Tensor& indices) = 0;
};

// A discrete video tokenizer as the world model sees it.
class VideoTokenCodec {
 public:
  virtual ~VideoTokenCodec() = default;
  virtual int64_t vocab_size() const = 0;            // codebook size (64000 for FSQ [8,8,8,5,5,5])
  virtual int64_t temporal_compression() const = 0;  // 1 + k*N frames -> 1 + k latent frames
  virtual int64_t spatial_compression() const = 0;
  // video float [1, 3, T, H, W] in [-1, 1] -> int64 [1, t, h, w]
  virtual absl::StatusOr<at::Tensor> Encode(const at::Tensor& video) = 0;
  // int64 [B, t, h, w] -> float [B, 3, T, H, W] in [-1, 1]
  virtual absl::StatusOr<at::Tensor> Decode(const at::Tensor& indices) = 0;
  // A streaming decoder whose concatenated output equals Decode() of all pushed frames. The default re-decodes
  // everything pushed so far and returns the new frames; causal tokenizers override it with a cached stream.
  virtual absl::StatusOr<std::unique_ptr<FrameStream>> StartDecode();
};

// The wfm tokenizer (a DV network) as a codec. `config` is a tokenizer preset name or config.json path,
// `weights` a checkpoint path (tokenizer::LoadTokenizerWeights forms) or empty for random weights (smoke tests).
absl::StatusOr<std::unique_ptr<VideoTokenCodec>> LoadTokenizerCodec(const std::string& config,
                                                                    const std::string& weights,
                                                                    const std::string& device = "cpu");

struct WorldOptions {
  int64_t num_input_frames = 9;  // 1 + k * temporal_compression (1 = image prompt); 0 = Text2World
  int64_t num_frames = 33;       // output frames, prompt included: 1 + m * temporal_compression
  GenerationOptions generation;
  // Streaming output: called with uint8 [B, t, H, W, 3] pixel frames as soon as each latent frame is generated
  // and decoded (the prompt's frames first); the final videos are then assembled from these frames.
  std::function<absl::Status(const at::Tensor& frames)> on_frames;
};

struct WorldResult {
  at::Tensor videos;  // uint8 [B, num_frames, H, W, 3] (prompt frames decoded from their tokens)
  at::Tensor tokens;  // int64 [B, t, h, w]
  GenerationResult generation;
  double encode_seconds = 0, decode_seconds = 0;
};

// `frames`: uint8 [T, H, W, 3] RGB with T >= num_input_frames (any size: resized to cover the model resolution
// video_latent_shape[1:] * spatial_compression, centre-cropped); undefined for Text2World. Errors: a prompt
// video shorter than requested, frame counts not of the form 1 + k*N, a tokenizer whose vocabulary or latent grid
// does not match the model, a missing text context for a cross-attention model.
absl::StatusOr<WorldResult> GenerateWorld(ArTransformerImpl& net, VideoTokenCodec& codec, const at::Tensor& frames,
                                          const TextContext* text, const WorldOptions& options,
                                          const TextContext* unconditional = nullptr);

// Cuts a video into consecutive clips of `clip_frames` frames (1 + k * temporal_compression; a shorter tail is
// dropped), each resized to cover height x width and centre-cropped, and tokenizes them (streamed: memory holds
// one clip of frames). `fps` > 0 resamples first. Clip tokens: int64 [t, h, w]. At most `max_clips` (0 = all).
struct TokenizeOptions {
  int64_t clip_frames = 33;
  int64_t height = 640, width = 1024;
  double fps = 0;
  int64_t max_clips = 0;
};
absl::StatusOr<std::vector<at::Tensor>> TokenizeVideo(VideoTokenCodec& codec, const std::string& path,
                                                      const TokenizeOptions& options);

// Text conditioning from a text encoder's output, as the AR model sees it in training and in generation: the real
// rows of each prompt (by the encoder's mask) through PadTextRows (data.h, where the rule is documented) with
// `pad_to` from TextPadLength. Differentiable (a trained built-in encoder's gradients flow through).
TextContext EncodedTextContext(const text::TextEmbeddings& embeddings, int64_t pad_to);
// The real rows of prompt i: embeddings[i, :mask[i].sum()] -> [n_i, D].
std::vector<at::Tensor> RealTextRows(const text::TextEmbeddings& embeddings);
// The padding length of the text encoder at `path` for PadTextRows: its max_length (512) for (T5) directories,
// which follow the Cosmos convention; 0 (mask, pad to the longest) for the built-in encoder files.
int64_t TextPadLength(const std::string& path, const text::TextEncoder& encoder);

}  // namespace wfm::ar
