// Near-duplicate (pHash + banded LSH) and semantic (k-means + cosine, SemDeDup) deduplication (see dedup.h).
#include "wfm/curation/dedup.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <unordered_map>

#include <ATen/ATen.h>

namespace wfm::curation {
namespace {

struct UnionFind {
  std::vector<int> parent;
  explicit UnionFind(int n) : parent(n) { std::iota(parent.begin(), parent.end(), 0); }
  int Find(int x) {
    while (parent[x] != x) x = parent[x] = parent[parent[x]];
    return x;
  }
  void Union(int a, int b) {
    a = Find(a);
    b = Find(b);
    if (a != b) parent[std::max(a, b)] = std::min(a, b);
  }
};

// True when a is the better copy: more pixels, then longer, then the smaller id.
template <typename T>
bool Better(const T& a, const T& b) {
  if (a.pixels != b.pixels) return a.pixels > b.pixels;
  if (a.duration != b.duration) return a.duration > b.duration;
  return a.id < b.id;
}

template <typename T>
std::vector<int> KeepBestOfGroups(const std::vector<T>& items, UnionFind& uf) {
  const int n = static_cast<int>(items.size());
  std::vector<int> best(n, -1);
  for (int i = 0; i < n; ++i) {
    int r = uf.Find(i);
    if (best[r] < 0 || Better(items[i], items[best[r]])) best[r] = i;
  }
  std::vector<int> out(n, -1);
  for (int i = 0; i < n; ++i) {
    int keep = best[uf.Find(i)];
    if (keep != i) out[i] = keep;
  }
  return out;
}

}  // namespace

std::vector<int> FindNearDuplicates(const std::vector<DedupItem>& items, const DedupOptions& o) {
  const int n = static_cast<int>(items.size());
  const int bands = std::clamp(o.bands, 1, 64);
  const int bits = 64 / bands;
  const uint64_t mask = bits >= 64 ? ~uint64_t{0} : ((uint64_t{1} << bits) - 1);
  // Process in id order so the candidate lists (and so the result) do not depend on the input order.
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return items[a].id < items[b].id; });
  std::unordered_map<uint64_t, std::vector<int>> buckets;
  for (int i : order) {
    const auto& h = items[i].hashes;
    for (size_t k = 0; k < h.size(); ++k) {
      for (int b = 0; b < bands; ++b) {
        uint64_t band = (h[k] >> (b * bits)) & mask;
        uint64_t key = (static_cast<uint64_t>(k) << 56) ^ (static_cast<uint64_t>(b) << 48) ^ band;
        buckets[key].push_back(i);
      }
    }
  }
  UnionFind uf(n);
  auto distance = [&](int a, int b) {
    const auto& x = items[a].hashes;
    const auto& y = items[b].hashes;
    size_t m = std::min(x.size(), y.size());
    if (m == 0) return 64.0;
    double d = 0;
    for (size_t k = 0; k < m; ++k) d += __builtin_popcountll(x[k] ^ y[k]);
    return d / static_cast<double>(m);
  };
  std::vector<std::pair<int, int>> checked;
  for (auto& [key, list] : buckets) {
    if (list.size() < 2) continue;
    for (size_t i = 0; i < list.size(); ++i) {
      size_t stop = std::min(list.size(), i + 1 + static_cast<size_t>(std::max(1, o.max_bucket_compare)));
      for (size_t j = i + 1; j < stop; ++j) {
        int a = list[i], b = list[j];
        if (a == b || uf.Find(a) == uf.Find(b)) continue;
        if (distance(a, b) <= o.max_hamming) uf.Union(a, b);
      }
    }
  }
  return KeepBestOfGroups(items, uf);
}

std::vector<int> SemanticDuplicates(const std::vector<SemanticItem>& items, const SemanticDedupOptions& o) {
  const int n = static_cast<int>(items.size());
  std::vector<int> out(n, -1);
  std::vector<int> idx;  // items with an embedding of the common dimension, in id order
  size_t dim = 0;
  for (const auto& it : items) dim = std::max(dim, it.embedding.size());
  for (int i = 0; i < n; ++i) {
    if (!items[i].embedding.empty() && items[i].embedding.size() == dim) idx.push_back(i);
  }
  std::sort(idx.begin(), idx.end(), [&](int a, int b) { return items[a].id < items[b].id; });
  const int m = static_cast<int>(idx.size());
  if (m < 2) return out;
  at::Tensor x = at::empty({m, static_cast<int64_t>(dim)}, at::kFloat);
  for (int r = 0; r < m; ++r) {
    std::copy(items[idx[r]].embedding.begin(), items[idx[r]].embedding.end(), x[r].data_ptr<float>());
  }
  x = x / x.norm(2, 1, true).clamp_min(1e-12);  // [m, D]
  int k = o.clusters > 0 ? o.clusters : std::max(1, static_cast<int>(std::lround(std::sqrt(m / 2.0))));
  k = std::min(k, m);
  // k-means++ initialisation (seeded), then Lloyd iterations on the sphere.
  std::mt19937_64 rng(o.seed);
  std::vector<int64_t> centers{static_cast<int64_t>(rng() % m)};
  at::Tensor best_sim = at::matmul(x, x[centers[0]]);  // [m]
  while (static_cast<int>(centers.size()) < k) {
    at::Tensor d = (1 - best_sim).clamp_min(0).to(at::kDouble);
    double total = d.sum().item<double>();
    int64_t pick = 0;
    if (total <= 0) {
      pick = static_cast<int64_t>(rng() % m);
    } else {
      double u = std::uniform_real_distribution<double>(0, total)(rng);
      at::Tensor c = d.cumsum(0);
      pick = std::min<int64_t>(m - 1, (c < u).sum().item<int64_t>());
    }
    centers.push_back(pick);
    best_sim = at::maximum(best_sim, at::matmul(x, x[pick]));
  }
  at::Tensor cent = x.index_select(0, at::tensor(centers, at::kLong)).clone();  // [k, D]
  at::Tensor assign;
  for (int it = 0; it < o.iterations; ++it) {
    at::Tensor a = at::matmul(x, cent.t()).argmax(1);  // [m]
    if (assign.defined() && at::equal(a, assign)) break;
    assign = a;
    at::Tensor sums = at::zeros_like(cent).index_add_(0, assign, x);
    at::Tensor norms = sums.norm(2, 1, true);
    cent = at::where(norms > 0, sums / norms.clamp_min(1e-12), cent);
  }
  auto acc = assign.accessor<int64_t, 1>();
  // Inside each cluster: best items first; drop those too similar to an item already kept.
  std::vector<std::vector<int>> members(k);
  for (int r = 0; r < m; ++r) members[acc[r]].push_back(r);
  const double thr = 1.0 - o.eps;
  for (auto& mem : members) {
    if (mem.empty()) continue;
    std::sort(mem.begin(), mem.end(), [&](int a, int b) { return Better(items[idx[a]], items[idx[b]]); });
    at::Tensor rows = at::tensor(std::vector<int64_t>(mem.begin(), mem.end()), at::kLong);
    at::Tensor xc = x.index_select(0, rows);                   // [c, D]
    at::Tensor sim = at::matmul(xc, xc.t()).contiguous();      // [c, c]
    auto s = sim.accessor<float, 2>();
    std::vector<int> kept;  // positions in mem
    for (int p = 0; p < static_cast<int>(mem.size()); ++p) {
      int dup_of = -1;
      float best = -2;
      for (int q : kept) {
        if (s[p][q] >= thr && s[p][q] > best) {
          best = s[p][q];
          dup_of = q;
        }
      }
      if (dup_of >= 0) {
        out[idx[mem[p]]] = idx[mem[dup_of]];
      } else {
        kept.push_back(p);
      }
    }
  }
  return out;
}

}  // namespace wfm::curation
