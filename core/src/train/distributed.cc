// Process groups for data-parallel training (see train/distributed.h): the single-process group, backend
// selection, and the gradient / parameter helpers. The MPI backend lives in distributed_mpi.cc.
#include "wfm/core/train/distributed.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "wfm/core/status.h"

namespace wfm::train {
namespace internal {
// Defined in distributed_mpi.cc (an error when MPI support is not built).
absl::StatusOr<std::shared_ptr<ProcessGroup>> CreateMpiGroup();
bool MpiBuilt();
}  // namespace internal

namespace {

class SingleProcessGroup : public ProcessGroup {
 public:
  std::string backend() const override { return "single"; }
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  absl::Status AllReduceSum(const std::vector<at::Tensor>&) override { return absl::OkStatus(); }
  absl::Status Broadcast(const std::vector<at::Tensor>&, int) override { return absl::OkStatus(); }
  absl::Status Barrier() override { return absl::OkStatus(); }
};

// Started by an MPI launcher (mpirun / mpiexec / srun with PMI or PMIx). WFM_NO_MPI=1 opts out: every process
// then runs on its own.
bool LaunchedByMpi() {
  if (const char* off = std::getenv("WFM_NO_MPI"); off && *off && std::string(off) != "0") return false;
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(name)) return true;
  return false;
}

}  // namespace

bool ProcessGroup::MpiAvailable() { return internal::MpiBuilt(); }

absl::StatusOr<std::shared_ptr<ProcessGroup>> ProcessGroup::Create(absl::string_view backend) {
  if (backend == "none" || backend == "single") return std::shared_ptr<ProcessGroup>(new SingleProcessGroup());
  if (backend == "mpi") return internal::CreateMpiGroup();
  if (backend == "auto") {
    if (LaunchedByMpi()) {
      if (!internal::MpiBuilt())
        return absl::FailedPreconditionError(
            "launched under mpirun/srun, but this wfm was built without MPI (install libopenmpi-dev and "
            "rebuild); to run every process on its own instead, pass --distributed none or set WFM_NO_MPI=1");
      return internal::CreateMpiGroup();
    }
    return std::shared_ptr<ProcessGroup>(new SingleProcessGroup());
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown distributed backend '", backend, "' (expected auto, mpi or none)"));
}

absl::Status ProcessGroup::AllReduceMean(const std::vector<at::Tensor>& tensors) {
  if (world_size() == 1) return absl::OkStatus();
  WFM_RETURN_IF_ERROR(AllReduceSum(tensors));
  at::NoGradGuard no_grad;
  for (const auto& t : tensors) t.div_(world_size());
  return absl::OkStatus();
}

absl::StatusOr<double> ProcessGroup::AllReduceScalar(double value) {
  if (world_size() == 1) return value;
  at::Tensor t = at::scalar_tensor(value, at::kDouble);
  WFM_RETURN_IF_ERROR(AllReduceSum({t}));
  return t.item<double>();
}

absl::StatusOr<std::string> ProcessGroup::BroadcastString(const std::string& value, int root) {
  if (world_size() == 1) return value;
  at::Tensor size = at::full({1}, static_cast<int64_t>(value.size()), at::kLong);
  WFM_RETURN_IF_ERROR(Broadcast({size}, root));
  at::Tensor bytes = at::empty({size.item<int64_t>()}, at::kByte);  // [n]
  if (rank() == root && !value.empty()) std::memcpy(bytes.data_ptr(), value.data(), value.size());
  WFM_RETURN_IF_ERROR(Broadcast({bytes}, root));
  return std::string(static_cast<const char*>(bytes.data_ptr()), static_cast<size_t>(bytes.numel()));
}

absl::Status AllReduceGradients(ProcessGroup& group, const std::vector<at::Tensor>& params) {
  if (group.world_size() == 1) return absl::OkStatus();
  std::vector<at::Tensor> grads;
  grads.reserve(params.size());
  for (const auto& p : params) {
    if (!p.grad().defined()) {
      p.mutable_grad() = at::zeros_like(p);
    }
    grads.push_back(p.grad());
  }
  return group.AllReduceMean(grads);
}

absl::Status BroadcastParameters(ProcessGroup& group, torch::nn::Module& module) {
  if (group.world_size() == 1) return absl::OkStatus();
  std::vector<at::Tensor> tensors;
  for (const auto& item : module.named_parameters(true)) tensors.push_back(item.value().detach());
  for (const auto& item : module.named_buffers(true)) tensors.push_back(item.value().detach());
  return group.Broadcast(tensors, 0);
}

}  // namespace wfm::train
