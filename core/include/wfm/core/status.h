// Status plumbing shared by every wfm module: propagation macros (Abseil 20220623 ships none), context
// annotation, and FFmpeg AVERROR -> absl::Status conversion.
//
//   absl::StatusOr<Tensor> LoadThing(const std::string& path) {
//     WFM_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(path));
//     WFM_RETURN_IF_ERROR(Validate(file), "validating ", path);
//     ...
//   }
#pragma once

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace wfm {

// Returns `status` with `context` prepended to its message ("context: message"); OK stays OK.
absl::Status Annotate(const absl::Status& status, absl::string_view context);

// Converts an FFmpeg error code (negative AVERROR) into the closest canonical status, with the text of
// av_strerror and what was being done: "what: <ffmpeg message> (AVERROR -N)".
absl::Status FfmpegError(int averror, absl::string_view what);

// Converts the exception currently being handled (c10::Error, std::exception, ...) into an internal status.
// Call only inside a catch block.
absl::Status StatusFromCurrentException(absl::string_view context);

// Runs `fn` and converts any exception it throws (LibTorch TORCH_CHECK failures, std::bad_alloc, ...) into
// a Status, so that a library boundary never throws.
template <typename Fn>
auto CatchToStatus(absl::string_view context, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (...) {
    return StatusFromCurrentException(context);
  }
}

namespace status_internal {
inline absl::Status ToStatus(const absl::Status& s) { return s; }
template <typename T>
inline absl::Status ToStatus(const absl::StatusOr<T>& s) {
  return s.status();
}
template <typename... Args>
inline absl::Status WithContext(absl::Status s, const Args&... args) {
  if constexpr (sizeof...(Args) == 0) {
    return s;
  } else {
    return Annotate(s, absl::StrCat(args...));
  }
}
}  // namespace status_internal

}  // namespace wfm

#define WFM_STATUS_CONCAT_INNER_(a, b) a##b
#define WFM_STATUS_CONCAT_(a, b) WFM_STATUS_CONCAT_INNER_(a, b)

// WFM_RETURN_IF_ERROR(expr [, context pieces...]): returns the status of `expr` (a Status or StatusOr) if it is
// not OK, optionally prefixed with StrCat(context pieces...).
#define WFM_RETURN_IF_ERROR(expr, ...)                                                       \
  do {                                                                                       \
    ::absl::Status wfm_status_ = ::wfm::status_internal::ToStatus(expr);                     \
    if (!wfm_status_.ok())                                                                   \
      return ::wfm::status_internal::WithContext(std::move(wfm_status_), ##__VA_ARGS__);     \
  } while (0)

// WFM_ASSIGN_OR_RETURN(lhs, rexpr [, context pieces...]): evaluates the StatusOr `rexpr`; on error returns
// its status (optionally prefixed), otherwise moves the value into `lhs` (which may declare a variable).
#define WFM_ASSIGN_OR_RETURN(lhs, rexpr, ...) \
  WFM_ASSIGN_OR_RETURN_IMPL_(WFM_STATUS_CONCAT_(wfm_statusor_, __LINE__), lhs, rexpr, ##__VA_ARGS__)

#define WFM_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr, ...)                                     \
  auto statusor = (rexpr);                                                                        \
  if (!statusor.ok())                                                                             \
    return ::wfm::status_internal::WithContext(std::move(statusor).status(), ##__VA_ARGS__);      \
  lhs = std::move(statusor).value()
