// Process group for `wfm curate` under mpirun / srun (internal to wfm_curation). MPI is initialised only when
// the process was started by an MPI launcher (OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_RANK, ...) and the build
// found MPI; otherwise it is a group of one. Only the calling (main) thread uses MPI.
#pragma once

#include <string>

namespace wfm::curation {

class ProcessGroup {
 public:
  // The process-wide group (MPI_Init_thread on first use when launched by MPI; MPI_Finalize at exit).
  static ProcessGroup& Get();
  int rank() const { return rank_; }
  int size() const { return size_; }
  bool mpi() const { return mpi_; }
  // Started by an MPI launcher although this build has no MPI: every process would think it is alone.
  bool unsupported_launch() const { return unsupported_; }
  void Barrier();
  // Rank 0's `value` on every rank.
  std::string Broadcast(const std::string& value);
  // Sum / max of a value over all ranks.
  long long SumAll(long long value);
  // Ends the job on every rank (after a fatal error on one).
  [[noreturn]] void Abort(int code);

 private:
  ProcessGroup();
  int rank_ = 0, size_ = 1;
  bool mpi_ = false, unsupported_ = false;
};

}  // namespace wfm::curation
