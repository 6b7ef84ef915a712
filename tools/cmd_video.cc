// `wfm info` (probe videos as JSON, one object per line) and `wfm transcode` (streaming decode -> resize /
// fps-resample -> encode, with progress). Thin clients of wfm/core/video_io.h.
#include <ATen/Parallel.h>
#include <sys/stat.h>

#include <cmath>
#include <iostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "cli.h"
#include "wfm/core/progress.h"
#include "wfm/core/status.h"
#include "wfm/core/video_io.h"

namespace wfm::cli {
namespace {

int RunInfo(int argc, char** argv) {
  std::vector<std::string> videos;
  bool exact = false, pretty = false;
  ArgParser p("wfm info", "Probe videos and print one JSON object per file (JSON Lines).");
  p.Positionals("VIDEO", &videos, "video files")
      .Flag("exact", &exact, "count frames by decoding the whole stream (equals ffprobe -count_frames)")
      .Flag("pretty", &pretty, "indent the JSON")
      .Epilog("A file that cannot be probed prints {\"path\": ..., \"error\": ...} and the exit code is 1.\n"
              "example: wfm info --exact clip.mp4 other.avi");
  if (auto rc = p.Parse(argc, argv)) return *rc;
  int failures = 0;
  for (const std::string& path : videos) {
    absl::StatusOr<VideoInfo> info = ProbeVideo(path, exact);
    if (info.ok()) {
      std::cout << VideoInfoToJson(*info, pretty ? 2 : -1) << std::endl;
    } else {
      ++failures;
      nlohmann::ordered_json j;
      j["path"] = path;
      j["error"] = std::string(info.status().message());
      std::cout << j.dump(pretty ? 2 : -1) << std::endl;
      std::cerr << "wfm info: " << info.status().message() << "\n";
    }
  }
  return failures ? kExitFailure : kExitOk;
}

// "W x H" with either side 0 (or -1) to keep the aspect ratio; a single number is the width.
bool ParseSize(const std::string& text, int* w, int* h) {
  std::vector<std::string> parts = absl::StrSplit(text, absl::ByAnyChar("x:X"));
  if (parts.size() == 1) parts.push_back("0");
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], w) || !absl::SimpleAtoi(parts[1], h)) return false;
  *w = std::max(*w, 0), *h = std::max(*h, 0);
  return *w > 0 || *h > 0;
}

// "25", "29.97" or "30000/1001".
bool ParseRate(const std::string& text, Rational* rate) {
  std::vector<std::string> parts = absl::StrSplit(text, '/');
  if (parts.size() == 2) {
    return absl::SimpleAtoi(parts[0], &rate->num) && absl::SimpleAtoi(parts[1], &rate->den) && rate->num > 0 &&
           rate->den > 0;
  }
  double v = 0;
  if (parts.size() != 1 || !absl::SimpleAtod(parts[0], &v) || !(v > 0) || v > 1e6) return false;
  // Exact for integers and the NTSC family (29.97 -> 30000/1001), else 1/1000 precision.
  if (std::abs(v - std::round(v)) < 1e-9) {
    *rate = {std::llround(v), 1};
  } else if (const double ntsc = v * 1001.0 / 1000.0; std::abs(ntsc - std::round(ntsc)) < 1e-3) {
    *rate = {std::llround(ntsc) * 1000, 1001};
  } else {
    *rate = {std::llround(v * 1000), 1000};
  }
  return true;
}

int RunTranscode(int argc, char** argv) {
  std::string in, out, size, fps_text, codec = "libx264", preset = "veryfast", hwaccel;
  int crf = 23;
  int64_t start = 0, frames = -1;
  ArgParser p("wfm transcode", "Decode a video, optionally resize / resample / cut it, and encode it again.");
  p.Positional("IN", &in, "input video")
      .Positional("OUT", &out, "output video (.mp4, .mkv, .webm, .avi); written atomically")
      .Option("size", &size, "output size WxH (0 on one side keeps the aspect ratio, e.g. 640x0)")
      .Option("fps", &fps_text, "output frame rate (25, 29.97, 30000/1001); default: the input's average rate")
      .Option("crf", &crf, "quality: constant rate factor (lower is better; 18 ~ visually lossless)")
      .Option("codec", &codec, "encoder: libx264 (mpeg4 fallback), mpeg4, libx265, libvpx-vp9, h264_nvenc, ...")
      .Option("preset", &preset, "encoder speed preset (libx264: ultrafast ... veryslow)")
      .Option("start", &start, "first output frame (index at the output rate)")
      .Option("frames", &frames, "number of output frames (-1: to the end)")
      .Option("hwaccel", &hwaccel, "decode with 'cuda' (NVDEC) or 'auto' (cuda when present)")
      .Epilog("Frames are resampled to a constant rate by nearest timestamp, so variable-rate inputs keep their\n"
              "timing. example: wfm transcode in.avi out.mp4 --size 640x0 --fps 24 --crf 20");
  if (auto rc = p.Parse(argc, argv)) return *rc;
  DecodeOptions d;
  if (!size.empty() && !ParseSize(size, &d.width, &d.height)) {
    return p.UsageError(absl::StrCat("--size expects WxH, got '", size, "'"));
  }
  if (crf < 0 || crf > 63) return p.UsageError("--crf must be in [0, 63]");
  if (start < 0) return p.UsageError("--start must be >= 0");
  EncodeOptions e;
  e.codec = codec;
  e.crf = crf;
  e.preset = preset;
  Rational rate;
  if (!fps_text.empty() && !ParseRate(fps_text, &rate)) {
    return p.UsageError(absl::StrCat("--fps expects a positive rate, got '", fps_text, "'"));
  }
  absl::StatusOr<VideoInfo> info = ProbeVideo(in);
  if (!info.ok()) return ReportError(info.status());
  if (fps_text.empty()) rate = info->fps;
  if (rate.num > 0 && rate.den > 0) {
    d.fps = rate.value();
    e.fps_rational = rate;
  } else {
    e.fps = 25;  // the input does not say: keep every frame at 25 fps
  }
  d.start_frame = start;
  d.num_frames = frames;
  d.threads = at::get_num_threads();
  d.hwaccel = hwaccel;
  e.threads = at::get_num_threads();

  absl::StatusOr<std::unique_ptr<VideoReader>> reader = VideoReader::Open(in, d);
  if (!reader.ok()) return ReportError(reader.status());
  int64_t total = d.fps > 0 && info->duration_s > 0 ? std::llround(info->duration_s * d.fps) : info->num_frames;
  total = std::max<int64_t>(0, total - start);
  if (frames >= 0) total = std::min(total, frames);
  Progress progress("transcode", total, "frames");
  std::unique_ptr<VideoWriter> writer;
  absl::Status status = CatchToStatus(in, [&]() -> absl::Status {
    while (true) {
      WFM_ASSIGN_OR_RETURN(at::Tensor chunk, (*reader)->Next(16));  // [t, H, W, 3]
      if (!chunk.defined()) break;
      if (!writer) {
        WFM_ASSIGN_OR_RETURN(writer, VideoWriter::Open(out, static_cast<int>(chunk.size(2)),
                                                       static_cast<int>(chunk.size(1)), e));
      }
      WFM_RETURN_IF_ERROR(writer->Write(chunk));
      progress.Add(chunk.size(0));
    }
    if (!writer) return absl::OutOfRangeError(absl::StrCat(in, ": no frames in the selected range"));
    return writer->Close();
  });
  progress.Finish();
  if (!status.ok()) return ReportError(status);
  struct stat st;
  const double mb = ::stat(out.c_str(), &st) == 0 ? st.st_size / 1e6 : 0.0;
  std::cout << absl::StrFormat("%s -> %s: %d frames at %d/%d fps, %.2f MB\n", in, out, writer->frames_written(),
                               e.fps_rational.num > 0 ? e.fps_rational.num : static_cast<int64_t>(e.fps),
                               e.fps_rational.num > 0 ? e.fps_rational.den : 1, mb);
  return kExitOk;
}

}  // namespace

WFM_REGISTER_COMMAND("info", "probe videos: codec, size, fps, frame count, duration (JSON)", RunInfo);
WFM_REGISTER_COMMAND("transcode", "re-encode a video (resize, fps, cut, CRF) with progress", RunTranscode);

}  // namespace wfm::cli
