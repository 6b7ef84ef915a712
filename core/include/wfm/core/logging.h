// Minimal leveled logging to stderr. Level from WFM_LOG_LEVEL (debug|info|warning|error, default info) or
// SetLogLevel(). Usage: WFM_LOG(INFO) << "decoded " << n << " frames";
#pragma once

#include <sstream>
#include <string>

#include "absl/strings/string_view.h"

namespace wfm {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3, kOff = 4 };

void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
// Parses "debug", "info", "warning"/"warn", "error", "off"; returns false on anything else.
bool ParseLogLevel(absl::string_view text, LogLevel* level);

namespace log_internal {
class LogMessage {
 public:
  LogMessage(LogLevel level, const char* file, int line);
  ~LogMessage();
  std::ostream& stream() { return stream_; }

 private:
  LogLevel level_;
  std::ostringstream stream_;
};
// Swallows the stream expression when the level is disabled.
struct Voidify {
  void operator&(std::ostream&) {}
};
}  // namespace log_internal

}  // namespace wfm

#define WFM_LOG_LEVEL_DEBUG ::wfm::LogLevel::kDebug
#define WFM_LOG_LEVEL_INFO ::wfm::LogLevel::kInfo
#define WFM_LOG_LEVEL_WARNING ::wfm::LogLevel::kWarning
#define WFM_LOG_LEVEL_ERROR ::wfm::LogLevel::kError

#define WFM_LOG(severity)                                                      \
  (WFM_LOG_LEVEL_##severity < ::wfm::GetLogLevel())                           \
      ? (void)0                                                                \
      : ::wfm::log_internal::Voidify() &                                       \
            ::wfm::log_internal::LogMessage(WFM_LOG_LEVEL_##severity, __FILE__, __LINE__).stream()
