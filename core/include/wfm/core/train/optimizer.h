// The optimisation pieces every wfm trainer shares: AdamW over named parameter groups (no weight decay on norms,
// biases and embeddings), learning-rate schedules (warmup + cosine / linear / constant), gradient clipping and
// gradient accumulation.
//
// AdamW is implemented here rather than taken from torch::optim so that its state is keyed by parameter NAME
// (checkpoints are portable across processes and model rebuilds, and saved as safetensors). Its arithmetic is
// torch.optim.AdamW's (decoupled decay p *= 1 - lr*wd, bias-corrected moments, per-parameter step counts), op
// for op, so results equal torch::optim::AdamW bit for bit (tested).
//
//   train::AdamW opt = train::AdamW::ForModule(*model, {.lr = 3e-4, .weight_decay = 0.05});
//   train::LrSchedule sched{.kind = train::LrSchedule::kCosine, .base_lr = 3e-4, .warmup_steps = 100,
//                           .total_steps = 10000};
//   opt.ZeroGrad();
//   loss.backward();
//   double norm = train::ClipGradNorm(opt.parameters(), 1.0);
//   opt.set_lr(sched.At(step));
//   opt.Step();
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "wfm/core/tensor_map.h"

namespace torch::nn {
class Module;
}

namespace wfm::train {

struct NamedParameter {
  std::string name;
  at::Tensor tensor;
};

// One group of parameters with its own weight decay and learning-rate multiplier.
struct ParamGroup {
  std::string name;
  std::vector<NamedParameter> params;
  double weight_decay = 0.0;
  double lr_scale = 1.0;
};

// The default no-decay rule: tensors with fewer than 2 dimensions (biases, norm scales/shifts, scalars) and any
// parameter whose name mentions a norm, a bias or an embedding ("norm", "bias", "embed", "pos_emb", "ln_",
// "scale_shift"). Conv / linear weight matrices get weight decay.
bool DefaultNoWeightDecay(const std::string& name, const at::Tensor& param);

struct AdamWOptions {
  double lr = 1e-4;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;  // applied to the "decay" group only (see ForModule)
};

class AdamW {
 public:
  AdamW(std::vector<ParamGroup> groups, AdamWOptions options);

  // Two groups over the module's trainable parameters (requires_grad): "decay" (options.weight_decay) and
  // "no_decay" (0), split by `no_decay` (default DefaultNoWeightDecay). `prefix` is prepended to names.
  static AdamW ForModule(const torch::nn::Module& module, AdamWOptions options,
                         const std::function<bool(const std::string&, const at::Tensor&)>& no_decay = {},
                         const std::string& prefix = "");

  // Sets every gradient to undefined (like zero_grad(set_to_none=true)).
  void ZeroGrad();
  // One AdamW update of every parameter that has a gradient, with the current learning rate (times the group's
  // lr_scale). Parameters without a gradient are skipped and their step count does not advance.
  void Step();

  double lr() const { return options_.lr; }
  void set_lr(double lr) { options_.lr = lr; }
  const AdamWOptions& options() const { return options_; }
  const std::vector<ParamGroup>& groups() const { return groups_; }
  std::vector<at::Tensor> parameters() const;
  int64_t num_parameters() const;  // elements

  // Optimizer state as tensors: "NAME.exp_avg", "NAME.exp_avg_sq" (parameter dtype/shape) and "NAME.step"
  // (int64 scalar) for every parameter that has been updated at least once.
  TensorMap StateDict() const;
  // Restores a StateDict(): every key must name a known parameter with the right shape; parameters missing from
  // `state` start fresh only if `allow_missing`. Tensors are copied to each parameter's device and dtype.
  absl::Status LoadStateDict(const TensorMap& state, bool allow_missing = false);

 private:
  struct State {
    at::Tensor exp_avg, exp_avg_sq;
    int64_t step = 0;
  };
  std::vector<ParamGroup> groups_;
  AdamWOptions options_;
  std::vector<State> state_;  // one per parameter, in group order
};

// Learning-rate schedule: linear warmup from ~0 to base_lr over warmup_steps (step s gets base*(s+1)/warmup),
// then constant, cosine or linear decay to min_lr at total_steps.
struct LrSchedule {
  enum Kind { kConstant, kCosine, kLinear };
  Kind kind = kCosine;
  double base_lr = 1e-4;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  double min_lr = 0.0;

  double At(int64_t step) const;
  // "constant" | "cosine" | "linear".
  static absl::StatusOr<Kind> ParseKind(absl::string_view name);
};

// Scales the gradients so that their global L2 norm is at most `max_norm` (torch.nn.utils.clip_grad_norm_
// arithmetic: coef = max_norm / (norm + 1e-6), clamped to 1). Returns the norm BEFORE clipping; non-finite if any
// gradient is NaN/Inf (gradients are then left untouched so the caller can skip the step). max_norm <= 0 only
// measures.
double ClipGradNorm(const std::vector<at::Tensor>& params, double max_norm);

// Counts micro-batches for gradient accumulation: scale each micro-batch loss by loss_scale() and call
// Advance() after each backward; it returns true when the optimizer should step (every `micro_steps`).
class GradAccumulation {
 public:
  explicit GradAccumulation(int micro_steps = 1) : micro_steps_(micro_steps < 1 ? 1 : micro_steps) {}
  int micro_steps() const { return micro_steps_; }
  double loss_scale() const { return 1.0 / micro_steps_; }
  int index() const { return index_; }  // micro-batch index within the current step
  bool Advance() {
    if (++index_ < micro_steps_) return false;
    index_ = 0;
    return true;
  }

 private:
  int micro_steps_;
  int index_ = 0;
};

}  // namespace wfm::train
