// PyTorch checkpoint internals (see torch_pickle.h): zip central directory, pickle VM, tensor flattening.
// Opcode semantics follow CPython's Lib/pickle.py (_Unpickler.load_*); the persistent ids and rebuild
// functions follow torch/serialization.py (_load, _legacy_load) and torch/_utils.py (_rebuild_tensor_v2).
#include "torch_pickle.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <set>
#include <unordered_map>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "wfm/core/file_util.h"

namespace wfm::torch_pickle {
namespace {

uint16_t Le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t Le32(const uint8_t* p) { return Le16(p) | (static_cast<uint32_t>(Le16(p + 2)) << 16); }
uint64_t Le64(const uint8_t* p) { return Le32(p) | (static_cast<uint64_t>(Le32(p + 4)) << 32); }

}  // namespace

// =====================================================================================================
// zip
// =====================================================================================================

const std::string& ZipArchive::path() const { return file_->path(); }

absl::StatusOr<ZipArchive> ZipArchive::Open(std::shared_ptr<MappedFile> file) {
  const uint8_t* d = file->data();
  const uint64_t n = file->size();
  auto bad = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("zip archive '", file->path(), "': ", what));
  };
  // End of central directory: 22 bytes + up to 65535 bytes of comment, searched from the end.
  if (n < 22) return bad(absl::StrCat("only ", n, " bytes: truncated?"));
  int64_t eocd = -1;
  const uint64_t lowest = n >= 22 + 65535 ? n - 22 - 65535 : 0;
  for (uint64_t p = n - 22 + 1; p-- > lowest;) {
    if (Le32(d + p) == 0x06054b50u) {
      eocd = static_cast<int64_t>(p);
      break;
    }
  }
  if (eocd < 0) return bad("end-of-central-directory record not found: truncated or not a zip file");
  uint64_t entries = Le16(d + eocd + 10);
  uint64_t cd_size = Le32(d + eocd + 12);
  uint64_t cd_offset = Le32(d + eocd + 16);
  if (entries == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_offset == 0xFFFFFFFFu) {
    // zip64: the locator sits right before the classic record.
    if (eocd < 20 || Le32(d + eocd - 20) != 0x07064b50u) return bad("zip64 locator missing");
    uint64_t z64 = Le64(d + eocd - 20 + 8);
    if (z64 > n || n - z64 < 56 || Le32(d + z64) != 0x06064b50u) return bad("zip64 end-of-central-directory is invalid");
    entries = Le64(d + z64 + 32);
    cd_size = Le64(d + z64 + 40);
    cd_offset = Le64(d + z64 + 48);
  }
  if (cd_offset > n || cd_size > n - cd_offset) {
    return bad(absl::StrCat("central directory [", cd_offset, ", +", cd_size, ") lies outside the ", n,
                            "-byte file: truncated?"));
  }
  if (entries > cd_size / 46) return bad(absl::StrCat("central directory cannot hold ", entries, " entries"));

  ZipArchive zip;
  zip.file_ = file;
  zip.records_.reserve(entries);
  uint64_t p = cd_offset;
  const uint64_t cd_end = cd_offset + cd_size;
  for (uint64_t e = 0; e < entries; ++e) {
    if (cd_end - p < 46 || Le32(d + p) != 0x02014b50u) return bad(absl::StrCat("central directory entry ", e, " is corrupt"));
    ZipRecord r;
    r.method = Le16(d + p + 10);
    uint64_t csize = Le32(d + p + 20);
    uint64_t usize = Le32(d + p + 24);
    const uint64_t name_len = Le16(d + p + 28), extra_len = Le16(d + p + 30), comment_len = Le16(d + p + 32);
    uint64_t local = Le32(d + p + 42);
    if (cd_end - p - 46 < name_len + extra_len + comment_len) return bad(absl::StrCat("central directory entry ", e, " overruns"));
    r.name.assign(reinterpret_cast<const char*>(d + p + 46), name_len);
    // zip64 extra field: the 64-bit values present are those whose 32-bit fields are saturated, in order.
    const uint8_t* x = d + p + 46 + name_len;
    const uint8_t* xend = x + extra_len;
    while (xend - x >= 4) {
      const uint16_t id = Le16(x), len = Le16(x + 2);
      if (xend - x - 4 < len) break;
      if (id == 0x0001) {
        const uint8_t* f = x + 4;
        const uint8_t* fend = f + len;
        auto take = [&](uint64_t* v) {
          if (*v != 0xFFFFFFFFu) return true;
          if (fend - f < 8) return false;
          *v = Le64(f);
          f += 8;
          return true;
        };
        if (!take(&usize) || !take(&csize) || !take(&local)) return bad(absl::StrCat("record '", r.name, "' has a short zip64 field"));
      }
      x += 4 + len;
    }
    if (local > n || n - local < 30 || Le32(d + local) != 0x04034b50u) {
      return bad(absl::StrCat("record '", r.name, "': local header at ", local, " is missing or corrupt"));
    }
    const uint64_t data = local + 30 + Le16(d + local + 26) + Le16(d + local + 28);
    if (data > n || csize > n - data) {
      return bad(absl::StrCat("record '", r.name, "' (", csize, " bytes at ", data, ") runs past the end of the ", n,
                              "-byte file: truncated?"));
    }
    if (r.method == 0 && csize != usize) return bad(absl::StrCat("stored record '", r.name, "' has inconsistent sizes"));
    r.data_offset = data;
    r.size = r.method == 0 ? usize : csize;
    zip.index_[r.name] = zip.records_.size();
    zip.records_.push_back(std::move(r));
    p += 46 + name_len + extra_len + comment_len;
  }
  return zip;
}

const ZipRecord* ZipArchive::Find(absl::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &records_[it->second];
}

absl::StatusOr<absl::string_view> ZipArchive::Read(const ZipRecord& r) const {
  if (r.method != 0) {
    return absl::FailedPreconditionError(absl::StrCat("zip archive '", path(), "': record '", r.name,
                                                      "' is compressed (method ", r.method,
                                                      "); PyTorch writes tensors and pickles stored"));
  }
  return absl::string_view(reinterpret_cast<const char*>(file_->data()) + r.data_offset, r.size);
}

// =====================================================================================================
// dtypes
// =====================================================================================================

absl::StatusOr<c10::ScalarType> StorageClassDtype(absl::string_view name) {
  struct Entry {
    const char* storage;
    const char* dtype_a;
    const char* dtype_b;
    c10::ScalarType type;
  };
  static constexpr Entry kTable[] = {
      {"DoubleStorage", "float64", "double", c10::kDouble},
      {"FloatStorage", "float32", "float", c10::kFloat},
      {"HalfStorage", "float16", "half", c10::kHalf},
      {"BFloat16Storage", "bfloat16", "", c10::kBFloat16},
      {"LongStorage", "int64", "long", c10::kLong},
      {"IntStorage", "int32", "int", c10::kInt},
      {"ShortStorage", "int16", "short", c10::kShort},
      {"CharStorage", "int8", "", c10::kChar},
      {"ByteStorage", "uint8", "", c10::kByte},
      {"BoolStorage", "bool", "", c10::kBool},
      {"ComplexFloatStorage", "complex64", "cfloat", c10::kComplexFloat},
      {"ComplexDoubleStorage", "complex128", "cdouble", c10::kComplexDouble},
      {"UntypedStorage", "", "", c10::kByte},
  };
  for (const auto& e : kTable) {
    if (name == e.storage || name == e.dtype_a || (*e.dtype_b && name == e.dtype_b)) return e.type;
  }
  return absl::UnimplementedError(absl::StrCat("tensor storage type '", name, "' is not supported"));
}

// =====================================================================================================
// pickle VM
// =====================================================================================================

namespace {

constexpr size_t kMaxStack = 1u << 24;
constexpr size_t kMaxMemo = 1u << 24;

PyRef Make(PyObj::Type t) {
  auto o = std::make_shared<PyObj>();
  o->type = t;
  return o;
}

class Machine {
 public:
  Machine(absl::string_view data, const std::string& what) : data_(data), what_(what) {}

  absl::StatusOr<PyRef> Run(size_t* consumed);
  const StorageMap& storages() const { return storages_; }

 private:
  absl::Status Error(absl::string_view msg) const {
    return absl::InvalidArgumentError(absl::StrCat(what_, ": pickle ", msg, " (at byte ", op_pos_, ")"));
  }
  bool Need(size_t n) const { return data_.size() - pos_ >= n; }
  absl::StatusOr<absl::string_view> Take(size_t n) {
    if (!Need(n)) return Error(absl::StrCat("needs ", n, " more bytes but the data ends: truncated?"));
    absl::string_view v = data_.substr(pos_, n);
    pos_ += n;
    return v;
  }
  absl::StatusOr<uint64_t> TakeLe(size_t n) {
    auto s = Take(n);
    if (!s.ok()) return s.status();
    uint64_t v = 0;
    for (size_t k = 0; k < n; ++k) v |= static_cast<uint64_t>(static_cast<uint8_t>((*s)[k])) << (8 * k);
    return v;
  }
  absl::StatusOr<std::string> TakeLine() {
    size_t e = data_.find('\n', pos_);
    if (e == absl::string_view::npos) return Error("text argument is not terminated: truncated?");
    std::string s(data_.substr(pos_, e - pos_));
    pos_ = e + 1;
    return s;
  }
  // A memo index written as a decimal text line (PUT / GET of protocol 0).
  absl::StatusOr<uint64_t> TakeIndexLine(const char* opcode) {
    auto line = TakeLine();
    if (!line.ok()) return line.status();
    uint64_t idx;
    if (!absl::SimpleAtoi(*line, &idx)) return Error(absl::StrCat("has a malformed ", opcode));
    return idx;
  }
  absl::Status Push(PyRef v) {
    if (stack_.size() >= kMaxStack) return Error("stack overflow");
    stack_.push_back(std::move(v));
    return absl::OkStatus();
  }
  absl::StatusOr<PyRef> Pop() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) return Error("pops an empty stack");
    PyRef v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  absl::StatusOr<PyRef> Top() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) return Error("reads an empty stack");
    return stack_.back();
  }
  // Items since the last MARK (the mark is removed).
  absl::StatusOr<std::vector<PyRef>> PopMark() {
    if (marks_.empty()) return Error("has no MARK to pop to");
    size_t m = marks_.back();
    marks_.pop_back();
    std::vector<PyRef> items(std::make_move_iterator(stack_.begin() + m), std::make_move_iterator(stack_.end()));
    stack_.resize(m);
    return items;
  }
  absl::Status Memo(uint64_t index) {
    if (index > kMaxMemo) return Error(absl::StrCat("memo index ", index, " is too large"));
    auto top = Top();
    if (!top.ok()) return top.status();
    memo_[index] = *top;
    return absl::OkStatus();
  }
  absl::Status Get(uint64_t index) {
    auto it = memo_.find(index);
    if (it == memo_.end()) return Error(absl::StrCat("reads memo entry ", index, " that was never stored"));
    return Push(it->second);
  }
  absl::Status SetItems(const PyRef& target, std::vector<PyRef>& kv) {
    if (kv.size() % 2) return Error("SETITEMS has an odd number of items");
    for (size_t k = 0; k < kv.size(); k += 2) AddItem(target, kv[k], kv[k + 1]);
    return absl::OkStatus();
  }
  static void AddItem(const PyRef& target, PyRef key, PyRef value) {
    if (target->type == PyObj::Type::kDict) {
      target->dict.emplace_back(std::move(key), std::move(value));
    } else if (target->type == PyObj::Type::kObject) {
      // A dict subclass (e.g. a config object): keep the items as its state.
      if (!target->state) target->state = Make(PyObj::Type::kDict);
      if (target->state->type == PyObj::Type::kDict) target->state->dict.emplace_back(std::move(key), std::move(value));
    }
  }

  absl::StatusOr<PyRef> Call(const PyRef& callable, const PyRef& args);
  absl::StatusOr<PyRef> RebuildTensor(const PyRef& args, int version);
  absl::StatusOr<PyRef> PersistentLoad(const PyRef& pid);
  absl::StatusOr<PyRef> Build(const PyRef& obj, const PyRef& state);
  absl::StatusOr<PyRef> MakeGlobal(std::string module, std::string name);

  absl::string_view data_;
  const std::string& what_;
  size_t pos_ = 0, op_pos_ = 0;
  std::vector<PyRef> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, PyRef> memo_;
  StorageMap storages_;
};

absl::StatusOr<PyRef> Machine::MakeGlobal(std::string module, std::string name) {
  if (module.size() > 4096 || name.size() > 4096) return Error("global name is too long");
  PyRef g = Make(PyObj::Type::kGlobal);
  g->module = std::move(module);
  g->name = std::move(name);
  return g;
}

absl::StatusOr<PyRef> Machine::PersistentLoad(const PyRef& pid) {
  // ('storage', storage_type, key, location, numel[, view_metadata])  — torch/serialization.py persistent_id
  using T = PyObj::Type;
  if (pid->type != T::kTuple || pid->items.size() < 5 || pid->items[0]->type != T::kStr || pid->items[0]->s != "storage") {
    return Error("has a persistent id that is not a torch storage record");
  }
  const PyRef& type = pid->items[1];
  const PyRef& key = pid->items[2];
  const PyRef& loc = pid->items[3];
  const PyRef& numel = pid->items[4];
  if (type->type != T::kGlobal || (key->type != T::kStr && key->type != T::kInt) || numel->type != T::kInt ||
      numel->i < 0) {
    return Error("has a malformed storage record");
  }
  auto dtype = StorageClassDtype(type->name);
  if (!dtype.ok()) return Error(dtype.status().message());
  std::string k = key->type == T::kStr ? key->s : std::to_string(key->i);
  auto& st = storages_[k];
  if (!st) {
    st = std::make_shared<StorageRef>();
    st->key = k;
    st->dtype = *dtype;
    st->numel = numel->i;
    st->location = loc->type == T::kStr ? loc->s : "";
  } else if (st->dtype != *dtype) {
    return Error(absl::StrCat("storage '", k, "' is recorded with two different dtypes"));
  }
  PyRef out = Make(T::kStorage);
  out->storage = st;
  // Legacy (pre-1.6) files may reference a view of a root storage: (view_key, offset, view_size).
  if (pid->items.size() >= 6 && pid->items[5]->type == T::kTuple) {
    const auto& vm = pid->items[5]->items;
    if (vm.size() != 3 || vm[1]->type != T::kInt || vm[2]->type != T::kInt || vm[1]->i < 0 || vm[2]->i < 0 ||
        vm[1]->i > st->numel || vm[2]->i > st->numel - vm[1]->i) {
      return Error("has a malformed storage view record");
    }
    // Encode the view as a tensor over the root storage; RebuildTensor adds the offset.
    out->i = vm[1]->i;
  }
  return out;
}

absl::StatusOr<PyRef> Machine::RebuildTensor(const PyRef& args, int version) {
  // v1/v2: (storage, storage_offset, size, stride, [requires_grad, backward_hooks, [metadata]])
  // v3:    (storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, [metadata])
  using T = PyObj::Type;
  if (args->type != T::kTuple || args->items.size() < 4) return Error("has a tensor record with too few fields");
  const auto& a = args->items;
  if (a[0]->type != T::kStorage || a[1]->type != T::kInt || a[2]->type != T::kTuple || a[3]->type != T::kTuple) {
    return Error("has a malformed tensor record (storage, offset, size, stride)");
  }
  auto t = std::make_shared<TensorRef>();
  t->storage = a[0]->storage;
  t->dtype = t->storage->dtype;
  if (version == 3) {
    if (a.size() < 7 || a[6]->type != T::kGlobal) return Error("has a tensor record (v3) without a dtype");
    auto dt = StorageClassDtype(a[6]->name);
    if (!dt.ok()) return Error(dt.status().message());
    t->dtype = *dt;
  }
  const int64_t elem = static_cast<int64_t>(c10::elementSize(t->dtype));
  const int64_t storage_elem = static_cast<int64_t>(c10::elementSize(t->storage->dtype));
  int64_t view_offset = a[0]->i;  // legacy storage view offset, in storage elements
  if (a[1]->i < 0) return Error("has a negative storage offset");
  if (t->dtype != t->storage->dtype) {
    if ((view_offset * storage_elem) % elem) return Error("has a misaligned untyped storage view");
    view_offset = view_offset * storage_elem / elem;
  }
  t->offset = a[1]->i + view_offset;
  if (a[2]->items.size() != a[3]->items.size() || a[2]->items.size() > 64) return Error("has a tensor with bad rank");
  // Sizes, strides and the element count are bounded so later arithmetic cannot overflow.
  constexpr int64_t kLimit = int64_t{1} << 48;
  unsigned __int128 numel = 1;
  for (size_t d = 0; d < a[2]->items.size(); ++d) {
    const PyRef& s = a[2]->items[d];
    const PyRef& st = a[3]->items[d];
    if (s->type != T::kInt || st->type != T::kInt || s->i < 0 || st->i < 0 || s->i > kLimit || st->i > kLimit) {
      return Error("has a bad tensor size or stride");
    }
    t->sizes.push_back(s->i);
    t->strides.push_back(st->i);
    numel *= static_cast<uint64_t>(std::max<int64_t>(s->i, 1));  // zero dims excluded: no overflow in any order
    if (numel > static_cast<unsigned __int128>(kLimit)) numel = static_cast<unsigned __int128>(kLimit) + 1;
  }
  if (numel > static_cast<unsigned __int128>(kLimit) || t->offset > kLimit) return Error("has an impossibly large tensor");
  PyRef out = Make(T::kTensor);
  out->tensor = t;
  return out;
}

absl::StatusOr<PyRef> Machine::Call(const PyRef& callable, const PyRef& args) {
  using T = PyObj::Type;
  if (callable->type == T::kGlobal) {
    const std::string& m = callable->module;
    const std::string& n = callable->name;
    if (m == "torch._utils") {
      if (n == "_rebuild_tensor_v2" || n == "_rebuild_tensor") return RebuildTensor(args, 2);
      if (n == "_rebuild_tensor_v3") return RebuildTensor(args, 3);
      if (n == "_rebuild_parameter" || n == "_rebuild_parameter_with_state") {
        if (args->type == T::kTuple && !args->items.empty() && args->items[0]->type == T::kTensor) return args->items[0];
        return Error("has a malformed parameter record");
      }
    }
    if (m == "torch._tensor" && n == "_rebuild_from_type_v2") {
      // (func, new_type, args, state): a tensor subclass; rebuild the plain tensor.
      if (args->type == T::kTuple && args->items.size() >= 3) return Call(args->items[0], args->items[2]);
      return Error("has a malformed tensor-subclass record");
    }
    if ((m == "collections" && n == "OrderedDict") || (m == "builtins" && n == "dict") ||
        (m == "__builtin__" && n == "dict")) {
      PyRef d = Make(T::kDict);
      if (args->type == T::kTuple && !args->items.empty() && args->items[0]->type == T::kList) {
        for (const auto& kv : args->items[0]->items) {
          if (kv->type == T::kTuple && kv->items.size() == 2) d->dict.emplace_back(kv->items[0], kv->items[1]);
        }
      }
      return d;
    }
  }
  PyRef o = Make(T::kObject);
  o->callable = callable;
  o->args = args;
  return o;
}

absl::StatusOr<PyRef> Machine::Build(const PyRef& obj, const PyRef& state) {
  using T = PyObj::Type;
  if (obj->type == T::kObject) {
    if (obj->state && obj->state->type == T::kDict && state->type == T::kDict) {
      for (const auto& kv : state->dict) obj->state->dict.push_back(kv);
    } else {
      obj->state = state;
    }
  }
  // Dicts (OrderedDict._metadata), tensors and others: the state is not part of the tensor tree.
  return obj;
}

absl::StatusOr<PyRef> Machine::Run(size_t* consumed) {
  using T = PyObj::Type;
#define WFM_PK_ASSIGN(lhs, expr) \
  auto WFM_PK_CAT(r_, __LINE__) = (expr);             \
  if (!WFM_PK_CAT(r_, __LINE__).ok()) return WFM_PK_CAT(r_, __LINE__).status(); \
  lhs = std::move(WFM_PK_CAT(r_, __LINE__)).value()
#define WFM_PK_CAT(a, b) WFM_PK_CAT2(a, b)
#define WFM_PK_CAT2(a, b) a##b
#define WFM_PK_OK(expr)                 \
  do {                                  \
    absl::Status s_ = (expr);           \
    if (!s_.ok()) return s_;            \
  } while (0)

  while (true) {
    op_pos_ = pos_;
    if (!Need(1)) return Error("ends without a STOP opcode: truncated?");
    const uint8_t op = static_cast<uint8_t>(data_[pos_++]);
    switch (op) {
      case 0x80: {  // PROTO
        WFM_PK_ASSIGN(uint64_t v, TakeLe(1));
        if (v > 5) return Error(absl::StrCat("protocol ", v, " is not supported"));
        break;
      }
      case 0x95: {  // FRAME
        WFM_PK_ASSIGN(uint64_t v, TakeLe(8));
        (void)v;
        break;
      }
      case '.': {  // STOP
        WFM_PK_ASSIGN(PyRef v, Pop());
        if (consumed) *consumed = pos_;
        return v;
      }
      case '(':
        if (marks_.size() >= kMaxStack) return Error("has too many MARKs");
        marks_.push_back(stack_.size());
        break;
      case '0': {
        WFM_PK_ASSIGN(PyRef v, Pop());
        (void)v;
        break;
      }
      case '1': {
        WFM_PK_ASSIGN(auto v, PopMark());
        (void)v;
        break;
      }
      case '2': {
        WFM_PK_ASSIGN(PyRef v, Top());
        WFM_PK_OK(Push(v));
        break;
      }
      // ---- numbers ----
      case 'I': {  // INT (text), also "01"/"00" booleans
        WFM_PK_ASSIGN(std::string line, TakeLine());
        PyRef v;
        if (line == "01" || line == "00") {
          v = Make(T::kBool);
          v->b = line == "01";
        } else {
          v = Make(T::kInt);
          if (!absl::SimpleAtoi(line, &v->i)) return Error("has a malformed INT");
        }
        WFM_PK_OK(Push(v));
        break;
      }
      case 'L': {  // LONG (text, trailing 'L')
        WFM_PK_ASSIGN(std::string line, TakeLine());
        if (!line.empty() && line.back() == 'L') line.pop_back();
        PyRef v = Make(T::kInt);
        if (!absl::SimpleAtoi(line, &v->i)) {
          v->type = T::kBigInt;
          v->s = line;
        }
        WFM_PK_OK(Push(v));
        break;
      }
      case 'J':
      case 'K':
      case 'M': {
        const size_t n = op == 'J' ? 4 : op == 'K' ? 1 : 2;
        WFM_PK_ASSIGN(uint64_t raw, TakeLe(n));
        PyRef v = Make(T::kInt);
        v->i = op == 'J' ? static_cast<int64_t>(static_cast<int32_t>(raw)) : static_cast<int64_t>(raw);
        WFM_PK_OK(Push(v));
        break;
      }
      case 0x8a:
      case 0x8b: {  // LONG1, LONG4: little-endian two's complement
        WFM_PK_ASSIGN(uint64_t n, TakeLe(op == 0x8a ? 1 : 4));
        WFM_PK_ASSIGN(absl::string_view bytes, Take(n));
        PyRef v = Make(T::kInt);
        if (n <= 8) {
          uint64_t u = 0;
          for (size_t k = 0; k < n; ++k) u |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[k])) << (8 * k);
          if (n > 0 && n < 8 && (static_cast<uint8_t>(bytes[n - 1]) & 0x80)) u |= ~uint64_t{0} << (8 * n);
          v->i = static_cast<int64_t>(u);
        } else {
          v->type = T::kBigInt;
          v->s = std::string(bytes);
        }
        WFM_PK_OK(Push(v));
        break;
      }
      case 'F': {
        WFM_PK_ASSIGN(std::string line, TakeLine());
        PyRef v = Make(T::kFloat);
        if (!absl::SimpleAtod(line, &v->f)) return Error("has a malformed FLOAT");
        WFM_PK_OK(Push(v));
        break;
      }
      case 'G': {  // BINFLOAT: big-endian double
        WFM_PK_ASSIGN(absl::string_view b, Take(8));
        uint64_t u = 0;
        for (int k = 0; k < 8; ++k) u = (u << 8) | static_cast<uint8_t>(b[k]);
        PyRef v = Make(T::kFloat);
        std::memcpy(&v->f, &u, 8);
        WFM_PK_OK(Push(v));
        break;
      }
      // ---- strings and bytes ----
      case 'X':
      case 0x8c:
      case 0x8d:
      case 'T':
      case 'U':
      case 'B':
      case 'C':
      case 0x8e:
      case 0x96: {
        size_t len_bytes = 4;
        T type = T::kStr;
        if (op == 0x8c || op == 'U' || op == 'C') len_bytes = 1;
        if (op == 0x8d || op == 0x8e || op == 0x96) len_bytes = 8;
        if (op == 'B' || op == 'C' || op == 0x8e || op == 0x96) type = T::kBytes;
        WFM_PK_ASSIGN(uint64_t n, TakeLe(len_bytes));
        WFM_PK_ASSIGN(absl::string_view s, Take(n));
        PyRef v = Make(type);
        v->s = std::string(s);
        WFM_PK_OK(Push(v));
        break;
      }
      case 'S': {  // STRING: quoted repr
        WFM_PK_ASSIGN(std::string line, TakeLine());
        if (line.size() >= 2 && (line[0] == '\'' || line[0] == '"') && line.back() == line[0]) {
          line = line.substr(1, line.size() - 2);
        }
        PyRef v = Make(T::kStr);
        v->s = line;
        WFM_PK_OK(Push(v));
        break;
      }
      case 'V': {  // UNICODE (raw-unicode-escape; kept as is)
        WFM_PK_ASSIGN(std::string line, TakeLine());
        PyRef v = Make(T::kStr);
        v->s = line;
        WFM_PK_OK(Push(v));
        break;
      }
      // ---- constants ----
      case 'N':
        WFM_PK_OK(Push(Make(T::kNone)));
        break;
      case 0x88:
      case 0x89: {
        PyRef v = Make(T::kBool);
        v->b = op == 0x88;
        WFM_PK_OK(Push(v));
        break;
      }
      // ---- containers ----
      case ')':
        WFM_PK_OK(Push(Make(T::kTuple)));
        break;
      case 't': {
        WFM_PK_ASSIGN(auto items, PopMark());
        PyRef v = Make(T::kTuple);
        v->items = std::move(items);
        WFM_PK_OK(Push(v));
        break;
      }
      case 0x85:
      case 0x86:
      case 0x87: {
        const size_t n = op - 0x85 + 1;
        PyRef v = Make(T::kTuple);
        v->items.resize(n);
        for (size_t k = n; k-- > 0;) {
          WFM_PK_ASSIGN(v->items[k], Pop());
        }
        WFM_PK_OK(Push(v));
        break;
      }
      case ']':
      case 0x8f:  // EMPTY_SET: kept as a list
        WFM_PK_OK(Push(Make(T::kList)));
        break;
      case 'l':
      case 0x91: {  // LIST, FROZENSET
        WFM_PK_ASSIGN(auto items, PopMark());
        PyRef v = Make(T::kList);
        v->items = std::move(items);
        WFM_PK_OK(Push(v));
        break;
      }
      case 'a': {  // APPEND
        WFM_PK_ASSIGN(PyRef v, Pop());
        WFM_PK_ASSIGN(PyRef list, Top());
        if (list->type == T::kList) list->items.push_back(v);
        break;
      }
      case 'e':
      case 0x90: {  // APPENDS, ADDITEMS
        WFM_PK_ASSIGN(auto items, PopMark());
        WFM_PK_ASSIGN(PyRef list, Top());
        if (list->type == T::kList) list->items.insert(list->items.end(), items.begin(), items.end());
        break;
      }
      case '}':
        WFM_PK_OK(Push(Make(T::kDict)));
        break;
      case 'd': {
        WFM_PK_ASSIGN(auto items, PopMark());
        PyRef v = Make(T::kDict);
        WFM_PK_OK(SetItems(v, items));
        WFM_PK_OK(Push(v));
        break;
      }
      case 's': {
        WFM_PK_ASSIGN(PyRef value, Pop());
        WFM_PK_ASSIGN(PyRef key, Pop());
        WFM_PK_ASSIGN(PyRef d, Top());
        AddItem(d, key, value);
        break;
      }
      case 'u': {
        WFM_PK_ASSIGN(auto items, PopMark());
        WFM_PK_ASSIGN(PyRef d, Top());
        WFM_PK_OK(SetItems(d, items));
        break;
      }
      // ---- memo ----
      case 'p': {
        WFM_PK_ASSIGN(uint64_t idx, TakeIndexLine("PUT"));
        WFM_PK_OK(Memo(idx));
        break;
      }
      case 'q':
      case 'r': {
        WFM_PK_ASSIGN(uint64_t idx, TakeLe(op == 'q' ? 1 : 4));
        WFM_PK_OK(Memo(idx));
        break;
      }
      case 0x94:  // MEMOIZE
        WFM_PK_OK(Memo(memo_.size()));
        break;
      case 'g': {
        WFM_PK_ASSIGN(uint64_t idx, TakeIndexLine("GET"));
        WFM_PK_OK(Get(idx));
        break;
      }
      case 'h':
      case 'j': {
        WFM_PK_ASSIGN(uint64_t idx, TakeLe(op == 'h' ? 1 : 4));
        WFM_PK_OK(Get(idx));
        break;
      }
      // ---- objects ----
      case 'c': {  // GLOBAL "module\nname\n"
        WFM_PK_ASSIGN(std::string module, TakeLine());
        WFM_PK_ASSIGN(std::string name, TakeLine());
        WFM_PK_ASSIGN(PyRef g, MakeGlobal(module, name));
        WFM_PK_OK(Push(g));
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        WFM_PK_ASSIGN(PyRef name, Pop());
        WFM_PK_ASSIGN(PyRef module, Pop());
        if (name->type != T::kStr || module->type != T::kStr) return Error("STACK_GLOBAL needs two strings");
        WFM_PK_ASSIGN(PyRef g, MakeGlobal(module->s, name->s));
        WFM_PK_OK(Push(g));
        break;
      }
      case 'R': {  // REDUCE
        WFM_PK_ASSIGN(PyRef args, Pop());
        WFM_PK_ASSIGN(PyRef callable, Pop());
        WFM_PK_ASSIGN(PyRef v, Call(callable, args));
        WFM_PK_OK(Push(v));
        break;
      }
      case 0x81: {  // NEWOBJ: cls.__new__(cls, *args)
        WFM_PK_ASSIGN(PyRef args, Pop());
        WFM_PK_ASSIGN(PyRef cls, Pop());
        WFM_PK_ASSIGN(PyRef v, Call(cls, args));
        WFM_PK_OK(Push(v));
        break;
      }
      case 0x92: {  // NEWOBJ_EX: cls, args, kwargs
        WFM_PK_ASSIGN(PyRef kwargs, Pop());
        (void)kwargs;
        WFM_PK_ASSIGN(PyRef args, Pop());
        WFM_PK_ASSIGN(PyRef cls, Pop());
        WFM_PK_ASSIGN(PyRef v, Call(cls, args));
        WFM_PK_OK(Push(v));
        break;
      }
      case 'i': {  // INST module\nname\n with args since MARK
        WFM_PK_ASSIGN(std::string module, TakeLine());
        WFM_PK_ASSIGN(std::string name, TakeLine());
        WFM_PK_ASSIGN(auto items, PopMark());
        WFM_PK_ASSIGN(PyRef g, MakeGlobal(module, name));
        PyRef args = Make(T::kTuple);
        args->items = std::move(items);
        WFM_PK_ASSIGN(PyRef v, Call(g, args));
        WFM_PK_OK(Push(v));
        break;
      }
      case 'o': {  // OBJ: MARK cls args...
        WFM_PK_ASSIGN(auto items, PopMark());
        if (items.empty()) return Error("OBJ without a class");
        PyRef args = Make(T::kTuple);
        args->items.assign(items.begin() + 1, items.end());
        WFM_PK_ASSIGN(PyRef v, Call(items[0], args));
        WFM_PK_OK(Push(v));
        break;
      }
      case 'b': {  // BUILD
        WFM_PK_ASSIGN(PyRef state, Pop());
        WFM_PK_ASSIGN(PyRef obj, Pop());
        WFM_PK_ASSIGN(PyRef v, Build(obj, state));
        WFM_PK_OK(Push(v));
        break;
      }
      case 'P': {  // PERSID (text)
        WFM_PK_ASSIGN(std::string line, TakeLine());
        (void)line;
        return Error("uses a text persistent id, which torch never writes");
      }
      case 'Q': {  // BINPERSID
        WFM_PK_ASSIGN(PyRef pid, Pop());
        WFM_PK_ASSIGN(PyRef v, PersistentLoad(pid));
        WFM_PK_OK(Push(v));
        break;
      }
      default:
        return Error(absl::StrFormat("has unsupported opcode 0x%02x: not a PyTorch checkpoint, or corrupt", op));
    }
  }
#undef WFM_PK_ASSIGN
#undef WFM_PK_OK
}

// ---- flattening ----

class Flattener {
 public:
  Flattener(std::vector<NamedTensor>* out, int64_t* skipped, std::vector<std::string>* examples)
      : out_(out), skipped_(skipped), examples_(examples) {}

  void Walk(const PyRef& v, const std::string& name, int depth) {
    using T = PyObj::Type;
    if (!v || depth > 200) return Skip(name);
    if (v->type == T::kTensor) {
      out_->push_back({name, v->tensor});
      return;
    }
    const bool container = v->type == T::kDict || v->type == T::kList || v->type == T::kTuple || v->type == T::kObject;
    if (!container) return Skip(name);
    if (!on_path_.insert(v.get()).second) return;  // a cycle
    switch (v->type) {
      case T::kDict:
        for (const auto& [k, val] : v->dict) {
          std::string key;
          if (k->type == T::kStr) key = k->s;
          else if (k->type == T::kInt) key = std::to_string(k->i);
          else {
            Skip(Join(name, "?"));
            continue;
          }
          Walk(val, Join(name, key), depth + 1);
        }
        break;
      case T::kList:
      case T::kTuple:
        for (size_t k = 0; k < v->items.size(); ++k) Walk(v->items[k], Join(name, std::to_string(k)), depth + 1);
        break;
      default:
        WalkObject(v, name, depth);
        break;
    }
    on_path_.erase(v.get());
  }

 private:
  static std::string Join(const std::string& a, const std::string& b) { return a.empty() ? b : a + "." + b; }
  void Skip(const std::string& name) {
    ++*skipped_;
    if (examples_->size() < 8) examples_->push_back(name.empty() ? "<root>" : name);
  }
  static const PyRef* Attr(const PyRef& state, absl::string_view key) {
    for (const auto& [k, v] : state->dict)
      if (k->type == PyObj::Type::kStr && k->s == key) return &v;
    return nullptr;
  }
  void WalkObject(const PyRef& v, const std::string& name, int depth) {
    using T = PyObj::Type;
    PyRef state = v->state;
    // (dict_state, slot_state) tuples from __reduce_ex__ of classes with __slots__.
    if (state && state->type == T::kTuple && !state->items.empty() && state->items[0]->type == T::kDict) {
      state = state->items[0];
    }
    if (!state || state->type != T::kDict) return Skip(name);
    // A pickled torch.nn.Module (torch.save(model)): name tensors as its state_dict would.
    const PyRef* params = Attr(state, "_parameters");
    const PyRef* modules = Attr(state, "_modules");
    if (params && modules) {
      for (const char* group : {"_parameters", "_buffers"}) {
        const PyRef* g = Attr(state, group);
        if (g && (*g)->type == T::kDict) Walk(*g, name, depth + 1);
      }
      if ((*modules)->type == T::kDict) Walk(*modules, name, depth + 1);
      return;
    }
    Walk(state, name, depth + 1);
  }

  std::vector<NamedTensor>* out_;
  int64_t* skipped_;
  std::vector<std::string>* examples_;
  std::set<const PyObj*> on_path_;
};

}  // namespace

absl::StatusOr<PyRef> Unpickle(absl::string_view data, const std::string& what, size_t* consumed,
                               StorageMap* storages) {
  Machine m(data, what);
  auto result = m.Run(consumed);
  if (result.ok() && storages) *storages = m.storages();
  return result;
}

void FlattenTensors(const PyRef& root, std::vector<NamedTensor>* out, int64_t* skipped,
                    std::vector<std::string>* skipped_examples) {
  Flattener f(out, skipped, skipped_examples);
  f.Walk(root, "", 0);
}

}  // namespace wfm::torch_pickle
