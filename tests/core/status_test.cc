// Status macros, annotation, FFmpeg error mapping and exception capture.
#include "wfm/core/status.h"

#include <c10/util/Exception.h>
#include <gtest/gtest.h>

extern "C" {
#include <libavutil/error.h>
}

namespace wfm {
namespace {

absl::StatusOr<int> Half(int x) {
  if (x % 2) return absl::InvalidArgumentError(absl::StrCat(x, " is odd"));
  return x / 2;
}

absl::StatusOr<int> Quarter(int x) {
  WFM_ASSIGN_OR_RETURN(int h, Half(x), "first half of ", x);
  WFM_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

absl::Status CheckEven(int x) {
  WFM_RETURN_IF_ERROR(Half(x), "checking ", x);
  WFM_RETURN_IF_ERROR(absl::OkStatus());
  return absl::OkStatus();
}

TEST(StatusTest, AssignOrReturnPropagatesWithContext) {
  EXPECT_EQ(*Quarter(8), 2);
  absl::StatusOr<int> r = Quarter(7);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "first half of 7: 7 is odd");
  // Second step fails without context.
  r = Quarter(6);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "3 is odd");
}

TEST(StatusTest, ReturnIfErrorAcceptsStatusAndStatusOr) {
  EXPECT_TRUE(CheckEven(4).ok());
  absl::Status s = CheckEven(5);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "checking 5: 5 is odd");
}

TEST(StatusTest, AnnotateKeepsCodeAndOk) {
  EXPECT_TRUE(Annotate(absl::OkStatus(), "ctx").ok());
  absl::Status s = Annotate(absl::NotFoundError("x"), "loading a.bin");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "loading a.bin: x");
}

TEST(StatusTest, FfmpegErrorUsesAvStrerrorText) {
  absl::Status s = FfmpegError(AVERROR_INVALIDDATA, "decoding clip.mp4");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("decoding clip.mp4: Invalid data found when processing input"), std::string::npos) << s;
  EXPECT_EQ(FfmpegError(AVERROR(ENOENT), "open").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(FfmpegError(AVERROR_DECODER_NOT_FOUND, "open").code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(FfmpegError(AVERROR(ENOMEM), "alloc").code(), absl::StatusCode::kResourceExhausted);
}

TEST(StatusTest, CatchToStatusConvertsTorchErrors) {
  absl::Status s = CatchToStatus("forward", []() -> absl::Status {
    TORCH_CHECK(false, "shape mismatch 3 vs 4");
    return absl::OkStatus();
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_NE(s.message().find("forward: "), std::string::npos);
  EXPECT_NE(s.message().find("shape mismatch 3 vs 4"), std::string::npos);
  absl::StatusOr<int> v = CatchToStatus("x", []() -> absl::StatusOr<int> { return 3; });
  EXPECT_EQ(*v, 3);
  absl::StatusOr<int> bad = CatchToStatus("parse", []() -> absl::StatusOr<int> {
    throw std::invalid_argument("nope");
  });
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace wfm
