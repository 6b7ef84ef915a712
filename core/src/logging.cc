// Leveled stderr logging; one write per message so lines from several threads never interleave.
#include "wfm/core/logging.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "absl/strings/ascii.h"

namespace wfm {
namespace {
LogLevel InitialLevel() {
  LogLevel level = LogLevel::kInfo;
  if (const char* env = std::getenv("WFM_LOG_LEVEL")) ParseLogLevel(env, &level);
  return level;
}
std::atomic<int>& LevelStorage() {
  static std::atomic<int> level{static_cast<int>(InitialLevel())};
  return level;
}
}  // namespace

void SetLogLevel(LogLevel level) { LevelStorage().store(static_cast<int>(level)); }
LogLevel GetLogLevel() { return static_cast<LogLevel>(LevelStorage().load(std::memory_order_relaxed)); }

bool ParseLogLevel(absl::string_view text, LogLevel* level) {
  std::string t = absl::AsciiStrToLower(text);
  if (t == "debug") *level = LogLevel::kDebug;
  else if (t == "info") *level = LogLevel::kInfo;
  else if (t == "warning" || t == "warn") *level = LogLevel::kWarning;
  else if (t == "error") *level = LogLevel::kError;
  else if (t == "off" || t == "none") *level = LogLevel::kOff;
  else return false;
  return true;
}

namespace log_internal {
LogMessage::LogMessage(LogLevel level, const char* file, int line) : level_(level) {
  static const char* kNames[] = {"D", "I", "W", "E"};
  const char* base = std::strrchr(file, '/');
  stream_ << "[wfm " << kNames[static_cast<int>(level)] << " " << (base ? base + 1 : file) << ":" << line
          << "] ";
}
LogMessage::~LogMessage() {
  stream_ << '\n';
  const std::string s = stream_.str();
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  std::fwrite(s.data(), 1, s.size(), stderr);
  std::fflush(stderr);
}
}  // namespace log_internal

}  // namespace wfm
