// safetensors reader (mmap + validation + zero-copy views) and atomic writer. Follows the format of
// huggingface/safetensors (safetensors/src/tensor.rs): header length u64 LE, JSON header, data buffer.
#include "wfm/core/safetensors.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "wfm/core/file_util.h"
#include "wfm/core/status.h"

namespace wfm {
namespace {

struct DtypeName {
  const char* name;
  at::ScalarType type;
};
constexpr DtypeName kDtypes[] = {
    {"BOOL", at::kBool}, {"U8", at::kByte},      {"I8", at::kChar},   {"I16", at::kShort}, {"I32", at::kInt},
    {"I64", at::kLong},  {"F16", at::kHalf},     {"BF16", at::kBFloat16}, {"F32", at::kFloat}, {"F64", at::kDouble},
};

absl::Status Corrupt(const std::string& path, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat("safetensors file '", path, "': ", problem));
}

std::string ShapeString(const std::vector<int64_t>& shape) { return absl::StrCat("[", absl::StrJoin(shape, ", "), "]"); }

}  // namespace

absl::StatusOr<at::ScalarType> SafetensorsDtypeFromString(absl::string_view name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return d.type;
  return absl::InvalidArgumentError(absl::StrCat("unknown safetensors dtype '", name, "'"));
}

absl::StatusOr<std::string> SafetensorsDtypeName(at::ScalarType dtype) {
  for (const auto& d : kDtypes)
    if (dtype == d.type) return std::string(d.name);
  return absl::UnimplementedError(absl::StrCat("dtype ", c10::toString(dtype), " cannot be stored in safetensors"));
}

absl::StatusOr<std::shared_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  WFM_ASSIGN_OR_RETURN(std::shared_ptr<MappedFile> file, MappedFile::Open(path));
  return Parse(path, file, file->data(), file->size());
}

absl::StatusOr<std::shared_ptr<SafetensorsFile>> SafetensorsFile::FromBytes(std::string bytes, const std::string& name) {
  auto owned = std::make_shared<const std::string>(std::move(bytes));
  return Parse(name, owned, reinterpret_cast<const uint8_t*>(owned->data()), owned->size());
}

absl::StatusOr<std::shared_ptr<SafetensorsFile>> SafetensorsFile::Parse(const std::string& path,
                                                                        std::shared_ptr<const void> owner,
                                                                        const uint8_t* data, size_t size) {
  if (size < 8) {
    return Corrupt(path, absl::StrCat("file is ", size, " bytes, too short for the 8-byte header length"));
  }
  uint64_t header_len = 0;
  std::memcpy(&header_len, data, 8);  // little-endian hosts only (x86_64, aarch64)
  if (header_len > kSafetensorsMaxHeaderBytes) {
    return Corrupt(path, absl::StrCat("header length ", header_len, " exceeds the ", kSafetensorsMaxHeaderBytes,
                                      "-byte limit (not a safetensors file?)"));
  }
  if (header_len > size - 8) {
    return Corrupt(path, absl::StrCat("header length ", header_len, " runs past the end of the file (", size,
                                      " bytes): truncated?"));
  }
  const char* hbeg = reinterpret_cast<const char*>(data + 8);
  nlohmann::json header = nlohmann::json::parse(hbeg, hbeg + header_len, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) {
    return Corrupt(path, "header is not a valid JSON object");
  }

  std::shared_ptr<SafetensorsFile> st(new SafetensorsFile());
  st->path_ = path;
  st->owner_ = std::move(owner);
  st->data_ = data + 8 + header_len;
  st->data_size_ = size - 8 - header_len;

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) return Corrupt(path, "__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) return Corrupt(path, absl::StrCat("__metadata__ value '", m.key(), "' is not a string"));
        st->metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets") ||
        !v["dtype"].is_string() || !v["shape"].is_array() || !v["data_offsets"].is_array() ||
        v["data_offsets"].size() != 2) {
      return Corrupt(path, absl::StrCat("tensor '", name, "' needs dtype (string), shape (array) and data_offsets [begin, end]"));
    }
    SafetensorsEntry e;
    e.name = name;
    e.dtype_name = v["dtype"].get<std::string>();
    auto dtype = SafetensorsDtypeFromString(e.dtype_name);
    if (!dtype.ok()) return Corrupt(path, absl::StrCat("tensor '", name, "': ", dtype.status().message()));
    e.dtype = *dtype;
    // numel with overflow checks: shapes come from untrusted input.
    unsigned __int128 numel = 1;
    for (const auto& d : v["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) {
        return Corrupt(path, absl::StrCat("tensor '", name, "' has an invalid shape entry ", d.dump()));
      }
      e.shape.push_back(d.get<int64_t>());
      numel *= static_cast<uint64_t>(e.shape.back());
      if (numel > std::numeric_limits<uint64_t>::max() / 16) {
        return Corrupt(path, absl::StrCat("tensor '", name, "' shape ", v["shape"].dump(), " is too large"));
      }
    }
    for (const auto& o : v["data_offsets"]) {
      if (!o.is_number_unsigned() && !(o.is_number_integer() && o.get<int64_t>() >= 0)) {
        return Corrupt(path, absl::StrCat("tensor '", name, "' has invalid data_offsets ", v["data_offsets"].dump()));
      }
    }
    e.begin = v["data_offsets"][0].get<uint64_t>();
    e.end = v["data_offsets"][1].get<uint64_t>();
    if (e.begin > e.end) {
      return Corrupt(path, absl::StrCat("tensor '", name, "' data_offsets [", e.begin, ", ", e.end, "] end before they begin"));
    }
    if (e.end > st->data_size_) {
      return Corrupt(path, absl::StrCat("tensor '", name, "' data_offsets [", e.begin, ", ", e.end,
                                        "] run past the data section (", st->data_size_, " bytes): truncated?"));
    }
    const uint64_t expected = static_cast<uint64_t>(numel) * c10::elementSize(e.dtype);
    if (e.end - e.begin != expected) {
      return Corrupt(path, absl::StrCat("tensor '", name, "' ", e.dtype_name, " ", ShapeString(e.shape), " needs ",
                                        expected, " bytes but data_offsets span ", e.end - e.begin));
    }
    st->entries_.push_back(std::move(e));
  }
  std::sort(st->entries_.begin(), st->entries_.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  for (size_t i = 0; i < st->entries_.size(); ++i) {
    if (i > 0 && st->entries_[i].begin < st->entries_[i - 1].end) {
      return Corrupt(path, absl::StrCat("tensors '", st->entries_[i - 1].name, "' and '", st->entries_[i].name,
                                        "' overlap in the data section"));
    }
    st->index_[st->entries_[i].name] = i;
  }
  return st;
}

const SafetensorsEntry* SafetensorsFile::Find(absl::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

at::Tensor SafetensorsFile::MakeTensor(const SafetensorsEntry& e, bool force_copy) const {
  auto options = at::TensorOptions().dtype(e.dtype).device(at::kCPU);
  const uint8_t* ptr = data_ + e.begin;
  const size_t elem = c10::elementSize(e.dtype);
  if (!force_copy && reinterpret_cast<uintptr_t>(ptr) % elem == 0 && e.end > e.begin) {
    std::shared_ptr<const void> keep = owner_;
    return at::from_blob(const_cast<uint8_t*>(ptr), e.shape, [keep](void*) {}, options);
  }
  at::Tensor t = at::empty(e.shape, options);
  if (e.end > e.begin) std::memcpy(t.data_ptr(), ptr, e.end - e.begin);
  return t;
}

absl::StatusOr<at::Tensor> SafetensorsFile::Get(absl::string_view name) const {
  const SafetensorsEntry* e = Find(name);
  if (!e) return absl::NotFoundError(absl::StrCat("safetensors file '", path_, "' has no tensor '", name, "'"));
  return MakeTensor(*e, /*force_copy=*/false);
}

absl::StatusOr<at::Tensor> SafetensorsFile::GetCopy(absl::string_view name) const {
  const SafetensorsEntry* e = Find(name);
  if (!e) return absl::NotFoundError(absl::StrCat("safetensors file '", path_, "' has no tensor '", name, "'"));
  return MakeTensor(*e, /*force_copy=*/true);
}

absl::StatusOr<TensorMap> SafetensorsFile::GetAll() const {
  TensorMap out;
  for (const auto& e : entries_) out[e.name] = MakeTensor(e, /*force_copy=*/false);
  return out;
}

absl::StatusOr<TensorMap> ReadSafetensors(const std::string& path) {
  WFM_ASSIGN_OR_RETURN(auto st, SafetensorsFile::Open(path));
  return st->GetAll();
}

absl::StatusOr<TensorMap> ReadSafetensorsFromBytes(std::string bytes, const std::string& name) {
  WFM_ASSIGN_OR_RETURN(auto st, SafetensorsFile::FromBytes(std::move(bytes), name));
  return st->GetAll();
}

absl::Status WriteSafetensors(const std::string& path, const TensorMap& tensors,
                              const std::map<std::string, std::string>& metadata) {
  struct Item {
    const std::string* name;
    at::Tensor t;
    std::string dtype;
    size_t elem;
  };
  std::vector<Item> items;
  items.reserve(tensors.size());
  for (const auto& [name, tensor] : tensors) {
    if (name == "__metadata__") return absl::InvalidArgumentError(absl::StrCat("'", path, "': '__metadata__' is reserved"));
    if (!tensor.defined()) return absl::InvalidArgumentError(absl::StrCat("'", path, "': tensor '", name, "' is undefined"));
    auto dtype = SafetensorsDtypeName(tensor.scalar_type());
    if (!dtype.ok()) return Annotate(dtype.status(), absl::StrCat("writing '", path, "', tensor '", name, "'"));
    at::Tensor t = tensor.detach();
    if (!t.device().is_cpu()) t = t.cpu();
    t = t.contiguous();
    items.push_back({&name, t, *dtype, c10::elementSize(t.scalar_type())});
  }
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    return a.elem != b.elem ? a.elem > b.elem : *a.name < *b.name;
  });
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = m;
  }
  uint64_t offset = 0;
  for (const auto& it : items) {
    uint64_t nbytes = static_cast<uint64_t>(it.t.numel()) * it.elem;
    header[*it.name] = {{"dtype", it.dtype}, {"shape", it.t.sizes().vec()}, {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string h = header.dump();
  // Pad with spaces so the data section starts 8-byte aligned (as the reference writer does).
  while ((8 + h.size()) % 8 != 0) h.push_back(' ');
  uint64_t hlen = h.size();

  AtomicFileWriter w;
  WFM_RETURN_IF_ERROR(w.Open(path));
  WFM_RETURN_IF_ERROR(w.Write(&hlen, 8));
  WFM_RETURN_IF_ERROR(w.Write(h));
  for (const auto& it : items) {
    WFM_RETURN_IF_ERROR(w.Write(it.t.data_ptr(), static_cast<size_t>(it.t.numel()) * it.elem));
  }
  return w.Commit();
}

}  // namespace wfm
