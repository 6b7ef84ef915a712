// The large-block CPU allocator (runtime.h): tensors it serves behave like any other, large blocks are
// 2 MiB-aligned, freed blocks are reused only within the cache limit and returned to the system beyond it.
// The allocator is process-wide and permanent, so every test installs it (idempotent) and sets its own limit.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>

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
  EXPECT_GE(during.mapped_bytes - before.mapped_bytes, 3 * 12 * kMiB);
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

TEST(CpuAllocatorTest, WithoutCacheFreedBlocksGoBackToTheSystem) {
  Install(0);
  const int64_t mapped = LargeBlockCpuAllocatorStats().mapped_bytes;
  {
    at::Tensor t = at::zeros({8 * kMiB}, at::kFloat);  // 32 MiB
    EXPECT_GE(LargeBlockCpuAllocatorStats().mapped_bytes, mapped + 32 * kMiB);
  }
  EXPECT_EQ(LargeBlockCpuAllocatorStats().mapped_bytes, mapped);
  EXPECT_EQ(LargeBlockCpuAllocatorStats().cached_bytes, 0);
}

TEST(CpuAllocatorTest, CacheReusesBlocksWithinItsLimit) {
  Install(64 * kMiB);
  void* first = nullptr;
  {
    at::Tensor t = at::empty({5 * kMiB}, at::kFloat);  // 20 MiB
    first = t.data_ptr();
  }
  EXPECT_EQ(LargeBlockCpuAllocatorStats().cached_bytes, 20 * kMiB);
  const int64_t reused = LargeBlockCpuAllocatorStats().reused;
  {
    at::Tensor t = at::empty({5 * kMiB - 100}, at::kFloat);  // same size class
    EXPECT_EQ(t.data_ptr(), first);
    EXPECT_EQ(LargeBlockCpuAllocatorStats().reused, reused + 1);
    EXPECT_EQ(LargeBlockCpuAllocatorStats().cached_bytes, 0);
  }
  {
    // A much smaller request does not take the cached 20 MiB block.
    at::Tensor u = at::empty({kMiB}, at::kFloat);
    EXPECT_NE(u.data_ptr(), first);
    EXPECT_EQ(LargeBlockCpuAllocatorStats().cached_bytes, 20 * kMiB);
  }
  // Beyond the limit: a 100 MiB block is unmapped on free, the cache never holds more than 64 MiB.
  { at::Tensor big = at::empty({25 * kMiB}, at::kFloat); }
  EXPECT_LE(LargeBlockCpuAllocatorStats().cached_bytes, 64 * kMiB);
  // Lowering the limit trims the cache at once.
  Install(0);
  EXPECT_EQ(LargeBlockCpuAllocatorStats().cached_bytes, 0);
}

TEST(CpuAllocatorTest, EnvironmentSetsTheCacheLimit) {
  Install(0);
  setenv("WFM_CPU_CACHE_MB", "32", 1);
  ASSERT_TRUE(InstallLargeBlockCpuAllocator(0));
  { at::Tensor t = at::empty({4 * kMiB}, at::kFloat); }  // 16 MiB, cached under the 32 MiB from the env
  EXPECT_EQ(LargeBlockCpuAllocatorStats().cached_bytes, 16 * kMiB);
  unsetenv("WFM_CPU_CACHE_MB");
  Install(0);
}

}  // namespace
}  // namespace wfm
