// Demo stage "media" (foundation): for every clip in SHARED/media, probe it (exact frame count), stream-decode it
// to RGB at its own average rate (variable-rate clips are resampled onto a constant timeline), re-encode it with
// libx264 into OUTPUT/media/NAME.mp4, save a middle-frame thumbnail, then decode the re-encode and measure its
// PSNR against the decoded source. Memory stays bounded by a 16-frame chunk.
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>

#include <ATen/ATen.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "demo.h"
#include "wfm/core/logging.h"
#include "wfm/core/progress.h"
#include "wfm/core/status.h"
#include "wfm/core/video_io.h"

namespace wfm::demo {
namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

constexpr int64_t kChunk = 16;
constexpr int64_t kQuickFrames = 48;

struct ClipResult {
  VideoInfo info;
  int64_t out_frames = 0;
  double decode_fps = 0, encode_fps = 0, output_mb = 0, psnr_db = 0, min_psnr_db = 0;
  std::string output;
};

std::vector<std::string> MediaFiles(const std::string& dir) {
  static const char* const kExt[] = {".avi", ".mpg", ".mpeg", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".ts"};
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string ext = absl::AsciiStrToLower(e.path().extension().string());
    if (e.is_regular_file() && std::find(std::begin(kExt), std::end(kExt), ext) != std::end(kExt)) {
      files.push_back(e.path().string());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

double Psnr(double mse) { return mse <= 1e-12 ? 99.0 : 10.0 * std::log10(255.0 * 255.0 / mse); }

absl::StatusOr<ClipResult> RunClip(const std::string& path, const std::string& out_dir, const DemoContext& ctx) {
  ClipResult r;
  WFM_ASSIGN_OR_RETURN(r.info, ProbeVideo(path, /*exact=*/true));
  const std::string stem = std::filesystem::path(path).stem().string();
  r.output = absl::StrCat(out_dir, "/", stem, ".mp4");

  DecodeOptions d;
  d.threads = ctx.threads;
  d.num_frames = ctx.quick ? kQuickFrames : -1;
  EncodeOptions e;
  e.crf = 20;
  e.threads = ctx.threads;
  if (r.info.fps.num > 0 && r.info.fps.den > 0) {
    d.fps = r.info.fps.value();  // constant-rate timeline at the clip's own rate
    e.fps_rational = r.info.fps;
  }

  // Pass 1: decode -> encode, timing each side separately.
  WFM_ASSIGN_OR_RETURN(std::unique_ptr<VideoReader> reader, VideoReader::Open(path, d));
  std::unique_ptr<VideoWriter> writer;
  double decode_s = 0, encode_s = 0;
  const int64_t expected = ctx.quick ? std::min<int64_t>(kQuickFrames, r.info.num_frames) : r.info.num_frames;
  Progress progress(stem, d.fps > 0 && !ctx.quick ? std::llround(r.info.duration_s * d.fps) : expected, "frames");
  at::Tensor thumbnail;
  while (true) {
    auto t0 = Clock::now();
    WFM_ASSIGN_OR_RETURN(at::Tensor chunk, reader->Next(kChunk));  // [t, H, W, 3]
    decode_s += Since(t0);
    if (!chunk.defined()) break;
    t0 = Clock::now();
    if (!writer) {
      WFM_ASSIGN_OR_RETURN(writer, VideoWriter::Open(r.output, static_cast<int>(chunk.size(2)),
                                                     static_cast<int>(chunk.size(1)), e));
    }
    WFM_RETURN_IF_ERROR(writer->Write(chunk));
    encode_s += Since(t0);
    const int64_t mid = expected / 2, first = r.out_frames;
    if (mid >= first && mid < first + chunk.size(0)) thumbnail = chunk[mid - first].clone();
    r.out_frames += chunk.size(0);
    progress.Add(chunk.size(0));
  }
  if (!writer) return absl::InvalidArgumentError(absl::StrCat(path, ": no frames decoded"));
  auto t0 = Clock::now();
  WFM_RETURN_IF_ERROR(writer->Close());
  encode_s += Since(t0);
  progress.Finish();
  if (!thumbnail.defined()) thumbnail = ReadImage(r.output).value_or(at::Tensor());
  if (thumbnail.defined()) WFM_RETURN_IF_ERROR(WritePng(absl::StrCat(out_dir, "/", stem, ".png"), thumbnail));
  r.decode_fps = r.out_frames / std::max(decode_s, 1e-9);
  r.encode_fps = r.out_frames / std::max(encode_s, 1e-9);
  struct stat st;
  r.output_mb = ::stat(r.output.c_str(), &st) == 0 ? st.st_size / 1e6 : 0;

  // Pass 2: the re-encode against the decoded source, frame by frame.
  WFM_ASSIGN_OR_RETURN(std::unique_ptr<VideoReader> src, VideoReader::Open(path, d));
  DecodeOptions plain;
  plain.threads = ctx.threads;
  WFM_ASSIGN_OR_RETURN(std::unique_ptr<VideoReader> enc, VideoReader::Open(r.output, plain));
  double sq_sum = 0;
  int64_t compared = 0;
  r.min_psnr_db = 99.0;
  while (true) {
    WFM_ASSIGN_OR_RETURN(at::Tensor a, src->Next(kChunk));
    WFM_ASSIGN_OR_RETURN(at::Tensor b, enc->Next(kChunk));
    if (!a.defined() || !b.defined()) {
      if (a.defined() != b.defined()) {
        return absl::InternalError(absl::StrCat(r.output, ": frame count differs from the source after ", compared));
      }
      break;
    }
    if (a.sizes() != b.sizes()) {
      // Odd source sizes are padded to even by the encoder: compare the source area.
      b = b.narrow(1, 0, a.size(1)).narrow(2, 0, a.size(2));
    }
    at::Tensor diff = (a.to(at::kFloat) - b.to(at::kFloat)).pow_(2);  // [t, H, W, 3]
    at::Tensor per_frame = diff.flatten(1).mean(1);                   // [t]
    sq_sum += diff.sum().item<double>();
    compared += a.size(0);
    r.min_psnr_db = std::min(r.min_psnr_db, Psnr(per_frame.max().item<double>()));
  }
  if (compared != r.out_frames) {
    return absl::InternalError(absl::StrCat(r.output, ": compared ", compared, " of ", r.out_frames, " frames"));
  }
  const double pixels = static_cast<double>(compared) * r.info.height * r.info.width * 3;
  r.psnr_db = Psnr(sq_sum / std::max(pixels, 1.0));
  return r;
}

absl::Status RunMediaStage(DemoContext& ctx) {
  const std::string media = ctx.shared_dir + "/media";
  const std::vector<std::string> files = MediaFiles(media);
  if (files.empty()) return absl::NotFoundError(absl::StrCat(media, ": no video files"));
  const std::string out_dir = ctx.StageDir("media");
  std::vector<std::vector<std::string>> rows;
  nlohmann::ordered_json clips = nlohmann::ordered_json::array();
  int failures = 0;
  for (const std::string& path : files) {
    absl::StatusOr<ClipResult> r = RunClip(path, out_dir, ctx);
    const std::string name = std::filesystem::path(path).filename().string();
    if (!r.ok()) {
      ++failures;
      WFM_LOG(ERROR) << r.status().message();
      rows.push_back({name, "error: " + std::string(r.status().message())});
      clips.push_back({{"clip", name}, {"error", std::string(r.status().message())}});
      continue;
    }
    const VideoInfo& i = r->info;
    rows.push_back({name, i.codec, absl::StrFormat("%dx%d", i.width, i.height),
                    r->out_frames == i.num_frames || ctx.quick
                        ? absl::StrCat(r->out_frames)
                        : absl::StrFormat("%d (%d decoded)", r->out_frames, i.num_frames),
                    absl::StrFormat("%.3f", i.fps.value()), absl::StrFormat("%.1f", r->decode_fps),
                    absl::StrFormat("%.1f", r->encode_fps), absl::StrFormat("%.2f MB", r->output_mb),
                    absl::StrFormat("%.2f", r->psnr_db), absl::StrFormat("%.2f", r->min_psnr_db)});
    clips.push_back({{"clip", name},
                     {"codec", i.codec},
                     {"width", i.width},
                     {"height", i.height},
                     {"fps", absl::StrCat(i.fps.num, "/", i.fps.den)},
                     {"decoded_frames", i.num_frames},
                     {"output_frames", r->out_frames},
                     {"decode_fps", r->decode_fps},
                     {"encode_fps", r->encode_fps},
                     {"output", r->output},
                     {"output_bytes", static_cast<int64_t>(r->output_mb * 1e6)},
                     {"psnr_db", r->psnr_db},
                     {"min_frame_psnr_db", r->min_psnr_db}});
  }
  ctx.Table(absl::StrCat("media: decode -> libx264 CRF 20 re-encode (", ctx.threads, " threads)"),
            {"clip", "codec", "size", "frames", "fps", "decode fps", "encode fps", "output", "PSNR dB",
             "min PSNR"},
            rows);
  ctx.summary["media"]["clips"] = clips;
  if (failures) return absl::InternalError(absl::StrCat(failures, " of ", files.size(), " clips failed"));
  return absl::OkStatus();
}

}  // namespace

WFM_REGISTER_DEMO_STAGE(10, "media", "probe, decode and re-encode every clip in SHARED/media", RunMediaStage);

}  // namespace wfm::demo
