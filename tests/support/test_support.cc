// Shared test helpers (see test_support.h).
#include "test_support.h"

#include "wfm/core/safetensors.h"

#include <ATen/ATen.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sys/wait.h>
#include <unistd.h>

namespace wfm::testing {
namespace fs = std::filesystem;

namespace {
std::string Env(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

// Fallbacks when ctest did not pass the environment (gtest_discover_tests keeps only the first ENVIRONMENT entry
// of a list): the build tree is the parent of the test executable's bin/, the source tree is the one its
// CMakeCache.txt names.
std::string ExeBuildDir() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec || !exe.has_parent_path()) return std::string();
  const fs::path build = exe.parent_path().parent_path();
  return fs::exists(build / "CMakeCache.txt") ? build.string() : std::string();
}
std::string CachedSourceDir(const std::string& build) {
  if (build.empty()) return std::string();
  std::FILE* f = std::fopen((fs::path(build) / "CMakeCache.txt").c_str(), "r");
  if (!f) return std::string();
  std::string result;
  std::array<char, 4096> line;
  const std::string key = "CMAKE_HOME_DIRECTORY:INTERNAL=";
  while (std::fgets(line.data(), line.size(), f)) {
    std::string l(line.data());
    if (l.rfind(key, 0) == 0) {
      result = l.substr(key.size());
      while (!result.empty() && (result.back() == '\n' || result.back() == '\r')) result.pop_back();
      break;
    }
  }
  std::fclose(f);
  return result;
}
}  // namespace

std::string SourceDir() {
  const std::string cached = CachedSourceDir(ExeBuildDir());
  return Env("WFM_SOURCE_DIR", cached.empty() ? fs::current_path().string() : cached);
}
std::string BinaryDir() {
  const std::string exe_build = ExeBuildDir();
  return Env("WFM_BINARY_DIR", exe_build.empty() ? (fs::path(SourceDir()) / "build").string() : exe_build);
}
std::string WfmTool() { return (fs::path(BinaryDir()) / "bin" / "wfm").string(); }

std::string SharedDir() {
  std::string d = Env("WFM_SHARED_DIR", (fs::path(SourceDir()) / ".." / "shared").string());
  return fs::is_directory(d) ? fs::canonical(d).string() : std::string();
}

std::string SharedPath(const std::string& rel) { return (fs::path(SharedDir()) / rel).string(); }

bool FileExists(const std::string& path) { return fs::exists(path); }

namespace {
// Removes every TempDir() of this process at exit.
struct TempDirRegistry {
  std::vector<std::string> dirs;
  ~TempDirRegistry() {
    if (Env("WFM_KEEP_TEST_DIRS", "0") == "1") return;
    for (const auto& d : dirs) {
      std::error_code ec;
      fs::remove_all(d, ec);
    }
  }
};
TempDirRegistry& Dirs() {
  static TempDirRegistry r;
  return r;
}
}  // namespace

std::string TempDir() {
  static std::atomic<int> counter{0};
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = info ? std::string(info->test_suite_name()) + "." + info->name() : "test";
  for (char& c : name)
    if (c == '/') c = '_';
  fs::path d = fs::path(BinaryDir()) / "test_tmp" /
               (name + "." + std::to_string(getpid()) + "." + std::to_string(counter++));
  fs::remove_all(d);
  fs::create_directories(d);
  Dirs().dirs.push_back(d.string());
  return d.string();
}

double MaxAbsDiff(const at::Tensor& a, const at::Tensor& b) {
  at::Tensor x = a.detach().to(at::kCPU, at::kDouble), y = b.detach().to(at::kCPU, at::kDouble);
  if (x.sizes() != y.sizes()) return std::numeric_limits<double>::infinity();
  if (x.numel() == 0) return 0.0;
  return (x - y).abs().max().item<double>();
}

double MaxRelDiff(const at::Tensor& a, const at::Tensor& b) {
  at::Tensor y = b.detach().to(at::kCPU, at::kDouble);
  double scale = y.numel() ? y.abs().max().item<double>() : 0.0;
  return MaxAbsDiff(a, b) / std::max(scale, 1e-30);
}

int RunCommand(const std::string& command, std::string* output) {
  std::string cmd = command + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return -1;
  std::array<char, 4096> buf;
  std::string out;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int rc = ::pclose(p);
  if (output) *output = out;
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

void ExpectSafetensorsClose(const std::string& a, const std::string& b, double tol, int min_compared,
                            const std::string& hint) {
  absl::StatusOr<TensorMap> ta = ReadSafetensors(a), tb = ReadSafetensors(b);
  ASSERT_TRUE(ta.ok()) << ta.status();
  ASSERT_TRUE(tb.ok()) << tb.status();
  int compared = 0;
  for (const auto& [name, t] : *tb) {
    if (!t.is_floating_point() || !ta->count(name)) continue;
    ++compared;
    EXPECT_LT(MaxRelDiff(ta->at(name), t), tol) << a << " vs " << b << ": " << name << " HINT: " << hint;
  }
  EXPECT_GE(compared, min_compared) << a << " vs " << b;
}

}  // namespace wfm::testing
