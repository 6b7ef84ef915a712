// Large-block CPU allocator (see runtime.h, InstallLargeBlockCpuAllocator).
//
// Why: serving a full-width tokenizer creates and frees activations of tens to hundreds of MB per layer. glibc
// maps every block above its mmap threshold afresh and unmaps it on free, so each new activation is paid for
// again with one page fault per 4 KiB page (measured: ~4 s of system time per 17x256x256 CV8x8x8
// reconstruction, a third of the CPU). Here blocks of >= 1 MiB are mapped 2 MiB-aligned with MADV_HUGEPAGE
// (one fault per 2 MiB where the kernel has transparent huge pages in `madvise` or `always` mode), and freed
// blocks are kept in a bounded cache and handed out again to a request of (almost) the same size, which skips
// the faults and the kernel's zeroing altogether. Small blocks go to c10's default CPU routines unchanged.
// Peak resident memory is bounded by the live tensors plus the cache limit.
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <sys/mman.h>

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
    TrimLocked();
  }

  CpuAllocatorStats Stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
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
      ++stats_.large_allocations;
      // Smallest cached block that fits, if it wastes at most 1/8 of itself (+ one huge page).
      auto it = free_.lower_bound(size);
      if (it != free_.end() && it->first - size <= it->first / 8 + kHugePage) {
        void* p = it->second;
        cached_bytes_ -= it->first;
        free_.erase(it);
        ++stats_.reused;
        stats_.cached_bytes = cached_bytes_;
        return p;
      }
    }
    // Map one huge page more than needed, then cut the mapping to a 2 MiB-aligned range.
    void* raw = mmap(nullptr, size + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) {
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
    mapped_bytes_ += size;
    stats_.mapped_bytes = mapped_bytes_;
    if (mapped_bytes_ > stats_.peak_mapped_bytes) stats_.peak_mapped_bytes = mapped_bytes_;
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
    if (size <= cache_limit_) {
      free_.emplace(size, p);
      cached_bytes_ += size;
      TrimLocked();
    } else {
      UnmapLocked(p, size);
    }
    stats_.cached_bytes = cached_bytes_;
    return true;
  }

  // Drops the largest cached blocks until the cache fits its limit.
  void TrimLocked() {
    while (cached_bytes_ > cache_limit_ && !free_.empty()) {
      auto last = std::prev(free_.end());
      cached_bytes_ -= last->first;
      UnmapLocked(last->second, last->first);
      free_.erase(last);
    }
    stats_.cached_bytes = cached_bytes_;
  }

  void UnmapLocked(void* p, size_t size) {
    munmap(p, size);
    sizes_.erase(p);
    mapped_bytes_ -= size;
    stats_.mapped_bytes = mapped_bytes_;
  }

  std::mutex mu_;
  size_t cache_limit_;
  size_t cached_bytes_ = 0;
  size_t mapped_bytes_ = 0;
  std::unordered_map<void*, size_t> sizes_;  // every live or cached large block -> its mapped size
  std::multimap<size_t, void*> free_;        // cached blocks by size
  CpuAllocatorStats stats_;
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
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  LargeBlockAllocator*& instance = LargeBlockAllocator::Instance();
  if (instance == nullptr) {
    // Never destroyed: tensors freed during static destruction still find their allocator.
    instance = new LargeBlockAllocator(static_cast<size_t>(std::max<int64_t>(cache_bytes, 0)));
    c10::SetCPUAllocator(instance, /*priority=*/1);
  } else {
    instance->SetCacheLimit(static_cast<size_t>(std::max<int64_t>(cache_bytes, 0)));
  }
  return c10::GetCPUAllocator() == instance;
}

CpuAllocatorStats LargeBlockCpuAllocatorStats() {
  LargeBlockAllocator* instance = LargeBlockAllocator::Instance();
  return instance != nullptr ? instance->Stats() : CpuAllocatorStats{};
}

}  // namespace wfm
