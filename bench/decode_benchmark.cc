// Decode throughput (frames/s) of wfm's video IO on a 720p H.264 clip made from real footage: decode + RGB
// conversion at full size and resized to 256x144, with 1 and 2 decoder threads, and counting frames
// (ProbeVideo exact: decode only). scripts/bench-decode.sh runs it next to `ffmpeg -threads N -i X -f null -`
// on the same file.
//
// Input: $WFM_BENCH_VIDEO, else a 720p H.264 clip made once from SHARED/media/cityCC0.mpg (upscaled with
// swscale bicubic, libx264 CRF 20 veryfast, 3 loops = 570 frames) at $TMPDIR/wfm_bench_720p.mp4.
#include <ATen/ATen.h>
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "wfm/core/video_io.h"

namespace {
namespace fs = std::filesystem;

// Process CPU time (all threads: the decoder's workers too), for frames per CPU-second, which stays meaningful
// on a machine shared with other jobs.
double ProcessCpuSeconds() {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

void SetCounters(benchmark::State& state, int64_t frames, double cpu_s) {
  state.counters["frames/s"] = benchmark::Counter(static_cast<double>(frames), benchmark::Counter::kIsRate);
  state.counters["frames/cpu_s"] = static_cast<double>(frames) / std::max(cpu_s, 1e-9);
}

const std::string& BenchVideo() {
  static const std::string path = [] {
    if (const char* env = std::getenv("WFM_BENCH_VIDEO"); env && *env) return std::string(env);
    const std::string out = (fs::temp_directory_path() / "wfm_bench_720p.mp4").string();
    if (fs::exists(out)) return out;
    const char* shared = std::getenv("WFM_SHARED_DIR");
    const std::string src = std::string(shared && *shared ? shared : "../shared") + "/media/cityCC0.mpg";
    wfm::DecodeOptions d;
    d.width = 1280;
    d.height = 720;
    auto frames = wfm::DecodeVideo(src, d);  // [190, 720, 1280, 3]
    if (!frames.ok()) {
      std::cerr << "decode_benchmark: " << frames.status() << " (set WFM_SHARED_DIR or WFM_BENCH_VIDEO)\n";
      std::exit(1);
    }
    wfm::EncodeOptions e;
    e.fps = 25;
    e.crf = 20;
    auto writer = wfm::VideoWriter::Open(out, 1280, 720, e);
    absl::Status s = writer.status();
    for (int loop = 0; loop < 3 && s.ok(); ++loop) s = (*writer)->Write(*frames);
    if (s.ok()) s = (*writer)->Close();
    if (!s.ok()) {
      std::cerr << "decode_benchmark: " << s << "\n";
      std::exit(1);
    }
    return out;
  }();
  return path;
}

// Decode (+ RGB conversion, + resize when range(1) > 0) with range(0) decoder threads.
void BM_DecodeRgb(benchmark::State& state) {
  wfm::DecodeOptions o;
  o.threads = static_cast<int>(state.range(0));
  if (state.range(1) > 0) {
    o.width = static_cast<int>(state.range(1));
    o.height = static_cast<int>(state.range(1)) * 9 / 16;
  }
  BenchVideo();
  int64_t frames = 0;
  const double cpu0 = ProcessCpuSeconds();
  for (auto _ : state) {
    auto n = wfm::DecodeVideoStream(BenchVideo(), o, [](const at::Tensor& chunk, int64_t) {
      benchmark::DoNotOptimize(chunk.data_ptr());
      return absl::OkStatus();
    });
    if (!n.ok()) state.SkipWithError(std::string(n.status().message()).c_str());
    frames += n.value_or(0);
  }
  SetCounters(state, frames, ProcessCpuSeconds() - cpu0);
}
BENCHMARK(BM_DecodeRgb)
    ->ArgNames({"threads", "width"})
    ->Args({1, 0})
    ->Args({2, 0})
    ->Args({1, 256})
    ->Args({2, 256})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(2.0);

// Decode only (frames counted, no conversion; loop filter skipped): ProbeVideo(exact).
void BM_CountFrames(benchmark::State& state) {
  setenv("WFM_NUM_THREADS", std::to_string(state.range(0)).c_str(), 1);  // the probe's decoder threads
  BenchVideo();
  int64_t frames = 0;
  const double cpu0 = ProcessCpuSeconds();
  for (auto _ : state) {
    auto info = wfm::ProbeVideo(BenchVideo(), /*exact=*/true);
    if (!info.ok()) state.SkipWithError(std::string(info.status().message()).c_str());
    frames += info.ok() ? info->num_frames : 0;
  }
  SetCounters(state, frames, ProcessCpuSeconds() - cpu0);
}
BENCHMARK(BM_CountFrames)->ArgName("threads")->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);

}  // namespace

BENCHMARK_MAIN();
