// `wfm shots` (shot boundaries of one video as JSON) and `wfm curate` (the whole curation pipeline: raw videos
// -> filtered, deduplicated, captioned clips in webdataset shards, with videos.jsonl / clips.jsonl indexes).
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "cli.h"
#include "wfm/core/runtime.h"
#include "wfm/curation/models.h"
#include "wfm/curation/pipeline.h"
#include "wfm/curation/shot_detection.h"
#include "wfm/curation/tokenizer_features.h"

namespace {

using wfm::cli::ArgParser;

int RunShots(int argc, char** argv) {
  std::string video, method = "auto", model, device = "cpu";
  double threshold = 0.4;
  wfm::curation::ShotDetectorOptions o;
  bool transitions = false;
  ArgParser p("wfm shots", "Detect the shots of a video (one streaming decode) and print them as JSON:\n"
                           "{\"fps\":..., \"num_frames\":..., \"shots\":[[start_frame,end_frame_exclusive],...]}");
  p.Positional("VIDEO", &video, "input video")
      .Option("detector", &method, "auto | classic (content + gradual) | content | gradual | transnetv2 | all")
      .Option("transnet-model", &model, "TorchScript TransNetV2 (input uint8 [B,100,27,48,3]); enables transnetv2")
      .Option("transnet-threshold", &threshold, "transition probability threshold (default 0.4)")
      .Option("device", &device, "device for the TorchScript model (cpu, cuda)")
      .Option("content-threshold", &o.content.adaptive_threshold, "adaptive ratio threshold (default 3.0)")
      .Option("min-content-val", &o.content.min_content_val, "minimum HSV content value of a cut (default 15)")
      .Option("min-change", &o.gradual.min_change, "minimum RMS change of a dissolve/fade (default 12)")
      .Flag("transitions", &transitions, "also list the transitions (type, frames)")
      .Epilog("example: wfm shots in.mp4 --transitions");
  if (auto rc = p.Parse(argc, argv)) return *rc;
  o.method = method;
  o.transnet.model_path = model;
  o.transnet.threshold = threshold;
  o.transnet.device = device;
  auto r = wfm::curation::DetectShots(video, o, 0);
  if (!r.ok()) return wfm::cli::ReportError(r.status());
  nlohmann::json j = wfm::curation::ShotsToJson(*r);
  if (!transitions) j.erase("transitions");
  std::cout << j.dump() << "\n";
  return wfm::cli::kExitOk;
}

// "4M", "800k", "4000000" -> bits/s.
bool ParseBitrate(std::string text, int64_t* out) {
  double scale = 1;
  if (!text.empty() && (text.back() == 'M' || text.back() == 'm')) scale = 1e6, text.pop_back();
  else if (!text.empty() && (text.back() == 'k' || text.back() == 'K')) scale = 1e3, text.pop_back();
  double v;
  if (!absl::SimpleAtod(text, &v) || v < 0) return false;
  *out = static_cast<int64_t>(v * scale);
  return true;
}

bool ParseSize(const std::string& text, int* w, int* h) {
  auto x = text.find('x');
  return x != std::string::npos && absl::SimpleAtoi(text.substr(0, x), w) && absl::SimpleAtoi(text.substr(x + 1), h) &&
         *w > 0 && *h > 0;
}

int RunCurate(int argc, char** argv) {
  namespace cur = wfm::curation;
  cur::CurateOptions o;
  cur::AnalysisOptions& a = o.analysis;
  cur::FilterOptions& f = a.filters;
  cur::TranscodeOptions& t = o.transcode;
  bool transcode = true, border = true, sidecar = true, dedup = true, flat = false;
  double shard_mb = 500;
  std::string bitrate = "4M", model_size = "224x224", device = "cpu";
  std::string transnet, scorer_model, embed_model, caption_model;
  cur::TokenizerSpec tok;
  bool latents = false, tokenizer_embed = false;
  ArgParser p("wfm curate",
              "Curate raw videos into clean training clips: shot detection, clip rules (2-60 s, 0.5 s trims), "
              "black-border crop, motion / static / blank / brightness / blur / bounds filters, perceptual-hash "
              "dedup, captions, H.264 transcode, webdataset shards.\n"
              "Writes DIR/videos.jsonl, DIR/clips.jsonl, DIR/shards/.../part_NNNNNN/NNNNNN.tar and DIR/summary.json. "
              "Resumable: rerun the same command after a crash. Distributed: mpirun -np N wfm curate ...");
  p.MultiOption("input", &o.inputs, "videos, folders (recursive) or manifests (.txt/.list one path per line, "
                                    ".jsonl with \"path\")", true)
      .Option("output", &o.output, "output directory", true)
      .Flag("transcode", &transcode, "write clip MP4s and shards (--no-transcode: analysis and indexes only)")
      .Option("workers", &o.workers, "videos analysed in parallel per process (default: cores / 4, at least 1)")
      .Option("decode-threads", &a.decode_threads, "decoder threads per video (default: cores / workers)")
      .Option("decode", &a.decode, "auto (NVDEC when a CUDA device opens, else CPU) | cpu | nvdec (default auto)")
      .Option("gpu", &a.gpu, "CUDA device for NVDEC / h264_nvenc (default: local rank % visible GPUs)")
      .Option("shard-size-mb", &shard_mb, "target shard size in MB (default 500)")
      .Flag("flat-shards", &flat, "shards/part_NNNNNN/NNNNNN.tar without resolution/aspect/duration bins")
      .Option("detector", &a.shots.method, "shot detector: auto | classic | content | gradual | transnetv2 | all")
      .Option("transnet-model", &transnet, "TorchScript TransNetV2 (uint8 [B,100,27,48,3] -> per-frame probability)")
      .Option("transnet-threshold", &a.shots.transnet.threshold, "TransNetV2 threshold (default 0.4)")
      .Option("min-clip-s", &a.clips.min_length_s, "drop clips shorter than this (default 2)")
      .Option("min-clip-frames", &a.clips.min_length_frames, "... or shorter than this many frames (default 48)")
      .Option("max-clip-s", &a.clips.max_length_s, "split shots longer than this (default 60; 0 = never)")
      .Option("trim-s", &a.clips.crop_s, "seconds trimmed at each end of a clip (default 0.5)")
      .Flag("border-crop", &border, "detect and crop black borders (letterbox / pillarbox)")
      .Option("motion-filter", &f.motion_filter, "enable | score-only | disable (default enable)")
      .Option("motion-global-mean-threshold", &f.motion_global_mean_threshold, "default 0.00098")
      .Option("motion-per-patch-min-256-threshold", &f.motion_per_patch_min_256_threshold, "default 1e-6")
      .Option("static-threshold", &f.static_threshold, "mean frame difference (0..255) below which a clip is static (0.5; 0 off)")
      .Option("blank-threshold", &f.blank_threshold, "mean luma std below which a clip is blank (6; 0 off)")
      .Option("min-brightness", &f.min_brightness, "mean luma below which a clip is too dark (16)")
      .Option("max-brightness", &f.max_brightness, "mean luma above which a clip is too bright (245)")
      .Option("blur-threshold", &f.blur_threshold, "variance of Laplacian below which a clip is blurry (0 = off)")
      .Option("min-width", &f.min_width, "minimum clip width after cropping (0 = any)")
      .Option("min-height", &f.min_height, "minimum clip height after cropping (0 = any)")
      .Option("min-aspect", &f.min_aspect, "minimum width/height (0 = any)")
      .Option("max-aspect", &f.max_aspect, "maximum width/height (0 = any)")
      .Option("max-duration-s", &f.max_duration_s, "drop clips longer than this (0 = any)")
      .Option("scorer-model", &scorer_model, "TorchScript quality/aesthetic scorer (float [T,3,H,W] in [0,1] -> score)")
      .Option("aesthetic-threshold", &f.aesthetic_threshold, "minimum scorer score (default 3.5)")
      .Option("embed-model", &embed_model, "TorchScript clip embedder (float [T,3,H,W] -> [T,D]) for --semantic-dedup")
      .Option("tokenizer", &tok.config, "tokenizer config (preset such as CV8x8x8, or config.json) for --latents / --tokenizer-embed")
      .Option("tokenizer-weights", &tok.weights, "tokenizer checkpoint")
      .Flag("latents", &latents, "also store each clip tokenized as KEY.latent.safetensors in the shards")
      .Option("latent-height", &tok.height, "resize clips to this height before tokenizing (0 = keep)")
      .Flag("tokenizer-embed", &tokenizer_embed, "semantic-dedup embeddings from pooled tokenizer latents")
      .Option("caption-model", &caption_model, "TorchScript captioner (uint8 [T,H,W,3] -> str)")
      .Option("model-size", &model_size, "input size of the scorer / embedder / captioner (default 224x224)")
      .Option("device", &device, "device for TorchScript models: cpu, cuda, auto")
      .Flag("sidecar-captions", &sidecar, "use VIDEO.txt / VIDEO.json captions next to the inputs")
      .Flag("dedup", &dedup, "drop near-duplicate clips (perceptual hashes), keeping the highest resolution")
      .Option("dedup-hamming", &o.dedup_options.max_hamming, "mean Hamming distance (of 64 bits) of duplicates (8)")
      .Flag("semantic-dedup", &o.semantic_dedup, "SemDeDup over clip embeddings (needs --embed-model)")
      .Option("semantic-eps", &o.semantic_options.eps, "duplicate when cosine similarity >= 1 - eps (0.05)")
      .Option("semantic-clusters", &o.semantic_options.clusters, "k-means clusters (0 = sqrt(n / 2))")
      .Option("encoder", &t.encoder, "auto (h264_nvenc if usable, else libx264) | libx264 | h264_nvenc | mpeg4")
      .Option("bitrate", &bitrate, "video bitrate, e.g. 4M (default, as cosmos-curate); 0 = constant quality")
      .Option("crf", &t.crf, "constant quality when --bitrate 0 (default 23)")
      .Option("preset", &t.preset, "libx264 preset (default veryfast)")
      .Option("clip-height", &t.height, "resize clips to this height (0 = keep)")
      .Option("clip-fps", &t.fps, "resample clips to this frame rate (0 = keep)")
      .Flag("stream-copy", &t.stream_copy, "copy the compressed stream when a clip is keyframe-aligned and uncropped")
      .Flag("fail-fast", &o.fail_fast, "stop at the first unreadable input (exit 1)")
      .Flag("overwrite", &o.overwrite, "discard a previous run in DIR made with other options")
      .Flag("quiet", &o.quiet, "no progress output")
      .Epilog("examples:\n  wfm curate --input raw/ --output cur/\n"
              "  wfm curate --input list.txt --output cur/ --no-transcode          # fast survey\n"
              "  mpirun -np 4 wfm curate --input raw/ --output /shared/cur/         # one process per GPU/node\n"
              "  srun --mpi=pmix --ntasks-per-node=8 wfm curate --input raw/ --output /shared/cur/   # Slurm, 8 GPUs/node");
  if (auto rc = p.Parse(argc, argv)) return *rc;
  o.transcode_enabled = transcode;
  o.binned_shards = !flat;
  o.shard_bytes = static_cast<int64_t>(shard_mb * (1 << 20));
  o.dedup = dedup;
  a.border.enabled = border;
  a.sidecar_captions = sidecar;
  a.shots.transnet.model_path = transnet;
  a.shots.transnet.device = device;
  if (!ParseBitrate(bitrate, &t.bit_rate)) return p.UsageError("bad --bitrate '" + bitrate + "'");
  int mw = 0, mh = 0;
  if (!ParseSize(model_size, &mw, &mh)) return p.UsageError("bad --model-size '" + model_size + "' (WxH)");
  if (a.decode != "auto" && a.decode != "cpu" && a.decode != "nvdec") {
    return p.UsageError("--decode must be auto, cpu or nvdec");
  }
  if (f.motion_filter != "enable" && f.motion_filter != "score-only" && f.motion_filter != "disable") {
    return p.UsageError("--motion-filter must be enable, score-only or disable");
  }
  if (o.semantic_dedup && embed_model.empty() && !tokenizer_embed) {
    return p.UsageError("--semantic-dedup needs --embed-model or --tokenizer-embed");
  }
  if ((latents || tokenizer_embed) && (tok.config.empty() || tok.weights.empty())) {
    return p.UsageError("--latents / --tokenizer-embed need --tokenizer and --tokenizer-weights");
  }
  tok.device = device;
  std::unique_ptr<cur::ClipScorer> scorer;
  std::unique_ptr<cur::ClipEmbedder> embedder;
  std::unique_ptr<cur::Captioner> captioner;
  if (!scorer_model.empty()) {
    auto m = cur::LoadTorchScriptScorer(scorer_model, mw, mh, device);
    if (!m.ok()) return wfm::cli::ReportError(m.status());
    scorer = std::move(*m);
    o.model_info["scorer"] = scorer_model;
  }
  if (!embed_model.empty()) {
    auto m = cur::LoadTorchScriptEmbedder(embed_model, mw, mh, device);
    if (!m.ok()) return wfm::cli::ReportError(m.status());
    embedder = std::move(*m);
    o.model_info["embedder"] = embed_model;
  }
  if (tokenizer_embed) {
    auto m = cur::MakeTokenizerEmbedder(tok, mw, mh);
    if (!m.ok()) return wfm::cli::ReportError(m.status());
    embedder = std::move(*m);
    o.model_info["embedder"] = "tokenizer:" + tok.config + ":" + tok.weights;
  }
  if (latents) {
    auto w = cur::MakeLatentWriter(tok);
    if (!w.ok()) return wfm::cli::ReportError(w.status());
    o.latent_writer = *w;
    o.model_info["latents"] = {tok.config, tok.weights, tok.height};
  }
  if (!caption_model.empty()) {
    auto m = cur::LoadTorchScriptCaptioner(caption_model, mw, mh, device);
    if (!m.ok()) return wfm::cli::ReportError(m.status());
    captioner = std::move(*m);
    o.model_info["captioner"] = caption_model;
  }
  if (scorer || embedder || captioner) o.model_info["size"] = model_size;
  a.scorer = scorer.get();
  a.embedder = embedder.get();
  a.captioner = captioner.get();
  auto r = cur::RunCurate(o);
  if (!r.ok()) return wfm::cli::ReportError(r.status());
  return wfm::cli::kExitOk;
}

}  // namespace

WFM_REGISTER_COMMAND("shots", "detect shot boundaries of a video (JSON)", RunShots);
WFM_REGISTER_COMMAND("curate", "curate raw videos into filtered, deduplicated clips in webdataset shards", RunCurate);
