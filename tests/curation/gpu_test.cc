// One rank per GPU: launcher detection (mpirun, srun, MPICH, torchrun-style) and the local rank -> GPU rule from
// core's process group, and the NVDEC decode modes. This machine has no GPU: `nvdec` must fail with a clear
// error, and `auto` must fall back to the CPU with exactly the clips of `cpu` (on a GPU machine those tests skip;
// NVDEC itself is exercised only there).
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>

#include <gtest/gtest.h>

#include "curation_test_util.h"
#include "test_support.h"
#include "wfm/core/train/distributed.h"
#include "wfm/curation/decoder.h"
#include "wfm/curation/gpu.h"
#include "wfm/curation/pipeline.h"
#include "wfm/curation/transcode.h"

namespace wfm::curation {
namespace {
namespace fs = std::filesystem;
using train::DetectLaunch;
using train::DeviceForLocalRank;
using train::LaunchInfo;

LaunchInfo Detect(const std::map<std::string, std::string>& vars) {
  return DetectLaunch([&](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

void ExpectLaunch(const LaunchInfo& got, const std::string& launcher, int rank, int size, int local) {
  EXPECT_EQ(got.launcher, launcher);
  EXPECT_EQ(got.rank, rank);
  EXPECT_EQ(got.world_size, size);
  EXPECT_EQ(got.local_rank, local);
}

TEST(LaunchTest, LaunchersAndLocalRanks) {
  {
    SCOPED_TRACE("started directly");
    ExpectLaunch(Detect({}), "", 0, 1, 0);
  }
  {
    SCOPED_TRACE("OpenMPI mpirun");
    ExpectLaunch(Detect({{"OMPI_COMM_WORLD_RANK", "5"}, {"OMPI_COMM_WORLD_SIZE", "8"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}}),
                 "openmpi", 5, 8, 1);
  }
  {
    SCOPED_TRACE("srun step: the step's task count, not the job's");
    ExpectLaunch(Detect({{"SLURM_STEP_ID", "0"}, {"SLURM_PROCID", "6"}, {"SLURM_STEP_NUM_TASKS", "8"},
                         {"SLURM_NTASKS", "16"}, {"SLURM_LOCALID", "2"}, {"SLURM_JOB_ID", "42"}}),
                 "slurm", 6, 8, 2);
    ExpectLaunch(Detect({{"SLURM_STEPID", "3"}, {"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "2"}, {"SLURM_LOCALID", "1"}}),
                 "slurm", 1, 2, 1);
  }
  {
    SCOPED_TRACE("srun --mpi=pmix: Slurm's variables win over PMIX_RANK");
    ExpectLaunch(Detect({{"SLURM_STEP_ID", "0"}, {"SLURM_PROCID", "3"}, {"SLURM_STEP_NUM_TASKS", "4"},
                         {"SLURM_LOCALID", "3"}, {"PMIX_RANK", "3"}}),
                 "slurm", 3, 4, 3);
  }
  {
    SCOPED_TRACE("an sbatch script itself (no step) is one process, whatever SLURM_NTASKS says");
    ExpectLaunch(Detect({{"SLURM_JOB_ID", "42"}, {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "4"}, {"SLURM_LOCALID", "0"}}),
                 "", 0, 1, 0);
  }
  {
    SCOPED_TRACE("mpirun inside a Slurm allocation: OpenMPI's numbering");
    ExpectLaunch(Detect({{"SLURM_JOB_ID", "42"}, {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "4"}, {"SLURM_LOCALID", "0"},
                         {"OMPI_COMM_WORLD_RANK", "3"}, {"OMPI_COMM_WORLD_SIZE", "4"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}}),
                 "openmpi", 3, 4, 1);
  }
  {
    SCOPED_TRACE("MPICH / Intel MPI (Hydra)");
    ExpectLaunch(Detect({{"PMI_RANK", "2"}, {"PMI_SIZE", "4"}, {"MPI_LOCALRANKID", "0"}}), "pmi", 2, 4, 0);
  }
  {
    SCOPED_TRACE("PMIx only: rank known, size not");
    ExpectLaunch(Detect({{"PMIX_RANK", "2"}, {"LOCAL_RANK", "1"}}), "pmix", 2, 3, 1);
  }
  {
    SCOPED_TRACE("torchrun-style LOCAL_RANK gives the local rank of an unlaunched process");
    ExpectLaunch(Detect({{"LOCAL_RANK", "3"}, {"RANK", "7"}, {"WORLD_SIZE", "8"}}), "", 0, 1, 3);
  }
  {
    SCOPED_TRACE("malformed values are ignored");
    ExpectLaunch(Detect({{"OMPI_COMM_WORLD_RANK", "x"}, {"OMPI_COMM_WORLD_SIZE", "2"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "-1"}}),
                 "openmpi", 0, 2, 0);
  }
}

TEST(LaunchTest, LocalRankToGpu) {
  for (int r = 0; r < 20; ++r) EXPECT_EQ(DeviceForLocalRank(r, 8), r % 8) << r;
  EXPECT_EQ(DeviceForLocalRank(3, 1), 0);   // srun --gpus-per-task=1: each task sees one GPU
  EXPECT_EQ(DeviceForLocalRank(0, 0), -1);  // no GPUs
  EXPECT_EQ(DeviceForLocalRank(5, 0), -1);
  EXPECT_EQ(DeviceForLocalRank(-1, 4), 0);
}

// Sets environment variables for one scope and restores the previous values.
class ScopedEnv {
 public:
  explicit ScopedEnv(const std::map<std::string, std::string>& vars) {
    for (const auto& [k, v] : vars) {
      const char* old = std::getenv(k.c_str());
      saved_.emplace_back(k, old ? std::optional<std::string>(old) : std::nullopt);
      setenv(k.c_str(), v.c_str(), 1);
    }
  }
  ~ScopedEnv() {
    for (const auto& [k, v] : saved_) {
      if (v) setenv(k.c_str(), v->c_str(), 1); else unsetenv(k.c_str());
    }
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

TEST(LaunchTest, ProcessGroupUnderASingleTaskSrunStep) {
  if (std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE") || std::getenv("PMIX_RANK"))
    GTEST_SKIP() << "already running under an MPI launcher";
  // `srun -n 1 ... --gpus ...` on local task 3 of a node: one process (no MPI), its local rank from Slurm.
  ScopedEnv env({{"SLURM_STEP_ID", "0"}, {"SLURM_PROCID", "0"}, {"SLURM_STEP_NUM_TASKS", "1"}, {"SLURM_LOCALID", "3"}});
  WFM_ASSERT_OK_AND_ASSIGN(auto pg, train::ProcessGroup::Create("auto"));
  EXPECT_EQ(pg->backend(), "single");
  EXPECT_EQ(pg->world_size(), 1);
  EXPECT_EQ(pg->local_rank(), 3);
  GpuPlan plan = ProcessGpu();
  EXPECT_EQ(plan.local_rank, 3);
  EXPECT_EQ(plan.gpu, DeviceForLocalRank(3, plan.num_gpus));
}

TEST(DecodeModeTest, NvdecWithoutAGpuIsAClearError) {
  if (CudaDeviceCount() > 0) GTEST_SKIP() << CudaDeviceCount() << " CUDA device(s) visible: NVDEC may work here";
  EXPECT_EQ(ProcessGpu().gpu, -1);
  auto forced = ResolveDecode("nvdec");
  ASSERT_FALSE(forced.ok());
  EXPECT_EQ(forced.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(forced.status().message().find("no CUDA device"), std::string::npos) << forced.status();
  WFM_ASSERT_OK_AND_ASSIGN(std::string autod, ResolveDecode("auto"));
  EXPECT_EQ(autod, "cpu");
  WFM_ASSERT_OK_AND_ASSIGN(std::string cpu, ResolveDecode("cpu"));
  EXPECT_EQ(cpu, "cpu");
  EXPECT_EQ(ResolveDecode("vdpau").status().code(), absl::StatusCode::kInvalidArgument);

  const std::string city = wfm::testing::SharedPath("media/cityCC0.mpg");
  WFM_REQUIRE_FILE(city);
  // An explicit device that cannot be opened: FFmpeg's CUDA device creation fails, named in the error.
  DecoderOptions o;
  o.decode = "nvdec";
  o.gpu = 0;
  auto dec = VideoDecoder::Open(city, o);
  ASSERT_FALSE(dec.ok());
  EXPECT_NE(dec.status().message().find("CUDA device 0"), std::string::npos) << dec.status();
  EXPECT_NE(dec.status().message().find(city), std::string::npos) << dec.status();
  o.decode = "auto";
  WFM_ASSERT_OK_AND_ASSIGN(auto fallback, VideoDecoder::Open(city, o));
  EXPECT_FALSE(fallback->hardware());
  WFM_ASSERT_OK_AND_ASSIGN(bool more, fallback->Next());
  EXPECT_TRUE(more);

  // `wfm curate --decode nvdec` stops before touching any input.
  CurateOptions c;
  c.inputs = {city};
  c.output = wfm::testing::TempDir() + "/out";
  c.quiet = true;
  c.analysis.decode = "nvdec";
  auto run = RunCurate(c);
  ASSERT_FALSE(run.ok());
  EXPECT_NE(run.status().message().find("--decode nvdec"), std::string::npos) << run.status();
  EXPECT_FALSE(fs::exists(c.output + "/clips.jsonl"));
}

// Reads clips.jsonl as span_uuid -> record, without what differs between any two runs: the run's directory in
// shard paths, and the encoded size (libx264's output differs by a few hundred bytes between runs).
std::map<std::string, nlohmann::json> ReadClips(const std::string& dir) {
  std::map<std::string, nlohmann::json> out;
  std::ifstream in(dir + "/clips.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    nlohmann::json j = nlohmann::json::parse(line);
    if (j["shard"].is_string()) {
      std::string shard = j["shard"].get<std::string>();
      if (shard.rfind(dir, 0) == 0) j["shard"] = shard.substr(dir.size());
    }
    j.erase("num_bytes");
    out[j["span_uuid"].get<std::string>()] = j;
  }
  return out;
}

TEST(DecodeModeTest, AutoWithoutAGpuGivesTheClipsOfCpu) {
  if (CudaDeviceCount() > 0) GTEST_SKIP() << "a CUDA device is visible: auto decodes on NVDEC here";
  const std::string dir = wfm::testing::TempDir();
  fs::create_directories(dir + "/in");
  WFM_ASSERT_OK_AND_ASSIGN(auto truth, testing::WriteStitchedVideo(dir + "/in/a.mp4", 192, 108, 3, 75, 0));
  ASSERT_GE(truth.cuts.size(), 1u);
  std::map<std::string, std::map<std::string, nlohmann::json>> clips;
  for (const std::string mode : {"cpu", "auto"}) {
    CurateOptions o;
    o.inputs = {dir + "/in"};
    o.output = dir + "/" + mode;
    o.quiet = true;
    o.workers = 1;
    o.analysis.decode_threads = 1;
    o.analysis.decode = mode;
    o.analysis.clips.min_length_s = 1.0;
    o.transcode.threads = 1;
    o.transcode.encoder = "libx264";
    WFM_ASSERT_OK_AND_ASSIGN(nlohmann::json summary, RunCurate(o));
    EXPECT_EQ(summary["devices"]["decode"], mode) << summary.dump();
    EXPECT_EQ(summary["devices"]["rank0"]["decode"], "cpu") << summary.dump();
    EXPECT_EQ(summary["devices"]["ranks_on_nvdec"], 0) << summary.dump();
    EXPECT_TRUE(summary["devices"]["rank0"]["gpu"].is_null()) << summary.dump();
    clips[mode] = ReadClips(o.output);
  }
  ASSERT_GE(clips["cpu"].size(), 2u);
  ASSERT_EQ(clips["cpu"].size(), clips["auto"].size());
  for (const auto& [uuid, want] : clips["cpu"]) {
    ASSERT_TRUE(clips["auto"].count(uuid)) << uuid;
    EXPECT_EQ(clips["auto"][uuid], want) << uuid;
  }
}

}  // namespace
}  // namespace wfm::curation
