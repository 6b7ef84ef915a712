// The curation pipeline behind `wfm curate`: inputs (files, folders, manifests) -> per video one decode pass
// of analysis (shots, clip rules, borders, filters, hashes, captions) -> transcode of the kept clips ->
// webdataset shards, then a merge that deduplicates over the whole run and writes the indexes:
//   DIR/videos.jsonl    one line per input (source_video, status, error, fps, num_frames, width, height,
//                       shots {fps, num_frames, shots}, clips [span_uuid])
//   DIR/clips.jsonl     one line per clip: cosmos-curate per-clip metadata + start_frame, end_frame, kept,
//                       filter_reasons, shard, key
//   DIR/shards/<resolution/aspect/duration bin>/part_NNNNNN/NNNNNN.tar  (KEY.mp4, KEY.json, KEY.txt)
//   DIR/summary.json    inputs, clips per stage, hours in/out, wall time, throughput
// Parallelism: `workers` videos at a time per process, and any number of processes under mpirun / srun; the
// processes claim videos atomically on the shared output directory (DIR/.state/claims), each writes its own
// shards (part = rank), rank 0 merges. Crash safety: a video is done when its journal line (DIR/.state/
// journal_rR.jsonl, fsynced after its shard bytes) exists; a tar is renamed from .tar.partial to .tar only after
// the journal records all of its samples; a restart with the same command cuts partial shards back to the last
// committed video and redoes only the unfinished videos. Tests kill the process at each commit stage with
// WFM_CURATE_CRASH_AT=POINT:N (see CrashPoint in pipeline.cc).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "wfm/curation/analysis.h"
#include "wfm/curation/dedup.h"
#include "wfm/curation/transcode.h"

namespace wfm::curation {

struct CurateOptions {
  std::vector<std::string> inputs;  // video files, folders (recursive), manifests (.txt / .list / .jsonl)
  std::string output;
  AnalysisOptions analysis;
  TranscodeOptions transcode;
  bool transcode_enabled = true;    // false (--no-transcode): indexes only, no clip files or shards
  int workers = 0;                  // videos in parallel per process; 0 = max(1, cores / 4)
  int64_t shard_bytes = 500LL << 20;
  bool binned_shards = true;
  bool dedup = true;
  DedupOptions dedup_options;
  bool semantic_dedup = false;      // needs an embedder (analysis.embedder)
  SemanticDedupOptions semantic_options;
  bool fail_fast = false;           // stop at the first failed input (exit code 1)
  bool overwrite = false;           // discard an existing run in `output` made with other options
  bool quiet = false;               // no progress line
  // Description of the models in use (recorded in the run configuration / summary).
  nlohmann::json model_info;
  // Optional tokenized variant (see tokenizer_features.h): called for every kept clip with its MP4 and a
  // path to write; the file becomes KEY.latent.safetensors in the shard (training can skip decoding).
  std::function<absl::Status(const std::string& clip_mp4, const std::string& out)> latent_writer;
};

// Expands inputs into video paths (absolute, deduplicated, in order; folder contents sorted). Paths that do
// not exist are kept (they are recorded as failed).
absl::StatusOr<std::vector<std::string>> DiscoverInputs(const std::vector<std::string>& inputs);

// Runs (or resumes) the pipeline. Returns the summary (also written to DIR/summary.json). Failed inputs are
// recorded, not errors, unless fail_fast.
absl::StatusOr<nlohmann::json> RunCurate(const CurateOptions& options);

}  // namespace wfm::curation
