// Streaming state of a causal video encoder or decoder. Every temporal operation of the network (causal
// convolutions, the temporal down/up-sampling, the first-frame handling of the wavelet patcher and the causal
// temporal attention) keeps what it needs from earlier chunks in one slot of this cache, taken in the fixed
// order in which the network runs them. Feeding a clip in chunks (first chunk 1 + k*N frames, then multiples of
// N, N = temporal compression) through a network with one cache gives the same output as the whole clip at once.
//
//   CausalCache cache;                       // one per stream (and per spatial tile)
//   for (chunk : chunks) latents.push_back(encoder->forward(chunk, &cache));
//
// Memory: one or two frames per causal convolution at its resolution, plus the keys/values of every earlier
// frame for the temporal attention (at the bottleneck). `attention_window` > 0 keeps only the last that many
// frames of keys/values: bounded memory, no longer exactly the whole-clip result.
#pragma once

#include <cstdint>
#include <deque>

#include <ATen/core/Tensor.h>

namespace wfm::tokenizer {

class CausalCache {
 public:
  explicit CausalCache(int64_t attention_window = 0) : attention_window_(attention_window) {}

  // Called by the top-level network at the start of each chunk.
  void BeginChunk() { cursor_ = 0; }
  // The next slot; undefined on the first chunk. Ops store what the next chunk needs into it. The reference
  // stays valid while later slots are taken.
  at::Tensor& NextSlot();
  // True until the first chunk has run.
  bool empty() const { return slots_.empty(); }
  void Reset() { slots_.clear(), cursor_ = 0; }

  int64_t attention_window() const { return attention_window_; }
  // Bytes held by the cached tensors.
  int64_t bytes() const;
  size_t num_slots() const { return slots_.size(); }

 private:
  std::deque<at::Tensor> slots_;  // deque: references to slots stay valid as slots are added
  size_t cursor_ = 0;
  int64_t attention_window_ = 0;
};

// Helpers for ops that run on a stream.
namespace stream {
// True (and marks the slot) on the first chunk of the stream.
bool FirstChunk(CausalCache* cache);
// x [B, C, T, ...] with its first frame repeated `n` times in front: [B, C, T + n, ...].
at::Tensor RepeatFirstFrame(const at::Tensor& x, int64_t n);
}  // namespace stream

}  // namespace wfm::tokenizer
