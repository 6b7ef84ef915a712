// Tokenizer speed on CPU: encode and decode ms per frame (wall clock and CPU time of all threads) of the CV8x8x8
// network at small width (channels 8, the fixture size) and full width (channels 128, the published size), at
// 17x256x256 and 9x360x640, with random weights (speed does not depend on the values).
//
//   build/bin/tokenizer_benchmark --benchmark_filter=Full         (WFM_NUM_THREADS=2 to match the reference)
//
// Memory (streaming vs windowed peak RSS) is measured per process by scripts/tokenizer_benchmark.sh.
// Set WFM_TOKENIZER_PROFILE=trace.json to write a Chrome trace of the ATen ops of the first iteration.
#include <ATen/ATen.h>
#include <benchmark/benchmark.h>
#include <sys/resource.h>
#include <torch/csrc/autograd/profiler_legacy.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>

#include "wfm/core/runtime.h"
#include "wfm/tokenizer/network.h"

namespace {
using namespace wfm::tokenizer;

double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + 1e-6 * (u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

TokenizerNetwork& Network(int64_t channels) {
  static std::map<int64_t, TokenizerNetwork> cache;
  auto it = cache.find(channels);
  if (it == cache.end()) {
    TokenizerConfig c = TokenizerConfig::Preset("CV8x8x8").value();
    c.channels = channels;
    TokenizerNetwork net(c);
    net->eval();
    it = cache.emplace(channels, net).first;
  }
  return it->second;
}

// args: channels, frames, height, width, decode?
void BM_Tokenizer(benchmark::State& state) {
  wfm::InitThreads();
  const int64_t channels = state.range(0), T = state.range(1), H = state.range(2), W = state.range(3);
  const bool decode = state.range(4) != 0;
  TokenizerNetwork& net = Network(channels);
  c10::InferenceMode guard;
  at::manual_seed(0);
  at::Tensor x = at::rand({1, 3, T, H, W}) * 2 - 1;
  at::Tensor z = decode ? net->Encode(x).latent : at::Tensor();
  const char* profile = std::getenv("WFM_TOKENIZER_PROFILE");
  double wall = 0, cpu = 0;
  int64_t n = 0;
  for (auto _ : state) {
    std::unique_ptr<torch::autograd::profiler::RecordProfile> prof;
    if (profile != nullptr && n == 0) prof = std::make_unique<torch::autograd::profiler::RecordProfile>(profile);
    const double c0 = CpuSeconds();
    const auto t0 = std::chrono::steady_clock::now();
    at::Tensor out = decode ? net->Decode(z) : net->Encode(x).latent;
    benchmark::DoNotOptimize(out.data_ptr());
    wall += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    cpu += CpuSeconds() - c0;
    ++n;
  }
  state.counters["ms_per_frame"] = 1000.0 * wall / (n * T);
  state.counters["cpu_ms_per_frame"] = 1000.0 * cpu / (n * T);
  state.counters["threads"] = at::get_num_threads();
}

void Args(benchmark::internal::Benchmark* b, int64_t channels) {
  for (int64_t decode : {0, 1}) {
    b->Args({channels, 17, 256, 256, decode});
    b->Args({channels, 9, 360, 640, decode});
  }
  b->ArgNames({"ch", "T", "H", "W", "decode"})->Unit(benchmark::kMillisecond)->UseRealTime();
}

BENCHMARK(BM_Tokenizer)->Name("CV8x8x8_Small")->Apply([](auto* b) { Args(b, 8); });
BENCHMARK(BM_Tokenizer)->Name("CV8x8x8_Full")->Apply([](auto* b) { Args(b, 128); })->Iterations(1);

}  // namespace

BENCHMARK_MAIN();
