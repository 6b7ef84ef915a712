// Helpers shared by the GoogleTest suites: where the shared fixtures are, scratch directories, and tensor
// comparison in the llm.c style (max |diff| relative to max |ref|, with a HINT on failure).
#pragma once

#include <string>

#include <ATen/core/Tensor.h>
#include <gtest/gtest.h>

#include "absl/status/status.h"

namespace wfm::testing {

// ../shared (env WFM_SHARED_DIR, set by ctest). Empty if it does not exist.
std::string SharedDir();
// SharedDir()/rel; the test is skipped with a reason by the caller if it is missing (see WFM_REQUIRE_FILE).
std::string SharedPath(const std::string& rel);
// The repository root (env WFM_SOURCE_DIR) and the build tree (env WFM_BINARY_DIR).
std::string SourceDir();
std::string BinaryDir();
// build/bin/wfm.
std::string WfmTool();
// A fresh empty directory under the build tree, unique per test, removed by the fixture at exit unless
// WFM_KEEP_TEST_DIRS=1.
std::string TempDir();

// max |a - b| / max(|b|, tiny); both are converted to float64 on CPU.
double MaxRelDiff(const at::Tensor& a, const at::Tensor& b);
double MaxAbsDiff(const at::Tensor& a, const at::Tensor& b);

// Every floating-point tensor of safetensors file `b` that `a` also holds is within `tol` (MaxRelDiff of a vs b);
// at least `min_compared` tensors are compared. Failures name the file, the tensor and `hint`.
void ExpectSafetensorsClose(const std::string& a, const std::string& b, double tol, int min_compared,
                            const std::string& hint);

// Runs a shell command, returns its exit status; output captured into *output when given.
int RunCommand(const std::string& command, std::string* output = nullptr);

}  // namespace wfm::testing

#define WFM_ASSERT_OK(expr)                                   \
  do {                                                        \
    const ::absl::Status wfm_test_s_ = ::wfm::testing::ToStatusForTest(expr); \
    ASSERT_TRUE(wfm_test_s_.ok()) << wfm_test_s_;             \
  } while (0)
#define WFM_EXPECT_OK(expr)                                   \
  do {                                                        \
    const ::absl::Status wfm_test_s_ = ::wfm::testing::ToStatusForTest(expr); \
    EXPECT_TRUE(wfm_test_s_.ok()) << wfm_test_s_;             \
  } while (0)
// WFM_ASSERT_OK_AND_ASSIGN(auto x, StatusOrExpr());
#define WFM_ASSERT_OK_AND_ASSIGN(lhs, rexpr) \
  WFM_ASSERT_OK_AND_ASSIGN_IMPL_(WFM_TEST_CONCAT_(wfm_test_so_, __LINE__), lhs, rexpr)
#define WFM_TEST_CONCAT_INNER_(a, b) a##b
#define WFM_TEST_CONCAT_(a, b) WFM_TEST_CONCAT_INNER_(a, b)
#define WFM_ASSERT_OK_AND_ASSIGN_IMPL_(so, lhs, rexpr) \
  auto so = (rexpr);                                   \
  ASSERT_TRUE(so.ok()) << so.status();                 \
  lhs = std::move(so).value()

// Skips the test (GTEST_SKIP, with the reason) when a shared fixture file is absent.
#define WFM_REQUIRE_FILE(path)                                                         \
  do {                                                                                 \
    if (!::wfm::testing::FileExists(path)) GTEST_SKIP() << "missing fixture: " << path; \
  } while (0)

namespace wfm::testing {
bool FileExists(const std::string& path);
inline absl::Status ToStatusForTest(const absl::Status& s) { return s; }
template <typename T>
absl::Status ToStatusForTest(const T& s) {
  return s.status();
}
}  // namespace wfm::testing
