// Progress bar / rate / ETA reporting (see progress.h).
#include "wfm/core/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_format.h"

namespace wfm {

std::string FormatDuration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  if (s < 60) return absl::StrFormat("%.1f s", s);
  int64_t t = static_cast<int64_t>(std::llround(s));
  if (t < 3600) return absl::StrFormat("%dm%02ds", t / 60, t % 60);
  return absl::StrFormat("%dh%02dm", t / 3600, (t % 3600) / 60);
}

namespace {
thread_local std::shared_ptr<ProgressSink> t_sink;
}  // namespace

ScopedProgressSink::ScopedProgressSink(ProgressSink sink)
    : sink_(sink ? std::make_shared<ProgressSink>(std::move(sink)) : nullptr), previous_(t_sink) {
  if (sink_) t_sink = sink_;  // an empty sink leaves the current one in place
}

ScopedProgressSink::~ScopedProgressSink() { t_sink = previous_; }

Progress::Progress(std::string label, int64_t total, std::string unit, ProgressOptions options)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), options_(options) {
  tty_ = options_.force_tty >= 0 ? options_.force_tty != 0 : isatty(STDERR_FILENO) != 0;
  if (const char* env = std::getenv("WFM_PROGRESS")) tty_ = std::string(env) == "1";
  start_ = last_render_ = std::chrono::steady_clock::now();
  sink_ = t_sink;
}

Progress::~Progress() { Finish(); }

void Progress::Add(int64_t n) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    done_ += n;
    MaybeRenderLocked(false);
  }
  NotifySink(false);
}

void Progress::NotifySink(bool finished) {
  if (!sink_) return;
  std::lock_guard<std::mutex> sink_lock(sink_mu_);
  std::string status;
  ProgressUpdate u;
  {
    std::lock_guard<std::mutex> lock(mu_);
    status = status_;
    u.done = done_;
    u.total = total_;
  }
  u.label = label_;
  u.unit = unit_;
  u.status = status;
  u.finished = finished;
  if (!(*sink_)(u)) cancelled_ = true;
}

bool Progress::cancelled() const { return cancelled_.load(); }

void Progress::SetTotal(int64_t total) {
  std::lock_guard<std::mutex> lock(mu_);
  total_ = total;
}

void Progress::SetStatus(std::string status) {
  std::lock_guard<std::mutex> lock(mu_);
  status_ = std::move(status);
}

void Progress::SetCallback(std::function<void(int64_t, int64_t)> callback) {
  std::lock_guard<std::mutex> lock(mu_);
  callback_ = std::move(callback);
}

int64_t Progress::done() const {
  std::lock_guard<std::mutex> lock(mu_);
  return done_;
}

double Progress::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

double Progress::rate() const {
  double e = elapsed_s();
  std::lock_guard<std::mutex> lock(mu_);
  return e > 0 ? done_ / e : 0.0;
}

std::string Progress::LineLocked() const {
  double e = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double r = e > 0 ? done_ / e : 0.0;
  std::string line = label_ + ": ";
  if (total_ > 0) {
    double frac = std::min(1.0, static_cast<double>(done_) / total_);
    constexpr int kWidth = 24;
    int fill = static_cast<int>(frac * kWidth);
    line += "[" + std::string(fill, '#') + std::string(kWidth - fill, '.') + "] ";
    line += absl::StrFormat("%d/%d %s (%.0f%%)", done_, total_, unit_, 100.0 * frac);
  } else {
    line += absl::StrFormat("%d %s", done_, unit_);
  }
  line += absl::StrFormat(", %.3g %s/s", r, unit_);
  line += ", elapsed " + FormatDuration(e);
  if (total_ > 0 && r > 0 && done_ < total_) line += ", ETA " + FormatDuration((total_ - done_) / r);
  if (!status_.empty()) line += ", " + status_;
  return line;
}

void Progress::MaybeRenderLocked(bool force) {
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_render_).count();
  double interval = tty_ ? options_.redraw_interval_s : options_.log_interval_s;
  if (!force && (interval <= 0 || since < interval)) return;
  last_render_ = now;
  if (callback_) callback_(done_, total_);
  if (options_.quiet) return;
  std::string line = LineLocked();
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s", line.c_str());
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

std::string Progress::Finish() {
  std::string summary;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return summary_;
    double e = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    summary = absl::StrFormat("%s: %d %s in %s (%.4g %s/s)", label_, done_, unit_, FormatDuration(e),
                              e > 0 ? done_ / e : 0.0, unit_);
    if (!status_.empty()) summary += ", " + status_;
    finished_ = true;
    summary_ = summary;
    if (callback_) callback_(done_, total_);
    if (!options_.quiet) {
      if (tty_) std::fprintf(stderr, "\r\033[K");
      std::fprintf(stderr, "%s\n", summary.c_str());
      std::fflush(stderr);
    }
  }
  NotifySink(true);
  return summary;
}

}  // namespace wfm
