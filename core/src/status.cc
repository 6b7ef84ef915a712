// Status helpers: context annotation, FFmpeg error mapping, exception capture.
#include "wfm/core/status.h"

#include <c10/util/Exception.h>

#include <exception>
#include <new>
#include <stdexcept>

extern "C" {
#include <libavutil/error.h>
}

namespace wfm {

absl::Status Annotate(const absl::Status& status, absl::string_view context) {
  if (status.ok() || context.empty()) return status;
  absl::Status out(status.code(), absl::StrCat(context, ": ", status.message()));
  status.ForEachPayload([&out](absl::string_view url, const absl::Cord& payload) {
    out.SetPayload(url, payload);
  });
  return out;
}

absl::Status FfmpegError(int averror, absl::string_view what) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {0};
  av_strerror(averror, buf, sizeof(buf));
  std::string msg = absl::StrCat(what, ": ", buf, " (AVERROR ", averror, ")");
  switch (averror) {
    case AVERROR(ENOENT):
      return absl::NotFoundError(msg);
    case AVERROR(EACCES):
    case AVERROR(EPERM):
      return absl::PermissionDeniedError(msg);
    case AVERROR(ENOMEM):
      return absl::ResourceExhaustedError(msg);
    case AVERROR(EINVAL):
    case AVERROR_INVALIDDATA:
    case AVERROR_STREAM_NOT_FOUND:
      return absl::InvalidArgumentError(msg);
    case AVERROR_DECODER_NOT_FOUND:
    case AVERROR_ENCODER_NOT_FOUND:
    case AVERROR_DEMUXER_NOT_FOUND:
    case AVERROR_MUXER_NOT_FOUND:
    case AVERROR_PROTOCOL_NOT_FOUND:
    case AVERROR_PATCHWELCOME:
    case AVERROR(ENOSYS):
      return absl::UnimplementedError(msg);
    case AVERROR_EOF:
      return absl::OutOfRangeError(msg);
    case AVERROR_EXIT:
      return absl::CancelledError(msg);
    default:
      return absl::InternalError(msg);
  }
}

absl::Status StatusFromCurrentException(absl::string_view context) {
  std::string prefix = context.empty() ? std::string() : absl::StrCat(context, ": ");
  try {
    throw;
  } catch (const c10::Error& e) {
    // what_without_backtrace keeps the message readable; the backtrace is for debuggers.
    return absl::InternalError(absl::StrCat(prefix, e.what_without_backtrace()));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(prefix, "out of memory"));
  } catch (const std::invalid_argument& e) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, e.what()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(prefix, e.what()));
  } catch (...) {
    return absl::UnknownError(absl::StrCat(prefix, "unknown exception"));
  }
}

}  // namespace wfm
