// Thread count and device selection (see runtime.h).
#include "wfm/core/runtime.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <torch/version.h>

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "wfm/core/logging.h"

namespace wfm {

int DefaultNumThreads() {
  if (const char* env = std::getenv("WFM_NUM_THREADS")) {
    int n = 0;
    if (absl::SimpleAtoi(env, &n) && n > 0) return n;
    WFM_LOG(WARNING) << "ignoring invalid WFM_NUM_THREADS='" << env << "'";
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? static_cast<int>(hw) : 1;
}

namespace {
// OpenBLAS (DYNAMIC_ARCH builds, e.g. Debian's) picks its kernels from cpuid when it is loaded; under some
// hypervisors it does not recognise the CPU and falls back to the generic SSE3 "Prescott" kernels, which run
// GEMM 3-4x slower than the AVX2/AVX-512 ones (measured here: 17 vs 77 GFLOP per CPU-second). When that
// happened and the user did not choose (OPENBLAS_CORETYPE), re-select the kernels the CPU supports.
void SelectBlasKernels() {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return;
  using NameFn = char* (*)();
  using VoidFn = void (*)();
  auto corename = reinterpret_cast<NameFn>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  auto quit = reinterpret_cast<VoidFn>(dlsym(RTLD_DEFAULT, "gotoblas_dynamic_quit"));
  auto init = reinterpret_cast<VoidFn>(dlsym(RTLD_DEFAULT, "gotoblas_dynamic_init"));
  if (corename == nullptr || quit == nullptr || init == nullptr) return;  // not OpenBLAS, or not DYNAMIC_ARCH
  const std::string before = corename() ? corename() : "";
  if (before != "Prescott" && before != "Core2" && before != "Nehalem") return;
  const char* target = nullptr;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    target = "SkylakeX";
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    target = "Haswell";
#endif
  if (target == nullptr) return;
  setenv("OPENBLAS_CORETYPE", target, /*overwrite=*/0);
  quit();
  init();
  WFM_LOG(DEBUG) << "OpenBLAS kernels: " << before << " -> " << (corename() ? corename() : "?");
}
}  // namespace

int InitThreads(int num_threads) {
  if (num_threads <= 0) num_threads = DefaultNumThreads();
  at::set_num_threads(num_threads);
  static std::once_flag once;
  std::call_once(once, [&] {
    SelectBlasKernels();
    try {
      at::set_num_interop_threads(std::max(1, num_threads));
    } catch (...) {
      // Already started by an earlier parallel call: keep the existing pool.
    }
  });
  return at::get_num_threads();
}

bool CudaAvailable() { return at::hasCUDA() && at::globalContext().hasCUDA(); }

absl::StatusOr<c10::Device> ParseDevice(absl::string_view text) {
  if (text.empty() || text == "auto") {
    return CudaAvailable() ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  }
  c10::optional<c10::Device> device;
  try {
    device = c10::Device(std::string(text));
  } catch (...) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown device '", text, "' (expected cpu, cuda, cuda:N or auto)"));
  }
  if (device->is_cuda() && !CudaAvailable()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "device '", text, "' requested but ",
        at::hasCUDA() ? "no CUDA GPU is visible" : "this LibTorch build has no CUDA support"));
  }
  if (!device->is_cpu() && !device->is_cuda()) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported device '", text, "' (cpu or cuda)"));
  }
  return *device;
}

std::string RuntimeSummary() {
  return absl::StrCat("torch ", TORCH_VERSION_MAJOR, ".", TORCH_VERSION_MINOR, ".", TORCH_VERSION_PATCH,
                      ", threads ", at::get_num_threads(), ", cuda ", CudaAvailable() ? "yes" : "no");
}

}  // namespace wfm
