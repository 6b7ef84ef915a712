// The training loop, the standard optimisation step and autocast (see train/trainer.h).
#include "wfm/core/train/trainer.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "wfm/core/logging.h"
#include "wfm/core/progress.h"
#include "wfm/core/status.h"
#include "wfm/core/train/distributed.h"
#include "wfm/core/train/ema.h"
#include "wfm/core/train/jsonl_log.h"
#include "wfm/core/train/optimizer.h"

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define WFM_AUTOCAST_DEVICE_API 1
#endif

namespace wfm::train {
namespace fs = std::filesystem;
namespace {

std::atomic<int> g_stop_signal{0};

void OnStopSignal(int sig) {
  if (g_stop_signal.exchange(sig) != 0) {  // second signal: give up at once
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
}

// Installs SIGINT/SIGTERM handlers for the lifetime of the object and restores the previous ones.
class StopSignals {
 public:
  StopSignals() {
    g_stop_signal = 0;
    struct sigaction sa {};
    sa.sa_handler = OnStopSignal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~StopSignals() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }

 private:
  struct sigaction old_int_ {}, old_term_ {};
};

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

nlohmann::json ToJson(const Metrics& m) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : m) j[k] = v;
  return j;
}

std::string StatusLine(const Metrics& m) {
  std::string s;
  for (const char* key : {"loss", "psnr", "lr"}) {
    auto it = m.find(key);
    if (it == m.end()) continue;
    absl::StrAppend(&s, s.empty() ? "" : " ", key, " ",
                    std::string(key) == "lr" ? absl::StrFormat("%.2e", it->second) : absl::StrFormat("%.4g", it->second));
  }
  return s;
}

}  // namespace

Trainer::Trainer(TrainerOptions options, std::shared_ptr<ProcessGroup> group)
    : options_(std::move(options)), group_(std::move(group)), run_start_(NowSeconds()) {}

Trainer::~Trainer() = default;

std::string Trainer::metrics_path() const { return (fs::path(options_.output_dir) / "metrics.jsonl").string(); }
std::string Trainer::checkpoint_dir() const { return (fs::path(options_.output_dir) / "checkpoints").string(); }
bool Trainer::is_main() const { return !group_ || group_->is_main(); }

void Trainer::AddState(const std::string& name, std::function<nlohmann::json()> save,
                       std::function<absl::Status(const nlohmann::json&)> load) {
  states_[name] = {std::move(save), std::move(load)};
}

absl::StatusOr<int64_t> Trainer::Resume() {
  if (resumed_step_) return *resumed_step_;
  std::optional<std::string> path;
  if (!options_.resume_from.empty()) {
    path = options_.resume_from;
  } else if (options_.resume) {
    WFM_ASSIGN_OR_RETURN(path, CheckpointManager(checkpoint_dir()).Latest());
  }
  int64_t step = 0;
  if (path) {
    WFM_ASSIGN_OR_RETURN(CheckpointInfo info, LoadTrainingCheckpoint(*path, items_));
    step = info.step;
    if (!config_.empty() && info.config != config_) {
      for (const auto& [k, v] : config_.items())
        if (!info.config.contains(k) || info.config[k] != v)
          WFM_LOG(WARNING) << "resuming with a changed setting: " << k << " = " << v.dump() << " (checkpoint: "
                           << (info.config.contains(k) ? info.config[k].dump() : "absent") << ")";
    }
    const nlohmann::json saved = info.extra.value("states", nlohmann::json::object());
    for (auto& [name, st] : states_) {
      if (!saved.contains(name)) {
        WFM_LOG(WARNING) << "checkpoint " << *path << " has no state for '" << name << "'";
        continue;
      }
      WFM_RETURN_IF_ERROR(st.load(saved[name]), "restoring ", name, " from ", *path);
    }
    start_time_ = info.extra.value("elapsed_s", 0.0);
    if (is_main()) WFM_LOG(INFO) << "resumed from " << *path << " at step " << step;
  }
  resumed_step_ = step;
  return step;
}

absl::Status Trainer::LogRecord(nlohmann::json record) {
  if (!log_) return absl::OkStatus();
  return log_->Write(record);
}

absl::Status Trainer::SaveCheckpoint(int64_t step) {
  if (is_main()) {
    nlohmann::json states = nlohmann::json::object();
    for (auto& [name, st] : states_) states[name] = st.save();
    nlohmann::json extra = {{"states", states}, {"elapsed_s", start_time_ + (NowSeconds() - run_start_)}};
    WFM_RETURN_IF_ERROR(CheckpointManager(checkpoint_dir(), options_.keep_checkpoints).Save(step, items_, config_, extra));
  }
  if (group_) WFM_RETURN_IF_ERROR(group_->Barrier());
  return absl::OkStatus();
}

absl::StatusOr<Metrics> Trainer::RunEval(int64_t step) {
  Metrics m;
  if (eval_ && is_main()) {
    WFM_ASSIGN_OR_RETURN(m, eval_(step), "evaluation at step ", step);
    nlohmann::json rec = ToJson(m);
    rec["step"] = step;
    rec["split"] = "val";
    rec["time_s"] = start_time_ + (NowSeconds() - run_start_);
    WFM_RETURN_IF_ERROR(LogRecord(rec));
  }
  if (group_) WFM_RETURN_IF_ERROR(group_->Barrier());
  return m;
}

absl::StatusOr<TrainerResult> Trainer::Run(const std::function<absl::StatusOr<Metrics>(int64_t step)>& step_fn) {
  if (options_.output_dir.empty()) return absl::InvalidArgumentError("Trainer: output_dir is required");
  run_start_ = NowSeconds();
  WFM_ASSIGN_OR_RETURN(const int64_t start, Resume());
  TrainerResult result;
  result.start_step = result.end_step = start;
  if (is_main()) {
    // A fresh run starts a fresh log; a resumed one drops records past the checkpoint.
    WFM_ASSIGN_OR_RETURN(log_, JsonlLog::Open(metrics_path(), start > 0 ? start : -1));
  }
  StopSignals signals;
  ProgressOptions popts;
  popts.quiet = options_.quiet || !is_main();
  Progress progress(options_.progress_label, options_.total_steps - start, "steps", popts);

  std::map<std::string, std::pair<double, int64_t>> window;  // key -> (sum, count) since the last log record
  int nonfinite = 0;
  int64_t step = start;
  auto flush_window = [&](int64_t completed) -> absl::Status {
    if (window.empty()) return absl::OkStatus();
    Metrics avg;
    for (const auto& [k, sc] : window) avg[k] = sc.second ? sc.first / sc.second : NAN;
    window.clear();
    result.last_train = avg;
    nlohmann::json rec = ToJson(avg);
    rec["step"] = completed;
    rec["split"] = "train";
    rec["time_s"] = start_time_ + (NowSeconds() - run_start_);
    if (progress.rate() > 0 && options_.items_per_step > 0) rec["items_per_s"] = progress.rate() * options_.items_per_step;
    return LogRecord(rec);
  };
  auto due = [](int64_t completed, int64_t every) { return every > 0 && completed % every == 0; };

  for (; step < options_.total_steps; ++step) {
    // Stop requests (signal, time budget) are agreed on by all ranks so that they checkpoint together.
    // A signal (or a ProgressSink asking to stop) counts 1000, the time budget 1: the sum over ranks tells which
    // happened anywhere.
    double stop = g_stop_signal.load() != 0 || progress.cancelled() ? 1000.0 : 0.0;
    if (options_.max_time_s > 0 && NowSeconds() - run_start_ > options_.max_time_s) stop += 1.0;
    if (group_ && group_->world_size() > 1) {
      WFM_ASSIGN_OR_RETURN(stop, group_->AllReduceScalar(stop));
    }
    if (stop >= 1000.0) {
      result.interrupted = true;
      break;
    }
    if (stop > 0) {
      result.time_budget_reached = true;
      break;
    }
    WFM_ASSIGN_OR_RETURN(Metrics m, step_fn(step), "training step ", step);
    auto loss = m.find("loss");
    if (loss != m.end() && !std::isfinite(loss->second)) {
      if (++nonfinite > options_.max_nonfinite_steps)
        return absl::InternalError(absl::StrCat("the loss was non-finite for ", nonfinite,
                                                " steps in a row (last at step ", step,
                                                "); lower the learning rate or check the data"));
      WFM_LOG(WARNING) << "non-finite loss at step " << step << " (update skipped)";
    } else {
      nonfinite = 0;
    }
    for (const auto& [k, v] : m) {
      if (!std::isfinite(v)) continue;
      auto& sc = window[k];
      sc.first += v;
      sc.second += 1;
    }
    progress.SetStatus(StatusLine(m));
    progress.Add(1);
    const int64_t completed = step + 1;
    result.end_step = completed;
    const bool last = completed == options_.total_steps;
    if (due(completed, options_.log_every) || last) WFM_RETURN_IF_ERROR(flush_window(completed));
    if (!last && due(completed, options_.eval_every)) {
      WFM_ASSIGN_OR_RETURN(result.last_eval, RunEval(completed));
    }
    if (!last && due(completed, options_.sample_every) && sample_) {
      if (is_main()) WFM_RETURN_IF_ERROR(sample_(completed), "writing samples at step ", completed);
      if (group_) WFM_RETURN_IF_ERROR(group_->Barrier());
    }
    if (!last && due(completed, options_.checkpoint_every)) WFM_RETURN_IF_ERROR(SaveCheckpoint(completed));
  }
  WFM_RETURN_IF_ERROR(flush_window(result.end_step));
  if (!result.interrupted && result.end_step > start) {
    WFM_ASSIGN_OR_RETURN(result.last_eval, RunEval(result.end_step));
    if (sample_ && is_main()) WFM_RETURN_IF_ERROR(sample_(result.end_step), "writing final samples");
  }
  if (result.end_step > start || result.interrupted) WFM_RETURN_IF_ERROR(SaveCheckpoint(result.end_step));
  result.seconds = NowSeconds() - run_start_;
  const std::string summary = progress.Finish();
  if (is_main() && result.interrupted)
    WFM_LOG(WARNING) << "training stopped at step " << result.end_step << " (checkpoint saved; run again to resume)";
  (void)summary;
  return result;
}

// ---- ApplyGradients ----

absl::StatusOr<double> ApplyGradients(AdamW& optimizer, const UpdateOptions& options) {
  return CatchToStatus("optimizer step", [&]() -> absl::StatusOr<double> {
    const std::vector<at::Tensor> params = optimizer.parameters();
    if (options.group && options.group->world_size() > 1)
      WFM_RETURN_IF_ERROR(AllReduceGradients(*options.group, params));
    const double norm = ClipGradNorm(params, options.clip_norm);
    if (!std::isfinite(norm)) {
      optimizer.ZeroGrad();
      return norm;
    }
    optimizer.set_lr(options.lr);
    optimizer.Step();
    if (options.ema) options.ema->Update();
    return norm;
  });
}

// ---- mixed precision ----

absl::StatusOr<c10::ScalarType> ParsePrecision(absl::string_view name, c10::Device device) {
  if (name == "fp32" || name == "float32") return c10::kFloat;
  if (name == "bf16" || name == "bfloat16") return c10::kBFloat16;
  if (name == "auto") return device.is_cuda() ? c10::kBFloat16 : c10::kFloat;
  if (name == "fp16" || name == "float16")
    return absl::InvalidArgumentError("fp16 training needs loss scaling, which wfm does not do; use bf16");
  return absl::InvalidArgumentError(absl::StrCat("unknown precision '", name, "' (expected fp32, bf16 or auto)"));
}

AutocastGuard::AutocastGuard(c10::Device device, c10::ScalarType dtype) {
  if (dtype == c10::kFloat || dtype == c10::kDouble) return;
  active_ = true;
  cuda_ = device.is_cuda();
#ifdef WFM_AUTOCAST_DEVICE_API
  const c10::DeviceType type = cuda_ ? c10::DeviceType::CUDA : c10::DeviceType::CPU;
  prev_enabled_ = at::autocast::is_autocast_enabled(type);
  prev_dtype_ = at::autocast::get_autocast_dtype(type);
  at::autocast::set_autocast_dtype(type, dtype);
  at::autocast::set_autocast_enabled(type, true);
#else
  if (cuda_) {
    prev_enabled_ = at::autocast::is_enabled();
    prev_dtype_ = at::autocast::get_autocast_gpu_dtype();
    at::autocast::set_autocast_gpu_dtype(dtype);
    at::autocast::set_enabled(true);
  } else {
    prev_enabled_ = at::autocast::is_cpu_enabled();
    prev_dtype_ = at::autocast::get_autocast_cpu_dtype();
    at::autocast::set_autocast_cpu_dtype(dtype);
    at::autocast::set_cpu_enabled(true);
  }
#endif
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
#ifdef WFM_AUTOCAST_DEVICE_API
  const c10::DeviceType type = cuda_ ? c10::DeviceType::CUDA : c10::DeviceType::CPU;
  at::autocast::set_autocast_enabled(type, prev_enabled_);
  at::autocast::set_autocast_dtype(type, prev_dtype_);
#else
  if (cuda_) {
    at::autocast::set_enabled(prev_enabled_);
    at::autocast::set_autocast_gpu_dtype(prev_dtype_);
  } else {
    at::autocast::set_cpu_enabled(prev_enabled_);
    at::autocast::set_autocast_cpu_dtype(prev_dtype_);
  }
#endif
}

}  // namespace wfm::train
