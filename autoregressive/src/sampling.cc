// Token policies (see wfm/autoregressive/sampling.h). Sampling uses the exponential-race trick of the reference
// (multinomial_sample_one_no_sync: argmax(p / q), q ~ Exp(1)), one generator per row.
#include "wfm/autoregressive/sampling.h"

#include <algorithm>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "absl/strings/str_cat.h"

namespace wfm::ar {
namespace {

// Draws an index from probabilities `p` [n] (need not be normalised) with generator `gen`.
int64_t Race(const at::Tensor& p, at::Generator& gen) {
  at::Tensor q = at::empty(p.sizes(), p.options());
  q.exponential_(1.0, gen);
  return (p / q).argmax().item<int64_t>();
}

at::Tensor Rows(const at::Tensor& logits) {
  TORCH_CHECK(logits.dim() == 2, "TokenPolicy: logits must be [B, V], got ", logits.sizes());
  return logits.detach().to(at::kCPU, at::kFloat).contiguous();
}

// The sorted head of probabilities `row` [V] (float32, contiguous) that contains the top-p nucleus, for peaked
// distributions (a trained model's): the tokens with probability >= tau for a falling threshold tau, until they
// hold more than p of the mass (the nucleus is then inside them: it is the shortest such sorted prefix). A few
// linear scans instead of topk/sort over V; false (use the sort path) when the head would exceed 2048 tokens.
bool NucleusByThreshold(const at::Tensor& row, double p, at::Tensor* vals, at::Tensor* idx) {
  if (row.scalar_type() != at::kFloat || !row.is_contiguous() || row.dim() != 1) return false;
  const float* pr = row.data_ptr<float>();
  const int64_t v = row.size(0);
  const float mx = *std::max_element(pr, pr + v);
  std::vector<int64_t> head;
  for (float tau = mx * 1e-2f; tau > 0.f; tau *= 1e-2f) {
    head.clear();
    double mass = 0;
    for (int64_t j = 0; j < v; ++j)
      if (pr[j] >= tau) {
        if (head.size() == 2048) return false;
        head.push_back(j);
        mass += pr[j];
      }
    if (mass > p) break;
  }
  if (head.empty()) return false;
  std::stable_sort(head.begin(), head.end(), [&](int64_t a, int64_t b) { return pr[a] > pr[b]; });
  *idx = at::tensor(head, at::kLong);
  *vals = row.index_select(0, *idx);
  return true;
}

}  // namespace

at::Tensor GreedyPolicy::Choose(const at::Tensor& logits, std::vector<at::Generator>&) const {
  TORCH_CHECK(logits.dim() == 2, "TokenPolicy: logits must be [B, V], got ", logits.sizes());
  return logits.argmax(-1);
}

std::string TopKPolicy::Describe() const {
  return k_ > 0 ? absl::StrCat("top-k ", k_, ", temperature ", temperature_)
                : absl::StrCat("full distribution, temperature ", temperature_);
}

at::Tensor TopKPolicy::Choose(const at::Tensor& logits, std::vector<at::Generator>& generators) const {
  // reference: logits_to_probs + multinomial_sample_one_no_sync
  const at::Tensor l = Rows(logits) / std::max(temperature_, 1e-5);
  const int64_t b = l.size(0), v = l.size(1);
  TORCH_CHECK(static_cast<int64_t>(generators.size()) >= b, "TokenPolicy: ", generators.size(), " generators for ",
              b, " rows");
  at::Tensor out = at::empty({b}, at::kLong);
  auto o = out.accessor<int64_t, 1>();
  for (int64_t i = 0; i < b; ++i) {
    if (k_ > 0 && k_ < v) {
      const auto [vals, idx] = l[i].topk(k_);
      o[i] = idx[Race(at::softmax(vals, -1), generators[i])].item<int64_t>();
    } else {
      o[i] = Race(at::softmax(l[i], -1), generators[i]);
    }
  }
  return out.to(logits.device());
}

std::string TopPPolicy::Describe() const { return absl::StrCat("top-p ", p_, ", temperature ", temperature_); }

at::Tensor TopPPolicy::Choose(const at::Tensor& logits, std::vector<at::Generator>& generators) const {
  // reference: sample_top_p — probs = softmax(logits / T); sort; drop tokens whose preceding mass > p; renormalise.
  const at::Tensor probs = at::softmax(Rows(logits) / temperature_, -1);  // [B, V]
  const int64_t b = probs.size(0), v = probs.size(1);
  TORCH_CHECK(static_cast<int64_t>(generators.size()) >= b, "TokenPolicy: ", generators.size(), " generators for ",
              b, " rows");
  at::Tensor out = at::empty({b}, at::kLong);
  auto o = out.accessor<int64_t, 1>();
  for (int64_t i = 0; i < b; ++i) {
    const at::Tensor row = probs[i];
    at::Tensor vals, idx;
    if (!NucleusByThreshold(row, p_, &vals, &idx)) {
      // Grow the sorted head until it holds more than p of the mass (every later token is then dropped): the
      // top 64, then the top 1024, else one full sort (flat distributions, e.g. random weights: a longer chain of
      // ever larger top-k calls cost more than the sort it ends with).
      for (int64_t k : {int64_t{64}, int64_t{1024}, v}) {
        k = std::min(k, v);
        std::tie(vals, idx) = k == v ? row.sort(-1, /*descending=*/true) : row.topk(k);  // sorted, descending
        if (k == v || vals.sum().item<double>() > p_) break;
      }
    }
    const at::Tensor csum = vals.cumsum(0);
    const at::Tensor kept = vals.masked_fill((csum - vals) > p_, 0.0);
    o[i] = idx[Race(kept / kept.sum(), generators[i])].item<int64_t>();
  }
  return out.to(logits.device());
}

absl::StatusOr<std::unique_ptr<TokenPolicy>> MakeTokenPolicy(const SamplingOptions& o) {
  if (!(o.temperature >= 0)) return absl::InvalidArgumentError(absl::StrCat("temperature must be >= 0, got ", o.temperature));
  if (o.top_k < 0) return absl::InvalidArgumentError(absl::StrCat("top_k must be >= 0, got ", o.top_k));
  if (!(o.top_p > 0 && o.top_p <= 1))
    return absl::InvalidArgumentError(absl::StrCat("top_p must be in (0, 1], got ", o.top_p));
  if (o.top_k > 0 && o.top_p < 1)
    return absl::InvalidArgumentError("give either top_k or top_p, not both (as the reference sampler)");
  if (o.temperature == 0) return std::unique_ptr<TokenPolicy>(new GreedyPolicy());
  if (o.top_p < 1) return std::unique_ptr<TokenPolicy>(new TopPPolicy(o.temperature, o.top_p));
  return std::unique_ptr<TokenPolicy>(new TopKPolicy(o.temperature, o.top_k));
}

std::vector<at::Generator> SampleGenerators(uint64_t seed, int64_t rows) {
  std::vector<at::Generator> g;
  g.reserve(rows);
  for (int64_t i = 0; i < rows; ++i) {
    // SplitMix64 of (seed, row) so that nearby seeds and rows give unrelated streams.
    uint64_t z = seed + 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(i + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    g.push_back(at::make_generator<at::CPUGeneratorImpl>(z ^ (z >> 31)));
  }
  return g;
}

}  // namespace wfm::ar
