// The large-block CPU allocator (runtime.h): tensors it serves behave like any other, large blocks are
// 2 MiB-aligned, freed blocks are reused, and cached blocks are unmapped before resident memory would pass its
// peak plus the cache limit. The allocator is process-wide and permanent, so every test installs it
// (idempotent) and sets its own limit.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "wfm/core/runtime.h"

namespace wfm {
namespace {

constexpr int64_t kMiB = int64_t{1} << 20;

void Install(int64_t cache_bytes) {
  unsetenv("WFM_CPU_ALLOCATOR");
  unsetenv("WFM_CPU_CACHE_MB");
  ASSERT_TRUE(InstallLargeBlockCpuAllocator(cache_bytes));
}

TEST(CpuAllocatorTest, LargeTensorsAreAlignedAndComputeCorrectly) {
  Install(0);
  const CpuAllocatorStats before = LargeBlockCpuAllocatorStats();
  at::Tensor a = at::arange(3 * kMiB, at::kFloat);  // 12 MiB: large path
  at::Tensor b = at::ones({3 * kMiB}, at::kFloat);
  at::Tensor c = a + b;
  const CpuAllocatorStats during = LargeBlockCpuAllocatorStats();
  EXPECT_GE(during.large_allocations - before.large_allocations, 3);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(c.data_ptr()) % (2 * kMiB), 0u);
  EXPECT_GE(during.live_bytes - before.live_bytes, 3 * 12 * kMiB);
  EXPECT_EQ(c[0].item<float>(), 1.0f);
  EXPECT_EQ(c[3 * kMiB - 1].item<float>(), static_cast<float>(3 * kMiB));
  // Growing a tensor in place reallocates through the same allocator.
  c.resize_({4 * kMiB});
  c.fill_(2.0f);
  EXPECT_EQ(c.sum().item<double>(), 8.0 * kMiB);
  // Small tensors keep working (served by c10's routines).
  at::Tensor s = at::full({16}, 3.0f);
  EXPECT_EQ(s.sum().item<float>(), 48.0f);
}

TEST(CpuAllocatorTest, FreedBlocksAreReusedForTheSameSize) {
  Install(0);
  void* first = nullptr;
  {
    at::Tensor t = at::empty({5 * kMiB}, at::kFloat);  // 20 MiB
    first = t.data_ptr();
  }
  const CpuAllocatorStats freed = LargeBlockCpuAllocatorStats();
  EXPECT_GE(freed.cached_bytes, 20 * kMiB);
  {
    at::Tensor t = at::empty({5 * kMiB - 100}, at::kFloat);  // same size class: the same block
    EXPECT_EQ(t.data_ptr(), first);
    EXPECT_EQ(LargeBlockCpuAllocatorStats().reused, freed.reused + 1);
  }
  {
    // A much smaller request does not take the cached 20 MiB block.
    at::Tensor u = at::empty({kMiB}, at::kFloat);
    EXPECT_NE(u.data_ptr(), first);
  }
}

// Resident memory now (bytes), as the allocator sees it.
int64_t Rss() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  unsigned long size = 0, resident = 0;
  EXPECT_EQ(std::fscanf(f, "%lu %lu", &size, &resident), 2);
  std::fclose(f);
  return static_cast<int64_t>(resident) * sysconf(_SC_PAGESIZE);
}

TEST(CpuAllocatorTest, CacheDoesNotRaiseThePeak) {
  Install(0);
  // A block bigger than anything before sets the peak; freed, it stays cached (resident).
  const int64_t big = 512 * kMiB;
  { at::Tensor t = at::ones({big / 4}, at::kFloat); }
  const CpuAllocatorStats cached = LargeBlockCpuAllocatorStats();
  EXPECT_GE(cached.cached_bytes, big);
  // A different, smaller size fits under the peak next to the cached block? 400 MiB does not: the cached block
  // is unmapped first, so resident memory stays below the peak plus a little.
  {
    at::Tensor t = at::ones({400 * kMiB / 4}, at::kFloat);
    EXPECT_GT(LargeBlockCpuAllocatorStats().evicted, cached.evicted);
    EXPECT_LT(Rss(), big + 400 * kMiB);
  }
  // With an extra limit, the cached block is kept next to a new one.
  Install(1024 * kMiB);
  { at::Tensor t = at::ones({big / 4}, at::kFloat); }  // reuses the 512 MiB block if cached, or maps it
  const CpuAllocatorStats before = LargeBlockCpuAllocatorStats();
  {
    at::Tensor t = at::ones({300 * kMiB / 4}, at::kFloat);
    EXPECT_EQ(LargeBlockCpuAllocatorStats().evicted, before.evicted);
    EXPECT_GE(LargeBlockCpuAllocatorStats().cached_bytes, big);
  }
  // Lowering the limit evicts what is above the peak at once.
  Install(0);
  EXPECT_GT(LargeBlockCpuAllocatorStats().evicted, before.evicted);
}

TEST(CpuAllocatorTest, EnvironmentSetsTheCacheLimit) {
  Install(0);
  setenv("WFM_CPU_CACHE_MB", "32", 1);
  ASSERT_TRUE(InstallLargeBlockCpuAllocator(0));
  { at::Tensor t = at::empty({4 * kMiB}, at::kFloat); }
  EXPECT_GE(LargeBlockCpuAllocatorStats().cached_bytes, 16 * kMiB);
  unsetenv("WFM_CPU_CACHE_MB");
  Install(0);
}

}  // namespace
}  // namespace wfm
