// Internal to wfm_core: the pieces that read PyTorch's own checkpoint files without Python or TorchScript —
// a bounds-checked zip reader over a memory-mapped file, a pickle virtual machine that understands the subset
// torch.save / torch.jit.save emit (and tolerates any other object as an opaque value), and the flattening of
// the unpickled object graph into dotted tensor names. Used by tensor_file.cc; not a public header.
//
// Why our own reader instead of torch::pickle_load / torch::jit::load: it lists names, dtypes and shapes
// without touching tensor data, returns zero-copy views into the mapping, survives unknown classes (numpy
// scalars, optimizer state, config objects), reads TorchScript archives of any torch version without
// compiling their code, and turns every malformed byte into a Status instead of an exception or a crash.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <c10/core/ScalarType.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace wfm {
class MappedFile;
}

namespace wfm::torch_pickle {

// ---- zip (stored records only, zip64 aware) ----
struct ZipRecord {
  std::string name;
  uint64_t data_offset = 0;  // absolute offset of the record's bytes in the file
  uint64_t size = 0;         // uncompressed size
  uint16_t method = 0;       // 0 = stored
};

class ZipArchive {
 public:
  // Parses the central directory of a mapped zip file. Every offset is checked against the file size.
  static absl::StatusOr<ZipArchive> Open(std::shared_ptr<MappedFile> file);
  const std::vector<ZipRecord>& records() const { return records_; }
  const ZipRecord* Find(absl::string_view name) const;
  // The bytes of a stored record (FailedPrecondition for a compressed one).
  absl::StatusOr<absl::string_view> Read(const ZipRecord& record) const;
  const std::string& path() const;

 private:
  std::shared_ptr<MappedFile> file_;
  std::vector<ZipRecord> records_;
  std::map<std::string, size_t, std::less<>> index_;
};

// ---- the unpickled object graph ----
struct StorageRef {
  std::string key;             // record key: "0", "1", ... ("data/<key>" in a zip, position in a legacy file)
  c10::ScalarType dtype;       // element type of the storage (kByte for an UntypedStorage)
  int64_t numel = 0;           // elements, as recorded in the pickle
  std::string location;        // "cpu", "cuda:0", ... (informative: everything is read to the CPU)
};

struct TensorRef {
  std::shared_ptr<StorageRef> storage;
  c10::ScalarType dtype;       // tensor dtype (differs from the storage's only for untyped storages)
  int64_t offset = 0;          // in tensor elements
  std::vector<int64_t> sizes, strides;
};

struct PyObj;
using PyRef = std::shared_ptr<PyObj>;

struct PyObj {
  enum class Type { kNone, kBool, kInt, kBigInt, kFloat, kStr, kBytes, kTuple, kList, kDict, kGlobal, kObject,
                    kTensor, kStorage };
  Type type = Type::kNone;
  bool b = false;
  int64_t i = 0;
  double f = 0.0;
  std::string s;                                   // str, bytes, big-int (little-endian two's complement)
  std::string module, name;                        // global
  std::vector<PyRef> items;                        // tuple, list (and sets)
  std::vector<std::pair<PyRef, PyRef>> dict;       // dict, in insertion order
  PyRef callable, args, state;                     // object: callable(*args), then __setstate__(state)
  std::shared_ptr<TensorRef> tensor;
  std::shared_ptr<StorageRef> storage;
};

using StorageMap = std::map<std::string, std::shared_ptr<StorageRef>>;

// Runs one pickle program from `data` (stops at STOP). `what` names the source in errors. When `consumed` is
// given, it receives the number of bytes used (legacy files hold several pickles back to back); `storages`
// receives every storage the program referenced, by key.
absl::StatusOr<PyRef> Unpickle(absl::string_view data, const std::string& what, size_t* consumed = nullptr,
                               StorageMap* storages = nullptr);

// One tensor found in the object graph under a dotted name.
struct NamedTensor {
  std::string name;
  std::shared_ptr<TensorRef> tensor;
};

// Walks dicts (string / int keys), lists and tuples (indices), objects' state (attributes; nn.Module pickles
// contribute their _parameters/_buffers/_modules under state-dict names) and collects every tensor as
// "a.b.0.c". Non-tensor leaves are counted in *skipped (a few example names are kept in *skipped_examples).
void FlattenTensors(const PyRef& root, std::vector<NamedTensor>* out, int64_t* skipped,
                    std::vector<std::string>* skipped_examples);

// dtype of a torch storage class name ("FloatStorage", "BFloat16Storage", ...) or of a dtype global
// ("float32", "bfloat16", ...).
absl::StatusOr<c10::ScalarType> StorageClassDtype(absl::string_view name);

}  // namespace wfm::torch_pickle
