// The MPI process group (OpenMPI): flattened per-dtype buffers, MPI_Allreduce / MPI_Bcast in place.
// Compiled with WFM_HAVE_MPI=1 (and mpi.h on the include path) only when CMake found MPI; otherwise the
// factory reports that MPI support is not built.
#include <ATen/ATen.h>

#include <climits>
#include <cstdlib>
#include <map>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "wfm/core/logging.h"
#include "wfm/core/train/distributed.h"

#ifdef WFM_HAVE_MPI
#include <mpi.h>
#endif

namespace wfm::train::internal {

#ifndef WFM_HAVE_MPI

bool MpiBuilt() { return false; }
absl::StatusOr<std::shared_ptr<ProcessGroup>> CreateMpiGroup() {
  return absl::UnimplementedError("this wfm was built without MPI support (install libopenmpi-dev and rebuild)");
}

#else

namespace {

absl::Status MpiStatus(int code, const char* what) {
  if (code == MPI_SUCCESS) return absl::OkStatus();
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  return absl::InternalError(absl::StrCat(what, ": ", std::string(text, len)));
}

// Reduction dtype on the wire: float32/64 and int32/64 as is; 16-bit floats are widened to float32.
at::ScalarType WireType(at::ScalarType t) {
  if (t == at::kHalf || t == at::kBFloat16) return at::kFloat;
  return t;
}

absl::StatusOr<MPI_Datatype> MpiType(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return MPI_FLOAT;
    case at::kDouble: return MPI_DOUBLE;
    case at::kInt: return MPI_INT32_T;
    case at::kLong: return MPI_INT64_T;
    case at::kByte: return MPI_UINT8_T;
    default:
      return absl::UnimplementedError(absl::StrCat("MPI: unsupported dtype ", c10::toString(t)));
  }
}

class MpiGroup : public ProcessGroup {
 public:
  MpiGroup(int rank, int size) : rank_(rank), size_(size) {}
  std::string backend() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int world_size() const override { return size_; }

  absl::Status AllReduceSum(const std::vector<at::Tensor>& tensors) override {
    return ForEachBucket(tensors, [](void* data, int64_t count, MPI_Datatype type) {
      return MpiStatus(MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(count), type, MPI_SUM, MPI_COMM_WORLD),
                       "MPI_Allreduce");
    });
  }

  absl::Status Broadcast(const std::vector<at::Tensor>& tensors, int root) override {
    return ForEachBucket(tensors, [root](void* data, int64_t count, MPI_Datatype type) {
      return MpiStatus(MPI_Bcast(data, static_cast<int>(count), type, root, MPI_COMM_WORLD), "MPI_Bcast");
    });
  }

  absl::Status Barrier() override { return MpiStatus(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }

 private:
  // Groups the tensors by wire dtype, flattens each group into one contiguous CPU buffer, runs `op` on it in
  // chunks of < 2^31 elements, and copies the results back.
  template <typename Op>
  absl::Status ForEachBucket(const std::vector<at::Tensor>& tensors, Op op) {
    at::NoGradGuard no_grad;
    std::map<at::ScalarType, std::vector<at::Tensor>> buckets;
    for (const auto& t : tensors)
      if (t.defined() && t.numel() > 0) buckets[WireType(t.scalar_type())].push_back(t);
    for (auto& [wire, members] : buckets) {
      auto type = MpiType(wire);
      if (!type.ok()) return type.status();
      std::vector<at::Tensor> flat;
      flat.reserve(members.size());
      for (const auto& t : members) flat.push_back(t.detach().reshape({-1}).to(at::kCPU, wire));
      at::Tensor buffer = at::cat(flat).contiguous();  // [total]
      const int64_t total = buffer.numel(), elem = buffer.element_size();
      auto* base = static_cast<char*>(buffer.data_ptr());
      for (int64_t off = 0; off < total; off += INT_MAX / 2) {
        const int64_t n = std::min<int64_t>(INT_MAX / 2, total - off);
        absl::Status s = op(base + off * elem, n, *type);
        if (!s.ok()) return s;
      }
      int64_t off = 0;
      for (const auto& t : members) {
        at::Tensor part = buffer.narrow(0, off, t.numel()).view(t.sizes());
        t.detach().copy_(part);
        off += t.numel();
      }
    }
    return absl::OkStatus();
  }

  int rank_, size_;
};

}  // namespace

bool MpiBuilt() { return true; }

absl::StatusOr<std::shared_ptr<ProcessGroup>> CreateMpiGroup() {
  static std::mutex mu;
  static std::shared_ptr<ProcessGroup> group;
  std::lock_guard<std::mutex> lock(mu);
  if (group) return group;
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    absl::Status s = MpiStatus(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    if (!s.ok()) return s;
    std::atexit([] {
      int finalized = 0;
      MPI_Finalized(&finalized);
      if (!finalized) MPI_Finalize();
    });
  }
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  WFM_LOG(DEBUG) << "MPI process group: rank " << rank << " of " << size;
  group = std::make_shared<MpiGroup>(rank, size);
  return group;
}

#endif  // WFM_HAVE_MPI

}  // namespace wfm::train::internal
