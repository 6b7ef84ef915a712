// Token policies: logits -> next token (cosmos_predict1/autoregressive/utils/sampling.py sample_top_p /
// sample_top_k / argmax). Each batch row draws from its own generator, so sample i of a seed is the same video
// whatever the number of samples generated alongside it.
//
//   auto policy = ar::MakeTokenPolicy(ar::SamplingOptions{.temperature = 1.0, .top_p = 0.8});
//   std::vector<at::Generator> gens = ar::SampleGenerators(/*seed=*/7, /*rows=*/4);
//   at::Tensor next = (*policy)->Choose(logits, gens);  // logits [4, V] -> int64 [4]
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"

namespace wfm::ar {

struct SamplingOptions {
  double temperature = 1.0;  // 0 = greedy (argmax)
  int64_t top_k = 0;         // > 0: keep the k most likely tokens
  double top_p = 1.0;        // < 1: nucleus sampling (the reference's default for Cosmos AR: 0.8-0.9)
};

class TokenPolicy {
 public:
  virtual ~TokenPolicy() = default;
  // logits [B, V] (any floating dtype / device) -> int64 [B] on the logits' device. generators.size() >= B.
  virtual at::Tensor Choose(const at::Tensor& logits, std::vector<at::Generator>& generators) const = 0;
  virtual std::string Describe() const = 0;
};

// argmax
class GreedyPolicy final : public TokenPolicy {
 public:
  at::Tensor Choose(const at::Tensor& logits, std::vector<at::Generator>& generators) const override;
  std::string Describe() const override { return "greedy"; }
};

// softmax(logits / temperature) restricted to the top-k (k = 0: the whole vocabulary).
class TopKPolicy final : public TokenPolicy {
 public:
  TopKPolicy(double temperature, int64_t k) : temperature_(temperature), k_(k) {}
  at::Tensor Choose(const at::Tensor& logits, std::vector<at::Generator>& generators) const override;
  std::string Describe() const override;

 private:
  double temperature_;
  int64_t k_;
};

// Nucleus: the smallest set of most likely tokens whose probability mass reaches p (a token is dropped when the
// mass before it already exceeds p), renormalised. Only the needed head of the distribution is sorted.
class TopPPolicy final : public TokenPolicy {
 public:
  TopPPolicy(double temperature, double p) : temperature_(temperature), p_(p) {}
  at::Tensor Choose(const at::Tensor& logits, std::vector<at::Generator>& generators) const override;
  std::string Describe() const override;

 private:
  double temperature_, p_;
};

// Validates the options (temperature >= 0, top_k >= 0, 0 < top_p <= 1, not both top_k and top_p) and builds the
// policy: temperature 0 -> greedy; top_p < 1 -> TopPPolicy; otherwise TopKPolicy.
absl::StatusOr<std::unique_ptr<TokenPolicy>> MakeTokenPolicy(const SamplingOptions& options);

// One CPU generator per row, row i seeded from (seed, i).
std::vector<at::Generator> SampleGenerators(uint64_t seed, int64_t rows);

}  // namespace wfm::ar
