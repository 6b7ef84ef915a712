// multiverse: N possible futures of one video from a wfm world model — autoregressive (--model ar, default) or
// diffusion (--model diffusion) — the synthetic-data use of the library in one file, built against the installed
// package (see README.md).
//
// AR: a discrete (DV) tokenizer turns the last frames of the input video into tokens, the world model samples the
// tokens of the frames that follow (the prompt is prefilled once for the batch of N futures), the tokenizer
// decodes them (wfm::ar::GenerateWorld). Diffusion: a continuous (CV) tokenizer encodes the last frames, the DiT
// denoises the rest of the clip for N futures in one batch, guided by the prompt (wfm::diffusion::GenerateWorld).
// Either way future i draws from its own random stream seeded from (--seed, i), so future i is the same whatever N
// is; the futures are written as future_00.mp4 ... in --output-dir at the input's frame rate.
#include <cstdio>
#include <map>
#include <memory>
#include <string>

#include <ATen/ATen.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "wfm/autoregressive/config.h"
#include "wfm/autoregressive/transformer.h"
#include "wfm/autoregressive/weights.h"
#include "wfm/autoregressive/world.h"
#include "wfm/core/file_util.h"
#include "wfm/core/runtime.h"
#include "wfm/core/status.h"
#include "wfm/core/text/text_encoder.h"
#include "wfm/core/video_io.h"
#include "wfm/diffusion/world.h"

namespace {

constexpr char kUsage[] =
    "usage: multiverse --tokenizer-config JSON --tokenizer-weights FILE --model-config JSON --model-weights FILE\n"
    "                  --video IN.mp4 --output-dir DIR [--model ar|diffusion] [--text-encoder FILE --prompt TEXT]\n"
    "                  [--futures 4] [--seed 0] [--input-frames 9] [--frames 33] [--device cpu]\n"
    "                  ar: [--top-p 0.8] [--temperature 1]   diffusion: [--steps 35] [--guidance 7]\n";

// Every flag with its default; "" = required, "-" = optional without a default.
using Flags = std::map<std::string, std::string>;
const Flags kDefaults = {{"tokenizer-config", ""}, {"tokenizer-weights", ""}, {"model-config", ""},
                         {"model-weights", ""},    {"video", ""},             {"output-dir", ""},
                         {"model", "ar"},          {"text-encoder", "-"},     {"prompt", "-"},
                         {"futures", "4"},         {"seed", "0"},             {"input-frames", "9"},
                         {"frames", "33"},         {"top-p", "0.8"},          {"temperature", "1"},
                         {"steps", "35"},          {"guidance", "7"},         {"device", "cpu"}};

absl::StatusOr<Flags> ParseFlags(int argc, char** argv) {
  Flags flags = kDefaults;
  for (int i = 1; i < argc; i += 2) {
    const std::string arg = argv[i], name = arg.substr(arg.rfind("--", 0) == 0 ? 2 : 0);
    if (arg.rfind("--", 0) != 0 || !kDefaults.count(name) || i + 1 >= argc)
      return absl::InvalidArgumentError(absl::StrCat("bad argument '", arg, "'\n", kUsage));
    flags[name] = argv[i + 1];
  }
  for (const auto& [name, value] : flags)
    if (value.empty()) return absl::InvalidArgumentError(absl::StrCat("--", name, " is required\n", kUsage));
  return flags;
}

absl::StatusOr<int64_t> Int(const Flags& f, const std::string& name) {
  int64_t v = 0;
  if (!absl::SimpleAtoi(f.at(name), &v)) return absl::InvalidArgumentError(absl::StrCat("--", name, ": not a number"));
  return v;
}

absl::StatusOr<double> Real(const Flags& f, const std::string& name) {
  double v = 0;
  if (!absl::SimpleAtod(f.at(name), &v)) return absl::InvalidArgumentError(absl::StrCat("--", name, ": not a number"));
  return v;
}

// The AR world model's futures, uint8 [N, T, H, W, 3].
absl::StatusOr<at::Tensor> ArFutures(const Flags& f, const at::Tensor& frames, int64_t futures, uint64_t seed) {
  wfm::ar::WorldOptions o;  // what to generate
  WFM_ASSIGN_OR_RETURN(o.num_input_frames, Int(f, "input-frames"));
  WFM_ASSIGN_OR_RETURN(o.num_frames, Int(f, "frames"));
  WFM_ASSIGN_OR_RETURN(o.generation.sampling.top_p, Real(f, "top-p"));
  WFM_ASSIGN_OR_RETURN(o.generation.sampling.temperature, Real(f, "temperature"));
  o.generation.num_samples = futures;
  o.generation.seed = seed;

  // The world model (parameter-dict JSON with the reference keys, or a preset name; weights) and its tokenizer.
  WFM_ASSIGN_OR_RETURN(c10::Device device, wfm::ParseDevice(f.at("device")));
  WFM_ASSIGN_OR_RETURN(wfm::ar::ArConfig config, wfm::ar::ArConfig::FromPresetOrFile(f.at("model-config")));
  WFM_ASSIGN_OR_RETURN(wfm::ar::ArTransformer net, wfm::CatchToStatus("building the world model", [&]() {
    return absl::StatusOr<wfm::ar::ArTransformer>(wfm::ar::ArTransformer(config));
  }));
  WFM_RETURN_IF_ERROR(wfm::ar::LoadWeights(*net, f.at("model-weights")));
  net->to(device);
  net->eval();
  WFM_ASSIGN_OR_RETURN(
      std::unique_ptr<wfm::ar::VideoTokenCodec> codec,
      wfm::ar::LoadTokenizerCodec(f.at("tokenizer-config"), f.at("tokenizer-weights"), f.at("device")));

  // The text prompt, for models that attend to text (Video2World).
  wfm::ar::TextContext text;
  if (config.insert_cross_attn) {
    if (f.at("text-encoder") == "-" || f.at("prompt") == "-")
      return absl::InvalidArgumentError("this model is text-conditioned: give --text-encoder and --prompt");
    // T5 folders (the published models) are padded to 512 and fully attended as Cosmos does; the built-in
    // encoder (models trained with wfm) uses its mask, as in training (ar::PadTextRows).
    WFM_ASSIGN_OR_RETURN(std::unique_ptr<wfm::text::TextEncoder> encoder,
                         wfm::text::LoadTextEncoder(f.at("text-encoder")));
    WFM_ASSIGN_OR_RETURN(wfm::text::TextEmbeddings e, encoder->Encode({f.at("prompt")}));
    text = wfm::ar::EncodedTextContext(e, wfm::ar::TextPadLength(f.at("text-encoder"), *encoder));
  }
  WFM_ASSIGN_OR_RETURN(wfm::ar::WorldResult r,
                       wfm::ar::GenerateWorld(*net, *codec, frames, config.insert_cross_attn ? &text : nullptr, o));
  return r.videos;
}

// The diffusion world model's futures, uint8 [N, T, H, W, 3], at the input's size (rounded to the model's grid).
absl::StatusOr<at::Tensor> DiffusionFutures(const Flags& f, const at::Tensor& frames, int64_t futures, uint64_t seed) {
  wfm::diffusion::WorldModelFiles files;  // DiT + CV tokenizer (+ text encoder); latent stats found beside them
  files.config = f.at("model-config");
  files.weights = f.at("model-weights");
  files.tokenizer_config = f.at("tokenizer-config");
  files.tokenizer_weights = f.at("tokenizer-weights");
  if (f.at("text-encoder") != "-") files.text_encoder = f.at("text-encoder");
  files.device = f.at("device");
  WFM_ASSIGN_OR_RETURN(wfm::diffusion::WorldModels models, wfm::diffusion::LoadWorldModels(files));

  wfm::diffusion::WorldOptions o;
  WFM_ASSIGN_OR_RETURN(o.num_input_frames, Int(f, "input-frames"));
  WFM_ASSIGN_OR_RETURN(o.num_frames, Int(f, "frames"));
  WFM_ASSIGN_OR_RETURN(const int64_t steps, Int(f, "steps"));
  o.generation.num_steps = static_cast<int>(steps);
  WFM_ASSIGN_OR_RETURN(o.generation.guidance, Real(f, "guidance"));
  o.generation.num_samples = futures;
  o.generation.seed = seed;
  const std::string prompt = f.at("prompt") == "-" ? "" : f.at("prompt");  // "" = the unconditional model
  WFM_ASSIGN_OR_RETURN(wfm::diffusion::WorldResult r, wfm::diffusion::GenerateWorld(models, frames, prompt, o));
  return r.videos;
}

absl::Status Run(const Flags& f) {
  at::NoGradGuard no_grad;  // inference only
  wfm::InitThreads();       // all cores, or WFM_NUM_THREADS
  WFM_ASSIGN_OR_RETURN(const int64_t futures, Int(f, "futures"));
  WFM_ASSIGN_OR_RETURN(const int64_t seed, Int(f, "seed"));
  if (futures < 1) return absl::InvalidArgumentError("--futures must be >= 1");
  if (f.at("model") != "ar" && f.at("model") != "diffusion")
    return absl::InvalidArgumentError(absl::StrCat("--model must be ar or diffusion, got '", f.at("model"), "'"));

  // The input video, uint8 [T, H, W, 3]: its last --input-frames frames are the prompt.
  WFM_ASSIGN_OR_RETURN(wfm::VideoInfo info, wfm::ProbeVideo(f.at("video")));
  WFM_ASSIGN_OR_RETURN(at::Tensor frames, wfm::DecodeVideo(f.at("video")));
  WFM_ASSIGN_OR_RETURN(const at::Tensor videos, f.at("model") == "ar"
                                                    ? ArFutures(f, frames, futures, static_cast<uint64_t>(seed))
                                                    : DiffusionFutures(f, frames, futures, static_cast<uint64_t>(seed)));

  // One MP4 per future, at the input's frame rate: uint8 [N, T, H, W, 3] -> future_00.mp4, future_01.mp4, ...
  WFM_RETURN_IF_ERROR(wfm::MakeDirs(f.at("output-dir")));
  wfm::EncodeOptions enc;
  if (info.fps.value() > 0) enc.fps = info.fps.value();
  for (int64_t i = 0; i < videos.size(0); ++i) {
    const std::string path = absl::StrFormat("%s/future_%02d.mp4", f.at("output-dir"), i);
    WFM_RETURN_IF_ERROR(wfm::WriteVideo(path, videos[i], enc));
    std::printf("wrote %s (%lld frames, %s, seed %lld row %lld)\n", path.c_str(),
                static_cast<long long>(videos.size(1)), f.at("model").c_str(), static_cast<long long>(seed),
                static_cast<long long>(i));
  }
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help") {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const absl::StatusOr<Flags> flags = ParseFlags(argc, argv);
  const absl::Status status = flags.ok() ? Run(*flags) : flags.status();
  if (!status.ok()) {
    std::fprintf(stderr, "multiverse: error: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
