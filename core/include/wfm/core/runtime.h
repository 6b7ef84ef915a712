// Process-wide runtime set-up: intra-op thread count from the hardware (WFM_NUM_THREADS overrides) and device
// selection (CPU by default; `cuda` when LibTorch was built with CUDA and a GPU is visible).
#pragma once

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

// One line describing the runtime: torch version, threads, BLAS, CUDA devices.
std::string RuntimeSummary();

}  // namespace wfm
