// Shared plumbing of the `wfm` Python extension (python/src/*.cc): how a C++ module adds its bindings, how
// absl::Status becomes a Python exception, path arguments, dtypes, and GIL-safe Python callbacks.
//
// Adding bindings for a module (no edit of any other file):
//
//   // python/src/bind_tokenizer.cc
//   #include "wfm_py.h"
//   namespace wfm::py {
//   namespace {
//   void Bind(pybind11::module_& m) {          // m is the submodule `wfm.tokenizer`
//     m.def("encode", [](const at::Tensor& x) { return Unwrap(...); },
//           pybind11::call_guard<pybind11::gil_scoped_release>(), "docstring");
//   }
//   }  // namespace
//   WFM_PY_BINDINGS(tokenizer, 100, "Cosmos-compatible video tokenizer.", Bind);
//   }  // namespace wfm::py
//
// Then add python/wfm/tokenizer.pyi (type stubs; python/tests/test_stubs.py checks they match) and tests in
// python/tests/test_tokenizer.py. Several files may add to the same submodule; they run in `order`.
#pragma once

// torch's pybind header first: it provides the at::Tensor / at::Device casters (zero-copy THPVariable wrapping).
#include <torch/csrc/utils/pybind.h>

#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <functional>
#include <map>
#include <memory>
#include <type_traits>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <c10/core/ScalarType.h>
#include <nlohmann/json_fwd.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "wfm/core/progress.h"

namespace wfm::py {

// ---- registration ----
using BindFn = void (*)(pybind11::module_& m);
struct Registrar {
  Registrar(const char* submodule, int order, const char* doc, BindFn fn);
};
struct Registration {
  std::string submodule;
  int order;
  std::string doc;
  BindFn fn;
};
std::vector<Registration>& Registry();

// ---- errors ----
// Thrown by Check/Unwrap; translated (with the GIL held) into ValueError (InvalidArgument, OutOfRange),
// FileNotFoundError (NotFound), PermissionError (PermissionDenied), OSError (DataLoss, Unavailable, Aborted
// on IO), NotImplementedError (Unimplemented), RuntimeError otherwise — with the status message as the
// exception message and the canonical code name in `.status_code`.
class StatusError : public std::exception {
 public:
  explicit StatusError(absl::Status status) : status_(std::move(status)), what_(status_.ToString()) {}
  const absl::Status& status() const { return status_; }
  const char* what() const noexcept override { return what_.c_str(); }

 private:
  absl::Status status_;
  std::string what_;
};

inline void Check(const absl::Status& status) {
  if (!status.ok()) throw StatusError(status);
}
template <typename T>
T Unwrap(absl::StatusOr<T> value) {
  if (!value.ok()) throw StatusError(value.status());
  return std::move(value).value();
}

// ---- arguments ----
// A filesystem path argument: str, bytes or os.PathLike.
struct Path {
  std::string value;
};

// torch.dtype <-> ScalarType.
pybind11::object DtypeObject(c10::ScalarType type);
c10::ScalarType DtypeFromObject(pybind11::handle obj);

// JSON text <-> Python objects (dict/list/...), through Python's json module.
pybind11::object JsonToPy(const std::string& text);
std::string PyToJson(pybind11::handle obj);

// A config argument: a Python dict (-> JSON text in *json) or a str / os.PathLike (-> *name_or_path: a preset
// name or a json file). Returns true for the dict form.
bool ConfigArg(pybind11::handle obj, std::string* json, std::string* name_or_path);
// JSON text -> nlohmann::json (ValueError when malformed).
nlohmann::json ParseJsonArg(const std::string& text);

// A torch::nn::Module's state dict (parameters, then buffers; recursive names) as a dict of the module's own
// tensors: no copies, so in-place changes reach the module and parameters keep requires_grad.
template <typename ModuleT>
pybind11::dict StateDictOf(ModuleT& module) {
  pybind11::dict d;
  for (const auto& p : module.named_parameters(true)) d[pybind11::str(p.key())] = p.value();
  for (const auto& b : module.named_buffers(true)) d[pybind11::str(b.key())] = b.value();
  return d;
}
// Its parameters as a list (for torch.optim).
template <typename ModuleT>
pybind11::list ParametersOf(ModuleT& module) {
  pybind11::list l;
  for (const auto& p : module.parameters(true)) l.append(p);
  return l;
}

// Adds the torch-module methods state_dict(), parameters(), train(mode=True), eval() and the `training` property to
// a bound class whose network is `module_of(self)` (a torch::nn::Module reference owned by self).
template <typename T, typename... Extra, typename ModuleOf>
void DefModuleMethods(pybind11::class_<T, Extra...>& cls, ModuleOf module_of, const char* state_dict_doc) {
  namespace py = pybind11;
  cls.def("state_dict", [module_of](T& self) { return StateDictOf(module_of(self)); }, state_dict_doc)
      .def("parameters", [module_of](T& self) { return ParametersOf(module_of(self)); },
           "The trainable parameters, shared with the network (for torch.optim).")
      .def(
          "train",
          [module_of](T& self, bool mode) {
            module_of(self).train(mode);
            return &self;
          },
          py::arg("mode") = true, py::return_value_policy::reference)
      .def(
          "eval",
          [module_of](T& self) {
            module_of(self).eval();
            return &self;
          },
          py::return_value_policy::reference)
      .def_property_readonly("training", [module_of](T& self) { return module_of(self).is_training(); });
}

// Options named like a CLI command's flags ('_' for '-'), set from a dict or **kwargs: Apply() raises ValueError
// for unknown keys (listing the known ones) and for values of the wrong type (naming the option).
class OptionTable {
 public:
  using Setter = std::function<void(pybind11::handle)>;
  explicit OptionTable(std::string what) : what_(std::move(what)) {}
  OptionTable& Add(const std::string& name, Setter setter);
  OptionTable& Add(const std::string& name, std::string* field);               // str or os.PathLike
  OptionTable& Add(const std::string& name, std::vector<std::string>* field);  // one path or a list of them
  template <typename T, typename = std::enable_if_t<std::is_arithmetic_v<T>>>
  OptionTable& Add(const std::string& name, T* field) {
    return Add(name, Setter([field](pybind11::handle v) { *field = v.cast<T>(); }));
  }
  void Apply(pybind11::handle mapping) const;

 private:
  std::string what_;
  std::map<std::string, Setter> setters_;
};

// Seconds from a number or a string like "900", "900s", "15m", "2h" (ValueError otherwise).
double SecondsArg(pybind11::handle value, const char* name);

// "auto" (bfloat16 on CUDA, float32 elsewhere), "float32", "bfloat16", "float16" -> dtype (ValueError otherwise).
c10::ScalarType ParseComputeDtype(const std::string& text, bool cuda);
// Moves a module to device and its floating parameters/buffers to dtype (integer buffers keep their dtype).
template <typename ModuleT>
void MoveFloating(ModuleT& module, const c10::Device& device, c10::ScalarType dtype) {
  module.to(device);
  for (auto& p : module.parameters(true)) p.set_data(p.data().to(dtype));
  for (auto& b : module.buffers(true))
    if (c10::isFloatingType(b.scalar_type())) b.set_data(b.data().to(dtype));
}

// ---- callbacks ----
// Holds a Python callable for use from C++ code that runs without the GIL (possibly on other threads). Call()
// takes the GIL; if the callable raises, the exception is kept, Call() returns false and later calls are
// skipped; RethrowIfFailed() (GIL held) re-raises it after the C++ call returns. Safe to copy and to destroy
// without the GIL.
class PyCallback {
 public:
  PyCallback() = default;
  explicit PyCallback(pybind11::object fn);
  explicit operator bool() const { return state_ && state_->fn; }

  // Calls fn(args...) with the GIL; the result is dropped (under the GIL).
  template <typename... Args>
  bool Call(Args&&... args) const {
    return Invoke([](pybind11::object&&) {}, std::forward<Args>(args)...);
  }
  // Calls fn(args...) and converts its result with `on_result(pybind11::object&&)` while the GIL is held.
  template <typename OnResult, typename... Args>
  bool Invoke(OnResult&& on_result, Args&&... args) const {
    return CallWith([&] { return pybind11::make_tuple(std::forward<Args>(args)...); }, on_result);
  }
  // Calls fn(*make_args()) (make_args runs with the GIL and returns a pybind11::tuple).
  template <typename MakeArgs, typename OnResult>
  bool CallWith(MakeArgs&& make_args, OnResult&& on_result) const {
    if (!state_ || !state_->fn) return true;
    pybind11::gil_scoped_acquire gil;
    if (state_->error) return false;
    try {
      on_result(state_->fn(*make_args()));
      return true;
    } catch (pybind11::error_already_set& e) {
      state_->error = std::make_unique<pybind11::error_already_set>(std::move(e));
      return false;
    } catch (pybind11::cast_error& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
      state_->error = std::make_unique<pybind11::error_already_set>();
      return false;
    }
  }
  // GIL must be held.
  void RethrowIfFailed() const;

  // A std::function<void(int64_t, int64_t)> for wfm::Progress::SetCallback and similar observers.
  std::function<void(int64_t, int64_t)> AsProgressObserver() const;
  // Calls fn(done, total, info) with info = {'label', 'unit', 'status', 'finished'}; false once fn raised.
  bool Report(const ProgressUpdate& update) const;
  // A wfm::ProgressSink calling Report() for the Progress reports whose unit is `unit` (e.g. "steps": the
  // training loop, not its nested evaluations). Returns false (the job stops) once fn raised.
  ProgressSink AsProgressSink(std::string unit) const;

 private:
  struct State {
    pybind11::object fn;
    std::unique_ptr<pybind11::error_already_set> error;
  };
  std::shared_ptr<State> state_;
};

// The `progress=` argument of long calls: installs fn (if not None) as the ProgressSink of the calling thread
// for the guard's lifetime (construct it with the GIL held, then release the GIL for the C++ call). After the
// call, with the GIL held, RethrowIfFailed() raises what fn raised (the job was asked to stop).
class ProgressArg {
 public:
  ProgressArg(pybind11::object fn, std::string unit)
      : callback_(std::move(fn)), scope_(callback_ ? callback_.AsProgressSink(std::move(unit)) : ProgressSink()) {}
  void RethrowIfFailed() const { callback_.RethrowIfFailed(); }

 private:
  PyCallback callback_;
  ScopedProgressSink scope_;
};

// Runs fn() (returning absl::StatusOr<T>) with the GIL released and `progress` (a callable or None) observing
// the Progress reports in `unit`; raises what the callback raised, else unwraps the result.
template <typename Fn>
auto RunWithProgress(pybind11::object progress, std::string unit, Fn&& fn) {
  ProgressArg callback(std::move(progress), std::move(unit));
  auto result = [&] {
    pybind11::gil_scoped_release release;
    return fn();
  }();
  callback.RethrowIfFailed();
  return Unwrap(std::move(result));
}

}  // namespace wfm::py

namespace pybind11::detail {
template <>
struct type_caster<wfm::py::Path> {
  PYBIND11_TYPE_CASTER(wfm::py::Path, const_name("os.PathLike | str"));
  bool load(handle src, bool /*convert*/);
  static handle cast(const wfm::py::Path& p, return_value_policy, handle) { return pybind11::str(p.value).release(); }
};
}  // namespace pybind11::detail

#define WFM_PY_CONCAT_INNER_(a, b) a##b
#define WFM_PY_CONCAT_(a, b) WFM_PY_CONCAT_INNER_(a, b)
// WFM_PY_BINDINGS(submodule, order, doc, fn): calls fn(wfm.<submodule>) when the extension loads.
#define WFM_PY_BINDINGS(submodule, order, doc, fn) \
  static ::wfm::py::Registrar WFM_PY_CONCAT_(wfm_py_registrar_, __LINE__)(#submodule, order, doc, fn)
