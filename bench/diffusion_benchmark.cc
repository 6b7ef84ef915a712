// Diffusion world-model speed and memory on the CPU presets (tiny: D 64 x 2 blocks, small: D 384 x 6, medium:
// D 768 x 12; Predict1 7B is D 4096 x 28):
//   BM_DiTForward/preset/tokens   one network evaluation of a CFG pair (batch 2), latent 16 x T x H x W with
//                                 tokens = T*H*W/4 (1x2x2 patches); items/s = tokens/s
//   BM_GenerateStep/preset/cache  one sampling step of DiffusionWorldModel::Generate (2ab, guidance 7: one batched
//                                 cond+uncond evaluation), latent 16x4x16x16 (256 tokens), 512 text tokens;
//                                 cache 1 = cross-attention K/V projected once per sample (the default), 0 = at
//                                 every step; items/s = steps/s
//   BM_IntegratorOverhead/kind    the integrator's own tensor arithmetic per step at the Predict1 default latent
//                                 size 16x16x88x160, with a free denoiser (what the sampler adds to the network)
// Counters: params_mb (weights), peak_rss_mb (process high-water mark so far; runs go from small to large).
// Run: WFM_NUM_THREADS=1 build/bin/diffusion_benchmark --benchmark_min_time=0.5 (single-thread CPU time is the
// number that survives a shared, loaded machine; WFM_NUM_THREADS=2 for wall time on an idle one).
#include <sys/resource.h>

#include <ATen/ATen.h>
#include <benchmark/benchmark.h>
#include <torch/csrc/autograd/grad_mode.h>

#include "wfm/core/runtime.h"
#include "wfm/diffusion/sampler.h"
#include "wfm/diffusion/world_model.h"

namespace {

using namespace wfm::diffusion;

const char* kPresets[] = {"tiny", "small", "medium"};

GeneralDiT& Net(int preset) {
  static std::map<int, GeneralDiT> nets;
  auto it = nets.find(preset);
  if (it == nets.end()) {
    wfm::InitThreads();
    at::manual_seed(0);
    GeneralDiT net(DiTConfig::Preset(kPresets[preset]).value());
    net->eval();
    it = nets.emplace(preset, net).first;
  }
  return it->second;
}

double ParamsMb(GeneralDiT& net) {
  double n = 0;
  for (const auto& p : net->parameters()) n += static_cast<double>(p.numel());
  return n * 4 / 1e6;
}

double PeakRssMb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024.0;
}

// tokens -> a latent grid [T, H, W] with T*H*W/4 = tokens.
std::array<int64_t, 3> Grid(int64_t tokens) {
  switch (tokens) {
    case 64: return {1, 16, 16};
    case 256: return {4, 16, 16};
    case 1024: return {4, 32, 32};
    case 4096: return {16, 32, 32};
    default: return {1, 2, 2 * tokens};
  }
}

void BM_DiTForward(benchmark::State& state) {
  torch::NoGradGuard g;
  GeneralDiT& net = Net(static_cast<int>(state.range(0)));
  const int64_t tokens = state.range(1);
  const auto [T, H, W] = Grid(tokens);
  const DiTConfig& c = net->config();
  DiTInputs in;
  in.x = at::randn({2, 16, T, H, W});
  in.timesteps = at::full({2}, 0.25 * std::log(3.0));
  in.crossattn_emb = at::randn({2, 512, c.crossattn_emb_channels});
  for (auto _ : state) benchmark::DoNotOptimize(net->Forward(in));
  state.SetItemsProcessed(state.iterations() * tokens * 2);
  state.counters["params_mb"] = ParamsMb(net);
  state.counters["peak_rss_mb"] = PeakRssMb();
  state.SetLabel(kPresets[state.range(0)]);
}
BENCHMARK(BM_DiTForward)
    ->Args({0, 64})->Args({0, 256})->Args({0, 1024})->Args({0, 4096})
    ->Args({1, 256})->Args({1, 1024})
    ->Args({2, 256})
    ->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_GenerateStep(benchmark::State& state) {
  GeneralDiT& net = Net(static_cast<int>(state.range(0)));
  DiffusionWorldModel wm(net.ptr(), std::make_unique<EdmParametrization>());
  TextConditioning text{at::randn({1, 512, net->config().crossattn_emb_channels}), {}};
  GenerateOptions o;
  o.num_steps = 4;
  o.guidance = 7.0;
  o.cache_cross_attention = state.range(1) != 0;
  int64_t steps = 0;
  for (auto _ : state) {
    auto x = wm.Generate({16, 4, 16, 16}, text, {}, o);
    if (!x.ok()) state.SkipWithError(std::string(x.status().message()).c_str());
    steps += o.num_steps;
  }
  state.SetItemsProcessed(steps);
  state.counters["peak_rss_mb"] = PeakRssMb();
  state.SetLabel(std::string(kPresets[state.range(0)]) + (o.cache_cross_attention ? " kv-cache" : " no-cache"));
}
BENCHMARK(BM_GenerateStep)
    ->Args({0, 0})->Args({0, 1})->Args({1, 0})->Args({1, 1})->Args({2, 0})->Args({2, 1})
    ->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_IntegratorOverhead(benchmark::State& state) {
  const Integrator in = static_cast<Integrator>(state.range(0));
  const at::Tensor x = at::randn({1, 16, 16, 88, 160}) * 80;
  const at::Tensor x0 = at::randn_like(x);
  const DenoiseFn free_denoiser = [&](const at::Tensor&, double) { return x0; };
  SamplerOptions o;
  o.integrator = in;
  o.denoise_final = false;
  const std::vector<double> sigmas = KarrasSigmas(35);
  for (auto _ : state) benchmark::DoNotOptimize(Sample(free_denoiser, x, sigmas, o));
  state.SetItemsProcessed(state.iterations() * 35);
  state.SetLabel(IntegratorName(in));
}
BENCHMARK(BM_IntegratorOverhead)->DenseRange(0, 3, 1)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
