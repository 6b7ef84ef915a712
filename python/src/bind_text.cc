// wfm.text: the text encoders that condition the world models (wfm/core/text): Hugging Face T5 / ByT5
// directories, the built-in trainable encoder (create / save / load), the on-disk embedding cache, and the text
// tokenisers (SentencePiece through the dlopen'ed shim, bytes). Embeddings come back as torch tensors; the
// encoders' weights are exposed as their own tensors (state_dict / parameters) so the built-in encoder trains from
// Python. Encoding releases the GIL.
#include <torch/nn/module.h>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "wfm/core/text/builtin_encoder.h"
#include "wfm/core/text/embedding_cache.h"
#include "wfm/core/text/t5.h"
#include "wfm/core/text/text_encoder.h"
#include "wfm/core/text/tokenizer.h"
#include "wfm_py.h"

namespace wfm::py {
namespace {
namespace py = pybind11;
using namespace wfm::text;  // NOLINT
using GilRelease = py::call_guard<py::gil_scoped_release>;

// Lets a Python-owned encoder be wrapped by CachedTextEncoder (which takes ownership of a unique_ptr).
class SharedEncoder : public TextEncoder {
 public:
  explicit SharedEncoder(std::shared_ptr<TextEncoder> e) : e_(std::move(e)) {}
  absl::StatusOr<TextEmbeddings> Encode(const std::vector<std::string>& prompts) override { return e_->Encode(prompts); }
  int64_t dim() const override { return e_->dim(); }
  int64_t max_length() const override { return e_->max_length(); }
  std::string model_id() const override { return e_->model_id(); }
  c10::Device device() const override { return e_->device(); }
  std::shared_ptr<torch::nn::Module> module() override { return e_->module(); }
  const std::shared_ptr<TextEncoder>& inner() const { return e_; }

 private:
  std::shared_ptr<TextEncoder> e_;
};

std::vector<std::string> Prompts(py::handle obj) {
  if (py::isinstance<py::str>(obj)) return {obj.cast<std::string>()};
  return obj.cast<std::vector<std::string>>();
}

// The T5 encoder behind `e` (through cache/sharing wrappers), or null.
T5TextEncoder* AsT5(TextEncoder* e) {
  while (true) {
    if (auto* t5 = dynamic_cast<T5TextEncoder*>(e)) return t5;
    if (auto* s = dynamic_cast<SharedEncoder*>(e)) {
      e = s->inner().get();
    } else if (auto* c = dynamic_cast<CachedTextEncoder*>(e)) {
      e = &c->wrapped();
    } else {
      return nullptr;
    }
  }
}

T5TextEncoder& RequireT5(TextEncoder& e, const char* what) {
  T5TextEncoder* t5 = AsT5(&e);
  if (!t5) throw py::value_error(absl::StrCat(what, ": this encoder is not a T5 / built-in encoder"));
  return *t5;
}

torch::nn::Module& RequireModule(TextEncoder& e) {
  std::shared_ptr<torch::nn::Module> m = e.module();
  if (!m) throw py::value_error("this text encoder has no module");
  return *m;  // owned by the encoder, which the Python object keeps alive
}

py::tuple Pair(const TextEmbeddings& e) { return py::make_tuple(e.embeddings, e.mask); }

void Bind(py::module_& m) {
  py::class_<Tokenizer, std::shared_ptr<Tokenizer>>(m, "TextTokenizer",
                                                    "A text tokeniser: SentencePiece (T5's spiece.model) or bytes (ByT5).")
      .def("encode", [](const Tokenizer& t, const std::string& text) { return Unwrap(t.Encode(text)); },
           py::arg("text"), "Ids of `text` (no special tokens).")
      .def("decode", [](const Tokenizer& t, const std::vector<int32_t>& ids) { return Unwrap(t.Decode(ids)); },
           py::arg("ids"))
      .def_property_readonly("vocab_size", &Tokenizer::vocab_size)
      .def_property_readonly("eos_id", &Tokenizer::eos_id)
      .def_property_readonly("pad_id", &Tokenizer::pad_id)
      .def_property_readonly("name", &Tokenizer::name)
      .def_property_readonly("fingerprint", &Tokenizer::fingerprint)
      .def("__repr__", [](const Tokenizer& t) { return absl::StrCat("TextTokenizer(", t.name(), ")"); });
  m.def("byte_tokenizer", []() -> std::shared_ptr<Tokenizer> { return std::make_shared<ByteTokenizer>(); },
        "The ByT5 byte tokeniser (id = byte + 3; pad 0, eos 1, unk 2).");
  m.def(
      "load_sentencepiece",
      [](const Path& path, int32_t fallback_pad_id) -> std::shared_ptr<Tokenizer> {
        return Unwrap(SentencePieceTokenizer::Load(path.value, fallback_pad_id));
      },
      py::arg("path"), py::arg("fallback_pad_id") = 0, GilRelease(),
      "Reads a SentencePiece model (spiece.model). Needs the sentencepiece shim (libwfm_sentencepiece.so).");
  m.def(
      "tokenize_batch",
      [](const Tokenizer& t, py::object prompts, int64_t max_length, bool add_eos, bool pad_to_max_length) {
        TokenizeOptions o;
        o.max_length = max_length;
        o.add_eos = add_eos;
        o.pad_to_max_length = pad_to_max_length;
        std::vector<std::string> p = Prompts(prompts);
        TokenBatch b;
        {
          py::gil_scoped_release release;
          b = Unwrap(TokenizeBatch(t, p, o));
        }
        return py::make_tuple(b.ids, b.mask);
      },
      py::arg("tokenizer"), py::arg("prompts"), py::kw_only(), py::arg("max_length") = 512, py::arg("add_eos") = true,
      py::arg("pad_to_max_length") = true,
      "Hugging Face T5 convention: ids + EOS, truncated to max_length, padded -> (ids int64 [B, L], mask bool [B, L]).");

  py::class_<TextEncoder, std::shared_ptr<TextEncoder>> encoder(
      m, "TextEncoder",
      "A text encoder: encode(prompts) -> (embeddings float32 [B, L, D], zero past each prompt; mask bool [B, L]).");
  DefModuleMethods(encoder, [](TextEncoder& e) -> torch::nn::Module& { return RequireModule(e); },
                   "The encoder's tensors (Hugging Face names), shared with it (no copy).");
  encoder.def(
          "encode",
          [](TextEncoder& e, py::object prompts) {
            std::vector<std::string> p = Prompts(prompts);
            TextEmbeddings out;
            {
              py::gil_scoped_release release;
              out = Unwrap(e.Encode(p));
            }
            return Pair(out);
          },
          py::arg("prompts"),
          "prompts: a list of str (or one str). Trainable encoders build an autograd graph (unless in torch.no_grad).")
      .def(
          "tokenize",
          [](TextEncoder& e, py::object prompts) {
            T5TextEncoder& t5 = RequireT5(e, "tokenize");
            TokenizeOptions o;
            o.max_length = t5.max_length();
            o.pad_to_max_length = t5.options().pad_to_max_length;
            std::vector<std::string> p = Prompts(prompts);
            TokenBatch b;
            {
              py::gil_scoped_release release;
              b = Unwrap(TokenizeBatch(t5.tokenizer(), p, o));
            }
            return py::make_tuple(b.ids, b.mask);
          },
          py::arg("prompts"), "The encoder's own tokenisation: (ids int64 [B, L], mask bool [B, L]).")
      .def(
          "encode_tokens",
          [](TextEncoder& e, const at::Tensor& ids, const at::Tensor& mask) {
            T5TextEncoder& t5 = RequireT5(e, "encode_tokens");
            TextEmbeddings out;
            {
              py::gil_scoped_release release;
              out = Unwrap(t5.EncodeTokens(ids, mask));
            }
            return Pair(out);
          },
          py::arg("ids"), py::arg("mask"), "The encoder on already tokenised input -> (embeddings, mask).")
      .def_property_readonly("dim", &TextEncoder::dim)
      .def_property_readonly("max_length", &TextEncoder::max_length)
      .def_property_readonly("model_id", &TextEncoder::model_id)
      .def_property_readonly("device", &TextEncoder::device)
      .def_property_readonly("config",
                             [](TextEncoder& e) { return JsonToPy(RequireT5(e, "config").config().ToJson().dump()); },
                             "The T5 config (Hugging Face keys).")
      .def_property_readonly("text_tokenizer",
                             [](TextEncoder& e) -> const Tokenizer& { return RequireT5(e, "text_tokenizer").tokenizer(); },
                             py::return_value_policy::reference_internal)
      .def(
          "save",
          [](TextEncoder& e, const Path& path) {
            T5TextEncoder& t5 = RequireT5(e, "save");
            py::gil_scoped_release release;
            Check(SaveBuiltinTextEncoder(t5, path.value));
          },
          py::arg("path"), "Writes weights + config + tokenizer into one safetensors file (built-in format).")
      .def("__repr__", [](TextEncoder& e) {
        return absl::StrCat("TextEncoder('", e.model_id(), "', dim=", e.dim(), ", max_length=", e.max_length(), ")");
      });

  py::class_<CachedTextEncoder, TextEncoder, std::shared_ptr<CachedTextEncoder>>(
      m, "CachedTextEncoder",
      "Serves prompts from an on-disk EmbeddingCache (keyed by model_id and prompt) and encodes only the misses.")
      .def(py::init([](std::shared_ptr<TextEncoder> encoder, const Path& cache_dir, bool pad_to_max_length) {
             auto c = std::make_shared<CachedTextEncoder>(std::make_unique<SharedEncoder>(std::move(encoder)),
                                                          cache_dir.value);
             c->set_pad_to_max_length(pad_to_max_length);
             return c;
           }),
           py::arg("encoder"), py::arg("cache_dir"), py::kw_only(), py::arg("pad_to_max_length") = true)
      .def_property_readonly("hits", &CachedTextEncoder::hits)
      .def_property_readonly("misses", &CachedTextEncoder::misses)
      .def_property_readonly("cache_dir", [](const CachedTextEncoder& c) { return c.cache().dir(); });

  m.def(
      "load_text_encoder",
      [](const Path& path, int64_t max_length, const std::string& device, const std::string& dtype,
         bool pad_to_max_length) -> std::shared_ptr<TextEncoder> {
        LoadTextEncoderOptions o;
        o.max_length = max_length;
        o.device = device;
        o.dtype = dtype;
        o.pad_to_max_length = pad_to_max_length;
        return Unwrap(LoadTextEncoder(path.value, o));
      },
      py::arg("path"), py::kw_only(), py::arg("max_length") = 0, py::arg("device") = "cpu",
      py::arg("dtype") = "float32", py::arg("pad_to_max_length") = true, GilRelease(),
      "Opens a text encoder: a Hugging Face T5 / ByT5 directory (config.json, weights, spiece.model) or a built-in\n"
      "encoder .safetensors. max_length 0 keeps the default (512 for T5, as saved for built-in). Frozen.");
  m.def(
      "create_builtin_encoder",
      [](int64_t d_model, int64_t num_layers, int64_t num_heads, int64_t d_kv, int64_t d_ff, double dropout_rate,
         int64_t max_length, const std::string& sentencepiece_model, uint64_t seed, const std::string& device,
         bool pad_to_max_length) -> std::shared_ptr<TextEncoder> {
        BuiltinTextEncoderOptions o;
        o.d_model = d_model;
        o.num_layers = num_layers;
        o.num_heads = num_heads;
        o.d_kv = d_kv;
        o.d_ff = d_ff;
        o.dropout_rate = dropout_rate;
        o.max_length = max_length;
        o.sentencepiece_model = sentencepiece_model;
        o.seed = seed;
        o.device = device;
        o.pad_to_max_length = pad_to_max_length;
        return Unwrap(CreateBuiltinTextEncoder(o));
      },
      py::kw_only(), py::arg("d_model") = 256, py::arg("num_layers") = 4, py::arg("num_heads") = 4,
      py::arg("d_kv") = 64, py::arg("d_ff") = 512, py::arg("dropout_rate") = 0.1, py::arg("max_length") = 256,
      py::arg("sentencepiece_model") = "", py::arg("seed") = 0, py::arg("device") = "cpu",
      py::arg("pad_to_max_length") = true, GilRelease(),
      "A freshly initialised, trainable built-in encoder (small T5 over bytes, or over a SentencePiece model).");
  m.def(
      "load_builtin_encoder",
      [](const Path& path, const std::string& device, bool trainable, int64_t max_length,
         bool pad_to_max_length) -> std::shared_ptr<TextEncoder> {
        LoadBuiltinOptions o;
        o.device = device;
        o.trainable = trainable;
        o.max_length = max_length;
        o.pad_to_max_length = pad_to_max_length;
        return Unwrap(LoadBuiltinTextEncoder(path.value, o));
      },
      py::arg("path"), py::kw_only(), py::arg("device") = "cpu", py::arg("trainable") = true,
      py::arg("max_length") = 0, py::arg("pad_to_max_length") = true, GilRelease(),
      "Loads a built-in encoder file (strictly); trainable=True builds autograd graphs in encode().");

  py::class_<EmbeddingCache>(m, "EmbeddingCache",
                             "On-disk cache DIR/<k0k1>/<key>.safetensors of [n, D] embeddings keyed by (model_id, prompt).")
      .def(py::init([](const Path& dir) { return EmbeddingCache(dir.value); }), py::arg("dir"))
      .def_property_readonly("dir", &EmbeddingCache::dir)
      .def("path_for", &EmbeddingCache::PathFor, py::arg("model_id"), py::arg("prompt"))
      .def(
          "get",
          [](const EmbeddingCache& c, const std::string& model_id, const std::string& prompt) -> py::object {
            std::optional<at::Tensor> t;
            {
              py::gil_scoped_release release;
              t = Unwrap(c.Get(model_id, prompt));
            }
            if (!t) return py::none();
            return py::cast(*t);
          },
          py::arg("model_id"), py::arg("prompt"), "float32 [n, D], or None on a miss (a corrupt entry raises OSError).")
      .def(
          "put",
          [](const EmbeddingCache& c, const std::string& model_id, const std::string& prompt, const at::Tensor& e) {
            Check(c.Put(model_id, prompt, e));
          },
          py::arg("model_id"), py::arg("prompt"), py::arg("embeddings"), GilRelease());
}

}  // namespace
WFM_PY_BINDINGS(text, 200, "Text encoders for conditioning: T5 / ByT5, the built-in encoder, embedding cache.", Bind);
}  // namespace wfm::py
