// EMA of module weights (see train/ema.h).
#include "wfm/core/train/ema.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace wfm::train {

Ema::Ema(torch::nn::Module& module, double decay, bool warmup) : decay_(decay), warmup_(warmup) {
  at::NoGradGuard no_grad;
  auto add = [&](const std::string& name, const at::Tensor& t, bool is_param) {
    at::ScalarType dt = t.scalar_type();
    if (at::isFloatingType(dt) && c10::elementSize(dt) < 4) dt = at::kFloat;
    entries_.push_back({name, t, t.detach().to(dt, /*non_blocking=*/false, /*copy=*/true), at::Tensor(), is_param});
  };
  for (const auto& item : module.named_parameters(true)) add(item.key(), item.value(), true);
  for (const auto& item : module.named_buffers(true)) add(item.key(), item.value(), false);
}

double Ema::CurrentDecay() const {
  if (!warmup_) return decay_;
  const double n = static_cast<double>(num_updates_);
  return std::min(decay_, (1.0 + n) / (10.0 + n));
}

void Ema::Update() {
  TORCH_CHECK(!swapped_, "Ema::Update called while the EMA weights are swapped in");
  at::NoGradGuard no_grad;
  const double d = CurrentDecay();
  for (auto& e : entries_) {
    if (e.is_param && at::isFloatingType(e.shadow.scalar_type())) {
      e.shadow.mul_(d).add_(e.live.detach().to(e.shadow.scalar_type()), 1.0 - d);
    } else {
      e.shadow.copy_(e.live.detach());
    }
  }
  ++num_updates_;
}

void Ema::Swap() {
  at::NoGradGuard no_grad;
  for (auto& e : entries_) {
    if (!swapped_) {
      // The live weights are stashed, the shadow stays untouched: swapping never rounds the average through the
      // module's dtype.
      e.backup = e.live.detach().clone();
      e.live.detach().copy_(e.shadow);
    } else {
      e.live.detach().copy_(e.backup);
      e.backup = at::Tensor();
    }
  }
  swapped_ = !swapped_;
}

TensorMap Ema::StateDict() const {
  TORCH_CHECK(!swapped_, "Ema::StateDict called while the EMA weights are swapped in");
  TensorMap out;
  for (const auto& e : entries_) out[e.name] = e.shadow;
  return out;
}

absl::Status Ema::LoadStateDict(const TensorMap& state, int64_t num_updates) {
  if (swapped_) return absl::FailedPreconditionError("Ema::LoadStateDict while the EMA weights are swapped in");
  std::vector<std::string> problems;
  std::set<std::string> known;
  for (const auto& e : entries_) {
    known.insert(e.name);
    auto it = state.find(e.name);
    if (it == state.end()) {
      problems.push_back(absl::StrCat("missing ", e.name));
    } else if (it->second.sizes() != e.shadow.sizes()) {
      problems.push_back(absl::StrCat(e.name, ": shape [", absl::StrJoin(it->second.sizes(), ","), "] vs [",
                                      absl::StrJoin(e.shadow.sizes(), ","), "]"));
    }
  }
  for (const auto& [name, t] : state)
    if (!known.count(name)) problems.push_back(absl::StrCat("unexpected ", name));
  if (!problems.empty())
    return absl::InvalidArgumentError(absl::StrCat("EMA state does not match the module: ", absl::StrJoin(problems, "; ")));
  at::NoGradGuard no_grad;
  for (auto& e : entries_) e.shadow.copy_(state.at(e.name));
  num_updates_ = num_updates;
  return absl::OkStatus();
}

}  // namespace wfm::train
