// The optimisation and run flags that `wfm ar train` and `wfm tokenizer train` share, as wfm.ar.train /
// wfm.tokenizer.train options: both option structs (ar::ArTrainOptions, tokenizer::TokenizerTrainOptions) name the
// fields alike, so one table serves both.
#pragma once

#include "wfm_py.h"

namespace wfm::py {

template <typename TrainOptions>
void AddSharedTrainOptions(OptionTable& table, TrainOptions& o) {
  table.Add("steps", &o.steps)
      .Add("batch_size", &o.batch_size)
      .Add("grad_accum", &o.grad_accum)
      .Add("lr", &o.lr)
      .Add("min_lr", &o.min_lr)
      .Add("warmup", &o.warmup_steps)
      .Add("schedule", &o.schedule)
      .Add("weight_decay", &o.weight_decay)
      .Add("clip_grad", &o.clip_norm)
      .Add("ema", &o.ema_decay)
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

}  // namespace wfm::py
