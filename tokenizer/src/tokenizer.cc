// The serving facade (see tokenizer.h): input checks, padding/cropping, streaming and windowed modes, spatial
// tiling with blending, device/dtype handling.
#include "wfm/tokenizer/tokenizer.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "wfm/core/logging.h"
#include "wfm/core/runtime.h"
#include "wfm/core/status.h"
#include "jit_backend.h"

namespace wfm::tokenizer {
namespace {

std::string Shape(at::IntArrayRef s) { return c10::str(s); }
int64_t RoundUp(int64_t v, int64_t m) { return m <= 0 ? v : (v + m - 1) / m * m; }
int64_t Pow2AtLeast(int64_t a, int64_t b) { return std::max(a, b); }  // both powers of two here

absl::StatusOr<at::ScalarType> ParseDtype(const std::string& text, const c10::Device& device) {
  if (text == "auto" || text.empty()) return device.is_cuda() ? at::kBFloat16 : at::kFloat;
  if (text == "float32" || text == "fp32" || text == "float") return at::kFloat;
  if (text == "bfloat16" || text == "bf16") return at::kBFloat16;
  if (text == "float16" || text == "fp16" || text == "half") return at::kHalf;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown dtype \"", text, "\" (expected auto, float32, bfloat16 or float16)"));
}

// Centred spatial padding of [..., H, W] with edge replication (streaming) or black = -1 (windowed).
at::Tensor PadSpatial(const at::Tensor& x, const PadPlan& p, bool replicate) {
  if (p.top == 0 && p.bottom == 0 && p.left == 0 && p.right == 0) return x;
  if (!replicate) return at::constant_pad_nd(x, {p.left, p.right, p.top, p.bottom}, -1.0);
  if (x.dim() == 5) return at::replication_pad3d(x, {p.left, p.right, p.top, p.bottom, 0, 0});
  return at::replication_pad2d(x, {p.left, p.right, p.top, p.bottom});
}

at::Tensor CropSpatial(const at::Tensor& x, const PadPlan& p, int64_t height, int64_t width) {
  return x.narrow(-2, p.top, height).narrow(-1, p.left, width);
}

// Repeats the first/last frame of [B, C, T, H, W].
at::Tensor PadFrames(const at::Tensor& x, int64_t front, int64_t back) {
  if (front == 0 && back == 0) return x;
  std::vector<at::Tensor> parts;
  auto rep = [&](int64_t index, int64_t n) {
    std::vector<int64_t> shape = x.sizes().vec();
    shape[2] = n;
    return x.narrow(2, index, 1).expand(shape);
  };
  if (front > 0) parts.push_back(rep(0, front));
  parts.push_back(x);
  if (back > 0) parts.push_back(rep(x.size(2) - 1, back));
  return at::cat(parts, 2);
}

// Module::to(device, dtype) would also convert the integer buffers (FSQ levels, ...): only floating tensors change
// dtype here.
void MoveNetwork(torch::nn::Module& net, const c10::Device& device, at::ScalarType dtype) {
  net.to(device);
  for (auto& p : net.parameters(true)) p.set_data(p.data().to(dtype));
  for (auto& b : net.buffers(true))
    if (at::isFloatingType(b.scalar_type())) b.set_data(b.data().to(dtype));
}

at::Tensor Ramp(int64_t n, int64_t lead, int64_t trail) {
  std::vector<float> w(n, 1.0f);
  for (int64_t i = 0; i < std::min(lead, n); ++i) w[i] = std::min(w[i], (i + 0.5f) / lead);
  for (int64_t i = 0; i < std::min(trail, n); ++i) w[n - 1 - i] = std::min(w[n - 1 - i], (i + 0.5f) / trail);
  return at::tensor(w);
}

absl::Status CheckFloatInput(const at::Tensor& x, const TokenizerConfig& c) {
  if (!x.defined()) return absl::InvalidArgumentError("input tensor is undefined");
  if (!at::isFloatingType(x.scalar_type()))
    return absl::InvalidArgumentError(
        absl::StrCat("input must be a float tensor with values in [-1, 1], got ", c10::toString(x.scalar_type())));
  if (x.dim() != 4 && x.dim() != 5)
    return absl::InvalidArgumentError(
        absl::StrCat("input must be [B, C, T, H, W] (video) or [B, C, H, W] (image), got shape ", Shape(x.sizes())));
  if (x.size(1) != c.in_channels)
    return absl::InvalidArgumentError(absl::StrCat("input has ", x.size(1), " channels (shape ", Shape(x.sizes()),
                                                   "); the ", c.name, " tokenizer expects ", c.in_channels,
                                                   " (layout B, C, [T,] H, W)"));
  if (x.size(0) < 1) return absl::InvalidArgumentError("input batch is empty");
  if (x.dim() == 5 && x.size(2) < 1)
    return absl::InvalidArgumentError(absl::StrCat("video has no frames (shape ", Shape(x.sizes()), ")"));
  if (x.size(-1) < 1 || x.size(-2) < 1)
    return absl::InvalidArgumentError(absl::StrCat("input has an empty frame size (shape ", Shape(x.sizes()), ")"));
  at::Tensor finite = at::isfinite(x);
  if (!finite.all().item<bool>()) {
    const int64_t bad = finite.logical_not().sum().item<int64_t>();
    std::string where;
    if (x.dim() == 5) {
      at::Tensor per_frame = finite.logical_not().any(-1).any(-1).any(1).any(0);  // [T]
      where = absl::StrCat(" (first at frame ", per_frame.nonzero().min().item<int64_t>(), ")");
    }
    return absl::InvalidArgumentError(absl::StrCat("input contains ", bad, " NaN/Inf values", where));
  }
  return absl::OkStatus();
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// Rules

absl::StatusOr<ServeMode> ParseServeMode(absl::string_view text) {
  if (text == "streaming" || text == "stream") return ServeMode::kStreaming;
  if (text == "windowed" || text == "window") return ServeMode::kWindowed;
  return absl::InvalidArgumentError(absl::StrCat("unknown mode \"", text, "\" (expected streaming or windowed)"));
}

const char* ServeModeName(ServeMode mode) { return mode == ServeMode::kWindowed ? "windowed" : "streaming"; }

PadPlan SpatialPadPlan(int64_t height, int64_t width, int64_t align) {
  PadPlan p;
  const int64_t ph = RoundUp(height, align) - height, pw = RoundUp(width, align) - width;
  p.top = ph >> 1, p.bottom = ph - p.top, p.left = pw >> 1, p.right = pw - p.left;
  return p;
}

PadPlan WindowPadPlan(int64_t frames, int64_t height, int64_t width, int64_t temporal_align, int64_t spatial_align) {
  PadPlan p = SpatialPadPlan(height, width, spatial_align);
  const int64_t r = (frames - 1) % temporal_align;
  const int64_t pf = r != 0 ? temporal_align - r : 0;
  p.front = pf >> 1, p.back = pf - p.front;
  return p;
}

std::vector<int64_t> TileStarts(int64_t size, int64_t tile, int64_t overlap) {
  if (tile <= 0 || size <= tile) return {0};
  const int64_t stride = std::max<int64_t>(1, tile - overlap);
  std::vector<int64_t> starts;
  for (int64_t s = 0; s + tile < size; s += stride) starts.push_back(s);
  if (starts.empty() || starts.back() != size - tile) starts.push_back(size - tile);
  return starts;
}

at::Tensor TiledApply(const at::Tensor& x, int64_t tile, int64_t overlap, int64_t out_num, int64_t out_den,
                      const std::function<at::Tensor(const at::Tensor&, size_t)>& fn) {
  const int64_t H = x.size(-2), W = x.size(-1);
  const std::vector<int64_t> ys = TileStarts(H, tile, overlap), xs = TileStarts(W, tile, overlap);
  if (ys.size() == 1 && xs.size() == 1) return fn(x, 0);
  const int64_t ov = overlap * out_num / out_den;
  at::Tensor out, wsum;
  size_t index = 0;
  for (int64_t y : ys) {
    for (int64_t x0 : xs) {
      const int64_t th = std::min(tile, H - y), tw = std::min(tile, W - x0);
      at::Tensor o = fn(x.narrow(-2, y, th).narrow(-1, x0, tw), index++).to(at::kFloat);
      const int64_t oy = y * out_num / out_den, ox = x0 * out_num / out_den, oh = o.size(-2), ow = o.size(-1);
      if (!out.defined()) {
        std::vector<int64_t> shape = o.sizes().vec();
        shape[shape.size() - 2] = H * out_num / out_den;
        shape[shape.size() - 1] = W * out_num / out_den;
        out = at::zeros(shape, o.options());
        wsum = at::zeros({shape[shape.size() - 2], shape[shape.size() - 1]}, o.options());
      }
      at::Tensor wy = Ramp(oh, y > 0 ? ov : 0, y + th < H ? ov : 0).to(o.device());
      at::Tensor wx = Ramp(ow, x0 > 0 ? ov : 0, x0 + tw < W ? ov : 0).to(o.device());
      at::Tensor w = wy.unsqueeze(1) * wx.unsqueeze(0);  // [oh, ow]
      out.narrow(-2, oy, oh).narrow(-1, ox, ow).add_(o * w);
      wsum.narrow(0, oy, oh).narrow(1, ox, ow).add_(w);
    }
  }
  return out.div_(wsum);
}

std::map<std::string, std::string> ClipGeometry::ToMetadata() const {
  std::map<std::string, std::string> m;
  if (!known()) return m;
  m["wfm.tokenizer.frames"] = std::to_string(frames);
  m["wfm.tokenizer.height"] = std::to_string(height);
  m["wfm.tokenizer.width"] = std::to_string(width);
  m["wfm.tokenizer.mode"] = ServeModeName(mode);
  m["wfm.tokenizer.temporal_window"] = std::to_string(temporal_window);
  if (image_frames) m["wfm.tokenizer.image_frames"] = "1";
  return m;
}

absl::StatusOr<ClipGeometry> ClipGeometry::FromMetadata(const std::map<std::string, std::string>& m) {
  ClipGeometry g;
  auto get = [&](const char* key, int64_t* out) -> absl::Status {
    auto it = m.find(key);
    if (it == m.end()) return absl::OkStatus();
    if (!absl::SimpleAtoi(it->second, out))
      return absl::InvalidArgumentError(absl::StrCat("metadata ", key, "=\"", it->second, "\" is not an integer"));
    return absl::OkStatus();
  };
  WFM_RETURN_IF_ERROR(get("wfm.tokenizer.frames", &g.frames));
  WFM_RETURN_IF_ERROR(get("wfm.tokenizer.height", &g.height));
  WFM_RETURN_IF_ERROR(get("wfm.tokenizer.width", &g.width));
  WFM_RETURN_IF_ERROR(get("wfm.tokenizer.temporal_window", &g.temporal_window));
  auto mode = m.find("wfm.tokenizer.mode");
  if (mode != m.end()) {
    WFM_ASSIGN_OR_RETURN(g.mode, ParseServeMode(mode->second));
  }
  g.image_frames = m.count("wfm.tokenizer.image_frames") > 0;
  return g;
}

// ---------------------------------------------------------------------------------------------------------------
// Tokenizer

Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Create(const TokenizerConfig& config, const std::string& weights,
                                                             const TokenizerOptions& options) {
  WFM_RETURN_IF_ERROR(config.Validate());
  std::unique_ptr<Tokenizer> t(new Tokenizer());
  t->config_ = config;
  WFM_ASSIGN_OR_RETURN(t->device_, ParseDevice(options.device));
  WFM_ASSIGN_OR_RETURN(t->dtype_, ParseDtype(options.dtype, t->device_));
  if (config.is_discrete()) t->fsq_ = FSQuantizer(config.levels);
  if (options.backend == "torchscript") {
    WFM_ASSIGN_OR_RETURN(std::vector<std::string> files, ResolveTokenizerWeights(weights));
    WFM_ASSIGN_OR_RETURN(t->jit_, internal::JitBackend::Load(files, config, t->device_, t->dtype_));
    return t;
  }
  if (options.backend != "native")
    return absl::InvalidArgumentError(
        absl::StrCat("unknown backend \"", options.backend, "\" (expected native or torchscript)"));
  WFM_RETURN_IF_ERROR(CatchToStatus("building the tokenizer network", [&]() -> absl::Status {
    t->net_ = TokenizerNetwork(config, /*initialize=*/false);  // every weight comes from the checkpoint
    return absl::OkStatus();
  }));
  WFM_ASSIGN_OR_RETURN(LoadReport report, LoadTokenizerWeights(*t->net_, weights, options.part, options.use_ema));
  WFM_LOG(DEBUG) << report.Summary();
  t->part_ = options.part;
  WFM_RETURN_IF_ERROR(CatchToStatus("moving the tokenizer to the device", [&]() -> absl::Status {
    t->net_->eval();
    if (options.part != WeightsPart::kAll) {
      // Only one half was loaded: release the other half's (randomly initialised) parameters.
      torch::NoGradGuard ng;
      for (auto& p : t->net_->named_parameters(true))
        if (!InWeightsPart(p.key(), options.part)) p.value().set_data(at::empty({0}, p.value().options()));
    }
    MoveNetwork(*t->net_, t->device_, t->dtype_);
    return absl::OkStatus();
  }));
  return t;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromNetwork(TokenizerNetwork network,
                                                                  const TokenizerOptions& options) {
  std::unique_ptr<Tokenizer> t(new Tokenizer());
  t->config_ = network->config();
  t->net_ = network;
  if (t->config_.is_discrete()) t->fsq_ = network->quantizer;
  auto params = network->parameters();
  if (!params.empty()) t->device_ = params[0].device(), t->dtype_ = params[0].scalar_type();
  (void)options;
  return t;
}

namespace {
struct TilePlan {
  int64_t tile = 0, overlap = 0;  // in input units of the op (pixels for encode, latent pixels for decode)
};
TilePlan EncodeTiles(const ServeOptions& o, int64_t S) {
  TilePlan p;
  if (o.tile <= 0) return p;
  p.tile = RoundUp(o.tile, S);
  p.overlap = o.tile_overlap >= 0 ? RoundUp(o.tile_overlap, S) : RoundUp(p.tile / 4, S);
  if (p.overlap >= p.tile) p.overlap = p.tile - S;
  return p;
}
TilePlan DecodeTiles(const ServeOptions& o, int64_t S) {
  TilePlan p = EncodeTiles(o, S);
  p.tile /= S, p.overlap /= S;
  return p;
}
// Status -> exception inside TiledApply callbacks (CatchToStatus turns it back).
template <typename T>
T ValueOrThrow(absl::StatusOr<T> s) {
  if (!s.ok()) throw std::runtime_error(std::string(s.status().message()));
  return std::move(*s);
}
}  // namespace

std::string Tokenizer::Describe() const {
  if (jit_) return jit_->Describe();
  int64_t n = 0;
  for (const auto& p : net_->parameters()) n += p.numel();
  return absl::StrCat("native ", config_.name, " network, ", n, " parameters, ", device_.str(), " ",
                      c10::toString(dtype_));
}

absl::StatusOr<at::Tensor> Tokenizer::IndicesToCodes(const at::Tensor& indices) const {
  if (!config_.is_discrete()) return absl::InvalidArgumentError("integer indices given to a continuous tokenizer");
  if (indices.numel() > 0) {
    const int64_t lo = indices.min().item<int64_t>(), hi = indices.max().item<int64_t>();
    if (lo < 0 || hi >= config_.codebook_size())
      return absl::InvalidArgumentError(absl::StrCat("indices out of range [0, ", config_.codebook_size(), ") (min ",
                                                     lo, ", max ", hi, ")"));
  }
  return fsq_->IndicesToCodes(indices.cpu());
}

absl::StatusOr<EncodeResult> Tokenizer::EncodeChunk(const at::Tensor& x, const ServeOptions& o,
                                                    std::vector<CausalCache>* caches) {
  const int64_t S = config_.spatial_compression;
  const TilePlan tp = EncodeTiles(o, S);
  return CatchToStatus("encoding", [&]() -> absl::StatusOr<EncodeResult> {
    c10::InferenceMode guard;
    EncodeResult r;
    if (jit_) {
      const bool tiled = TileStarts(x.size(-2), tp.tile, tp.overlap).size() > 1 ||
                         TileStarts(x.size(-1), tp.tile, tp.overlap).size() > 1;
      if (tiled && config_.is_discrete())
        return absl::FailedPreconditionError(
            "tiled encoding of a discrete tokenizer blends before quantisation and needs the native backend");
      if (config_.is_discrete()) {
        WFM_ASSIGN_OR_RETURN(auto e, jit_->Encode(x));
        r.indices = e.first.cpu();
        r.latent = e.second.to(at::kCPU, at::kFloat);
      } else {
        r.latent = TiledApply(x, tp.tile, tp.overlap, 1, S, [&](const at::Tensor& t, size_t) {
                     return ValueOrThrow(jit_->Encode(t)).first;
                   }).to(at::kCPU, at::kFloat);
      }
      return r;
    }
    const bool video = config_.is_video();
    auto run = [&](const at::Tensor& t, size_t index) {
      CausalCache* cache = nullptr;
      if (video && caches != nullptr) {
        while (caches->size() <= index) caches->emplace_back(o.attention_window);
        cache = &(*caches)[index];
      }
      return net_->EncodeMoments(t.to(device_, dtype_), cache);
    };
    auto q = net_->Quantize(TiledApply(x, tp.tile, tp.overlap, 1, S, run).to(at::kFloat));
    r.latent = q.latent.to(at::kCPU, at::kFloat);
    if (q.indices.defined()) r.indices = q.indices.cpu();
    return r;
  });
}

absl::StatusOr<at::Tensor> Tokenizer::DecodeChunk(const at::Tensor& latent, const ServeOptions& o,
                                                  std::vector<CausalCache>* caches) {
  const int64_t S = config_.spatial_compression;
  const TilePlan tp = DecodeTiles(o, S);
  return CatchToStatus("decoding", [&]() -> absl::StatusOr<at::Tensor> {
    c10::InferenceMode guard;
    if (jit_) {
      // decoder.jit of a discrete tokenizer starts from indices (InvQuantizerJit).
      at::Tensor in = config_.is_discrete() ? fsq_->CodesToIndices(latent) : latent;
      return TiledApply(in, tp.tile, tp.overlap, S, 1, [&](const at::Tensor& t, size_t) {
               return ValueOrThrow(jit_->Decode(t));
             }).to(at::kCPU, at::kFloat);
    }
    const bool video = config_.is_video();
    auto run = [&](const at::Tensor& t, size_t index) {
      CausalCache* cache = nullptr;
      if (video && caches != nullptr) {
        while (caches->size() <= index) caches->emplace_back(o.attention_window);
        cache = &(*caches)[index];
      }
      return net_->Decode(t.to(device_, dtype_), cache);
    };
    return TiledApply(latent, tp.tile, tp.overlap, S, 1, run).to(at::kCPU, at::kFloat);
  });
}

absl::Status Tokenizer::CheckPart(WeightsPart needed) const {
  if (part_ == WeightsPart::kAll || part_ == needed) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat("this tokenizer was loaded for ",
                                                    part_ == WeightsPart::kEncoder ? "encoding" : "decoding",
                                                    " only (TokenizerOptions::part)"));
}

absl::StatusOr<EncodeResult> Tokenizer::Encode(const at::Tensor& input, const ServeOptions& options) {
  WFM_RETURN_IF_ERROR(CheckPart(WeightsPart::kEncoder));
  WFM_RETURN_IF_ERROR(CheckFloatInput(input, config_));
  c10::InferenceMode guard;
  if (!config_.is_video()) return EncodeImages(input, options);
  const bool single = input.dim() == 4;
  at::Tensor x = single ? input.unsqueeze(2) : input;
  absl::StatusOr<EncodeResult> result;
  if (options.mode == ServeMode::kWindowed) {
    result = EncodeWindowed(x, options);
  } else {
    EncodeStream stream(this, options);
    WFM_ASSIGN_OR_RETURN(EncodeResult a, stream.Push(x));
    WFM_ASSIGN_OR_RETURN(EncodeResult b, stream.Finish());
    EncodeResult r;
    r.latent = at::cat({a.latent, b.latent}, 2);
    if (b.indices.defined()) r.indices = at::cat({a.indices, b.indices}, 1);
    r.geometry = b.geometry;
    result = std::move(r);
  }
  if (result.ok() && single) result->geometry.frames = 0;
  return result;
}

absl::StatusOr<at::Tensor> Tokenizer::Decode(const at::Tensor& latent, const ClipGeometry& geometry,
                                             const ServeOptions& options) {
  if (!latent.defined()) return absl::InvalidArgumentError("latent tensor is undefined");
  WFM_RETURN_IF_ERROR(CheckPart(WeightsPart::kDecoder));
  c10::InferenceMode guard;
  if (!config_.is_video()) return DecodeImages(latent, geometry, options);
  at::Tensor out;
  if (geometry.mode == ServeMode::kWindowed && geometry.known()) {
    WFM_ASSIGN_OR_RETURN(out, DecodeWindowed(latent, geometry, options));
  } else {
    DecodeStream stream(this, geometry, options);
    WFM_ASSIGN_OR_RETURN(out, stream.Push(latent));
  }
  if (geometry.frames == 0) out = out.squeeze(2);
  return out;
}

absl::StatusOr<at::Tensor> Tokenizer::Reconstruct(const at::Tensor& input, const ServeOptions& options) {
  if (jit_ && !jit_->has_encoder() && jit_->has_autoencoder()) {
    // autoencoder.jit alone: pad (edges, tail frames), run the whole network once, crop.
    WFM_RETURN_IF_ERROR(CheckFloatInput(input, config_));
    if (!config_.is_video() && input.dim() == 5)
      return absl::InvalidArgumentError("autoencoder.jit of an image tokenizer takes [B, C, H, W]");
    c10::InferenceMode guard;
    const bool single = config_.is_video() && input.dim() == 4;
    at::Tensor x = single ? input.unsqueeze(2) : input;
    const int64_t H = x.size(-2), W = x.size(-1);
    const PadPlan p = SpatialPadPlan(H, W, config_.spatial_compression);
    x = PadSpatial(x, p, /*replicate=*/true);
    int64_t T = 0;
    if (config_.is_video()) {
      T = x.size(2);
      x = PadFrames(x, 0, 1 + RoundUp(T - 1, config_.temporal_compression) - T);
    }
    WFM_ASSIGN_OR_RETURN(at::Tensor out, jit_->Reconstruct(x));
    out = CropSpatial(out.to(at::kCPU, at::kFloat), p, H, W);
    if (config_.is_video()) out = out.narrow(2, 0, T);
    return single ? out.squeeze(2).contiguous() : out.contiguous();
  }
  WFM_ASSIGN_OR_RETURN(EncodeResult enc, Encode(input, options));
  const at::Tensor& code = config_.is_discrete() ? enc.indices : enc.latent;
  return Decode(code, enc.geometry, options);
}

absl::StatusOr<std::unique_ptr<EncodeStream>> Tokenizer::StartEncode(const ServeOptions& options) {
  if (!config_.is_video()) return absl::FailedPreconditionError("streaming sessions need a video tokenizer (CV/DV)");
  return std::make_unique<EncodeStream>(this, options);
}

absl::StatusOr<std::unique_ptr<DecodeStream>> Tokenizer::StartDecode(const ClipGeometry& geometry,
                                                                     const ServeOptions& options) {
  if (!config_.is_video()) return absl::FailedPreconditionError("streaming sessions need a video tokenizer (CV/DV)");
  return std::make_unique<DecodeStream>(this, geometry, options);
}

// Windowed mode: cosmos_predict1 CausalVideoTokenizer.forward + pad_video_batch / unpad_video_batch.
absl::StatusOr<EncodeResult> Tokenizer::EncodeWindowed(const at::Tensor& x, const ServeOptions& o) {
  if (o.temporal_window < 1) return absl::InvalidArgumentError("temporal_window must be >= 1");
  const int64_t T = x.size(2), H = x.size(3), W = x.size(4);
  const int64_t ta = Pow2AtLeast(8, config_.temporal_compression), sa = Pow2AtLeast(16, config_.spatial_compression);
  std::vector<at::Tensor> latents, indices;
  for (int64_t start = 0; start < T; start += o.temporal_window) {
    const int64_t n = std::min(o.temporal_window, T - start);
    const PadPlan p = WindowPadPlan(n, H, W, ta, sa);
    at::Tensor win = PadFrames(PadSpatial(x.narrow(2, start, n), p, /*replicate=*/false), p.front, p.back);
    WFM_ASSIGN_OR_RETURN(EncodeResult q, EncodeChunk(win, o, nullptr));
    latents.push_back(q.latent);
    if (q.indices.defined()) indices.push_back(q.indices);
  }
  EncodeResult r;
  r.latent = at::cat(latents, 2);
  if (!indices.empty()) r.indices = at::cat(indices, 1);
  r.geometry.frames = T, r.geometry.height = H, r.geometry.width = W;
  r.geometry.mode = ServeMode::kWindowed, r.geometry.temporal_window = o.temporal_window;
  return r;
}

absl::StatusOr<at::Tensor> Tokenizer::DecodeWindowed(const at::Tensor& latent_in, const ClipGeometry& g,
                                                     const ServeOptions& o) {
  at::Tensor latent = latent_in;
  const bool discrete_indices = !at::isFloatingType(latent.scalar_type());
  const int64_t time_dim = discrete_indices ? 1 : 2;
  const int64_t N = config_.temporal_compression;
  const int64_t ta = Pow2AtLeast(8, N), sa = Pow2AtLeast(16, config_.spatial_compression);
  if (g.frames < 1) return absl::InvalidArgumentError("windowed decode needs the clip's frame count");
  std::vector<at::Tensor> outs;
  int64_t offset = 0;
  for (int64_t start = 0; start < g.frames; start += g.temporal_window) {
    const int64_t n = std::min(g.temporal_window, g.frames - start);
    const PadPlan p = WindowPadPlan(n, g.height, g.width, ta, sa);
    const int64_t lat = 1 + (n + p.front + p.back - 1) / N;
    if (offset + lat > latent.size(time_dim))
      return absl::InvalidArgumentError(absl::StrCat("latent has ", latent.size(time_dim),
                                                     " frames; the windowed geometry (", g.frames, " frames, window ",
                                                     g.temporal_window, ") needs more"));
    at::Tensor piece = latent.narrow(time_dim, offset, lat);
    offset += lat;
    ServeOptions whole = o;
    whole.chunk_frames = 0;  // each window is decoded on its own, in one piece
    DecodeStream stream(this, ClipGeometry(), whole);
    WFM_ASSIGN_OR_RETURN(at::Tensor frames, stream.Push(piece));
    outs.push_back(CropSpatial(frames.narrow(2, p.front, n), p, g.height, g.width));
  }
  if (offset != latent.size(time_dim))
    return absl::InvalidArgumentError(absl::StrCat("latent has ", latent.size(time_dim), " frames; the windowed geometry (",
                                                   g.frames, " frames, window ", g.temporal_window, ") uses ", offset));
  return at::cat(outs, 2);
}

// Image tokenizers: [B, C, H, W] or the frames of [B, C, T, H, W], in batches of chunk_frames images.
absl::StatusOr<EncodeResult> Tokenizer::EncodeImages(const at::Tensor& input, const ServeOptions& o) {
  const bool frames = input.dim() == 5;
  const int64_t B = input.size(0), H = input.size(-2), W = input.size(-1);
  const int64_t T = frames ? input.size(2) : 1;
  at::Tensor x = frames ? input.transpose(1, 2).reshape({B * T, input.size(1), H, W}) : input;
  const bool windowed = o.mode == ServeMode::kWindowed;
  const int64_t align = windowed ? Pow2AtLeast(16, config_.spatial_compression) : config_.spatial_compression;
  const PadPlan p = SpatialPadPlan(H, W, align);
  const int64_t batch = o.chunk_frames > 0 ? o.chunk_frames : x.size(0);
  std::vector<at::Tensor> latents, indices;
  for (int64_t s = 0; s < x.size(0); s += batch) {
    at::Tensor xb = PadSpatial(x.narrow(0, s, std::min(batch, x.size(0) - s)), p, !windowed);
    WFM_ASSIGN_OR_RETURN(EncodeResult q, EncodeChunk(xb, o, nullptr));
    latents.push_back(q.latent);
    if (q.indices.defined()) indices.push_back(q.indices);
  }
  EncodeResult r;
  r.latent = at::cat(latents, 0);
  if (!indices.empty()) r.indices = at::cat(indices, 0);
  if (frames) {
    r.latent = r.latent.view({B, T, r.latent.size(1), r.latent.size(2), r.latent.size(3)}).transpose(1, 2).contiguous();
    if (r.indices.defined()) r.indices = r.indices.view({B, T, r.indices.size(1), r.indices.size(2)});
  }
  r.geometry.frames = frames ? T : 0, r.geometry.height = H, r.geometry.width = W;
  r.geometry.mode = o.mode, r.geometry.image_frames = frames;
  return r;
}

absl::StatusOr<at::Tensor> Tokenizer::DecodeImages(const at::Tensor& latent_in, const ClipGeometry& g,
                                                   const ServeOptions& o) {
  at::Tensor latent = latent_in;
  const bool is_indices = !at::isFloatingType(latent.scalar_type());
  if (is_indices) {
    if (latent.dim() != 3 && latent.dim() != 4)
      return absl::InvalidArgumentError(absl::StrCat("indices must be [B, h, w] or [B, T, h, w], got ", Shape(latent.sizes())));
    WFM_ASSIGN_OR_RETURN(latent, IndicesToCodes(latent));
  }
  const bool frames = latent.dim() == 5;
  if (latent.dim() != 4 && !frames)
    return absl::InvalidArgumentError(absl::StrCat("image latent must be [B, C, h, w] (or [B, C, T, h, w]), got ",
                                                   Shape(latent.sizes())));
  if (latent.size(1) != config_.latent_dim())
    return absl::InvalidArgumentError(absl::StrCat("latent has ", latent.size(1), " channels; ", config_.name,
                                                   " expects ", config_.latent_dim()));
  const int64_t B = latent.size(0), T = frames ? latent.size(2) : 1;
  at::Tensor z = frames ? latent.transpose(1, 2).reshape({B * T, latent.size(1), latent.size(3), latent.size(4)}) : latent;
  const int64_t batch = o.chunk_frames > 0 ? o.chunk_frames : z.size(0);
  std::vector<at::Tensor> outs;
  for (int64_t s = 0; s < z.size(0); s += batch) {
    WFM_ASSIGN_OR_RETURN(at::Tensor d, DecodeChunk(z.narrow(0, s, std::min(batch, z.size(0) - s)), o, nullptr));
    outs.push_back(d);
  }
  at::Tensor out = at::cat(outs, 0);
  if (g.known()) {
    const int64_t align = g.mode == ServeMode::kWindowed ? Pow2AtLeast(16, config_.spatial_compression)
                                                         : config_.spatial_compression;
    out = CropSpatial(out, SpatialPadPlan(g.height, g.width, align), g.height, g.width);
  }
  if (frames) out = out.reshape({B, T, out.size(1), out.size(2), out.size(3)}).transpose(1, 2).contiguous();
  return out.contiguous();
}

// ---------------------------------------------------------------------------------------------------------------
// Streams

EncodeStream::EncodeStream(Tokenizer* tokenizer, ServeOptions options) : tok_(tokenizer), options_(options) {
  options_.chunk_frames = RoundUp(std::max<int64_t>(0, options_.chunk_frames), tok_->config().temporal_compression);
  if (tok_->is_torchscript()) options_.chunk_frames = 0;  // no causal state to carry: the clip is encoded whole
}

int64_t EncodeStream::state_bytes() const {
  int64_t n = 0;
  for (const auto& c : caches_) n += c.bytes();
  return n;
}

absl::StatusOr<EncodeResult> EncodeStream::RunChunk(const at::Tensor& x) {
  WFM_ASSIGN_OR_RETURN(EncodeResult r, tok_->EncodeChunk(x, options_, &caches_));
  ++chunks_done_;
  return r;
}

absl::StatusOr<EncodeResult> EncodeStream::Push(const at::Tensor& frames) {
  if (finished_) return absl::FailedPreconditionError("EncodeStream::Push after Finish");
  const TokenizerConfig& c = tok_->config();
  if (frames.dim() != 5)
    return absl::InvalidArgumentError(absl::StrCat("stream frames must be [B, C, t, H, W], got ", Shape(frames.sizes())));
  if (frames.size(2) > 0) WFM_RETURN_IF_ERROR(CheckFloatInput(frames, c));
  if (batch_ < 0) {
    batch_ = frames.size(0), channels_ = frames.size(1), height_ = frames.size(3), width_ = frames.size(4);
  } else if (frames.size(0) != batch_ || frames.size(1) != channels_ || frames.size(3) != height_ ||
             frames.size(4) != width_) {
    return absl::InvalidArgumentError(absl::StrCat("stream frames changed shape: ", Shape(frames.sizes()), " after [",
                                                   batch_, ", ", channels_, ", t, ", height_, ", ", width_, "]"));
  }
  EncodeResult out;
  std::vector<at::Tensor> latents, indices;
  if (frames.size(2) > 0) {
    c10::InferenceMode guard;
    const PadPlan p = SpatialPadPlan(height_, width_, c.spatial_compression);
    pending_.push_back(PadSpatial(frames, p, /*replicate=*/true).contiguous());
    pending_frames_ += frames.size(2);
    frames_in_ += frames.size(2);
  }
  while (options_.chunk_frames > 0) {
    const int64_t need = chunks_done_ == 0 ? 1 + options_.chunk_frames : options_.chunk_frames;
    if (pending_frames_ < need) break;
    at::Tensor all = pending_.size() == 1 ? pending_[0] : at::cat(pending_, 2);
    at::Tensor chunk = all.narrow(2, 0, need);
    pending_.clear();
    if (pending_frames_ > need) pending_.push_back(all.narrow(2, need, pending_frames_ - need).clone());
    pending_frames_ -= need;
    WFM_ASSIGN_OR_RETURN(EncodeResult r, RunChunk(chunk));
    latents.push_back(r.latent);
    if (r.indices.defined()) indices.push_back(r.indices);
  }
  if (latents.empty()) {
    // Nothing complete yet: an empty latent with the right layout.
    const int64_t S = c.spatial_compression;
    const int64_t h = RoundUp(std::max<int64_t>(height_, 1), S) / S, w = RoundUp(std::max<int64_t>(width_, 1), S) / S;
    out.latent = at::zeros({std::max<int64_t>(batch_, 1), c.latent_dim(), 0, h, w});
    if (c.is_discrete()) out.indices = at::zeros({std::max<int64_t>(batch_, 1), 0, h, w}, at::kLong);
  } else {
    out.latent = at::cat(latents, 2);
    if (!indices.empty()) out.indices = at::cat(indices, 1);
  }
  out.geometry.frames = frames_in_, out.geometry.height = height_, out.geometry.width = width_;
  return out;
}

absl::StatusOr<EncodeResult> EncodeStream::Finish() {
  if (finished_) return absl::FailedPreconditionError("EncodeStream::Finish called twice");
  finished_ = true;
  if (frames_in_ == 0) return absl::InvalidArgumentError("video has no frames");
  const int64_t N = tok_->config().temporal_compression;
  EncodeResult out;
  if (pending_frames_ > 0) {
    at::Tensor all = pending_.size() == 1 ? pending_[0] : at::cat(pending_, 2);
    pending_.clear();
    const int64_t target = chunks_done_ == 0 ? 1 + RoundUp(pending_frames_ - 1, N) : RoundUp(pending_frames_, N);
    // With chunk_frames == 0 the whole clip is one chunk; otherwise the tail is at most one chunk.
    WFM_ASSIGN_OR_RETURN(out, RunChunk(PadFrames(all, 0, target - pending_frames_)));
    pending_frames_ = 0;
  } else {
    const TokenizerConfig& c = tok_->config();
    const int64_t S = c.spatial_compression;
    out.latent = at::zeros({batch_, c.latent_dim(), 0, RoundUp(height_, S) / S, RoundUp(width_, S) / S});
    if (c.is_discrete()) out.indices = at::zeros({batch_, 0, RoundUp(height_, S) / S, RoundUp(width_, S) / S}, at::kLong);
  }
  out.geometry.frames = frames_in_, out.geometry.height = height_, out.geometry.width = width_;
  out.geometry.mode = ServeMode::kStreaming;
  return out;
}

DecodeStream::DecodeStream(Tokenizer* tokenizer, ClipGeometry geometry, ServeOptions options)
    : tok_(tokenizer), geometry_(geometry), options_(options) {
  options_.chunk_frames = RoundUp(std::max<int64_t>(0, options_.chunk_frames), tok_->config().temporal_compression);
  if (tok_->is_torchscript()) options_.chunk_frames = 0;
}

int64_t DecodeStream::state_bytes() const {
  int64_t n = 0;
  for (const auto& c : caches_) n += c.bytes();
  return n;
}

absl::StatusOr<at::Tensor> DecodeStream::Push(const at::Tensor& latent_or_indices) {
  const TokenizerConfig& c = tok_->config();
  at::Tensor latent = latent_or_indices;
  if (!at::isFloatingType(latent.scalar_type())) {
    if (latent.dim() != 4)
      return absl::InvalidArgumentError(absl::StrCat("video indices must be [B, t, h, w], got ", Shape(latent.sizes())));
    WFM_ASSIGN_OR_RETURN(latent, tok_->IndicesToCodes(latent));
  }
  if (latent.dim() != 5)
    return absl::InvalidArgumentError(absl::StrCat("video latent must be [B, C, t, h, w], got ", Shape(latent.sizes())));
  if (latent.size(1) != c.latent_dim())
    return absl::InvalidArgumentError(
        absl::StrCat("latent has ", latent.size(1), " channels; ", c.name, " decodes ", c.latent_dim()));
  if (!at::isfinite(latent).all().item<bool>()) return absl::InvalidArgumentError("latent contains NaN/Inf");
  const int64_t N = c.temporal_compression, S = c.spatial_compression;
  const int64_t per_chunk = options_.chunk_frames / N;  // 0 = all at once
  std::vector<at::Tensor> outs;
  int64_t t = 0;
  const int64_t total = latent.size(2);
  while (t < total) {
    int64_t n = total - t;
    if (per_chunk > 0) n = std::min(n, latents_in_ == 0 ? 1 + per_chunk : per_chunk);
    at::Tensor piece = latent.narrow(2, t, n);
    WFM_ASSIGN_OR_RETURN(at::Tensor f, tok_->DecodeChunk(piece, options_, &caches_));
    if (geometry_.known()) f = CropSpatial(f, SpatialPadPlan(geometry_.height, geometry_.width, S), geometry_.height, geometry_.width);
    if (geometry_.frames > 0) {
      const int64_t keep = std::max<int64_t>(0, std::min(f.size(2), geometry_.frames - frames_out_));
      f = f.narrow(2, 0, keep);
    }
    frames_out_ += f.size(2);
    outs.push_back(f.contiguous());
    latents_in_ += n;
    t += n;
  }
  if (outs.empty()) return at::zeros({latent.size(0), c.out_channels, 0, 0, 0});
  return outs.size() == 1 ? outs[0] : at::cat(outs, 2);
}

}  // namespace wfm::tokenizer
