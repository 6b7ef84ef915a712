// The built-in text encoder: a small trainable T5 encoder over byte (or SentencePiece) tokens, saved as one
// self-describing safetensors file.
#include "wfm/core/text/builtin_encoder.h"

#include <ATen/ATen.h>

#include <cmath>

#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "wfm/core/file_util.h"
#include "wfm/core/safetensors.h"
#include "wfm/core/status.h"

namespace wfm::text {
namespace {

constexpr char kFormat[] = "builtin-text-encoder";
constexpr char kSpmTensor[] = "tokenizer.sentencepiece_model";

int64_t RoundUp(int64_t n, int64_t multiple) { return (n + multiple - 1) / multiple * multiple; }

}  // namespace

absl::StatusOr<std::unique_ptr<T5TextEncoder>> CreateBuiltinTextEncoder(const BuiltinTextEncoderOptions& o) {
  std::shared_ptr<Tokenizer> tokenizer;
  if (o.sentencepiece_model.empty()) {
    tokenizer = std::make_shared<ByteTokenizer>();
  } else {
    WFM_ASSIGN_OR_RETURN(tokenizer, SentencePieceTokenizer::Load(o.sentencepiece_model));
  }
  T5Config c;
  c.name = o.sentencepiece_model.empty() ? "wfm-builtin-byte" : "wfm-builtin-spm";
  c.vocab_size = RoundUp(tokenizer->vocab_size(), 128);  // byte: 384, as ByT5
  c.d_model = o.d_model;
  c.d_kv = o.d_kv;
  c.d_ff = o.d_ff;
  c.num_layers = o.num_layers;
  c.num_heads = o.num_heads;
  c.dropout_rate = o.dropout_rate;
  c.feed_forward_proj = "gated-gelu";
  c.pad_token_id = tokenizer->pad_id();
  c.eos_token_id = tokenizer->eos_id();
  T5EncoderOptions eo;
  eo.max_length = o.max_length;
  eo.device = o.device;
  eo.trainable = true;
  eo.pad_to_max_length = o.pad_to_max_length;
  WFM_ASSIGN_OR_RETURN(std::unique_ptr<T5TextEncoder> enc, T5TextEncoder::Create(c, tokenizer, eo, o.seed));
  enc->set_model_id(absl::StrCat("builtin:", Fingerprint(absl::StrCat(c.ToJson().dump(), tokenizer->fingerprint(),
                                                                       ":seed", o.seed))));
  return enc;
}

absl::Status SaveBuiltinTextEncoder(T5TextEncoder& encoder, const std::string& path) {
  TensorMap tensors;
  for (const auto& item : encoder.model()->named_parameters(/*recurse=*/true)) {
    tensors[item.key()] = item.value().detach().to(at::kCPU, at::kFloat);
  }
  std::map<std::string, std::string> meta = {
      {"format", "pt"},
      {"wfm.format", kFormat},
      {"wfm.config", encoder.config().ToJson().dump()},
      {"wfm.max_length", std::to_string(encoder.max_length())},
      {"wfm.tokenizer", "byte"},
  };
  if (const auto* spm = dynamic_cast<const SentencePieceTokenizer*>(&encoder.tokenizer())) {
    const std::string& bytes = spm->model_bytes();
    tensors[kSpmTensor] =
        at::from_blob(const_cast<char*>(bytes.data()), {static_cast<int64_t>(bytes.size())}, at::kByte).clone();
    meta["wfm.tokenizer"] = "sentencepiece";
  } else if (!dynamic_cast<const ByteTokenizer*>(&encoder.tokenizer())) {
    return absl::UnimplementedError(absl::StrCat("cannot save a built-in encoder with tokenizer ", encoder.tokenizer().name()));
  }
  return WriteSafetensors(path, tensors, meta);
}

absl::StatusOr<std::unique_ptr<T5TextEncoder>> LoadBuiltinTextEncoder(const std::string& path,
                                                                      const LoadBuiltinOptions& options) {
  WFM_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(path));
  const auto& meta = file->metadata();
  auto field = [&](const char* key) -> std::string {
    auto it = meta.find(key);
    return it == meta.end() ? std::string() : it->second;
  };
  if (field("wfm.format") != kFormat) {
    return absl::InvalidArgumentError(absl::StrCat("'", path, "' is not a built-in text encoder (metadata wfm.format is '",
                                                   field("wfm.format"), "', expected '", kFormat, "')"));
  }
  const nlohmann::json cj = nlohmann::json::parse(field("wfm.config"), nullptr, /*allow_exceptions=*/false);
  if (cj.is_discarded()) return absl::InvalidArgumentError(absl::StrCat("'", path, "': wfm.config is not JSON"));
  WFM_ASSIGN_OR_RETURN(T5Config config, T5Config::FromJson(cj), "'", path, "'");

  std::shared_ptr<Tokenizer> tokenizer;
  const std::string kind = field("wfm.tokenizer");
  if (kind == "byte") {
    tokenizer = std::make_shared<ByteTokenizer>();
  } else if (kind == "sentencepiece") {
    WFM_ASSIGN_OR_RETURN(at::Tensor bytes, file->GetCopy(kSpmTensor), "'", path, "'");
    if (bytes.scalar_type() != at::kByte || bytes.dim() != 1) {
      return absl::InvalidArgumentError(absl::StrCat("'", path, "': ", kSpmTensor, " must be a uint8 vector"));
    }
    std::string model(reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>()), bytes.numel());
    WFM_ASSIGN_OR_RETURN(tokenizer, SentencePieceTokenizer::FromBytes(std::move(model), path + ":" + kSpmTensor,
                                                                      static_cast<int32_t>(config.pad_token_id)));
  } else {
    return absl::InvalidArgumentError(absl::StrCat("'", path, "': unknown wfm.tokenizer '", kind, "'"));
  }

  T5EncoderOptions eo;
  int64_t saved_max_length = 0;
  if (!absl::SimpleAtoi(field("wfm.max_length"), &saved_max_length) || saved_max_length < 2) {
    return absl::InvalidArgumentError(absl::StrCat("'", path, "': bad wfm.max_length '", field("wfm.max_length"), "'"));
  }
  eo.max_length = options.max_length > 0 ? options.max_length : saved_max_length;
  eo.device = options.device;
  eo.trainable = options.trainable;
  eo.pad_to_max_length = options.pad_to_max_length;
  WFM_ASSIGN_OR_RETURN(std::unique_ptr<T5TextEncoder> enc, T5TextEncoder::Create(config, tokenizer, eo),
                       "'", path, "'");
  WFM_ASSIGN_OR_RETURN(TensorMap tensors, file->GetAll());
  tensors.erase(kSpmTensor);
  WFM_RETURN_IF_ERROR(LoadT5StateDict(enc->model(), tensors, path));
  WFM_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));  // small: hash all of it
  enc->set_model_id(absl::StrCat("builtin:", Fingerprint(bytes), ":", eo.max_length));
  return enc;
}

}  // namespace wfm::text
