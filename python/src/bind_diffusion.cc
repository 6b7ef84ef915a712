// wfm.diffusion: the diffusion world model (wfm/diffusion): the DiT from a config (preset, json or dict) and weights
// (or a seeded random init), the raw network forward with autograd, sampling in latent space (Text2World /
// Video2World, long videos by extension) with the CLI's sampler options and a per-step callback, the pixel-space
// Video2World pipeline of `wfm diffusion generate` over a wfm.tokenizer.Tokenizer, and the training loss. Long calls
// release the GIL.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/core/grad_mode.h>

#include <atomic>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "wfm/core/file_util.h"
#include "wfm/core/runtime.h"
#include "wfm/core/safetensors.h"
#include "wfm/core/status.h"
#include "wfm/core/video_io.h"
#include "wfm/diffusion/dit.h"
#include "wfm/diffusion/train.h"
#include "wfm/diffusion/training.h"
#include "wfm/diffusion/world_model.h"
#include "wfm/tokenizer/tokenizer.h"
#include "train_options.h"
#include "wfm_py.h"

namespace wfm::py {
namespace {
namespace py = pybind11;
using namespace wfm::diffusion;  // NOLINT

DiTConfig ConfigFrom(py::handle obj) {
  std::string json, name;
  if (ConfigArg(obj, &json, &name)) return Unwrap(DiTConfig::FromJson(ParseJsonArg(json)));
  return Unwrap(DiTConfig::FromPresetOrFile(name));
}

struct DiffusionModel {
  std::shared_ptr<DiffusionNetwork> net;
  std::unique_ptr<DiffusionWorldModel> wm;
  const DiTConfig& config() const { return net->config(); }
};

at::Tensor Batch3(at::Tensor t) {
  if (t.defined() && t.dim() == 2) t = t.unsqueeze(0);
  return t;
}

// The sampler options shared by every generate entry point.
#define WFM_SAMPLE_PARAMS                                                                                     \
  int num_steps, const std::string &sampler, double guidance, uint64_t seed, int64_t num_samples, double fps, \
      double s_churn, py::object callback
#define WFM_SAMPLE_ARGS                                                                                           \
  py::arg("num_steps") = 35, py::arg("sampler") = "res", py::arg("guidance") = 7.0, py::arg("seed") = 0,          \
      py::arg("num_samples") = 1, py::arg("fps") = 24.0, py::arg("s_churn") = 0.0, py::arg("callback") = py::none()

constexpr const char* kSampleDoc =
    "Sampler: num_steps, sampler ('res' = Cosmos 2ab, 'heun', 'euler', '2mid'), guidance (x0 = c + g (c - u); 0 =\n"
    "conditional only), seed (sample i uses seed + i), num_samples, fps (RoPE time scale), s_churn (EDM\n"
    "stochasticity). callback(step, num_steps, sigma, sigma_next) after every step.";

GenerateOptions SampleOptions(int num_steps, const std::string& sampler, double guidance, uint64_t seed,
                              int64_t num_samples, double fps, double s_churn) {
  if (num_steps < 1) throw py::value_error("num_steps must be >= 1");
  if (num_samples < 1) throw py::value_error("num_samples must be >= 1");
  GenerateOptions o;
  o.num_steps = num_steps;
  o.integrator = Unwrap(ParseIntegrator(sampler));
  o.guidance = guidance;
  o.seed = seed;
  o.num_samples = num_samples;
  o.fps = fps;
  o.s_churn = s_churn;
  return o;
}

TextConditioning Text(const DiffusionModel& m, std::optional<at::Tensor> emb, std::optional<at::Tensor> negative) {
  const c10::Device dev = m.net->device();
  TextConditioning t;
  // No text: the unconditional model (a zero embedding, as the conditioner's dropped text).
  t.crossattn_emb = emb ? Batch3(emb->to(dev, at::kFloat))
                        : at::zeros({1, 1, m.config().crossattn_emb_channels}, at::TensorOptions().device(dev));
  if (negative) t.negative_crossattn_emb = Batch3(negative->to(dev, at::kFloat));
  return t;
}

VideoConditioning Video(const DiffusionModel& m, const std::optional<at::Tensor>& latent, int64_t frames) {
  VideoConditioning v;
  if (latent) {
    v.latent = latent->to(m.net->device(), at::kFloat);
    v.num_frames = frames;
  }
  return v;
}

// Runs fn (which samples) without the GIL, with the Python step callback installed.
at::Tensor Sample(GenerateOptions& o, py::object callback, const std::function<absl::StatusOr<at::Tensor>()>& fn) {
  PyCallback cb(std::move(callback));
  std::atomic<bool> failed{false};
  if (cb) {
    o.callback = [&](const StepInfo& s) {
      if (!failed && !cb.Call(s.step, s.num_steps, s.sigma, s.sigma_next)) failed = true;
    };
  }
  absl::StatusOr<at::Tensor> r;
  {
    py::gil_scoped_release release;
    at::NoGradGuard no_grad;
    r = fn();
  }
  cb.RethrowIfFailed();
  return Unwrap(std::move(r));
}

void Bind(py::module_& m) {
  m.def("preset_names", &DiTConfig::PresetNames, "DiT presets (the published Cosmos-Predict1/2 sizes, tiny ones).");
  m.def(
      "config", [](py::object c) { return JsonToPy(ConfigFrom(c).ToJson().dump()); }, py::arg("config"),
      "Resolves a preset name, a json file (a fixture json's `config`, or the dict) or a dict.");
  m.def("latent_frames_for", &LatentFramesFor, py::arg("pixel_frames"), py::arg("temporal_compression"));
  m.def("pixel_frames_for", &PixelFramesFor, py::arg("latent_frames"), py::arg("temporal_compression"));

  py::class_<DiffusionModel> model(m, "DiffusionModel",
                             "A DiT (GeneralDIT / VideoExtendGeneralDIT / MiniTrainDIT) with its parametrisation "
                             "(EDM or rectified flow) and sampler.");
  model.def(py::init([](py::object config, std::optional<Path> weights, uint64_t seed, const std::string& device,
                       const std::string& dtype, bool ema) {
             DiTConfig c = ConfigFrom(config);
             c10::Device dev = Unwrap(ParseDevice(device));
             c10::ScalarType type = ParseComputeDtype(dtype, dev.is_cuda());
             py::gil_scoped_release release;
             auto model = std::make_unique<DiffusionModel>();
             at::manual_seed(seed);
             model->net = Unwrap(MakeDiffusionNetwork(c));
             if (weights) Check(LoadDiTWeights(*model->net, weights->value, ema));
             Check(CatchToStatus("moving the DiT", [&]() {
               model->net->to(dev, type);
               model->net->eval();
               return absl::OkStatus();
             }));
             model->wm = std::make_unique<DiffusionWorldModel>(model->net, DefaultParametrization(c));
             return model;
           }),
           py::arg("config"), py::arg("weights") = py::none(), py::kw_only(), py::arg("seed") = 0,
           py::arg("device") = "cpu", py::arg("dtype") = "float32", py::arg("ema") = false,
           "config: preset, json or dict (Video2World when in_channels = latent + 1). weights: safetensors /\n"
           "model.pt (reference names, strict), or None for the reference initialisation after\n"
           "torch.manual_seed(seed). Starts in eval mode.")
      .def_property_readonly("config", [](const DiffusionModel& d) { return JsonToPy(d.config().ToJson().dump()); })
      .def_property_readonly("latent_channels", [](const DiffusionModel& d) { return d.config().latent_channels(); })
      .def_property_readonly("video_conditioned", [](const DiffusionModel& d) { return d.config().video_conditioned(); })
      .def_property_readonly("parametrization", [](const DiffusionModel& d) { return d.wm->parametrization().name(); })
      .def_property_readonly("sigma_data", [](const DiffusionModel& d) { return d.wm->parametrization().sigma_data(); })
      .def_property_readonly("device", [](const DiffusionModel& d) { return d.net->device(); })
      .def(
          "forward",
          [](DiffusionModel& d, const at::Tensor& x, const at::Tensor& timesteps, const at::Tensor& crossattn_emb,
             double fps, std::optional<at::Tensor> padding_mask, std::optional<at::Tensor> condition_mask,
             std::optional<at::Tensor> augment_sigma) {
            DiTInputs in;
            in.x = x;
            in.timesteps = timesteps;
            in.crossattn_emb = crossattn_emb;
            in.fps = fps;
            if (padding_mask) in.padding_mask = *padding_mask;
            if (condition_mask) in.condition_video_input_mask = *condition_mask;
            if (augment_sigma) in.condition_video_augment_sigma = *augment_sigma;
            py::gil_scoped_release release;
            Check(d.net->ValidateInputs(in));
            return Unwrap(CatchToStatus("DiT forward", [&]() -> absl::StatusOr<at::Tensor> { return d.net->Forward(in); }));
          },
          py::arg("x"), py::arg("timesteps"), py::arg("crossattn_emb"), py::kw_only(), py::arg("fps") = 24.0,
          py::arg("padding_mask") = py::none(), py::arg("condition_video_input_mask") = py::none(),
          py::arg("condition_video_augment_sigma") = py::none(),
          "The raw network output F(x) [B, out_channels, T, H, W] (before the parametrisation's c_skip/c_out):\n"
          "x [B, C, T, H, W], timesteps [B] (the noise input c_noise), crossattn_emb [B, N, D]. Builds an autograd\n"
          "graph unless called under torch.no_grad().")
      .def(
          "generate",
          [](DiffusionModel& d, std::vector<int64_t> latent_shape, std::optional<at::Tensor> crossattn_emb,
             std::optional<at::Tensor> negative, std::optional<at::Tensor> condition_latent,
             int64_t num_condition_frames, WFM_SAMPLE_PARAMS) {
            GenerateOptions o = SampleOptions(num_steps, sampler, guidance, seed, num_samples, fps, s_churn);
            TextConditioning text = Text(d, crossattn_emb, negative);
            VideoConditioning video = Video(d, condition_latent, num_condition_frames);
            Check(d.wm->ValidateRequest(latent_shape, text, video, o));
            return Sample(o, std::move(callback),
                          [&]() { return d.wm->Generate(latent_shape, text, video, o); });
          },
          py::arg("latent_shape"), py::kw_only(), py::arg("crossattn_emb") = py::none(),
          py::arg("negative_crossattn_emb") = py::none(), py::arg("condition_latent") = py::none(),
          py::arg("num_condition_frames") = 0, WFM_SAMPLE_ARGS,
          absl::StrCat("Samples num_samples latents [B, C, T, H, W] in diffusion space (sigma_data * normalised\n"
                       "tokenizer latent) of latent_shape [C, T, H, W]. crossattn_emb [1|B, N, D] (None: the\n"
                       "unconditional zero embedding). Video2World networks: condition_latent [1|B, C, Tc, H, W] in\n"
                       "diffusion space, its first num_condition_frames latent frames given.\n",
                       kSampleDoc)
              .c_str())
      .def(
          "generate_long",
          [](DiffusionModel& d, int64_t total_frames, int64_t clip_frames, int64_t overlap,
             std::vector<int64_t> latent_chw, std::optional<at::Tensor> crossattn_emb,
             std::optional<at::Tensor> negative, std::optional<at::Tensor> condition_latent,
             int64_t num_condition_frames, WFM_SAMPLE_PARAMS) {
            GenerateOptions o = SampleOptions(num_steps, sampler, guidance, seed, num_samples, fps, s_churn);
            TextConditioning text = Text(d, crossattn_emb, negative);
            VideoConditioning video = Video(d, condition_latent, num_condition_frames);
            return Sample(o, std::move(callback), [&]() {
              return d.wm->GenerateLong(total_frames, clip_frames, overlap, latent_chw, text, video, o);
            });
          },
          py::arg("total_frames"), py::arg("clip_frames"), py::arg("overlap"), py::arg("latent_chw"), py::kw_only(),
          py::arg("crossattn_emb") = py::none(), py::arg("negative_crossattn_emb") = py::none(),
          py::arg("condition_latent") = py::none(), py::arg("num_condition_frames") = 0, WFM_SAMPLE_ARGS,
          "A long latent video by autoregressive extension: clips of clip_frames latent frames, each conditioned on\n"
          "the last `overlap` latent frames (Video2World networks). Returns [B, C, total_frames, H, W].")
      .def(
          "loss",
          [](DiffusionModel& d, const at::Tensor& x0, const at::Tensor& crossattn_emb, double fps, uint64_t seed,
             double text_dropout, double condition_dropout, int64_t min_condition_frames,
             int64_t max_condition_frames) {
            DiffusionTrainingOptions o;
            o.text_dropout = text_dropout;
            o.condition_dropout = condition_dropout;
            o.min_condition_frames = min_condition_frames;
            o.max_condition_frames = max_condition_frames;
            TrainingBatch b{x0, crossattn_emb, fps};
            if (x0.dim() != 5 || x0.size(1) != d.config().latent_channels())
              throw py::value_error(absl::StrCat("x0 must be [B, ", d.config().latent_channels(), ", T, H, W]"));
            if (crossattn_emb.dim() != 3 || crossattn_emb.size(0) != x0.size(0))
              throw py::value_error("crossattn_emb must be [B, N, D] with the batch of x0");
            LossOutput out;
            {
              py::gil_scoped_release release;
              DiTInputs probe;
              probe.x = x0;
              probe.timesteps = at::zeros({x0.size(0)}, x0.options());
              probe.crossattn_emb = crossattn_emb;
              probe.fps = fps;
              if (d.config().video_conditioned())
                probe.condition_video_input_mask = at::zeros({x0.size(0), 1, x0.size(2), x0.size(3), x0.size(4)},
                                                             x0.options());
              Check(d.net->ValidateInputs(probe));
              at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
              out = Unwrap(CatchToStatus("diffusion loss", [&]() -> absl::StatusOr<LossOutput> {
                return DiffusionTrainingLoss(*d.net, d.wm->parametrization(), b, o, gen);
              }));
            }
            py::dict r;
            r["loss"] = out.loss;
            r["mse"] = out.mse;
            r["mean_log_sigma"] = out.mean_log_sigma;
            r["condition_frames"] = out.condition_frames;
            return r;
          },
          py::arg("x0"), py::arg("crossattn_emb"), py::kw_only(), py::arg("fps") = 24.0, py::arg("seed") = 0,
          py::arg("text_dropout") = 0.2, py::arg("condition_dropout") = 0.3, py::arg("min_condition_frames") = 1,
          py::arg("max_condition_frames") = 2,
          "The denoising training loss of one batch (x0 [B, C, T, H, W] in diffusion space, crossattn_emb\n"
          "[B, N, D]): {'loss': differentiable scalar, 'mse', 'mean_log_sigma', 'condition_frames'}.");
  model.def(
      "evaluation_loss",
      [](DiffusionModel& d, const at::Tensor& x0, const at::Tensor& crossattn_emb, double fps, uint64_t seed,
         int levels) {
        TrainingBatch b{x0, crossattn_emb, fps};
        py::gil_scoped_release release;
        at::NoGradGuard no_grad;
        return Unwrap(CatchToStatus("evaluation loss", [&]() -> absl::StatusOr<double> {
          return EvaluationLoss(*d.net, d.wm->parametrization(), b, seed, levels);
        }));
      },
      py::arg("x0"), py::arg("crossattn_emb"), py::kw_only(), py::arg("fps") = 24.0, py::arg("seed") = 0,
      py::arg("levels") = 8,
      "A deterministic validation loss: the weighted denoising error over `levels` fixed noise levels (no dropout,\n"
      "no condition frames); comparable across training steps.");
  model.def(
      "save",
      [](DiffusionModel& d, const Path& path) {
        TensorMap tensors;
        for (const auto& p : d.net->named_parameters(true)) tensors[p.key()] = p.value().detach();
        for (const auto& b : d.net->named_buffers(true)) tensors[b.key()] = b.value().detach();
        const std::string config = d.config().ToJson().dump();
        py::gil_scoped_release release;
        Check(WriteSafetensors(path.value, tensors, {{"config", config}}));
      },
      py::arg("path"), "Writes the state dict (reference names, config in the metadata) as safetensors, atomically.");
  DefModuleMethods(model, [](DiffusionModel& d) -> DiffusionNetwork& { return *d.net; },
                   "Parameters and buffers under the reference names, shared with the network (no copy).");

  m.def(
      "synthetic_batch",
      [](int64_t first_index, int64_t batch_size, uint64_t seed, int64_t channels, int64_t frames, int64_t height,
         int64_t width, int64_t text_tokens, int64_t text_dim, double sigma_data) {
        SyntheticLatentProcess p;
        p.channels = channels;
        p.frames = frames;
        p.height = height;
        p.width = width;
        p.text_tokens = text_tokens;
        p.text_dim = text_dim;
        p.sigma_data = sigma_data;
        TrainingBatch b = p.Batch(first_index, batch_size, seed);
        return py::make_tuple(b.x0, b.crossattn_emb);
      },
      py::arg("first_index"), py::arg("batch_size"), py::arg("seed") = 0, py::kw_only(), py::arg("channels") = 16,
      py::arg("frames") = 4, py::arg("height") = 8, py::arg("width") = 8, py::arg("text_tokens") = 4,
      py::arg("text_dim") = 32, py::arg("sigma_data") = 0.5,
      "A synthetic latent process (travelling waves; the text embedding encodes their direction) for smoke\n"
      "training: (x0 [B, C, T, H, W] in diffusion space, crossattn_emb [B, N, D]); clip i of a seed never changes.");

  py::class_<LatentFolder>(m, "LatentFolder",
                           "A folder of pre-tokenized clips (*.safetensors with `latent` [C, T, H, W], optional\n"
                           "`crossattn_emb` [N, D] and a `caption`): a map-style dataset.")
      .def(py::init([](const Path& dir) { return Unwrap(LatentFolder::Open(dir.value)); }), py::arg("dir"))
      .def("__len__", &LatentFolder::size)
      .def_property_readonly("latent_shape", &LatentFolder::latent_shape)
      .def(
          "__getitem__",
          [](const LatentFolder& f, int64_t i) {
            if (i < 0) i += f.size();
            if (i < 0 || i >= f.size()) throw py::index_error("LatentFolder index out of range");
            LatentClip c;
            {
              py::gil_scoped_release release;
              c = Unwrap(f.Get(i));
            }
            py::dict d;
            d["path"] = c.path;
            d["latent"] = c.latent;
            d["crossattn_emb"] = c.crossattn_emb;  // None when the file has none
            d["caption"] = c.caption;
            return d;
          },
          py::arg("index"), "{'path', 'latent', 'crossattn_emb' (or None), 'caption'}")
      .def_static(
          "write",
          [](const Path& path, const at::Tensor& latent, std::optional<at::Tensor> crossattn_emb,
             const std::string& caption) {
            LatentClip c;
            c.latent = latent;
            if (crossattn_emb) c.crossattn_emb = *crossattn_emb;
            c.caption = caption;
            py::gil_scoped_release release;
            Check(LatentFolder::Write(path.value, c));
          },
          py::arg("path"), py::arg("latent"), py::arg("crossattn_emb") = py::none(), py::arg("caption") = "",
          "Writes one clip file (atomically) in the format the folder reads.");

  m.def(
      "video2world",
      [](DiffusionModel& d, tokenizer::Tokenizer& tok, std::optional<at::Tensor> frames, int64_t num_input_frames,
         int64_t num_frames, int64_t height, int64_t width, std::optional<at::Tensor> crossattn_emb,
         std::optional<at::Tensor> negative, std::optional<Path> latent_stats, int64_t clip_frames,
         int64_t overlap_frames, WFM_SAMPLE_PARAMS) {
        const DiTConfig& cfg = d.config();
        const tokenizer::TokenizerConfig& tcfg = tok.config();
        if (tcfg.name != "CV") throw py::value_error("the diffusion model needs a continuous video tokenizer (CV)");
        if (tcfg.latent_channels != cfg.latent_channels())
          throw py::value_error(absl::StrCat("the tokenizer gives ", tcfg.latent_channels,
                                             " latent channels, the DiT expects ", cfg.latent_channels()));
        const int64_t S = tcfg.spatial_compression, TC = tcfg.temporal_compression, align = S * cfg.patch_spatial;
        if (height <= 0) height = std::min<int64_t>(704, cfg.max_img_h * S) / align * align;
        if (width <= 0) width = std::min<int64_t>(1280, cfg.max_img_w * S) / align * align;
        if (height % align || width % align || height / S > cfg.max_img_h || width / S > cfg.max_img_w)
          throw py::value_error(absl::StrCat(height, "x", width, ": height/width must be multiples of ", align,
                                             " up to ", cfg.max_img_h * S, "x", cfg.max_img_w * S));
        Check(CheckPixelFrameCount(num_frames, TC, "num_frames"));
        const int64_t max_clip = std::min<int64_t>(cfg.max_latent_frames(), LatentFramesFor(121, TC));
        int64_t clip_latents = max_clip;
        if (clip_frames > 0) {
          Check(CheckPixelFrameCount(clip_frames, TC, "clip_frames"));
          clip_latents = LatentFramesFor(clip_frames, TC);
        }
        const int64_t total_latents = LatentFramesFor(num_frames, TC);
        int64_t overlap = 1;
        if (total_latents > clip_latents) {
          Check(CheckPixelFrameCount(overlap_frames, TC, "overlap_frames"));
          overlap = LatentFramesFor(overlap_frames, TC);
        }
        GenerateOptions o = SampleOptions(num_steps, sampler, guidance, seed, num_samples, fps, s_churn);
        TextConditioning text = Text(d, crossattn_emb, negative);
        LatentStats stats = latent_stats ? Unwrap(LatentStats::Load(latent_stats->value, cfg.latent_channels()))
                                         : LatentStats::Identity(cfg.latent_channels());
        const double sigma_data = d.wm->parametrization().sigma_data();
        VideoConditioning video;
        if (frames) {
          if (!cfg.video_conditioned()) throw py::value_error("frames need a Video2World network (in_channels = C + 1)");
          Check(CheckPixelFrameCount(num_input_frames, TC, "num_input_frames"));
          if (num_input_frames >= num_frames) throw py::value_error("num_frames must exceed num_input_frames");
          const at::Tensor& f = *frames;
          if (f.dim() != 4 || f.size(3) != 3 || f.scalar_type() != at::kByte || f.size(1) != height ||
              f.size(2) != width)
            throw py::value_error(absl::StrCat("frames must be uint8 [T, ", height, ", ", width,
                                               ", 3] (decode with wfm.core.decode_video(width=, height=))"));
          if (f.size(0) < num_input_frames)
            throw py::value_error(absl::StrCat("frames has ", f.size(0), " frames, fewer than num_input_frames ",
                                               num_input_frames));
          py::gil_scoped_release release;
          const at::Tensor x = FramesToModelInput(f.narrow(0, f.size(0) - num_input_frames, num_input_frames))
                                   .unsqueeze(0);  // [1, 3, T, H, W]
          tokenizer::EncodeResult enc = Unwrap(tok.Encode(x));
          video.latent = stats.Normalize(enc.latent.to(d.net->device(), at::kFloat)) * sigma_data;
          video.num_frames = LatentFramesFor(num_input_frames, TC);
        }
        const at::Tensor x = Sample(o, std::move(callback), [&]() {
          return d.wm->GenerateLong(total_latents, clip_latents, overlap, {cfg.latent_channels(), height / S, width / S},
                                    text, video, o);
        });
        py::gil_scoped_release release;
        const at::Tensor latent = stats.Denormalize(x / sigma_data);  // [B, C, T, h, w]
        tokenizer::ClipGeometry g;
        g.frames = num_frames;
        g.height = height;
        g.width = width;
        std::vector<at::Tensor> videos;
        for (int64_t i = 0; i < latent.size(0); ++i)
          videos.push_back(ModelOutputToFrames(Unwrap(tok.Decode(latent.narrow(0, i, 1), g))[0]));
        return at::stack(videos);
      },
      py::arg("model"), py::arg("tokenizer"), py::arg("frames") = py::none(), py::kw_only(),
      py::arg("num_input_frames") = 9, py::arg("num_frames") = 121, py::arg("height") = 0, py::arg("width") = 0,
      py::arg("crossattn_emb") = py::none(), py::arg("negative_crossattn_emb") = py::none(),
      py::arg("latent_stats") = py::none(), py::arg("clip_frames") = 0, py::arg("overlap_frames") = 9,
      WFM_SAMPLE_ARGS,
      absl::StrCat("The pixel pipeline of `wfm diffusion generate`: frames uint8 [T, height, width, 3] (the LAST\n"
                   "num_input_frames condition a Video2World network; None = Text2World) -> uint8 videos\n"
                   "[num_samples, num_frames, height, width, 3]. tokenizer: a CV wfm.tokenizer.Tokenizer;\n"
                   "latent_stats: mean_std.pt (None: identity). Longer than one clip (clip_frames, default the\n"
                   "DiT's maximum up to 121) by extension over overlap_frames.\n",
                   kSampleDoc)
          .c_str());
  m.def(
      "train",
      [](py::object progress, py::kwargs kwargs) {
        DiffusionTrainOptions o;
        o.quiet = true;
        OptionTable t("wfm.diffusion.train");
        std::string config_json;
        t.Add("config",
              [&](py::handle v) {
                if (!ConfigArg(v, &config_json, &o.config)) config_json.clear();
              })
            .Add("output", &o.output)
            .Add("init_weights", &o.init_weights)
            .Add("synthetic", &o.synthetic)
            .Add("data", &o.data)
            .Add("videos", &o.videos)
            .Add("shards", &o.shards)
            .Add("tokenizer_config", &o.tokenizer_config)
            .Add("tokenizer_weights", &o.tokenizer_weights)
            .Add("latent_stats", &o.latent_stats)
            .Add("text_encoder", &o.text_encoder)
            .Add("num_frames", &o.num_frames)
            .Add("height", &o.height)
            .Add("width", &o.width)
            .Add("fps", &o.fps)
            .Add("synthetic_frames", &o.synthetic_frames)
            .Add("synthetic_size", &o.synthetic_size)
            .Add("text_dropout", &o.text_dropout)
            .Add("condition_dropout", &o.condition_dropout)
            .Add("min_condition_frames", &o.min_condition_frames)
            .Add("max_condition_frames", &o.max_condition_frames)
            .Add("p_mean", &o.p_mean)
            .Add("p_std", &o.p_std)
            .Add("sample_steps", &o.sample_steps)
            .Add("no_resume", [&](py::handle v) { o.resume = !v.cast<bool>(); })
            .Add("seed", &o.seed)
            .Add("quiet", &o.quiet);
        AddSharedTrainOptions(t, o, "lr_schedule", "ema_decay");
        t.Apply(kwargs);
        if (o.output.empty()) throw py::value_error("wfm.diffusion.train: 'output' (a run directory) is required");
        if (int(o.synthetic) + int(!o.data.empty()) + int(!o.videos.empty()) + int(!o.shards.empty()) != 1)
          throw py::value_error(
              "wfm.diffusion.train: give exactly one of synthetic=True, data=DIR, videos=DIR, shards=DIR");
        if (o.batch_size < 1 || o.grad_accum < 1 || o.steps < 1)
          throw py::value_error("wfm.diffusion.train: batch_size, grad_accum and steps must be >= 1");
        if (!config_json.empty()) {  // a dict: validated here, written to the run directory for the driver
          Unwrap(DiTConfig::FromJson(ParseJsonArg(config_json)));
          o.config = o.output + "/config.input.json";
          Check(MakeDirs(o.output));
          Check(WriteFileAtomically(o.config, config_json));
        }
        const DiffusionTrainResult a =
            RunWithProgress(std::move(progress), "steps", [&] { return TrainDiffusion(o); });
        py::dict d;
        d["start_step"] = a.start_step;
        d["steps"] = a.steps;
        d["seconds"] = a.seconds;
        d["interrupted"] = a.interrupted;
        d["time_budget_reached"] = a.time_budget_reached;
        d["last_train"] = a.last_train;
        d["last_eval"] = a.last_eval;
        d["weights_path"] = a.weights_path;
        d["config_path"] = a.config_path;
        return d;
      },
      py::kw_only(), py::arg("progress") = py::none(),
      "`wfm diffusion train` in process (diffusion::TrainDiffusion, the function the CLI calls): the options are\n"
      "the CLI flags with '_' for '-' (config, output, synthetic / data / videos / shards, steps, batch_size, lr,\n"
      "..., see `wfm diffusion train --help`; config may also be a dict; max_time seconds or '15m'). Runs with the\n"
      "GIL released and resumes from output/checkpoints (no_resume=True starts fresh); quiet (default True) hides\n"
      "the progress line. progress(done, total, info) is called after every step of this call; if it raises,\n"
      "training stops as on Ctrl-C (a checkpoint is written) and the exception propagates. Returns {'start_step',\n"
      "'steps', 'seconds', 'interrupted', 'time_budget_reached', 'last_train', 'last_eval', 'weights_path',\n"
      "'config_path'}; DiffusionModel(config_path, weights_path) loads the result.");
}

#undef WFM_SAMPLE_PARAMS
#undef WFM_SAMPLE_ARGS

}  // namespace
WFM_PY_BINDINGS(diffusion, 500, "The diffusion world model (Cosmos-Predict1/2 DiT).", Bind);
}  // namespace wfm::py
