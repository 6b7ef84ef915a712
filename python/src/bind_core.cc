// wfm.core: checkpoint files (safetensors, torch.save, TorchScript, sharded indexes), loading them into Python
// state dicts with wfm's name rules and strict checks, progress reporting, runtime (threads, devices) and
// logging. Tensors cross without copies in both directions; long calls release the GIL.
#include <torch/nn/module.h>

#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "wfm/core/checkpoint.h"
#include "wfm/core/logging.h"
#include "wfm/core/progress.h"
#include "wfm/core/runtime.h"
#include "wfm/core/safetensors.h"
#include "wfm/core/tensor_file.h"
#include "wfm_py.h"

namespace wfm::py {
namespace {
namespace py = pybind11;
using GilRelease = py::call_guard<py::gil_scoped_release>;

// ---- argument helpers ----

bool IsPathLike(py::handle obj) {
  return py::isinstance<py::str>(obj) || py::isinstance<py::bytes>(obj) || py::hasattr(obj, "__fspath__");
}

std::vector<std::string> PathList(py::handle obj) {
  std::vector<std::string> out;
  if (IsPathLike(obj)) {
    out.push_back(obj.cast<Path>().value);
  } else {
    for (py::handle item : obj) out.push_back(item.cast<Path>().value);
  }
  if (out.empty()) throw py::value_error("no checkpoint path given");
  return out;
}

NameRules RulesArg(py::handle rules) {
  if (rules.is_none()) return {};
  if (py::isinstance<py::str>(rules)) return Unwrap(ParseNameRules(rules.cast<std::string>()));
  if (py::isinstance<py::list>(rules) || py::isinstance<py::tuple>(rules)) {
    std::string text = py::module_::import("json").attr("dumps")(rules).cast<std::string>();
    return Unwrap(ParseNameRules(text));
  }
  throw py::type_error("rules must be a preset name, a JSON string, '@file.json' or a list of rule dicts");
}

// A model's tensors: nn.Module (its state_dict(), which shares storage with the module) or a dict.
TensorMap TargetTensors(py::handle target) {
  if (py::hasattr(target, "state_dict") && !py::isinstance<py::dict>(target)) {
    return target.attr("state_dict")().cast<TensorMap>();
  }
  if (py::isinstance<py::dict>(target)) return target.cast<TensorMap>();
  throw py::type_error("target must be a torch.nn.Module or a dict of tensors");
}

// A torch::nn::Module whose buffers ARE the given tensors (same TensorImpl), nested along the dotted names, so
// wfm::LoadCheckpoint checks and copies straight into the caller's tensors.
std::shared_ptr<torch::nn::Module> ModuleOver(const TensorMap& tensors) {
  auto root = std::make_shared<torch::nn::Module>();
  std::map<std::string, std::shared_ptr<torch::nn::Module>> nodes;
  for (const auto& [name, tensor] : tensors) {
    if (!tensor.defined()) throw py::value_error(absl::StrCat("tensor '", name, "' is undefined"));
    std::vector<std::string> parts = absl::StrSplit(name, '.');
    torch::nn::Module* cur = root.get();
    std::string prefix;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      if (parts[i].empty()) throw py::value_error(absl::StrCat("invalid tensor name '", name, "'"));
      prefix += parts[i] + ".";
      auto& node = nodes[prefix];
      if (!node) node = cur->register_module(parts[i], std::make_shared<torch::nn::Module>());
      cur = node.get();
    }
    if (parts.back().empty()) throw py::value_error(absl::StrCat("invalid tensor name '", name, "'"));
    cur->register_buffer(parts.back(), tensor);
  }
  return root;
}

std::string ShapeRepr(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) absl::StrAppend(&s, i ? ", " : "", shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

py::tuple ShapeTuple(const std::vector<int64_t>& shape) { return py::cast(shape); }

// wfm.core.Progress: the C++ progress line plus an optional Python observer.
class PyProgress {
 public:
  PyProgress(const std::string& label, int64_t total, const std::string& unit, bool quiet, py::object force_tty,
             double log_interval_s, py::object callback) {
    ProgressOptions o;
    o.quiet = quiet;
    if (!force_tty.is_none()) o.force_tty = force_tty.cast<bool>() ? 1 : 0;
    o.log_interval_s = log_interval_s;
    progress_ = std::make_unique<Progress>(label, total, unit, o);
    SetCallback(std::move(callback));
  }
  void SetCallback(py::object callback) {
    callback_ = PyCallback(std::move(callback));
    auto observer = callback_ ? callback_.AsProgressObserver() : std::function<void(int64_t, int64_t)>();
    py::gil_scoped_release release;
    progress_->SetCallback(std::move(observer));
  }
  void Add(int64_t n) {
    {
      py::gil_scoped_release release;
      progress_->Add(n);
    }
    callback_.RethrowIfFailed();
  }
  std::string Finish() {
    std::string s;
    {
      py::gil_scoped_release release;
      s = progress_->Finish();
    }
    callback_.RethrowIfFailed();
    return s;
  }
  Progress& get() { return *progress_; }

 private:
  std::unique_ptr<Progress> progress_;
  PyCallback callback_;
};

void BindTensorFiles(py::module_& m) {
  py::class_<TensorInfo>(m, "TensorInfo", "Name, dtype and shape of one tensor in a checkpoint file.")
      .def_readonly("name", &TensorInfo::name)
      .def_property_readonly("dtype", [](const TensorInfo& t) { return DtypeObject(t.dtype); })
      .def_property_readonly("shape", [](const TensorInfo& t) { return ShapeTuple(t.shape); })
      .def_property_readonly("numel", &TensorInfo::numel)
      .def_property_readonly("nbytes", &TensorInfo::nbytes)
      .def_readonly("file", &TensorInfo::file, "the file holding the data (the shard, for a sharded index)")
      .def("__repr__", [](const TensorInfo& t) {
        return absl::StrCat("TensorInfo('", t.name, "', ", DtypeShortName(t.dtype), ", ", ShapeRepr(t.shape), ")");
      });

  py::class_<TensorFileIndex>(m, "TensorFileIndex", "The listing of a checkpoint file (no tensor data read).")
      .def_readonly("path", &TensorFileIndex::path)
      .def_property_readonly("format", [](const TensorFileIndex& i) { return std::string(TensorFileFormatName(i.format)); })
      .def_readonly("tensors", &TensorFileIndex::tensors)
      .def_readonly("metadata", &TensorFileIndex::metadata)
      .def_readonly("skipped_entries", &TensorFileIndex::skipped_entries, "non-tensor leaves of a pickled object")
      .def_readonly("skipped_examples", &TensorFileIndex::skipped_examples)
      .def_property_readonly("total_bytes", &TensorFileIndex::total_bytes)
      .def_property_readonly("total_numel", &TensorFileIndex::total_numel)
      .def("names", [](const TensorFileIndex& i) {
        std::vector<std::string> n;
        for (const auto& t : i.tensors) n.push_back(t.name);
        return n;
      })
      .def("__len__", [](const TensorFileIndex& i) { return i.tensors.size(); })
      .def("__getitem__", [](const TensorFileIndex& i, const std::string& name) {
        const TensorInfo* t = i.Find(name);
        if (!t) throw py::key_error(name);
        return *t;
      })
      .def("__contains__", [](const TensorFileIndex& i, const std::string& name) { return i.Find(name) != nullptr; })
      .def("__repr__", [](const TensorFileIndex& i) {
        return absl::StrCat("TensorFileIndex('", i.path, "', format=", TensorFileFormatName(i.format), ", ",
                            i.tensors.size(), " tensors, ", i.total_bytes(), " bytes)");
      });

  m.def(
      "list_tensor_file", [](const Path& path) { return Unwrap(ListTensorFile(path.value)); }, py::arg("path"),
      GilRelease(),
      "Lists a checkpoint's tensors (names, dtypes, shapes) without reading their data. Formats are detected from\n"
      "the bytes: safetensors, torch.save (zip or legacy), TorchScript (.jit), a sharded *.index.json, or a\n"
      "directory holding one of these.");
  m.def(
      "read_tensor_file",
      [](const Path& path, py::object names) {
        if (names.is_none()) {
          py::gil_scoped_release release;
          return Unwrap(ReadTensorFile(path.value));
        }
        std::set<std::string> want;
        for (py::handle n : names) want.insert(n.cast<std::string>());
        py::gil_scoped_release release;
        return Unwrap(ReadTensorFile(path.value, [&](const std::string& n) { return want.count(n) > 0; }));
      },
      py::arg("path"), py::arg("names") = py::none(),
      "Reads a checkpoint's tensors into a dict {name: tensor}. Nested containers are flattened with dots; tensors\n"
      "are CPU views into a copy-on-write memory mapping (zero-copy) where aligned. `names` limits the read.\n"
      "TorchScript archives give their parameters and buffers (named_parameters() + named_buffers() names).");
  m.def(
      "tensor_file_format",
      [](const Path& path) { return std::string(TensorFileFormatName(Unwrap(DetectTensorFileFormat(path.value)))); },
      py::arg("path"), GilRelease(),
      "The detected format: 'safetensors', 'torch', 'torch-legacy', 'torchscript' or 'sharded-index'.");

  m.def(
      "read_safetensors", [](const Path& path) { return Unwrap(ReadSafetensors(path.value)); }, py::arg("path"),
      GilRelease(), "Reads every tensor of a safetensors file (zero-copy views of the memory-mapped file).");
  m.def(
      "write_safetensors",
      [](const Path& path, const TensorMap& tensors, const std::map<std::string, std::string>& metadata) {
        Check(WriteSafetensors(path.value, tensors, metadata));
      },
      py::arg("path"), py::arg("tensors"), py::arg("metadata") = std::map<std::string, std::string>(), GilRelease(),
      "Writes a dict of tensors (any device/layout) to a safetensors file atomically (temp file + rename).");

  py::class_<SafetensorsFile, std::shared_ptr<SafetensorsFile>>(
      m, "SafetensorsFile", "A memory-mapped, validated safetensors file; tensors are zero-copy views.")
      .def(py::init([](const Path& path) {
             py::gil_scoped_release release;
             return Unwrap(SafetensorsFile::Open(path.value));
           }),
           py::arg("path"))
      .def_property_readonly("path", &SafetensorsFile::path)
      .def_property_readonly("metadata", &SafetensorsFile::metadata)
      .def("keys",
           [](const SafetensorsFile& f) {
             std::vector<std::string> k;
             for (const auto& e : f.entries()) k.push_back(e.name);
             return k;
           })
      .def(
          "get",
          [](const SafetensorsFile& f, const std::string& name, bool copy) {
            return Unwrap(copy ? f.GetCopy(name) : f.Get(name));
          },
          py::arg("name"), py::arg("copy") = false, "The tensor `name` (a view unless copy=True).")
      .def("__getitem__", [](const SafetensorsFile& f, const std::string& name) {
        if (!f.Contains(name)) throw py::key_error(name);
        return Unwrap(f.Get(name));
      })
      .def("__contains__", [](const SafetensorsFile& f, const std::string& name) { return f.Contains(name); })
      .def("__len__", [](const SafetensorsFile& f) { return f.entries().size(); });
}

void BindCheckpoint(py::module_& m) {
  py::class_<LoadReport>(m, "LoadReport", "What load_checkpoint did.")
      .def_readonly("source", &LoadReport::source)
      .def_readonly("file_tensors", &LoadReport::file_tensors)
      .def_readonly("loaded", &LoadReport::loaded)
      .def_readonly("converted", &LoadReport::converted)
      .def_readonly("dropped", &LoadReport::dropped)
      .def_readonly("module_tensors", &LoadReport::module_tensors)
      .def_readonly("values", &LoadReport::values)
      .def_readonly("bytes", &LoadReport::bytes)
      .def_readonly("missing", &LoadReport::missing)
      .def_readonly("unexpected", &LoadReport::unexpected)
      .def_readonly("conversions", &LoadReport::conversions)
      .def("summary", &LoadReport::Summary)
      .def("__repr__", [](const LoadReport& r) { return absl::StrCat("LoadReport(", r.Summary(), ")"); });

  m.def(
      "load_checkpoint",
      [](py::object target, py::object paths, py::object rules, bool allow_missing, bool allow_unexpected,
         bool allow_lossy_dtype) {
        TensorMap tensors = TargetTensors(target);
        std::vector<std::string> files = PathList(paths);
        LoadOptions o;
        o.rules = RulesArg(rules);
        o.allow_missing = allow_missing;
        o.allow_unexpected = allow_unexpected;
        o.allow_lossy_dtype = allow_lossy_dtype;
        py::gil_scoped_release release;
        std::shared_ptr<torch::nn::Module> module = ModuleOver(tensors);
        return Unwrap(LoadCheckpoint(*module, files, o));
      },
      py::arg("target"), py::arg("path"), py::arg("rules") = "default", py::arg("allow_missing") = false,
      py::arg("allow_unexpected") = false, py::arg("allow_lossy_dtype") = false,
      "Loads checkpoint file(s) into `target` (a torch.nn.Module or a dict of tensors) in place.\n\n"
      "The file is indexed first, every name goes through the name rules (a preset: 'default', 'ema',\n"
      "'cosmos-jit', 'none'; a JSON array; '@rules.json'; or a list of rule dicts such as\n"
      "{'strip_prefix': 'model.'}), and every unknown, missing, wrong-shape or duplicate tensor is reported in\n"
      "ONE ValueError before anything is copied. dtypes convert on copy (bf16 -> f32, ...). Several paths are\n"
      "loaded as one state dict (e.g. encoder.jit + decoder.jit).");
  m.def(
      "map_names",
      [](const std::vector<std::string>& names, py::object rules, py::object expected) {
        NameRules r = RulesArg(rules);
        std::set<std::string> exp;
        const bool has_expected = !expected.is_none();
        if (has_expected)
          for (py::handle n : expected) exp.insert(n.cast<std::string>());
        NameMapping mapping = Unwrap(MapNames(names, r, has_expected ? &exp : nullptr));
        py::dict out;
        out["renamed"] = mapping.renamed;
        out["dropped"] = mapping.dropped;
        out["duplicates"] = mapping.duplicates;
        return out;
      },
      py::arg("names"), py::arg("rules") = "default", py::arg("expected") = py::none(),
      "Applies name rules to tensor names: {'renamed': {file name: module name}, 'dropped': [...],\n"
      "'duplicates': [...]}. With `expected` (the module's names) strip-prefix rules only apply where the\n"
      "module does not use the prefix itself, and drop rules never drop an expected name.");
  m.def(
      "parse_name_rules",
      [](py::object rules) {
        std::string text = NameRulesToString(RulesArg(rules));
        return py::module_::import("json").attr("loads")(text);
      },
      py::arg("rules"), "The rule list (as dicts) that a rules argument stands for.");
}

void BindProgressRuntime(py::module_& m) {
  py::class_<PyProgress>(m, "Progress",
                         "A progress line with rate and ETA on stderr (quiet when not a TTY, except every\n"
                         "log_interval_s and the final summary). `callback(done, total)` is called at each redraw\n"
                         "and at finish. Usable as a context manager (finishes on exit).")
      .def(py::init<const std::string&, int64_t, const std::string&, bool, py::object, double, py::object>(),
           py::arg("label"), py::arg("total") = 0, py::arg("unit") = "items", py::arg("quiet") = false,
           py::arg("force_tty") = py::none(), py::arg("log_interval_s") = 30.0, py::arg("callback") = py::none())
      .def("add", &PyProgress::Add, py::arg("n") = 1)
      .def(
          "set_total", [](PyProgress& p, int64_t total) { p.get().SetTotal(total); }, py::arg("total"), GilRelease())
      .def(
          "set_status", [](PyProgress& p, std::string s) { p.get().SetStatus(std::move(s)); }, py::arg("status"),
          GilRelease())
      .def("set_callback", &PyProgress::SetCallback, py::arg("callback"))
      .def("finish", &PyProgress::Finish, "Prints (unless quiet) and returns the one-line summary.")
      .def_property_readonly("done", [](PyProgress& p) { py::gil_scoped_release r; return p.get().done(); })
      .def_property_readonly("elapsed_s", [](PyProgress& p) { return p.get().elapsed_s(); })
      .def_property_readonly("rate", [](PyProgress& p) { py::gil_scoped_release r; return p.get().rate(); })
      .def("__enter__", [](PyProgress& p) -> PyProgress& { return p; }, py::return_value_policy::reference)
      .def("__exit__", [](PyProgress& p, py::args) {
        p.Finish();
        return false;
      });

  m.def("init_threads", &InitThreads, py::arg("num_threads") = 0,
        "Sets LibTorch's intra-op threads (<= 0: WFM_NUM_THREADS or all cores); returns the count in effect.");
  m.def("default_num_threads", &DefaultNumThreads);
  m.def(
      "install_large_block_cpu_allocator",
      [](int64_t cache_mb) { return InstallLargeBlockCpuAllocator(cache_mb << 20); }, py::arg("cache_mb") = 0,
      "Opt-in: serve torch CPU blocks of >= 1 MiB from 2 MiB-aligned huge pages and reuse freed ones while resident "
      "memory stays within its peak so far plus cache_mb (the `wfm` tool does this at start-up; it saves most of "
      "the page-fault time of big tokenizer activations). Process-wide and permanent; WFM_CPU_ALLOCATOR=default "
      "refuses it. Returns True when it is in effect.");
  m.def(
      "cpu_allocator_stats",
      []() {
        const CpuAllocatorStats s = LargeBlockCpuAllocatorStats();
        py::dict d;
        d["large_allocations"] = s.large_allocations;
        d["reused"] = s.reused;
        d["live_bytes"] = s.live_bytes;
        d["peak_live_bytes"] = s.peak_live_bytes;
        d["cached_bytes"] = s.cached_bytes;
        d["evicted"] = s.evicted;
        return d;
      },
      "Counters of the large-block CPU allocator (all 0 when it was never installed).");
  m.def("cuda_available", &CudaAvailable, "True when LibTorch has CUDA and a GPU is visible.");
  m.def(
      "parse_device", [](const std::string& text) { return Unwrap(ParseDevice(text)); }, py::arg("text"),
      "'cpu', 'cuda', 'cuda:N' or 'auto' -> torch.device (ValueError / RuntimeError when unavailable).");
  m.def("runtime_summary", &RuntimeSummary, "One line: torch version, threads, BLAS, CUDA devices.");
  m.def(
      "set_log_level",
      [](const std::string& level) {
        LogLevel l;
        if (!ParseLogLevel(level, &l)) throw py::value_error("log level must be debug, info, warning, error or off");
        SetLogLevel(l);
      },
      py::arg("level"), "Level of wfm's stderr logging: 'debug', 'info', 'warning', 'error' or 'off'.");
  m.def("get_log_level", []() {
    switch (GetLogLevel()) {
      case LogLevel::kDebug: return "debug";
      case LogLevel::kInfo: return "info";
      case LogLevel::kWarning: return "warning";
      case LogLevel::kError: return "error";
      default: return "off";
    }
  });
}

void Bind(py::module_& m) {
  BindTensorFiles(m);
  BindCheckpoint(m);
  BindProgressRuntime(m);
}

}  // namespace

WFM_PY_BINDINGS(core, 0,
                "wfm core: checkpoint files and loading, video IO, progress, runtime (threads/devices), logging.",
                Bind);

}  // namespace wfm::py
