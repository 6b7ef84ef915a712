// Diffusion maths: preconditioning formulas, schedules, and the integrators driven by the exact analytic
// denoiser of a 1-D Gaussian mixture (so the only error is the integrator's and the sampling noise).
#include <cmath>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include "test_support.h"
#include "wfm/diffusion/parametrization.h"
#include "wfm/diffusion/sampler.h"

namespace wfm::diffusion {
namespace {

// p0 = sum_k w_k N(mu_k, s_k^2). At noise level sigma, p_sigma = sum_k w_k N(mu_k, s_k^2 + sigma^2) and
// E[x0 | x] = sum_k r_k(x) (mu_k + s_k^2 / (s_k^2 + sigma^2) (x - mu_k)) with r_k the posterior weights.
struct Mixture {
  std::vector<double> w{0.3, 0.7}, mu{-1.0, 1.5}, s{0.6, 0.8};

  at::Tensor Denoise(const at::Tensor& x, double sigma) const {
    std::vector<at::Tensor> logr, mean;
    for (size_t k = 0; k < w.size(); ++k) {
      const double v = s[k] * s[k] + sigma * sigma;
      logr.push_back(std::log(w[k]) - 0.5 * std::log(v) - (x - mu[k]).pow(2) / (2 * v));
      mean.push_back(mu[k] + (x - mu[k]) * (s[k] * s[k] / v));
    }
    const at::Tensor r = at::softmax(at::stack(logr), 0);  // [K, N]
    return (r * at::stack(mean)).sum(0);
  }
  at::Tensor Cdf(const at::Tensor& x, double sigma) const {
    at::Tensor c = at::zeros_like(x);
    for (size_t k = 0; k < w.size(); ++k)
      c += w[k] * 0.5 * (1 + at::erf((x - mu[k]) / std::sqrt(2 * (s[k] * s[k] + sigma * sigma))));
    return c;
  }
  // The n quantiles (i + 0.5) / n of p_sigma, by bisection. The 1-D probability-flow ODE is monotone, so it
  // carries these quantiles of p_sigma_max onto quantiles of the model's p_0: their moments are the model's
  // moments up to a quadrature error far below the tolerances (no Monte-Carlo noise in the comparison).
  at::Tensor Quantiles(int64_t n, double sigma) const {
    const at::Tensor u = (at::arange(n, at::kDouble) + 0.5) / n;
    at::Tensor lo = at::full({n}, -20.0 * (sigma + 3), at::kDouble), hi = -lo;
    for (int it = 0; it < 200; ++it) {
      const at::Tensor mid = (lo + hi) * 0.5;
      const at::Tensor below = Cdf(mid, sigma) < u;
      lo = at::where(below, mid, lo);
      hi = at::where(below, hi, mid);
    }
    return (lo + hi) * 0.5;
  }
  double Mean() const {
    double m = 0;
    for (size_t k = 0; k < w.size(); ++k) m += w[k] * mu[k];
    return m;
  }
  double Var() const {
    double m2 = 0;
    for (size_t k = 0; k < w.size(); ++k) m2 += w[k] * (s[k] * s[k] + mu[k] * mu[k]);
    return m2 - Mean() * Mean();
  }
};

struct Moments {
  double mean_rel, var_rel;
  double worst() const { return std::max(mean_rel, var_rel); }
};
// Runs the sampler from the exact noisy marginal at sigma_max = 80 and compares the result's moments with the
// mixture's (relative errors).
Moments SampleMoments(Integrator integrator, int steps, int64_t n = 20000) {
  Mixture m;
  DenoiseFn d = [&m](const at::Tensor& x, double sigma) { return m.Denoise(x, sigma); };
  SamplerOptions o;
  o.integrator = integrator;
  const at::Tensor out = Sample(d, m.Quantiles(n, 80.0), KarrasSigmas(steps), o);
  const double mean = out.mean().item<double>(), var = out.var(/*unbiased=*/false).item<double>();
  if (n >= 20000)
    std::printf("%s %d steps: mean %.5f (truth %.5f), var %.5f (truth %.5f)\n", IntegratorName(integrator).c_str(),
                steps, mean, m.Mean(), var, m.Var());
  return {std::abs(mean - m.Mean()) / std::abs(m.Mean()), std::abs(var - m.Var()) / m.Var()};
}

TEST(Parametrization, EdmScalingsEqualTheFormulas) {
  EdmParametrization edm;  // sigma_data 0.5
  const double sd = 0.5;
  for (double s : {0.0002, 0.002, 0.1, 0.5, 1.0, 7.0, 80.0}) {
    const Preconditioning c = edm.At(s);
    EXPECT_NEAR(c.c_skip, sd * sd / (s * s + sd * sd), 1e-15) << "sigma " << s;
    EXPECT_NEAR(c.c_out, s * sd / std::sqrt(s * s + sd * sd), 1e-15) << "sigma " << s;
    EXPECT_NEAR(c.c_in, 1.0 / std::sqrt(s * s + sd * sd), 1e-12) << "sigma " << s;
    EXPECT_NEAR(c.c_noise, 0.25 * std::log(s), 1e-15) << "sigma " << s;
    // Tensor form agrees with the scalar form; loss weight is 1 / c_out^2 (EDM eq. 8).
    const at::Tensor st = at::full({1}, s, at::kDouble);
    const PreconditioningTensors ct = edm.At(st);
    EXPECT_NEAR(ct.c_skip.item<double>(), c.c_skip, 1e-15);
    EXPECT_NEAR(ct.c_out.item<double>(), c.c_out, 1e-15);
    EXPECT_NEAR(ct.c_in.item<double>(), c.c_in, 1e-12);
    EXPECT_NEAR(ct.c_noise.item<double>(), c.c_noise, 1e-15);
    EXPECT_NEAR(edm.LossWeight(st).item<double>() * c.c_out * c.c_out, 1.0, 1e-12);
  }
}

TEST(Parametrization, RectifiedFlowRecoversX0FromTheVelocity) {
  RectifiedFlowParametrization rf;
  const at::Tensor x0 = at::randn({64}, at::dtype(at::kDouble)), eps = at::randn({64}, at::dtype(at::kDouble));
  for (double s : {0.002, 0.3, 1.0, 80.0}) {
    const Preconditioning c = rf.At(s);
    const double t = s / (1 + s);
    EXPECT_NEAR(c.c_noise, t, 1e-15);
    const at::Tensor x = x0 + s * eps;
    // The network sees x_t = (1 - t) x0 + t eps and predicts v = eps - x0.
    EXPECT_LT(wfm::testing::MaxAbsDiff(x * c.c_in, (1 - t) * x0 + t * eps), 1e-12);
    EXPECT_LT(wfm::testing::MaxAbsDiff(c.c_skip * x + c.c_out * (eps - x0), x0), 1e-12) << "sigma " << s;
  }
}

TEST(Parametrization, NetworkOutputForInvertsTheOutputMap) {
  for (const char* name : {"edm", "rectified_flow"}) {
    auto p = MakeParametrization(name).value();
    const at::Tensor x = at::randn({32}, at::dtype(at::kDouble)), x0 = at::randn({32}, at::dtype(at::kDouble));
    const double s = 3.0;
    const Preconditioning c = p->At(s);
    const at::Tensor f = p->NetworkOutputFor(x0, x, s);
    EXPECT_LT(wfm::testing::MaxAbsDiff(c.c_skip * x + c.c_out * f, x0), 1e-12) << name;
  }
  EXPECT_FALSE(MakeParametrization("ddpm").ok());
}

TEST(Parametrization, LogNormalTrainingSigma) {
  LogNormalSigma ln;
  ln.p_mean = -1.2;
  ln.p_std = 1.2;
  at::Generator g = at::make_generator<at::CPUGeneratorImpl>(3);
  const at::Tensor s = ln.Sample(200000, g);
  EXPECT_GT(s.min().item<double>(), 0.0);
  EXPECT_NEAR(s.log().mean().item<double>(), -1.2, 0.01);
  EXPECT_NEAR(s.log().std().item<double>(), 1.2, 0.01);
}

TEST(Schedule, KarrasEndpointsAndOrder) {
  const std::vector<double> s = KarrasSigmas(35);
  ASSERT_EQ(s.size(), 36u);
  EXPECT_DOUBLE_EQ(s.front(), 80.0);
  EXPECT_DOUBLE_EQ(s.back(), 0.0002);
  for (size_t i = 0; i + 1 < s.size(); ++i) EXPECT_GT(s[i], s[i + 1]);
  // rho = 7: sigma^(1/7) is linear in the step index.
  const double a = std::pow(s[0], 1 / 7.0), b = std::pow(s[1], 1 / 7.0), c = std::pow(s[2], 1 / 7.0);
  EXPECT_NEAR(a - b, b - c, 1e-12);

  ScheduleOptions o;
  o.kind = ScheduleKind::kLogLinear;
  o.append_zero = true;
  const std::vector<double> g = MakeSchedule(10, o);
  ASSERT_EQ(g.size(), 12u);
  EXPECT_EQ(g.back(), 0.0);
  EXPECT_NEAR(g[1] / g[0], g[2] / g[1], 1e-12);
  EXPECT_FALSE(ParseScheduleKind("cosine").ok());
}

// Tolerances: 2% on mean and variance. The Karras schedule (rho 7) takes large steps around sigma ~ 1, so a
// first-order integrator needs ~1000 steps for 2%; Heun gets there in 50 (and in ~35 for ~1.5%).
TEST(Sampler, EulerManyStepsMatchesMixtureMoments) {
  const Moments m = SampleMoments(Integrator::kEuler, 1000);
  EXPECT_LT(m.mean_rel, 0.02) << "HINT: Euler with 1000 Karras steps should follow the probability-flow ODE";
  EXPECT_LT(m.var_rel, 0.02) << "HINT: Euler with 1000 Karras steps should follow the probability-flow ODE";
}

TEST(Sampler, HeunFewStepsMatchesMixtureMoments) {
  const Moments m = SampleMoments(Integrator::kHeun, 50);
  EXPECT_LT(m.mean_rel, 0.02);
  EXPECT_LT(m.var_rel, 0.02);
}

TEST(Sampler, ResMultistepAndMidpointMatchMixtureMoments) {
  for (Integrator in : {Integrator::kRes2Ab, Integrator::kRes2Mid}) {
    const Moments m = SampleMoments(in, 50);
    EXPECT_LT(m.mean_rel, 0.02) << IntegratorName(in);
    EXPECT_LT(m.var_rel, 0.02) << IntegratorName(in);
  }
}

TEST(Sampler, HeunReachesAGivenErrorInFewerStepsThanEuler) {
  const double tol = 0.02;
  auto steps_needed = [&](Integrator in) {
    for (int steps : {4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048}) {
      if (SampleMoments(in, steps, 2000).worst() < tol) return steps;
    }
    return 1 << 30;
  };
  const int heun = steps_needed(Integrator::kHeun), euler = steps_needed(Integrator::kEuler);
  std::printf("steps to moment error < %g: heun %d (%d NFE), euler %d (%d NFE)\n", tol, heun,
              CountDenoiserCalls(Integrator::kHeun, KarrasSigmas(heun)), euler,
              CountDenoiserCalls(Integrator::kEuler, KarrasSigmas(euler)));
  EXPECT_LT(heun, euler);
  // Second order also wins per network evaluation.
  EXPECT_LT(CountDenoiserCalls(Integrator::kHeun, KarrasSigmas(heun)),
            CountDenoiserCalls(Integrator::kEuler, KarrasSigmas(euler)));
}

TEST(Sampler, CountsDenoiserCalls) {
  Mixture m;
  for (Integrator in : {Integrator::kEuler, Integrator::kHeun, Integrator::kRes2Mid, Integrator::kRes2Ab}) {
    for (bool zero : {false, true}) {
      ScheduleOptions so;
      so.append_zero = zero;
      const std::vector<double> sigmas = MakeSchedule(5, so);
      int calls = 0;
      SamplerOptions o;
      o.integrator = in;
      Sample([&](const at::Tensor& v, double s) { ++calls; return m.Denoise(v, s); },
             at::randn({8}, at::dtype(at::kDouble)) * 80, sigmas, o);
      EXPECT_EQ(calls, CountDenoiserCalls(in, sigmas)) << IntegratorName(in) << " zero=" << zero;
    }
  }
}

TEST(Sampler, SeedDeterminism) {
  const at::Tensor a = InitialNoise({3, 4, 5}, 42), b = InitialNoise({3, 4, 5}, 42), c = InitialNoise({3, 4, 5}, 43);
  EXPECT_TRUE(a.equal(b));
  EXPECT_FALSE(a.equal(c));
  // Sample i depends only on seed + i, not on the batch size.
  EXPECT_TRUE(InitialNoise({1, 4, 5}, 43)[0].equal(a[1]));
  EXPECT_TRUE(InitialNoise({5, 4, 5}, 42).slice(0, 0, 3).equal(a));

  // A stochastic (churn) run is reproducible given the same generator seed.
  Mixture m;
  auto run = [&](uint64_t seed) {
    SamplerOptions o;
    o.integrator = Integrator::kHeun;
    o.s_churn = 10;
    o.churn_generator = at::make_generator<at::CPUGeneratorImpl>(seed);
    return Sample([&m](const at::Tensor& v, double s) { return m.Denoise(v, s); },
                  InitialNoise({1, 64}, 9, c10::Device(c10::kCPU), at::kDouble) * 80, KarrasSigmas(10), o);

  };
  EXPECT_TRUE(run(1).equal(run(1)));
  EXPECT_FALSE(run(1).equal(run(2)));
}

TEST(Guidance, ScaleZeroIsTheConditionalModelAndMinusOneTheUnconditional) {
  int uncond_calls = 0;
  DenoiseFn cond = [](const at::Tensor& x, double s) { return x * 0.5 + s; };
  DenoiseFn uncond = [&](const at::Tensor& x, double s) { ++uncond_calls; return x * 0.25 - s; };
  const at::Tensor x = at::randn({16}, at::dtype(at::kDouble));
  EXPECT_TRUE(GuidedDenoiser(cond, uncond, 0.0)(x, 2.0).equal(cond(x, 2.0)));
  EXPECT_EQ(uncond_calls, 0) << "scale 0 must not evaluate the unconditional model";
  EXPECT_LT(wfm::testing::MaxAbsDiff(GuidedDenoiser(cond, uncond, -1.0)(x, 2.0), uncond(x, 2.0)), 1e-15);
  // Cosmos convention: cond + 7 (cond - uncond).
  const at::Tensor g = GuidedDenoiser(cond, uncond, 7.0)(x, 2.0);
  EXPECT_LT(wfm::testing::MaxAbsDiff(g, cond(x, 2.0) * 8 - uncond(x, 2.0) * 7), 1e-12);
}

TEST(Sampler, RejectsMalformedSchedules) {
  Mixture m;
  DenoiseFn d = [&m](const at::Tensor& v, double s) { return m.Denoise(v, s); };
  const at::Tensor x = at::randn({4}, at::dtype(at::kDouble));
  EXPECT_THROW(Sample(d, x, {80.0}), c10::Error);
  EXPECT_THROW(Sample(d, x, {1.0, 2.0}), c10::Error);
  EXPECT_THROW(Sample(d, x, {1.0, 0.0, 0.0}), c10::Error);
  EXPECT_FALSE(ParseIntegrator("dpm++").ok());
  EXPECT_EQ(ParseIntegrator("res").value(), Integrator::kRes2Ab);
}

}  // namespace
}  // namespace wfm::diffusion
