// wfm.tokenizer: the Cosmos-compatible video/image tokenizer (wfm/tokenizer/tokenizer.h) — load from a config
// (preset, json file or dict) + weights, encode / decode / reconstruct in streaming or windowed mode with spatial
// tiling, incremental encode/decode streams, FSQ indices <-> codes, and the native network as a trainable module
// (state_dict shares memory, forward() runs with autograd). Long calls release the GIL.
#include <algorithm>

#include <ATen/Context.h>
#include <c10/core/GradMode.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "wfm/core/runtime.h"
#include "wfm/core/status.h"
#include "wfm/tokenizer/tokenizer.h"
#include "wfm/tokenizer/train.h"
#include "wfm/tokenizer/weights.h"
#include "train_options.h"
#include "wfm_py.h"

namespace wfm::py {
namespace {
namespace py = pybind11;
using namespace wfm::tokenizer;  // NOLINT
using GilRelease = py::call_guard<py::gil_scoped_release>;

TokenizerConfig ConfigFrom(py::handle obj) {
  std::string json, name;
  if (ConfigArg(obj, &json, &name)) return Unwrap(TokenizerConfig::FromJsonString(json));
  return Unwrap(TokenizerConfig::FromPresetOrFile(name));
}

ServeOptions MakeServe(const std::string& mode, int64_t chunk_frames, int64_t attention_window,
                       int64_t temporal_window, int64_t tile, int64_t tile_overlap) {
  ServeOptions o;
  o.mode = Unwrap(ParseServeMode(mode));
  if (chunk_frames < 0) throw py::value_error("chunk_frames must be >= 0");
  if (temporal_window < 1) throw py::value_error("temporal_window must be >= 1");
  if (tile < 0) throw py::value_error("tile must be >= 0");
  o.chunk_frames = chunk_frames;
  o.attention_window = attention_window;
  o.temporal_window = temporal_window;
  o.tile = tile;
  o.tile_overlap = tile_overlap;
  return o;
}

#define WFM_SERVE_PARAMS                                                                                \
  const std::string &mode, int64_t chunk_frames, int64_t attention_window, int64_t temporal_window, \
      int64_t tile, int64_t tile_overlap
#define WFM_SERVE_VALUES mode, chunk_frames, attention_window, temporal_window, tile, tile_overlap
#define WFM_SERVE_ARGS                                                                                     \
  py::kw_only(), py::arg("mode") = "streaming", py::arg("chunk_frames") = 16, py::arg("attention_window") = 0, \
      py::arg("temporal_window") = 17, py::arg("tile") = 0, py::arg("tile_overlap") = -1

constexpr const char* kServeDoc =
    "Modes: mode='streaming' (causal chunks of chunk_frames, exact = the whole clip at once; attention_window\n"
    "latent frames of temporal attention kept, 0 = all) or 'windowed' (the reference: independent windows of\n"
    "temporal_window frames). tile > 0: overlapping spatial tiles of that many pixels (tile_overlap, -1 = tile/4).";

constexpr const char* kProgressDoc =
    "progress(done, total, info): called after every streaming chunk with the (latent) frames done so far (info:\n"
    "label, unit, finished); once at the end for images and windowed mode. If it raises, the call stops after\n"
    "that chunk and the exception propagates.";

// Streaming video encode chunk by chunk (the same chunks Tokenizer::Encode runs, so the same result), reporting
// frames pushed after each chunk. Windowed mode and images run whole and report once. Returns CancelledError
// once the callback raised (the caller re-raises its exception).
absl::StatusOr<EncodeResult> EncodeReporting(Tokenizer& t, const at::Tensor& x, const ServeOptions& o,
                                             const PyCallback& cb) {
  auto report = [&](int64_t done, int64_t total, bool finished) {
    return cb.Report({"encode", "frames", "", done, total, finished});
  };
  const bool video_stream =
      t.config().is_video() && o.mode == ServeMode::kStreaming && x.dim() == 5 && x.size(2) > 0;
  if (!video_stream) {
    WFM_ASSIGN_OR_RETURN(EncodeResult r, t.Encode(x, o));
    const int64_t n = x.dim() == 5 ? x.size(2) : 1;
    if (!report(n, n, true)) return absl::CancelledError("stopped by the progress callback");
    return r;
  }
  const int64_t T = x.size(2), step = o.chunk_frames > 0 ? o.chunk_frames : T;
  WFM_ASSIGN_OR_RETURN(std::unique_ptr<EncodeStream> stream, t.StartEncode(o));
  std::vector<at::Tensor> latents, indices;
  auto keep = [&](EncodeResult& r) {
    if (r.latent.defined() && r.latent.size(2) > 0) latents.push_back(r.latent);
    if (r.indices.defined() && r.indices.size(1) > 0) indices.push_back(r.indices);
  };
  // The first chunk has 1 + chunk_frames frames (see ServeOptions), later ones chunk_frames.
  for (int64_t start = 0; start < T;) {
    const int64_t n = std::min(T - start, start == 0 ? 1 + step : step);
    WFM_ASSIGN_OR_RETURN(EncodeResult r, stream->Push(x.narrow(2, start, n)));
    keep(r);
    start += n;
    if (!report(start, T, false)) return absl::CancelledError("stopped by the progress callback");
  }
  WFM_ASSIGN_OR_RETURN(EncodeResult tail, stream->Finish());
  keep(tail);
  EncodeResult out;
  out.latent = latents.empty() ? tail.latent : at::cat(latents, 2);
  if (!indices.empty()) out.indices = at::cat(indices, 1);
  out.geometry = tail.geometry;
  if (!report(T, T, true)) return absl::CancelledError("stopped by the progress callback");
  return out;
}

// Streaming video decode latent frame by latent frame group, reporting latent frames done.
absl::StatusOr<at::Tensor> DecodeReporting(Tokenizer& t, const at::Tensor& z, const ClipGeometry& g,
                                           const ServeOptions& o, const PyCallback& cb) {
  auto report = [&](int64_t done, int64_t total, bool finished) {
    return cb.Report({"decode", "latent frames", "", done, total, finished});
  };
  const bool indices = !at::isFloatingType(z.scalar_type());
  const int64_t time_dim = indices ? 1 : 2;
  const bool video_stream = t.config().is_video() && z.dim() == time_dim + 3 &&
                            !(g.mode == ServeMode::kWindowed && g.known()) && g.frames != 0 &&
                            z.size(time_dim) > 0;
  if (!video_stream) {
    WFM_ASSIGN_OR_RETURN(at::Tensor r, t.Decode(z, g, o));
    const int64_t n = z.dim() > time_dim ? z.size(time_dim) : 1;
    if (!report(n, n, true)) return absl::CancelledError("stopped by the progress callback");
    return r;
  }
  const int64_t T = z.size(time_dim);
  // The chunks DecodeStream runs (whatever the pushes): 1 + chunk_frames / Tc latent frames, then chunk_frames / Tc.
  const int64_t per_chunk = o.chunk_frames / t.config().temporal_compression;
  const int64_t step = per_chunk > 0 ? per_chunk : T;
  WFM_ASSIGN_OR_RETURN(std::unique_ptr<DecodeStream> stream, t.StartDecode(g, o));
  std::vector<at::Tensor> frames;
  for (int64_t start = 0; start < T;) {
    const int64_t n = std::min(T - start, start == 0 ? 1 + step : step);
    WFM_ASSIGN_OR_RETURN(at::Tensor f, stream->Push(z.narrow(time_dim, start, n)));
    if (f.size(2) > 0) frames.push_back(f);
    start += n;
    if (!report(start, T, start == T)) return absl::CancelledError("stopped by the progress callback");
  }
  return frames.size() == 1 ? frames[0] : at::cat(frames, 2);
}

// Streaming video reconstruct as a pipeline: each chunk is encoded and its latents decoded at once (the chunks
// Encode and Decode run, so the same result as Tokenizer::Reconstruct), reporting the frames reconstructed so far.
// Windowed mode, images and TorchScript tokenizers run whole and report once.
absl::StatusOr<at::Tensor> ReconstructReporting(Tokenizer& t, const at::Tensor& x, const ServeOptions& o,
                                                const PyCallback& cb) {
  auto report = [&](int64_t done, int64_t total, bool finished) {
    return cb.Report({"reconstruct", "frames", "", done, total, finished});
  };
  const bool video_stream = t.config().is_video() && !t.is_torchscript() && o.mode == ServeMode::kStreaming &&
                            x.dim() == 5 && x.size(2) > 0;
  if (!video_stream) {
    WFM_ASSIGN_OR_RETURN(at::Tensor r, t.Reconstruct(x, o));
    const int64_t n = x.dim() == 5 ? x.size(2) : 1;
    if (!report(n, n, true)) return absl::CancelledError("stopped by the progress callback");
    return r;
  }
  const int64_t T = x.size(2), step = o.chunk_frames > 0 ? o.chunk_frames : T;
  ClipGeometry g;  // what Encode returns for this clip
  g.frames = T;
  g.height = x.size(3);
  g.width = x.size(4);
  g.mode = ServeMode::kStreaming;
  g.temporal_window = o.temporal_window;
  WFM_ASSIGN_OR_RETURN(std::unique_ptr<EncodeStream> encoder, t.StartEncode(o));
  WFM_ASSIGN_OR_RETURN(std::unique_ptr<DecodeStream> decoder, t.StartDecode(g, o));
  const bool discrete = t.config().is_discrete();
  std::vector<at::Tensor> frames;
  int64_t done = 0;
  auto decode = [&](const EncodeResult& r) -> absl::Status {
    const at::Tensor& code = discrete ? r.indices : r.latent;  // as Reconstruct decodes
    if (!code.defined() || code.size(discrete ? 1 : 2) == 0) return absl::OkStatus();
    WFM_ASSIGN_OR_RETURN(at::Tensor f, decoder->Push(code));  // [B, C, t, H, W]
    if (f.size(2) > 0) frames.push_back(f), done += f.size(2);
    return absl::OkStatus();
  };
  // The first chunk has 1 + chunk_frames frames (see ServeOptions), later ones chunk_frames.
  for (int64_t start = 0; start < T;) {
    const int64_t n = std::min(T - start, start == 0 ? 1 + step : step);
    WFM_ASSIGN_OR_RETURN(EncodeResult r, encoder->Push(x.narrow(2, start, n)));
    WFM_RETURN_IF_ERROR(decode(r));
    start += n;
    if (!report(done, T, false)) return absl::CancelledError("stopped by the progress callback");
  }
  WFM_ASSIGN_OR_RETURN(EncodeResult tail, encoder->Finish());
  WFM_RETURN_IF_ERROR(decode(tail));
  if (!report(done, T, true)) return absl::CancelledError("stopped by the progress callback");
  return frames.size() == 1 ? frames[0] : at::cat(frames, 2);
}

WeightsPart ParsePart(const std::string& part) {
  if (part == "all") return WeightsPart::kAll;
  if (part == "encoder") return WeightsPart::kEncoder;
  if (part == "decoder") return WeightsPart::kDecoder;
  throw py::value_error(absl::StrCat("part must be 'all', 'encoder' or 'decoder', not '", part, "'"));
}

TokenizerNetwork NativeNet(const Tokenizer& t) {
  TokenizerNetwork net = t.network();
  if (!net) throw py::value_error("this tokenizer runs TorchScript files (backend='torchscript'): no native network");
  return net;
}

// A network built from `config`, moved to device/dtype, wrapped for serving (eval mode).
std::unique_ptr<Tokenizer> Serve(TokenizerNetwork net, const std::string& device, const std::string& dtype) {
  TokenizerOptions o;
  o.device = device;
  o.dtype = dtype;
  c10::Device dev = Unwrap(ParseDevice(device));
  MoveFloating(*net, dev, ParseComputeDtype(dtype, dev.is_cuda()));
  net->eval();
  return Unwrap(Tokenizer::FromNetwork(net, o));
}

void Bind(py::module_& m) {
  py::class_<ClipGeometry>(m, "ClipGeometry",
                           "Where a latent came from (input frames and size, mode): lets decode() crop back exactly.")
      .def(py::init([](int64_t frames, int64_t height, int64_t width, const std::string& mode, int64_t temporal_window,
                       bool image_frames) {
             ClipGeometry g;
             g.frames = frames;
             g.height = height;
             g.width = width;
             g.mode = Unwrap(ParseServeMode(mode));
             g.temporal_window = temporal_window;
             g.image_frames = image_frames;
             return g;
           }),
           py::kw_only(), py::arg("frames") = -1, py::arg("height") = -1, py::arg("width") = -1,
           py::arg("mode") = "streaming", py::arg("temporal_window") = 17, py::arg("image_frames") = false)
      .def_readwrite("frames", &ClipGeometry::frames, "input frames (0: a single image; -1: unknown)")
      .def_readwrite("height", &ClipGeometry::height)
      .def_readwrite("width", &ClipGeometry::width)
      .def_property(
          "mode", [](const ClipGeometry& g) { return std::string(ServeModeName(g.mode)); },
          [](ClipGeometry& g, const std::string& mode) { g.mode = Unwrap(ParseServeMode(mode)); })
      .def_readwrite("temporal_window", &ClipGeometry::temporal_window)
      .def_readwrite("image_frames", &ClipGeometry::image_frames)
      .def_property_readonly("known", &ClipGeometry::known)
      .def("to_metadata", &ClipGeometry::ToMetadata,
           "As safetensors metadata {'wfm.tokenizer.frames': ..., ...} (what `wfm tokenizer encode` writes).")
      .def_static(
          "from_metadata",
          [](const std::map<std::string, std::string>& md) { return Unwrap(ClipGeometry::FromMetadata(md)); },
          py::arg("metadata"))
      .def("__repr__", [](const ClipGeometry& g) {
        return absl::StrCat("ClipGeometry(frames=", g.frames, ", height=", g.height, ", width=", g.width, ", mode='",
                            ServeModeName(g.mode), "')");
      });

  py::class_<EncodeResult>(m, "EncodeResult", "latent (float32; FSQ codes for discrete tokenizers), indices "
                                              "(int64, discrete only, else None) and geometry.")
      .def_readonly("latent", &EncodeResult::latent)
      .def_readonly("indices", &EncodeResult::indices)
      .def_readonly("geometry", &EncodeResult::geometry)
      .def("__repr__", [](const EncodeResult& r) {
        std::string s = "EncodeResult(latent=[";
        if (r.latent.defined()) {
          for (int64_t i = 0; i < r.latent.dim(); ++i) absl::StrAppend(&s, i ? ", " : "", r.latent.size(i));
        }
        absl::StrAppend(&s, "]", r.indices.defined() ? ", indices" : "", ")");
        return s;
      });

  py::class_<EncodeStream>(m, "EncodeStream",
                           "Incremental streaming encoder: push() frames [B, C, t, H, W] in any amounts, get the\n"
                           "latents completed so far; finish() pads the tail and returns the rest.")
      .def("push", [](EncodeStream& s, const at::Tensor& frames) { return Unwrap(s.Push(frames)); }, py::arg("frames"),
           GilRelease())
      .def("finish", [](EncodeStream& s) { return Unwrap(s.Finish()); }, GilRelease())
      .def_property_readonly("frames_in", &EncodeStream::frames_in)
      .def_property_readonly("state_bytes", &EncodeStream::state_bytes, "bytes of causal state held");

  py::class_<DecodeStream>(m, "DecodeStream",
                           "Incremental streaming decoder: push() latent (or index) frames, get pixel frames.")
      .def("push", [](DecodeStream& s, const at::Tensor& z) { return Unwrap(s.Push(z)); }, py::arg("latent"),
           GilRelease())
      .def("set_max_frames", &DecodeStream::set_max_frames, py::arg("frames"))
      .def_property_readonly("frames_out", &DecodeStream::frames_out)
      .def_property_readonly("state_bytes", &DecodeStream::state_bytes);

  py::class_<Tokenizer> tokenizer(m, "Tokenizer",
                        "A Cosmos-Tokenize1 tokenizer (CV/DV video, CI/DI image). Video input float [B, 3, T, H, W]\n"
                        "in [-1, 1]; any T >= 1 and any H, W (padded and cropped back).");
  DefModuleMethods(tokenizer, [](Tokenizer& t) -> TokenizerNetworkImpl& { return *NativeNet(t); },
                   "The network's tensors under the reference names. They ARE the network's tensors (no copy): in-place\n"
                   "changes (e.g. an optimizer step) change the tokenizer.");
  tokenizer.def_static(
          "from_files",
          [](py::object config, const Path& weights, const std::string& device, const std::string& dtype,
             const std::string& part, bool ema, const std::string& backend) {
            TokenizerConfig c = ConfigFrom(config);
            TokenizerOptions o;
            o.device = device;
            o.dtype = dtype;
            o.part = ParsePart(part);
            o.use_ema = ema;
            o.backend = backend;
            py::gil_scoped_release release;
            return Unwrap(Tokenizer::Create(c, weights.value, o));
          },
          py::arg("config"), py::arg("weights"), py::kw_only(), py::arg("device") = "cpu", py::arg("dtype") = "auto",
          py::arg("part") = "all", py::arg("ema") = false, py::arg("backend") = "native",
          "Loads a tokenizer. config: a preset name ('CV8x8x8', 'Cosmos-Tokenize1-DV8x16x16-720p', ...), a\n"
          "config.json path or a dict of reference keys. weights: safetensors, model.pt, .jit files, a directory or\n"
          "'encoder.jit,decoder.jit' (loaded strictly: every problem is listed in one ValueError). part: 'all',\n"
          "'encoder' or 'decoder' (only that half must be present). ema: the EMA weights of a model.pt.\n"
          "backend='torchscript' runs .jit files as they are. dtype 'auto': bfloat16 on CUDA, float32 on CPU.")
      .def_static(
          "from_state_dict",
          [](py::object config, const TensorMap& state_dict, const std::string& device, const std::string& dtype) {
            TokenizerConfig c = ConfigFrom(config);
            Check(c.Validate());
            py::gil_scoped_release release;
            TokenizerNetwork net(c);
            Unwrap(LoadTokenizerStateDict(*net, state_dict, WeightsPart::kAll, "state_dict"));
            return Serve(net, device, dtype);
          },
          py::arg("config"), py::arg("state_dict"), py::kw_only(), py::arg("device") = "cpu",
          py::arg("dtype") = "auto", "A tokenizer from tensors in memory (reference names), loaded strictly.")
      .def_static(
          "random",
          [](py::object config, uint64_t seed, const std::string& device, const std::string& dtype) {
            TokenizerConfig c = ConfigFrom(config);
            Check(c.Validate());
            py::gil_scoped_release release;
            at::manual_seed(seed);
            TokenizerNetwork net(c);
            return Serve(net, device, dtype);
          },
          py::arg("config"), py::kw_only(), py::arg("seed") = 0, py::arg("device") = "cpu", py::arg("dtype") = "auto",
          "A randomly initialised tokenizer (torch's default init after torch.manual_seed(seed)): for training\n"
          "from scratch and smoke tests.")
      .def_property_readonly("config", [](const Tokenizer& t) { return JsonToPy(t.config().ToJsonString()); },
                             "the config under the reference keys (a dict)")
      .def_property_readonly("name", [](const Tokenizer& t) { return t.config().name; }, "CV, DV, CI or DI")
      .def_property_readonly("is_video", [](const Tokenizer& t) { return t.config().is_video(); })
      .def_property_readonly("is_discrete", [](const Tokenizer& t) { return t.config().is_discrete(); })
      .def_property_readonly("temporal_compression", [](const Tokenizer& t) { return t.config().time_factor(); })
      .def_property_readonly("spatial_compression", [](const Tokenizer& t) { return t.config().spatial_compression; })
      .def_property_readonly("latent_channels", [](const Tokenizer& t) { return t.config().latent_dim(); })
      .def_property_readonly("codebook_size",
                             [](const Tokenizer& t) { return t.config().is_discrete() ? t.config().codebook_size() : 0; })
      .def_property_readonly("device", &Tokenizer::device)
      .def_property_readonly("dtype", [](const Tokenizer& t) { return DtypeObject(t.dtype()); })
      .def_property_readonly("is_torchscript", &Tokenizer::is_torchscript)
      .def("describe", &Tokenizer::Describe)
      .def(
          "encode",
          [](Tokenizer& t, const at::Tensor& x, WFM_SERVE_PARAMS, py::object progress) {
            ServeOptions o = MakeServe(WFM_SERVE_VALUES);
            PyCallback cb(std::move(progress));
            absl::StatusOr<EncodeResult> r;
            {
              py::gil_scoped_release release;
              r = cb ? EncodeReporting(t, x, o, cb) : t.Encode(x, o);
            }
            cb.RethrowIfFailed();
            return Unwrap(std::move(r));
          },
          py::arg("x"), WFM_SERVE_ARGS, py::arg("progress") = py::none(),
          absl::StrCat("x: float [B, C, T, H, W] (or [B, C, H, W]) in [-1, 1] -> EncodeResult.\n", kServeDoc,
                       "\n", kProgressDoc)
              .c_str())
      .def(
          "decode",
          [](Tokenizer& t, const at::Tensor& z, std::optional<ClipGeometry> geometry, WFM_SERVE_PARAMS,
             py::object progress) {
            ServeOptions o = MakeServe(WFM_SERVE_VALUES);
            ClipGeometry g = geometry.value_or(ClipGeometry{});
            if (!geometry) g.mode = o.mode, g.temporal_window = o.temporal_window;
            PyCallback cb(std::move(progress));
            absl::StatusOr<at::Tensor> r;
            {
              py::gil_scoped_release release;
              r = cb ? DecodeReporting(t, z, g, o, cb) : t.Decode(z, g, o);
            }
            cb.RethrowIfFailed();
            return Unwrap(std::move(r));
          },
          py::arg("latent"), py::arg("geometry") = py::none(), WFM_SERVE_ARGS, py::arg("progress") = py::none(),
          absl::StrCat("latent (float: continuous latent or FSQ codes) or indices (int64) -> float32 reconstruction,\n"
                       "cropped to `geometry` (from encode()) when given; without it the padded size is returned and\n"
                       "the mode comes from the keyword arguments. ",
                       kProgressDoc)
              .c_str())
      .def(
          "reconstruct",
          [](Tokenizer& t, const at::Tensor& x, WFM_SERVE_PARAMS, py::object progress) {
            ServeOptions o = MakeServe(WFM_SERVE_VALUES);
            PyCallback cb(std::move(progress));
            absl::StatusOr<at::Tensor> r;
            {
              py::gil_scoped_release release;
              r = cb ? ReconstructReporting(t, x, o, cb) : t.Reconstruct(x, o);
            }
            cb.RethrowIfFailed();
            return Unwrap(std::move(r));
          },
          py::arg("x"), WFM_SERVE_ARGS, py::arg("progress") = py::none(),
          "encode + decode: same shape as x. progress(done, total, info): streaming video runs chunk by chunk\n"
          "(each chunk encoded and decoded at once) and reports the frames reconstructed so far after every chunk;\n"
          "windowed mode, images and TorchScript tokenizers report once at the end. If it raises, the call stops\n"
          "after that chunk and the exception propagates.")
      .def(
          "indices_to_codes", [](const Tokenizer& t, const at::Tensor& i) { return Unwrap(t.IndicesToCodes(i)); },
          py::arg("indices"), GilRelease(), "Discrete tokenizers: int64 indices [B, ...] -> float32 codes [B, D, ...].")
      .def(
          "codes_to_indices",
          [](const Tokenizer& t, const at::Tensor& codes) {
            if (!t.config().is_discrete()) throw py::value_error("codes_to_indices: this tokenizer is continuous");
            TokenizerNetwork net = NativeNet(t);
            if (codes.dim() < 2 || codes.size(1) != net->quantizer->dim())
              throw py::value_error(absl::StrCat("codes_to_indices: expected codes [B, ", net->quantizer->dim(),
                                                 ", ...], got ", codes.dim(), " dims"));
            py::gil_scoped_release release;
            return net->quantizer->CodesToIndices(codes.to(at::kFloat));
          },
          py::arg("codes"), "Discrete tokenizers: float codes [B, D, ...] -> int64 indices [B, ...].")
      .def(
          "start_encode",
          [](Tokenizer& t, WFM_SERVE_PARAMS) {
            ServeOptions o = MakeServe(WFM_SERVE_VALUES);
            return Unwrap(t.StartEncode(o));
          },
          WFM_SERVE_ARGS, py::keep_alive<0, 1>(), "An EncodeStream (video tokenizers, streaming mode).")
      .def(
          "start_decode",
          [](Tokenizer& t, std::optional<ClipGeometry> geometry, WFM_SERVE_PARAMS) {
            ServeOptions o = MakeServe(WFM_SERVE_VALUES);
            return Unwrap(t.StartDecode(geometry.value_or(ClipGeometry{}), o));
          },
          py::arg("geometry") = py::none(), WFM_SERVE_ARGS, py::keep_alive<0, 1>(),
          "A DecodeStream (video tokenizers, streaming mode); geometry crops the output.")
      // ---- the native network as a torch module ----
      .def(
          "load_state_dict",
          [](Tokenizer& t, const TensorMap& sd) {
            TokenizerNetwork net = NativeNet(t);
            py::gil_scoped_release release;
            return Unwrap(LoadTokenizerStateDict(*net, sd, WeightsPart::kAll, "state_dict")).Summary();
          },
          py::arg("state_dict"), "Copies tensors in (strict: every problem listed in one ValueError).")
      .def(
          "forward",
          [](Tokenizer& t, const at::Tensor& x) {
            TokenizerNetwork net = NativeNet(t);
            py::gil_scoped_release release;
            TokenizerNetworkImpl::Output out = net->forward(x);
            return std::make_tuple(out.reconstruction, out.encoded.latent, out.encoded.indices);
          },
          py::arg("x"),
          "The network as a differentiable function: x [B, C, 1 + k*Tc, H, W] (H, W multiples of the spatial\n"
          "compression) -> (reconstruction, latent, indices or None). Autograd flows to the parameters (FSQ:\n"
          "straight-through; VAE: sampled in train mode). No padding, tiling or chunking (use encode/decode).")
      .def(
          "share", [](const Tokenizer& t) { return Unwrap(Tokenizer::FromNetwork(NativeNet(t))); },
          "Another Tokenizer over the SAME native network (no copy), serving on the device and dtype its parameters\n"
          "have now (e.g. after the tensors were moved in place by TokenizerModule.to()).")
      .def(
          "save",
          [](Tokenizer& t, const Path& path) {
            TokenizerNetwork net = NativeNet(t);
            py::gil_scoped_release release;
            Check(SaveTokenizerWeights(*net, path.value));
          },
          py::arg("path"), "Writes the weights as safetensors (reference names, config in the metadata), atomically.")
      .def("__repr__", [](const Tokenizer& t) { return absl::StrCat("Tokenizer(", t.Describe(), ")"); });

  // ---- training ----
  m.def(
      "reconstruction_loss",
      [](const at::Tensor& x, const at::Tensor& rec, double l1, double ssim, double temporal, double kl,
         std::optional<at::Tensor> mean, std::optional<at::Tensor> logvar) {
        TokenizerLossWeights w;
        w.l1 = l1;
        w.ssim = ssim;
        w.temporal = temporal;
        w.kl = kl;
        if (x.sizes() != rec.sizes()) throw py::value_error("x and rec must have the same shape");
        LossTerms t;
        {
          py::gil_scoped_release release;
          t = Unwrap(CatchToStatus("reconstruction loss", [&]() -> absl::StatusOr<LossTerms> {
            return ReconstructionLoss(x, rec, w, mean.value_or(at::Tensor()), logvar.value_or(at::Tensor()));
          }));
        }
        return py::make_tuple(t.total, py::cast(t.parts));
      },
      py::arg("x"), py::arg("rec"), py::kw_only(), py::arg("l1") = 1.0, py::arg("ssim") = 0.2,
      py::arg("temporal") = 0.5, py::arg("kl") = 1e-6, py::arg("mean") = py::none(), py::arg("logvar") = py::none(),
      "The training loss of `wfm tokenizer train`: l1 |x - rec| + ssim (1 - SSIM) + temporal |dx/dt - drec/dt|\n"
      "(+ kl KL for VAE with mean/logvar). x, rec [B, 3, T, H, W] in [-1, 1] -> (total, {part: value}).");
  m.def(
      "train",
      [](py::object progress, py::kwargs kwargs) {
        TokenizerTrainOptions o;
        py::object config = py::str("CV4x8x8");
        int64_t channels = 0, res_blocks = 0, z_channels = 0, latent_channels = 0, seed = 0;
        std::vector<int64_t> mult;
        std::vector<std::string> shards;
        bool no_resume = false, quiet = true;
        o.data.width = o.data.height = 128;
        o.data.num_frames = 17;
        OptionTable t("wfm.tokenizer.train");
        t.Add("config", [&](py::handle v) { config = py::reinterpret_borrow<py::object>(v); })
            .Add("channels", &channels)
            .Add("channels_mult",
                 [&](py::handle v) {
                   mult.clear();
                   if (py::isinstance<py::str>(v)) {
                     for (absl::string_view piece : absl::StrSplit(v.cast<std::string>(), ','))
                       mult.push_back(std::stoll(std::string(piece)));
                   } else {
                     mult = v.cast<std::vector<int64_t>>();
                   }
                 })
            .Add("num_res_blocks", &res_blocks)
            .Add("z_channels", &z_channels)
            .Add("latent_channels", &latent_channels)
            .Add("init_weights", &o.init_weights)
            .Add("output", &o.output_dir)
            .Add("input", &o.inputs)
            .Add("shards", &shards)
            .Add("frames", &o.data.num_frames)
            .Add("size",
                 [&](py::handle v) {
                   if (py::isinstance<py::int_>(v)) {
                     o.data.width = o.data.height = v.cast<int>();
                   } else if (py::isinstance<py::str>(v)) {
                     std::vector<std::string> wh = absl::StrSplit(v.cast<std::string>(), 'x');
                     o.data.width = std::stoi(wh[0]);
                     o.data.height = std::stoi(wh.size() > 1 ? wh[1] : wh[0]);
                   } else {
                     std::tie(o.data.width, o.data.height) = v.cast<std::pair<int, int>>();
                   }
                   if (o.data.width <= 0 || o.data.height <= 0) throw py::value_error("size must be positive");
                 })
            .Add("short_side", &o.data.resize_short_side)
            .Add("fps", &o.data.fps)
            .Add("zoom", &o.data.max_zoom)
            .Add("flip", &o.data.random_flip)
            .Add("val_fraction", &o.data.val_fraction)
            .Add("val_clips", &o.val_clips)
            .Add("l1", &o.loss.l1)
            .Add("ssim", &o.loss.ssim)
            .Add("temporal", &o.loss.temporal)
            .Add("adversarial", &o.loss.adversarial)
            .Add("adversarial_start", &o.loss.adversarial_start)
            .Add("disc_lr", &o.disc_lr)
            .Add("no_resume", &no_resume)
            .Add("seed", &seed)
            .Add("quiet", &quiet);
        AddSharedTrainOptions(t, o);
        t.Apply(kwargs);
        if (o.output_dir.empty()) throw py::value_error("wfm.tokenizer.train: 'output' (a run directory) is required");
        if (o.inputs.empty() && shards.empty())
          throw py::value_error("wfm.tokenizer.train: 'input' (videos, directories, shards) or 'shards' is required");
        o.config = ConfigFrom(config);
        // The CLI's width overrides (small models on a CPU).
        if (channels > 0) o.config.channels = channels;
        if (!mult.empty()) o.config.channels_mult = mult;
        if (res_blocks > 0) o.config.num_res_blocks = res_blocks;
        if (z_channels > 0) o.config.z_channels = z_channels;
        if (latent_channels > 0) o.config.latent_channels = latent_channels;
        Check(o.config.Validate());
        o.data.seed = static_cast<uint64_t>(seed);
        o.seed = static_cast<uint64_t>(seed);
        o.resume = !no_resume;
        o.quiet = quiet;
        o.command_line = "wfm.tokenizer.train(**" + py::repr(kwargs).cast<std::string>() + ")";
        const TokenizerTrainResult a =
            RunWithProgress(std::move(progress), "steps", [&]() -> absl::StatusOr<TokenizerTrainResult> {
              // shards= must be shards; *.tar in input (and the shards in input directories) are extracted as the
              // CLI's --input does. Both go to output/shard_videos.
              std::vector<std::string> sources;
              if (!shards.empty()) {
                WFM_ASSIGN_OR_RETURN(sources, ShardClipSources(shards, o.output_dir, false), "shards");
              }
              if (!o.inputs.empty()) {
                WFM_ASSIGN_OR_RETURN(std::vector<std::string> more, ShardClipSources(o.inputs, o.output_dir, true),
                                     "input");
                for (std::string& m : more)
                  if (std::find(sources.begin(), sources.end(), m) == sources.end()) sources.push_back(std::move(m));
              }
              o.inputs = std::move(sources);
              return TrainTokenizer(o);
            });
        py::dict d;
        d["steps"] = a.steps;
        d["train_seconds"] = a.train_seconds;
        d["val_psnr"] = a.val_psnr;
        d["val_ssim"] = a.val_ssim;
        d["weights_path"] = a.weights_path;
        d["config_path"] = a.config_path;
        return d;
      },
      py::kw_only(), py::arg("progress") = py::none(),
      "`wfm tokenizer train` in process (tokenizer::TrainTokenizer, the function the CLI calls): the options are\n"
      "the CLI flags with '_' for '-' (config, channels, input, output, frames, size, short_side, steps,\n"
      "batch_size, lr, l1, ssim, temporal, adversarial, ..., see `wfm tokenizer train --help`; config may also be\n"
      "a dict; size an int, 'WxH' or (W, H); max_time seconds or '20m'). shards: curated webdataset shards\n"
      "(*.tar or folders; *.tar in input work too), their clips extracted once to output/shard_videos. The\n"
      "videos are split by time into train and validation; AdamW, EMA, checkpoints and resume in output\n"
      "(no_resume=True starts fresh). Runs with the GIL released; quiet (default True) hides the progress line.\n"
      "progress(done, total, info) is called after every step of this call; if it raises, training stops as on\n"
      "Ctrl-C (a checkpoint is written) and the exception propagates. Returns {'steps', 'train_seconds',\n"
      "'val_psnr', 'val_ssim', 'weights_path', 'config_path'}; Tokenizer.from_files(config_path, weights_path)\n"
      "loads the result.");

  m.def("preset_names", &TokenizerConfig::PresetNames, "The canonical tokenizer preset names.");
  m.def(
      "config", [](py::object config) { return JsonToPy(ConfigFrom(config).ToJsonString()); }, py::arg("config"),
      "Resolves a preset name, config.json path or dict into the full config dict (reference keys).");
}

#undef WFM_SERVE_PARAMS
#undef WFM_SERVE_VALUES
#undef WFM_SERVE_ARGS

}  // namespace
WFM_PY_BINDINGS(tokenizer, 100, "Cosmos-compatible video and image tokenizer (wfm/tokenizer).", Bind);
}  // namespace wfm::py
