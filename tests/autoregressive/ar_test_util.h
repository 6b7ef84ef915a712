// Helpers shared by the AR test files: the CPU-sized models.
#pragma once

#include <cstdint>

#include "wfm/autoregressive/config.h"
#include "wfm/autoregressive/transformer.h"

namespace wfm::ar {

// "tiny" (3x4x4 grid, 16 tokens per latent frame, vocab 512) in the base or the Video2World layout.
inline ArConfig Tiny(bool v2w) { return *ArConfig::Preset(v2w ? "tiny-v2w" : "tiny"); }

// A network with the Llama-style initialisation from `seed`, in eval mode.
inline ArTransformer Net(const ArConfig& c, uint64_t seed = 1) {
  ArTransformer net(c);
  net->InitWeights(seed);
  net->eval();
  return net;
}

}  // namespace wfm::ar
