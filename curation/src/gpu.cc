// CUDA device discovery for curation (see gpu.h): libcuda.so.1 is dlopen'ed (as FFmpeg's own nvdec/nvenc code
// does), so nothing links against CUDA. The CUDA hw device contexts used by the decoder live in decoder.cc.
#include "wfm/curation/gpu.h"

#include <dlfcn.h>

#include <mutex>

#include "absl/strings/str_cat.h"
#include "wfm/core/logging.h"
#include "wfm/core/train/distributed.h"

namespace wfm::curation {

// decoder.cc: opens (once per process and device) FFmpeg's CUDA device context on `gpu`.
absl::Status OpenCudaDevice(int gpu);

int CudaDeviceCount() {
  static std::once_flag once;
  static int count = 0;
  std::call_once(once, [] {
    void* lib = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
    if (!lib) return;  // no NVIDIA driver; the library stays loaded otherwise (FFmpeg loads it again anyway)
    using InitFn = int (*)(unsigned);
    using CountFn = int (*)(int*);
    auto init = reinterpret_cast<InitFn>(dlsym(lib, "cuInit"));
    auto get_count = reinterpret_cast<CountFn>(dlsym(lib, "cuDeviceGetCount"));
    int n = 0;
    if (init && get_count && init(0) == 0 && get_count(&n) == 0 && n > 0) count = n;
  });
  return count;
}

GpuPlan ProcessGpu() {
  GpuPlan p;
  p.local_rank = train::DetectLaunch().local_rank;
  p.num_gpus = CudaDeviceCount();
  p.gpu = train::DeviceForLocalRank(p.local_rank, p.num_gpus);
  return p;
}

absl::StatusOr<std::string> ResolveDecode(const std::string& mode, int gpu) {
  if (mode == "cpu") return std::string("cpu");
  if (mode != "auto" && mode != "nvdec") {
    return absl::InvalidArgumentError(absl::StrCat("unknown decode mode '", mode, "' (expected auto, cpu or nvdec)"));
  }
  if (gpu < 0) gpu = ProcessGpu().gpu;
  absl::Status s = gpu < 0 ? absl::FailedPreconditionError(
                                 "no CUDA device is visible (no NVIDIA driver / libcuda.so.1, or CUDA_VISIBLE_DEVICES "
                                 "hides every GPU)")
                           : OpenCudaDevice(gpu);
  if (s.ok()) return std::string("nvdec");
  if (mode == "nvdec") {
    return absl::FailedPreconditionError(absl::StrCat("--decode nvdec: ", s.message(), "; use --decode auto or cpu"));
  }
  static std::once_flag logged;
  std::call_once(logged, [&] { WFM_LOG(INFO) << "decode auto: NVDEC unavailable (" << s.message() << "), decoding on the CPU"; });
  return std::string("cpu");
}

}  // namespace wfm::curation
