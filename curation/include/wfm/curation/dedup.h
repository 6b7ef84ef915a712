// Deduplication over the clips of a whole run (results do not depend on the order clips arrive in):
//  - Near duplicates: each clip carries K 64-bit DCT perceptual hashes of evenly spaced frames; candidate
//    pairs come from banded LSH (every hash split into `bands` bands; clips sharing any band value of the
//    same frame position are candidates), a candidate is a duplicate when the mean Hamming distance over the
//    K positions is <= max_hamming. Duplicates form connected groups; each group keeps its best copy
//    (largest pixel count, then longest, then smallest id) -- re-encoded or rescaled copies lose.
//  - Semantic dedup (SemDeDup): spherical k-means over L2-normalised clip embeddings, then inside each
//    cluster a clip is dropped when its cosine similarity to a better clip kept before it is >= 1 - eps.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace wfm::curation {

struct DedupItem {
  std::string id;               // span_uuid
  std::vector<uint64_t> hashes; // K perceptual hashes at fixed relative positions
  int64_t pixels = 0;           // width x height of the (cropped) clip
  double duration = 0;
};

struct DedupOptions {
  double max_hamming = 8.0;      // mean bits (of 64) that may differ
  int bands = 4;                 // LSH bands per hash (64 / bands bits each)
  int max_bucket_compare = 256;  // each item is compared with at most this many bucket neighbours
};

// For every item: -1 when kept, else the index of the kept item of its duplicate group.
std::vector<int> FindNearDuplicates(const std::vector<DedupItem>& items, const DedupOptions& options = {});

struct SemanticDedupOptions {
  int clusters = 0;       // 0 = max(1, round(sqrt(n / 2)))
  double eps = 0.05;      // duplicate when cosine similarity >= 1 - eps
  int iterations = 25;
  uint64_t seed = 1234;
};

struct SemanticItem {
  std::string id;
  std::vector<float> embedding;
  int64_t pixels = 0;
  double duration = 0;
};

// Same convention as FindNearDuplicates; items without an embedding are always kept.
std::vector<int> SemanticDuplicates(const std::vector<SemanticItem>& items, const SemanticDedupOptions& options = {});

}  // namespace wfm::curation
