// multiverse: N possible futures of one video, from a wfm autoregressive world model — the synthetic-data use of
// the library in one file, built against the installed package (see README.md).
//
// A discrete video tokenizer turns the last frames of the input video into tokens, the world model samples the
// tokens of the frames that follow (one batch of N futures: the prompt is encoded and prefilled once, future i
// draws from its own random stream seeded from (--seed, i), so future i is the same whatever N is), and the
// tokenizer decodes every future back to pixels, written as future_00.mp4 ... in --output-dir.
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

namespace {

constexpr char kUsage[] =
    "usage: multiverse --tokenizer-config JSON --tokenizer-weights FILE --model-config JSON --model-weights FILE\n"
    "                  --video IN.mp4 --output-dir DIR [--text-encoder FILE --prompt TEXT] [--futures 4]\n"
    "                  [--seed 0] [--input-frames 9] [--frames 33] [--top-p 0.8] [--temperature 1] [--device cpu]\n";

// Every flag with its default; "" = required, "-" = optional without a default.
using Flags = std::map<std::string, std::string>;
const Flags kDefaults = {{"tokenizer-config", ""}, {"tokenizer-weights", ""}, {"model-config", ""},
                         {"model-weights", ""},    {"video", ""},             {"output-dir", ""},
                         {"text-encoder", "-"},    {"prompt", "-"},           {"futures", "4"},
                         {"seed", "0"},            {"input-frames", "9"},     {"frames", "33"},
                         {"top-p", "0.8"},         {"temperature", "1"},      {"device", "cpu"}};

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

absl::Status Run(const Flags& f) {
  at::NoGradGuard no_grad;  // inference only
  wfm::InitThreads();       // all cores, or WFM_NUM_THREADS
  WFM_ASSIGN_OR_RETURN(c10::Device device, wfm::ParseDevice(f.at("device")));
  wfm::ar::WorldOptions o;  // what to generate
  WFM_ASSIGN_OR_RETURN(o.num_input_frames, Int(f, "input-frames"));
  WFM_ASSIGN_OR_RETURN(o.num_frames, Int(f, "frames"));
  WFM_ASSIGN_OR_RETURN(o.generation.num_samples, Int(f, "futures"));
  WFM_ASSIGN_OR_RETURN(const int64_t seed, Int(f, "seed"));
  o.generation.seed = static_cast<uint64_t>(seed);
  if (!absl::SimpleAtod(f.at("top-p"), &o.generation.sampling.top_p) ||
      !absl::SimpleAtod(f.at("temperature"), &o.generation.sampling.temperature))
    return absl::InvalidArgumentError("--top-p and --temperature must be numbers");
  if (o.generation.num_samples < 1) return absl::InvalidArgumentError("--futures must be >= 1");

  // The input video, uint8 [T, H, W, 3]: its last --input-frames frames are the prompt.
  WFM_ASSIGN_OR_RETURN(wfm::VideoInfo info, wfm::ProbeVideo(f.at("video")));
  WFM_ASSIGN_OR_RETURN(at::Tensor frames, wfm::DecodeVideo(f.at("video")));

  // The world model (parameter-dict JSON with the reference keys, or a preset name; weights) and its tokenizer.
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

  // One MP4 per future, at the input's frame rate: uint8 [N, T, H, W, 3] -> future_00.mp4, future_01.mp4, ...
  WFM_RETURN_IF_ERROR(wfm::MakeDirs(f.at("output-dir")));
  wfm::EncodeOptions enc;
  if (info.fps.value() > 0) enc.fps = info.fps.value();
  for (int64_t i = 0; i < r.videos.size(0); ++i) {
    const std::string path = absl::StrFormat("%s/future_%02d.mp4", f.at("output-dir"), i);
    WFM_RETURN_IF_ERROR(wfm::WriteVideo(path, r.videos[i], enc));
    std::printf("wrote %s (%lld frames, seed %lld row %lld)\n", path.c_str(),
                static_cast<long long>(r.videos.size(1)), static_cast<long long>(seed), static_cast<long long>(i));
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
