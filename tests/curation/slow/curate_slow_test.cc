// Slow end-to-end checks of `wfm curate` as a process (labels slow, mpi):
//  - SIGKILL at every commit stage (deterministic crash points, WFM_CURATE_CRASH_AT) and at wall-clock moments,
//    then the same command again: the final clips, shards and indexes equal an uninterrupted run (nothing lost,
//    nothing duplicated, every tar valid, no partial files left).
//  - mpirun -np 2: the same span_uuids and decisions as one process, each rank's shards in its own part folder.
// Nothing here depends on machine speed: the clip rules leave every stitched shot a wide margin over the minimum
// length (so the clip count does not hinge on a detector moving a boundary by a frame or two), the crash points
// are reached by count, and the timed kills assert nothing about how many of them landed.
// Each runs the full pipeline several times on ~1 minute of 320x180 video (30-120 s on 2 cores).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "curation_test_util.h"
#include "test_support.h"
#include "wfm/curation/webdataset.h"

namespace wfm::curation {
namespace {
namespace fs = std::filesystem;

pid_t Spawn(const std::vector<std::string>& args, const std::string& log, const std::string& crash_at = "") {
  std::fflush(nullptr);  // or the child inherits (and prints again) our buffered output
  pid_t pid = fork();
  if (pid == 0) {
    if (crash_at.empty()) {
      unsetenv("WFM_CURATE_CRASH_AT");
    } else {
      setenv("WFM_CURATE_CRASH_AT", crash_at.c_str(), 1);
    }
    FILE* f = std::freopen(log.c_str(), "a", stderr);
    (void)f;
    std::freopen("/dev/null", "w", stdout);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

int Wait(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

struct RunResult {
  std::map<std::string, nlohmann::json> clips;  // span_uuid -> normalised record
  std::map<std::string, std::string> videos;    // source -> status
  std::multiset<std::string> shard_keys;
  int tars = 0;
};

// Reads a finished run and checks the shards' integrity.
RunResult Read(const std::string& out) {
  RunResult r;
  std::ifstream c(out + "/clips.jsonl");
  std::string line;
  while (std::getline(c, line)) {
    auto j = nlohmann::json::parse(line);
    nlohmann::json n = {{"start", j["start_frame"]}, {"end", j["end_frame"]}, {"kept", j["kept"]},
                        {"reasons", j["filter_reasons"]}, {"dup", j["duplicate_of"]}, {"frames", j["num_frames"]},
                        {"in_shard", j["shard"].is_string()}};
    EXPECT_TRUE(r.clips.emplace(j["span_uuid"], n).second) << "clip listed twice: " << j["span_uuid"];
  }
  std::ifstream v(out + "/videos.jsonl");
  while (std::getline(v, line)) {
    auto j = nlohmann::json::parse(line);
    r.videos[j["source_video"]] = j["status"];
  }
  if (fs::exists(out + "/shards")) {
    for (auto& e : fs::recursive_directory_iterator(out + "/shards")) {
      EXPECT_EQ(e.path().string().find(".partial"), std::string::npos) << "left over: " << e.path();
    }
    auto tars = ListShards(out + "/shards");
    EXPECT_TRUE(tars.ok());
    for (const auto& t : *tars) {
      ++r.tars;
      EXPECT_TRUE(ListTar(t).ok()) << t;
      EXPECT_EQ(wfm::testing::RunCommand("tar -tf '" + t + "' >/dev/null 2>&1"), 0) << t;
      auto reader = ShardReader::Open(t);
      EXPECT_TRUE(reader.ok());
      Sample s;
      while (true) {
        auto more = (*reader)->Next(&s);
        EXPECT_TRUE(more.ok()) << more.status();
        if (!more.ok() || !*more) break;
        EXPECT_TRUE(s.Has("mp4") && s.Has("json")) << s.key;
        r.shard_keys.insert(s.key);
      }
    }
  }
  return r;
}

class CurateSlowTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WFM_REQUIRE_FILE(wfm::testing::SharedPath("media/cityCC0.mpg"));
    if (!fs::exists(wfm::testing::WfmTool())) GTEST_SKIP() << "wfm tool not built: " << wfm::testing::WfmTool();
    dir_ = wfm::testing::TempDir();
    fs::create_directories(dir_ + "/in");
    for (int v = 0; v < 5; ++v) {
      auto t = testing::WriteStitchedVideo(dir_ + "/in/v" + std::to_string(v) + ".mp4", 320, 180, 4 + v % 2, 75, 15,
                                           "-c:v libx264 -preset veryfast -crf 22 -pix_fmt yuv420p", v + 1);
      ASSERT_TRUE(t.ok()) << t.status();
    }
    fs::copy_file(wfm::testing::SharedPath("media/cityCC0.mpg"), dir_ + "/in/city.mpg");
    ASSERT_TRUE(std::ofstream(dir_ + "/in/broken.mp4") << "not a video");
  }
  std::vector<std::string> Command(const std::string& out, int workers = 2) const {
    // Short minimum length and trim: the 75-frame stitched shots (61 frames next to a dissolve) give 51+ frame
    // clips against a 25-frame minimum, so the clip count has a wide margin (the default 2 s / 0.5 s rules
    // leave 51 frames against 50 and flip with a one-frame shift of a detected dissolve).
    return {wfm::testing::WfmTool(), "curate", "--input", dir_ + "/in", "--output", out, "--workers", std::to_string(workers),
            "--decode-threads", "1", "--min-clip-s", "1", "--min-clip-frames", "25", "--trim-s", "0.2",
            "--clip-height", "144", "--shard-size-mb", "0.5", "--quiet"};
  }
  std::string dir_;
};

// What a killed attempt left behind (recovered by the next start).
void PrintLeftovers(const std::string& out, const std::string& when) {
  int lines = 0, partial = 0, tmp = 0;
  std::ifstream j(out + "/.state/journal_r0.jsonl");
  std::string l;
  while (std::getline(j, l)) ++lines;
  if (fs::exists(out)) {
    for (auto& e : fs::recursive_directory_iterator(out)) {
      partial += e.path().extension() == ".partial";
      tmp += e.path().extension() == ".tmp" || e.path().extension() == ".mp4";
    }
  }
  std::printf("after kill %s: %d videos committed, %d partial shards, %d temp clip files\n", when.c_str(), lines,
              partial, tmp);
}

void ExpectSameRun(const RunResult& got, const RunResult& want) {
  EXPECT_EQ(got.videos, want.videos);
  EXPECT_EQ(got.clips, want.clips);
  EXPECT_EQ(got.shard_keys, want.shard_keys);
  std::set<std::string> unique(got.shard_keys.begin(), got.shard_keys.end());
  EXPECT_EQ(unique.size(), got.shard_keys.size()) << "a clip was written twice";
  int kept = 0;
  for (const auto& [id, c] : got.clips) kept += c["kept"].get<bool>();
  EXPECT_EQ(kept, static_cast<int>(got.shard_keys.size()));
}

TEST_F(CurateSlowTest, SigkillAtAnyPointThenResumeGivesTheSameClips) {
  const std::string ref = dir_ + "/ref", crash = dir_ + "/crash", timed = dir_ + "/timed";
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(Wait(Spawn(Command(ref), dir_ + "/ref.log")), 0);
  double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  RunResult want = Read(ref);
  ASSERT_GE(want.shard_keys.size(), 8u) << "too few clips for a meaningful test";
  ASSERT_GE(want.tars, 3);
  // 1. Deterministic kills at every commit stage, each attempt resuming the previous one's work. The counts
  //    stay below what each attempt has left to do (7 inputs, at most 3 committed before the last three), so
  //    every attempt reaches its point whatever the timing.
  for (const char* at : {"analysed:2", "before_journal:2", "after_journal:1", "before_merge:1", "before_indexes:1"}) {
    int rc = Wait(Spawn(Command(crash), dir_ + "/crash.log", at));
    EXPECT_EQ(rc, 128 + SIGKILL) << "the run did not reach crash point " << at << " (exit " << rc << ")";
    PrintLeftovers(crash, at);
  }
  ASSERT_EQ(Wait(Spawn(Command(crash), dir_ + "/crash.log")), 0);
  ExpectSameRun(Read(crash), want);
  // 2. Kills at wall-clock moments (wherever they land: mid-decode, mid-tar-write, mid-merge, or after the end).
  //    How many land depends on the machine's speed, so only the outcome is checked.
  int kills = 0;
  for (double f : {0.3, 0.6}) {
    pid_t pid = Spawn(Command(timed), dir_ + "/timed.log");
    std::this_thread::sleep_for(std::chrono::duration<double>(f * total));
    if (waitpid(pid, nullptr, WNOHANG) == 0) {
      kill(pid, SIGKILL);
      ++kills;
    }
    Wait(pid);
    PrintLeftovers(timed, "at " + std::to_string(static_cast<int>(f * 100)) + "% of the reference time");
  }
  std::printf("timed: killed %d of 2 attempts (reference run %.1f s)\n", kills, total);
  ASSERT_EQ(Wait(Spawn(Command(timed), dir_ + "/timed.log")), 0);
  ExpectSameRun(Read(timed), want);
}

TEST_F(CurateSlowTest, MpirunTwoRanksMatchesOneProcess) {
  if (wfm::testing::RunCommand("mpirun --version >/dev/null 2>&1") != 0) GTEST_SKIP() << "mpirun not installed";
  const std::string single = dir_ + "/single", multi = dir_ + "/mpi";
  ASSERT_EQ(Wait(Spawn(Command(single), dir_ + "/single.log")), 0);
  std::vector<std::string> cmd = {"/usr/bin/env", "mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2"};
  for (const auto& a : Command(multi, /*workers=*/1)) cmd.push_back(a);
  int rc = Wait(Spawn(cmd, dir_ + "/mpi.log"));
  std::ifstream log(dir_ + "/mpi.log");
  std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  if (rc != 0 && text.find("built without MPI") != std::string::npos) GTEST_SKIP() << "wfm built without MPI";
  ASSERT_EQ(rc, 0) << text;
  RunResult a = Read(single), b = Read(multi);
  EXPECT_EQ(a.videos, b.videos);
  EXPECT_EQ(a.clips, b.clips);
  EXPECT_EQ(a.shard_keys, b.shard_keys);
  // Each rank writes its own shards: every clip lies in the part folder of the rank that journaled its video.
  // (Which rank claims which video is dynamic, so the test does not insist that both got one with clips.)
  std::set<std::string> parts, want_parts;
  for (int rank = 0; rank < 2; ++rank) {
    const std::string journal = multi + "/.state/journal_r" + std::to_string(rank) + ".jsonl";
    EXPECT_TRUE(fs::exists(journal)) << "rank " << rank << " took no part: " << journal;
    std::ifstream j(journal);
    std::string line;
    const std::string part = "part_00000" + std::to_string(rank);
    while (std::getline(j, line)) {
      auto e = nlohmann::json::parse(line);
      for (const auto& c : e["clips"]) {
        if (!c["shard"].is_string()) continue;
        want_parts.insert(part);
        EXPECT_EQ(fs::path(c["shard"].get<std::string>()).parent_path().filename().string(), part) << c["shard"];
      }
    }
  }
  for (auto& e : fs::recursive_directory_iterator(multi + "/shards")) {
    if (e.is_directory() && e.path().filename().string().rfind("part_", 0) == 0) parts.insert(e.path().filename());
  }
  EXPECT_EQ(parts, want_parts);
  std::ifstream s(multi + "/summary.json");
  auto summary = nlohmann::json::parse(s);
  EXPECT_EQ(summary["processes"], 2);
}

TEST_F(CurateSlowTest, SrunWithoutPmiIsRefusedNotRunAsTwoRankZeros) {
  // The environment of task 0 of `srun -n 2 wfm curate ...` on a cluster whose srun has no PMI plugin OpenMPI
  // understands: MPI initialises every task as a world of one. Running on would give two "rank 0"s writing the
  // same shards; curate must stop with a hint instead. (A one-task srun step runs as one process.)
  auto cmd = Command(dir_ + "/srun", 1);
  std::vector<std::string> env = {"/usr/bin/env", "SLURM_JOB_ID=1", "SLURM_STEP_ID=0", "SLURM_PROCID=0",
                                  "SLURM_STEP_NUM_TASKS=2", "SLURM_NTASKS=2", "SLURM_LOCALID=0"};
  env.insert(env.end(), cmd.begin(), cmd.end());
  int rc = Wait(Spawn(env, dir_ + "/srun.log"));
  std::ifstream log(dir_ + "/srun.log");
  std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  if (text.find("built without MPI") != std::string::npos) GTEST_SKIP() << "wfm built without MPI";
  EXPECT_EQ(rc, 1) << text;
  EXPECT_NE(text.find("srun --mpi=pmix"), std::string::npos) << text;
  EXPECT_FALSE(fs::exists(dir_ + "/srun/clips.jsonl"));
}

}  // namespace
}  // namespace wfm::curation
