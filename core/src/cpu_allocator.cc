// Large-block CPU allocator (see runtime.h, InstallLargeBlockCpuAllocator).
//
// Why: serving a full-width tokenizer creates and frees activations of tens to hundreds of MB per layer. glibc
// maps every block above its mmap threshold afresh and unmaps it on free, so each new activation is paid for
// again with one page fault per 4 KiB page (measured: ~4 s of system time per 17x256x256 CV8x8x8
// reconstruction, a third of the CPU). Here blocks of >= 1 MiB are mapped 2 MiB-aligned with MADV_HUGEPAGE
// (one fault per 2 MiB where the kernel has transparent huge pages in `madvise` or `always` mode), and freed
// blocks are kept in a cache and handed out again to a request of (almost) the same size, which skips the
// faults and the kernel's zeroing altogether. The cache only holds memory below the process's peak resident
// memory so far (plus an optional extra limit), so by default it does not raise the peak. Small blocks go to
// c10's default CPU routines unchanged.
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>

#include "absl/strings/numbers.h"
#include "wfm/core/logging.h"
#include "wfm/core/runtime.h"

namespace wfm {
namespace {

constexpr size_t kLargeBlock = size_t{1} << 20;  // requests from 1 MiB go to the large-block path
constexpr size_t kHugePage = size_t{2} << 20;

size_t RoundUp(size_t n, size_t to) { return (n + to - 1) / to * to; }

class LargeBlockAllocator final : public c10::Allocator {
 public:
  explicit LargeBlockAllocator(size_t cache_limit) : cache_limit_(cache_limit) {}

  c10::DataPtr allocate(size_t n) const override {
    void* p = n >= kLargeBlock ? Self().AllocateLarge(n) : c10::alloc_cpu(n);
    return {p, p, &Delete, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &Delete; }

  void SetCacheLimit(size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    cache_limit_ = bytes;
    EvictLocked(0);
  }

  CpuAllocatorStats Stats() {
    std::lock_guard<std::mutex> lock(mu_);
    CpuAllocatorStats s = counters_;
    s.live_bytes = static_cast<int64_t>(live_bytes_);
    s.peak_live_bytes = static_cast<int64_t>(high_water_);
    s.cached_bytes = static_cast<int64_t>(cached_bytes_);
    return s;
  }

  static LargeBlockAllocator*& Instance() {
    static LargeBlockAllocator* instance = nullptr;
    return instance;
  }

 private:
  LargeBlockAllocator& Self() const { return *const_cast<LargeBlockAllocator*>(this); }

  void* AllocateLarge(size_t n) {
    const size_t size = RoundUp(n, kHugePage);
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++counters_.large_allocations;
      // Smallest cached block that fits, if it wastes at most 1/8 of itself (+ one huge page).
      auto it = free_.lower_bound(size);
      if (it != free_.end() && it->first - size <= it->first / 8 + kHugePage) {
        void* p = it->second.first;
        live_bytes_ += it->first;
        high_water_ = std::max(high_water_, live_bytes_);
        cached_bytes_ -= it->first;
        free_.erase(it);
        ++counters_.reused;
        return p;
      }
      // A miss: make room so that the process's resident memory plus the new block stays within the budget.
      live_bytes_ += size;
      high_water_ = std::max(high_water_, live_bytes_);
      EvictLocked(size);
    }
    // Map one huge page more than needed, then cut the mapping to a 2 MiB-aligned range.
    void* raw = mmap(nullptr, size + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) {
      std::lock_guard<std::mutex> lock(mu_);
      live_bytes_ -= size;
      // Out of address space or memory: the default routine reports it the way LibTorch users expect.
      return c10::alloc_cpu(n);
    }
    const uintptr_t begin = reinterpret_cast<uintptr_t>(raw);
    const uintptr_t aligned = RoundUp(begin, kHugePage);
    if (aligned > begin) munmap(raw, aligned - begin);
    const uintptr_t end = begin + size + kHugePage;
    if (end > aligned + size) munmap(reinterpret_cast<void*>(aligned + size), end - (aligned + size));
    void* p = reinterpret_cast<void*>(aligned);
#ifdef MADV_HUGEPAGE
    madvise(p, size, MADV_HUGEPAGE);
#endif
    std::lock_guard<std::mutex> lock(mu_);
    sizes_[p] = size;
    return p;
  }

  static void Delete(void* p) {
    if (p == nullptr) return;
    if (!Instance()->Release(p)) c10::free_cpu(p);
  }

  // Returns false when `p` is not a large block (then it came from c10::alloc_cpu).
  bool Release(void* p) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sizes_.find(p);
    if (it == sizes_.end()) return false;
    const size_t size = it->second;
    live_bytes_ -= size;
    cached_bytes_ += size;
    free_.emplace(size, std::make_pair(p, ++clock_));
    return true;
  }

  // The budget: the process's resident memory (sampled here, at every miss) plus a block about to be mapped
  // may not exceed the highest resident memory an allocator without a cache would have had so far (resident
  // minus cached, plus the block) plus the cache limit; cached blocks are unmapped,
  // least recently freed first, until it fits. With a limit of 0 the cache thus only holds memory the process
  // has already needed at once, and the peak stays about that of an allocator without a cache (it can exceed
  // it by what grows between two large allocations, e.g. checkpoint pages touched for the first time).
  void EvictLocked(size_t incoming) {
    size_t rss = ResidentBytes();
    // What an allocator without a cache would hold once the incoming block is in use.
    peak_rss_ = std::max(peak_rss_, rss - std::min(rss, cached_bytes_) + incoming);
    while (cached_bytes_ > 0 && rss + incoming > peak_rss_ + cache_limit_) {
      auto oldest = free_.begin();
      for (auto it = free_.begin(); it != free_.end(); ++it) {
        if (it->second.second < oldest->second.second) oldest = it;
      }
      cached_bytes_ -= oldest->first;
      rss -= std::min(rss, oldest->first);
      munmap(oldest->second.first, oldest->first);
      sizes_.erase(oldest->second.first);
      free_.erase(oldest);
      ++counters_.evicted;
    }
  }

  // Resident set size of this process from /proc/self/statm (0 where unavailable: then nothing is cached
  // beyond the limit).
  static size_t ResidentBytes() {
    FILE* f = std::fopen("/proc/self/statm", "r");
    if (f == nullptr) return 0;
    unsigned long size_pages = 0, resident_pages = 0;
    const int n = std::fscanf(f, "%lu %lu", &size_pages, &resident_pages);
    std::fclose(f);
    static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    return n == 2 ? resident_pages * page : 0;
  }

  std::mutex mu_;
  size_t cache_limit_;
  size_t live_bytes_ = 0;    // large blocks in use (counted from the request, before mmap returns)
  size_t cached_bytes_ = 0;  // freed large blocks kept for reuse
  size_t high_water_ = 0;    // most live_bytes_ ever
  size_t peak_rss_ = 0;      // highest resident memory without the cache, sampled at misses
  uint64_t clock_ = 0;       // release order, for eviction
  std::unordered_map<void*, size_t> sizes_;                  // every live or cached large block -> its size
  std::multimap<size_t, std::pair<void*, uint64_t>> free_;  // cached blocks by size -> (block, release time)
  CpuAllocatorStats counters_;  // large_allocations, reused, evicted (the byte fields are filled by Stats())
};

}  // namespace

bool InstallLargeBlockCpuAllocator(int64_t cache_bytes) {
  if (const char* env = std::getenv("WFM_CPU_ALLOCATOR")) {
    if (std::string(env) == "default") {
      return LargeBlockAllocator::Instance() != nullptr && c10::GetCPUAllocator() == LargeBlockAllocator::Instance();
    }
    if (std::string(env) != "large-block") {
      WFM_LOG(WARNING) << "ignoring unknown WFM_CPU_ALLOCATOR='" << env << "' (default or large-block)";
    }
  }
  if (const char* env = std::getenv("WFM_CPU_CACHE_MB")) {
    int64_t mb = 0;
    if (absl::SimpleAtoi(env, &mb) && mb >= 0) {
      cache_bytes = mb << 20;
    } else {
      WFM_LOG(WARNING) << "ignoring invalid WFM_CPU_CACHE_MB='" << env << "'";
    }
  }
  const auto limit = static_cast<size_t>(std::max<int64_t>(cache_bytes, 0));
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  LargeBlockAllocator*& instance = LargeBlockAllocator::Instance();
  if (instance == nullptr) {
    // Never destroyed: tensors freed during static destruction still find their allocator.
    instance = new LargeBlockAllocator(limit);
    c10::SetCPUAllocator(instance, /*priority=*/1);
  } else {
    instance->SetCacheLimit(limit);
  }
  return c10::GetCPUAllocator() == instance;
}

CpuAllocatorStats LargeBlockCpuAllocatorStats() {
  LargeBlockAllocator* instance = LargeBlockAllocator::Instance();
  return instance != nullptr ? instance->Stats() : CpuAllocatorStats{};
}

}  // namespace wfm
