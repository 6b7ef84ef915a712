// ProcessGroup over MPI when built with it and launched by mpirun / srun (see distributed.h).
#include "distributed.h"

#include <cstdlib>
#include <vector>

#ifdef WFM_HAVE_MPI
#include <mpi.h>
#endif

namespace wfm::curation {
namespace {

bool LaunchedByMpi() {
  if (const char* off = std::getenv("WFM_NO_MPI"); off && *off && *off != '0') return false;
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS", "PMI_RANK"}) {
    if (std::getenv(v)) return true;
  }
  return false;
}

#ifdef WFM_HAVE_MPI
void FinalizeMpi() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}
#endif

}  // namespace

ProcessGroup::ProcessGroup() {
#ifdef WFM_HAVE_MPI
  if (LaunchedByMpi()) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
      std::atexit(FinalizeMpi);
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    mpi_ = size_ > 1;
  }
#else
  unsupported_ = LaunchedByMpi();
#endif
}

ProcessGroup& ProcessGroup::Get() {
  static ProcessGroup* group = new ProcessGroup();  // lives until exit (MPI_Finalize runs from atexit)
  return *group;
}

void ProcessGroup::Barrier() {
#ifdef WFM_HAVE_MPI
  if (mpi_) MPI_Barrier(MPI_COMM_WORLD);
#endif
}

std::string ProcessGroup::Broadcast(const std::string& value) {
#ifdef WFM_HAVE_MPI
  if (mpi_) {
    long long n = static_cast<long long>(value.size());
    MPI_Bcast(&n, 1, MPI_LONG_LONG, 0, MPI_COMM_WORLD);
    std::vector<char> buf(value.begin(), value.end());
    buf.resize(static_cast<size_t>(n));
    if (n > 0) MPI_Bcast(buf.data(), static_cast<int>(n), MPI_CHAR, 0, MPI_COMM_WORLD);
    return std::string(buf.begin(), buf.end());
  }
#endif
  return value;
}

long long ProcessGroup::SumAll(long long value) {
#ifdef WFM_HAVE_MPI
  if (mpi_) {
    long long out = 0;
    MPI_Allreduce(&value, &out, 1, MPI_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
    return out;
  }
#endif
  return value;
}

void ProcessGroup::Abort(int code) {
#ifdef WFM_HAVE_MPI
  if (mpi_) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  std::exit(code);
}

}  // namespace wfm::curation
