// On-disk cache of text embeddings keyed by (model_id, prompt), so a dataset's captions are encoded once.
//
// Layout: DIR/<k0k1>/<key>.safetensors, key = Fingerprint(model_id + '\0' + prompt) (32 hex digits). Each file
// holds "embeddings" float32 [n, D] (only the prompt's n real tokens, as Cosmos stores its T5 pickles) and the
// metadata {"wfm.model_id", "wfm.prompt"}, which are checked on read, so a hash collision or a foreign file is a
// miss, never a wrong answer. Writes are atomic (temp + rename): concurrent writers of the same entry are safe.
//
//   WFM_ASSIGN_OR_RETURN(auto t5, text::LoadTextEncoder("checkpoints/t5-11b"));
//   text::CachedTextEncoder enc(std::move(t5), "cache/t5");
//   WFM_ASSIGN_OR_RETURN(auto e, enc.Encode(captions));   // encodes only the misses
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "wfm/core/text/text_encoder.h"

namespace wfm::text {

class EmbeddingCache {
 public:
  explicit EmbeddingCache(std::string dir) : dir_(std::move(dir)) {}
  const std::string& dir() const { return dir_; }

  // The file an entry lives in.
  std::string PathFor(const std::string& model_id, const std::string& prompt) const;
  // float32 [n, D] on CPU, or nullopt on a miss. A corrupt entry is a DataLoss error naming the file.
  absl::StatusOr<std::optional<at::Tensor>> Get(const std::string& model_id, const std::string& prompt) const;
  // Stores [n, D] (any float dtype/device; stored as float32).
  absl::Status Put(const std::string& model_id, const std::string& prompt, const at::Tensor& embeddings) const;

 private:
  std::string dir_;
};

// A TextEncoder that serves prompts from an EmbeddingCache and encodes (then stores) only the misses.
// Same outputs as the wrapped encoder (up to float rounding of a different batch composition); no gradients.
class CachedTextEncoder : public TextEncoder {
 public:
  CachedTextEncoder(std::unique_ptr<TextEncoder> encoder, std::string cache_dir);

  absl::StatusOr<TextEmbeddings> Encode(const std::vector<std::string>& prompts) override;
  int64_t dim() const override { return encoder_->dim(); }
  int64_t max_length() const override { return encoder_->max_length(); }
  std::string model_id() const override { return encoder_->model_id(); }
  c10::Device device() const override { return encoder_->device(); }
  std::shared_ptr<torch::nn::Module> module() override { return encoder_->module(); }

  // Length of the outputs: max_length() (default) or the batch's longest prompt.
  void set_pad_to_max_length(bool pad) { pad_to_max_length_ = pad; }
  int64_t hits() const { return hits_; }
  int64_t misses() const { return misses_; }
  TextEncoder& wrapped() { return *encoder_; }
  const EmbeddingCache& cache() const { return cache_; }

 private:
  std::unique_ptr<TextEncoder> encoder_;
  EmbeddingCache cache_;
  bool pad_to_max_length_ = true;
  int64_t hits_ = 0, misses_ = 0;
};

}  // namespace wfm::text
