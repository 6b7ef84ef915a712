// wfm.curation: shot detection (a file or frames in memory), the whole curation pipeline (`wfm curate`) run from
// a dict of options named like the CLI flags, and webdataset shards: reading samples (key, files, decoded video,
// JSON metadata) with rank/epoch/shuffle splitting, and writing tars. The pure-Python torch IterableDataset over
// these readers is wfm.curation.ShardDataset (python/wfm/_curation_data.py). Long calls release the GIL.
#include <algorithm>
#include <functional>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "wfm/core/file_util.h"
#include "wfm/curation/models.h"
#include "wfm/curation/pipeline.h"
#include "wfm/curation/shot_detection.h"
#include "wfm/curation/tokenizer_features.h"
#include "wfm/curation/webdataset.h"
#include "wfm_py.h"

namespace wfm::py {
namespace {
namespace py = pybind11;
using namespace wfm::curation;  // NOLINT
using GilRelease = py::call_guard<py::gil_scoped_release>;

py::object Json(const nlohmann::json& j) { return JsonToPy(j.dump()); }

ShotDetectorOptions ShotOptions(const std::string& method, const std::string& transnet_model, double threshold,
                                const std::string& device) {
  ShotDetectorOptions o;
  o.method = method;
  o.transnet.model_path = transnet_model;
  o.transnet.threshold = threshold;
  o.transnet.device = device;
  return o;
}

// "4M", "800k", 4000000 -> bits/s.
int64_t Bitrate(py::handle v) {
  if (py::isinstance<py::int_>(v)) return v.cast<int64_t>();
  std::string text = v.cast<std::string>();
  double scale = 1;
  if (!text.empty() && (text.back() == 'M' || text.back() == 'm')) scale = 1e6, text.pop_back();
  else if (!text.empty() && (text.back() == 'k' || text.back() == 'K')) scale = 1e3, text.pop_back();
  double d = 0;
  if (!absl::SimpleAtod(text, &d) || d < 0) throw py::value_error("bad bitrate '" + v.cast<std::string>() + "'");
  return static_cast<int64_t>(d * scale);
}

// Models named in a curate config, kept alive while the pipeline runs.
struct CurateModels {
  std::unique_ptr<ClipScorer> scorer;
  std::unique_ptr<ClipEmbedder> embedder;
  std::unique_ptr<Captioner> captioner;
};

// A curate config argument: a dict, a JSON object string, or the path of a JSON file (-> a dict).
py::dict CurateConfig(py::handle config) {
  if (py::isinstance<py::dict>(config)) return py::reinterpret_borrow<py::dict>(config);
  std::string text, source = "config";
  const bool is_str = py::isinstance<py::str>(config);
  if (is_str && absl::StartsWith(absl::StripLeadingAsciiWhitespace(config.cast<std::string>()), "{")) {
    text = config.cast<std::string>();
  } else if (is_str || py::isinstance<py::bytes>(config) || py::hasattr(config, "__fspath__")) {
    source = config.cast<Path>().value;
    absl::StatusOr<std::string> file = ReadFile(source);
    if (!file.ok()) {
      if (absl::IsNotFound(file.status()))
        throw StatusError(absl::NotFoundError(absl::StrCat("curate config '", source,
                                                           "' is neither a JSON object nor an existing file")));
      throw StatusError(file.status());
    }
    text = *std::move(file);
  } else {
    throw py::value_error(absl::StrCat("curate config must be a dict, a JSON object string or a JSON file path, not ",
                                       py::str(py::type::handle_of(config).attr("__name__")).cast<std::string>()));
  }
  py::object parsed;
  try {
    parsed = JsonToPy(text);
  } catch (py::error_already_set& e) {
    throw py::value_error(absl::StrCat(source, ": not valid JSON (", e.what(), ")"));
  }
  if (!py::isinstance<py::dict>(parsed))
    throw py::value_error(absl::StrCat(source, ": the curate config must be a JSON object"));
  return parsed;
}

// The options of `wfm curate` from a dict whose keys are the CLI flags with '_' for '-' (see docs/python.md).
CurateOptions CurateFromDict(const py::dict& cfg, CurateModels* models) {
  CurateOptions o;
  AnalysisOptions& a = o.analysis;
  FilterOptions& f = a.filters;
  TranscodeOptions& t = o.transcode;
  std::string scorer_model, embed_model, caption_model, device = "cpu";
  int model_w = 224, model_h = 224;
  TokenizerSpec tok;
  bool latents = false, tokenizer_embed = false;
  using Setter = std::function<void(py::handle)>;
  auto str = [](std::string* p) -> Setter { return [p](py::handle v) { *p = v.cast<std::string>(); }; };
  auto num = [](auto* p) -> Setter {
    return [p](py::handle v) { *p = v.cast<std::remove_pointer_t<decltype(p)>>(); };
  };
  const std::map<std::string, Setter> setters = {
      {"input",
       [&](py::handle v) {
         if (py::isinstance<py::str>(v) || py::hasattr(v, "__fspath__")) {
           o.inputs = {v.cast<Path>().value};
         } else {
           for (py::handle item : v) o.inputs.push_back(item.cast<Path>().value);
         }
       }},
      {"output", [&](py::handle v) { o.output = v.cast<Path>().value; }},
      {"transcode", num(&o.transcode_enabled)},
      {"workers", num(&o.workers)},
      {"decode_threads", num(&a.decode_threads)},
      {"shard_size_mb", [&](py::handle v) { o.shard_bytes = static_cast<int64_t>(v.cast<double>() * (1 << 20)); }},
      {"flat_shards", [&](py::handle v) { o.binned_shards = !v.cast<bool>(); }},
      {"detector", str(&a.shots.method)},
      {"transnet_model", str(&a.shots.transnet.model_path)},
      {"transnet_threshold", num(&a.shots.transnet.threshold)},
      {"min_clip_s", num(&a.clips.min_length_s)},
      {"min_clip_frames", num(&a.clips.min_length_frames)},
      {"max_clip_s", num(&a.clips.max_length_s)},
      {"trim_s", num(&a.clips.crop_s)},
      {"border_crop", num(&a.border.enabled)},
      {"motion_filter", str(&f.motion_filter)},
      {"motion_global_mean_threshold", num(&f.motion_global_mean_threshold)},
      {"motion_per_patch_min_256_threshold", num(&f.motion_per_patch_min_256_threshold)},
      {"static_threshold", num(&f.static_threshold)},
      {"blank_threshold", num(&f.blank_threshold)},
      {"min_brightness", num(&f.min_brightness)},
      {"max_brightness", num(&f.max_brightness)},
      {"blur_threshold", num(&f.blur_threshold)},
      {"min_width", num(&f.min_width)},
      {"min_height", num(&f.min_height)},
      {"min_aspect", num(&f.min_aspect)},
      {"max_aspect", num(&f.max_aspect)},
      {"max_duration_s", num(&f.max_duration_s)},
      {"scorer_model", str(&scorer_model)},
      {"aesthetic_threshold", num(&f.aesthetic_threshold)},
      {"embed_model", str(&embed_model)},
      {"caption_model", str(&caption_model)},
      {"model_size",
       [&](py::handle v) {
         auto wh = v.cast<std::pair<int, int>>();
         model_w = wh.first, model_h = wh.second;
       }},
      {"tokenizer", str(&tok.config)},
      {"tokenizer_weights", str(&tok.weights)},
      {"latents", num(&latents)},
      {"latent_height", num(&tok.height)},
      {"tokenizer_embed", num(&tokenizer_embed)},
      {"device", str(&device)},
      {"sidecar_captions", num(&a.sidecar_captions)},
      {"dedup", num(&o.dedup)},
      {"dedup_hamming", num(&o.dedup_options.max_hamming)},
      {"semantic_dedup", num(&o.semantic_dedup)},
      {"semantic_eps", num(&o.semantic_options.eps)},
      {"semantic_clusters", num(&o.semantic_options.clusters)},
      {"encoder", str(&t.encoder)},
      {"bitrate", [&](py::handle v) { t.bit_rate = Bitrate(v); }},
      {"crf", num(&t.crf)},
      {"preset", str(&t.preset)},
      {"clip_height", num(&t.height)},
      {"clip_fps", num(&t.fps)},
      {"stream_copy", num(&t.stream_copy)},
      {"fail_fast", num(&o.fail_fast)},
      {"overwrite", num(&o.overwrite)},
      {"quiet", num(&o.quiet)},
  };
  OptionTable table("curate");
  for (const auto& [name, setter] : setters) table.Add(name, setter);
  table.Apply(cfg);
  if (o.inputs.empty()) throw py::value_error("curate: 'input' (videos, folders or manifests) is required");
  if (o.output.empty()) throw py::value_error("curate: 'output' (a directory) is required");
  if (f.motion_filter != "enable" && f.motion_filter != "score-only" && f.motion_filter != "disable")
    throw py::value_error("motion_filter must be 'enable', 'score-only' or 'disable'");
  if (o.semantic_dedup && embed_model.empty() && !tokenizer_embed)
    throw py::value_error("semantic_dedup needs embed_model or tokenizer_embed");
  if ((latents || tokenizer_embed) && (tok.config.empty() || tok.weights.empty()))
    throw py::value_error("latents / tokenizer_embed need tokenizer and tokenizer_weights");
  a.shots.transnet.device = device;
  tok.device = device;
  if (!scorer_model.empty()) {
    models->scorer = Unwrap(LoadTorchScriptScorer(scorer_model, model_w, model_h, device));
    o.model_info["scorer"] = scorer_model;
  }
  if (!embed_model.empty()) {
    models->embedder = Unwrap(LoadTorchScriptEmbedder(embed_model, model_w, model_h, device));
    o.model_info["embedder"] = embed_model;
  }
  if (tokenizer_embed) {
    models->embedder = Unwrap(MakeTokenizerEmbedder(tok, model_w, model_h));
    o.model_info["embedder"] = "tokenizer:" + tok.config + ":" + tok.weights;
  }
  if (latents) {
    o.latent_writer = Unwrap(MakeLatentWriter(tok));
    o.model_info["latents"] = {tok.config, tok.weights, tok.height};
  }
  if (!caption_model.empty()) {
    models->captioner = Unwrap(LoadTorchScriptCaptioner(caption_model, model_w, model_h, device));
    o.model_info["captioner"] = caption_model;
  }
  if (models->scorer || models->embedder || models->captioner)
    o.model_info["size"] = absl::StrCat(model_w, "x", model_h);
  a.scorer = models->scorer.get();
  a.embedder = models->embedder.get();
  a.captioner = models->captioner.get();
  return o;
}

py::bytes Bytes(const std::string& s) { return py::bytes(s.data(), s.size()); }

// Python iterator over DatasetReader samples.
class PyDatasetReader {
 public:
  PyDatasetReader(const std::vector<std::string>& paths, DatasetOptions o) {
    py::gil_scoped_release release;
    reader_ = Unwrap(DatasetReader::Open(paths, std::move(o)));
  }
  Sample Next() {
    Sample s;
    bool more = false;
    {
      py::gil_scoped_release release;
      more = Unwrap(reader_->Next(&s));
    }
    if (!more) throw py::stop_iteration();
    return s;
  }
  const std::vector<std::string>& shards() const { return reader_->shards(); }

 private:
  std::unique_ptr<DatasetReader> reader_;
};

// TarWriter with an idempotent close().
class PyTarWriter {
 public:
  explicit PyTarWriter(std::unique_ptr<TarWriter> w) : w_(std::move(w)) {}
  TarWriter& Get() {
    if (!w_) throw py::value_error("the tar writer is closed");
    return *w_;
  }
  void Close() {
    if (!w_) return;
    std::unique_ptr<TarWriter> w = std::move(w_);
    py::gil_scoped_release release;
    Check(w->Finish());
  }

 private:
  std::unique_ptr<TarWriter> w_;
};

void Bind(py::module_& m) {
  m.def(
      "detect_shots",
      [](const Path& path, const std::string& method, const std::string& transnet_model, double threshold,
         const std::string& device, int threads) {
        ShotDetectorOptions o = ShotOptions(method, transnet_model, threshold, device);
        ShotResult r;
        {
          py::gil_scoped_release release;
          r = Unwrap(DetectShots(path.value, o, threads));
        }
        return Json(ShotsToJson(r));
      },
      py::arg("path"), py::kw_only(), py::arg("method") = "auto", py::arg("transnet_model") = "",
      py::arg("threshold") = 0.4, py::arg("device") = "cpu", py::arg("threads") = 0,
      "Shot boundaries of a video (one streaming decode at analysis size) as the dict `wfm shots --transitions`\n"
      "prints: {'fps', 'num_frames', 'shots': [[start, end_exclusive], ...], 'transitions': [...]}. method: auto |\n"
      "classic (content + gradual) | content | gradual | transnetv2 | all (transnet_model: a TorchScript TransNetV2).");
  m.def(
      "detect_shots_in_frames",
      [](const at::Tensor& frames, double fps, const std::string& method, const std::string& transnet_model,
         double threshold, const std::string& device) {
        ShotDetectorOptions o = ShotOptions(method, transnet_model, threshold, device);
        ShotResult r;
        {
          py::gil_scoped_release release;
          r = Unwrap(DetectShotsInFrames(frames, fps, o));
        }
        return Json(ShotsToJson(r));
      },
      py::arg("frames"), py::arg("fps"), py::kw_only(), py::arg("method") = "auto", py::arg("transnet_model") = "",
      py::arg("threshold") = 0.4, py::arg("device") = "cpu",
      "detect_shots on frames in memory: uint8 [T, H, W, 3] (resized to the analysis size).");
  m.def(
      "discover_inputs",
      [](const std::vector<std::string>& inputs) { return Unwrap(DiscoverInputs(inputs)); }, py::arg("inputs"),
      GilRelease(), "Expands videos, folders (recursive) and manifests (.txt/.list/.jsonl) into video paths.");
  m.def(
      "run",
      [](py::object config, py::object progress) {
        CurateModels models;
        CurateOptions o = CurateFromDict(CurateConfig(config), &models);
        return Json(RunWithProgress(std::move(progress), "videos", [&] { return RunCurate(o); }));
      },
      py::arg("config"), py::kw_only(), py::arg("progress") = py::none(),
      "Runs (or resumes) the curation pipeline of `wfm curate` (curation::RunCurate, what the CLI calls) with the\n"
      "GIL released and returns its summary dict. config: a dict, a JSON object string or the path of a JSON file\n"
      "(str or os.PathLike), keyed by the CLI flags with '_' for '-' (input, output, workers, detector, min_clip_s,\n"
      "motion_filter, dedup, bitrate, ..., see docs/python.md); unknown keys are a ValueError listing the known\n"
      "ones. progress(done, total, info): after every input video (info: label, unit, status, finished); if it\n"
      "raises, no new video is started, committed ones are kept (run again to resume) and the exception\n"
      "propagates.");
  m.attr("curate") = m.attr("run");

  py::class_<Sample>(m, "Sample", "One webdataset sample: the members KEY.<ext> of a shard.")
      .def_readonly("key", &Sample::key)
      .def_readonly("shard", &Sample::shard)
      .def_property_readonly("extensions",
                             [](const Sample& s) {
                               std::vector<std::string> e;
                               for (const auto& [ext, _] : s.files) e.push_back(ext);
                               return e;
                             })
      .def("has", &Sample::Has, py::arg("ext"))
      .def(
          "get",
          [](const Sample& s, const std::string& ext) {
            if (!s.Has(ext)) throw py::key_error(absl::StrCat(s.key, " has no member .", ext));
            return Bytes(s.Get(ext));
          },
          py::arg("ext"), "The raw bytes of KEY.<ext> (KeyError when absent).")
      .def("text", &Sample::Text, py::arg("ext") = "txt")
      .def(
          "json", [](const Sample& s, const std::string& ext) { return Json(Unwrap(s.Json(ext))); },
          py::arg("ext") = "json")
      .def(
          "decode_video",
          [](const Sample& s, int width, int height, const std::string& ext) {
            py::gil_scoped_release release;
            return Unwrap(s.DecodeVideo(width, height, ext));
          },
          py::kw_only(), py::arg("width") = 0, py::arg("height") = 0, py::arg("ext") = "mp4",
          "KEY.<ext> decoded to uint8 [T, H, W, 3] (0 keeps the clip's size).")
      .def("__repr__", [](const Sample& s) {
        std::vector<std::string> e;
        for (const auto& [ext, _] : s.files) e.push_back(ext);
        return absl::StrCat("Sample('", s.key, "', [", absl::StrJoin(e, ", "), "])");
      });

  py::class_<PyDatasetReader>(m, "ShardReader",
                              "Iterates the samples of webdataset shards (tars, or directories searched recursively),\n"
                              "shard i going to rank i % world_size; shuffle_seed != 0 shuffles the shard order per\n"
                              "epoch; epochs <= 0 repeats forever; extensions loads only those members.")
      .def(py::init([](py::object paths, int rank, int world_size, uint64_t shuffle_seed, int epochs,
                       std::vector<std::string> extensions) {
             std::vector<std::string> p;
             if (py::isinstance<py::str>(paths) || py::hasattr(paths, "__fspath__")) {
               p.push_back(paths.cast<Path>().value);
             } else {
               for (py::handle item : paths) p.push_back(item.cast<Path>().value);
             }
             if (world_size < 1 || rank < 0 || rank >= world_size)
               throw py::value_error(absl::StrCat("rank ", rank, " is not in [0, world_size=", world_size, ")"));
             DatasetOptions o;
             o.rank = rank;
             o.world_size = world_size;
             o.shuffle_seed = shuffle_seed;
             o.epochs = epochs;
             o.extensions = std::move(extensions);
             return std::make_unique<PyDatasetReader>(p, std::move(o));
           }),
           py::arg("paths"), py::kw_only(), py::arg("rank") = 0, py::arg("world_size") = 1,
           py::arg("shuffle_seed") = 0, py::arg("epochs") = 1, py::arg("extensions") = std::vector<std::string>{})
      .def_property_readonly("shards", &PyDatasetReader::shards, "this rank's shards, in order")
      .def("__iter__", [](PyDatasetReader& r) -> PyDatasetReader& { return r; }, py::return_value_policy::reference)
      .def("__next__", &PyDatasetReader::Next);

  m.def(
      "list_shards", [](const Path& path) { return Unwrap(ListShards(path.value)); }, py::arg("path"), GilRelease(),
      "Every *.tar under path (recursively, sorted), or path itself when it is a tar.");
  m.def(
      "list_tar",
      [](const Path& path) {
        std::vector<TarMember> members;
        {
          py::gil_scoped_release release;
          members = Unwrap(ListTar(path.value));
        }
        py::list out;
        for (const auto& mem : members) out.append(py::make_tuple(mem.name, mem.size));
        return out;
      },
      py::arg("path"), "The members of a tar as (name, size) pairs (headers only).");

  py::class_<PyTarWriter>(m, "TarWriter",
                          "Writes a POSIX ustar archive (webdataset shard): add KEY.<ext> members, then close()\n"
                          "(or leave the `with` block).")
      .def(py::init([](const Path& path) { return std::make_unique<PyTarWriter>(Unwrap(TarWriter::Open(path.value))); }),
           py::arg("path"))
      .def(
          "add",
          [](PyTarWriter& w, const std::string& name, py::object data) {
            std::string bytes = py::isinstance<py::str>(data) ? data.cast<std::string>()
                                                               : std::string(py::bytes(data));
            TarWriter& t = w.Get();
            py::gil_scoped_release release;
            Check(t.Add(name, bytes));
          },
          py::arg("name"), py::arg("data"), "Adds a member from bytes (or str, UTF-8).")
      .def(
          "add_file",
          [](PyTarWriter& w, const std::string& name, const Path& source) {
            TarWriter& t = w.Get();
            py::gil_scoped_release release;
            Check(t.AddFile(name, source.value));
          },
          py::arg("name"), py::arg("source"), "Adds a member streamed from a file.")
      .def("close", &PyTarWriter::Close)
      .def("__enter__", [](PyTarWriter& w) -> PyTarWriter& { return w; }, py::return_value_policy::reference)
      .def("__exit__", [](PyTarWriter& w, py::args) {
        w.Close();
        return false;
      });
}

}  // namespace
WFM_PY_BINDINGS(curation, 300, "Video curation: shot detection, the curate pipeline, webdataset shards.", Bind);
}  // namespace wfm::py
