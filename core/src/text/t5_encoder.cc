// T5 checkpoints (Hugging Face directories: config.json, weights through the core checkpoint loader, spiece.model)
// and T5TextEncoder, plus the TextEncoder helpers (LoadTextEncoder, ZeroPadded, PadTo).
// Output convention follows cosmos_predict1/auxiliary/t5_text_encoder.py CosmosT5TextEncoder.encode_prompts.
#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "wfm/core/file_util.h"
#include "wfm/core/logging.h"
#include "wfm/core/runtime.h"
#include "wfm/core/checkpoint.h"
#include "wfm/core/tensor_file.h"
#include "wfm/core/status.h"
#include "wfm/core/text/builtin_encoder.h"
#include "wfm/core/text/t5.h"
#include "wfm/core/text/text_encoder.h"

namespace wfm::text {
namespace {

namespace fs = std::filesystem;

std::string ShapeString(at::IntArrayRef s) { return absl::StrCat("[", absl::StrJoin(s, ", "), "]"); }

// Every parameter must be finite (a checkpoint with NaN/Inf would silently poison every embedding).
absl::Status CheckFinite(T5EncoderModel& model, const std::string& source) {
  return CatchToStatus(absl::StrCat("checking '", source, "'"), [&]() -> absl::Status {
    for (const auto& p : model->named_parameters()) {
      if (!at::isfinite(p.value()).all().item<bool>()) {
        return absl::InvalidArgumentError(absl::StrCat("'", source, "': tensor '", p.key(), "' holds NaN or Inf values"));
      }
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<at::ScalarType> ParseDtype(const std::string& name) {
  if (name == "float32" || name == "fp32" || name == "float") return at::kFloat;
  if (name == "bfloat16" || name == "bf16") return at::kBFloat16;
  if (name == "float16" || name == "fp16" || name == "half") return at::kHalf;
  return absl::InvalidArgumentError(absl::StrCat("unknown dtype '", name, "' (float32, bfloat16 or float16)"));
}

}  // namespace

// ---- weights ----

NameRules T5NameRules(bool has_shared_weight) {
  NameRules rules = DefaultNameRules();
  rules.push_back(NameRule::Drop("^decoder\\."));
  rules.push_back(NameRule::Drop("^lm_head\\.weight$"));
  if (has_shared_weight) {
    rules.push_back(NameRule::Drop("^encoder\\.embed_tokens\\.weight$"));
  } else {
    rules.push_back(NameRule::Regex("^encoder\\.embed_tokens\\.weight$", "shared.weight"));
  }
  return rules;
}

absl::StatusOr<LoadReport> LoadT5Checkpoint(T5EncoderModel& model, const std::string& path,
                                            std::vector<std::string>* files) {
  WFM_ASSIGN_OR_RETURN(TensorFileIndex index, ListTensorFile(path));
  bool has_shared = false;
  std::set<std::string> unique_files;
  for (const auto& t : index.tensors) {
    has_shared = has_shared || t.name == "shared.weight";
    unique_files.insert(t.file);
  }
  LoadOptions o;
  o.rules = T5NameRules(has_shared);
  WFM_ASSIGN_OR_RETURN(LoadReport report, LoadCheckpoint(*model, index.path, o));
  WFM_RETURN_IF_ERROR(CheckFinite(model, index.path));
  if (files) files->assign(unique_files.begin(), unique_files.end());
  return report;
}

absl::Status LoadT5StateDict(T5EncoderModel& model, const TensorMap& state_dict, const std::string& source) {
  LoadOptions o;
  o.rules = T5NameRules(state_dict.count("shared.weight") > 0);
  WFM_RETURN_IF_ERROR(LoadStateDict(*model, state_dict, o, source).status());
  return CheckFinite(model, source);
}

// ---- T5TextEncoder ----

T5TextEncoder::T5TextEncoder(T5Config config, std::shared_ptr<Tokenizer> tokenizer, T5EncoderOptions options,
                             c10::Device device)
    : config_(std::move(config)), tokenizer_(std::move(tokenizer)), options_(std::move(options)), device_(device) {}

absl::StatusOr<std::unique_ptr<T5TextEncoder>> T5TextEncoder::CreateUninitialized(
    const T5Config& config, std::shared_ptr<Tokenizer> tokenizer, const T5EncoderOptions& options) {
  WFM_RETURN_IF_ERROR(config.Validate());
  if (!tokenizer) return absl::InvalidArgumentError("T5TextEncoder needs a tokenizer");
  if (tokenizer->vocab_size() > config.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer ", tokenizer->name(), " produces ids up to ",
                                                   tokenizer->vocab_size() - 1, " but the T5 model has vocab_size ",
                                                   config.vocab_size, " (mismatched vocabulary)"));
  }
  if (options.max_length < 2) {
    return absl::InvalidArgumentError(absl::StrCat("max_length ", options.max_length, " must be >= 2"));
  }
  WFM_ASSIGN_OR_RETURN(c10::Device device, ParseDevice(options.device));
  WFM_ASSIGN_OR_RETURN(at::ScalarType dtype, ParseDtype(options.dtype));
  std::unique_ptr<T5TextEncoder> enc(new T5TextEncoder(config, std::move(tokenizer), options, device));
  WFM_RETURN_IF_ERROR(CatchToStatus("creating the T5 encoder", [&]() -> absl::Status {
    enc->model_ = T5EncoderModel(config, at::TensorOptions().device(device).dtype(dtype));
    enc->model_->eval();
    for (auto& p : enc->model_->parameters()) p.set_requires_grad(options.trainable);
    return absl::OkStatus();
  }));
  enc->model_id_ = absl::StrCat("t5:", config.name, ":uninitialized");
  return enc;
}

absl::StatusOr<std::unique_ptr<T5TextEncoder>> T5TextEncoder::Create(const T5Config& config,
                                                                     std::shared_ptr<Tokenizer> tokenizer,
                                                                     const T5EncoderOptions& options, uint64_t seed) {
  WFM_ASSIGN_OR_RETURN(std::unique_ptr<T5TextEncoder> enc, CreateUninitialized(config, std::move(tokenizer), options));
  WFM_RETURN_IF_ERROR(CatchToStatus("initialising the T5 encoder", [&]() -> absl::Status {
    InitT5Weights(enc->model_, seed);
    return absl::OkStatus();
  }));
  enc->model_id_ = absl::StrCat("t5:", config.name, ":random", seed);
  return enc;
}

absl::StatusOr<std::unique_ptr<T5TextEncoder>> T5TextEncoder::Load(const std::string& model_dir,
                                                                   const T5EncoderOptions& options) {
  const fs::path dir(model_dir);
  if (!fs::is_directory(dir)) {
    return absl::NotFoundError(absl::StrCat("T5 model directory '", model_dir, "' does not exist"));
  }
  const fs::path config_path = dir / "config.json";
  if (!fs::exists(config_path)) {
    return absl::NotFoundError(absl::StrCat("'", model_dir, "' has no config.json (not a Hugging Face model directory)"));
  }
  WFM_ASSIGN_OR_RETURN(std::string config_text, ReadFile(config_path.string()));
  WFM_ASSIGN_OR_RETURN(T5Config config, T5Config::FromJsonFile(config_path.string()));

  std::shared_ptr<Tokenizer> tokenizer;
  const fs::path spiece = dir / "spiece.model";
  bool byte_level = config.vocab_size == 384;  // ByT5
  if (fs::exists(dir / "tokenizer_config.json")) {
    WFM_ASSIGN_OR_RETURN(std::string tc, ReadFile((dir / "tokenizer_config.json").string()));
    const nlohmann::json j = nlohmann::json::parse(tc, nullptr, false);
    if (!j.is_discarded() && j.is_object() && j.value("tokenizer_class", std::string()) == "ByT5Tokenizer") {
      byte_level = true;
    }
  }
  if (fs::exists(spiece)) {
    WFM_ASSIGN_OR_RETURN(tokenizer, SentencePieceTokenizer::Load(spiece.string(), config.pad_token_id));
  } else if (byte_level) {
    tokenizer = std::make_shared<ByteTokenizer>();
  } else {
    return absl::NotFoundError(absl::StrCat("'", spiece.string(),
                                            "' is missing: a T5 model directory needs its SentencePiece model"));
  }
  if (tokenizer->eos_id() != config.eos_token_id) {
    WFM_LOG(WARNING) << model_dir << ": tokenizer EOS id " << tokenizer->eos_id() << " differs from config.json eos_token_id "
                     << config.eos_token_id << "; using the tokenizer's";
  }
  WFM_ASSIGN_OR_RETURN(std::unique_ptr<T5TextEncoder> enc, CreateUninitialized(config, tokenizer, options),
                       "loading '", model_dir, "'");
  std::vector<std::string> files;
  WFM_ASSIGN_OR_RETURN(LoadReport report, LoadT5Checkpoint(enc->model_, model_dir, &files));
  WFM_LOG(DEBUG) << report.Summary();

  std::string identity = absl::StrCat(config_text, "\n", tokenizer->fingerprint(), "\n", options.dtype, "\n",
                                      options.max_length);
  for (const auto& f : files) {
    WFM_ASSIGN_OR_RETURN(std::string fp, FileFingerprint(f));
    absl::StrAppend(&identity, "\n", fs::path(f).filename().string(), ":", fp);
  }
  enc->model_id_ = absl::StrCat("t5:", fs::path(model_dir).lexically_normal().filename().string(), ":",
                                Fingerprint(identity));
  WFM_LOG(INFO) << "T5 encoder " << model_dir << ": " << config.num_layers << " layers, d_model " << config.d_model
                << ", " << config.feed_forward_proj << ", " << tokenizer->name() << ", " << options.dtype << " on "
                << enc->device_.str();
  return enc;
}

absl::StatusOr<TextEmbeddings> T5TextEncoder::EncodeTokens(const at::Tensor& ids, const at::Tensor& mask) {
  if (!ids.defined() || ids.dim() != 2 || ids.size(0) < 1 || ids.size(1) < 1 || ids.scalar_type() != at::kLong) {
    return absl::InvalidArgumentError(absl::StrCat("T5 ids must be int64 [B, L] with B, L >= 1; got ",
                                                   ids.defined() ? ShapeString(ids.sizes()) : "undefined"));
  }
  if (!mask.defined() || mask.sizes() != ids.sizes()) {
    return absl::InvalidArgumentError(absl::StrCat("T5 mask must have the ids' shape ", ShapeString(ids.sizes())));
  }
  const int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
  if (lo < 0 || hi >= config_.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("token ids span [", lo, ", ", hi, "], outside the vocabulary [0, ",
                                                   config_.vocab_size, ")"));
  }
  return CatchToStatus("T5 encoder forward", [&]() -> absl::StatusOr<TextEmbeddings> {
    std::optional<at::NoGradGuard> no_grad;
    if (!options_.trainable) no_grad.emplace();
    const at::Tensor m = mask.to(device_, at::kBool);                 // [B, L]
    const at::Tensor h = model_(ids.to(device_), m).to(at::kFloat);  // [B, L, D]
    if (!at::isfinite(h).all().item<bool>()) {
      return absl::InternalError(absl::StrCat("the T5 encoder produced NaN/Inf values (dtype ", options_.dtype,
                                              "; T5 overflows in float16, use bfloat16 or float32)"));
    }
    return TextEmbeddings{ZeroPadded(h, m), m};
  });
}

absl::StatusOr<TextEmbeddings> T5TextEncoder::Encode(const std::vector<std::string>& prompts) {
  TokenizeOptions t;
  t.max_length = options_.max_length;
  t.pad_to_max_length = false;  // run only over the longest prompt; padding does not change the outputs
  WFM_ASSIGN_OR_RETURN(TokenBatch batch, TokenizeBatch(*tokenizer_, prompts, t));
  WFM_ASSIGN_OR_RETURN(TextEmbeddings e, EncodeTokens(batch.ids, batch.mask));
  if (options_.pad_to_max_length) e = PadTo(e, options_.max_length);
  return e;
}

// ---- TextEncoder helpers ----

at::Tensor ZeroPadded(const at::Tensor& embeddings, const at::Tensor& mask) {
  return embeddings.masked_fill(mask.to(at::kBool).logical_not().unsqueeze(-1), 0.0);  // [B, L, D]
}

TextEmbeddings PadTo(const TextEmbeddings& e, int64_t length) {
  const int64_t b = e.embeddings.size(0), l = e.embeddings.size(1), d = e.embeddings.size(2);
  TORCH_CHECK(l <= length, "PadTo: embeddings of length ", l, " exceed ", length);
  if (l == length) return e;
  TextEmbeddings out;
  out.embeddings = at::cat({e.embeddings, at::zeros({b, length - l, d}, e.embeddings.options())}, 1);  // [B, length, D]
  out.mask = at::cat({e.mask, at::zeros({b, length - l}, e.mask.options())}, 1);                      // [B, length]
  return out;
}

absl::StatusOr<std::unique_ptr<TextEncoder>> LoadTextEncoder(const std::string& path,
                                                             const LoadTextEncoderOptions& options) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    T5EncoderOptions o;
    if (options.max_length > 0) o.max_length = options.max_length;
    o.device = options.device;
    o.dtype = options.dtype;
    o.pad_to_max_length = options.pad_to_max_length;
    WFM_ASSIGN_OR_RETURN(auto enc, T5TextEncoder::Load(path, o));
    return std::unique_ptr<TextEncoder>(std::move(enc));
  }
  if (fs::is_regular_file(path, ec)) {
    LoadBuiltinOptions o;
    o.device = options.device;
    o.trainable = false;
    o.max_length = options.max_length;
    o.pad_to_max_length = options.pad_to_max_length;
    WFM_ASSIGN_OR_RETURN(auto enc, LoadBuiltinTextEncoder(path, o));
    return std::unique_ptr<TextEncoder>(std::move(enc));
  }
  return absl::NotFoundError(absl::StrCat("text encoder '", path,
                                          "' does not exist (a T5 model directory or a built-in encoder file)"));
}

}  // namespace wfm::text
