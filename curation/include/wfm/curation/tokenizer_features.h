// Tokenizer-backed curation features (needs wfm built with the tokenizer module; TokenizerAvailable() says so):
//  - a ClipEmbedder from pooled tokenizer latents (semantic dedup without another model): the clip's sampled
//    frames are encoded and the latent is mean-pooled over time and a 2x2 spatial grid -> 4 C values,
//    L2-normalised;
//  - the tokenized variant of the shards: each kept clip encoded (streaming, bounded memory) into
//    KEY.latent.safetensors ("latent" float [C, t, h, w] for continuous tokenizers, "indices" int32 [t, h, w]
//    for discrete ones, plus the clip geometry as metadata) so training can skip decoding.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "wfm/curation/models.h"

namespace wfm::curation {

struct TokenizerSpec {
  std::string config;         // preset name ("CV8x8x8", ...) or a config.json
  std::string weights;        // checkpoint
  std::string device = "cpu";
  int height = 0;             // latent variant: resize clips to this height before encoding (0 = keep)
  int64_t chunk_frames = 16;  // streaming chunk
};

bool TokenizerAvailable();

absl::StatusOr<std::unique_ptr<ClipEmbedder>> MakeTokenizerEmbedder(const TokenizerSpec& spec, int width, int height);

// Encodes the video at `clip` into a safetensors file at `out`.
using LatentWriter = std::function<absl::Status(const std::string& clip, const std::string& out)>;
absl::StatusOr<LatentWriter> MakeLatentWriter(const TokenizerSpec& spec);

}  // namespace wfm::curation
