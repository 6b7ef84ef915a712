// `wfm tokenizer train` and `wfm tokenizer eval`: train a Cosmos-Tokenize1-shaped video tokenizer from a folder
// of videos (from scratch or fine-tuning published weights), and score a tokenizer on videos TokenBench-style.
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "cli.h"
#include "train_flags.h"
#include "wfm/core/file_util.h"
#include "wfm/core/logging.h"
#include "wfm/core/runtime.h"
#include "wfm/core/status.h"
#include "wfm/core/train/video_clips.h"
#include "wfm/core/train/visualize.h"
#include "wfm/core/video_io.h"
#include "wfm/curation/webdataset.h"
#include "wfm/tokenizer/config.h"
#include "wfm/tokenizer/tokenizer.h"
#include "wfm/tokenizer/train.h"
#include "wfm/tokenizer/weights.h"

namespace wfm::cli {
namespace {
namespace fs = std::filesystem;
using tokenizer::TokenizerConfig;

// "128" or "160x96" (W x H).
absl::Status ParseSize(const std::string& text, int* width, int* height) {
  std::vector<std::string> parts = absl::StrSplit(text, 'x');
  int w = 0, h = 0;
  if (parts.size() == 1 && absl::SimpleAtoi(parts[0], &w)) h = w;
  else if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &w) || !absl::SimpleAtoi(parts[1], &h))
    return absl::InvalidArgumentError(absl::StrCat("--size must be N or WxH, got '", text, "'"));
  if (w <= 0 || h <= 0) return absl::InvalidArgumentError(absl::StrCat("--size must be positive, got '", text, "'"));
  *width = w;
  *height = h;
  return absl::OkStatus();
}

// Preset / file, then width overrides for small models.
absl::StatusOr<TokenizerConfig> ResolveConfig(const std::string& spec, int64_t channels, const std::string& mult,
                                              int64_t res_blocks, int64_t z_channels, int64_t latent_channels) {
  WFM_ASSIGN_OR_RETURN(TokenizerConfig c, TokenizerConfig::FromPresetOrFile(spec), "--config");
  if (channels > 0) c.channels = channels;
  if (!mult.empty()) {
    c.channels_mult.clear();
    for (absl::string_view piece : absl::StrSplit(mult, ',')) {
      int64_t m = 0;
      if (!absl::SimpleAtoi(piece, &m))
        return absl::InvalidArgumentError(absl::StrCat("--channels-mult must be comma-separated integers, got '", mult, "'"));
      c.channels_mult.push_back(m);
    }
  }
  if (res_blocks > 0) c.num_res_blocks = res_blocks;
  if (z_channels > 0) c.z_channels = z_channels;
  if (latent_channels > 0) c.latent_channels = latent_channels;
  WFM_RETURN_IF_ERROR(c.Validate(), "--config");
  return c;
}

// Inputs may be curated webdataset shards (`*.tar`, or directories holding them; samples `KEY.mp4` [+ json/txt]).
// Their videos are extracted once into `cache_dir` (curation::ExtractShardClips: resumable; disk use = the shards'
// video bytes) and trained on like a folder of videos, with the same time split per clip. Everything else passes
// through.
absl::StatusOr<std::vector<std::string>> ExpandShards(const std::vector<std::string>& inputs,
                                                      const std::string& cache_dir) {
  curation::ExtractOptions options;
  options.allow_other_inputs = true;
  WFM_ASSIGN_OR_RETURN(curation::ExtractedShards x, curation::ExtractShardClips(inputs, cache_dir, options), "--input");
  if (!x.shards.empty())
    WFM_LOG(INFO) << "shards: " << x.clips << " clips (" << x.extracted << " newly extracted) from " << x.shards.size()
                  << " shard(s) in " << cache_dir;
  return x.sources;
}

std::string Join(int argc, char** argv) {
  std::string s = "wfm";
  for (int i = 0; i < argc; ++i) absl::StrAppend(&s, " ", argv[i]);
  return s;
}

int RunTrain(int argc, char** argv) {
  tokenizer::TokenizerTrainOptions o;
  std::vector<std::string> inputs;
  std::string config = "CV4x8x8", size = "128", mult, output, init;
  int64_t channels = 0, res_blocks = 0, z_channels = 0, latent_channels = 0;
  int64_t frames = 17;
  double zoom = 1.0;
  bool flip = false;
  TrainRunFlags run;
  int short_side = 0;
  ArgParser p("wfm tokenizer train",
              "Train a causal video tokenizer (CV continuous / DV discrete, Cosmos-Tokenize1 architecture) on a "
              "folder of videos. The last --val-fraction of every video (by time) is held out and scored "
              "TokenBench-style (PSNR over the clip, per-frame SSIM) with the EMA weights. Writes OUT/config.json, "
              "OUT/model_ema.safetensors (usable with encode/decode/reconstruct/eval), metrics.jsonl, curves.svg, "
              "samples/recon_*.png and resumable checkpoints/. Run it again with the same OUT to resume.");
  p.Option("config", &config, "architecture: preset (CV4x8x8, DV4x8x8, CV8x8x8, ...) or config json (default CV4x8x8)")
      .Option("channels", &channels, "base width override (the published models use 128; 16-32 trains on a CPU)")
      .Option("channels-mult", &mult, "per-level width multipliers, e.g. 2,4,4")
      .Option("num-res-blocks", &res_blocks, "residual blocks per level override")
      .Option("z-channels", &z_channels, "bottleneck width override")
      .Option("latent-channels", &latent_channels, "continuous latent channels override (CV)")
      .Option("init-weights", &init, "start from these weights (fine-tuning): safetensors, model.pt, .jit or a directory")
      .Option("output", &output, "output directory", true)
      .MultiOption("input", &inputs, "video files, directories (searched recursively) or webdataset shards (*.tar)", true)
      .Option("frames", &frames, "frames per training clip: 1 + k * temporal compression (default 17)")
      .Option("size", &size, "clip size: N or WxH (default 128)")
      .Option("short-side", &short_side, "resize videos so the short side is this before cropping (default: clip size)")
      .Option("fps", &o.data.fps, "resample videos to this frame rate (default: each video's own)")
      .Option("zoom", &zoom, "random zoom augmentation up to this factor (default 1 = none)")
      .Flag("flip", &flip, "random horizontal flips")
      .Option("val-fraction", &o.data.val_fraction, "held-out fraction at the end of every video (default 0.15)")
      .Option("val-clips", &o.val_clips, "validation clips scored at each evaluation (default 8)")
      .Option("l1", &o.loss.l1, "L1 loss weight (default 1)")
      .Option("ssim", &o.loss.ssim, "1-SSIM loss weight (default 0.2)")
      .Option("temporal", &o.loss.temporal, "temporal-gradient L1 weight (default 0.5)")
      .Option("adversarial", &o.loss.adversarial, "adversarial (3D patch discriminator, hinge) weight (default 0 = off)")
      .Option("adversarial-start", &o.loss.adversarial_start, "step at which the adversarial loss starts")
      .Option("disc-lr", &o.disc_lr, "discriminator learning rate (default 2e-4)");
  AddTrainFlags(p, o, run)
      .Epilog("Example (a small CV4x8x8 on the shared clips, ~20 min on 2 cores):\n"
              "  wfm tokenizer train --config CV4x8x8 --channels 16 --input ../shared/media --output out/cv4 \\\n"
              "      --frames 9 --size 64 --short-side 96 --steps 3000 --max-time 20m\n"
              "Data parallel: mpirun -np 2 wfm tokenizer train ... (gradients all-reduced; rank 0 writes)");
  if (auto rc = p.Parse(argc, argv)) return *rc;
  absl::Status s = ParseSize(size, &o.data.width, &o.data.height);
  if (!s.ok()) return p.UsageError(std::string(s.message()));
  if (absl::Status st = run.Apply(o); !st.ok()) return p.UsageError(std::string(st.message()));
  auto cfg = ResolveConfig(config, channels, mult, res_blocks, z_channels, latent_channels);
  if (!cfg.ok()) return ReportError(cfg.status(), true);
  o.config = *cfg;
  auto expanded = ExpandShards(inputs, (fs::path(output) / "shard_videos").string());
  if (!expanded.ok()) return ReportError(expanded.status());
  o.inputs = *expanded;
  o.output_dir = output;
  o.init_weights = init;
  o.data.num_frames = frames;
  o.data.max_zoom = zoom;
  o.data.random_flip = flip;
  o.data.resize_short_side = short_side;
  o.data.seed = o.seed;  // weights and data from one --seed
  o.command_line = Join(argc, argv);
  auto r = tokenizer::TrainTokenizer(o);
  if (!r.ok()) return ReportError(r.status(), r.status().code() == absl::StatusCode::kInvalidArgument);
  std::printf("trained %lld steps; held-out PSNR %.2f dB, SSIM %.4f (EMA weights, TokenBench-style)\n"
              "weights: %s\nconfig:  %s\n",
              static_cast<long long>(r->steps), r->val_psnr, r->val_ssim, r->weights_path.c_str(),
              r->config_path.c_str());
  return kExitOk;
}

int RunEval(int argc, char** argv) {
  std::vector<std::string> inputs;
  std::string config, weights, size, split = "all", ssim = "gaussian", output, save_dir, device = "auto", mode;
  int64_t frames = 17, max_clips = 0, tile = 0, tile_overlap = -1, chunk_frames = 16;
  int short_side = 0;
  double fps = 0, val_fraction = 0.15;
  bool ema = false;
  ArgParser p("wfm tokenizer eval",
              "Score a tokenizer on videos, TokenBench-style: each clip is reconstructed, quantized to uint8 and "
              "compared with the input (PSNR over the whole clip, SSIM per frame), with the mean over clips. "
              "Videos are cut into consecutive clips of --frames frames, centre-cropped to --size (multiples of "
              "the spatial compression).");
  p.Option("config", &config, "tokenizer config: preset or json (e.g. OUT/config.json of a training run)", true)
      .Option("weights", &weights, "weights: safetensors, model.pt, .jit or a directory", true)
      .Flag("ema", &ema, "use the EMA copy stored in a published model.pt")
      .MultiOption("input", &inputs, "video files, directories or webdataset shards (*.tar)", true)
      .Option("frames", &frames, "frames per clip (1 + k * temporal compression; default 17)")
      .Option("size", &size, "clip size N or WxH (default: the whole frame after --short-side)")
      .Option("short-side", &short_side, "resize videos so the short side is this first (default: as is)")
      .Option("fps", &fps, "resample videos to this rate first (default: own rate)")
      .Option("split", &split, "all | val: the whole videos, or only their last --val-fraction (held out by train)")
      .Option("val-fraction", &val_fraction, "held-out fraction for --split val (default 0.15)")
      .Option("max-clips", &max_clips, "at most this many clips, evenly spread (default: all)")
      .Option("ssim", &ssim, "gaussian (Wang et al. 11x11, default) | tokenbench (skimage defaults: 7x7 box)")
      .Option("output", &output, "write the scores as JSON here")
      .Option("save-reconstructions", &save_dir, "write truth/reconstruction PNG grids of the clips here")
      .Option("device", &device, "cpu | cuda | auto")
      .Option("mode", &mode,
              "reconstruct through the serving path: streaming | windowed (default: one whole-clip forward)")
      .Option("chunk-frames", &chunk_frames, "streaming: frames per chunk after the first (default 16)")
      .Option("tile", &tile, "spatial tile size in pixels (serving path; default 0 = no tiling)")
      .Option("tile-overlap", &tile_overlap, "tile overlap in pixels (default tile/4)");
  if (auto rc = p.Parse(argc, argv)) return *rc;
  if (split != "all" && split != "val") return p.UsageError("--split must be all or val");
  std::optional<tokenizer::ServeOptions> serve;
  if (!mode.empty() || tile > 0) {
    serve.emplace();
    if (!mode.empty()) {
      auto m = tokenizer::ParseServeMode(mode);
      if (!m.ok()) return p.UsageError(std::string(m.status().message()));
      serve->mode = *m;
    }
    serve->chunk_frames = chunk_frames;
    serve->temporal_window = frames;
    serve->tile = tile;
    serve->tile_overlap = tile_overlap;
  } else if (tile_overlap >= 0) {
    return p.UsageError("--tile-overlap needs --tile");
  }
  const tokenizer::ServeOptions* serve_ptr = serve ? &*serve : nullptr;
  if (ssim != "gaussian" && ssim != "tokenbench") return p.UsageError("--ssim must be gaussian or tokenbench");
  absl::Status status = [&]() -> absl::Status {
    WFM_ASSIGN_OR_RETURN(TokenizerConfig cfg, TokenizerConfig::FromPresetOrFile(config), "--config");
    WFM_ASSIGN_OR_RETURN(c10::Device dev, ParseDevice(device));
    std::string cache = save_dir.empty() ? (fs::temp_directory_path() / "wfm_eval_shards").string()
                                         : (fs::path(save_dir) / "shard_videos").string();
    WFM_ASSIGN_OR_RETURN(std::vector<std::string> expanded, ExpandShards(inputs, cache));
    WFM_ASSIGN_OR_RETURN(std::vector<std::string> files, train::ListVideoFiles(expanded));
    train::VideoClipOptions d;
    d.num_frames = cfg.is_video() ? frames : 1;
    d.fps = fps;
    d.val_fraction = split == "val" ? val_fraction : 1.0;
    d.evaluation_only = true;
    if (!size.empty()) {
      WFM_RETURN_IF_ERROR(ParseSize(size, &d.width, &d.height));
      d.resize_short_side = short_side > 0 ? short_side : std::max(d.width, d.height);
    } else {
      // The whole frame (after an optional resize), cropped to the tokenizer's multiples by ScoreClip.
      d.resize_short_side = short_side;
      d.width = d.height = 0;
    }
    WFM_ASSIGN_OR_RETURN(auto data, train::VideoClipDataset::Open(files, d));
    WFM_ASSIGN_OR_RETURN(std::vector<train::VideoClip> clips, data->ValidationClips(max_clips));
    tokenizer::TokenizerNetwork net(cfg);
    WFM_ASSIGN_OR_RETURN(LoadReport loaded, tokenizer::LoadTokenizerWeights(*net, weights,
                                                                                        tokenizer::WeightsPart::kAll, ema));
    net->to(dev);
    MetricOptions m;
    if (ssim == "tokenbench") m.ssim = SsimOptions::TokenBench();
    WFM_ASSIGN_OR_RETURN(tokenizer::EvalSummary summary, tokenizer::EvaluateClips(*net, clips, m, dev, true, serve_ptr));
    if (!save_dir.empty()) {
      net->eval();
      for (size_t i = 0; i < clips.size(); ++i) {
        at::Tensor rec, truth;
        WFM_RETURN_IF_ERROR(tokenizer::ScoreClip(*net, clips[i].frames, m, dev, &rec, &truth, serve_ptr).status());
        WFM_RETURN_IF_ERROR(train::WriteImageGrid(absl::StrFormat("%s/clip_%04d.png", save_dir, i), {truth, rec}));
      }
    }
    nlohmann::json j = {{"config", config},      {"weights", weights},          {"split", split},
                        {"frames", frames},      {"ssim_window", ssim},         {"mean_psnr", summary.mean_psnr},
                        {"mean_ssim", summary.mean_ssim}, {"num_clips", summary.clips.size()},
                        {"seconds", summary.seconds}};
    if (serve) {
      j["serve"] = {{"mode", tokenizer::ServeModeName(serve->mode)}, {"chunk_frames", serve->chunk_frames},
                    {"tile", serve->tile}, {"tile_overlap", serve->tile_overlap}};
    }
    std::printf("%-48s %6s %8s %8s\n", "clip", "frames", "PSNR", "SSIM");
    for (const auto& c : summary.clips) {
      j["clips"].push_back({{"name", c.name}, {"path", c.path}, {"start_frame", c.start_frame}, {"frames", c.frames},
                            {"psnr", c.psnr}, {"ssim", c.ssim}});
      std::string name = fs::path(c.path).filename().string() + "@" + std::to_string(c.start_frame);
      std::printf("%-48s %6lld %8.3f %8.4f\n", name.c_str(), static_cast<long long>(c.frames), c.psnr, c.ssim);
    }
    std::printf("mean over %zu clips: PSNR %.3f dB, SSIM %.4f\n", summary.clips.size(), summary.mean_psnr,
                summary.mean_ssim);
    if (!output.empty()) WFM_RETURN_IF_ERROR(WriteFileAtomically(output, j.dump(2) + "\n"));
    return absl::OkStatus();
  }();
  if (!status.ok()) return ReportError(status);
  return kExitOk;
}

}  // namespace

WFM_REGISTER_COMMAND("tokenizer train", "train a video tokenizer on a folder of videos (from scratch or fine-tune)",
                     RunTrain);
WFM_REGISTER_COMMAND("tokenizer eval", "score a tokenizer on videos: PSNR / SSIM per clip and mean", RunEval);

}  // namespace wfm::cli
