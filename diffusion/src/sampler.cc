// Noise schedules, ODE integrators over a denoise(x, sigma) callback, guidance and seedable noise (sampler.h).
#include "wfm/diffusion/sampler.h"

#include <cmath>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace wfm::diffusion {

absl::StatusOr<ScheduleKind> ParseScheduleKind(absl::string_view name) {
  const std::string n = absl::AsciiStrToLower(name);
  if (n == "karras" || n == "edm") return ScheduleKind::kKarras;
  if (n == "loglinear" || n == "log-linear" || n == "exponential") return ScheduleKind::kLogLinear;
  if (n == "linear") return ScheduleKind::kLinear;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown noise schedule '", name, "' (expected karras, loglinear or linear)"));
}

std::string ScheduleKindName(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::kKarras: return "karras";
    case ScheduleKind::kLogLinear: return "loglinear";
    case ScheduleKind::kLinear: return "linear";
  }
  return "?";
}

std::vector<double> MakeSchedule(int steps, const ScheduleOptions& o) {
  TORCH_CHECK(steps >= 1, "a schedule needs at least one step, got ", steps);
  TORCH_CHECK(o.sigma_min > 0 && o.sigma_max > o.sigma_min, "need 0 < sigma_min < sigma_max, got ", o.sigma_min,
              ", ", o.sigma_max);
  std::vector<double> sigmas(static_cast<size_t>(steps) + 1);
  for (int i = 0; i <= steps; ++i) {
    const double f = static_cast<double>(i) / steps;
    switch (o.kind) {
      case ScheduleKind::kKarras: {  // cosmos res_sampler.py get_rev_ts
        const double a = std::pow(o.sigma_max, 1.0 / o.rho), b = std::pow(o.sigma_min, 1.0 / o.rho);
        sigmas[i] = std::pow(a + f * (b - a), o.rho);
        break;
      }
      case ScheduleKind::kLogLinear:
        sigmas[i] = std::exp(std::log(o.sigma_max) + f * (std::log(o.sigma_min) - std::log(o.sigma_max)));
        break;
      case ScheduleKind::kLinear:
        sigmas[i] = o.sigma_max + f * (o.sigma_min - o.sigma_max);
        break;
    }
  }
  sigmas.front() = o.sigma_max;
  sigmas.back() = o.sigma_min;
  if (o.append_zero) sigmas.push_back(0.0);
  return sigmas;
}

std::vector<double> KarrasSigmas(int steps, double sigma_min, double sigma_max, double rho) {
  ScheduleOptions o;
  o.sigma_min = sigma_min;
  o.sigma_max = sigma_max;
  o.rho = rho;
  return MakeSchedule(steps, o);
}

absl::StatusOr<Integrator> ParseIntegrator(absl::string_view name) {
  const std::string n = absl::AsciiStrToLower(name);
  if (n == "euler" || n == "1euler") return Integrator::kEuler;
  if (n == "heun" || n == "2heun" || n == "2heun_edm") return Integrator::kHeun;
  if (n == "2mid" || n == "res_2mid" || n == "res-2mid") return Integrator::kRes2Mid;
  if (n == "res" || n == "2ab" || n == "ab2" || n == "res_2ab") return Integrator::kRes2Ab;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown sampler '", name, "' (expected euler, heun, res (= 2ab) or 2mid)"));
}

std::string IntegratorName(Integrator integrator) {
  switch (integrator) {
    case Integrator::kEuler: return "euler";
    case Integrator::kHeun: return "heun";
    case Integrator::kRes2Mid: return "2mid";
    case Integrator::kRes2Ab: return "2ab";
  }
  return "?";
}

// cosmos runge_kutta.py reg_x0_euler_step: coef_x0 = (s - t) / s, coef_xs = t / s.
at::Tensor EulerStep(const at::Tensor& x_s, double s, double t, const at::Tensor& x0_s) {
  if (t == 0.0) return x0_s;
  return x_s * (t / s) + x0_s * ((s - t) / s);
}

// cosmos runge_kutta.py res_x0_rk2_step (RES, Zhang et al. 2023, arXiv 2308.02157).
at::Tensor ResRk2Step(const at::Tensor& x_s, double s, double t, const at::Tensor& x0_s, double s1,
                      const at::Tensor& x0_s1) {
  const double ls = -std::log(s), lt = -std::log(t), lm = -std::log(s1);
  const double dt = lt - ls;
  TORCH_CHECK(std::abs(dt) > 1e-6 && std::abs(lm - ls) > 1e-6, "RES step too small: s=", s, " t=", t, " s1=", s1);
  const double c2 = (lm - ls) / dt;
  const double phi1 = std::expm1(-dt) / (-dt);
  const double phi2 = (phi1 - 1.0) / (-dt);
  const double b1 = phi1 - phi2 / c2, b2 = phi2 / c2;
  return x_s * std::exp(-dt) + x0_s * (dt * b1) + x0_s1 * (dt * b2);
}

namespace {
void CheckSchedule(const std::vector<double>& sigmas) {
  TORCH_CHECK(sigmas.size() >= 2, "a schedule needs at least two noise levels");
  for (size_t i = 0; i + 1 < sigmas.size(); ++i) {
    TORCH_CHECK(sigmas[i] > 0 && std::isfinite(sigmas[i]), "noise level ", i, " must be finite and > 0, got ",
                sigmas[i]);
    TORCH_CHECK(sigmas[i + 1] < sigmas[i], "noise levels must decrease: sigma[", i, "]=", sigmas[i], ", sigma[",
                i + 1, "]=", sigmas[i + 1]);
  }
  TORCH_CHECK(sigmas.back() >= 0, "the last noise level must be >= 0");
}
}  // namespace

at::Tensor Sample(const DenoiseFn& denoise, at::Tensor x, const std::vector<double>& sigmas,
                  const SamplerOptions& o) {
  CheckSchedule(sigmas);
  const int n = static_cast<int>(sigmas.size()) - 1;
  const double gamma = o.s_churn > 0 ? std::min(o.s_churn / n, std::sqrt(2.0) - 1.0) : 0.0;
  at::Tensor x0, prev_x0;
  double prev_sigma = 0;
  for (int i = 0; i < n; ++i) {
    double s = sigmas[i];
    const double t = sigmas[i + 1];
    if (gamma > 0 && s >= o.s_tmin && s <= o.s_tmax) {  // EDM Algorithm 2, lines 4-6
      const double s_hat = s * (1.0 + gamma);
      at::Tensor z = at::empty(x.sizes(), x.options().device(at::kCPU));
      z.normal_(0.0, 1.0, o.churn_generator);
      x = x + z.to(x.device()) * (std::sqrt(s_hat * s_hat - s * s) * o.s_noise);
      s = s_hat;
    }
    switch (o.integrator) {
      case Integrator::kEuler:
        x0 = denoise(x, s);
        x = EulerStep(x, s, t, x0);
        break;
      case Integrator::kHeun: {  // EDM Algorithm 1: trapezoid on d = (x - D) / sigma
        x0 = denoise(x, s);
        at::Tensor x_next = EulerStep(x, s, t, x0);
        if (t > 0) {
          const at::Tensor x0_t = denoise(x_next, t);
          const at::Tensor d = (x - x0) / s + (x_next - x0_t) / t;
          x_next = x + d * ((t - s) * 0.5);
          x0 = x0_t;
        }
        x = x_next;
        break;
      }
      case Integrator::kRes2Mid: {  // runge_kutta.py rk2_mid
        x0 = denoise(x, s);
        if (t == 0) {
          x = x0;
          break;
        }
        const double s1 = std::sqrt(s * t);
        const at::Tensor x0_s1 = denoise(EulerStep(x, s, s1, x0), s1);
        x = ResRk2Step(x, s, t, x0, s1, x0_s1);
        x0 = x0_s1;
        break;
      }
      case Integrator::kRes2Ab: {  // multi_step.py order2_fn
        x0 = denoise(x, s);
        const at::Tensor x0_now = x0;
        x = (prev_x0.defined() && t > 0) ? ResRk2Step(x, s, t, x0, prev_sigma, prev_x0) : EulerStep(x, s, t, x0);
        prev_x0 = x0_now;
        prev_sigma = s;
        break;
      }
    }
    if (o.callback) {
      StepInfo info;
      info.step = i;
      info.num_steps = n;
      info.sigma = s;
      info.sigma_next = t;
      info.x = &x;
      info.x0 = &x0;
      o.callback(info);
    }
  }
  if (o.denoise_final && sigmas.back() > 0) x = denoise(x, sigmas.back());
  return x;
}

int CountDenoiserCalls(Integrator integrator, const std::vector<double>& sigmas, bool denoise_final) {
  if (sigmas.size() < 2) return 0;
  int calls = 0;
  for (size_t i = 0; i + 1 < sigmas.size(); ++i) {
    const bool to_zero = sigmas[i + 1] == 0.0;
    calls += (integrator == Integrator::kHeun || integrator == Integrator::kRes2Mid) && !to_zero ? 2 : 1;
  }
  if (denoise_final && sigmas.back() > 0) ++calls;
  return calls;
}

at::Tensor ApplyGuidance(const at::Tensor& cond_x0, const at::Tensor& uncond_x0, double scale) {
  if (scale == 0.0) return cond_x0;
  return cond_x0 + (cond_x0 - uncond_x0) * scale;
}

DenoiseFn GuidedDenoiser(DenoiseFn cond, DenoiseFn uncond, double scale) {
  if (scale == 0.0) return cond;
  return [cond = std::move(cond), uncond = std::move(uncond), scale](const at::Tensor& x, double sigma) {
    return ApplyGuidance(cond(x, sigma), uncond(x, sigma), scale);
  };
}

at::Tensor InitialNoise(at::IntArrayRef shape, uint64_t seed, c10::Device device, at::ScalarType dtype) {
  TORCH_CHECK(!shape.empty() && shape[0] >= 1, "noise shape needs a sample dimension");
  std::vector<at::Tensor> samples;
  samples.reserve(static_cast<size_t>(shape[0]));
  for (int64_t i = 0; i < shape[0]; ++i) {
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed + static_cast<uint64_t>(i));
    samples.push_back(at::randn(shape.slice(1), gen, at::TensorOptions().dtype(at::kFloat)));
  }
  return at::stack(samples).to(device, dtype);
}

}  // namespace wfm::diffusion
