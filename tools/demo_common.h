// Shared pieces of the world-model demo stages (tools/demo_*.cc): the run plan (sizes, model widths, step
// counts for --quick / the full CPU run / --device cuda), the output layout, the training-clip set that the
// curation stage produces and the model stages read, CPU-time measurement and the training call on the library trainer.
//
// Layout of OUTPUT (out/demo):
//   world/train, world/heldout   simulated clips (NAME.mp4, NAME.txt caption, NAME.tracks.json)
//   curated/                     `wfm curate` output (shards/, clips.jsonl, videos.jsonl, summary.json)
//   data/train_clips.safetensors the curated world clips decoded at the model size (uint8 [N, T, H, W, 3])
//   tokenizer/{cv,dv}.safetensors + {cv,dv}.json
//   ar/, diffusion/              model.safetensors + config json + text_encoder.safetensors (+ latent stats)
//   predictions/                 MP4s and PNG frame strips, metrics.json, report.html
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "demo.h"
#include "wfm/core/text/builtin_encoder.h"
#include "wfm/core/train/trainer.h"
#include "wfm/core/world.h"

namespace wfm::tokenizer {
class Tokenizer;
}

namespace wfm::demo {

struct DemoPlan {
  std::string mode;  // "quick", "full" or "cuda"
  std::string device = "cpu";

  // The world and the prediction task.
  int size = 64;           // frames are size x size
  double fps = 12.0;
  int clip_frames = 33;    // simulated clip length
  int max_objects = 3;
  int train_clips = 0, heldout_clips = 0;
  uint64_t train_seed = 1000, heldout_seed = 900000;
  int context_frames = 5;  // given frames: 1 + 4 (two latent frames of a 4x temporal tokenizer)
  int future_frames = 12;  // predicted frames (three latent frames)
  std::vector<int> eval_starts = {0, 12};  // window starts evaluated per held-out clip
  int real_clip_frames = 0;  // frames of each real clip (../shared/media) given to curation (0 = all)

  // Tokenizers (Cosmos-Tokenize1 causal layout at a reduced width): CV{4}x{cv_spatial}x{cv_spatial} for the
  // diffusion model, DV{4}x{dv_spatial}x{dv_spatial} for the AR model; Haar patch tok_patch, tok_latent channels.
  int tok_channels = 32;
  int cv_spatial = 8, dv_spatial = 8, tok_patch = 4, tok_latent = 16;
  int tok_steps = 0, tok_batch = 8, tok_frames = 9;
  double tok_lr = 1e-3;
  int tok_scaled_init = 1;  // 1: tokenizer::ScaleSkipPathToData before training (0: default initialisation)
  std::vector<int64_t> fsq_levels = {8, 5, 5, 5};

  // Built-in text encoder (trained jointly with each world model).
  // Byte tokens + EOS: the world's captions reach ~345 bytes with 3 objects (longest over seeds 1000-2500: 344),
  // so 384 keeps every caption whole (the world stage checks each one).
  int text_dim = 128, text_layers = 2, text_heads = 4, text_ff = 256, text_max_length = 384;

  // AR world model.
  int ar_dim = 192, ar_layers = 4, ar_heads = 6;
  int ar_steps = 0, ar_batch = 16;
  double ar_lr = 1e-3;
  double top_p = 0.9, temperature = 1.0;

  // Diffusion world model.
  int dit_dim = 192, dit_blocks = 4, dit_heads = 6, dit_patch = 2;
  int dit_steps = 0, dit_batch = 16;
  double dit_lr = 5e-4;
  int sample_steps = 24;
  double guidance = 0.0;
  // Residual parametrisation (1 = on): the latent frames after the given ones are learned and generated as their
  // change from the last given latent frame (own per-channel statistics), so the network's mean output is
  // "copy the last given latent frame" and whatever it learns is motion on top of it. 0: absolute latents.
  int dit_residual = 1;

  int seeds = 3;  // futures per held-out window and model

  int window_frames() const { return context_frames + future_frames; }
  // The plan of a run: the mode's defaults, then ctx.overrides ("knob=value", knob names as in the flat
  // KnobNames(); unknown knobs and bad values are InvalidArgument).
  static absl::StatusOr<DemoPlan> For(const DemoContext& ctx);
  absl::Status Set(const std::string& knob, const std::string& value);
  static std::vector<std::string> KnobNames();
  nlohmann::json ToJson() const;
};

// The demo's trained CV or DV tokenizer (`name` "cv" / "dv": OUTPUT/tokenizer/NAME.{json,safetensors}).
absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> OpenDemoTokenizer(const DemoContext& ctx, const DemoPlan& plan,
                                                                         const std::string& name);

// OUTPUT/rel, created (the parent of a file path is not created; use StageDir).
std::string OutPath(const DemoContext& ctx, const std::string& rel);

// Process CPU time (user + system, all threads) in seconds.
double CpuSeconds();

// The curated world clips at model size, and their captions.
struct ClipSet {
  at::Tensor frames;  // uint8 [N, T, H, W, 3]
  std::vector<std::string> captions, names;
};
absl::Status SaveClipSet(const ClipSet& set, const std::string& path);
absl::StatusOr<ClipSet> LoadClipSet(const std::string& path);

// uint8 [..., H, W, 3] -> float [..., 3, ...] model layout: frames [B, T, H, W, 3] -> [B, 3, T, H, W] in [-1, 1].
at::Tensor ToModel(const at::Tensor& frames_bthwc_u8);
// [B, 3, T, H, W] in [-1, 1] -> uint8 [B, T, H, W, 3].
at::Tensor FromModel(const at::Tensor& video);

// Random windows of `frames` frames from random clips: uint8 [B, frames, H, W, 3] and their clip indices.
at::Tensor SampleWindows(const ClipSet& set, int64_t batch, int64_t frames, at::Generator& gen,
                         std::vector<int64_t>* clip_index = nullptr, std::vector<int64_t>* start = nullptr);

// The prediction windows of training clip `clip` the world models learn from: window_frames() frames at starts
// 0, kWindowStride, ... (each encoded on its own, as a prompt is at inference): uint8 [w, F, H, W, 3].
constexpr int64_t kWindowStride = 16;
at::Tensor ClipWindows(const ClipSet& set, int64_t clip, const DemoPlan& plan);
// Every training clip's prediction windows (ClipWindows), encoded window by window as a prompt is at inference:
// `encode` maps one window float [1, 3, F, H, W] in [-1, 1] (model layout, on plan.device) to its codes [1, ...].
// Returns the codes stacked on the CPU [W, ...] and, per window, the clip it came from (for its caption).
struct EncodedWindows {
  at::Tensor codes;              // [W, ...]
  std::vector<int64_t> clip_of;  // [W]
};
absl::StatusOr<EncodedWindows> EncodeClipWindows(
    const ClipSet& set, const DemoPlan& plan, const std::string& label,
    const std::function<absl::StatusOr<at::Tensor>(const at::Tensor& window)>& encode);
// A random training batch of encoded windows: `batch` window indices drawn with `gen` and their clips' captions
// through `text_encoder` (differentiable when it trains).
struct WindowBatch {
  at::Tensor pick;             // int64 [B], indices into EncodedWindows::codes
  text::TextEmbeddings text;   // [B, L, D]
};
absl::StatusOr<WindowBatch> SampleWindowBatch(const ClipSet& set, const EncodedWindows& windows, int64_t batch,
                                              text::TextEncoder& text_encoder, at::Generator& gen);
// The captions of the clips `clip_of[pick[b]]` (pick: int64 [B]).
std::vector<std::string> PickCaptions(const ClipSet& set, const std::vector<int64_t>& clip_of, const at::Tensor& pick);

// The built-in text encoder of the plan (trained jointly with each world model), and a trained one for inference.
text::BuiltinTextEncoderOptions DemoTextEncoderOptions(const DemoPlan& plan, uint64_t seed);
absl::StatusOr<std::unique_ptr<text::TextEncoder>> LoadDemoTextEncoder(const std::string& path, const DemoPlan& plan);

// The demo's optimisation, on the library trainer (wfm/core/train: Trainer, AdamW, LrSchedule, ApplyGradients):
// AdamW (betas 0.9/0.99, no weight decay) over every parameter of `modules`, linear warm-up then cosine decay to
// lr/10, gradient clipping at 1, a progress line with ETA and the loss; OUTPUT_DIR/metrics.jsonl and the final
// checkpoint (each run starts fresh). `step_fn(step, metrics)` returns the differentiable loss of one batch and
// may add metrics (logged). Returns the averages of the last log interval ("loss", ...). Ctrl-C is Cancelled.
struct DemoTrainOptions {
  std::string label;       // progress line, e.g. "ar train"
  std::string output_dir;  // metrics.jsonl, checkpoints/
  int64_t steps = 0;
  double lr = 1e-3;
  int64_t warmup = 20;     // at most steps/4 + 1
};
absl::StatusOr<train::Metrics> TrainDemoModel(
    const DemoTrainOptions& options, const std::map<std::string, torch::nn::Module*>& modules,
    const std::function<absl::StatusOr<at::Tensor>(int64_t step, train::Metrics* metrics)>& step_fn);

// One held-out prediction task: a window of a held-out clip simulated at full quality (never compressed).
struct EvalWindow {
  std::string name;      // "heldout_000003@12"
  world::Clip clip;      // the whole clip: tracks, colours, caption
  int64_t start = 0;     // first frame of the window in the clip
  at::Tensor context;    // uint8 [context_frames, H, W, 3]
  at::Tensor future;     // uint8 [future_frames, H, W, 3] (the truth)
};
// Every (held-out clip, eval start) window of the plan.
std::vector<EvalWindow> HeldoutWindows(const DemoPlan& plan);

// A world model as the evaluation stage sees it: several futures of one context window.
class FuturePredictor {
 public:
  virtual ~FuturePredictor() = default;
  // context uint8 [Tc, H, W, 3] (Tc = plan.context_frames) and the clip's caption -> uint8 [S, horizon, H, W, 3],
  // future s drawn with seeds[s].
  virtual absl::StatusOr<at::Tensor> Predict(const at::Tensor& context, const std::string& caption,
                                             int64_t horizon, const std::vector<uint64_t>& seeds) = 0;
};

// The learned world models of the demo, by the stage that trains them ("ar", "diffusion"). `load` opens the
// trained model from OUTPUT (NotFound when the stage has not run).
struct DemoModel {
  std::string name, label;
  std::function<absl::StatusOr<std::unique_ptr<FuturePredictor>>(const DemoContext&, const DemoPlan&)> load;
};
std::vector<DemoModel>& DemoModels();
struct DemoModelRegistrar {
  explicit DemoModelRegistrar(DemoModel model) { DemoModels().push_back(std::move(model)); }
};

// The world as the demo simulates it (size, rate, length, objects from the plan).
world::WorldOptions DemoWorldOptions(const DemoPlan& plan);

// Formats a double with `digits` decimals ("nan" for non-finite values).
std::string Fmt(double v, int digits = 2);

}  // namespace wfm::demo
