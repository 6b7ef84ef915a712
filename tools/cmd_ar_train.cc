// `wfm ar train`: teacher-forced training (or fine-tuning) of the autoregressive world model on tokenized clips.
// The driver is ar::TrainArModel (autoregressive/src/train_loop.cc) on the shared core/train loop; this file maps
// the command line onto it.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cli.h"
#include "train_flags.h"
#include "wfm/autoregressive/config.h"
#include "wfm/autoregressive/train.h"
#include "wfm/core/file_util.h"
#include "wfm/core/logging.h"
#include "wfm/core/status.h"
#include "wfm/curation/webdataset.h"

namespace wfm::cli {
namespace {

// --latent-shape T,H,W.
absl::Status ParseLatentShape(const std::string& text, std::vector<int64_t>* shape) {
  std::vector<int64_t> s;
  for (absl::string_view piece : absl::StrSplit(text, ',')) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(piece, &v) || v < 1)
      return absl::InvalidArgumentError(absl::StrCat("--latent-shape must be T,H,W (positive), got '", text, "'"));
    s.push_back(v);
  }
  if (s.size() != 3) return absl::InvalidArgumentError(absl::StrCat("--latent-shape must be T,H,W, got '", text, "'"));
  *shape = s;
  return absl::OkStatus();
}

int RunTrain(int argc, char** argv) {
  ar::ArTrainOptions o;
  std::string config, latent_shape;
  int64_t vocab_size = 0, max_seq_len = 0;
  std::vector<std::string> shards;
  TrainRunFlags run;
  o.loss.text_dropout = 0.1;
  ArgParser p("wfm ar train",
              "Train (or fine-tune) the autoregressive world model with the teacher-forced next-token loss "
              "(cross-entropy over the video tokens after the condition frames + z-loss) on latent windows of "
              "tokenized clips: a pre-tokenized folder (`wfm ar tokenize`), videos or curated shards tokenized on the "
              "fly with a DV tokenizer, or a synthetic moving-bar process. Text-conditioned models (cross-attention) get stored "
              "clip embeddings or captions through --text-encoder, with --text-dropout for classifier-free "
              "guidance. AdamW, warmup + cosine, clipping, accumulation, EMA, held-out evaluation (teacher-forced "
              "ce / accuracy, greedy rollout match, EMA weights), periodic samples, atomic checkpoints: run it again "
              "with the same --output to resume. Writes OUT/config.json + OUT/model_ema.safetensors (usable by "
              "`wfm ar generate --config OUT/config.json --weights OUT/model_ema.safetensors`), metrics.jsonl, "
              "summary.json, samples/, checkpoints/.");
  p.Option("config", &config, "model: preset (tiny, tiny-v2w, small, small-v2w, 4B, ...) or reference params json",
           true)
      .Option("vocab-size", &vocab_size, "override the vocabulary (= the tokenizer's codebook, 64000 for DV FSQ)")
      .Option("latent-shape", &latent_shape, "override the latent grid T,H,W (the model's window of latent frames)")
      .Option("max-seq-len", &max_seq_len, "override max_seq_len (default: kept, raised to fit the grid)")
      .Option("init-weights", &o.init_weights, "start from these weights (fine-tuning; reference names)")
      .Option("tokens", &o.tokens_dir, "data: a pre-tokenized clip folder (`wfm ar tokenize`)")
      .MultiOption("videos", &o.videos, "data: video files or directories, tokenized on the fly (needs the tokenizer)")
      .MultiOption("shards", &shards, "data: curated webdataset shards (*.tar or folders): clips + captions, "
                   "extracted once to OUT/shard_videos, tokenized on the fly")
      .Flag("synthetic", &o.synthetic, "data: moving bars in token space, direction given by the caption (smoke tests)")
      .Option("tokenizer-config", &o.tokenizer_config, "DV tokenizer preset or config.json (videos; decodes samples)")
      .Option("tokenizer-weights", &o.tokenizer_weights, "DV tokenizer weights")
      .Flag("random-tokenizer", &o.random_tokenizer, "allow a tokenizer with random weights (smoke tests)")
      .Option("frames", &o.frames, "latent frames per training window (default: the model's latent T)")
      .Option("condition-frames", &o.loss.condition_frames, "leading latent frames not predicted (default 1)")
      .Option("fps", &o.fps, "resample videos to this rate first (default: keep); also the sample MP4 rate")
      .Option("val-fraction", &o.val_fraction, "held out: last clips of a folder / end of every video (default 0.1)")
      .Option("val-samples", &o.val_samples, "held-out windows scored at each evaluation (default 8)")
      .Option("text-encoder", &o.text_encoder,
              "captions -> context: T5 directory (frozen), built-in encoder .safetensors, or 'builtin' (a fresh "
              "built-in encoder trained jointly)")
      .Flag("train-text-encoder", &o.train_text_encoder, "train the given built-in encoder jointly")
      .Option("text-dropout", &o.loss.text_dropout, "probability of zeroing a sample's text (CFG; default 0.1)")
      .Option("z-loss", &o.loss.z_loss, "z-loss coefficient (default 1e-4, the reference's)")
      .Option("output", &o.output_dir, "output directory (resumed when it holds checkpoints)", true);
  AddTrainFlags(p, o, run)
      .Epilog("examples:\n"
              "  wfm ar train --config tiny-v2w --synthetic --text-encoder builtin --output out/bars --steps 300\n"
              "  wfm ar tokenize data/world/*.mp4 --config small --tokenizer-config DV8x16x16-720p \\\n"
              "      --tokenizer-weights ckpt/DV8x16x16 --output data/tokens\n"
              "  wfm ar train --config small-v2w --tokens data/tokens --text-encoder builtin --output out/ar \\\n"
              "      --steps 5000 --max-time 2h\n"
              "  mpirun -np 2 wfm ar train ...   (data parallel: gradients all-reduced, rank 0 writes)\n");
  if (auto rc = p.Parse(argc, argv)) return *rc;
  if (absl::Status s = run.Apply(o); !s.ok()) return p.UsageError(std::string(s.message()));
  if ((o.tokens_dir.empty() ? 0 : 1) + (o.videos.empty() ? 0 : 1) + (shards.empty() ? 0 : 1) + (o.synthetic ? 1 : 0) != 1)
    return p.UsageError("give exactly one data source: --tokens DIR, --videos PATH..., --shards PATH... or --synthetic");
  auto cfg = ar::ArConfig::FromPresetOrFile(config);
  if (!cfg.ok()) return ReportError(cfg.status(), true);
  o.config = *cfg;
  if (vocab_size > 0) o.config.vocab_size = vocab_size;
  if (!latent_shape.empty()) {
    if (absl::Status s = ParseLatentShape(latent_shape, &o.config.video_latent_shape); !s.ok())
      return p.UsageError(std::string(s.message()));
  }
  if (max_seq_len > 0) o.config.max_seq_len = max_seq_len;
  o.config.max_seq_len = std::max(o.config.max_seq_len, o.config.VideoTokens() + (o.config.HasBov() ? 1 : 0));
  if (!shards.empty()) {
    // KEY.mp4 + KEY.txt caption sidecars, extracted once (a resumed run keeps them), tokenized on the fly.
    const std::string dir = (std::filesystem::path(o.output_dir) / "shard_videos").string();
    auto x = curation::ExtractShardClips(shards, dir);
    if (!x.ok()) return ReportError(Annotate(x.status(), "--shards"));
    WFM_LOG(INFO) << "shards: " << x->clips << " clips from " << x->shards.size() << " shard(s), extracted to " << dir;
    o.videos = x->sources;
  }
  std::string line = "wfm";
  for (int i = 0; i < argc; ++i) absl::StrAppend(&line, " ", argv[i]);
  o.command_line = line;
  auto r = ar::TrainArModel(o);
  if (!r.ok()) return ReportError(r.status());
  if (r->rank != 0) return kExitOk;
  std::printf("trained steps %lld..%lld (%.1f s%s): loss %.4f -> %.4f; held-out ce %.4f, accuracy %.4f, greedy "
              "rollout match %.4f (EMA)\nconfig:  %s\nweights: %s\n",
              static_cast<long long>(r->start_step), static_cast<long long>(r->steps), r->train_seconds,
              r->interrupted ? ", interrupted" : r->time_budget_reached ? ", time budget reached" : "", r->first_loss,
              r->last_loss, r->val_ce, r->val_accuracy, r->val_rollout_match, r->config_path.c_str(),
              r->ema_weights_path.c_str());
  if (!r->text_encoder_path.empty()) std::printf("text encoder: %s\n", r->text_encoder_path.c_str());
  return kExitOk;
}

}  // namespace

WFM_REGISTER_COMMAND("ar train", "train the AR world model on tokenized clips (teacher forcing, resumable)", RunTrain);

}  // namespace wfm::cli
