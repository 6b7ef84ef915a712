// GPU use in curation: which GPU this process decodes on (NVDEC, through FFmpeg's cuda hwaccel) and encodes on
// (h264_nvenc), found without linking CUDA: the driver library is opened at run time, so the same wfm binary
// runs on machines with and without NVIDIA GPUs. The rank -> GPU rule itself is core's train::DeviceForLocalRank
// (local rank from train::DetectLaunch: mpirun, srun, MPICH, LOCAL_RANK), applied here to the visible devices.
//
//   GpuPlan plan = ProcessGpu();               // {local_rank 3, num_gpus 8, gpu 3} on rank 3 of an 8-GPU node
//   WFM_ASSIGN_OR_RETURN(std::string used, ResolveDecode("auto", plan.gpu));   // "nvdec" or "cpu"
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace wfm::curation {

// CUDA devices visible to this process (CUDA_VISIBLE_DEVICES applies): cuDeviceGetCount of libcuda.so.1 loaded
// at run time; 0 without an NVIDIA driver or device. Probed once per process.
int CudaDeviceCount();

struct GpuPlan {
  int local_rank = 0;  // this process's rank on its node
  int num_gpus = 0;    // CudaDeviceCount()
  int gpu = -1;        // train::DeviceForLocalRank(local_rank, num_gpus); -1: none
};
// The GPU of this process (launcher environment + visible devices).
GpuPlan ProcessGpu();

// Decode modes: "cpu" (FFmpeg's software decoders), "nvdec" (NVIDIA hardware decode; an error when no CUDA device
// can be opened) and "auto" (NVDEC when a CUDA device opens, else the CPU). Returns what `mode` amounts to on
// `gpu` (-1: ProcessGpu().gpu): "nvdec" or "cpu"; InvalidArgument for an unknown mode, FailedPrecondition when
// "nvdec" is asked for and unavailable. "auto" falling back to the CPU is logged once per process.
absl::StatusOr<std::string> ResolveDecode(const std::string& mode, int gpu = -1);

}  // namespace wfm::curation
