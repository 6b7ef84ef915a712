// wfm.ar: the autoregressive world model (wfm/autoregressive): the network from a config (preset, json or dict) and
// weights (or a seeded random init), forward / logits with autograd, token generation with the CLI's sampling
// options and per-frame callbacks, Video2World / Text2World through a DV tokenizer codec (what `wfm ar generate`
// runs), and the teacher-forced training loss. Long calls release the GIL.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "wfm/autoregressive/config.h"
#include "wfm/autoregressive/generate.h"
#include "wfm/autoregressive/train.h"
#include "wfm/autoregressive/transformer.h"
#include "wfm/autoregressive/weights.h"
#include "wfm/autoregressive/world.h"
#include "wfm/core/runtime.h"
#include "wfm/core/status.h"
#include "train_options.h"
#include "wfm_py.h"

namespace wfm::py {
namespace {
namespace py = pybind11;
using namespace wfm::ar;  // NOLINT

ArConfig ConfigFrom(py::handle obj) {
  std::string json, name;
  if (ConfigArg(obj, &json, &name)) return Unwrap(ArConfig::FromJson(ParseJsonArg(json)));
  auto preset = ArConfig::Preset(name);
  if (preset.ok()) return *preset;
  if (name.size() > 5 && name.substr(name.size() - 5) == ".json") return Unwrap(ArConfig::FromJsonFile(name));
  absl::StatusOr<ArConfig> file = ArConfig::FromJsonFile(name);
  if (file.ok()) return *file;
  if (absl::IsNotFound(file.status()))
    throw StatusError(absl::NotFoundError(absl::StrCat("config '", name, "' is neither a file nor a preset (",
                                                       absl::StrJoin(ArConfig::PresetNames(), ", "), ")")));
  throw StatusError(file.status());
}

// Optional text conditioning from Python (embeddings [B, L, D], mask bool [B, L] or None).
std::optional<TextContext> Context(const std::optional<at::Tensor>& context, const std::optional<at::Tensor>& mask) {
  if (!context) {
    if (mask) throw py::value_error("context_mask given without context");
    return std::nullopt;
  }
  TextContext t{context->to(at::kFloat), mask ? mask->to(at::kBool) : at::Tensor()};
  if (t.embeddings.dim() == 2) t.embeddings = t.embeddings.unsqueeze(0);
  if (t.mask.defined() && t.mask.dim() == 1) t.mask = t.mask.unsqueeze(0);
  return t;
}

struct ArModel {
  ArTransformer net{nullptr};
  const ArConfig& config() const { return net->config; }
};

SamplingOptions Sampling(double temperature, int64_t top_k, double top_p) {
  return SamplingOptions{temperature, top_k, top_k > 0 ? 1.0 : top_p};
}

py::dict GenerationDict(const GenerationResult& g) {
  py::dict d;
  d["tokens"] = g.tokens;
  d["prompt_tokens"] = g.prompt_tokens;
  d["generated_tokens"] = g.generated_tokens;
  d["window_slides"] = g.window_slides;
  d["prefill_seconds"] = g.prefill_seconds;
  d["decode_seconds"] = g.decode_seconds;
  return d;
}

void Bind(py::module_& m) {
  m.def("preset_names", &ArConfig::PresetNames,
        "AR presets: 4B, 5B-Video2World, 12B, 13B-Video2World and the CPU-sized tiny / small (+ -v2w).");
  m.def(
      "config", [](py::object c) { return JsonToPy(ConfigFrom(c).ToJson().dump()); }, py::arg("config"),
      "Resolves a preset name, a json file (the reference params dict, or {'params': ...}) or a dict.");

  py::class_<ArModel> model(m, "ArModel",
                            "The Cosmos-Predict1 AR network (Llama-style decoder over video tokens; reference state-dict "
                            "names).");
  model.def(py::init([](py::object config, std::optional<Path> weights, uint64_t seed, const std::string& device,
                       const std::string& dtype, bool allow_missing, bool allow_unexpected) {
             ArConfig c = ConfigFrom(config);
             Check(c.Validate());
             c10::Device dev = Unwrap(ParseDevice(device));
             c10::ScalarType type = dtype == "auto" ? (dev.is_cuda() ? c.Dtype() : at::kFloat)
                                                    : ParseComputeDtype(dtype, dev.is_cuda());
             py::gil_scoped_release release;
             auto model = std::make_unique<ArModel>();
             model->net = Unwrap(CatchToStatus("building the AR network", [&]() -> absl::StatusOr<ArTransformer> {
               return ArTransformer(c);
             }));
             if (weights) {
               WeightLoadOptions o;
               o.allow_missing = allow_missing;
               o.allow_unexpected = allow_unexpected;
               Check(LoadWeights(*model->net, weights->value, o));
             } else {
               model->net->InitWeights(seed);
             }
             Check(CatchToStatus("moving the AR network", [&]() {
               model->net->to(dev, type);
               model->net->eval();
               return absl::OkStatus();
             }));
             return model;
           }),
           py::arg("config"), py::arg("weights") = py::none(), py::kw_only(), py::arg("seed") = 0,
           py::arg("device") = "cpu", py::arg("dtype") = "float32", py::arg("allow_missing") = false,
           py::arg("allow_unexpected") = false,
           "config: preset name, params json or dict. weights: safetensors / model.pt (strict; every problem in one\n"
           "ValueError), or None for the reference initialisation with `seed`. dtype 'auto': the config precision\n"
           "on CUDA, float32 on CPU. The model starts in eval mode.")
      .def_property_readonly("config", [](const ArModel& a) { return JsonToPy(a.config().ToJson().dump()); })
      .def_property_readonly("num_parameters", [](const ArModel& a) { return a.config().NumParameters(); })
      .def_property_readonly("vocab_size", [](const ArModel& a) { return a.config().vocab_size; })
      .def_property_readonly("latent_shape", [](const ArModel& a) { return a.config().video_latent_shape; },
                             "[T, H, W] of the token grid")
      .def_property_readonly("has_cross_attention", [](const ArModel& a) { return a.config().insert_cross_attn; })
      .def(
          "forward",
          [](ArModel& a, const at::Tensor& tokens, int64_t start, std::optional<at::Tensor> context,
             std::optional<at::Tensor> context_mask, bool last_only) {
            std::optional<TextContext> text = Context(context, context_mask);
            const ArConfig& c = a.config();
            if (tokens.dim() != 2 || tokens.size(1) == 0 || tokens.scalar_type() != at::kLong)
              throw py::value_error("tokens must be int64 [B, N] with N >= 1");
            if (start < 0 || start + tokens.size(1) > c.PositionTableLength())
              throw py::value_error(absl::StrCat("positions [", start, ", ", start + tokens.size(1),
                                                 ") exceed the model's ", c.PositionTableLength(), " positions"));
            Check(CheckTokenRange(tokens, c.EmbeddingVocab(), "tokens"));
            if (c.insert_cross_attn && !text) throw py::value_error("this model has cross-attention: give context");
            if (text) Check(CheckTextContext(c, *text, tokens.size(0)));
            py::gil_scoped_release release;
            return Unwrap(CatchToStatus("AR forward", [&]() -> absl::StatusOr<at::Tensor> {
              return a.net->forward(tokens, start, nullptr, text ? &*text : nullptr, last_only);
            }));
          },
          py::arg("tokens"), py::arg("start") = 0, py::kw_only(), py::arg("context") = py::none(),
          py::arg("context_mask") = py::none(), py::arg("last_only") = false,
          "tokens int64 [B, N] at positions [start, start+N) -> logits [B, N, vocab] (causal; [B, 1, vocab] with\n"
          "last_only). context [B or 1, L, context_dim] (+ mask bool [B, L]) for cross-attention models. Builds an\n"
          "autograd graph unless called under torch.no_grad().")
      .def(
          "loss",
          [](ArModel& a, const at::Tensor& tokens, std::optional<at::Tensor> context,
             std::optional<at::Tensor> context_mask, int64_t condition_frames, double z_loss, double text_dropout,
             uint64_t seed) {
            std::optional<TextContext> text = Context(context, context_mask);
            ArLossOptions o;
            o.condition_frames = condition_frames;
            o.z_loss = z_loss;
            o.text_dropout = text_dropout;
            ArLossOutput out;
            {
              py::gil_scoped_release release;
              at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
              out = Unwrap(TeacherForcedLoss(*a.net, tokens, text ? &*text : nullptr, o, &gen));
            }
            py::dict d;
            d["loss"] = out.loss;
            d["ce"] = out.ce;
            d["z"] = out.z;
            d["accuracy"] = out.accuracy;
            d["targets"] = out.targets;
            return d;
          },
          py::arg("tokens"), py::kw_only(), py::arg("context") = py::none(), py::arg("context_mask") = py::none(),
          py::arg("condition_frames") = 1, py::arg("z_loss") = 1e-4, py::arg("text_dropout") = 0.0,
          py::arg("seed") = 0,
          "Teacher-forced next-token loss of the reference training (cross-entropy after the condition frames +\n"
          "z-loss): {'loss': differentiable scalar, 'ce', 'z', 'accuracy', 'targets'}. tokens int64 [B, t, h, w].")
      .def(
          "generate_tokens",
          [](ArModel& a, const at::Tensor& prompt, int64_t total_frames, std::optional<at::Tensor> context,
             std::optional<at::Tensor> context_mask, uint64_t seed, int64_t num_samples, double temperature,
             int64_t top_k, double top_p, double guidance, int64_t window_context_frames, py::object on_frame,
             bool progress) {
            std::optional<TextContext> text = Context(context, context_mask);
            std::optional<TextContext> uncond;
            if (guidance != 1.0) {
              if (!text) throw py::value_error("guidance needs a text-conditioned model and context");
              uncond = TextContext{at::zeros_like(text->embeddings), text->mask};
            }
            GenerationOptions o;
            o.sampling = Sampling(temperature, top_k, top_p);
            o.num_samples = num_samples;
            o.seed = seed;
            o.guidance = guidance;
            o.window_context_frames = window_context_frames;
            o.show_progress = progress;
            PyCallback cb(std::move(on_frame));
            if (cb) {
              o.on_frame = [&cb](int64_t frame, const at::Tensor& tokens) -> absl::Status {
                if (!cb.Call(frame, tokens)) return absl::CancelledError("the Python on_frame callback raised");
                return absl::OkStatus();
              };
            }
            absl::StatusOr<GenerationResult> r;
            {
              py::gil_scoped_release release;
              at::NoGradGuard no_grad;
              r = GenerateTokens(*a.net, prompt, total_frames, text ? &*text : nullptr, o,
                                 uncond ? &*uncond : nullptr);
            }
            cb.RethrowIfFailed();
            return GenerationDict(Unwrap(std::move(r)));
          },
          py::arg("prompt"), py::arg("total_frames"), py::kw_only(), py::arg("context") = py::none(),
          py::arg("context_mask") = py::none(), py::arg("seed") = 0, py::arg("num_samples") = 1,
          py::arg("temperature") = 1.0, py::arg("top_k") = 0, py::arg("top_p") = 0.8, py::arg("guidance") = 1.0,
          py::arg("window_context_frames") = 0, py::arg("on_frame") = py::none(), py::arg("progress") = false,
          "Generates latent frames after `prompt` (int64 [P] or [1, P], whole latent frames in raster order; empty\n"
          "for Text2World models) up to total_frames, num_samples futures with per-sample seeds (sample i of a\n"
          "seed is the same whatever num_samples). temperature 0 = greedy; top_k > 0 replaces top_p. guidance != 1:\n"
          "classifier-free guidance against a zero context. on_frame(frame_index, tokens int64 [B, h, w]) after\n"
          "every latent frame. Returns {'tokens': int64 [B, total_frames, h, w], 'prompt_tokens', ...}.")
      .def(
          "save", [](ArModel& a, const Path& path) { Check(SaveWeights(*a.net, path.value)); }, py::arg("path"),
          py::call_guard<py::gil_scoped_release>(), "Writes the weights (reference names) as safetensors, atomically.")
      .def("__repr__", [](const ArModel& a) {
        const ArConfig& c = a.config();
        return absl::StrCat("ArModel(dim=", c.dim, ", layers=", c.n_layers, ", vocab=", c.vocab_size,
                            ", latent=", c.video_latent_shape[0], "x", c.video_latent_shape[1], "x",
                            c.video_latent_shape[2], c.insert_cross_attn ? ", cross-attention" : "", ")");
      });

  DefModuleMethods(model, [](ArModel& a) -> ArTransformerImpl& { return *a.net; },
                   "Parameters under the reference names, shared with the network (no copy).");

  py::class_<VideoTokenCodec>(m, "TokenCodec", "A discrete video tokenizer as the AR world model uses it.")
      .def_property_readonly("vocab_size", &VideoTokenCodec::vocab_size)
      .def_property_readonly("temporal_compression", &VideoTokenCodec::temporal_compression)
      .def_property_readonly("spatial_compression", &VideoTokenCodec::spatial_compression)
      .def(
          "encode", [](VideoTokenCodec& c, const at::Tensor& video) { return Unwrap(c.Encode(video)); },
          py::arg("video"), py::call_guard<py::gil_scoped_release>(),
          "float [1, 3, T, H, W] in [-1, 1] -> int64 [1, t, h, w]")
      .def(
          "decode", [](VideoTokenCodec& c, const at::Tensor& indices) { return Unwrap(c.Decode(indices)); },
          py::arg("indices"), py::call_guard<py::gil_scoped_release>(),
          "int64 [B, t, h, w] -> float [B, 3, T, H, W] in [-1, 1]");
  m.def(
      "load_tokenizer_codec",
      [](py::object config, std::optional<Path> weights, const std::string& device) {
        std::string json, name;
        if (ConfigArg(config, &json, &name))
          throw py::type_error("load_tokenizer_codec: config must be a preset name or a config.json path");
        py::gil_scoped_release release;
        return Unwrap(LoadTokenizerCodec(name, weights ? weights->value : "", device));
      },
      py::arg("config"), py::arg("weights") = py::none(), py::kw_only(), py::arg("device") = "cpu",
      "The DV tokenizer for generate(): config a preset ('DV8x16x16') or config.json, weights a checkpoint (None:\n"
      "random weights, for smoke tests).");

  m.def(
      "generate",
      [](ArModel& a, VideoTokenCodec& codec, std::optional<at::Tensor> frames, int64_t num_input_frames,
         int64_t num_frames, std::optional<at::Tensor> context, std::optional<at::Tensor> context_mask, uint64_t seed,
         int64_t num_samples, double temperature, int64_t top_k, double top_p, double guidance,
         int64_t window_context_frames, py::object on_frames, bool progress) {
        std::optional<TextContext> text = Context(context, context_mask);
        std::optional<TextContext> uncond;
        if (guidance != 1.0) {
          if (!text) throw py::value_error("guidance needs a text-conditioned model and context");
          uncond = TextContext{at::zeros_like(text->embeddings), text->mask};
        }
        WorldOptions o;
        o.num_input_frames = frames ? num_input_frames : 0;
        o.num_frames = num_frames;
        o.generation.sampling = Sampling(temperature, top_k, top_p);
        o.generation.num_samples = num_samples;
        o.generation.seed = seed;
        o.generation.guidance = guidance;
        o.generation.window_context_frames = window_context_frames;
        o.generation.show_progress = progress;
        PyCallback cb(std::move(on_frames));
        if (cb) {
          o.on_frames = [&cb](const at::Tensor& f) -> absl::Status {
            if (!cb.Call(f)) return absl::CancelledError("the Python on_frames callback raised");
            return absl::OkStatus();
          };
        }
        absl::StatusOr<WorldResult> r;
        {
          py::gil_scoped_release release;
          at::NoGradGuard no_grad;
          r = GenerateWorld(*a.net, codec, frames ? *frames : at::Tensor(), text ? &*text : nullptr, o,
                            uncond ? &*uncond : nullptr);
        }
        cb.RethrowIfFailed();
        WorldResult w = Unwrap(std::move(r));
        py::dict d = GenerationDict(w.generation);
        d["videos"] = w.videos;
        d["tokens"] = w.tokens;
        d["encode_seconds"] = w.encode_seconds;
        d["decode_seconds"] = w.decode_seconds;
        return d;
      },
      py::arg("model"), py::arg("codec"), py::arg("frames") = py::none(), py::kw_only(),
      py::arg("num_input_frames") = 9, py::arg("num_frames") = 33, py::arg("context") = py::none(),
      py::arg("context_mask") = py::none(), py::arg("seed") = 0, py::arg("num_samples") = 1,
      py::arg("temperature") = 1.0, py::arg("top_k") = 0, py::arg("top_p") = 0.8, py::arg("guidance") = 1.0,
      py::arg("window_context_frames") = 0, py::arg("on_frames") = py::none(), py::arg("progress") = false,
      "Video2World (what `wfm ar generate` runs): frames uint8 [T, H, W, 3] (the LAST num_input_frames are the\n"
      "prompt; resized to cover the model size and centre-cropped), or None for Text2World (a text_to_video\n"
      "model). Returns {'videos': uint8 [B, num_frames, H, W, 3], 'tokens': int64 [B, t, h, w], timings}.\n"
      "on_frames(uint8 [B, t, H, W, 3]) streams pixel frames as they are decoded.");

  m.def(
      "tokenize_video",
      [](VideoTokenCodec& codec, const Path& path, int64_t clip_frames, int64_t height, int64_t width, double fps,
         int64_t max_clips) {
        TokenizeOptions o;
        o.clip_frames = clip_frames;
        o.height = height;
        o.width = width;
        o.fps = fps;
        o.max_clips = max_clips;
        py::gil_scoped_release release;
        return Unwrap(TokenizeVideo(codec, path.value, o));
      },
      py::arg("codec"), py::arg("path"), py::kw_only(), py::arg("clip_frames") = 33, py::arg("height") = 640,
      py::arg("width") = 1024, py::arg("fps") = 0.0, py::arg("max_clips") = 0,
      "Training data (what `wfm ar tokenize` does per video): consecutive clips of clip_frames (1 + k*Tc) frames,\n"
      "resized to cover height x width and centre-cropped, tokenized: a list of int64 [t, h, w].");
  m.def(
      "train",
      [](py::object progress, py::kwargs kwargs) {
        ArTrainOptions o;
        o.loss.text_dropout = 0.1;  // the CLI's default
        py::object config;
        int64_t vocab_size = 0, max_seq_len = 0, seed = 0;
        std::vector<int64_t> latent_shape;
        std::vector<std::string> shards;
        bool no_resume = false, quiet = true;
        OptionTable t("wfm.ar.train");
        t.Add("config", [&](py::handle v) { config = py::reinterpret_borrow<py::object>(v); })
            .Add("vocab_size", &vocab_size)
            .Add("latent_shape",
                 [&](py::handle v) {
                   if (py::isinstance<py::str>(v)) {
                     latent_shape.clear();
                     for (absl::string_view piece : absl::StrSplit(v.cast<std::string>(), ','))
                       latent_shape.push_back(std::stoll(std::string(piece)));
                   } else {
                     latent_shape = v.cast<std::vector<int64_t>>();
                   }
                 })
            .Add("max_seq_len", &max_seq_len)
            .Add("init_weights", &o.init_weights)
            .Add("tokens", &o.tokens_dir)
            .Add("videos", &o.videos)
            .Add("shards", &shards)
            .Add("synthetic", &o.synthetic)
            .Add("tokenizer_config", &o.tokenizer_config)
            .Add("tokenizer_weights", &o.tokenizer_weights)
            .Add("random_tokenizer", &o.random_tokenizer)
            .Add("frames", &o.frames)
            .Add("condition_frames", &o.loss.condition_frames)
            .Add("fps", &o.fps)
            .Add("val_fraction", &o.val_fraction)
            .Add("val_samples", &o.val_samples)
            .Add("text_encoder", &o.text_encoder)
            .Add("train_text_encoder", &o.train_text_encoder)
            .Add("text_dropout", &o.loss.text_dropout)
            .Add("z_loss", &o.loss.z_loss)
            .Add("output", &o.output_dir)
            .Add("no_resume", &no_resume)
            .Add("seed", &seed)
            .Add("quiet", &quiet);
        AddSharedTrainOptions(t, o);
        t.Apply(kwargs);
        if (config.is_none())
          throw py::value_error("wfm.ar.train: 'config' (a preset, params json or dict) is required");
        if (o.output_dir.empty()) throw py::value_error("wfm.ar.train: 'output' (a run directory) is required");
        if (int(!o.tokens_dir.empty()) + int(!o.videos.empty()) + int(!shards.empty()) + int(o.synthetic) != 1)
          throw py::value_error(
              "wfm.ar.train: give exactly one data source: tokens=DIR, videos=[...], shards=[...] or synthetic=True");
        o.config = ConfigFrom(config);
        if (vocab_size > 0) o.config.vocab_size = vocab_size;
        if (!latent_shape.empty()) {
          if (latent_shape.size() != 3 || *std::min_element(latent_shape.begin(), latent_shape.end()) < 1)
            throw py::value_error("wfm.ar.train: latent_shape must be 3 positive sizes [T, H, W]");
          o.config.video_latent_shape = latent_shape;
        }
        if (max_seq_len > 0) o.config.max_seq_len = max_seq_len;
        o.config.max_seq_len = std::max(o.config.max_seq_len, o.config.VideoTokens() + (o.config.HasBov() ? 1 : 0));
        o.seed = static_cast<uint64_t>(seed);
        o.resume = !no_resume;
        o.quiet = quiet;
        o.command_line = "wfm.ar.train(**" + py::repr(kwargs).cast<std::string>() + ")";
        const ArTrainResult a = RunWithProgress(std::move(progress), "steps", [&]() -> absl::StatusOr<ArTrainResult> {
          if (!shards.empty()) {
            WFM_ASSIGN_OR_RETURN(o.videos, ShardClipSources(shards, o.output_dir, false), "shards");
          }
          return TrainArModel(o);
        });
        py::dict d;
        d["start_step"] = a.start_step;
        d["steps"] = a.steps;
        d["train_seconds"] = a.train_seconds;
        d["interrupted"] = a.interrupted;
        d["time_budget_reached"] = a.time_budget_reached;
        d["first_loss"] = a.first_loss;
        d["last_loss"] = a.last_loss;
        d["val_ce"] = a.val_ce;
        d["val_accuracy"] = a.val_accuracy;
        d["val_rollout_match"] = a.val_rollout_match;
        d["weights_path"] = a.weights_path;
        d["ema_weights_path"] = a.ema_weights_path;
        d["config_path"] = a.config_path;
        d["text_encoder_path"] = a.text_encoder_path;
        return d;
      },
      py::kw_only(), py::arg("progress") = py::none(),
      "`wfm ar train` in process (ar::TrainArModel, the function the CLI calls): the options are the CLI flags\n"
      "with '_' for '-' (config, output, synthetic / tokens / videos / shards, steps, batch_size, lr, ..., see\n"
      "`wfm ar train --help`; flags are booleans, max_time seconds or '15m'; config may also be a dict). shards:\n"
      "curated webdataset shards (*.tar or folders), extracted once to output/shard_videos (clips + captions) and\n"
      "tokenized on the fly like videos (tokenizer_config / tokenizer_weights). Runs with\n"
      "the GIL released and resumes from output/checkpoints like the CLI (no_resume=True starts fresh). quiet\n"
      "(default True) hides the progress line. progress(done, total, info) is called after every step of this\n"
      "call (total = steps left at the start; info: label, unit, status, finished); if it raises, training stops\n"
      "as on Ctrl-C (a checkpoint is written) and the exception propagates. Returns the run summary (steps,\n"
      "first/last loss, held-out ce / accuracy / rollout match, weight and config paths).");
  m.def(
      "moving_bar_tokens",
      [](int64_t batch, int64_t frames, int64_t height, int64_t width, int64_t vocab, uint64_t seed) {
        at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
        return MovingBarTokens(batch, frames, height, width, vocab, gen);
      },
      py::arg("batch"), py::arg("frames"), py::arg("height"), py::arg("width"), py::arg("vocab"), py::arg("seed") = 0,
      "A synthetic token process (a bar moving one column per latent frame): int64 [B, t, h, w] for smoke training.");
}

}  // namespace
WFM_PY_BINDINGS(ar, 400, "The autoregressive world model (Cosmos-Predict1 AR).", Bind);
}  // namespace wfm::py
