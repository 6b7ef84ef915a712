// Text tokenisers for the text encoders, and batch tokenisation with EOS, truncation and padding.
//
// - SentencePieceTokenizer reads a SentencePiece model (T5's `spiece.model`). libsentencepiece is never linked
//   into wfm: it bundles a protobuf that clashes with LibTorch's. It is reached through the tiny shim
//   libwfm_sentencepiece.so, dlopen()ed with RTLD_LOCAL | RTLD_DEEPBIND from the directory of libwfm_core.so
//   (build/lib, or the install lib dir); WFM_SENTENCEPIECE_SHIM=/path/to/libwfm_sentencepiece.so overrides.
// - ByteTokenizer is the ByT5 convention: UTF-8 bytes shifted by 3 (pad 0, eos 1, unk 2). Needs no model file.
//
// TokenizeBatch follows Hugging Face `tokenizer(prompts, truncation=True, padding="max_length",
// max_length=L)` for T5 (what Cosmos calls): ids + EOS, truncated to L - 1 tokens before the EOS (so the EOS is
// always kept) with a warning, padded with pad_id, mask true on real tokens (EOS included). One difference: text
// is handed to SentencePiece as is, so special-token spellings inside a prompt ("</s>", "<extra_id_0>") are encoded
// as ordinary text, where transformers' T5 tokenizer would map them to their special ids.
//
//   WFM_ASSIGN_OR_RETURN(auto tok, text::SentencePieceTokenizer::Load("t5-11b/spiece.model"));
//   WFM_ASSIGN_OR_RETURN(text::TokenBatch batch, text::TokenizeBatch(*tok, {"a red car"}, {}));
//   // batch.ids: int64 [1, 512]; batch.mask: bool [1, 512]; batch.lengths[0] == number of ids incl. EOS
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace wfm::text {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Ids of `text`, without special tokens.
  virtual absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text) const = 0;
  // Text of `ids` (special tokens dropped).
  virtual absl::StatusOr<std::string> Decode(const std::vector<int32_t>& ids) const = 0;
  // Number of distinct ids the tokeniser can produce (ids are in [0, vocab_size)).
  virtual int64_t vocab_size() const = 0;
  virtual int32_t eos_id() const = 0;
  virtual int32_t pad_id() const = 0;
  // A short description ("sentencepiece (32000 pieces)", "byte").
  virtual std::string name() const = 0;
  // A stable hash of everything that decides the ids (model bytes, conventions); used in cache keys.
  virtual std::string fingerprint() const = 0;
};

class SentencePieceTokenizer : public Tokenizer {
 public:
  // Reads a SentencePiece model file. NotFound when the file is missing, InvalidArgument when it is not a model,
  // FailedPrecondition when the SentencePiece shim cannot be loaded. The model must define an EOS id; the pad id
  // is the model's, or `fallback_pad_id` when it has none (T5 models define pad 0, eos 1, unk 2).
  static absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> Load(const std::string& path,
                                                                      int32_t fallback_pad_id = 0);
  // The same from the serialized model bytes; `source` names them in errors.
  static absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> FromBytes(std::string model_bytes,
                                                                           const std::string& source,
                                                                           int32_t fallback_pad_id = 0);
  ~SentencePieceTokenizer() override;

  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text) const override;
  absl::StatusOr<std::string> Decode(const std::vector<int32_t>& ids) const override;
  int64_t vocab_size() const override { return piece_size_; }
  int32_t eos_id() const override { return eos_id_; }
  int32_t pad_id() const override { return pad_id_; }
  int32_t unk_id() const { return unk_id_; }
  std::string name() const override;
  std::string fingerprint() const override { return fingerprint_; }
  // The piece string of `id` ("" when out of range).
  std::string IdToPiece(int32_t id) const;
  // The serialized model (to embed it in a checkpoint).
  const std::string& model_bytes() const { return model_bytes_; }

 private:
  SentencePieceTokenizer() = default;
  struct Handle;
  std::unique_ptr<Handle> handle_;
  std::string model_bytes_, source_, fingerprint_;
  int64_t piece_size_ = 0;
  int32_t eos_id_ = -1, pad_id_ = 0, unk_id_ = -1;
};

// ByT5 byte-level tokeniser: id = byte + 3; pad 0, eos 1, unk 2. vocab_size() = 259 (ByT5 checkpoints add 125
// unused sentinel ids, vocab 384).
class ByteTokenizer : public Tokenizer {
 public:
  static constexpr int32_t kPad = 0, kEos = 1, kUnk = 2, kOffset = 3;
  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text) const override;
  absl::StatusOr<std::string> Decode(const std::vector<int32_t>& ids) const override;
  int64_t vocab_size() const override { return 256 + kOffset; }
  int32_t eos_id() const override { return kEos; }
  int32_t pad_id() const override { return kPad; }
  std::string name() const override { return "byte"; }
  std::string fingerprint() const override { return "byte-offset3"; }
};

// Path of the SentencePiece shim that would be loaded, or FailedPrecondition saying where it was looked for.
absl::StatusOr<std::string> FindSentencePieceShim();
// Loads the shim once per process (thread-safe); the error says why it is unavailable.
absl::Status EnsureSentencePieceShim();

struct TokenizeOptions {
  int64_t max_length = 512;  // tokens per prompt including EOS; longer prompts are truncated (warned)
  bool add_eos = true;
  bool pad_to_max_length = true;  // false: pad only to the longest prompt of the batch
  bool warn_on_truncation = true;
};

struct TokenBatch {
  at::Tensor ids;                // int64 [B, L]; pad_id at padded positions
  at::Tensor mask;               // bool [B, L]; true at real tokens (EOS included)
  std::vector<int64_t> lengths;  // real tokens per prompt (<= max_length)
  std::vector<int64_t> untruncated_lengths;  // what each prompt would have needed
  int64_t num_truncated = 0;
};

// Tokenises a batch (see the file comment for the exact convention). InvalidArgument for an empty batch or
// max_length < 1 (< 2 with EOS).
absl::StatusOr<TokenBatch> TokenizeBatch(const Tokenizer& tokenizer, const std::vector<std::string>& prompts,
                                         const TokenizeOptions& options);

// 128-bit FNV-1a of `data` as 32 hex digits: a stable content hash for cache keys and fingerprints.
std::string Fingerprint(absl::string_view data);
// A cheap fingerprint of a (possibly huge) file: its size and the hash of its first and last MiB.
absl::StatusOr<std::string> FileFingerprint(const std::string& path);

}  // namespace wfm::text
