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

class ProcessGroup {
 public:
  virtual ~ProcessGroup() = default;
  // "auto": MPI when launched by mpirun/srun (OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMI_RANK, PMIX_RANK or
  // MPI_LOCALNRANKS set, and WFM_NO_MPI unset or 0) and MPI support is built in, else a single process; launched
  // that way without MPI support is a FailedPrecondition error (each process would think it is alone).
  // "mpi": MPI or an error. "none"/"single": one process.
  // MPI is initialised once per process and finalised at exit.
  static absl::StatusOr<std::shared_ptr<ProcessGroup>> Create(absl::string_view backend = "auto");
  // True when this build has the MPI backend.
  static bool MpiAvailable();

  virtual std::string backend() const = 0;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  bool is_main() const { return rank() == 0; }

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
};

// Averages the gradients of `params` over ranks (no-op for a single process). Parameters without a gradient on
// this rank contribute zeros (and get a zero gradient), so every rank sends the same buffer layout.
absl::Status AllReduceGradients(ProcessGroup& group, const std::vector<at::Tensor>& params);
// Copies rank 0's parameters and buffers to every rank.
absl::Status BroadcastParameters(ProcessGroup& group, torch::nn::Module& module);

}  // namespace wfm::train
