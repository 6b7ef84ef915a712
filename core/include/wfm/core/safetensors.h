// safetensors reading (mmap, zero-copy tensor views where the data is aligned) and atomic writing.
//
// Format: 8-byte little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets:[b,e]},
// "__metadata__": {str: str}}, then the raw little-endian data; offsets are relative to the data start.
// Every malformed file (truncated, header past EOF, bad JSON, unknown dtype, shape/byte-count mismatch,
// out-of-range or overlapping offsets, oversized header) is an InvalidArgument/DataLoss error naming the file.
//
//   WFM_ASSIGN_OR_RETURN(auto st, SafetensorsFile::Open("model.safetensors"));
//   WFM_ASSIGN_OR_RETURN(at::Tensor w, st->Get("encoder.conv_in.weight"));
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "wfm/core/tensor_map.h"

namespace wfm {

class MappedFile;

// Largest accepted JSON header (the Python implementation uses 100 MB as well).
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100ull * 1024 * 1024;

struct SafetensorsEntry {
  std::string name;
  std::string dtype_name;       // as in the file: "F32", "BF16", ...
  at::ScalarType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets relative to the data section
};

// Maps a safetensors dtype string to a torch dtype. Supported: BOOL U8 I8 I16 I32 I64 F16 BF16 F32 F64.
absl::StatusOr<at::ScalarType> SafetensorsDtypeFromString(absl::string_view name);
// The safetensors dtype string of a torch dtype (Unimplemented for dtypes safetensors cannot hold here).
absl::StatusOr<std::string> SafetensorsDtypeName(at::ScalarType dtype);

class SafetensorsFile {
 public:
  // Memory-maps and validates the file. The returned object (and every zero-copy tensor it hands out) keeps
  // the mapping alive.
  static absl::StatusOr<std::shared_ptr<SafetensorsFile>> Open(const std::string& path);
  // The same for a safetensors image held in memory (e.g. a member of a webdataset tar), with the same
  // validation and errors; `name` stands for the file in messages. The returned object owns `bytes` (and every
  // zero-copy tensor keeps them alive).
  static absl::StatusOr<std::shared_ptr<SafetensorsFile>> FromBytes(std::string bytes,
                                                                    const std::string& name = "<memory>");

  const std::string& path() const { return path_; }
  // Entries in data-offset order.
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const SafetensorsEntry* Find(absl::string_view name) const;
  bool Contains(absl::string_view name) const { return Find(name) != nullptr; }
  // Size in bytes of the data section.
  uint64_t data_size() const { return data_size_; }

  // A CPU tensor for `name`. Zero-copy (a view into the mapping, copy-on-write) when the data is aligned to the
  // element size; otherwise a copy. NotFound if absent.
  absl::StatusOr<at::Tensor> Get(absl::string_view name) const;
  // Always a fresh, owning copy.
  absl::StatusOr<at::Tensor> GetCopy(absl::string_view name) const;
  // Every tensor (zero-copy where possible).
  absl::StatusOr<TensorMap> GetAll() const;

 private:
  SafetensorsFile() = default;
  // Validates `size` bytes at `data`, which `owner` keeps alive.
  static absl::StatusOr<std::shared_ptr<SafetensorsFile>> Parse(const std::string& path,
                                                                std::shared_ptr<const void> owner,
                                                                const uint8_t* data, size_t size);
  at::Tensor MakeTensor(const SafetensorsEntry& e, bool force_copy) const;

  std::string path_;
  std::shared_ptr<const void> owner_;  // the mapping or the in-memory bytes
  const uint8_t* data_ = nullptr;  // start of the data section
  uint64_t data_size_ = 0;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, size_t, std::less<>> index_;
  std::map<std::string, std::string> metadata_;
};

// Reads every tensor of a safetensors file (zero-copy where aligned).
absl::StatusOr<TensorMap> ReadSafetensors(const std::string& path);
// Reads every tensor of a safetensors image held in memory (SafetensorsFile::FromBytes; `name` for messages).
absl::StatusOr<TensorMap> ReadSafetensorsFromBytes(std::string bytes, const std::string& name = "<memory>");

// Writes tensors (any device/layout; made contiguous CPU copies as needed) atomically: temp file + rename.
// Tensors are laid out largest element size first, then by name, so every tensor is naturally aligned.
absl::Status WriteSafetensors(const std::string& path, const TensorMap& tensors,
                              const std::map<std::string, std::string>& metadata = {});

}  // namespace wfm
