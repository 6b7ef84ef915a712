// Process groups for data-parallel training (see train/distributed.h): the single-process group, backend
// selection, and the gradient / parameter helpers. The MPI backend lives in distributed_mpi.cc.
#include "wfm/core/train/distributed.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <algorithm>
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

// Started by an MPI launcher (mpirun / mpiexec / srun with PMI or PMIx, or an srun step of several tasks).
// WFM_NO_MPI=1 opts out: every process then runs on its own.
bool LaunchedByMpi(const LaunchInfo& launch) {
  if (const char* off = std::getenv("WFM_NO_MPI"); off && *off && std::string(off) != "0") return false;
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(name)) return true;
  return launch.launcher == "slurm" && launch.world_size > 1;
}

// A non-negative integer variable, or -1 when unset or not a number.
int EnvInt(const EnvLookup& env, const char* name) {
  const char* v = env(name);
  if (!v || !*v) return -1;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  if (*end != '\0' || x < 0 || x > (1L << 30)) return -1;
  return static_cast<int>(x);
}

}  // namespace

LaunchInfo DetectLaunch(const EnvLookup& lookup) {
  const EnvLookup env = lookup ? lookup : EnvLookup([](const char* name) -> const char* { return std::getenv(name); });
  LaunchInfo info;
  int local = -1;  // -1: the launcher did not say
  auto set = [&](const char* launcher, int rank, int size, int local_rank) {
    info.launcher = launcher;
    info.rank = std::max(rank, 0);
    info.world_size = std::max({size, info.rank + 1, 1});
    local = local_rank;
  };
  const bool srun_step = (env("SLURM_STEP_ID") || env("SLURM_STEPID")) && EnvInt(env, "SLURM_PROCID") >= 0;
  int slurm_size = EnvInt(env, "SLURM_STEP_NUM_TASKS");
  if (slurm_size < 0) slurm_size = EnvInt(env, "SLURM_NTASKS");
  if (EnvInt(env, "OMPI_COMM_WORLD_SIZE") >= 0) {
    set("openmpi", EnvInt(env, "OMPI_COMM_WORLD_RANK"), EnvInt(env, "OMPI_COMM_WORLD_SIZE"),
        EnvInt(env, "OMPI_COMM_WORLD_LOCAL_RANK"));
  } else if (srun_step) {
    set("slurm", EnvInt(env, "SLURM_PROCID"), slurm_size, EnvInt(env, "SLURM_LOCALID"));
  } else if (EnvInt(env, "PMI_RANK") >= 0 || EnvInt(env, "PMI_SIZE") >= 0) {
    set("pmi", EnvInt(env, "PMI_RANK"), EnvInt(env, "PMI_SIZE"), EnvInt(env, "MPI_LOCALRANKID"));
  } else if (EnvInt(env, "PMIX_RANK") >= 0) {
    set("pmix", EnvInt(env, "PMIX_RANK"), -1, -1);
  }
  // Launchers that only say the local rank: Intel MPI / MPICH (MPI_LOCALRANKID), torchrun-style (LOCAL_RANK).
  for (const char* name : {"MPI_LOCALRANKID", "LOCAL_RANK"})
    if (local < 0) local = EnvInt(env, name);
  info.local_rank = std::max(local, 0);
  return info;
}

int DeviceForLocalRank(int local_rank, int num_devices) {
  if (num_devices <= 0) return -1;
  return std::max(local_rank, 0) % num_devices;
}

bool ProcessGroup::MpiAvailable() { return internal::MpiBuilt(); }

absl::StatusOr<std::shared_ptr<ProcessGroup>> ProcessGroup::Create(absl::string_view backend) {
  const LaunchInfo launch = DetectLaunch();
  std::shared_ptr<ProcessGroup> group;
  if (backend == "none" || backend == "single") {
    group.reset(new SingleProcessGroup());
  } else if (backend == "mpi") {
    WFM_ASSIGN_OR_RETURN(group, internal::CreateMpiGroup());
  } else if (backend == "auto") {
    if (LaunchedByMpi(launch)) {
      if (!internal::MpiBuilt())
        return absl::FailedPreconditionError(
            "launched under mpirun/srun, but this wfm was built without MPI (install libopenmpi-dev and "
            "rebuild); to run every process on its own instead, pass --distributed none or set WFM_NO_MPI=1");
      WFM_ASSIGN_OR_RETURN(group, internal::CreateMpiGroup());
      if (launch.launcher == "slurm" && group->world_size() != launch.world_size) {
        // srun without a PMI plugin OpenMPI can use: every task initialises MPI as a singleton.
        return absl::FailedPreconditionError(absl::StrCat(
            "the launcher (", launch.launcher, ") started ", launch.world_size, " tasks but MPI sees a world of ",
            group->world_size(), ": under Slurm launch with `srun --mpi=pmix` (see `srun --mpi=list`) or use "
            "mpirun inside the allocation"));
      }
    } else {
      group.reset(new SingleProcessGroup());
    }
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown distributed backend '", backend, "' (expected auto, mpi or none)"));
  }
  group->local_rank_ = launch.local_rank;
  return group;
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
