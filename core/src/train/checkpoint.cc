// Training checkpoints (see train/checkpoint.h) and RNG state capture (train/rng.h).
#include "wfm/core/train/checkpoint.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <fcntl.h>
#include <torch/nn/module.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "wfm/core/checkpoint.h"
#include "wfm/core/file_util.h"
#include "wfm/core/logging.h"
#include "wfm/core/safetensors.h"
#include "wfm/core/status.h"
#include "wfm/core/train/ema.h"
#include "wfm/core/train/optimizer.h"
#include "wfm/core/train/rng.h"

namespace wfm::train {
namespace fs = std::filesystem;

// ---- rng.h ----

uint64_t MixSeed(uint64_t seed, uint64_t a, uint64_t b) {
  auto mix = [](uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  return mix(mix(mix(seed) ^ a) ^ (b * 0x2545f4914f6cdd1dull + 1));
}

at::Generator MakeCpuGenerator(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

TensorMap CaptureTorchRngState() {
  TensorMap out;
  {
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    out["cpu"] = gen.get_state();
  }
  if (at::hasCUDA()) {
    const int64_t n = at::detail::getCUDAHooks().getNumGPUs();
    for (int64_t d = 0; d < n; ++d) {
      at::Generator gen = at::globalContext().defaultGenerator(c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(d)));
      std::lock_guard<std::mutex> lock(gen.mutex());
      out[absl::StrCat("cuda:", d)] = gen.get_state();
    }
  }
  return out;
}

absl::Status RestoreTorchRngState(const TensorMap& state) {
  return CatchToStatus("restoring the random generator state", [&]() -> absl::Status {
    for (const auto& [name, t] : state) {
      if (name == "cpu") {
        at::Generator gen = at::detail::getDefaultCPUGenerator();
        std::lock_guard<std::mutex> lock(gen.mutex());
        gen.set_state(t.contiguous());
        continue;
      }
      int64_t device = -1;
      if (!absl::StartsWith(name, "cuda:") || !absl::SimpleAtoi(name.substr(5), &device))
        return absl::InvalidArgumentError(absl::StrCat("unknown generator '", name, "'"));
      if (!at::hasCUDA() || device >= at::detail::getCUDAHooks().getNumGPUs()) {
        WFM_LOG(WARNING) << "checkpoint has a generator state for " << name << " but that device is absent; skipped";
        continue;
      }
      at::Generator gen =
          at::globalContext().defaultGenerator(c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(device)));
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(t.contiguous());
    }
    return absl::OkStatus();
  });
}

// ---- checkpoints ----

namespace {

constexpr char kFormat[] = "wfm-train-checkpoint/1";

std::string StepName(int64_t step) { return absl::StrFormat("step_%08d", step); }

// fsync a directory so that renames inside it are durable.
void SyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

std::vector<std::pair<int64_t, std::string>> ListCheckpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    absl::string_view rest = name;
    int64_t step = 0;
    if (!absl::ConsumePrefix(&rest, "step_") || !absl::SimpleAtoi(rest, &step)) continue;
    if (!fs::exists(e.path() / "state.json")) continue;
    out.emplace_back(step, name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

CheckpointManager::CheckpointManager(std::string dir, int keep_last) : dir_(std::move(dir)), keep_last_(keep_last) {}

absl::Status CheckpointManager::Save(int64_t step, const CheckpointItems& items, const nlohmann::json& config,
                                     const nlohmann::json& extra) {
  return CatchToStatus("saving checkpoint", [&]() -> absl::Status {
    WFM_RETURN_IF_ERROR(MakeDirs(dir_));
    const std::string name = StepName(step);
    const std::string final_dir = (fs::path(dir_) / name).string();
    const std::string tmp_dir = (fs::path(dir_) / absl::StrCat(".", name, ".tmp.", ::getpid())).string();
    std::error_code ec;
    fs::remove_all(tmp_dir, ec);
    WFM_RETURN_IF_ERROR(MakeDirs(tmp_dir));
    auto cleanup = [&] { fs::remove_all(tmp_dir, ec); };

    nlohmann::json state = {{"format", kFormat}, {"step", step}, {"config", config}, {"extra", extra}};
    nlohmann::json files = nlohmann::json::object();
    const std::map<std::string, std::string> meta = {{"format", "pt"}, {"step", std::to_string(step)}};
    auto write = [&](const std::string& item, const std::string& kind, const TensorMap& tensors) -> absl::Status {
      const std::string file = item + ".safetensors";
      if (files.contains(file)) return absl::InvalidArgumentError(absl::StrCat("duplicate checkpoint item ", item));
      files[file] = kind;
      return WriteSafetensors((fs::path(tmp_dir) / file).string(), tensors, meta);
    };
    absl::Status s;
    for (const auto& [n, m] : items.modules)
      if (s.ok()) s = write(n, "module", StateDict(*m));
    for (const auto& [n, e] : items.emas) {
      if (s.ok()) s = write(n, "ema", e->StateDict());
      state["ema"][n] = {{"num_updates", e->num_updates()}, {"decay", e->decay()}};
    }
    for (const auto& [n, o] : items.optimizers)
      if (s.ok()) s = write(n, "optimizer", o->StateDict());
    if (s.ok() && items.torch_rng) s = write("rng", "rng", CaptureTorchRngState());
    state["files"] = files;
    if (s.ok()) s = WriteFileAtomically((fs::path(tmp_dir) / "state.json").string(), state.dump(2) + "\n");
    if (!s.ok()) {
      cleanup();
      return Annotate(s, absl::StrCat("writing checkpoint ", final_dir));
    }
    SyncDir(tmp_dir);
    // Replace an existing checkpoint of the same step (e.g. a re-run): move it aside first.
    if (fs::exists(final_dir)) {
      const std::string old = final_dir + ".old";
      fs::remove_all(old, ec);
      fs::rename(final_dir, old);
      fs::rename(tmp_dir, final_dir);
      fs::remove_all(old, ec);
    } else {
      fs::rename(tmp_dir, final_dir);
    }
    SyncDir(dir_);
    WFM_RETURN_IF_ERROR(WriteFileAtomically((fs::path(dir_) / "latest").string(), name + "\n"));
    return Prune(name);
  });
}

absl::Status CheckpointManager::Prune(const std::string& keep_name) {
  if (keep_last_ <= 0) return absl::OkStatus();
  auto all = ListCheckpoints(dir_);
  const int64_t excess = static_cast<int64_t>(all.size()) - keep_last_;
  for (int64_t i = 0; i < excess; ++i) {
    if (all[i].second == keep_name) continue;
    std::error_code ec;
    fs::remove_all(fs::path(dir_) / all[i].second, ec);
    if (ec) WFM_LOG(WARNING) << "could not remove old checkpoint " << all[i].second << ": " << ec.message();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<std::string>> CheckpointManager::Latest() const {
  const fs::path latest = fs::path(dir_) / "latest";
  if (fs::exists(latest)) {
    WFM_ASSIGN_OR_RETURN(std::string name, ReadFile(latest.string()));
    name = std::string(absl::StripAsciiWhitespace(name));
    const fs::path p = fs::path(dir_) / name;
    if (fs::exists(p / "state.json")) return std::optional<std::string>(p.string());
    WFM_LOG(WARNING) << latest.string() << " names " << name << ", which is incomplete; scanning " << dir_;
  }
  auto all = ListCheckpoints(dir_);
  if (all.empty()) return std::optional<std::string>();
  return std::optional<std::string>((fs::path(dir_) / all.back().second).string());
}

absl::StatusOr<CheckpointInfo> ReadTrainingCheckpointInfo(const std::string& path) {
  WFM_ASSIGN_OR_RETURN(std::string text, ReadFile((fs::path(path) / "state.json").string()), "checkpoint ", path);
  nlohmann::json state = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (state.is_discarded() || !state.is_object() || state.value("format", "") != kFormat || !state.contains("step"))
    return absl::DataLossError(absl::StrCat(path, "/state.json: not a wfm training checkpoint (format ", kFormat, ")"));
  CheckpointInfo info;
  info.path = path;
  info.step = state["step"].get<int64_t>();
  info.config = state.value("config", nlohmann::json::object());
  info.extra = state.value("extra", nlohmann::json::object());
  return info;
}

absl::StatusOr<CheckpointInfo> LoadTrainingCheckpoint(const std::string& path, const CheckpointItems& items) {
  WFM_ASSIGN_OR_RETURN(CheckpointInfo info, ReadTrainingCheckpointInfo(path));
  WFM_ASSIGN_OR_RETURN(std::string text, ReadFile((fs::path(path) / "state.json").string()));
  const nlohmann::json state = nlohmann::json::parse(text);
  auto read = [&](const std::string& item) -> absl::StatusOr<TensorMap> {
    const std::string file = (fs::path(path) / (item + ".safetensors")).string();
    if (!fs::exists(file))
      return absl::NotFoundError(absl::StrCat("checkpoint ", path, " has no ", item, ".safetensors"));
    return ReadSafetensors(file);
  };
  absl::Status s = CatchToStatus("loading checkpoint", [&]() -> absl::Status {
    for (const auto& [n, m] : items.modules) {
      WFM_ASSIGN_OR_RETURN(TensorMap t, read(n));
      LoadOptions exact;
      exact.rules = NamedNameRules("none");
      WFM_RETURN_IF_ERROR(LoadStateDict(*m, t, exact, n + ".safetensors").status());
    }
    for (const auto& [n, e] : items.emas) {
      WFM_ASSIGN_OR_RETURN(TensorMap t, read(n));
      int64_t updates = 0;
      if (state.contains("ema") && state["ema"].contains(n)) updates = state["ema"][n].value("num_updates", 0);
      WFM_RETURN_IF_ERROR(e->LoadStateDict(t, updates), n, ".safetensors");
    }
    for (const auto& [n, o] : items.optimizers) {
      WFM_ASSIGN_OR_RETURN(TensorMap t, read(n));
      WFM_RETURN_IF_ERROR(o->LoadStateDict(t), n, ".safetensors");
    }
    if (items.torch_rng) {
      WFM_ASSIGN_OR_RETURN(TensorMap t, read("rng"));
      WFM_RETURN_IF_ERROR(RestoreTorchRngState(t));
    }
    return absl::OkStatus();
  });
  WFM_RETURN_IF_ERROR(s, "checkpoint ", path);
  return info;
}

}  // namespace wfm::train
