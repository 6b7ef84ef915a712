// T5 encoder speed: ms per prompt for t5-small- and t5-base-shaped random weights (float32, CPU unless
// WFM_BENCH_DEVICE=cuda): args {batch, tokens}. 512 tokens is what Cosmos computes for every prompt (padding to
// max_length); 64 tokens is what T5TextEncoder computes for a typical caption (it runs over the longest prompt
// of the batch and zero-pads the output to 512, with identical values). Plus the built-in byte encoder. Compare with the eager-torch
// reference: /usr/bin/python3 tests/text/t5_reference.py --bench small|base [BATCH].
//
//   build/bin/text_benchmark --benchmark_filter=T5
#include <benchmark/benchmark.h>

#include <ATen/ATen.h>

#include <chrono>
#include <cstdlib>

#include "wfm/core/runtime.h"
#include "wfm/core/text/builtin_encoder.h"
#include "wfm/core/text/t5.h"

namespace {

using wfm::text::T5Config;

c10::Device BenchDevice() {
  const char* d = std::getenv("WFM_BENCH_DEVICE");
  auto device = wfm::ParseDevice(d ? d : "cpu");
  return device.ok() ? *device : c10::Device(c10::kCPU);
}

void Sync(const c10::Device& d) {
  if (d.is_cuda()) at::ones({1}, at::TensorOptions().device(d)).sum().item<float>();  // waits for the stream
}

void BM_T5Encoder(benchmark::State& state, const std::string& preset) {
  wfm::InitThreads();
  const int64_t batch = state.range(0), length = state.range(1);
  auto config = T5Config::Preset(preset);
  if (!config.ok()) {
    state.SkipWithError(std::string(config.status().message()).c_str());
    return;
  }
  const c10::Device device = BenchDevice();
  wfm::text::T5EncoderModel model(*config);
  wfm::text::InitT5Weights(model, 0);
  model->to(device);
  model->eval();
  at::NoGradGuard no_grad;
  const at::Tensor ids = at::randint(2, 32000, {batch, length}, at::kLong).to(device);  // [B, 512]
  const at::Tensor mask = at::ones({batch, length}, at::kBool).to(device);               // [B, 512]
  model->forward(ids, mask);  // warm-up
  Sync(device);
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    benchmark::DoNotOptimize(model->forward(ids, mask));
    Sync(device);
  }
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  state.counters["ms_per_prompt"] = ms / static_cast<double>(state.iterations() * batch);
  state.counters["tokens_per_s"] = benchmark::Counter(static_cast<double>(batch * length),
                                                      benchmark::Counter::kIsIterationInvariantRate);
}
// CPU time is that of the whole process (all intra-op threads): robust to a machine shared with other jobs.
BENCHMARK_CAPTURE(BM_T5Encoder, t5_small, std::string("t5-small"))
    ->Args({1, 512})->Args({4, 512})->Args({1, 64})->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();
BENCHMARK_CAPTURE(BM_T5Encoder, t5_base, std::string("t5-base"))
    ->Args({1, 512})->Args({1, 64})->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();

// The built-in encoder (defaults: d_model 256, 4 layers) on a typical caption, max_length 256 bytes.
void BM_BuiltinEncoder(benchmark::State& state) {
  wfm::InitThreads();
  wfm::text::BuiltinTextEncoderOptions o;
  o.pad_to_max_length = false;
  auto enc = wfm::text::CreateBuiltinTextEncoder(o);
  if (!enc.ok()) {
    state.SkipWithError(std::string(enc.status().message()).c_str());
    return;
  }
  (*enc)->module()->eval();
  at::NoGradGuard no_grad;
  const std::vector<std::string> prompts(static_cast<size_t>(state.range(0)),
                                         "A robot arm picks up a blue cup from the kitchen table while the camera "
                                         "slowly pans to the left.");
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) benchmark::DoNotOptimize((*enc)->Encode(prompts));
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  state.counters["ms_per_prompt"] = ms / static_cast<double>(state.iterations() * state.range(0));
}
BENCHMARK(BM_BuiltinEncoder)->Arg(8)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();

}  // namespace

BENCHMARK_MAIN();
