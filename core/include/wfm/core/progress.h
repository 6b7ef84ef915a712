// Progress reporting for long jobs: a single updating line with count, rate and ETA on a terminal; when stderr
// is not a TTY it stays quiet except for sparse plain lines (every `log_interval_s`, default 30 s) and the final
// summary. Thread-safe: workers may call Add() concurrently.
//
//   Progress p("decode", total_frames, "frames");
//   for (...) p.Add(1);
//   p.Finish();   // "decode: 795 frames in 3.2 s (248.4 frames/s)"
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

namespace wfm {

// What a ProgressSink sees: the job's label and unit, its count and total (<= 0: unknown), status text, and
// whether this is the final report (Finish()).
struct ProgressUpdate {
  std::string_view label, unit, status;
  int64_t done = 0, total = 0;
  bool finished = false;
};
// Returns false to ask the job to stop (see Progress::cancelled()).
using ProgressSink = std::function<bool(const ProgressUpdate&)>;

// Installs `sink` for every Progress constructed on THIS thread while the guard lives (it keeps reporting from
// worker threads): library calls whose Progress is internal (training, curate) report to a caller-side
// observer, e.g. a Python callable. The sink is called on every Add() and at Finish(), one call at a time per
// Progress, not under the Progress lock. Guards nest (the innermost wins; an empty sink changes nothing).
class ScopedProgressSink {
 public:
  explicit ScopedProgressSink(ProgressSink sink);
  ~ScopedProgressSink();
  ScopedProgressSink(const ScopedProgressSink&) = delete;
  ScopedProgressSink& operator=(const ScopedProgressSink&) = delete;

 private:
  std::shared_ptr<ProgressSink> sink_, previous_;
};

struct ProgressOptions {
  // Force terminal-style output on/off; default: detect isatty(stderr). WFM_PROGRESS=0/1 overrides too.
  int force_tty = -1;
  double log_interval_s = 30.0;     // non-TTY: seconds between plain lines (<= 0: only the summary)
  double redraw_interval_s = 0.2;   // TTY: minimum seconds between redraws
  bool quiet = false;               // print nothing at all (the summary is still returned by Finish())
};

class Progress {
 public:
  // total <= 0 means unknown (no ETA, no percentage).
  Progress(std::string label, int64_t total, std::string unit = "items", ProgressOptions options = {});
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void Add(int64_t n = 1);
  void SetTotal(int64_t total);
  // Extra text shown after the numbers (e.g. "loss 0.123").
  void SetStatus(std::string status);
  // Prints and returns the one-line summary; later calls return the same text without printing.
  std::string Finish();

  int64_t done() const;
  double elapsed_s() const;
  // Units per second so far (0 before any time has passed).
  double rate() const;

  // Optional observer (e.g. a Python callable) called with (done, total) at most every redraw interval.
  void SetCallback(std::function<void(int64_t, int64_t)> callback);

  // True once a ProgressSink asked to stop. Jobs that support cancellation poll it and return CancelledError
  // (the core/train Trainer after each step, curate after each video).
  bool cancelled() const;

 private:
  void MaybeRenderLocked(bool force);
  std::string LineLocked() const;

  mutable std::mutex mu_;
  std::string label_, unit_, status_, summary_;
  int64_t total_, done_ = 0;
  ProgressOptions options_;
  bool tty_ = false, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_render_;
  std::function<void(int64_t, int64_t)> callback_;
  void NotifySink(bool finished);
  std::shared_ptr<ProgressSink> sink_;  // from the constructing thread's ScopedProgressSink
  std::mutex sink_mu_;                  // one sink call at a time
  std::atomic<bool> cancelled_{false};
};

// Formats seconds as "4.2 s", "3m05s", "1h02m".
std::string FormatDuration(double seconds);

}  // namespace wfm
