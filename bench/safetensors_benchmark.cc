// safetensors load throughput: open (mmap + header validation) + zero-copy views, and full copies, in GB/s.
#include <ATen/ATen.h>
#include <benchmark/benchmark.h>

#include <filesystem>
#include <unistd.h>

#include "wfm/core/safetensors.h"

namespace {

std::string MakeFile(int64_t mb) {
  std::string path = (std::filesystem::temp_directory_path() /
                      ("wfm_bench_" + std::to_string(getpid()) + "_" + std::to_string(mb) + ".safetensors")).string();
  if (std::filesystem::exists(path)) return path;
  wfm::TensorMap m;
  const int64_t per = 4 * 1024 * 1024;  // 16 MB f32 tensors
  for (int64_t i = 0; i < mb / 16; ++i) m["layer." + std::to_string(i) + ".weight"] = at::randn({per});
  auto s = wfm::WriteSafetensors(path, m);
  if (!s.ok()) std::abort();
  return path;
}

void BM_SafetensorsOpenViews(benchmark::State& state) {
  std::string path = MakeFile(state.range(0));
  int64_t bytes = 0;
  for (auto _ : state) {
    auto st = wfm::SafetensorsFile::Open(path);
    auto all = (*st)->GetAll();
    // Touch every page so the number includes reading the data, not just mapping it.
    double sum = 0;
    for (auto& [n, t] : *all) sum += t.sum().item<double>();
    benchmark::DoNotOptimize(sum);
    bytes += (*st)->data_size();
  }
  state.SetBytesProcessed(bytes);
}
BENCHMARK(BM_SafetensorsOpenViews)->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_SafetensorsCopyAll(benchmark::State& state) {
  std::string path = MakeFile(state.range(0));
  int64_t bytes = 0;
  for (auto _ : state) {
    auto st = wfm::SafetensorsFile::Open(path);
    for (const auto& e : (*st)->entries()) benchmark::DoNotOptimize((*st)->GetCopy(e.name));
    bytes += (*st)->data_size();
  }
  state.SetBytesProcessed(bytes);
}
BENCHMARK(BM_SafetensorsCopyAll)->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_SafetensorsWrite(benchmark::State& state) {
  wfm::TensorMap m;
  for (int i = 0; i < 16; ++i) m["w" + std::to_string(i)] = at::randn({4 * 1024 * 1024});
  std::string path = (std::filesystem::temp_directory_path() / ("wfm_bench_w_" + std::to_string(getpid()))).string();
  int64_t bytes = 0;
  for (auto _ : state) {
    auto s = wfm::WriteSafetensors(path, m);
    if (!s.ok()) state.SkipWithError(std::string(s.message()).c_str());
    bytes += 256ll * 1024 * 1024;
  }
  std::filesystem::remove(path);
  state.SetBytesProcessed(bytes);
}
BENCHMARK(BM_SafetensorsWrite)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
