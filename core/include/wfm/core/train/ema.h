// Exponential moving average of a module's weights, with swap-in for evaluation and saving.
//
// shadow <- d * shadow + (1 - d) * param after each optimizer step, with d = min(decay, (1 + n) / (10 + n)) when
// `warmup` is on (n = number of updates so far), so early averages are not dominated by the random init.
// Buffers (e.g. running statistics) are copied, not averaged. Shadows are float32 (or the parameter's dtype if
// wider) on the parameter's device. State-dict names equal the module's, so an EMA file is a loadable model.
//
//   train::Ema ema(*model, 0.999);
//   ...; opt.Step(); ema.Update();
//   { train::Ema::ScopedSwap swap(ema); Evaluate(*model); }   // the module holds the EMA weights inside
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "wfm/core/tensor_map.h"

namespace torch::nn {
class Module;
}

namespace wfm::train {

class Ema {
 public:
  Ema(torch::nn::Module& module, double decay, bool warmup = true);

  void Update();
  // Puts the EMA weights into the module (in place), keeping the live ones aside; call again to swap back.
  void Swap();
  bool swapped() const { return swapped_; }

  double decay() const { return decay_; }
  int64_t num_updates() const { return num_updates_; }
  // The decay the next Update() will use.
  double CurrentDecay() const;

  // Shadow weights under the module's state-dict names (parameters and buffers).
  TensorMap StateDict() const;
  // Loads shadows written by StateDict(); every name must exist with the same shape (missing or extra names are
  // an error listing them).
  absl::Status LoadStateDict(const TensorMap& state, int64_t num_updates);

  class ScopedSwap {
   public:
    explicit ScopedSwap(Ema& ema) : ema_(ema) { ema_.Swap(); }
    ~ScopedSwap() { ema_.Swap(); }
    ScopedSwap(const ScopedSwap&) = delete;
    ScopedSwap& operator=(const ScopedSwap&) = delete;

   private:
    Ema& ema_;
  };

 private:
  struct Entry {
    std::string name;
    at::Tensor live;    // the module's tensor
    at::Tensor shadow;  // the average
    at::Tensor backup;  // the live weights while swapped
    bool is_param;
  };
  std::vector<Entry> entries_;
  double decay_;
  bool warmup_;
  int64_t num_updates_ = 0;
  bool swapped_ = false;
};

}  // namespace wfm::train
