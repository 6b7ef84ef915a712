// Atomic, resumable training checkpoints.
//
// Layout (one directory per checkpoint, so a crash never leaves a half-written one visible):
//   OUT/checkpoints/step_00001000/
//     model.safetensors         module state dicts (parameters + buffers), reference names -> loadable as weights
//     model_ema.safetensors     EMA shadows (same names: the usual file to evaluate or publish)
//     optimizer.safetensors     AdamW state: NAME.exp_avg, NAME.exp_avg_sq, NAME.step
//     rng.safetensors           LibTorch generator states
//     state.json                {"format", "step", "config", "extra", "ema": {name: {"num_updates"}}, "files"}
//   OUT/checkpoints/latest      the name of the newest complete checkpoint (written atomically last)
// A checkpoint is written into a temporary sibling directory, fsynced and renamed into place; older ones beyond
// keep_last are removed afterwards. Saving then loading restores everything needed for a bit-exact resume.
//
//   train::CheckpointItems items;
//   items.modules["model"] = model.get(); items.emas["model_ema"] = &ema; items.optimizers["optimizer"] = &opt;
//   train::CheckpointManager ckpt(out_dir + "/checkpoints", /*keep_last=*/3);
//   WFM_RETURN_IF_ERROR(ckpt.Save(step, items, config_json, extra_json));
//   WFM_ASSIGN_OR_RETURN(auto latest, ckpt.Latest());
//   if (latest) WFM_ASSIGN_OR_RETURN(auto info, train::LoadTrainingCheckpoint(*latest, items));
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "wfm/core/tensor_map.h"

namespace torch::nn {
class Module;
}

namespace wfm::train {

class AdamW;
class Ema;

// What a checkpoint holds; pointers are not owned. Each name becomes NAME.safetensors.
struct CheckpointItems {
  std::map<std::string, torch::nn::Module*> modules;
  std::map<std::string, Ema*> emas;
  std::map<std::string, AdamW*> optimizers;
  bool torch_rng = true;
};

struct CheckpointInfo {
  std::string path;
  int64_t step = 0;
  nlohmann::json config;  // the training configuration it was written with
  nlohmann::json extra;   // trainer / data-loader state
};

class CheckpointManager {
 public:
  explicit CheckpointManager(std::string dir, int keep_last = 3);
  const std::string& dir() const { return dir_; }

  absl::Status Save(int64_t step, const CheckpointItems& items, const nlohmann::json& config,
                    const nlohmann::json& extra = nlohmann::json::object());
  // The newest complete checkpoint directory (from `latest`, else the highest step_* with a state.json).
  absl::StatusOr<std::optional<std::string>> Latest() const;

 private:
  absl::Status Prune(const std::string& keep_name);
  std::string dir_;
  int keep_last_;
};

// Restores every item from checkpoint directory `path` (strict: missing / unexpected / mis-shaped tensors are
// one error listing them all, via the core loader with no name mapping). Files for items the checkpoint lacks are
// an error.
absl::StatusOr<CheckpointInfo> LoadTrainingCheckpoint(const std::string& path, const CheckpointItems& items);
// Reads only state.json.
absl::StatusOr<CheckpointInfo> ReadTrainingCheckpointInfo(const std::string& path);

}  // namespace wfm::train
