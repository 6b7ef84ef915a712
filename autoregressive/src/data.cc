// Pre-tokenized clip folders and deterministic batching (see wfm/autoregressive/data.h).
#include "wfm/autoregressive/data.h"

#include <algorithm>
#include <filesystem>
#include <tuple>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "wfm/core/logging.h"
#include "wfm/core/safetensors.h"
#include "wfm/core/status.h"

namespace wfm::ar {
namespace {

// [t, h, w] from `indices` / `tokens` of shape [t, h, w] or [1, t, h, w].
absl::StatusOr<std::vector<int64_t>> ClipShape(const SafetensorsFile& st) {
  const SafetensorsEntry* e = st.Find("indices");
  if (e == nullptr) e = st.Find("tokens");
  if (e == nullptr) return absl::InvalidArgumentError(absl::StrCat(st.path(), ": no `indices` tensor [t, h, w]"));
  std::vector<int64_t> s = e->shape;
  if (s.size() == 4 && s[0] == 1) s.erase(s.begin());
  if (s.size() != 3 || s[0] < 1 || s[1] < 1 || s[2] < 1)
    return absl::InvalidArgumentError(absl::StrCat(st.path(), ": `", e->name, "` must be [t, h, w] or [1, t, h, w]"));
  if (e->dtype == at::kFloat || e->dtype == at::kDouble || e->dtype == at::kHalf || e->dtype == at::kBFloat16)
    return absl::InvalidArgumentError(absl::StrCat(st.path(), ": `", e->name, "` must hold integer token ids"));
  return s;
}

}  // namespace

absl::StatusOr<TokenFolder> TokenFolder::Open(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return absl::NotFoundError(absl::StrCat(dir, ": not a directory"));
  std::vector<std::string> files;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec))
    if (it->is_regular_file() && absl::EndsWith(it->path().string(), ".safetensors")) files.push_back(it->path().string());
  if (ec) return absl::InternalError(absl::StrCat(dir, ": ", ec.message()));
  std::sort(files.begin(), files.end());
  if (files.empty()) return absl::NotFoundError(absl::StrCat(dir, ": no *.safetensors token clips"));
  TokenFolder f;
  for (const std::string& path : files) {
    WFM_ASSIGN_OR_RETURN(auto st, SafetensorsFile::Open(path));
    WFM_ASSIGN_OR_RETURN(std::vector<int64_t> s, ClipShape(*st));
    if (f.files_.empty()) f.h_ = s[1], f.w_ = s[2];
    if (s[1] != f.h_ || s[2] != f.w_)
      return absl::InvalidArgumentError(absl::StrCat(path, ": frames of ", s[1], "x", s[2], " differ from the first clip's ",
                                                     f.h_, "x", f.w_));
    f.files_.push_back(path);
    f.frames_.push_back(s[0]);
  }
  return f;
}

absl::StatusOr<TokenClip> TokenFolder::Get(int64_t index) const {
  if (index < 0 || index >= size()) return absl::OutOfRangeError(absl::StrCat("clip ", index, " of ", size()));
  TokenClip c;
  c.path = files_[static_cast<size_t>(index)];
  WFM_ASSIGN_OR_RETURN(auto st, SafetensorsFile::Open(c.path));
  WFM_RETURN_IF_ERROR(ClipShape(*st).status());
  WFM_ASSIGN_OR_RETURN(at::Tensor t, st->GetCopy(st->Contains("indices") ? "indices" : "tokens"), c.path);
  c.tokens = t.reshape({-1, h_, w_}).to(at::kLong);
  if (st->Contains("crossattn_emb")) {
    WFM_ASSIGN_OR_RETURN(c.crossattn_emb, st->GetCopy("crossattn_emb"), c.path);
    if (c.crossattn_emb.dim() != 2 || !c.crossattn_emb.is_floating_point() ||
        !at::isfinite(c.crossattn_emb).all().item<bool>())
      return absl::InvalidArgumentError(absl::StrCat(c.path, ": `crossattn_emb` must be finite float [N, D]"));
    c.crossattn_emb = c.crossattn_emb.to(at::kFloat);
    auto pad = st->metadata().find("crossattn_pad_to");
    if (pad != st->metadata().end() &&
        (!absl::SimpleAtoi(pad->second, &c.crossattn_pad_to) || c.crossattn_pad_to < c.crossattn_emb.size(0)))
      return absl::InvalidArgumentError(absl::StrCat(c.path, ": metadata crossattn_pad_to '", pad->second,
                                                     "' must be an integer >= the ", c.crossattn_emb.size(0),
                                                     " rows of `crossattn_emb`"));
  }
  auto it = st->metadata().find("caption");
  if (it != st->metadata().end()) c.caption = it->second;
  return c;
}

absl::Status TokenFolder::Write(const std::string& path, const TokenClip& clip) {
  if (!clip.tokens.defined() || clip.tokens.dim() != 3)
    return absl::InvalidArgumentError(absl::StrCat(path, ": clip tokens must be [t, h, w]"));
  TensorMap t{{"indices", clip.tokens.to(at::kLong).contiguous()}};
  if (clip.crossattn_emb.defined()) t["crossattn_emb"] = clip.crossattn_emb.to(at::kFloat).contiguous();
  std::map<std::string, std::string> meta;
  if (!clip.caption.empty()) meta["caption"] = clip.caption;
  if (clip.crossattn_emb.defined() && clip.crossattn_pad_to > 0) {
    if (clip.crossattn_pad_to < clip.crossattn_emb.size(0))
      return absl::InvalidArgumentError(absl::StrCat(path, ": crossattn_emb has more rows than crossattn_pad_to"));
    meta["crossattn_pad_to"] = std::to_string(clip.crossattn_pad_to);
  }
  return WriteSafetensors(path, t, meta);
}

std::pair<at::Tensor, at::Tensor> PadTextRows(const std::vector<at::Tensor>& rows, int64_t pad_to) {
  TORCH_CHECK(!rows.empty(), "PadTextRows: no prompts");
  int64_t len = pad_to;
  for (const at::Tensor& r : rows) {
    TORCH_CHECK(r.dim() == 2 && r.size(1) == rows[0].size(1), "PadTextRows: rows must be [n, D], got ", r.sizes());
    TORCH_CHECK(pad_to <= 0 || r.size(0) <= pad_to, "PadTextRows: ", r.size(0), " rows exceed pad_to ", pad_to);
    if (pad_to <= 0) len = std::max(len, r.size(0));
  }
  std::vector<at::Tensor> padded, masks;
  for (const at::Tensor& r : rows) {
    padded.push_back(at::constant_pad_nd(r, {0, 0, 0, len - r.size(0)}));  // [len, D], zero rows appended
    const auto opts = at::TensorOptions().device(r.device());
    masks.push_back(pad_to > 0 ? at::ones({len}, opts.dtype(at::kBool)) : at::arange(len, opts) < r.size(0));
  }
  return {at::stack(padded, 0), at::stack(masks, 0)};  // [B, len, D], bool [B, len]
}

TokenBatcher::TokenBatcher(const TokenFolder& folder, int64_t frames, double val_fraction, uint64_t seed)
    : folder_(&folder), frames_(frames), seed_(seed) {
  std::vector<int64_t> usable;
  for (int64_t i = 0; i < folder.size(); ++i) {
    if (folder.frames(i) >= frames) {
      usable.push_back(i);
    } else {
      WFM_LOG(WARNING) << "token clip " << i << " has " << folder.frames(i) << " latent frames (< " << frames
                       << "); skipped";
    }
  }
  const int64_t n = static_cast<int64_t>(usable.size());
  int64_t n_val = static_cast<int64_t>(std::llround(val_fraction * static_cast<double>(n)));
  if (val_fraction > 0 && n > 1) n_val = std::clamp<int64_t>(n_val, 1, n - 1);
  train_.assign(usable.begin(), usable.end() - n_val);
  val_.assign(usable.end() - n_val, usable.end());
  if (train_.empty())
    status_ = absl::InvalidArgumentError(absl::StrCat("no training clip with >= ", frames, " latent frames"));
}

absl::StatusOr<TokenBatch> TokenBatcher::Assemble(const std::vector<std::pair<int64_t, int64_t>>& picks) const {
  TokenBatch b;
  std::vector<at::Tensor> toks, embs;
  bool all_emb = true;
  int64_t pad_to = -1;
  for (const auto& [clip, start] : picks) {
    WFM_ASSIGN_OR_RETURN(TokenClip c, folder_->Get(clip));
    toks.push_back(c.tokens.narrow(0, start, frames_));
    b.captions.push_back(c.caption);
    all_emb = all_emb && c.crossattn_emb.defined();
    if (c.crossattn_emb.defined()) {
      if (pad_to >= 0 && c.crossattn_pad_to != pad_to)
        return absl::InvalidArgumentError(absl::StrCat(
            c.path, ": crossattn_pad_to ", c.crossattn_pad_to, " differs from another clip's ", pad_to,
            " (clips tokenized with different text encoders; re-run `wfm ar tokenize` with one)"));
      pad_to = c.crossattn_pad_to;
      if (!embs.empty() && c.crossattn_emb.size(1) != embs[0].size(1))
        return absl::InvalidArgumentError("token clips carry crossattn_emb of different widths");
      embs.push_back(c.crossattn_emb);
    }
  }
  b.tokens = at::stack(toks, 0);  // [B, frames, h, w]
  if (all_emb && !embs.empty()) std::tie(b.context, b.context_mask) = PadTextRows(embs, pad_to);
  return b;
}

absl::StatusOr<TokenBatch> TokenBatcher::Train(int64_t step, int64_t batch_size, int rank, int world) const {
  WFM_RETURN_IF_ERROR(status_);
  std::vector<std::pair<int64_t, int64_t>> picks;
  for (int64_t i = 0; i < batch_size; ++i) {
    const uint64_t item = static_cast<uint64_t>((step * world + rank) * batch_size + i);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed_ * 0x9E3779B97F4A7C15ull + item);
    const int64_t clip = train_[static_cast<size_t>(at::randint(0, train_clips(), {1}, gen).item<int64_t>())];
    const int64_t slack = folder_->frames(clip) - frames_;
    const int64_t start = slack > 0 ? at::randint(0, slack + 1, {1}, gen).item<int64_t>() : 0;
    picks.emplace_back(clip, start);
  }
  return Assemble(picks);
}

absl::StatusOr<TokenBatch> TokenBatcher::Validation(int64_t batch_size) const {
  if (val_.empty()) return absl::FailedPreconditionError("no validation clips (val_fraction 0 or one clip)");
  std::vector<std::pair<int64_t, int64_t>> picks;
  for (int64_t i = 0; i < batch_size; ++i) picks.emplace_back(val_[static_cast<size_t>(i) % val_.size()], 0);
  return Assemble(picks);
}

}  // namespace wfm::ar
