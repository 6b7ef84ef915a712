// Demo stages "curate" and "dataset": the simulated training clips, plus the real clips of SHARED/media (as the
// media stage re-encoded them, to show shot splitting and filtering on real footage), go through the curation
// pipeline (wfm/curation/pipeline.h RunCurate: shots, clip rules, filters, dedup, transcode, webdataset shards).
// The kept world clips are then read back from the shards and decoded at the model size into the training set
// the model stages read (OUTPUT/data/train_clips.safetensors). Real clips are curated but not trained on: the
// models learn the embedded world, whose truth is known.
#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include <ATen/ATen.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "demo_common.h"
#include "wfm/core/file_util.h"
#include "wfm/core/progress.h"
#include "wfm/core/status.h"
#include "wfm/curation/pipeline.h"
#include "wfm/curation/webdataset.h"

namespace wfm::demo {
namespace {

namespace fs = std::filesystem;

absl::Status RunCurateStage(DemoContext& ctx) {
  WFM_ASSIGN_OR_RETURN(const DemoPlan plan, DemoPlan::For(ctx));
  curation::CurateOptions o;
  o.inputs.push_back(OutPath(ctx, "world/train"));
  const std::string media = OutPath(ctx, "media");
  if (fs::is_directory(media)) o.inputs.push_back(media);  // the media stage's re-encodes of the real clips
  o.output = OutPath(ctx, "curated");
  // World clips are short (2.75 s): keep clips from 17 frames (one prediction window) and trim nothing.
  o.analysis.clips.min_length_s = 0.0;
  o.analysis.clips.min_length_frames = plan.window_frames();
  o.analysis.clips.crop_s = 0.0;
  o.analysis.clips.max_length_s = 10.0;
  // Small objects on a 64x64 frame change few pixels: only clips where (nearly) everything has come to rest
  // count as static.
  o.analysis.filters.static_threshold = 0.2;
  // Hard cuts only: the world's slow global light change reads as a dissolve to the gradual detector.
  o.analysis.shots.method = "content";
  o.analysis.decode_threads = 1;
  o.transcode.encoder = "libx264";
  o.transcode.bit_rate = 0;  // constant quality: the world is learned from these pixels
  o.transcode.crf = 12;
  o.transcode.threads = 1;
  o.workers = std::max(1, ctx.threads);
  o.overwrite = true;
  WFM_ASSIGN_OR_RETURN(nlohmann::json summary, curation::RunCurate(o));

  // Per source: clips found / kept and why the others were dropped.
  WFM_ASSIGN_OR_RETURN(std::string clips_jsonl, ReadFile(o.output + "/clips.jsonl"));
  struct Source {
    int clips = 0, kept = 0;
    std::map<std::string, int> reasons;
  };
  std::map<std::string, Source> sources;  // "world" (all simulated clips together) or the real clip's name
  std::istringstream lines(clips_jsonl);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty()) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return absl::DataLossError(absl::StrCat(o.output, "/clips.jsonl: bad line"));
    const std::string src = j["source_video"].is_string() ? j["source_video"].get<std::string>() : "";
    Source& s = sources[absl::StrContains(src, "/world/train/") ? "world (simulated)" : fs::path(src).filename().string()];
    ++s.clips;
    if (j["kept"].is_boolean() && j["kept"].get<bool>()) ++s.kept;
    std::set<std::string> why;
    if (j["filter_reasons"].is_array()) {
      for (const auto& r : j["filter_reasons"]) why.insert(r.is_string() ? r.get<std::string>() : r.dump());
    }
    if (j["duplicate_of"].is_string()) why.insert("duplicate");
    for (const std::string& r : why) ++s.reasons[r];
  }
  std::vector<std::vector<std::string>> rows;
  nlohmann::ordered_json per_source;
  for (const auto& [name, s] : sources) {
    std::string why;
    for (const auto& [r, n] : s.reasons) absl::StrAppend(&why, why.empty() ? "" : ", ", r, " ", n);
    rows.push_back({name, absl::StrCat(s.clips), absl::StrCat(s.kept), why.empty() ? "-" : why});
    per_source[name] = {{"clips", s.clips}, {"kept", s.kept}, {"dropped", s.reasons}};
  }
  ctx.Table("curation (shots -> clips -> filters -> dedup -> shards)", {"source", "clips", "kept", "dropped"}, rows);
  ctx.summary["curate"] = {{"sources", per_source}, {"dir", o.output}, {"pipeline", summary}};
  return absl::OkStatus();
}

absl::Status RunDatasetStage(DemoContext& ctx) {
  WFM_ASSIGN_OR_RETURN(const DemoPlan plan, DemoPlan::For(ctx));
  const std::string shards = OutPath(ctx, "curated/shards");
  WFM_ASSIGN_OR_RETURN(std::unique_ptr<curation::DatasetReader> reader, curation::DatasetReader::Open({shards}));
  ClipSet set;
  std::vector<at::Tensor> frames;
  int skipped_short = 0, real = 0;
  Progress progress("dataset", -1, "clips");
  curation::Sample sample;
  while (true) {
    WFM_ASSIGN_OR_RETURN(bool more, reader->Next(&sample));
    if (!more) break;
    WFM_ASSIGN_OR_RETURN(nlohmann::json meta, sample.Json());
    const std::string src = meta["source_video"].is_string() ? meta["source_video"].get<std::string>() : "";
    if (!absl::StrContains(src, "/world/train/")) {
      ++real;
      continue;
    }
    WFM_ASSIGN_OR_RETURN(at::Tensor f, sample.DecodeVideo(plan.size, plan.size), sample.shard, ": ", sample.key);
    if (f.size(0) < plan.clip_frames) {  // a shot cut inside a simulated clip: too short for the fixed layout
      ++skipped_short;
      continue;
    }
    frames.push_back(f.narrow(0, 0, plan.clip_frames));
    std::string caption = sample.Text();
    while (!caption.empty() && caption.back() == '\n') caption.pop_back();
    set.captions.push_back(caption);
    set.names.push_back(fs::path(src).stem().string());
    progress.Add(1);
  }
  progress.Finish();
  if (frames.empty()) return absl::FailedPreconditionError(absl::StrCat(shards, ": no curated world clips"));
  set.frames = at::stack(frames);  // [N, T, H, W, 3]
  ctx.StageDir("data");
  WFM_RETURN_IF_ERROR(SaveClipSet(set, OutPath(ctx, "data/train_clips.safetensors")));
  std::cout << absl::StrFormat("training set: %d world clips of %d frames at %dx%d (%d shorter clips and %d real "
                               "clips not used)\n",
                               set.names.size(), plan.clip_frames, plan.size, plan.size, skipped_short, real);
  ctx.summary["dataset"] = {{"clips", set.names.size()}, {"frames_per_clip", plan.clip_frames},
                            {"skipped_short", skipped_short}, {"real_clips_not_used", real}};
  return absl::OkStatus();
}

}  // namespace

WFM_REGISTER_DEMO_STAGE(30, "curate", "curate the simulated and real clips into webdataset shards", RunCurateStage);
WFM_REGISTER_DEMO_STAGE(35, "dataset", "decode the curated world clips at the model size", RunDatasetStage);

}  // namespace wfm::demo
