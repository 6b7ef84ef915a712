// Reproducible randomness for training: counter-based seeds (one independent stream per (seed, stream, index),
// so data loading in background threads and resumed runs draw exactly the same numbers), and capture/restore of
// LibTorch's global generators for checkpoints.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "wfm/core/tensor_map.h"

namespace wfm::train {

// A well-mixed 64-bit seed from a base seed and up to two counters (SplitMix64 finaliser chain).
uint64_t MixSeed(uint64_t seed, uint64_t a, uint64_t b = 0);

// A fresh CPU generator (Philox/MT as LibTorch's CPU default) seeded with `seed`; pass it to at:: random ops so
// they do not touch the global generator.
at::Generator MakeCpuGenerator(uint64_t seed);

// The states of the default CPU generator and of every visible CUDA device's default generator, as tensors named
// "cpu", "cuda:0", ... (uint8).
TensorMap CaptureTorchRngState();
// Restores states captured by CaptureTorchRngState(); CUDA entries for devices that do not exist are an error.
absl::Status RestoreTorchRngState(const TensorMap& state);

}  // namespace wfm::train
