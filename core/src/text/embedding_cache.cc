// On-disk text-embedding cache (one safetensors file per (model, prompt)) and the caching TextEncoder.
#include "wfm/core/text/embedding_cache.h"

#include <ATen/ATen.h>

#include <cstring>
#include <filesystem>
#include <map>

#include "absl/strings/str_cat.h"
#include "wfm/core/logging.h"
#include "wfm/core/safetensors.h"
#include "wfm/core/status.h"
#include "wfm/core/text/tokenizer.h"

namespace wfm::text {
namespace {

namespace fs = std::filesystem;

// Arbitrary bytes (prompts need not be valid UTF-8, which JSON metadata requires) as a uint8 tensor.
at::Tensor BytesTensor(const std::string& s) {
  at::Tensor t = at::empty({static_cast<int64_t>(s.size())}, at::kByte);
  if (!s.empty()) std::memcpy(t.data_ptr<uint8_t>(), s.data(), s.size());
  return t;
}

bool TensorEquals(const TensorMap& m, const char* name, const std::string& expected) {
  auto it = m.find(name);
  if (it == m.end() || it->second.scalar_type() != at::kByte || it->second.dim() != 1 ||
      it->second.numel() != static_cast<int64_t>(expected.size())) {
    return false;
  }
  const at::Tensor t = it->second.contiguous();
  return expected.empty() || std::memcmp(t.data_ptr<uint8_t>(), expected.data(), expected.size()) == 0;
}

}  // namespace

std::string EmbeddingCache::PathFor(const std::string& model_id, const std::string& prompt) const {
  const std::string key = Fingerprint(absl::StrCat(model_id, std::string(1, '\0'), prompt));
  return (fs::path(dir_) / key.substr(0, 2) / (key + ".safetensors")).string();
}

absl::StatusOr<std::optional<at::Tensor>> EmbeddingCache::Get(const std::string& model_id,
                                                              const std::string& prompt) const {
  const std::string path = PathFor(model_id, prompt);
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::optional<at::Tensor>();
  auto tensors = ReadSafetensors(path);
  if (!tensors.ok()) {
    return absl::DataLossError(absl::StrCat("corrupt embedding cache entry: ", tensors.status().message()));
  }
  // A hash collision (or a file from elsewhere) is a miss, never a wrong answer.
  if (!TensorEquals(*tensors, "model_id", model_id) || !TensorEquals(*tensors, "prompt", prompt)) {
    return std::optional<at::Tensor>();
  }
  auto it = tensors->find("embeddings");
  if (it == tensors->end() || it->second.dim() != 2 || it->second.scalar_type() != at::kFloat) {
    return absl::DataLossError(absl::StrCat("embedding cache entry '", path, "' has no float32 [n, D] 'embeddings'"));
  }
  return std::optional<at::Tensor>(it->second.clone());
}

absl::Status EmbeddingCache::Put(const std::string& model_id, const std::string& prompt,
                                 const at::Tensor& embeddings) const {
  if (!embeddings.defined() || embeddings.dim() != 2) {
    return absl::InvalidArgumentError("cache entries must be [n, D] embeddings");
  }
  TensorMap t;
  t["embeddings"] = embeddings.detach().to(at::kCPU, at::kFloat).contiguous();
  t["model_id"] = BytesTensor(model_id);
  t["prompt"] = BytesTensor(prompt);
  return WriteSafetensors(PathFor(model_id, prompt), t, {{"format", "pt"}, {"wfm.format", "text-embedding"}});
}

CachedTextEncoder::CachedTextEncoder(std::unique_ptr<TextEncoder> encoder, std::string cache_dir)
    : encoder_(std::move(encoder)), cache_(std::move(cache_dir)) {}

absl::StatusOr<TextEmbeddings> CachedTextEncoder::Encode(const std::vector<std::string>& prompts) {
  if (prompts.empty()) return absl::InvalidArgumentError("no prompts to encode");
  const std::string id = encoder_->model_id();
  std::map<std::string, at::Tensor> found;  // prompt -> [n, D] on CPU
  std::vector<std::string> todo;
  for (const auto& p : prompts) {
    if (found.count(p)) continue;
    auto hit = cache_.Get(id, p);
    if (!hit.ok()) {
      WFM_LOG(WARNING) << hit.status().message() << "; re-encoding";
    } else if (hit->has_value()) {
      found[p] = **hit;
      ++hits_;
      continue;
    }
    found[p] = at::Tensor();
    todo.push_back(p);
  }
  if (!todo.empty()) {
    misses_ += static_cast<int64_t>(todo.size());
    WFM_ASSIGN_OR_RETURN(TextEmbeddings e, encoder_->Encode(todo));
    const at::Tensor emb = e.embeddings.detach().to(at::kCPU);            // [m, L, D]
    const at::Tensor lengths = e.mask.to(at::kCPU).sum(1).to(at::kLong);  // [m]
    for (size_t i = 0; i < todo.size(); ++i) {
      const at::Tensor row = emb[i].slice(0, 0, lengths[i].item<int64_t>());  // [n, D]
      found[todo[i]] = row;
      WFM_RETURN_IF_ERROR(cache_.Put(id, todo[i], row), "writing the embedding cache");
    }
  }
  int64_t length = 0;
  for (const auto& p : prompts) length = std::max(length, found[p].size(0));
  if (pad_to_max_length_) length = std::max(length, encoder_->max_length());
  const int64_t b = static_cast<int64_t>(prompts.size());
  TextEmbeddings out;
  out.embeddings = at::zeros({b, length, encoder_->dim()}, at::kFloat);  // [B, L, D]
  out.mask = at::zeros({b, length}, at::kBool);                          // [B, L]
  for (int64_t i = 0; i < b; ++i) {
    const at::Tensor& row = found[prompts[i]];
    if (row.size(1) != encoder_->dim()) {
      return absl::DataLossError(absl::StrCat("cached embedding for prompt ", i, " has width ", row.size(1),
                                              ", the encoder ", encoder_->dim()));
    }
    out.embeddings[i].slice(0, 0, row.size(0)).copy_(row);
    out.mask[i].slice(0, 0, row.size(0)).fill_(true);
  }
  out.embeddings = out.embeddings.to(encoder_->device());
  out.mask = out.mask.to(encoder_->device());
  return out;
}

}  // namespace wfm::text
