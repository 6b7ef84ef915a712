// The `wfm._wfm` extension: creates one submodule per registered binding group (wfm.core, wfm.tokenizer, ...),
// installs the absl::Status -> Python exception translation, and implements the helpers of wfm_py.h.
#include <torch/csrc/Dtype.h>
#include <torch/csrc/DynamicTypes.h>

#include <algorithm>
#include <map>

#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "wfm_py.h"

namespace py = pybind11;

namespace wfm::py {

std::vector<Registration>& Registry() {
  static std::vector<Registration> registry;
  return registry;
}

Registrar::Registrar(const char* submodule, int order, const char* doc, BindFn fn) {
  Registry().push_back({submodule, order, doc ? doc : "", fn});
}

pybind11::object DtypeObject(c10::ScalarType type) {
  return pybind11::reinterpret_borrow<pybind11::object>(reinterpret_cast<PyObject*>(torch::getTHPDtype(type)));
}

c10::ScalarType DtypeFromObject(pybind11::handle obj) {
  if (!THPDtype_Check(obj.ptr())) throw pybind11::type_error("expected a torch.dtype");
  return reinterpret_cast<THPDtype*>(obj.ptr())->scalar_type;
}

pybind11::object JsonToPy(const std::string& text) { return pybind11::module_::import("json").attr("loads")(text); }

std::string PyToJson(pybind11::handle obj) {
  return pybind11::module_::import("json").attr("dumps")(obj).cast<std::string>();
}

bool ConfigArg(pybind11::handle obj, std::string* json, std::string* name_or_path) {
  if (pybind11::isinstance<pybind11::dict>(obj)) {
    *json = PyToJson(obj);
    return true;
  }
  PyObject* fs = PyOS_FSPath(obj.ptr());
  if (!fs) {
    PyErr_Clear();
    throw pybind11::type_error("config must be a preset name, a json file path or a dict");
  }
  Py_DECREF(fs);
  *name_or_path = pybind11::cast<Path>(obj).value;
  return false;
}

nlohmann::json ParseJsonArg(const std::string& text) {
  try {
    return nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw pybind11::value_error(e.what());
  }
}

c10::ScalarType ParseComputeDtype(const std::string& text, bool cuda) {
  if (text == "auto" || text.empty()) return cuda ? c10::kBFloat16 : c10::kFloat;
  if (text == "float32" || text == "fp32" || text == "float") return c10::kFloat;
  if (text == "bfloat16" || text == "bf16") return c10::kBFloat16;
  if (text == "float16" || text == "fp16" || text == "half") return c10::kHalf;
  throw pybind11::value_error("unknown dtype '" + text + "' (expected auto, float32, bfloat16 or float16)");
}

PyCallback::PyCallback(pybind11::object fn) {
  if (fn.is_none()) return;
  if (!PyCallable_Check(fn.ptr())) throw pybind11::type_error("callback must be callable");
  // The state holds Python objects: destroy it with the GIL, whichever thread drops the last reference.
  state_ = std::shared_ptr<State>(new State{std::move(fn), nullptr}, [](State* s) {
    if (!Py_IsInitialized()) return;  // interpreter gone: leak rather than crash
    pybind11::gil_scoped_acquire gil;
    delete s;
  });
}

void PyCallback::RethrowIfFailed() const {
  if (state_ && state_->error) {
    std::unique_ptr<pybind11::error_already_set> e = std::move(state_->error);
    e->restore();
    throw pybind11::error_already_set();
  }
}

std::function<void(int64_t, int64_t)> PyCallback::AsProgressObserver() const {
  PyCallback self = *this;
  return [self](int64_t done, int64_t total) { self.Call(done, total); };
}

bool PyCallback::Report(const ProgressUpdate& u) const {
  return CallWith(
      [&] {
        pybind11::dict info;
        info["label"] = std::string(u.label);
        info["unit"] = std::string(u.unit);
        info["status"] = std::string(u.status);
        info["finished"] = u.finished;
        return pybind11::make_tuple(u.done, u.total, info);
      },
      [](pybind11::object&&) {});
}

ProgressSink PyCallback::AsProgressSink(std::string unit) const {
  PyCallback self = *this;
  return [self, unit](const ProgressUpdate& u) { return u.unit != unit || self.Report(u); };
}

OptionTable& OptionTable::Add(const std::string& name, Setter setter) {
  setters_[name] = std::move(setter);
  return *this;
}

OptionTable& OptionTable::Add(const std::string& name, std::string* field) {
  return Add(name, Setter([field](pybind11::handle v) { *field = pybind11::cast<Path>(v).value; }));
}

OptionTable& OptionTable::Add(const std::string& name, std::vector<std::string>* field) {
  return Add(name, Setter([field](pybind11::handle v) {
               field->clear();
               if (pybind11::isinstance<pybind11::str>(v) || pybind11::hasattr(v, "__fspath__")) {
                 field->push_back(pybind11::cast<Path>(v).value);
               } else {
                 for (pybind11::handle item : v) field->push_back(pybind11::cast<Path>(item).value);
               }
             }));
}

void OptionTable::Apply(pybind11::handle mapping) const {
  std::vector<std::string> unknown;
  for (auto item : pybind11::reinterpret_borrow<pybind11::dict>(mapping)) {
    std::string key = pybind11::cast<std::string>(item.first);
    std::replace(key.begin(), key.end(), '-', '_');
    auto it = setters_.find(key);
    if (it == setters_.end()) {
      unknown.push_back(key);
      continue;
    }
    try {
      it->second(item.second);
    } catch (const pybind11::cast_error&) {
      throw pybind11::value_error(absl::StrCat(what_, " option '", key, "' has the wrong type (",
                                               pybind11::str(pybind11::type::handle_of(item.second).attr("__name__"))
                                                   .cast<std::string>(),
                                               ")"));
    } catch (const pybind11::type_error& e) {
      throw pybind11::value_error(absl::StrCat(what_, " option '", key, "': ", e.what()));
    }
  }
  if (!unknown.empty()) {
    std::vector<std::string> known;
    for (const auto& [k, _] : setters_) known.push_back(k);
    throw pybind11::value_error(absl::StrCat("unknown ", what_, " option(s): ", absl::StrJoin(unknown, ", "),
                                             " (known: ", absl::StrJoin(known, ", "), ")"));
  }
}

double SecondsArg(pybind11::handle value, const char* name) {
  if (pybind11::isinstance<pybind11::int_>(value) || pybind11::isinstance<pybind11::float_>(value)) {
    const double v = value.cast<double>();
    if (!(v >= 0)) throw pybind11::value_error(absl::StrCat(name, " must be >= 0 seconds"));
    return v;
  }
  std::string text = pybind11::str(value).cast<std::string>();
  double scale = 1, v = 0;
  if (!text.empty() && (text.back() == 's' || text.back() == 'm' || text.back() == 'h')) {
    scale = text.back() == 'h' ? 3600 : text.back() == 'm' ? 60 : 1;
    text.pop_back();
  }
  if (!absl::SimpleAtod(text, &v) || !(v >= 0))
    throw pybind11::value_error(absl::StrCat(name, " must be seconds or like '15m' / '2h', got '",
                                             pybind11::str(value).cast<std::string>(), "'"));
  return v * scale;
}

namespace {

// Raises the Python exception for a status (GIL held).
void RaiseStatus(const absl::Status& s) {
  PyObject* type = PyExc_RuntimeError;
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      type = PyExc_ValueError;
      break;
    case absl::StatusCode::kNotFound:
      type = PyExc_FileNotFoundError;
      break;
    case absl::StatusCode::kPermissionDenied:
      type = PyExc_PermissionError;
      break;
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kAlreadyExists:
      type = PyExc_OSError;
      break;
    case absl::StatusCode::kUnimplemented:
      type = PyExc_NotImplementedError;
      break;
    default:
      break;
  }
  const std::string message(s.message());
  PyObject* text = PyUnicode_DecodeUTF8(message.data(), static_cast<Py_ssize_t>(message.size()), "replace");
  if (!text) return;
  PyObject* exc = PyObject_CallOneArg(type, text);
  Py_DECREF(text);
  if (!exc) return;  // the constructor failed: its error is set
  const std::string code = absl::StatusCodeToString(s.code());
  PyObject* code_obj = PyUnicode_FromStringAndSize(code.data(), static_cast<Py_ssize_t>(code.size()));
  if (code_obj) {
    PyObject_SetAttrString(exc, "status_code", code_obj);
    Py_DECREF(code_obj);
  }
  PyErr_SetObject(type, exc);
  Py_DECREF(exc);
}

}  // namespace
}  // namespace wfm::py

bool pybind11::detail::type_caster<wfm::py::Path>::load(handle src, bool) {
  PyObject* fs = PyOS_FSPath(src.ptr());
  if (!fs) {
    PyErr_Clear();
    return false;
  }
  object o = reinterpret_steal<object>(fs);
  if (PyUnicode_Check(fs)) {
    Py_ssize_t size = 0;
    const char* data = PyUnicode_AsUTF8AndSize(fs, &size);
    if (!data) {
      PyErr_Clear();
      return false;
    }
    value.value.assign(data, static_cast<size_t>(size));
    return true;
  }
  if (PyBytes_Check(fs)) {
    value.value.assign(PyBytes_AS_STRING(fs), static_cast<size_t>(PyBytes_GET_SIZE(fs)));
    return true;
  }
  return false;
}

PYBIND11_MODULE(_wfm, m) {
  m.doc() = "Native core of the `wfm` package (import `wfm`, not this module).";
  m.attr("__version__") = "0.1.0";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const wfm::py::StatusError& e) {
      wfm::py::RaiseStatus(e.status());
    }
  });
  // Submodules in registration order; within one, bindings by `order`.
  auto regs = wfm::py::Registry();
  std::stable_sort(regs.begin(), regs.end(), [](const auto& a, const auto& b) { return a.order < b.order; });
  std::map<std::string, py::module_> subs;
  py::list names;
  for (const auto& r : regs) {
    auto it = subs.find(r.submodule);
    if (it == subs.end()) {
      it = subs.emplace(r.submodule, m.def_submodule(r.submodule.c_str(), r.doc.c_str())).first;
      names.append(r.submodule);
    } else if (!r.doc.empty() && py::str(it->second.doc()).cast<std::string>().empty()) {
      it->second.doc() = r.doc;
    }
    r.fn(it->second);
  }
  m.attr("SUBMODULES") = py::tuple(names);
}
