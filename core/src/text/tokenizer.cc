// Tokenisers (SentencePiece through the dlopen'ed shim, ByT5 bytes) and batch tokenisation.
// The shim protocol is in core/sentencepiece_shim/wfm_sentencepiece_shim.h.
#include "wfm/core/text/tokenizer.h"

#include <dlfcn.h>

#include <ATen/ATen.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "wfm/core/file_util.h"
#include "wfm/core/logging.h"
#include "wfm/core/status.h"
#include "wfm_sentencepiece_shim.h"

namespace wfm::text {
namespace {

namespace fs = std::filesystem;

constexpr char kShimFileName[] = "libwfm_sentencepiece.so";

// The resolved C API of the shim.
struct ShimApi {
  int (*abi_version)();
  wfm_spm* (*load_from_bytes)(const char*, size_t, char*, size_t);
  void (*free_model)(wfm_spm*);
  int (*piece_size)(const wfm_spm*);
  int (*special_id)(const wfm_spm*, int);
  const char* (*id_to_piece)(const wfm_spm*, int);
  int (*encode)(const wfm_spm*, const char*, size_t, int32_t**, size_t*, char*, size_t);
  int (*decode)(const wfm_spm*, const int32_t*, size_t, char**, size_t*, char*, size_t);
  void (*free_buffer)(void*);
};

// Directory of the shared object that holds this function (libwfm_core.so).
std::string ThisLibraryDir() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&ThisLibraryDir), &info) == 0 || !info.dli_fname) return "";
  std::error_code ec;
  fs::path p = fs::weakly_canonical(fs::path(info.dli_fname), ec);
  if (ec) p = fs::path(info.dli_fname);
  return p.parent_path().string();
}

template <typename T>
absl::Status Resolve(void* handle, const char* symbol, const std::string& path, T* out) {
  void* p = dlsym(handle, symbol);
  if (!p) {
    return absl::FailedPreconditionError(
        absl::StrCat("SentencePiece shim '", path, "' lacks symbol ", symbol, " (stale build?)"));
  }
  *out = reinterpret_cast<T>(p);
  return absl::OkStatus();
}

struct ShimState {
  std::once_flag once;
  absl::Status status = absl::OkStatus();
  ShimApi api{};
};

ShimState& Shim() {
  static ShimState* state = new ShimState();  // never destroyed: the handle stays open for the process
  return *state;
}

absl::Status LoadShim(ShimApi* api) {
#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer refuses RTLD_DEEPBIND, and without it libsentencepiece's protobuf would bind to LibTorch's.
  return absl::UnimplementedError("SentencePiece is unavailable in AddressSanitizer builds (needs RTLD_DEEPBIND)");
#else
  WFM_ASSIGN_OR_RETURN(std::string path, FindSentencePieceShim());
  // RTLD_LOCAL keeps libsentencepiece's protobuf symbols out of the global scope; RTLD_DEEPBIND makes the shim
  // and libsentencepiece resolve their own references before the global scope (where LibTorch's protobuf is).
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
  if (!handle) {
    const char* e = dlerror();
    return absl::FailedPreconditionError(absl::StrCat("cannot load the SentencePiece shim '", path,
                                                      "': ", e ? e : "unknown dlopen error"));
  }
  WFM_RETURN_IF_ERROR(Resolve(handle, "wfm_spm_abi_version", path, &api->abi_version));
  if (api->abi_version() != WFM_SPM_ABI_VERSION) {
    return absl::FailedPreconditionError(absl::StrCat("SentencePiece shim '", path, "' has ABI version ",
                                                      api->abi_version(), ", expected ", WFM_SPM_ABI_VERSION));
  }
  WFM_RETURN_IF_ERROR(Resolve(handle, "wfm_spm_load_from_bytes", path, &api->load_from_bytes));
  WFM_RETURN_IF_ERROR(Resolve(handle, "wfm_spm_free", path, &api->free_model));
  WFM_RETURN_IF_ERROR(Resolve(handle, "wfm_spm_piece_size", path, &api->piece_size));
  WFM_RETURN_IF_ERROR(Resolve(handle, "wfm_spm_special_id", path, &api->special_id));
  WFM_RETURN_IF_ERROR(Resolve(handle, "wfm_spm_id_to_piece", path, &api->id_to_piece));
  WFM_RETURN_IF_ERROR(Resolve(handle, "wfm_spm_encode", path, &api->encode));
  WFM_RETURN_IF_ERROR(Resolve(handle, "wfm_spm_decode", path, &api->decode));
  WFM_RETURN_IF_ERROR(Resolve(handle, "wfm_spm_free_buffer", path, &api->free_buffer));
  return absl::OkStatus();
#endif
}

const ShimApi& Api() { return Shim().api; }

}  // namespace

absl::StatusOr<std::string> FindSentencePieceShim() {
  std::vector<std::string> tried;
  if (const char* env = std::getenv("WFM_SENTENCEPIECE_SHIM"); env && *env) {
    if (fs::exists(env)) return std::string(env);
    return absl::FailedPreconditionError(
        absl::StrCat("WFM_SENTENCEPIECE_SHIM='", env, "' does not exist"));
  }
  const std::string dir = ThisLibraryDir();
  if (!dir.empty()) {
    // The build tree (build/lib) and the install tree (PREFIX/LIBDIR) keep the shim beside libwfm_core.so.
    const fs::path p = fs::path(dir) / kShimFileName;
    if (fs::exists(p)) return p.string();
    tried.push_back(p.string());
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "SentencePiece support is not available: ", kShimFileName, " not found (looked at ",
      tried.empty() ? std::string("nothing: libwfm_core location unknown") : absl::StrJoin(tried, ", "),
      "). Build wfm with libsentencepiece-dev installed, or set WFM_SENTENCEPIECE_SHIM"));
}

absl::Status EnsureSentencePieceShim() {
  ShimState& s = Shim();
  std::call_once(s.once, [&] { s.status = LoadShim(&s.api); });
  return s.status;
}

// ---- SentencePieceTokenizer ----

struct SentencePieceTokenizer::Handle {
  wfm_spm* model = nullptr;
  ~Handle() {
    if (model) Api().free_model(model);
  }
};

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> SentencePieceTokenizer::Load(const std::string& path,
                                                                                     int32_t fallback_pad_id) {
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    return absl::NotFoundError(absl::StrCat("SentencePiece model '", path, "' does not exist"));
  }
  WFM_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  return FromBytes(std::move(bytes), path, fallback_pad_id);
}

absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> SentencePieceTokenizer::FromBytes(
    std::string model_bytes, const std::string& source, int32_t fallback_pad_id) {
  WFM_RETURN_IF_ERROR(EnsureSentencePieceShim(), "reading SentencePiece model '", source, "'");
  if (model_bytes.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("SentencePiece model '", source, "' is empty"));
  }
  std::unique_ptr<SentencePieceTokenizer> tok(new SentencePieceTokenizer());
  tok->handle_ = std::make_unique<Handle>();
  char err[512] = {0};
  tok->handle_->model = Api().load_from_bytes(model_bytes.data(), model_bytes.size(), err, sizeof(err));
  if (!tok->handle_->model) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", source, "' is not a valid SentencePiece model: ", err));
  }
  const wfm_spm* m = tok->handle_->model;
  tok->piece_size_ = Api().piece_size(m);
  tok->unk_id_ = Api().special_id(m, 0);
  tok->eos_id_ = Api().special_id(m, 2);
  const int pad = Api().special_id(m, 3);
  tok->pad_id_ = pad >= 0 ? pad : fallback_pad_id;
  if (tok->eos_id_ < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("SentencePiece model '", source, "' defines no EOS id (train it with --eos_id=N)"));
  }
  tok->source_ = source;
  tok->fingerprint_ = Fingerprint(model_bytes);
  tok->model_bytes_ = std::move(model_bytes);
  return tok;
}

absl::StatusOr<std::vector<int32_t>> SentencePieceTokenizer::Encode(absl::string_view text) const {
  int32_t* ids = nullptr;
  size_t count = 0;
  char err[512] = {0};
  if (Api().encode(handle_->model, text.data(), text.size(), &ids, &count, err, sizeof(err)) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("SentencePiece encode failed: ", err));
  }
  std::vector<int32_t> out(ids, ids + count);
  Api().free_buffer(ids);
  return out;
}

absl::StatusOr<std::string> SentencePieceTokenizer::Decode(const std::vector<int32_t>& ids) const {
  for (int32_t id : ids) {
    if (id < 0 || id >= piece_size_) {
      return absl::InvalidArgumentError(absl::StrCat("id ", id, " is outside the vocabulary [0, ", piece_size_, ")"));
    }
  }
  char* text = nullptr;
  size_t size = 0;
  char err[512] = {0};
  if (Api().decode(handle_->model, ids.data(), ids.size(), &text, &size, err, sizeof(err)) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("SentencePiece decode failed: ", err));
  }
  std::string out(text, size);
  Api().free_buffer(text);
  return out;
}

std::string SentencePieceTokenizer::name() const {
  return absl::StrCat("sentencepiece (", piece_size_, " pieces, ", source_, ")");
}

std::string SentencePieceTokenizer::IdToPiece(int32_t id) const { return Api().id_to_piece(handle_->model, id); }

// ---- ByteTokenizer ----

absl::StatusOr<std::vector<int32_t>> ByteTokenizer::Encode(absl::string_view text) const {
  std::vector<int32_t> ids(text.size());
  for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<uint8_t>(text[i]) + kOffset;
  return ids;
}

absl::StatusOr<std::string> ByteTokenizer::Decode(const std::vector<int32_t>& ids) const {
  std::string out;
  for (int32_t id : ids) {
    if (id >= kOffset && id < kOffset + 256) out.push_back(static_cast<char>(id - kOffset));
  }
  return out;
}

// ---- batches ----

absl::StatusOr<TokenBatch> TokenizeBatch(const Tokenizer& tokenizer, const std::vector<std::string>& prompts,
                                         const TokenizeOptions& options) {
  if (prompts.empty()) return absl::InvalidArgumentError("no prompts to tokenize");
  const int64_t specials = options.add_eos ? 1 : 0;
  if (options.max_length < 1 + specials) {
    return absl::InvalidArgumentError(absl::StrCat("max_length ", options.max_length, " leaves no room for text"));
  }
  const int64_t batch = static_cast<int64_t>(prompts.size());
  std::vector<std::vector<int32_t>> all(prompts.size());
  TokenBatch out;
  int64_t longest = 0;
  for (int64_t b = 0; b < batch; ++b) {
    WFM_ASSIGN_OR_RETURN(all[b], tokenizer.Encode(prompts[b]), "prompt ", b);
    const int64_t need = static_cast<int64_t>(all[b].size()) + specials;
    out.untruncated_lengths.push_back(need);
    if (need > options.max_length) {
      all[b].resize(options.max_length - specials);  // HF "longest_first": drop the tail, keep the EOS
      ++out.num_truncated;
    }
    if (options.add_eos) all[b].push_back(tokenizer.eos_id());
    out.lengths.push_back(static_cast<int64_t>(all[b].size()));
    longest = std::max<int64_t>(longest, out.lengths.back());
  }
  if (out.num_truncated > 0 && options.warn_on_truncation) {
    const int64_t worst = *std::max_element(out.untruncated_lengths.begin(), out.untruncated_lengths.end());
    WFM_LOG(WARNING) << out.num_truncated << " of " << batch << " prompt(s) exceed max_length "
                     << options.max_length << " tokens and were truncated (longest needs " << worst << ")";
  }
  const int64_t length = options.pad_to_max_length ? options.max_length : longest;
  out.ids = at::full({batch, length}, static_cast<int64_t>(tokenizer.pad_id()), at::kLong);
  out.mask = at::zeros({batch, length}, at::kBool);
  auto ids = out.ids.accessor<int64_t, 2>();
  auto mask = out.mask.accessor<bool, 2>();
  for (int64_t b = 0; b < batch; ++b) {
    for (size_t i = 0; i < all[b].size(); ++i) {
      ids[b][i] = all[b][i];
      mask[b][i] = true;
    }
  }
  return out;
}

std::string Fingerprint(absl::string_view data) {
  // FNV-1a, 128-bit: offset basis and prime from the FNV specification.
  unsigned __int128 hash = (static_cast<unsigned __int128>(0x6c62272e07bb0142ull) << 64) | 0x62b821756295c58dull;
  const unsigned __int128 prime = (static_cast<unsigned __int128>(0x0000000001000000ull) << 64) | 0x000000000000013bull;
  for (unsigned char c : data) {
    hash ^= c;
    hash *= prime;
  }
  return absl::StrFormat("%016x%016x", static_cast<uint64_t>(hash >> 64), static_cast<uint64_t>(hash));
}

absl::StatusOr<std::string> FileFingerprint(const std::string& path) {
  WFM_ASSIGN_OR_RETURN(std::shared_ptr<MappedFile> file, MappedFile::Open(path));
  constexpr size_t kChunk = 1 << 20;
  const auto* data = reinterpret_cast<const char*>(file->data());
  const size_t size = file->size();
  std::string sample = absl::StrCat(size, ":");
  if (size <= 2 * kChunk) {
    sample.append(data, size);
  } else {
    sample.append(data, kChunk);
    sample.append(data + size - kChunk, kChunk);
  }
  return Fingerprint(sample);
}

}  // namespace wfm::text
