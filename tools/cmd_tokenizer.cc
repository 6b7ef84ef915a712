// `wfm tokenizer encode|decode|reconstruct`: the Cosmos-compatible tokenizers from the command line.
//
//   wfm tokenizer encode      --config C.json --weights W --input IN --output OUT.safetensors
//   wfm tokenizer decode      --config C.json --weights W --input OUT.safetensors --output REC
//   wfm tokenizer reconstruct --config C.json --weights W --input IN --output REC
//
// IN: a video file (anything FFmpeg reads), an image (.png/.jpg), or FILE.safetensors[:TENSOR] (default tensor
// `input`, values in [-1, 1], [B, C, T, H, W] or [B, C, H, W]). OUT holds `latent` (continuous) or `indices`
// (int64) + `codes` (discrete), with the clip geometry, config and frame rate as metadata so that decode gives
// back the input's exact size. REC: .safetensors (tensor `reconstruction`), a video (.mp4/.mkv/.avi/.webm) or
// PNG frames (.png). Video files are processed in a stream: memory is bounded by the chunk, not the video.
#include <malloc.h>

#include <filesystem>
#include <string>

#include <ATen/ATen.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli.h"
#include "wfm/core/logging.h"
#include "wfm/core/progress.h"
#include "wfm/core/safetensors.h"
#include "wfm/core/status.h"
#include "wfm/core/video_io.h"
#include "wfm/tokenizer/tokenizer.h"

namespace wfm::cli {
namespace {
namespace fs = std::filesystem;
using tokenizer::ClipGeometry;
using tokenizer::EncodeResult;
using tokenizer::ServeMode;
using tokenizer::ServeOptions;
using tokenizer::Tokenizer;
using tokenizer::TokenizerConfig;
using tokenizer::TokenizerOptions;
using tokenizer::WeightsPart;

struct Args {
  std::string config, weights, input, output;
  std::string mode = "streaming", device = "auto", dtype = "auto", backend = "native";
  int64_t chunk_frames = 16, window = 17, attention_window = 0, tile = 0, tile_overlap = -1;
  int64_t start_frame = 0, num_frames = -1;
  int width = 0, height = 0;
  double fps = 0.0;
  bool ema = false;
};

void AddCommon(ArgParser& p, Args& a, bool video_input) {
  p.Option("config", &a.config,
           "tokenizer config: a preset (CV8x8x8, DV8x16x16-720p, ...), a reference config json, or a fixture json "
           "with a `config` object",
           true)
      .Option("weights", &a.weights,
              "weights: .safetensors, model.pt, encoder.jit/decoder.jit/autoencoder.jit, a directory, or a comma "
              "list (encoder.jit,decoder.jit)",
              true)
      .Option("input", &a.input, "input (see the command description)", true)
      .Option("output", &a.output, "output (see the command description)", true)
      .Option("mode", &a.mode,
              "streaming (default: chunked, exact whole-clip result, bounded memory) | windowed (the reference: "
              "independent 17-frame windows)")
      .Option("chunk-frames", &a.chunk_frames, "streaming: frames per chunk after the first (default 16)")
      .Option("window", &a.window, "windowed: frames per window (default 17)")
      .Option("attention-window", &a.attention_window,
              "streaming: latent frames of temporal-attention keys/values kept (default 0 = all, exact)")
      .Option("tile", &a.tile, "spatial tile size in pixels for large frames (default 0 = no tiling)")
      .Option("tile-overlap", &a.tile_overlap, "tile overlap in pixels (default tile/4)")
      .Option("device", &a.device, "cpu | cuda | cuda:N | auto (default auto)")
      .Option("dtype", &a.dtype, "auto (bfloat16 on CUDA, float32 on CPU) | float32 | bfloat16 | float16")
      .Option("backend", &a.backend, "native (default) | torchscript (run .jit files as they are)")
      .Flag("ema", &a.ema, "use the EMA weights of a model.pt");
  if (video_input) {
    p.Option("start-frame", &a.start_frame, "video input: first frame (default 0)")
        .Option("num-frames", &a.num_frames, "video input: frames to use (default all)")
        .Option("fps", &a.fps, "video input: resample to this frame rate; video output: frame rate (default: source)")
        .Option("width", &a.width, "video/image input: resize to this width (0: keep; one of width/height 0 keeps "
                                   "the aspect ratio)")
        .Option("height", &a.height, "video/image input: resize to this height");
  } else {
    p.Option("fps", &a.fps, "video output frame rate (default: the encoded clip's, else 24)");
  }
}

absl::StatusOr<ServeOptions> MakeServe(const Args& a) {
  ServeOptions o;
  WFM_ASSIGN_OR_RETURN(o.mode, tokenizer::ParseServeMode(a.mode));
  if (a.chunk_frames < 0) return absl::InvalidArgumentError("--chunk-frames must be >= 0");
  if (a.window < 1) return absl::InvalidArgumentError("--window must be >= 1");
  if (a.tile < 0) return absl::InvalidArgumentError("--tile must be >= 0");
  o.chunk_frames = a.chunk_frames;
  o.temporal_window = a.window;
  o.attention_window = a.attention_window;
  o.tile = a.tile;
  o.tile_overlap = a.tile_overlap;
  return o;
}

// Large activations come and go (encoder, then decoder; chunk after chunk): allocate them with mmap so that
// freed memory goes back to the system instead of staying in the heap (glibc raises its mmap threshold
// dynamically, which keeps peak memory of the next stage stacked on the last one's). ~100 MB lower peak RSS.
void ReturnFreedMemoryToTheSystem() {
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  mallopt(M_TRIM_THRESHOLD, 1 << 20);
}

absl::StatusOr<std::unique_ptr<Tokenizer>> MakeTokenizer(const Args& a, WeightsPart part) {
  ReturnFreedMemoryToTheSystem();
  WFM_ASSIGN_OR_RETURN(TokenizerConfig config, TokenizerConfig::FromPresetOrFile(a.config));
  TokenizerOptions o;
  o.device = a.device;
  o.dtype = a.dtype;
  o.part = part;
  o.use_ema = a.ema;
  o.backend = a.backend;
  WFM_ASSIGN_OR_RETURN(auto tok, Tokenizer::Create(config, a.weights, o));
  WFM_LOG(INFO) << tok->Describe();
  return tok;
}

std::string Lower(const std::string& s) { return absl::AsciiStrToLower(s); }
std::string Ext(const std::string& path) { return Lower(fs::path(path).extension().string()); }
bool IsImagePath(const std::string& p) {
  const std::string e = Ext(p);
  return e == ".png" || e == ".jpg" || e == ".jpeg" || e == ".bmp" || e == ".webp" || e == ".tif" || e == ".tiff";
}

// FILE.safetensors[:TENSOR] -> (path, tensor); tensor "" when not given.
bool SplitSafetensors(const std::string& spec, std::string* path, std::string* tensor) {
  const size_t pos = Lower(spec).rfind(".safetensors");
  if (pos == std::string::npos) return false;
  const size_t end = pos + std::string(".safetensors").size();
  *path = spec.substr(0, end);
  *tensor = end < spec.size() && spec[end] == ':' ? spec.substr(end + 1) : "";
  return end == spec.size() || spec[end] == ':';
}

absl::StatusOr<at::Tensor> ReadTensorInput(const std::string& path, const std::string& name_in) {
  WFM_ASSIGN_OR_RETURN(auto st, SafetensorsFile::Open(path));
  const std::string name = name_in.empty() ? "input" : name_in;
  if (!st->Contains(name)) {
    std::vector<std::string> names;
    for (const auto& e : st->entries()) names.push_back(e.name);
    return absl::InvalidArgumentError(absl::StrCat(path, ": no tensor \"", name, "\" (it has: ", absl::StrJoin(names, ", "),
                                                   "); pick one with ", path, ":NAME"));
  }
  WFM_ASSIGN_OR_RETURN(at::Tensor t, st->GetCopy(name));
  if (!at::isFloatingType(t.scalar_type()))
    return absl::InvalidArgumentError(absl::StrCat(path, ":", name, " must be a float tensor in [-1, 1], got ",
                                                   c10::toString(t.scalar_type())));
  return t.to(at::kFloat);
}

// An image file -> [1, 3, H, W] in [-1, 1].
absl::StatusOr<at::Tensor> ReadImageInput(const std::string& path, const Args& a) {
  WFM_ASSIGN_OR_RETURN(at::Tensor img, ReadImage(path));  // uint8 [H, W, 3]
  at::Tensor x = FramesToModelInput(img.unsqueeze(0)).select(1, 0).unsqueeze(0);  // [1, 3, H, W]
  if (a.width > 0 || a.height > 0) {
    const int64_t H = x.size(2), W = x.size(3);
    const int64_t h = a.height > 0 ? a.height : (H * a.width + W / 2) / W;
    const int64_t w = a.width > 0 ? a.width : (W * a.height + H / 2) / H;
    x = at::upsample_bilinear2d(x, {h, w}, false).clamp(-1, 1);
  }
  return x;
}

DecodeOptions VideoOptions(const Args& a) {
  DecodeOptions d;
  d.width = a.width, d.height = a.height, d.fps = a.fps;
  d.start_frame = a.start_frame, d.num_frames = a.num_frames;
  return d;
}

// ---------------------------------------------------------------------------------------------------------------
// Outputs: safetensors (in memory, written at the end), a video per batch element, or PNG frames.

class FrameSink {
 public:
  FrameSink(std::string path, double fps) : path_(std::move(path)), fps_(fps > 0 ? fps : 24.0) {
    const std::string e = Ext(path_);
    kind_ = e == ".safetensors" ? kTensor : (IsImagePath(path_) ? kPng : kVideo);
  }
  bool is_tensor() const { return kind_ == kTensor; }

  // frames: float [B, C, t, H, W] in [-1, 1] (t may be 0), or an image batch [B, C, H, W].
  absl::Status Write(const at::Tensor& frames) {
    if (frames.dim() == 4) image_ = true;
    if (kind_ == kTensor) {
      parts_.push_back(frames);
      return absl::OkStatus();
    }
    at::Tensor v = frames.dim() == 4 ? frames.unsqueeze(2) : frames;
    if (v.size(2) == 0) return absl::OkStatus();
    if (v.size(1) != 3)
      return absl::InvalidArgumentError(absl::StrCat("cannot write ", v.size(1), "-channel frames to ", path_,
                                                     "; use a .safetensors output"));
    for (int64_t b = 0; b < v.size(0); ++b) {
      at::Tensor u8 = ModelOutputToFrames(v[b]);  // [t, H, W, 3]
      if (kind_ == kPng) {
        WFM_RETURN_IF_ERROR(WritePngBatch(b, v.size(0), u8));
        continue;
      }
      if (writers_.size() <= static_cast<size_t>(b)) {
        EncodeOptions eo;
        eo.fps = fps_;
        WFM_ASSIGN_OR_RETURN(auto w, VideoWriter::Open(Numbered(path_, b, v.size(0)), u8.size(2), u8.size(1), eo));
        writers_.push_back(std::move(w));
      }
      WFM_RETURN_IF_ERROR(writers_[b]->Write(u8));
    }
    frames_ += v.size(2);
    return absl::OkStatus();
  }

  absl::Status Close(const std::map<std::string, std::string>& metadata = {}) {
    if (kind_ == kTensor) {
      if (parts_.empty()) return absl::InvalidArgumentError("nothing to write");
      at::Tensor all = parts_.size() == 1 ? parts_[0] : at::cat(parts_, image_ ? 0 : 2);
      WFM_RETURN_IF_ERROR(WriteSafetensors(path_, {{"reconstruction", all.contiguous()}}, metadata));
      WFM_LOG(INFO) << "wrote reconstruction " << c10::str(all.sizes()) << " to " << path_;
      return absl::OkStatus();
    }
    for (auto& w : writers_) WFM_RETURN_IF_ERROR(w->Close());
    WFM_LOG(INFO) << "wrote " << frames_ << " frames to " << path_;
    return absl::OkStatus();
  }

 private:
  enum Kind { kTensor, kVideo, kPng };
  static std::string Numbered(const std::string& path, int64_t b, int64_t n) {
    if (n == 1) return path;
    const fs::path p(path);
    return (p.parent_path() / (p.stem().string() + "_" + std::to_string(b) + p.extension().string())).string();
  }
  absl::Status WritePngBatch(int64_t b, int64_t n, const at::Tensor& u8) {
    const std::string base = Numbered(path_, b, n);
    if (png_index_.size() <= static_cast<size_t>(b)) png_index_.push_back(0);
    if (image_ && u8.size(0) == 1 && png_index_[b] == 0) {
      png_index_[b] = 1;
      return WritePng(base, u8[0]);
    }
    // Several frames: NAME_000000.png, NAME_000001.png, ... beside NAME.png.
    const fs::path p(base);
    for (int64_t t = 0; t < u8.size(0); ++t) {
      const std::string f = (p.parent_path() / absl::StrFormat("%s_%06d%s", p.stem().string(), png_index_[b]++,
                                                               p.extension().string()))
                                .string();
      WFM_RETURN_IF_ERROR(WritePng(f, u8[t]));
    }
    return absl::OkStatus();
  }

  std::string path_;
  double fps_;
  Kind kind_;
  bool image_ = false;
  std::vector<at::Tensor> parts_;
  std::vector<std::unique_ptr<VideoWriter>> writers_;
  std::vector<int64_t> png_index_;
  int64_t frames_ = 0;
};

std::map<std::string, std::string> LatentMetadata(const Tokenizer& tok, const ClipGeometry& g, double fps,
                                                  const std::string& source) {
  std::map<std::string, std::string> m = g.ToMetadata();
  m["wfm.tokenizer.config"] = tok.config().ToJsonString();
  m["wfm.tokenizer.source"] = source;
  if (fps > 0) m["wfm.tokenizer.fps"] = absl::StrCat(fps);
  return m;
}

absl::Status WriteLatents(const Tokenizer& tok, const EncodeResult& r, double fps, const Args& a) {
  TensorMap out;
  if (tok.config().is_discrete()) {
    out["indices"] = r.indices.to(at::kLong).contiguous();
    out["codes"] = r.latent.contiguous();
  } else {
    out["latent"] = r.latent.contiguous();
  }
  WFM_RETURN_IF_ERROR(WriteSafetensors(a.output, out, LatentMetadata(tok, r.geometry, fps, a.input)));
  WFM_LOG(INFO) << "wrote " << (tok.config().is_discrete() ? "indices " : "latent ")
                << c10::str((tok.config().is_discrete() ? r.indices : r.latent).sizes()) << " to " << a.output;
  return absl::OkStatus();
}

// A video file that gave no frames (empty, or --start-frame at/after its end).
absl::Status NoFramesError(const Args& a, const VideoInfo& info) {
  return absl::InvalidArgumentError(absl::StrCat(a.input, ": no frames decoded (the video has ",
                                                 info.num_frames_exact ? "" : "about ", info.num_frames,
                                                 " frames; --start-frame ", a.start_frame, ")"));
}

// Streams a video file through the encoder; `on_latent` gets each piece of the latent as it completes.
absl::StatusOr<EncodeResult> EncodeVideoFile(Tokenizer& tok, const Args& a, const ServeOptions& serve, double* fps_out,
                                             const std::function<absl::Status(const EncodeResult&)>& on_piece) {
  WFM_ASSIGN_OR_RETURN(auto reader, VideoReader::Open(a.input, VideoOptions(a)));
  const VideoInfo& info = reader->info();
  *fps_out = a.fps > 0 ? a.fps : info.fps.value();
  int64_t total = info.num_frames > 0 ? info.num_frames - a.start_frame : 0;
  if (a.num_frames > 0) total = total > 0 ? std::min(total, a.num_frames) : a.num_frames;
  Progress progress("encode", a.fps > 0 ? 0 : total, "frames");
  EncodeResult all;
  std::vector<at::Tensor> latents, indices;
  auto collect = [&](const EncodeResult& r) -> absl::Status {
    if (r.latent.size(2) == 0) return absl::OkStatus();
    latents.push_back(r.latent);
    if (r.indices.defined()) indices.push_back(r.indices);
    return on_piece ? on_piece(r) : absl::OkStatus();
  };
  ClipGeometry geometry;
  if (serve.mode == ServeMode::kWindowed) {
    int64_t frames = 0, height = 0, width = 0;
    while (true) {
      WFM_ASSIGN_OR_RETURN(at::Tensor u8, reader->Next(serve.temporal_window));
      if (!u8.defined() || u8.size(0) == 0) break;
      at::Tensor x = FramesToModelInput(u8).unsqueeze(0);  // [1, 3, t, H, W]
      WFM_ASSIGN_OR_RETURN(EncodeResult r, tok.Encode(x, serve));
      frames += u8.size(0), height = u8.size(1), width = u8.size(2);
      WFM_RETURN_IF_ERROR(collect(r));
      progress.Add(u8.size(0));
    }
    if (frames == 0) return NoFramesError(a, info);
    geometry.frames = frames, geometry.height = height, geometry.width = width;
    geometry.mode = ServeMode::kWindowed, geometry.temporal_window = serve.temporal_window;
  } else {
    WFM_ASSIGN_OR_RETURN(auto stream, tok.StartEncode(serve));
    const int64_t read = std::max<int64_t>(8, serve.chunk_frames > 0 ? serve.chunk_frames : 32);
    while (true) {
      WFM_ASSIGN_OR_RETURN(at::Tensor u8, reader->Next(read));
      if (!u8.defined() || u8.size(0) == 0) break;
      WFM_ASSIGN_OR_RETURN(EncodeResult r, stream->Push(FramesToModelInput(u8).unsqueeze(0)));
      WFM_RETURN_IF_ERROR(collect(r));
      progress.Add(u8.size(0));
    }
    if (stream->frames_in() == 0) return NoFramesError(a, info);
    WFM_ASSIGN_OR_RETURN(EncodeResult last, stream->Finish());
    WFM_RETURN_IF_ERROR(collect(last));
    geometry = last.geometry;
  }
  progress.Finish();
  all.latent = at::cat(latents, 2);
  if (!indices.empty()) all.indices = at::cat(indices, 1);
  all.geometry = geometry;
  return all;
}

// Decodes a latent into `sink` piece by piece (windows or chunks), so that only one piece of frames is in memory
// unless the sink keeps them (safetensors output).
absl::Status DecodeInto(Tokenizer& tok, const at::Tensor& code, const ClipGeometry& g, const ServeOptions& serve,
                        FrameSink& sink) {
  const TokenizerConfig& c = tok.config();
  if (!c.is_video() || sink.is_tensor() || code.dim() < 4 + (at::isFloatingType(code.scalar_type()) ? 1 : 0)) {
    WFM_ASSIGN_OR_RETURN(at::Tensor rec, tok.Decode(code, g, serve));
    return sink.Write(rec);
  }
  const int64_t time_dim = at::isFloatingType(code.scalar_type()) ? 2 : 1;
  const int64_t total = code.size(time_dim);
  Progress progress("decode", g.frames > 0 ? g.frames : 0, "frames");
  if (g.mode == ServeMode::kWindowed && g.known() && g.frames > 0) {
    const int64_t N = c.temporal_compression;
    const int64_t ta = std::max<int64_t>(8, N), sa = std::max<int64_t>(16, c.spatial_compression);
    int64_t offset = 0;
    for (int64_t start = 0; start < g.frames; start += g.temporal_window) {
      const int64_t n = std::min(g.temporal_window, g.frames - start);
      const tokenizer::PadPlan p = tokenizer::WindowPadPlan(n, g.height, g.width, ta, sa);
      const int64_t lat = 1 + (n + p.front + p.back - 1) / N;
      if (offset + lat > total)
        return absl::InvalidArgumentError(absl::StrCat("latent has ", total, " frames; the windowed geometry needs more"));
      ClipGeometry gi = g;
      gi.frames = n;
      WFM_ASSIGN_OR_RETURN(at::Tensor rec, tok.Decode(code.narrow(time_dim, offset, lat), gi, serve));
      WFM_RETURN_IF_ERROR(sink.Write(rec));
      progress.Add(rec.size(2));
      offset += lat;
    }
  } else {
    WFM_ASSIGN_OR_RETURN(auto stream, tok.StartDecode(g, serve));
    const int64_t step = std::max<int64_t>(1, serve.chunk_frames / c.temporal_compression);
    for (int64_t t = 0; t < total;) {
      const int64_t n = std::min(total - t, t == 0 ? 1 + step : step);
      WFM_ASSIGN_OR_RETURN(at::Tensor rec, stream->Push(code.narrow(time_dim, t, n)));
      WFM_RETURN_IF_ERROR(sink.Write(rec));
      progress.Add(rec.size(2));
      t += n;
    }
  }
  progress.Finish();
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------------------------
// Commands

absl::StatusOr<at::Tensor> ReadNonVideoInput(const Args& a, bool* is_tensor_input) {
  std::string path, tensor;
  *is_tensor_input = false;
  if (SplitSafetensors(a.input, &path, &tensor)) {
    *is_tensor_input = true;
    return ReadTensorInput(path, tensor);
  }
  if (IsImagePath(a.input)) {
    *is_tensor_input = true;
    return ReadImageInput(a.input, a);
  }
  return at::Tensor();
}

absl::Status Encode(const Args& a) {
  WFM_ASSIGN_OR_RETURN(ServeOptions serve, MakeServe(a));
  bool tensor_input = false;
  WFM_ASSIGN_OR_RETURN(at::Tensor x, ReadNonVideoInput(a, &tensor_input));
  if (Ext(a.output) != ".safetensors")
    return absl::InvalidArgumentError(absl::StrCat("--output must be a .safetensors file, got ", a.output));
  WFM_ASSIGN_OR_RETURN(auto tok, MakeTokenizer(a, WeightsPart::kEncoder));
  if (tensor_input) {
    WFM_ASSIGN_OR_RETURN(EncodeResult r, tok->Encode(x, serve), a.input);
    return WriteLatents(*tok, r, a.fps, a);
  }
  if (!tok->config().is_video()) {
    // Image tokenizer on a video: every frame is an image.
    WFM_ASSIGN_OR_RETURN(at::Tensor u8, DecodeVideo(a.input, VideoOptions(a)));
    WFM_ASSIGN_OR_RETURN(EncodeResult r, tok->Encode(FramesToModelInput(u8).unsqueeze(0), serve), a.input);
    return WriteLatents(*tok, r, a.fps, a);
  }
  double fps = 0;
  WFM_ASSIGN_OR_RETURN(EncodeResult r, EncodeVideoFile(*tok, a, serve, &fps, nullptr), a.input);
  return WriteLatents(*tok, r, fps, a);
}

absl::Status Decode(const Args& a) {
  WFM_ASSIGN_OR_RETURN(ServeOptions serve, MakeServe(a));
  std::string path = a.input, name;
  if (!SplitSafetensors(a.input, &path, &name))
    return absl::InvalidArgumentError(absl::StrCat("--input must be the .safetensors written by encode, got ", a.input));
  WFM_ASSIGN_OR_RETURN(auto st, SafetensorsFile::Open(path));
  WFM_ASSIGN_OR_RETURN(auto tok, MakeTokenizer(a, WeightsPart::kDecoder));
  const bool discrete = tok->config().is_discrete();
  if (name.empty()) {
    for (const char* n : discrete ? std::vector<const char*>{"indices", "codes"} : std::vector<const char*>{"latent"})
      if (st->Contains(n)) {
        name = n;
        break;
      }
  }
  if (name.empty() || !st->Contains(name)) {
    std::vector<std::string> names;
    for (const auto& e : st->entries()) names.push_back(e.name);
    return absl::InvalidArgumentError(absl::StrCat(path, ": no ", discrete ? "\"indices\" or \"codes\"" : "\"latent\"",
                                                   " tensor for the ", tok->config().name, " tokenizer (it has: ",
                                                   absl::StrJoin(names, ", "), ")"));
  }
  WFM_ASSIGN_OR_RETURN(at::Tensor code, st->GetCopy(name));
  WFM_ASSIGN_OR_RETURN(ClipGeometry g, ClipGeometry::FromMetadata(st->metadata()), path);
  double fps = a.fps;
  if (fps <= 0 && st->metadata().count("wfm.tokenizer.fps")) fps = std::atof(st->metadata().at("wfm.tokenizer.fps").c_str());
  FrameSink sink(a.output, fps);
  WFM_RETURN_IF_ERROR(DecodeInto(*tok, code, g, serve, sink), path);
  return sink.Close({{"wfm.tokenizer.source", a.input}});
}

absl::Status Reconstruct(const Args& a) {
  WFM_ASSIGN_OR_RETURN(ServeOptions serve, MakeServe(a));
  bool tensor_input = false;
  WFM_ASSIGN_OR_RETURN(at::Tensor x, ReadNonVideoInput(a, &tensor_input));
  WFM_ASSIGN_OR_RETURN(auto tok, MakeTokenizer(a, WeightsPart::kAll));
  if (tensor_input) {
    FrameSink sink(a.output, a.fps);
    WFM_ASSIGN_OR_RETURN(at::Tensor rec, tok->Reconstruct(x, serve), a.input);
    WFM_RETURN_IF_ERROR(sink.Write(rec));
    return sink.Close({{"wfm.tokenizer.source", a.input}});
  }
  if (!tok->config().is_video()) {
    WFM_ASSIGN_OR_RETURN(at::Tensor u8, DecodeVideo(a.input, VideoOptions(a)));
    WFM_ASSIGN_OR_RETURN(at::Tensor rec, tok->Reconstruct(FramesToModelInput(u8).unsqueeze(0), serve), a.input);
    FrameSink sink(a.output, a.fps > 0 ? a.fps : 24.0);
    WFM_RETURN_IF_ERROR(sink.Write(rec));
    return sink.Close();
  }
  // Video file: frames -> latents -> frames in one stream (the output is written as it is decoded).
  WFM_ASSIGN_OR_RETURN(VideoInfo info, ProbeVideo(a.input));
  const double fps = a.fps > 0 ? a.fps : info.fps.value();
  FrameSink sink(a.output, fps);
  if (serve.mode == ServeMode::kWindowed) {
    WFM_ASSIGN_OR_RETURN(auto reader, VideoReader::Open(a.input, VideoOptions(a)));
    Progress progress("reconstruct", 0, "frames");
    int64_t frames = 0;
    while (true) {
      WFM_ASSIGN_OR_RETURN(at::Tensor u8, reader->Next(serve.temporal_window));
      if (!u8.defined() || u8.size(0) == 0) break;
      WFM_ASSIGN_OR_RETURN(at::Tensor rec, tok->Reconstruct(FramesToModelInput(u8).unsqueeze(0), serve), a.input);
      WFM_RETURN_IF_ERROR(sink.Write(rec));
      progress.Add(u8.size(0));
      frames += u8.size(0);
    }
    if (frames == 0) return NoFramesError(a, reader->info());
    progress.Finish();
    return sink.Close({{"wfm.tokenizer.source", a.input}});
  }
  std::unique_ptr<tokenizer::DecodeStream> decoder;
  ClipGeometry geometry;  // crop sizes are known once the first frames arrive
  double unused_fps = 0;
  auto on_piece = [&](const EncodeResult& piece) -> absl::Status {
    if (!decoder) {
      geometry.height = piece.geometry.height, geometry.width = piece.geometry.width;
      WFM_ASSIGN_OR_RETURN(decoder, tok->StartDecode(geometry, serve));
    }
    // Latents never run ahead of the frames read, so capping at the frames read so far only drops the padded tail.
    decoder->set_max_frames(piece.geometry.frames);
    WFM_ASSIGN_OR_RETURN(at::Tensor rec,
                         decoder->Push(tok->config().is_discrete() ? piece.indices : piece.latent));
    return sink.Write(rec);
  };
  WFM_RETURN_IF_ERROR(EncodeVideoFile(*tok, a, serve, &unused_fps, on_piece).status(), a.input);
  return sink.Close({{"wfm.tokenizer.source", a.input}});
}

constexpr char kInputHelp[] =
    "IN: a video file (any FFmpeg-readable format), an image (.png/.jpg), or FILE.safetensors[:TENSOR] (default "
    "tensor `input`, values in [-1, 1], [B, C, T, H, W] or [B, C, H, W]).";
constexpr char kOutputHelp[] =
    "REC: .safetensors (tensor `reconstruction`, [-1, 1]), a video (.mp4/.mkv/.avi/.webm; one per batch element), "
    "or .png (one image, or NAME_000000.png ... for several frames).";

int RunEncode(int argc, char** argv) {
  Args a;
  ArgParser p("wfm tokenizer encode",
              absl::StrCat("Encode a clip into continuous latents or discrete tokens. ", kInputHelp,
                           " OUT.safetensors gets `latent` (CV/CI) or `indices` (int64) + `codes` (DV/DI), with "
                           "the clip geometry, config and fps as metadata."));
  AddCommon(p, a, true);
  p.Epilog(
      "examples:\n"
      "  wfm tokenizer encode --config CV8x8x8 --weights Cosmos-Tokenize1-CV8x8x8-720p/ --input clip.mp4 \\\n"
      "    --output clip.latent.safetensors\n"
      "  wfm tokenizer encode --config ../shared/fixtures/tokenizer/DV8x16x16.json \\\n"
      "    --weights ../shared/fixtures/tokenizer/DV8x16x16.weights.safetensors \\\n"
      "    --input ../shared/fixtures/tokenizer/DV8x16x16.io.safetensors --output tokens.safetensors\n");
  if (auto rc = p.Parse(argc, argv)) return *rc;
  const absl::Status s = Encode(a);
  return s.ok() ? kExitOk : ReportError(s);
}

int RunDecode(int argc, char** argv) {
  Args a;
  ArgParser p("wfm tokenizer decode",
              absl::StrCat("Decode latents/tokens written by `wfm tokenizer encode` (IN: OUT.safetensors[:TENSOR]; "
                           "`indices` or `codes` for DV/DI, `latent` for CV/CI) back to frames, cropped to the "
                           "encoded clip's size. ",
                           kOutputHelp));
  AddCommon(p, a, false);
  p.Epilog("example:\n  wfm tokenizer decode --config CV8x8x8 --weights ckpt/ --input clip.latent.safetensors "
           "--output rec.mp4\n");
  if (auto rc = p.Parse(argc, argv)) return *rc;
  const absl::Status s = Decode(a);
  return s.ok() ? kExitOk : ReportError(s);
}

int RunReconstruct(int argc, char** argv) {
  Args a;
  ArgParser p("wfm tokenizer reconstruct",
              absl::StrCat("Encode and decode (autoencode) a clip. ", kInputHelp, " ", kOutputHelp,
                           " A video file is processed as a stream (memory bounded by --chunk-frames)."));
  AddCommon(p, a, true);
  p.Epilog("example:\n  wfm tokenizer reconstruct --config DV8x16x16 --weights ckpt/ --input clip.mp4 "
           "--output rec.mp4 --tile 512\n");
  if (auto rc = p.Parse(argc, argv)) return *rc;
  const absl::Status s = Reconstruct(a);
  return s.ok() ? kExitOk : ReportError(s);
}

WFM_REGISTER_COMMAND("tokenizer encode", "encode video/images into tokenizer latents or tokens", RunEncode);
WFM_REGISTER_COMMAND("tokenizer decode", "decode tokenizer latents or tokens into frames", RunDecode);
WFM_REGISTER_COMMAND("tokenizer reconstruct", "encode + decode (autoencode) video/images", RunReconstruct);

}  // namespace
}  // namespace wfm::cli
