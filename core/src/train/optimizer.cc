// AdamW with named parameter groups, LR schedules, gradient clipping (see train/optimizer.h).
// AdamW::Step follows torch/csrc/api/src/optim/adamw.cpp (LibTorch 1.13+) = torch.optim.AdamW single-tensor path.
#include "wfm/core/train/optimizer.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace wfm::train {

bool DefaultNoWeightDecay(const std::string& name, const at::Tensor& param) {
  if (param.dim() < 2) return true;
  const std::string lower = absl::AsciiStrToLower(name);
  for (const char* key : {"norm", "bias", "embed", "pos_emb", "ln_", "scale_shift"})
    if (absl::StrContains(lower, key)) return true;
  return false;
}

AdamW::AdamW(std::vector<ParamGroup> groups, AdamWOptions options) : groups_(std::move(groups)), options_(options) {
  size_t n = 0;
  for (const auto& g : groups_) n += g.params.size();
  state_.resize(n);
}

AdamW AdamW::ForModule(const torch::nn::Module& module, AdamWOptions options,
                       const std::function<bool(const std::string&, const at::Tensor&)>& no_decay,
                       const std::string& prefix) {
  ParamGroup decay{"decay", {}, options.weight_decay, 1.0};
  ParamGroup plain{"no_decay", {}, 0.0, 1.0};
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    const at::Tensor& p = item.value();
    if (!p.requires_grad()) continue;
    const bool skip = no_decay ? no_decay(item.key(), p) : DefaultNoWeightDecay(item.key(), p);
    (skip ? plain : decay).params.push_back({prefix + item.key(), p});
  }
  std::vector<ParamGroup> groups;
  if (!decay.params.empty()) groups.push_back(std::move(decay));
  if (!plain.params.empty()) groups.push_back(std::move(plain));
  return AdamW(std::move(groups), options);
}

std::vector<at::Tensor> AdamW::parameters() const {
  std::vector<at::Tensor> out;
  for (const auto& g : groups_)
    for (const auto& p : g.params) out.push_back(p.tensor);
  return out;
}

int64_t AdamW::num_parameters() const {
  int64_t n = 0;
  for (const auto& g : groups_)
    for (const auto& p : g.params) n += p.tensor.numel();
  return n;
}

void AdamW::ZeroGrad() {
  for (const auto& g : groups_)
    for (const auto& p : g.params) {
      // Tensor::grad() returns a const reference to the autograd slot; mutable_grad() resets it.
      if (p.tensor.grad().defined()) p.tensor.mutable_grad().reset();
    }
}

void AdamW::Step() {
  at::NoGradGuard no_grad;
  const double beta1 = options_.beta1, beta2 = options_.beta2;
  size_t index = 0;
  for (const auto& g : groups_) {
    const double lr = options_.lr * g.lr_scale;
    for (const auto& np : g.params) {
      State& st = state_[index++];
      at::Tensor p = np.tensor;
      const at::Tensor& grad = p.grad();
      if (!grad.defined()) continue;
      if (!st.exp_avg.defined()) {
        st.exp_avg = at::zeros_like(p, at::MemoryFormat::Preserve);
        st.exp_avg_sq = at::zeros_like(p, at::MemoryFormat::Preserve);
      }
      if (g.weight_decay != 0) p.mul_(1 - lr * g.weight_decay);
      st.step += 1;
      const double bias_correction1 = 1 - std::pow(beta1, static_cast<double>(st.step));
      const double bias_correction2 = 1 - std::pow(beta2, static_cast<double>(st.step));
      st.exp_avg.mul_(beta1).add_(grad, 1 - beta1);
      st.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2);
      at::Tensor denom = (st.exp_avg_sq.sqrt() / std::sqrt(bias_correction2)).add_(options_.eps);
      p.addcdiv_(st.exp_avg, denom, -lr / bias_correction1);
    }
  }
}

TensorMap AdamW::StateDict() const {
  TensorMap out;
  size_t index = 0;
  for (const auto& g : groups_)
    for (const auto& np : g.params) {
      const State& st = state_[index++];
      if (!st.exp_avg.defined()) continue;
      out[np.name + ".exp_avg"] = st.exp_avg;
      out[np.name + ".exp_avg_sq"] = st.exp_avg_sq;
      out[np.name + ".step"] = at::scalar_tensor(st.step, at::kLong);
    }
  return out;
}

absl::Status AdamW::LoadStateDict(const TensorMap& state, bool allow_missing) {
  std::vector<std::string> problems, missing;
  std::map<std::string, size_t> index_of;
  std::vector<const NamedParameter*> params;
  for (const auto& g : groups_)
    for (const auto& np : g.params) {
      index_of[np.name] = params.size();
      params.push_back(&np);
    }
  std::vector<State> loaded(params.size());
  std::vector<int> seen(params.size(), 0);
  for (const auto& [key, t] : state) {
    const size_t dot = key.rfind('.');
    const std::string name = dot == std::string::npos ? key : key.substr(0, dot);
    const std::string field = dot == std::string::npos ? "" : key.substr(dot + 1);
    auto it = index_of.find(name);
    if (it == index_of.end() || (field != "exp_avg" && field != "exp_avg_sq" && field != "step")) {
      problems.push_back(absl::StrCat("unexpected key ", key));
      continue;
    }
    const at::Tensor& p = params[it->second]->tensor;
    State& st = loaded[it->second];
    if (field == "step") {
      if (t.numel() != 1) {
        problems.push_back(absl::StrCat(key, ": expected a scalar"));
        continue;
      }
      st.step = t.to(at::kLong).item<int64_t>();
      seen[it->second] |= 1;
    } else {
      if (t.sizes() != p.sizes()) {
        problems.push_back(absl::StrCat(key, ": shape [", absl::StrJoin(t.sizes(), ","), "] vs parameter [",
                                        absl::StrJoin(p.sizes(), ","), "]"));
        continue;
      }
      at::Tensor copy = t.to(p.device(), p.scalar_type(), /*non_blocking=*/false, /*copy=*/true).contiguous();
      (field == "exp_avg" ? st.exp_avg : st.exp_avg_sq) = copy;
      seen[it->second] |= field == "exp_avg" ? 2 : 4;
    }
  }
  for (size_t i = 0; i < params.size(); ++i) {
    if (seen[i] == 7) continue;
    if (seen[i] == 0) {
      missing.push_back(params[i]->name);
    } else {
      problems.push_back(absl::StrCat(params[i]->name, ": incomplete state (needs exp_avg, exp_avg_sq, step)"));
    }
  }
  if (!missing.empty() && !allow_missing)
    problems.push_back(absl::StrCat("no state for ", missing.size(), " parameter(s): ",
                                    absl::StrJoin(missing.begin(), missing.begin() + std::min<size_t>(missing.size(), 8), ", "),
                                    missing.size() > 8 ? ", ..." : ""));
  if (!problems.empty())
    return absl::InvalidArgumentError(absl::StrCat("optimizer state does not match the parameters: ",
                                                   absl::StrJoin(problems, "; ")));
  state_ = std::move(loaded);
  return absl::OkStatus();
}

double LrSchedule::At(int64_t step) const {
  if (warmup_steps > 0 && step < warmup_steps)
    return base_lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  if (kind == kConstant) return base_lr;
  const int64_t decay_steps = std::max<int64_t>(1, total_steps - warmup_steps);
  const double progress = std::clamp(static_cast<double>(step - warmup_steps) / decay_steps, 0.0, 1.0);
  const double factor = kind == kCosine ? 0.5 * (1.0 + std::cos(M_PI * progress)) : 1.0 - progress;
  return min_lr + (base_lr - min_lr) * factor;
}

absl::StatusOr<LrSchedule::Kind> LrSchedule::ParseKind(absl::string_view name) {
  if (name == "constant") return kConstant;
  if (name == "cosine") return kCosine;
  if (name == "linear") return kLinear;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown learning-rate schedule '", name, "' (expected constant, cosine or linear)"));
}

double ClipGradNorm(const std::vector<at::Tensor>& params, double max_norm) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return 0.0;
  std::vector<at::Tensor> norms;
  norms.reserve(grads.size());
  for (const auto& g : grads) norms.push_back(g.norm(2).to(at::kFloat));
  at::Tensor total = norms.size() == 1 ? norms[0] : at::stack(norms).norm(2);
  const double norm = total.item<double>();
  if (!std::isfinite(norm) || max_norm <= 0) return norm;
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0)
    for (auto& g : grads) g.mul_(coef);
  return norm;
}

}  // namespace wfm::train
