// One entry point for every published checkpoint format: the format is detected from the file's bytes, not
// its name.
//   - safetensors (.safetensors)
//   - PyTorch zip checkpoints written by torch.save (model.pt, pytorch_model.bin, *.ckpt): a state dict or any
//     nesting of dicts / lists / tuples / objects around tensors (Cosmos `model.pt` with `network.` keys and
//     `ema.` buffers, optimizer-wrapped training checkpoints, `mean_std.pt` tuples)
//   - legacy (pre-1.6, non-zip) torch.save files
//   - TorchScript archives (torch.jit.save / trace / script: encoder.jit, decoder.jit, autoencoder.jit): the
//     module's parameters AND buffers under their dotted names (what named_parameters() + named_buffers()
//     give), read from the archive without compiling its code, so files of any torch version work
//   - Hugging Face sharded checkpoints: `*.index.json` with a `weight_map` over safetensors or .bin shards
//   - a directory holding one of the above (model.safetensors[.index.json], pytorch_model.bin[.index.json], ...)
//
// Nested containers are flattened with dots ({"a": {"b": t}} -> "a.b", lists/tuples by index: "0", "1").
// Non-tensor leaves (step counters, config strings, numpy scalars, ...) are skipped and counted.
// Tensors are CPU views into a read-only-shared, copy-on-write memory mapping where the data is aligned
// (zero-copy; the mapping lives as long as any tensor), else copies. Tensors that shared a storage in the file
// still share memory.
//
// Malformed input — empty, truncated, random bytes, out-of-range offsets or strides, unsupported dtypes — is
// an error naming the file and the problem, never a crash.
//
//   WFM_ASSIGN_OR_RETURN(TensorFileIndex index, ListTensorFile("model.pt"));   // names/dtypes/shapes only
//   WFM_ASSIGN_OR_RETURN(TensorMap tensors, ReadTensorFile("model.pt"));
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <c10/core/ScalarType.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "wfm/core/tensor_map.h"

namespace wfm {

enum class TensorFileFormat {
  kSafetensors,
  kTorchZip,      // torch.save (>= 1.6)
  kTorchLegacy,   // torch.save with _use_new_zipfile_serialization=False / torch < 1.6
  kTorchScript,   // torch.jit.save
  kShardedIndex,  // *.index.json + shards
};

// "safetensors", "torch", "torch-legacy", "torchscript", "sharded-index".
const char* TensorFileFormatName(TensorFileFormat format);

// Detects the format from the first bytes (and, for zips, the archive's record names). A directory resolves
// to the checkpoint file inside it (see ResolveCheckpointPath).
absl::StatusOr<TensorFileFormat> DetectTensorFileFormat(const std::string& path);

// For a directory: its checkpoint file, by preference model.safetensors.index.json, model.safetensors,
// diffusion_pytorch_model.safetensors[.index.json], pytorch_model.bin[.index.json], model.pt, or the only
// *.safetensors / *.pt / *.jit / *.index.json in it. For a file: the path itself.
absl::StatusOr<std::string> ResolveCheckpointPath(const std::string& path);

struct TensorInfo {
  std::string name;
  c10::ScalarType dtype = c10::ScalarType::Float;
  std::vector<int64_t> shape;
  std::string file;  // the file holding the data (the shard for a sharded index, else the path)

  int64_t numel() const;
  uint64_t nbytes() const;
};

struct TensorFileIndex {
  std::string path;
  TensorFileFormat format = TensorFileFormat::kSafetensors;
  std::vector<TensorInfo> tensors;                  // in file order (safetensors: data order; pickles: walk order)
  std::map<std::string, std::string> metadata;      // safetensors __metadata__ / index "metadata" (stringified)
  int64_t skipped_entries = 0;                      // non-tensor leaves of a pickled object
  std::vector<std::string> skipped_examples;        // a few of their names

  uint64_t total_bytes() const;
  int64_t total_numel() const;
  const TensorInfo* Find(absl::string_view name) const;
};

// Names, dtypes and shapes (no tensor data is read: safetensors headers, pickle programs, index json; the
// shards of an index are opened for their headers).
absl::StatusOr<TensorFileIndex> ListTensorFile(const std::string& path);

// Every tensor of the file.
absl::StatusOr<TensorMap> ReadTensorFile(const std::string& path);

// Only the tensors for which `want(name)` is true (shards with none of them are not opened).
absl::StatusOr<TensorMap> ReadTensorFile(const std::string& path, const std::function<bool(const std::string&)>& want);

// "F32", "BF16", ... (the safetensors spelling; also used for dtypes safetensors lacks: "C64", "C128").
std::string DtypeShortName(c10::ScalarType dtype);

}  // namespace wfm
