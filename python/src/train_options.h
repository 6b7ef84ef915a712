// The optimisation and run flags every `wfm ... train` command shares (tools/train_flags.h), as options of
// wfm.ar.train / wfm.tokenizer.train / wfm.diffusion.train: the three option structs (ar::ArTrainOptions,
// tokenizer::TokenizerTrainOptions, diffusion::DiffusionTrainOptions) name the fields alike, so one table serves
// all; the two keys that differ by command (as their CLI flags do) are arguments. Also the `shards=` data source
// of wfm.ar.train / wfm.tokenizer.train.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "wfm/curation/webdataset.h"
#include "wfm_py.h"

namespace wfm::py {

template <typename TrainOptions>
void AddSharedTrainOptions(OptionTable& table, TrainOptions& o, const std::string& schedule_key = "schedule",
                           const std::string& ema_key = "ema") {
  table.Add("steps", &o.steps)
      .Add("batch_size", &o.batch_size)
      .Add("grad_accum", &o.grad_accum)
      .Add("lr", &o.lr)
      .Add("min_lr", &o.min_lr)
      .Add("warmup", &o.warmup_steps)
      .Add(schedule_key, &o.schedule)
      .Add("weight_decay", &o.weight_decay)
      .Add("clip_grad", &o.clip_norm)
      .Add(ema_key, &o.ema_decay)
      .Add("log_every", &o.log_every)
      .Add("eval_every", &o.eval_every)
      .Add("sample_every", &o.sample_every)
      .Add("checkpoint_every", &o.checkpoint_every)
      .Add("keep_checkpoints", &o.keep_checkpoints)
      .Add("max_time", [&o](pybind11::handle v) { o.max_time_s = SecondsArg(v, "max_time"); })
      .Add("device", &o.device)
      .Add("precision", &o.precision)
      .Add("distributed", &o.distributed);
}

// Curated webdataset shards (*.tar or folders of them) -> clips in OUTPUT/shard_videos, as `wfm ar train --shards`
// and `wfm tokenizer train --input` do (curation::ExtractShardClips: extracted once, a resumed run keeps them).
// Returns the video-folder sources: with allow_other_inputs the inputs that are no shards, then the folder. Call
// without the GIL.
inline absl::StatusOr<std::vector<std::string>> ShardClipSources(const std::vector<std::string>& inputs,
                                                                 const std::string& output_dir,
                                                                 bool allow_other_inputs) {
  curation::ExtractOptions options;
  options.allow_other_inputs = allow_other_inputs;
  const std::string dir = (std::filesystem::path(output_dir) / "shard_videos").string();
  absl::StatusOr<curation::ExtractedShards> x = curation::ExtractShardClips(inputs, dir, options);
  if (!x.ok()) return x.status();
  return std::move(x->sources);
}

}  // namespace wfm::py
