// AR world-model speed on the CPU-sized "small" shape (dim 256, 4 layers, 4 heads / 2 KV heads, QK-norm, vocab
// 64000 — the shape of REFERENCE.md section 2, whose Python reference decodes 112 tokens/s on this machine):
//   BM_DecodeCached/ctx     one incremental step with the KV cache at context ctx (tokens/s = items/s)
//   BM_DecodeCachedBf16Head  the cached step with the output projection in bfloat16 (opt-in, inexact)
//   BM_DecodeCachedInt8Head  ... with the int8 weight-only output projection (opt-in, inexact)
//   BM_DecodeCachedAten     the cached step through the per-op ATen path instead of the fused decode step (A/B)
//   BM_DecodeRecompute/ctx  the same next-token logits by a full forward over ctx tokens without a cache
//   BM_DecodeBatch/B        one cached step for B futures at context 1024 (tokens/s over all B)
//   BM_Prefill/len          batched prompt prefill (tokens/s)
//   BM_Generate             GenerateTokens end to end: 1 prompt frame (256 tokens) + 256 sampled (top-p 0.9)
//   BM_SampleTopP/peaked    the top-p 0.9 sampler on one row of 64000 logits, flat (0) or peaked (1)
//   BM_ReadBandwidth/MB     memory read bandwidth over a buffer of MB megabytes (the floor of a decode step)
//   BM_OutputProjection/M/k  the 64000 x 256 output projection of M rows: k = 0 at::linear, 1 ar::DecodeLinear
//   BM_TrainLoss/chunk      one training forward + backward (TeacherForcedLoss, B=2 x 3 latent frames: 1024
//                           predicted positions x 64000 codes) with the plain (-1) or chunked (0 = auto) loss;
//                           peak_MB = peak RSS growth over the step (VmHWM after a reset via /proc/self/clear_refs)
// Run: WFM_NUM_THREADS=1 build/bin/ar_benchmark --benchmark_min_time=1 (CPU = process CPU time, all threads);
// the Python side: OMP_NUM_THREADS=1 /usr/bin/python3 scripts/ar_reference_bench.py --threads 1.
#include <atomic>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>

#include "wfm/autoregressive/generate.h"
#include "wfm/autoregressive/sampling.h"
#include "wfm/autoregressive/train.h"
#include "wfm/autoregressive/transformer.h"
#include "wfm/core/runtime.h"

namespace {

using wfm::ar::ArConfig;
using wfm::ar::ArTransformer;

// "small" with a 16x16x16 grid so that contexts up to 4096 have positions.
ArTransformer& Net() {
  static ArTransformer net = [] {
    wfm::InitThreads();
    ArConfig c = *ArConfig::Preset("small");
    c.video_latent_shape = {16, 16, 16};
    c.max_seq_len = c.VideoTokens();
    ArTransformer n(c);
    n->InitWeights(0);
    n->eval();
    return n;
  }();
  return net;
}

at::Tensor Tokens(int64_t b, int64_t n) { return at::randint(0, 64000, {b, n}, at::kLong); }

void BM_DecodeCached(benchmark::State& state) {
  at::NoGradGuard g;
  const int64_t ctx = state.range(0);
  auto& net = Net();
  wfm::ar::KvCache cache = net->NewCache(1, ctx);
  net->forward(Tokens(1, ctx - 1), 0, &cache, nullptr, true);
  const at::Tensor tok = Tokens(1, 1);
  for (auto _ : state) {
    cache.set_length(ctx - 1);  // re-run the same last position
    benchmark::DoNotOptimize(net->forward(tok, ctx - 1, &cache, nullptr, true));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DecodeCached)->Arg(256)->Arg(1024)->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();

// The same step with the output projection in bfloat16 (set_output_dtype): half the vocabulary-matrix traffic.
void BM_DecodeCachedBf16Head(benchmark::State& state) {
  auto& net = Net();
  net->set_output_dtype(at::kBFloat16);
  BM_DecodeCached(state);
  net->set_output_dtype(std::nullopt);
}
BENCHMARK(BM_DecodeCachedBf16Head)->Arg(1024)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();

// ... with the int8 weight-only output head (set_output_dtype(at::kChar)): a quarter of the traffic.
void BM_DecodeCachedInt8Head(benchmark::State& state) {
  auto& net = Net();
  net->set_output_dtype(at::kChar);
  BM_DecodeCached(state);
  net->set_output_dtype(std::nullopt);
}
BENCHMARK(BM_DecodeCachedInt8Head)->Arg(1024)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();

// ... through the ATen per-op path (set_fused_decode(false)): the A/B baseline of the fused decode step.
void BM_DecodeCachedAten(benchmark::State& state) {
  auto& net = Net();
  net->set_fused_decode(false);
  BM_DecodeCached(state);
  net->set_fused_decode(true);
}
BENCHMARK(BM_DecodeCachedAten)->Arg(1024)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();

void BM_DecodeRecompute(benchmark::State& state) {
  at::NoGradGuard g;
  const int64_t ctx = state.range(0);
  auto& net = Net();
  const at::Tensor seq = Tokens(1, ctx);
  for (auto _ : state) benchmark::DoNotOptimize(net->forward(seq, 0, nullptr, nullptr, true));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DecodeRecompute)->Arg(256)->Arg(1024)->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();

void BM_DecodeBatch(benchmark::State& state) {
  at::NoGradGuard g;
  const int64_t b = state.range(0), ctx = 1024;
  auto& net = Net();
  wfm::ar::KvCache one = net->NewCache(1, ctx);
  net->forward(Tokens(1, ctx - 1), 0, &one, nullptr, true);
  wfm::ar::KvCache cache = one.Gather(std::vector<int64_t>(b, 0));
  const at::Tensor tok = Tokens(b, 1);
  for (auto _ : state) {
    cache.set_length(ctx - 1);
    benchmark::DoNotOptimize(net->forward(tok, ctx - 1, &cache, nullptr, true));
  }
  state.SetItemsProcessed(state.iterations() * b);
}
BENCHMARK(BM_DecodeBatch)->DenseRange(1, 8, 1)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();

void BM_Prefill(benchmark::State& state) {
  at::NoGradGuard g;
  const int64_t n = state.range(0);
  auto& net = Net();
  wfm::ar::KvCache cache = net->NewCache(1, n);
  const at::Tensor seq = Tokens(1, n);
  for (auto _ : state) {
    cache.Reset();
    benchmark::DoNotOptimize(net->forward(seq, 0, &cache, nullptr, true));
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_Prefill)->Arg(256)->Arg(1024)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();

void BM_Generate(benchmark::State& state) {
  static ArTransformer net = [] {
    ArTransformer n(*ArConfig::Preset("small"));  // 4x16x16 grid
    n->InitWeights(0);
    n->eval();
    return n;
  }();
  const at::Tensor prompt = Tokens(1, 256).view({-1});
  wfm::ar::GenerationOptions o;
  o.sampling.top_p = 0.9;
  o.show_progress = false;
  int64_t tokens = 0;
  double decode_s = 0;
  for (auto _ : state) {
    auto r = wfm::ar::GenerateTokens(*net, prompt, 2, nullptr, o);
    if (!r.ok()) state.SkipWithError(std::string(r.status().message()).c_str());
    tokens += r->generated_tokens;
    decode_s += r->decode_seconds;
  }
  state.SetItemsProcessed(tokens);
  state.counters["decode_tok_per_s"] = tokens / std::max(decode_s, 1e-9);
  state.counters["tokens"] = static_cast<double>(tokens);
}
BENCHMARK(BM_Generate)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime()->Iterations(3);

// The top-p 0.9 sampler alone on one row of 64000 logits: arg 0 = flat (N(0, 1) logits, as random weights give:
// the nucleus holds most codes, full sort), 1 = peaked (N(0, 1) * 8: a trained model's few-code nucleus).
void BM_SampleTopP(benchmark::State& state) {
  at::manual_seed(0);
  const at::Tensor logits = at::randn({1, 64000}) * (state.range(0) ? 8.0 : 1.0);
  auto policy = *wfm::ar::MakeTokenPolicy(wfm::ar::SamplingOptions{1.0, 0, 0.9});
  std::vector<at::Generator> gens = wfm::ar::SampleGenerators(1, 1);
  at::NoGradGuard no_grad;
  for (auto _ : state) benchmark::DoNotOptimize(policy->Choose(logits, gens));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SampleTopP)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();

// Memory read bandwidth, the floor of a decode step (the fp32 output head reads 65.5 MB): XOR over a buffer of
// arg MB split over the intra-op threads as the decode GEMVs are (bytes_per_second).
void BM_ReadBandwidth(benchmark::State& state) {
  const int64_t n = state.range(0) * (1 << 20) / 8;
  std::vector<uint64_t> buf(n);
  for (int64_t i = 0; i < n; ++i) buf[i] = static_cast<uint64_t>(i) * 2654435761u;
  for (auto _ : state) {
    std::atomic<uint64_t> total{0};
    at::parallel_for(0, n, 1 << 16, [&](int64_t i0, int64_t i1) {
      uint64_t x[8] = {};  // 8 independent lanes: the loop vectorises and is limited by the loads only
      int64_t i = i0;
      for (; i + 8 <= i1; i += 8)
        for (int j = 0; j < 8; ++j) x[j] ^= buf[i + j];
      for (; i < i1; ++i) x[0] ^= buf[i];
      total ^= x[0] ^ x[1] ^ x[2] ^ x[3] ^ x[4] ^ x[5] ^ x[6] ^ x[7];
    });
    benchmark::DoNotOptimize(total.load());
  }
  state.SetBytesProcessed(state.iterations() * n * 8);
}
BENCHMARK(BM_ReadBandwidth)->Arg(16)->Arg(64)->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime()
    ->MeasureProcessCPUTime();

// The output projection alone, [M, 256] x [64000, 256]^T: arg 1 = 0 at::linear (LibTorch), 1 DecodeLinear.
void BM_OutputProjection(benchmark::State& state) {
  const at::Tensor w = at::randn({64000, 256}), x = at::randn({state.range(0), 256});
  at::NoGradGuard no_grad;
  for (auto _ : state) benchmark::DoNotOptimize(state.range(1) ? wfm::ar::DecodeLinear(x, w) : at::linear(x, w));
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_OutputProjection)->ArgsProduct({{1, 2, 8}, {0, 1}})->Unit(benchmark::kMillisecond)->UseRealTime()
    ->MeasureProcessCPUTime();

int64_t ProcStatusKb(const char* key) {  // VmRSS / VmHWM of this process in kB
  std::ifstream f("/proc/self/status");
  for (std::string line; std::getline(f, line);)
    if (line.rfind(key, 0) == 0) return std::stoll(line.substr(std::strlen(key) + 1));
  return 0;
}

void BM_TrainLoss(benchmark::State& state) {
  static ArTransformer net = [] {
    ArTransformer n(*ArConfig::Preset("small"));
    n->InitWeights(0);
    n->train();
    return n;
  }();
  const at::Tensor tokens = Tokens(2, 3 * 256).view({2, 3, 16, 16});
  wfm::ar::ArLossOptions o;
  o.ce_chunk = state.range(0);
  double peak_mb = 0;
  for (auto _ : state) {
    net->zero_grad();
    std::ofstream("/proc/self/clear_refs") << "5";  // reset the peak RSS (Linux >= 4.0)
    const int64_t base = ProcStatusKb("VmRSS:");
    auto r = wfm::ar::TeacherForcedLoss(*net, tokens, nullptr, o);
    if (!r.ok()) state.SkipWithError(std::string(r.status().message()).c_str());
    r->loss.backward();
    peak_mb = std::max(peak_mb, (ProcStatusKb("VmHWM:") - base) / 1024.0);
  }
  state.SetItemsProcessed(state.iterations() * 1024);
  state.counters["peak_MB"] = peak_mb;
}
BENCHMARK(BM_TrainLoss)->Arg(-1)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();

}  // namespace

BENCHMARK_MAIN();
