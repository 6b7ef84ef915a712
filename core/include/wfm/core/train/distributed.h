// Data-parallel training across processes: a small process-group interface (rank, world size, all-reduce,
// broadcast, barrier) with an MPI backend (OpenMPI; built when CMake finds MPI) and a single-process fallback.
//
// Launch with `mpirun -np N wfm ... train ...`: each rank reads its own share of the data, gradients are averaged
// with one all-reduce per step (parameters flattened into one buffer per dtype), so N ranks with batch B equal one
// process with batch N*B. Rank 0 alone writes logs, samples and checkpoints.
//
//   WFM_ASSIGN_OR_RETURN(auto pg, train::ProcessGroup::Create("auto"));   // MPI under mpirun, else single
//   WFM_RETURN_IF_ERROR(train::BroadcastParameters(*pg, *model));          // same initial weights everywhere
//   ...; loss.backward();
//   WFM_RETURN_IF_ERROR(train::AllReduceGradients(*pg, opt.parameters()));
//
// Tensors on a GPU are staged through host memory (no CUDA-aware MPI assumed).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace torch::nn {
class Module;
}

namespace wfm::train {

// How this process was started, from the launcher's environment: global rank / size and the rank among the
// processes on this node (what picks a GPU). Recognised, first match wins:
//   "openmpi"  mpirun / mpiexec of OpenMPI: OMPI_COMM_WORLD_RANK / _SIZE / _LOCAL_RANK
//   "slurm"    a Slurm job step started by srun: SLURM_STEP_ID (or SLURM_STEPID) with SLURM_PROCID,
//              SLURM_STEP_NUM_TASKS (or SLURM_NTASKS), SLURM_LOCALID. An sbatch script itself (SLURM_PROCID=0
//              but no step id) is not a launch: its single process is not one of N tasks.
//   "pmi"      MPICH / Intel MPI (Hydra): PMI_RANK / PMI_SIZE, MPI_LOCALRANKID
//   "pmix"     a PMIx launcher: PMIX_RANK (no size in the environment: world_size is only rank + 1)
//   ""         started directly; the local rank may still come from LOCAL_RANK (torchrun-style launchers).
struct LaunchInfo {
  std::string launcher;
  int rank = 0, world_size = 1, local_rank = 0;
  bool launched() const { return !launcher.empty(); }
};
// `env` looks up a variable (nullptr result = unset); the default reads the process environment.
using EnvLookup = std::function<const char*(const char*)>;
LaunchInfo DetectLaunch(const EnvLookup& env = nullptr);
// The one rank -> GPU rule of the library: the processes of a node take its GPUs round-robin by local rank
// (local_rank % num_devices), so `mpirun -np 8` / `srun --ntasks-per-node=8` on an 8-GPU node gives each rank its
// own GPU, and a launcher that already narrowed CUDA_VISIBLE_DEVICES to one GPU per task gives device 0.
// -1 when there are no devices.
int DeviceForLocalRank(int local_rank, int num_devices);

class ProcessGroup {
 public:
  virtual ~ProcessGroup() = default;
  // "auto": MPI when launched by mpirun/srun (OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMI_RANK, PMIX_RANK or
  // MPI_LOCALNRANKS set, or an srun step of more than one task; and WFM_NO_MPI unset or 0) and MPI support is
  // built in, else a single process; launched that way without MPI support is a FailedPrecondition error (each
  // process would think it is alone), and so is an MPI world other than srun's task count (srun without a PMI
  // plugin MPI can use: every task would be a singleton; launch with `srun --mpi=pmix`).
  // "mpi": MPI or an error. "none"/"single": one process.
  // MPI is initialised once per process and finalised at exit.
  static absl::StatusOr<std::shared_ptr<ProcessGroup>> Create(absl::string_view backend = "auto");
  // True when this build has the MPI backend.
  static bool MpiAvailable();

  virtual std::string backend() const = 0;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  bool is_main() const { return rank() == 0; }
  // This process's rank among those on its node (DetectLaunch().local_rank; 0 for a single process).
  int local_rank() const { return local_rank_; }

  // In-place sum / mean over ranks. All ranks must pass tensors of the same shapes and dtypes in the same order.
  virtual absl::Status AllReduceSum(const std::vector<at::Tensor>& tensors) = 0;
  absl::Status AllReduceMean(const std::vector<at::Tensor>& tensors);
  // In place: every rank receives root's values.
  virtual absl::Status Broadcast(const std::vector<at::Tensor>& tensors, int root = 0) = 0;
  virtual absl::Status Barrier() = 0;
  // Sum of one number over ranks (losses, counts).
  absl::StatusOr<double> AllReduceScalar(double value);
  // Rank `root`'s string on every rank (e.g. a JSON document decided by one rank).
  absl::StatusOr<std::string> BroadcastString(const std::string& value, int root = 0);

 protected:
  int local_rank_ = 0;
};

// Averages the gradients of `params` over ranks (no-op for a single process). Parameters without a gradient on
// this rank contribute zeros (and get a zero gradient), so every rank sends the same buffer layout.
absl::Status AllReduceGradients(ProcessGroup& group, const std::vector<at::Tensor>& params);
// Copies rank 0's parameters and buffers to every rank.
absl::Status BroadcastParameters(ProcessGroup& group, torch::nn::Module& module);

}  // namespace wfm::train
