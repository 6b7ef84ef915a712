// Process-wide runtime set-up: intra-op thread count from the hardware (WFM_NUM_THREADS overrides) and device
// selection (CPU by default; `cuda` when LibTorch was built with CUDA and a GPU is visible).
#pragma once

#include <cstdint>
#include <string>

#include <c10/core/Device.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace wfm {

// Number of threads to use: WFM_NUM_THREADS if set and valid, else the hardware concurrency (>= 1).
int DefaultNumThreads();

// Sets LibTorch's intra-op (and inter-op, once) thread counts. `num_threads` <= 0 means DefaultNumThreads().
// Safe to call more than once; returns the count in effect.
int InitThreads(int num_threads = 0);

// True when LibTorch has CUDA support compiled in and at least one GPU is visible.
bool CudaAvailable();

// Parses "cpu", "cuda", "cuda:N" or "auto" (cuda if available, else cpu). A CUDA device without CUDA gives a
// FailedPrecondition error that says why.
absl::StatusOr<c10::Device> ParseDevice(absl::string_view text);

// CPU memory for large activations. LibTorch's default CPU allocator gets every block above glibc's mmap
// threshold from the kernel and returns it on free, so serving a big network pays a page fault per 4 KiB of
// every new activation (a third of the CPU time of a full-width tokenizer reconstruction). The large-block
// allocator maps blocks of >= 1 MiB 2 MiB-aligned with transparent huge pages and keeps freed blocks for reuse
// while the process's resident memory stays within its peak so far plus `cache_bytes` (so the default, 0,
// reuses memory without raising the peak); smaller blocks use c10's routines unchanged. Process-wide and permanent once
// installed (a second call only changes the cache limit); `wfm` (the tool) installs it at start-up.
// WFM_CPU_ALLOCATOR=default disables it, WFM_CPU_CACHE_MB overrides `cache_bytes`. Returns true when it is the
// allocator in effect.
bool InstallLargeBlockCpuAllocator(int64_t cache_bytes = 0);

struct CpuAllocatorStats {
  int64_t large_allocations = 0;  // requests served by the large-block path
  int64_t reused = 0;             // ... of which came from the cache
  int64_t live_bytes = 0;         // large blocks in use
  int64_t peak_live_bytes = 0;    // high-water mark of live_bytes
  int64_t cached_bytes = 0;       // freed blocks kept for reuse
  int64_t evicted = 0;            // cached blocks unmapped to keep resident memory within the budget
};
// All zero when the large-block allocator was never installed.
CpuAllocatorStats LargeBlockCpuAllocatorStats();

// One line describing the runtime: torch version, threads, BLAS, CUDA devices.
std::string RuntimeSummary();

}  // namespace wfm
