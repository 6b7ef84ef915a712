// `wfm text ...`: encode prompts with a T5 directory or the built-in encoder, show token ids, create a built-in
// encoder checkpoint.
#include <ATen/ATen.h>

#include <fstream>
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "cli.h"
#include "wfm/core/logging.h"
#include "wfm/core/progress.h"
#include "wfm/core/safetensors.h"
#include "wfm/core/status.h"
#include "wfm/core/text/builtin_encoder.h"
#include "wfm/core/text/embedding_cache.h"
#include "wfm/core/text/t5.h"
#include "wfm/core/text/tokenizer.h"

namespace wfm {
namespace {

absl::Status ReadPromptLines(const std::string& path, std::vector<std::string>* prompts) {
  std::ifstream f(path);
  if (!f) return absl::NotFoundError(absl::StrCat("cannot read prompts file '", path, "'"));
  std::string line;
  while (std::getline(f, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    prompts->push_back(line);
  }
  return absl::OkStatus();
}

int RunTextEncode(int argc, char** argv) {
  std::string model, builtin, output, prompts_file, device = "cpu", dtype = "float32", cache;
  std::vector<std::string> prompts;
  int64_t max_length = 0, batch_size = 8;
  bool no_pad = false;
  cli::ArgParser p("wfm text encode",
                   "Encode prompts into text embeddings (float32 [B, L, D] 'embeddings' + bool [B, L] 'mask', padded "
                   "rows zeroed) for the world models.");
  p.Option("model", &model, "Hugging Face T5 directory: config.json, model.safetensors (or sharded / "
                            "pytorch_model.bin), spiece.model")
      .Option("builtin", &builtin, "built-in text encoder checkpoint (wfm text init-builtin, or trained)")
      .MultiOption("prompt", &prompts, "prompt text (repeatable)")
      .Option("prompts-file", &prompts_file, "file with one prompt per line")
      .Option("output", &output, "output .safetensors", /*required=*/true)
      .Option("max-length", &max_length, "tokens per prompt incl. EOS (default 512 for T5, as saved for built-in)")
      .Flag("no-pad", &no_pad, "pad to the longest prompt instead of max-length")
      .Option("batch-size", &batch_size, "prompts per forward pass (default 8)")
      .Option("device", &device, "cpu | cuda | cuda:N | auto (default cpu)")
      .Option("dtype", &dtype, "T5 compute dtype: float32 | bfloat16 | float16 (default float32)")
      .Option("cache", &cache, "embedding cache directory: reuse embeddings of prompts seen before")
      .Epilog("example:\n  wfm text encode --model checkpoints/google-t5/t5-11b --prompt \"A robot arm picks up a cup.\" "
              "--output cond.safetensors");
  if (auto rc = p.Parse(argc, argv)) return *rc;
  if (model.empty() == builtin.empty()) return p.UsageError("give exactly one of --model DIR or --builtin CKPT");
  if (!prompts_file.empty()) {
    if (absl::Status s = ReadPromptLines(prompts_file, &prompts); !s.ok()) return cli::ReportError(s);
  }
  if (prompts.empty()) return p.UsageError("no prompts: use --prompt TEXT or --prompts-file FILE");
  if (batch_size < 1) return p.UsageError("--batch-size must be >= 1");

  text::LoadTextEncoderOptions o;
  o.max_length = max_length;
  o.device = device;
  o.dtype = dtype;
  o.pad_to_max_length = true;  // batches are padded alike, then trimmed below with --no-pad
  auto loaded = text::LoadTextEncoder(model.empty() ? builtin : model, o);
  if (!loaded.ok()) return cli::ReportError(loaded.status());
  std::unique_ptr<text::TextEncoder> encoder = std::move(*loaded);
  if (!cache.empty()) encoder = std::make_unique<text::CachedTextEncoder>(std::move(encoder), cache);

  const int64_t n = static_cast<int64_t>(prompts.size());
  std::vector<at::Tensor> embeddings, masks;
  Progress progress("encode", n, "prompts");
  for (int64_t start = 0; start < n; start += batch_size) {
    std::vector<std::string> batch(prompts.begin() + start, prompts.begin() + std::min(n, start + batch_size));
    auto e = encoder->Encode(batch);
    if (!e.ok()) return cli::ReportError(Annotate(e.status(), absl::StrCat("prompts ", start, "..")));
    embeddings.push_back(e->embeddings.to(at::kCPU));
    masks.push_back(e->mask.to(at::kCPU));
    progress.Add(static_cast<int64_t>(batch.size()));
  }
  progress.Finish();
  at::Tensor emb = at::cat(embeddings, 0);  // [B, L, D]
  at::Tensor mask = at::cat(masks, 0);      // [B, L]
  if (no_pad) {
    const int64_t longest = mask.sum(1).max().item<int64_t>();
    emb = emb.slice(1, 0, longest).contiguous();
    mask = mask.slice(1, 0, longest).contiguous();
  }
  const absl::Status s = WriteSafetensors(output, {{"embeddings", emb}, {"mask", mask}},
                                          {{"format", "pt"}, {"wfm.model_id", encoder->model_id()}});
  if (!s.ok()) return cli::ReportError(s);
  std::cout << "wrote " << output << ": embeddings [" << emb.size(0) << ", " << emb.size(1) << ", " << emb.size(2)
            << "], tokens per prompt:";
  const at::Tensor lengths = mask.sum(1).to(at::kLong);
  for (int64_t i = 0; i < lengths.size(0); ++i) std::cout << " " << lengths[i].item<int64_t>();
  std::cout << "\n";
  return cli::kExitOk;
}

int RunTextTokenize(int argc, char** argv) {
  std::string model, spiece;
  std::vector<std::string> prompts;
  int64_t max_length = 512;
  bool no_eos = false;
  cli::ArgParser p("wfm text tokenize", "Print token ids of prompts as JSON (one object per prompt).");
  p.Option("model", &model, "T5 model directory (uses its spiece.model; byte tokens for ByT5)")
      .Option("spiece", &spiece, "a SentencePiece model file")
      .MultiOption("prompt", &prompts, "prompt text (repeatable)", /*required=*/true)
      .Option("max-length", &max_length, "truncate to this many tokens incl. EOS (default 512)")
      .Flag("no-eos", &no_eos, "do not append EOS");
  if (auto rc = p.Parse(argc, argv)) return *rc;
  std::shared_ptr<text::Tokenizer> tok;
  if (!spiece.empty() || !model.empty()) {
    const std::string path = spiece.empty() ? model + "/spiece.model" : spiece;
    auto t = text::SentencePieceTokenizer::Load(path);
    if (!t.ok()) return cli::ReportError(t.status());
    tok = std::move(*t);
  } else {
    tok = std::make_shared<text::ByteTokenizer>();
  }
  text::TokenizeOptions o;
  o.max_length = max_length;
  o.add_eos = !no_eos;
  o.pad_to_max_length = false;
  auto batch = text::TokenizeBatch(*tok, prompts, o);
  if (!batch.ok()) return cli::ReportError(batch.status());
  for (size_t i = 0; i < prompts.size(); ++i) {
    const at::Tensor row = batch->ids[i].slice(0, 0, batch->lengths[i]);
    std::vector<int64_t> ids(row.data_ptr<int64_t>(), row.data_ptr<int64_t>() + row.numel());
    std::cout << nlohmann::json{{"ids", ids}, {"truncated", batch->untruncated_lengths[i] > batch->lengths[i]}}.dump()
              << "\n";
  }
  return cli::kExitOk;
}

int RunTextInitBuiltin(int argc, char** argv) {
  text::BuiltinTextEncoderOptions o;
  std::string output;
  int seed = 0;
  cli::ArgParser p("wfm text init-builtin",
                   "Create a freshly initialised built-in text encoder (small T5 over byte or SentencePiece tokens) "
                   "to train jointly with a world model.");
  p.Option("output", &output, "output .safetensors", /*required=*/true)
      .Option("d-model", &o.d_model, "width (default 256)")
      .Option("layers", &o.num_layers, "transformer blocks (default 4)")
      .Option("heads", &o.num_heads, "attention heads (default 4)")
      .Option("d-kv", &o.d_kv, "per-head width (default 64)")
      .Option("d-ff", &o.d_ff, "feed-forward width (default 512)")
      .Option("max-length", &o.max_length, "tokens per prompt incl. EOS (default 256)")
      .Option("spiece", &o.sentencepiece_model, "SentencePiece model (spm_train on your captions); default bytes")
      .Option("seed", &seed, "initialisation seed (default 0)");
  if (auto rc = p.Parse(argc, argv)) return *rc;
  o.seed = static_cast<uint64_t>(seed);
  auto enc = text::CreateBuiltinTextEncoder(o);
  if (!enc.ok()) return cli::ReportError(enc.status());
  if (absl::Status s = text::SaveBuiltinTextEncoder(**enc, output); !s.ok()) return cli::ReportError(s);
  int64_t params = 0;
  for (const auto& t : (*enc)->module()->parameters()) params += t.numel();
  std::cout << "wrote " << output << ": " << params << " parameters, " << (*enc)->tokenizer().name() << " tokens\n";
  return cli::kExitOk;
}

}  // namespace

WFM_REGISTER_COMMAND("text encode", "encode prompts with T5 or the built-in text encoder", RunTextEncode);
WFM_REGISTER_COMMAND("text tokenize", "print the token ids of prompts", RunTextTokenize);
WFM_REGISTER_COMMAND("text init-builtin", "create a built-in (trainable) text encoder checkpoint", RunTextInitBuiltin);

}  // namespace wfm
