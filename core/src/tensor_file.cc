// Format detection and reading for every checkpoint format (see tensor_file.h). The PyTorch formats follow
// torch/serialization.py: _save/_load (zip: ARCHIVE/data.pkl + ARCHIVE/data/<key> records), _legacy_save/
// _legacy_load (magic number, protocol, sys info, object pickle, storage-key pickle, then raw storages) and
// torch/csrc/jit/serialization/import.cpp for TorchScript (ARCHIVE/data.pkl holds the module object tree).
#include "wfm/core/tensor_file.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "torch_pickle.h"
#include "wfm/core/file_util.h"
#include "wfm/core/safetensors.h"
#include "wfm/core/status.h"

namespace wfm {
namespace fs = std::filesystem;
namespace tp = torch_pickle;

namespace {

// Magic number that opens a legacy torch.save file (torch/serialization.py MAGIC_NUMBER), as LONG1 bytes.
constexpr uint8_t kLegacyMagic[] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

absl::Status Bad(const std::string& path, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat("checkpoint '", path, "': ", problem));
}

std::string HexPrefix(const uint8_t* d, size_t n) {
  std::string s;
  for (size_t i = 0; i < std::min<size_t>(n, 8); ++i) absl::StrAppendFormat(&s, "%s%02x", i ? " " : "", d[i]);
  return s;
}

bool LooksLikeSafetensors(const MappedFile& f) {
  if (f.size() < 10) return false;
  uint64_t n = 0;
  std::memcpy(&n, f.data(), 8);
  return n >= 2 && n <= f.size() - 8 && f.data()[8] == '{';
}

bool LooksLikeJson(const MappedFile& f) {
  for (size_t i = 0; i < f.size() && i < 4096; ++i) {
    const uint8_t c = f.data()[i];
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    return c == '{';
  }
  return false;
}

// ---- PyTorch pickle checkpoints (zip, legacy, TorchScript) ----

struct PickleCheckpoint {
  std::string path;
  TensorFileFormat format;
  std::shared_ptr<MappedFile> file;
  std::vector<tp::NamedTensor> tensors;
  int64_t skipped = 0;
  std::vector<std::string> skipped_examples;
  // Raw bytes of each storage, by key.
  std::map<std::string, absl::string_view> storage_bytes;
};

absl::Status CheckStorages(PickleCheckpoint& ck) {
  std::set<absl::string_view> names;
  for (const auto& nt : ck.tensors) {
    if (!names.insert(nt.name).second) {
      return Bad(ck.path, absl::StrCat("two tensors flatten to the same name '", nt.name, "'"));
    }
    const tp::StorageRef& st = *nt.tensor->storage;
    auto it = ck.storage_bytes.find(st.key);
    if (it == ck.storage_bytes.end()) {
      return Bad(ck.path, absl::StrCat("tensor '", nt.name, "' refers to storage '", st.key, "', which is missing"));
    }
    const uint64_t need = static_cast<uint64_t>(st.numel) * c10::elementSize(st.dtype);
    if (it->second.size() < need) {
      return Bad(ck.path, absl::StrCat("storage '", st.key, "' holds ", it->second.size(), " bytes but ", st.numel, " ",
                                       c10::toString(st.dtype), " elements need ", need, ": truncated?"));
    }
    // The tensor must lie inside its storage.
    const tp::TensorRef& t = *nt.tensor;
    bool empty = false;
    unsigned __int128 last = t.offset;
    for (size_t d = 0; d < t.sizes.size(); ++d) {
      if (t.sizes[d] == 0) empty = true;
      else last += static_cast<unsigned __int128>(t.sizes[d] - 1) * static_cast<uint64_t>(t.strides[d]);
    }
    const uint64_t avail = it->second.size() / c10::elementSize(t.dtype);
    if (!empty && last >= avail) {
      return Bad(ck.path, absl::StrCat("tensor '", nt.name, "' (offset ", t.offset, ", shape [",
                                       absl::StrJoin(t.sizes, ", "), "], strides [", absl::StrJoin(t.strides, ", "),
                                       "]) reaches past the end of its storage (", avail, " elements)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<PickleCheckpoint> OpenTorchZip(const std::string& path, std::shared_ptr<MappedFile> file) {
  WFM_ASSIGN_OR_RETURN(tp::ZipArchive zip, tp::ZipArchive::Open(file));
  // The archive's records live under one top-level folder (the file stem for torch.save, "archive", ...).
  const tp::ZipRecord* pkl = nullptr;
  for (const auto& r : zip.records()) {
    const size_t slash = r.name.find('/');
    if (slash != std::string::npos && r.name.compare(slash, std::string::npos, "/data.pkl") == 0) {
      pkl = &r;
      break;
    }
  }
  if (!pkl) return Bad(path, "zip archive without a <archive>/data.pkl record: not a PyTorch checkpoint");
  const std::string prefix = pkl->name.substr(0, pkl->name.size() - std::strlen("data.pkl"));
  PickleCheckpoint ck;
  ck.path = path;
  ck.file = file;
  ck.format = (zip.Find(prefix + "constants.pkl") || zip.Find(prefix + "code/__torch__.py") ||
               std::any_of(zip.records().begin(), zip.records().end(),
                           [&](const tp::ZipRecord& r) { return absl::StartsWith(r.name, prefix + "code/"); }))
                  ? TensorFileFormat::kTorchScript
                  : TensorFileFormat::kTorchZip;
  if (const tp::ZipRecord* bo = zip.Find(prefix + "byteorder")) {
    WFM_ASSIGN_OR_RETURN(absl::string_view order, zip.Read(*bo));
    if (order != "little") return absl::UnimplementedError(absl::StrCat("checkpoint '", path, "' is ", order, "-endian"));
  }
  WFM_ASSIGN_OR_RETURN(absl::string_view program, zip.Read(*pkl));
  WFM_ASSIGN_OR_RETURN(tp::PyRef root, tp::Unpickle(program, absl::StrCat("checkpoint '", path, "' ", pkl->name)));
  tp::FlattenTensors(root, &ck.tensors, &ck.skipped, &ck.skipped_examples);
  for (const auto& nt : ck.tensors) {
    const std::string& key = nt.tensor->storage->key;
    if (ck.storage_bytes.count(key)) continue;
    const tp::ZipRecord* rec = zip.Find(prefix + "data/" + key);
    if (!rec) return Bad(path, absl::StrCat("tensor '", nt.name, "': record '", prefix, "data/", key, "' is missing"));
    WFM_ASSIGN_OR_RETURN(ck.storage_bytes[key], zip.Read(*rec));
  }
  WFM_RETURN_IF_ERROR(CheckStorages(ck));
  return ck;
}

absl::StatusOr<PickleCheckpoint> OpenTorchLegacy(const std::string& path, std::shared_ptr<MappedFile> file) {
  absl::string_view all(reinterpret_cast<const char*>(file->data()), file->size());
  const std::string what = absl::StrCat("checkpoint '", path, "' (legacy format)");
  size_t pos = 0, used = 0;
  auto next = [&](tp::StorageMap* storages = nullptr) -> absl::StatusOr<tp::PyRef> {
    auto v = tp::Unpickle(all.substr(pos), what, &used, storages);
    if (v.ok()) pos += used;
    return v;
  };
  WFM_ASSIGN_OR_RETURN(tp::PyRef magic, next());
  if (magic->type != tp::PyObj::Type::kBigInt || magic->s != std::string(std::begin(kLegacyMagic), std::end(kLegacyMagic))) {
    return Bad(path, "a pickle that is not a torch.save file (wrong magic number)");
  }
  WFM_ASSIGN_OR_RETURN(tp::PyRef protocol, next());
  if (protocol->type != tp::PyObj::Type::kInt || protocol->i != 1001) {
    return Bad(path, "unsupported legacy torch.save protocol version");
  }
  WFM_ASSIGN_OR_RETURN(tp::PyRef sys_info, next());
  (void)sys_info;
  PickleCheckpoint ck;
  ck.path = path;
  ck.file = file;
  ck.format = TensorFileFormat::kTorchLegacy;
  tp::StorageMap storages;
  WFM_ASSIGN_OR_RETURN(tp::PyRef root, next(&storages));
  tp::FlattenTensors(root, &ck.tensors, &ck.skipped, &ck.skipped_examples);
  WFM_ASSIGN_OR_RETURN(tp::PyRef keys, next());
  if (keys->type != tp::PyObj::Type::kList) return Bad(path, "legacy storage key list is missing");
  // Storages follow in key-list order: int64 element count, then the raw bytes.
  for (const auto& k : keys->items) {
    if (k->type != tp::PyObj::Type::kStr) return Bad(path, "legacy storage key is not a string");
    auto it = storages.find(k->s);
    if (it == storages.end()) return Bad(path, absl::StrCat("legacy storage '", k->s, "' was never described"));
    if (all.size() - pos < 8) return Bad(path, absl::StrCat("storage '", k->s, "' is cut off: truncated?"));
    uint64_t numel = 0;
    std::memcpy(&numel, all.data() + pos, 8);
    pos += 8;
    const size_t elem = c10::elementSize(it->second->dtype);
    if (numel > (all.size() - pos) / elem) {
      return Bad(path, absl::StrCat("storage '", k->s, "' (", numel, " elements) runs past the end of the file: truncated?"));
    }
    ck.storage_bytes[k->s] = all.substr(pos, numel * elem);
    pos += numel * elem;
  }
  WFM_RETURN_IF_ERROR(CheckStorages(ck));
  return ck;
}

// Materialises the tensors `want` selects as strided views of per-storage CPU tensors (zero-copy when aligned).
TensorMap MaterializePickle(const PickleCheckpoint& ck, const std::function<bool(const std::string&)>& want) {
  std::map<std::pair<std::string, int>, at::Tensor> storage_tensors;
  std::shared_ptr<MappedFile> keep = ck.file;
  TensorMap out;
  for (const auto& nt : ck.tensors) {
    if (want && !want(nt.name)) continue;
    const tp::TensorRef& t = *nt.tensor;
    auto options = at::TensorOptions().dtype(t.dtype).device(at::kCPU);
    at::Tensor& base = storage_tensors[{t.storage->key, static_cast<int>(t.dtype)}];
    if (!base.defined()) {
      absl::string_view bytes = ck.storage_bytes.at(t.storage->key);
      const size_t elem = c10::elementSize(t.dtype);
      const int64_t n = static_cast<int64_t>(bytes.size() / elem);
      if (n > 0 && reinterpret_cast<uintptr_t>(bytes.data()) % elem == 0) {
        base = at::from_blob(const_cast<char*>(bytes.data()), {n}, [keep](void*) {}, options);
      } else {
        base = at::empty({n}, options);
        if (n > 0) std::memcpy(base.data_ptr(), bytes.data(), n * elem);
      }
    }
    out[nt.name] = base.as_strided(t.sizes, t.strides, t.offset);
  }
  return out;
}

absl::StatusOr<PickleCheckpoint> OpenPickle(const std::string& path, std::shared_ptr<MappedFile> file) {
  if (file->size() >= 4 && std::memcmp(file->data(), "PK", 2) == 0) return OpenTorchZip(path, file);
  return OpenTorchLegacy(path, file);
}

// ---- sharded index ----

struct ShardedIndex {
  std::string path;
  std::vector<std::pair<std::string, std::string>> weight_map;  // tensor -> shard path, in file order
  std::map<std::string, std::string> metadata;
};

absl::StatusOr<ShardedIndex> ParseIndex(const std::string& path) {
  WFM_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Bad(path, "is not valid JSON");
  if (!j.contains("weight_map") || !j["weight_map"].is_object()) {
    return Bad(path, "JSON without a \"weight_map\" object: not a sharded checkpoint index");
  }
  ShardedIndex idx;
  idx.path = path;
  const fs::path dir = fs::path(path).parent_path();
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    if (!it.value().is_string()) return Bad(path, absl::StrCat("weight_map entry '", it.key(), "' is not a file name"));
    const std::string shard = it.value().get<std::string>();
    if (shard.empty() || fs::path(shard).is_absolute() || shard.find("..") != std::string::npos) {
      return Bad(path, absl::StrCat("weight_map entry '", it.key(), "' names an invalid shard '", shard, "'"));
    }
    idx.weight_map.emplace_back(it.key(), (dir / shard).string());
  }
  if (j.contains("metadata") && j["metadata"].is_object()) {
    for (auto it = j["metadata"].begin(); it != j["metadata"].end(); ++it) {
      idx.metadata[it.key()] = it.value().is_string() ? it.value().get<std::string>() : it.value().dump();
    }
  }
  return idx;
}

absl::StatusOr<TensorFileFormat> DetectFileFormat(const std::string& path, const MappedFile& f) {
  if (f.size() == 0) return Bad(path, "the file is empty");
  const uint8_t* d = f.data();
  if (LooksLikeSafetensors(f)) return TensorFileFormat::kSafetensors;
  if (f.size() >= 4 && d[0] == 'P' && d[1] == 'K' && (d[2] == 3 || d[2] == 5) && (d[3] == 4 || d[3] == 6)) {
    return TensorFileFormat::kTorchZip;  // refined to kTorchScript by the caller when it has records
  }
  if (f.size() >= 2 && d[0] == 0x80 && d[1] <= 5) return TensorFileFormat::kTorchLegacy;
  if (LooksLikeJson(f)) return TensorFileFormat::kShardedIndex;
  if (f.size() >= 8) {
    uint64_t n = 0;
    std::memcpy(&n, d, 8);
    if (n > f.size() - 8) {
      return Bad(path, absl::StrCat("unrecognised format (first bytes ", HexPrefix(d, f.size()),
                                    "); as safetensors its header length ", n, " would run past the end of the ",
                                    f.size(), "-byte file: truncated?"));
    }
  }
  return Bad(path, absl::StrCat("unrecognised format (first bytes ", HexPrefix(d, f.size()),
                                "): expected safetensors, a torch.save / torch.jit.save file or an *.index.json"));
}

TensorInfo InfoOf(const std::string& name, c10::ScalarType dtype, std::vector<int64_t> shape, const std::string& file) {
  TensorInfo i;
  i.name = name;
  i.dtype = dtype;
  i.shape = std::move(shape);
  i.file = file;
  return i;
}

absl::StatusOr<TensorFileIndex> ListResolved(const std::string& path, bool allow_index);

absl::StatusOr<TensorMap> ReadResolved(const std::string& path, const std::function<bool(const std::string&)>& want,
                                       bool allow_index);

}  // namespace

const char* TensorFileFormatName(TensorFileFormat format) {
  switch (format) {
    case TensorFileFormat::kSafetensors: return "safetensors";
    case TensorFileFormat::kTorchZip: return "torch";
    case TensorFileFormat::kTorchLegacy: return "torch-legacy";
    case TensorFileFormat::kTorchScript: return "torchscript";
    case TensorFileFormat::kShardedIndex: return "sharded-index";
  }
  return "?";
}

std::string DtypeShortName(c10::ScalarType dtype) {
  auto n = SafetensorsDtypeName(dtype);
  if (n.ok()) return *n;
  if (dtype == c10::kComplexFloat) return "C64";
  if (dtype == c10::kComplexDouble) return "C128";
  return c10::toString(dtype);
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

uint64_t TensorInfo::nbytes() const { return static_cast<uint64_t>(numel()) * c10::elementSize(dtype); }

uint64_t TensorFileIndex::total_bytes() const {
  uint64_t n = 0;
  for (const auto& t : tensors) n += t.nbytes();
  return n;
}

int64_t TensorFileIndex::total_numel() const {
  int64_t n = 0;
  for (const auto& t : tensors) n += t.numel();
  return n;
}

const TensorInfo* TensorFileIndex::Find(absl::string_view name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

absl::StatusOr<std::string> ResolveCheckpointPath(const std::string& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return path;
  static const char* kPreferred[] = {
      "model.safetensors.index.json", "model.safetensors", "diffusion_pytorch_model.safetensors.index.json",
      "diffusion_pytorch_model.safetensors", "pytorch_model.bin.index.json", "pytorch_model.bin",
      "diffusion_pytorch_model.bin", "model.pt", "model.ckpt"};
  for (const char* name : kPreferred) {
    fs::path p = fs::path(path) / name;
    if (fs::is_regular_file(p, ec)) return p.string();
  }
  std::vector<std::string> candidates;
  for (const auto& e : fs::directory_iterator(path, ec)) {
    if (!e.is_regular_file()) continue;
    const std::string n = e.path().filename().string();
    if (absl::EndsWith(n, ".safetensors") || absl::EndsWith(n, ".pt") || absl::EndsWith(n, ".pth") ||
        absl::EndsWith(n, ".bin") || absl::EndsWith(n, ".jit") || absl::EndsWith(n, ".ckpt") ||
        absl::EndsWith(n, ".index.json")) {
      candidates.push_back(e.path().string());
    }
  }
  std::sort(candidates.begin(), candidates.end());
  if (candidates.size() == 1) return candidates[0];
  if (candidates.empty()) {
    return absl::NotFoundError(absl::StrCat("directory '", path, "' holds no checkpoint file"));
  }
  return absl::InvalidArgumentError(absl::StrCat("directory '", path, "' holds several checkpoint files (",
                                                 absl::StrJoin(candidates, ", "), "); name one"));
}

absl::StatusOr<TensorFileFormat> DetectTensorFileFormat(const std::string& path_in) {
  WFM_ASSIGN_OR_RETURN(std::string path, ResolveCheckpointPath(path_in));
  WFM_ASSIGN_OR_RETURN(auto file, MappedFile::Open(path));
  WFM_ASSIGN_OR_RETURN(TensorFileFormat format, DetectFileFormat(path, *file));
  if (format == TensorFileFormat::kTorchZip) {
    WFM_ASSIGN_OR_RETURN(PickleCheckpoint ck, OpenTorchZip(path, file));
    return ck.format;
  }
  return format;
}

namespace {

absl::StatusOr<TensorFileIndex> ListResolved(const std::string& path, bool allow_index) {
  WFM_ASSIGN_OR_RETURN(auto file, MappedFile::Open(path));
  WFM_ASSIGN_OR_RETURN(TensorFileFormat format, DetectFileFormat(path, *file));
  TensorFileIndex index;
  index.path = path;
  index.format = format;
  switch (format) {
    case TensorFileFormat::kSafetensors: {
      WFM_ASSIGN_OR_RETURN(auto st, SafetensorsFile::Open(path));
      for (const auto& e : st->entries()) index.tensors.push_back(InfoOf(e.name, e.dtype, e.shape, path));
      index.metadata = st->metadata();
      return index;
    }
    case TensorFileFormat::kTorchZip:
    case TensorFileFormat::kTorchLegacy:
    case TensorFileFormat::kTorchScript: {
      WFM_ASSIGN_OR_RETURN(PickleCheckpoint ck, OpenPickle(path, file));
      index.format = ck.format;
      for (const auto& nt : ck.tensors) index.tensors.push_back(InfoOf(nt.name, nt.tensor->dtype, nt.tensor->sizes, path));
      index.skipped_entries = ck.skipped;
      index.skipped_examples = ck.skipped_examples;
      return index;
    }
    case TensorFileFormat::kShardedIndex: {
      if (!allow_index) return Bad(path, "a sharded index cannot name another index as a shard");
      WFM_ASSIGN_OR_RETURN(ShardedIndex idx, ParseIndex(path));
      index.metadata = idx.metadata;
      std::map<std::string, TensorFileIndex> shards;
      for (const auto& [name, shard] : idx.weight_map) {
        auto it = shards.find(shard);
        if (it == shards.end()) {
          WFM_ASSIGN_OR_RETURN(TensorFileIndex si, ListResolved(shard, false), "shard of index '", path, "'");
          it = shards.emplace(shard, std::move(si)).first;
        }
        const TensorInfo* info = it->second.Find(name);
        if (!info) {
          return Bad(path, absl::StrCat("weight_map puts tensor '", name, "' in shard '", shard, "', which lacks it"));
        }
        index.tensors.push_back(*info);
      }
      return index;
    }
  }
  return Bad(path, "unknown format");
}

absl::StatusOr<TensorMap> ReadResolved(const std::string& path, const std::function<bool(const std::string&)>& want,
                                       bool allow_index) {
  WFM_ASSIGN_OR_RETURN(auto file, MappedFile::Open(path));
  WFM_ASSIGN_OR_RETURN(TensorFileFormat format, DetectFileFormat(path, *file));
  switch (format) {
    case TensorFileFormat::kSafetensors: {
      WFM_ASSIGN_OR_RETURN(auto st, SafetensorsFile::Open(path));
      TensorMap out;
      for (const auto& e : st->entries()) {
        if (want && !want(e.name)) continue;
        WFM_ASSIGN_OR_RETURN(out[e.name], st->Get(e.name));
      }
      return out;
    }
    case TensorFileFormat::kTorchZip:
    case TensorFileFormat::kTorchLegacy:
    case TensorFileFormat::kTorchScript: {
      WFM_ASSIGN_OR_RETURN(PickleCheckpoint ck, OpenPickle(path, file));
      return CatchToStatus(absl::StrCat("reading checkpoint '", path, "'"),
                           [&]() -> absl::StatusOr<TensorMap> { return MaterializePickle(ck, want); });
    }
    case TensorFileFormat::kShardedIndex: {
      if (!allow_index) return Bad(path, "a sharded index cannot name another index as a shard");
      WFM_ASSIGN_OR_RETURN(ShardedIndex idx, ParseIndex(path));
      std::map<std::string, std::set<std::string>> by_shard;
      for (const auto& [name, shard] : idx.weight_map) {
        if (!want || want(name)) by_shard[shard].insert(name);
      }
      TensorMap out;
      for (const auto& [shard, names] : by_shard) {
        WFM_ASSIGN_OR_RETURN(
            TensorMap part, ReadResolved(shard, [&](const std::string& n) { return names.count(n) > 0; }, false),
            "shard of index '", path, "'");
        for (const auto& n : names) {
          auto it = part.find(n);
          if (it == part.end()) {
            return Bad(path, absl::StrCat("weight_map puts tensor '", n, "' in shard '", shard, "', which lacks it"));
          }
          out[n] = std::move(it->second);
        }
      }
      return out;
    }
  }
  return Bad(path, "unknown format");
}

}  // namespace

absl::StatusOr<TensorFileIndex> ListTensorFile(const std::string& path_in) {
  WFM_ASSIGN_OR_RETURN(std::string path, ResolveCheckpointPath(path_in));
  return ListResolved(path, true);
}

absl::StatusOr<TensorMap> ReadTensorFile(const std::string& path) { return ReadTensorFile(path, nullptr); }

absl::StatusOr<TensorMap> ReadTensorFile(const std::string& path_in, const std::function<bool(const std::string&)>& want) {
  WFM_ASSIGN_OR_RETURN(std::string path, ResolveCheckpointPath(path_in));
  return ReadResolved(path, want, true);
}

}  // namespace wfm
