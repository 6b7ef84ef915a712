// Diffusion samplers as three swappable pieces (STYLE practice 6):
//   schedule    -> a descending list of noise levels sigma_0 > sigma_1 > ... > sigma_N (> 0 or ending in 0)
//   denoiser    -> DenoiseFn(x, sigma) returning the x0 prediction (any parametrisation, see parametrization.h)
//   integrator  -> walks the probability-flow ODE dx/dsigma = (x - D(x, sigma)) / sigma down the schedule.
// The state is the variance-exploding x = x0 + sigma * eps for every parametrisation (rectified flow included:
// Cosmos-Predict2 samples in the same sigma space; the parametrisation hides t = sigma / (1 + sigma)).
//
// Integrators (reference: cosmos_predict1/diffusion/functional/{runge_kutta,multi_step}.py, res_sampler.py):
//   euler : first order, 1 network evaluation (NFE) per step ("1euler").
//   heun  : EDM 2nd order (Karras et al. 2022, Algorithm 1): Euler predictor, trapezoidal corrector on
//           d = (x - D) / sigma; 2 NFE per step (1 on a step that ends at sigma = 0).
//   2mid  : RES 2nd-order Runge-Kutta, midpoint sqrt(s t), exponential integrator in lambda = -ln(sigma); 2 NFE.
//   2ab   : RES 2nd-order Adams-Bashforth multistep (Cosmos' default "2ab"; Predict2's RectifiedFlowAB2Scheduler);
//           1 NFE per step, reuses the previous x0 prediction. CLI name "res".
//
//   std::vector<double> sigmas = KarrasSigmas(35);                 // 80 -> 0.0002, rho 7
//   at::Tensor x = InitialNoise({2, 16, 16, 88, 160}, seed) * sigmas.front();
//   SamplerOptions o; o.integrator = Integrator::kHeun;
//   at::Tensor x0 = Sample(denoise, x, sigmas, o);
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace wfm::diffusion {

// x0 prediction at noise level sigma for the state x (same shape as x).
using DenoiseFn = std::function<at::Tensor(const at::Tensor& x, double sigma)>;

// ---- schedules ----

enum class ScheduleKind {
  kKarras,     // (s_max^(1/rho) + i/N (s_min^(1/rho) - s_max^(1/rho)))^rho  (EDM; Cosmos get_rev_ts)
  kLogLinear,  // geometric: uniform in ln(sigma) ("exponential" in k-diffusion)
  kLinear,     // uniform in sigma
};
absl::StatusOr<ScheduleKind> ParseScheduleKind(absl::string_view name);  // karras | loglinear | linear
std::string ScheduleKindName(ScheduleKind kind);

struct ScheduleOptions {
  ScheduleKind kind = ScheduleKind::kKarras;
  double sigma_max = 80.0;
  double sigma_min = 0.0002;
  double rho = 7.0;              // Karras only
  bool append_zero = false;      // end with sigma = 0 (the last step then lands exactly on the x0 prediction)
};

// `steps` + 1 descending noise levels from sigma_max to sigma_min (+ a trailing 0 when append_zero).
std::vector<double> MakeSchedule(int steps, const ScheduleOptions& options = {});
// Karras et al. schedule with Cosmos' defaults: 80 -> 0.0002, rho 7.
std::vector<double> KarrasSigmas(int steps, double sigma_min = 0.0002, double sigma_max = 80.0, double rho = 7.0);

// ---- integrators ----

enum class Integrator { kEuler, kHeun, kRes2Mid, kRes2Ab };
// euler|1euler, heun|2heun, 2mid|res_2mid, res|2ab|ab2.
absl::StatusOr<Integrator> ParseIntegrator(absl::string_view name);
std::string IntegratorName(Integrator integrator);

struct StepInfo {
  int step = 0;          // 0-based index of the step just finished
  int num_steps = 0;
  double sigma = 0;      // start of the step
  double sigma_next = 0; // end of the step
  const at::Tensor* x = nullptr;   // state after the step
  const at::Tensor* x0 = nullptr;  // last x0 prediction
};

struct SamplerOptions {
  Integrator integrator = Integrator::kRes2Ab;
  // EDM stochastic sampling ("churn", Karras et al. Algorithm 2): at steps with s_tmin <= sigma <= s_tmax the
  // state is re-noised to sigma_hat = sigma * (1 + gamma), gamma = min(s_churn / N, sqrt(2) - 1). 0 = deterministic.
  double s_churn = 0.0;
  double s_tmin = 0.0;
  double s_tmax = std::numeric_limits<double>::infinity();
  double s_noise = 1.0;
  c10::optional<at::Generator> churn_generator;  // CPU generator for the churn noise (default: global)
  // When the schedule ends above 0, finish with one more denoiser call at the last sigma and return its x0
  // prediction (Cosmos' `sample_clean`). Otherwise the state at the last sigma is returned.
  bool denoise_final = true;
  std::function<void(const StepInfo&)> callback;  // after every step (progress, previews)
};

// Runs the integrator over `sigmas` (descending, >= 2 entries, all > 0 except possibly the last) from the state
// `x` at sigmas[0]. Arithmetic is in x's dtype with double-precision coefficients. TORCH_CHECKs on a malformed
// schedule (callers validate user input first).
at::Tensor Sample(const DenoiseFn& denoise, at::Tensor x, const std::vector<double>& sigmas,
                  const SamplerOptions& options = {});

// Network evaluations Sample() makes for this schedule and integrator (without churn), for progress/ETA.
int CountDenoiserCalls(Integrator integrator, const std::vector<double>& sigmas, bool denoise_final = true);

// ---- single steps (exposed for tests and custom loops) ----

// x at sigma `t` on the straight line through (s, x_s) and (0, x0_s): x0 + t/s (x_s - x0).
at::Tensor EulerStep(const at::Tensor& x_s, double s, double t, const at::Tensor& x0_s);
// RES second-order step from s to t using x0 predictions at s and at an auxiliary level s1 (cosmos
// res_x0_rk2_step): exponential integrator in lambda = -ln(sigma) with phi functions.
at::Tensor ResRk2Step(const at::Tensor& x_s, double s, double t, const at::Tensor& x0_s, double s1,
                      const at::Tensor& x0_s1);

// ---- guidance ----

// Classifier-free guidance in Cosmos' convention: cond + scale * (cond - uncond). scale 0 is the conditional
// model alone; scale -1 is the unconditional (or negative-prompt) model alone.
at::Tensor ApplyGuidance(const at::Tensor& cond_x0, const at::Tensor& uncond_x0, double scale);
// Wraps two denoisers (conditional, unconditional / negative prompt) into a guided one. With scale 0 the
// unconditional denoiser is never called.
DenoiseFn GuidedDenoiser(DenoiseFn cond, DenoiseFn uncond, double scale);

// ---- seedable noise ----

// Standard normal noise of `shape` (dim 0 = samples), reproducible across devices and batch sizes: sample i is
// drawn on the CPU from its own generator seeded with seed + i, then moved to `device`.
at::Tensor InitialNoise(at::IntArrayRef shape, uint64_t seed, c10::Device device = c10::Device(c10::kCPU),
                        at::ScalarType dtype = at::kFloat);

}  // namespace wfm::diffusion
