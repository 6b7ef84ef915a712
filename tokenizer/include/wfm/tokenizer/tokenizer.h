// The tokenizer facade for serving: load a config + weights onto a device, then encode / decode / reconstruct
// clips of any length and size, with the frame-count and size rules handled for the caller.
//
//   WFM_ASSIGN_OR_RETURN(auto tok, Tokenizer::Create(config, "CV8x8x8.weights.safetensors"));
//   WFM_ASSIGN_OR_RETURN(EncodeResult enc, tok->Encode(video));          // video [B, 3, T, H, W] in [-1, 1]
//   WFM_ASSIGN_OR_RETURN(at::Tensor rec, tok->Decode(enc.latent, enc.geometry));   // same shape as video
//
// Modes (video tokenizers):
//  - streaming (default): causal chunked processing that carries the causal state across chunks (see
//    causal_cache.h), so the result equals encoding the whole clip at once, while activations are bounded by
//    the chunk size. Any T >= 1: the tail is padded to 1 + k*N frames by repeating the last frame and cropped
//    back on decode.
//  - windowed: the reference procedure (cosmos_predict1 CausalVideoTokenizer.forward): independent windows of
//    `temporal_window` (17) frames, each padded like pad_video_batch (edge frames split before/after to
//    1 + k*max(8, N), black borders to multiples of max(16, S) split top/bottom) and cropped back.
// Spatial tiling (encode and decode): overlapping tiles blended with linear ramps; discrete latents are blended
// before quantisation. Each tile keeps its own causal state when streaming.
// Sizes: H and W are padded (centred; replicated edges when streaming, black when windowed) to multiples of the
// spatial compression S and cropped back on decode (the geometry travels with the latent, see ClipGeometry).
// Precision: float32 on CPU; bfloat16 weights and activations on CUDA by default (FSQ always in float32).
// Bad input (wrong rank or channel count, NaN/Inf, no frames, out-of-range indices) is an InvalidArgument error.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "wfm/tokenizer/config.h"
#include "wfm/tokenizer/network.h"
#include "wfm/tokenizer/weights.h"

namespace wfm::tokenizer {

enum class ServeMode { kStreaming, kWindowed };
absl::StatusOr<ServeMode> ParseServeMode(absl::string_view text);  // "streaming" | "windowed"
const char* ServeModeName(ServeMode mode);

struct ServeOptions {
  ServeMode mode = ServeMode::kStreaming;
  // Streaming: input frames per chunk after the first (the first has 1 + chunk_frames), rounded up to a
  // multiple of the temporal compression. 0 = the whole clip as one chunk. Decoding uses the matching number
  // of latent frames. Image tokenizers: frames (images) per batch.
  int64_t chunk_frames = 16;
  // Streaming: latent frames of temporal-attention keys/values kept across chunks; 0 = all (exact).
  int64_t attention_window = 0;
  // Windowed: frames per window (the reference uses 17).
  int64_t temporal_window = 17;
  // Spatial tiling in input pixels: tile edge (0 = off) and overlap (< 0: tile / 4), both rounded to the
  // spatial compression.
  int64_t tile = 0;
  int64_t tile_overlap = -1;
};

struct TokenizerOptions {
  std::string device = "cpu";  // "cpu", "cuda", "cuda:N", "auto"
  std::string dtype = "auto";  // "auto" (bfloat16 on CUDA, float32 on CPU), "float32", "bfloat16", "float16"
  // The half to load (kEncoder: encode only, kDecoder: decode only; the other half's memory is released).
  WeightsPart part = WeightsPart::kAll;
  bool use_ema = false;
  // "native": the weights are loaded into the native network (any accepted format, TorchScript included).
  // "torchscript": encoder.jit / decoder.jit / autoencoder.jit are run as they are (no streaming state: a clip is
  // encoded whole or per window; tiled encoding only for continuous tokenizers).
  std::string backend = "native";
};

// Where a latent came from: enough to give the input's exact size back on decode.
struct ClipGeometry {
  int64_t frames = -1;   // input frames; 0 = a single image [B, C, H, W] given to a video tokenizer; -1 = unknown
  int64_t height = -1, width = -1;  // input size; -1 = unknown (decode returns the padded size)
  ServeMode mode = ServeMode::kStreaming;
  int64_t temporal_window = 17;
  bool image_frames = false;  // image tokenizer applied to the frames of a video [B, C, T, H, W]

  bool known() const { return height > 0 && width > 0; }
  // safetensors metadata ("wfm.tokenizer.frames", ...), and back (absent keys: unknown geometry).
  std::map<std::string, std::string> ToMetadata() const;
  static absl::StatusOr<ClipGeometry> FromMetadata(const std::map<std::string, std::string>& metadata);
};

struct EncodeResult {
  at::Tensor latent;   // CV/CI: float32 latent; DV/DI: float32 normalised codes. [B, C, t, h, w] or [B, C, h, w]
  at::Tensor indices;  // DV/DI: int64 [B, t, h, w] or [B, h, w]
  ClipGeometry geometry;
};

class EncodeStream;
class DecodeStream;
namespace internal {
class JitBackend;
}

class Tokenizer {
 public:
  // Builds the network, loads `weights` strictly (see weights.h for accepted formats) and moves it to the
  // device/dtype in eval mode.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Create(const TokenizerConfig& config, const std::string& weights,
                                                           const TokenizerOptions& options = {});
  // Serves an existing network (e.g. one being trained); it is used as is (device/dtype/mode untouched).
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromNetwork(TokenizerNetwork network,
                                                                const TokenizerOptions& options = {});
  ~Tokenizer();

  const TokenizerConfig& config() const { return config_; }
  // The native network (null with the TorchScript backend).
  TokenizerNetwork network() const { return net_; }
  bool is_torchscript() const { return jit_ != nullptr; }
  // "native CV network, 105.7M parameters, cpu float32" / "TorchScript encoder=... decoder=...".
  std::string Describe() const;
  c10::Device device() const { return device_; }
  at::ScalarType dtype() const { return dtype_; }

  // input: float [B, C, T, H, W] (video) or [B, C, H, W] (image) in [-1, 1], any device.
  absl::StatusOr<EncodeResult> Encode(const at::Tensor& input, const ServeOptions& options = {});
  // latent (float, continuous or codes) or indices (integer, discrete). Returns float32 on CPU, cropped to
  // `geometry` when it is known.
  absl::StatusOr<at::Tensor> Decode(const at::Tensor& latent_or_indices, const ClipGeometry& geometry = {},
                                    const ServeOptions& options = {});
  // Encode + decode (same shape as input).
  absl::StatusOr<at::Tensor> Reconstruct(const at::Tensor& input, const ServeOptions& options = {});

  // Incremental streaming sessions (video tokenizers, streaming mode) for clips that do not fit in memory.
  absl::StatusOr<std::unique_ptr<EncodeStream>> StartEncode(const ServeOptions& options = {});
  absl::StatusOr<std::unique_ptr<DecodeStream>> StartDecode(const ClipGeometry& geometry,
                                                            const ServeOptions& options = {});

  // Runs the network on one prepared (padded) chunk, tiled when asked; `caches` carries the streaming state
  // (null: none). Used by the modes and the streams. Results are float32 / int64 on the CPU.
  absl::StatusOr<EncodeResult> EncodeChunk(const at::Tensor& x, const ServeOptions& options,
                                           std::vector<CausalCache>* caches);
  // latent: continuous latent or FSQ codes (float).
  absl::StatusOr<at::Tensor> DecodeChunk(const at::Tensor& latent, const ServeOptions& options,
                                         std::vector<CausalCache>* caches);
  // int64 indices -> float32 codes [B, D, ...] (discrete tokenizers), with a range check.
  absl::StatusOr<at::Tensor> IndicesToCodes(const at::Tensor& indices) const;

 private:
  Tokenizer() = default;
  absl::StatusOr<EncodeResult> EncodeWindowed(const at::Tensor& video, const ServeOptions& options);
  absl::StatusOr<at::Tensor> DecodeWindowed(const at::Tensor& latent, const ClipGeometry& geometry,
                                            const ServeOptions& options);
  absl::StatusOr<EncodeResult> EncodeImages(const at::Tensor& input, const ServeOptions& options);
  absl::StatusOr<at::Tensor> DecodeImages(const at::Tensor& latent, const ClipGeometry& geometry,
                                          const ServeOptions& options);

  absl::Status CheckPart(WeightsPart needed) const;

  TokenizerConfig config_;
  WeightsPart part_ = WeightsPart::kAll;
  TokenizerNetwork net_{nullptr};
  FSQuantizer fsq_{nullptr};  // discrete: code <-> index conversions
  std::shared_ptr<internal::JitBackend> jit_;
  c10::Device device_{c10::kCPU};
  at::ScalarType dtype_ = at::kFloat;
};

// Feeds frames in any amounts; returns latents as soon as they are complete.
class EncodeStream {
 public:
  EncodeStream(Tokenizer* tokenizer, ServeOptions options);
  // frames: [B, C, t, H, W] (t >= 0), same B, C, H, W on every call. Returns the newly completed latents
  // (t' may be 0).
  absl::StatusOr<EncodeResult> Push(const at::Tensor& frames);
  // Pads the tail to whole latent frames and returns the rest. The returned geometry covers the whole stream.
  absl::StatusOr<EncodeResult> Finish();
  int64_t frames_in() const { return frames_in_; }
  // Bytes of causal state currently held (all tiles).
  int64_t state_bytes() const;

 private:
  absl::StatusOr<EncodeResult> RunChunk(const at::Tensor& x);
  Tokenizer* tok_;
  ServeOptions options_;
  std::vector<CausalCache> caches_;
  std::vector<at::Tensor> pending_;
  int64_t pending_frames_ = 0, frames_in_ = 0, chunks_done_ = 0;
  int64_t batch_ = -1, channels_ = -1, height_ = -1, width_ = -1;
  bool finished_ = false;
};

// Feeds latent frames (or index frames) in any amounts; returns the decoded frames (cropped spatially; the
// total is cropped to the geometry's frame count when it is known).
class DecodeStream {
 public:
  DecodeStream(Tokenizer* tokenizer, ClipGeometry geometry, ServeOptions options);
  absl::StatusOr<at::Tensor> Push(const at::Tensor& latent_or_indices);
  // Caps the total frames returned (e.g. the frame count of a clip being encoded in the same stream, known
  // only as its frames arrive: the padded tail is then dropped).
  void set_max_frames(int64_t frames) { geometry_.frames = frames; }
  int64_t frames_out() const { return frames_out_; }
  int64_t state_bytes() const;

 private:
  Tokenizer* tok_;
  ClipGeometry geometry_;
  ServeOptions options_;
  std::vector<CausalCache> caches_;
  int64_t frames_out_ = 0, latents_in_ = 0;
};

// Frame/size rules shared by the modes (exposed for tests and tools).
// Spatial: pad to a multiple of `align`, split (pad >> 1) before and the rest after.
struct PadPlan {
  int64_t top = 0, bottom = 0, left = 0, right = 0;  // spatial
  int64_t front = 0, back = 0;                       // frames
};
PadPlan SpatialPadPlan(int64_t height, int64_t width, int64_t align);
// Reference windowed rule (pad_video_batch): frames padded to 1 + k*align, (pad >> 1) in front.
PadPlan WindowPadPlan(int64_t frames, int64_t height, int64_t width, int64_t temporal_align, int64_t spatial_align);
// Overlapping tile starts covering [0, size) with tiles of `tile` and at least `overlap` overlap.
std::vector<int64_t> TileStarts(int64_t size, int64_t tile, int64_t overlap);
// Runs fn on overlapping spatial tiles of x (last two dims) and blends the outputs with linear ramps;
// out_num/out_den is the output/input size ratio. tile/overlap in input units. fn(tile_input, tile_index).
at::Tensor TiledApply(const at::Tensor& x, int64_t tile, int64_t overlap, int64_t out_num, int64_t out_den,
                      const std::function<at::Tensor(const at::Tensor&, size_t)>& fn);

}  // namespace wfm::tokenizer
