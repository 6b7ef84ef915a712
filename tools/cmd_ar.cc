// `wfm ar ...`: the autoregressive world model from the command line.
//   logits    run the network on stored tokens (full forward or prefill + KV-cache steps) — parity checks
//   generate  Video2World / Text2World: prompt video (+ text) -> B futures as MP4
//   tokenize  videos -> token-clip folders for training
//   (`wfm ar train` is tools/cmd_ar_train.cc)
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/autograd/grad_mode.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli.h"
#include "wfm/autoregressive/config.h"
#include "wfm/autoregressive/data.h"
#include "wfm/autoregressive/generate.h"
#include "wfm/autoregressive/transformer.h"
#include "wfm/autoregressive/weights.h"
#include "wfm/autoregressive/world.h"
#include "wfm/core/file_util.h"
#include "wfm/core/logging.h"
#include "wfm/core/runtime.h"
#include "wfm/core/safetensors.h"
#include "wfm/core/status.h"
#include "wfm/core/text/text_encoder.h"
#include "wfm/core/video_io.h"

namespace wfm::cli {
namespace {

namespace fs = std::filesystem;
using namespace wfm::ar;

absl::StatusOr<c10::ScalarType> ParseDtype(const std::string& name) {
  if (name == "float32" || name == "fp32") return at::kFloat;
  if (name == "bfloat16" || name == "bf16") return at::kBFloat16;
  if (name == "float16" || name == "fp16") return at::kHalf;
  return absl::InvalidArgumentError(absl::StrCat("--dtype must be float32, bfloat16 or float16, got '", name, "'"));
}

// --config: a reference params json (or a fixture json holding `params`), or a preset name.
absl::StatusOr<ArConfig> LoadConfig(const std::string& config) {
  WFM_ASSIGN_OR_RETURN(ArConfig c, ArConfig::FromPresetOrFile(config), "--config");
  return c;
}

// Builds the network on `device` in `dtype` with weights from `weights` (or random ones).
absl::StatusOr<ArTransformer> LoadNet(const ArConfig& config, const std::string& weights, bool random_init,
                                      c10::Device device, c10::ScalarType dtype) {
  if (weights.empty() && !random_init) return absl::InvalidArgumentError("give --weights (or --random-init)");
  WFM_ASSIGN_OR_RETURN(ArTransformer net, CatchToStatus("building the AR network", [&]() -> absl::StatusOr<ArTransformer> {
    return ArTransformer(config);
  }));
  if (random_init) {
    WFM_LOG(WARNING) << "AR network: random weights (--random-init)";
    net->InitWeights(0);
  } else {
    WFM_RETURN_IF_ERROR(LoadWeights(*net, weights));
  }
  WFM_RETURN_IF_ERROR(CatchToStatus("moving the AR network", [&]() {
    net->to(device, dtype);
    net->eval();
    return absl::OkStatus();
  }));
  WFM_LOG(INFO) << absl::StrFormat("AR network: %d layers, dim %d, %.1fM parameters, %s on %s", config.n_layers,
                                   config.dim, config.NumParameters() / 1e6, c10::toString(dtype), device.str());
  return net;
}

// ------------------------------------------------------------------------------------------------ logits

absl::Status Logits(const std::string& config_path, const std::string& weights, const std::string& input,
                    const std::string& output, bool incremental, const std::string& device_name,
                    const std::string& dtype_name) {
  WFM_ASSIGN_OR_RETURN(ArConfig config, LoadConfig(config_path));
  WFM_ASSIGN_OR_RETURN(c10::Device device, ParseDevice(device_name));
  WFM_ASSIGN_OR_RETURN(c10::ScalarType dtype, ParseDtype(dtype_name));
  WFM_ASSIGN_OR_RETURN(TensorMap io, ReadSafetensors(input));
  const auto it = io.find("tokens");
  if (it == io.end()) return absl::InvalidArgumentError(absl::StrCat(input, ": missing tensor 'tokens' [B, N]"));
  const at::Tensor tokens = it->second;
  if (tokens.dim() != 2 || tokens.size(1) == 0)
    return absl::InvalidArgumentError(absl::StrCat(input, ": 'tokens' must be [B, N] with N >= 1"));
  WFM_RETURN_IF_ERROR(CheckTokenRange(tokens, config.EmbeddingVocab(), "tokens"), input);
  if (tokens.size(1) > config.max_seq_len)
    return absl::InvalidArgumentError(absl::StrCat(input, ": ", tokens.size(1), " tokens exceed max_seq_len ",
                                                   config.max_seq_len, " (context overflow)"));
  TextContext text;
  if (io.count("context")) {
    text.embeddings = io.at("context");
    if (io.count("context_mask")) text.mask = io.at("context_mask").to(at::kBool);
    if (!at::isfinite(text.embeddings).all().item<bool>())
      return absl::InvalidArgumentError(absl::StrCat(input, ": 'context' has NaN or Inf values"));
    WFM_RETURN_IF_ERROR(CheckTextContext(config, text, tokens.size(0)), input);
  } else if (config.insert_cross_attn) {
    return absl::InvalidArgumentError(
        absl::StrCat(input, ": the model has cross-attention; 'context' [B, L, ", config.context_dim, "] is required"));
  }
  WFM_ASSIGN_OR_RETURN(ArTransformer net, LoadNet(config, weights, false, device, dtype));
  return CatchToStatus("AR logits", [&]() -> absl::Status {
    torch::NoGradGuard no_grad;
    const at::Tensor tok = tokens.to(device, at::kLong);
    if (text.embeddings.defined()) {
      text.embeddings = text.embeddings.to(device, dtype);
      if (text.mask.defined()) text.mask = text.mask.to(device);
    }
    const TextContext* ctx = text.embeddings.defined() ? &text : nullptr;
    at::Tensor logits;
    const int64_t b = tok.size(0), n = tok.size(1);
    if (!incremental) {
      logits = net->forward(tok, 0, nullptr, ctx);
    } else {
      const int64_t half = std::max<int64_t>(1, n / 2);
      KvCache cache = net->NewCache(b, n);
      std::vector<at::Tensor> parts{net->forward(tok.narrow(1, 0, half), 0, &cache, ctx)};
      for (int64_t p = half; p < n; ++p) parts.push_back(net->forward(tok.narrow(1, p, 1), p, &cache, ctx));
      logits = at::cat(parts, 1);
    }
    logits = logits.to(at::kCPU, at::kFloat);
    WFM_LOG(INFO) << "logits " << c10::str(logits.sizes()) << (incremental ? " (prefill + KV-cache steps)" : "")
                  << " -> " << output;
    return WriteSafetensors(output, {{"logits", logits}}, {{"mode", incremental ? "incremental" : "full"}});
  });
}

int RunLogits(int argc, char** argv) {
  std::string config, weights, input, output, device = "cpu", dtype = "float32";
  bool incremental = false;
  ArgParser p("wfm ar logits",
              "Run the AR world-model network on stored tokens and write the logits: a full forward with the "
              "causal mask, or with --incremental a prefill of the first half and then one token per step through "
              "the KV cache (both must agree).");
  p.Option("config", &config, "reference parameter dict (a fixture json's `params`, or the dict) or a preset", true)
      .Option("weights", &weights, "network weights (safetensors / model.pt; reference names)", true)
      .Option("input", &input, "safetensors with tokens int64 [B, N] (+ context [B, L, D], context_mask [B, L])",
              true)
      .Option("output", &output, "safetensors to write with `logits` [B, N, vocab] (float32)", true)
      .Flag("incremental", &incremental, "prefill N/2 tokens, then decode one token at a time with the KV cache")
      .Option("device", &device, "cpu | cuda | cuda:N | auto (default cpu)")
      .Option("dtype", &dtype, "float32 | bfloat16 | float16 (default float32)")
      .Epilog("example:\n  wfm ar logits --config ../shared/fixtures/autoregressive/ar_v2w.json \\\n"
              "    --weights ../shared/fixtures/autoregressive/ar_v2w.weights.safetensors \\\n"
              "    --input ../shared/fixtures/autoregressive/ar_v2w.io.safetensors --output out.safetensors "
              "--incremental\n");
  if (auto rc = p.Parse(argc, argv)) return *rc;
  const absl::Status s = Logits(config, weights, input, output, incremental, device, dtype);
  return s.ok() ? kExitOk : ReportError(s);
}

WFM_REGISTER_COMMAND("ar logits", "run the AR world model on stored tokens (full or KV-cache incremental)",
                     RunLogits);

// ------------------------------------------------------------------------------------------------ generate

bool IsImagePath(const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  for (char& ch : ext) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp" || ext == ".webp";
}

// The last `n` frames of a video (streamed: memory holds at most n + one chunk of frames), or an image.
absl::StatusOr<at::Tensor> ReadPromptFrames(const std::string& path, int64_t n, double* fps) {
  if (IsImagePath(path)) {
    WFM_ASSIGN_OR_RETURN(at::Tensor img, ReadImage(path));
    return img.unsqueeze(0);  // [1, H, W, 3]
  }
  WFM_ASSIGN_OR_RETURN(VideoInfo info, ProbeVideo(path));
  if (info.fps.value() > 0) *fps = info.fps.value();
  std::vector<at::Tensor> tail;
  int64_t kept = 0;
  WFM_ASSIGN_OR_RETURN(int64_t total, DecodeVideoStream(path, DecodeOptions{}, [&](const at::Tensor& chunk, int64_t) {
    tail.push_back(chunk.clone());
    kept += chunk.size(0);
    while (!tail.empty() && kept - tail.front().size(0) >= n) {
      kept -= tail.front().size(0);
      tail.erase(tail.begin());
    }
    return absl::OkStatus();
  }));
  if (total == 0) return absl::InvalidArgumentError(absl::StrCat(path, ": no frames"));
  at::Tensor all = at::cat(tail, 0);
  return all.narrow(0, std::max<int64_t>(0, all.size(0) - n), std::min<int64_t>(n, all.size(0)));
}

struct GenerateArgs {
  std::string config, weights, tokenizer_config, tokenizer_weights, text_encoder, text_embeddings;
  std::string input_video, prompt, output, device = "cpu", dtype = "auto";
  int64_t num_input_frames = 9, num_frames = 33, seed = 0, num_samples = 1, top_k = 0, window_context_frames = 0;
  double temperature = 1.0, top_p = 0.8, fps = 24.0, guidance = 1.0;
  bool random_init = false, save_tokens = false, bf16_head = false, int8_head = false, stream = false;
};

absl::StatusOr<TextContext> LoadTextContext(const ArConfig& config, const GenerateArgs& a) {
  if (!a.text_embeddings.empty()) {
    WFM_ASSIGN_OR_RETURN(TensorMap t, ReadSafetensors(a.text_embeddings));
    if (!t.count("context"))
      return absl::InvalidArgumentError(absl::StrCat(a.text_embeddings, ": missing tensor 'context' [1, L, D]"));
    TextContext ctx{t.at("context").to(at::kFloat), t.count("context_mask") ? t.at("context_mask").to(at::kBool)
                                                                             : at::Tensor()};
    if (ctx.embeddings.dim() == 2) ctx.embeddings = ctx.embeddings.unsqueeze(0);
    if (ctx.mask.defined() && ctx.mask.dim() == 1) ctx.mask = ctx.mask.unsqueeze(0);
    WFM_RETURN_IF_ERROR(CheckTextContext(config, ctx, 1), a.text_embeddings);
    return ctx;
  }
  if (!a.text_encoder.empty()) {
    // The padding rule of PadTextRows (ar/data.h), as in `wfm ar tokenize` and `wfm ar train`.
    text::LoadTextEncoderOptions to;
    to.device = a.device;
    to.pad_to_max_length = false;
    WFM_ASSIGN_OR_RETURN(std::unique_ptr<text::TextEncoder> enc, text::LoadTextEncoder(a.text_encoder, to),
                         "--text-encoder");
    if (enc->dim() != config.context_dim)
      return absl::InvalidArgumentError(absl::StrCat("text encoder '", a.text_encoder, "' gives ", enc->dim(),
                                                     "-dim embeddings, the model's context_dim is ",
                                                     config.context_dim));
    WFM_ASSIGN_OR_RETURN(text::TextEmbeddings e, enc->Encode({a.prompt}), "encoding the prompt");
    TextContext ctx = EncodedTextContext(e, TextPadLength(a.text_encoder, *enc));
    return TextContext{ctx.embeddings.to(at::kCPU, at::kFloat), ctx.mask.to(at::kCPU)};
  }
  if (a.random_init) {
    // Smoke tests without a text encoder: a fixed pseudo-embedding derived from the prompt.
    WFM_LOG(WARNING) << "no text encoder: using a pseudo text embedding derived from the prompt (--random-init)";
    auto gen = at::make_generator<at::CPUGeneratorImpl>(std::hash<std::string>{}(a.prompt));
    at::Tensor e = at::empty({1, 8, config.context_dim});
    e.normal_(0, 1, gen);
    return TextContext{e, at::ones({1, 8}, at::kBool)};
  }
  return absl::InvalidArgumentError(
      "this model has cross-attention: give --text-encoder DIR with --prompt (or --text-embeddings FILE)");
}

absl::Status Generate(const GenerateArgs& a) {
  WFM_ASSIGN_OR_RETURN(ArConfig config, LoadConfig(a.config));
  WFM_ASSIGN_OR_RETURN(c10::Device device, ParseDevice(a.device));
  c10::ScalarType dtype = at::kFloat;
  if (a.dtype == "auto") {
    dtype = device.is_cuda() ? config.Dtype() : at::kFloat;
  } else {
    WFM_ASSIGN_OR_RETURN(dtype, ParseDtype(a.dtype));
  }
  if (a.num_samples < 1) return absl::InvalidArgumentError("--num-samples must be >= 1");
  const bool folder = a.num_samples > 1;
  if (!folder && fs::path(a.output).extension().empty())
    return absl::InvalidArgumentError(absl::StrCat("--output '", a.output, "' needs a video extension (.mp4)"));
  if (a.input_video.empty() && a.num_input_frames > 0 && !config.HasBov())
    return absl::InvalidArgumentError("give --input-video (this base model continues a video; Text2World needs a "
                                      "Video2World model and --num-input-frames 0)");
  if (a.tokenizer_config.empty()) return absl::InvalidArgumentError("give --tokenizer-config");
  if (a.tokenizer_weights.empty() && !a.random_init)
    return absl::InvalidArgumentError("give --tokenizer-weights (or --random-init)");

  // Inputs first: bad input fails before any model is loaded.
  double fps = a.fps;
  at::Tensor frames;
  const int64_t n_in = a.input_video.empty() ? 0 : a.num_input_frames;
  if (n_in > 0) {
    WFM_ASSIGN_OR_RETURN(frames, ReadPromptFrames(a.input_video, n_in, &fps));
    if (frames.size(0) < n_in)
      return absl::InvalidArgumentError(absl::StrCat(a.input_video, " has ", frames.size(0), " frames, fewer than the ",
                                                     n_in, " requested by --num-input-frames"));
  }
  std::optional<TextContext> text, unconditional;
  if (config.insert_cross_attn) {
    WFM_ASSIGN_OR_RETURN(text, LoadTextContext(config, a));
    // The unconditional branch for --guidance is what training's text dropout shows the model: the same context
    // zeroed (reference utils/misc.py random_dropout), attended with the same mask.
    unconditional = TextContext{at::zeros_like(text->embeddings), text->mask};
  } else if (!a.prompt.empty()) {
    WFM_LOG(WARNING) << "this model has no text conditioning; --prompt is ignored";
  }

  WFM_ASSIGN_OR_RETURN(ArTransformer net, LoadNet(config, a.weights, a.random_init, device, dtype));
  if (a.bf16_head && a.int8_head) return absl::InvalidArgumentError("give either --bf16-head or --int8-head");
  if (a.bf16_head) net->set_output_dtype(at::kBFloat16);
  if (a.int8_head) net->set_output_dtype(at::kChar);
  WFM_ASSIGN_OR_RETURN(std::unique_ptr<VideoTokenCodec> codec,
                       LoadTokenizerCodec(a.tokenizer_config, a.tokenizer_weights,
                                          a.device));
  WorldOptions o;
  o.num_input_frames = n_in;
  o.num_frames = a.num_frames;
  o.generation.seed = static_cast<uint64_t>(a.seed);
  o.generation.num_samples = a.num_samples;
  o.generation.sampling = SamplingOptions{a.temperature, a.top_k, a.top_k > 0 ? 1.0 : a.top_p};
  o.generation.window_context_frames = a.window_context_frames;
  o.generation.guidance = a.guidance;
  if (a.guidance != 1.0 && !text) return absl::InvalidArgumentError("--guidance needs a text-conditioned model");
  EncodeOptions enc;
  enc.fps = fps;
  std::vector<std::string> paths;
  if (folder) WFM_RETURN_IF_ERROR(MakeDirs(a.output));
  for (int64_t b = 0; b < a.num_samples; ++b)
    paths.push_back(folder ? (fs::path(a.output) / absl::StrFormat("sample_%03d.mp4", b)).string() : a.output);
  // --stream: every sample's MP4 grows frame by frame while the model generates.
  std::vector<std::unique_ptr<VideoWriter>> writers;
  if (a.stream) {
    const int h = static_cast<int>(config.video_latent_shape[1] * codec->spatial_compression());
    const int w = static_cast<int>(config.video_latent_shape[2] * codec->spatial_compression());
    for (const auto& path : paths) {
      WFM_ASSIGN_OR_RETURN(std::unique_ptr<VideoWriter> wr, VideoWriter::Open(path, w, h, enc));
      writers.push_back(std::move(wr));
    }
    o.on_frames = [&](const at::Tensor& f) -> absl::Status {  // uint8 [B, t, H, W, 3]
      for (int64_t b = 0; b < f.size(0); ++b) WFM_RETURN_IF_ERROR(writers[static_cast<size_t>(b)]->Write(f[b]));
      return absl::OkStatus();
    };
  }
  WFM_ASSIGN_OR_RETURN(WorldResult r, GenerateWorld(*net, *codec, frames, text ? &*text : nullptr, o,
                                                    a.guidance != 1.0 ? &*unconditional : nullptr));
  std::vector<std::string> written;
  for (int64_t b = 0; b < r.videos.size(0); ++b) {
    if (a.stream) {
      WFM_RETURN_IF_ERROR(writers[static_cast<size_t>(b)]->Close());
    } else {
      WFM_RETURN_IF_ERROR(WriteVideo(paths[static_cast<size_t>(b)], r.videos[b], enc));
    }
    written.push_back(paths[static_cast<size_t>(b)]);
  }
  if (a.save_tokens) {
    const std::string path = folder ? (fs::path(a.output) / "tokens.safetensors").string()
                                    : fs::path(a.output).replace_extension(".tokens.safetensors").string();
    WFM_RETURN_IF_ERROR(WriteSafetensors(path, {{"tokens", r.tokens}}, {{"seed", std::to_string(a.seed)}}));
    written.push_back(path);
  }
  const auto& g = r.generation;
  std::printf("generated %lld latent frames x %lld samples: prefill %lld tokens in %.2f s (%.0f tok/s), decode %lld "
              "tokens x %lld samples in %.2f s (%.1f tok/s), %lld window slides; tokenizer encode %.2f s, decode "
              "%.2f s\n",
              static_cast<long long>(r.tokens.size(1)), static_cast<long long>(r.tokens.size(0)),
              static_cast<long long>(g.prompt_tokens), g.prefill_seconds,
              g.prompt_tokens / std::max(g.prefill_seconds, 1e-9), static_cast<long long>(g.generated_tokens),
              static_cast<long long>(r.tokens.size(0)), g.decode_seconds,
              g.generated_tokens * r.tokens.size(0) / std::max(g.decode_seconds, 1e-9),
              static_cast<long long>(g.window_slides), r.encode_seconds, r.decode_seconds);
  for (const auto& w : written) std::printf("wrote %s\n", w.c_str());
  return absl::OkStatus();
}

int RunGenerate(int argc, char** argv) {
  GenerateArgs a;
  ArgParser p("wfm ar generate",
              "Continue a video (Video2World) or start one from text (Text2World) with the autoregressive world "
              "model: the last --num-input-frames frames are tokenized with the DV tokenizer, the remaining latent "
              "frames are sampled token by token (raster order t, h, w), and the tokens are decoded to pixels. "
              "With --num-samples B > 1, B different futures of the same prompt are generated in one batch and "
              "written into the folder --output. Frames past the model's latent window are generated with a "
              "sliding window over tokens.");
  p.Option("config", &a.config, "AR model: reference parameter dict json or a preset (4B, 5B-Video2World, ...)", true)
      .Option("weights", &a.weights, "AR weights (safetensors / model.pt)")
      .Option("tokenizer-config", &a.tokenizer_config, "DV tokenizer config.json or preset (DV8x16x16-720p)", true)
      .Option("tokenizer-weights", &a.tokenizer_weights, "DV tokenizer weights (dir / .jit / .pt / .safetensors)")
      .Option("text-encoder", &a.text_encoder, "text encoder directory (T5) for --prompt (Video2World models)")
      .Option("text-embeddings", &a.text_embeddings,
              "precomputed text conditioning: safetensors with context [1, L, D] (+ context_mask [1, L])")
      .Option("input-video", &a.input_video, "prompt video or image (resized to cover the model size, centre crop)")
      .Option("num-input-frames", &a.num_input_frames, "prompt frames taken from the END of the input: 1 or 9 "
                                                        "(any 1 + 8k); default 9")
      .Option("num-frames", &a.num_frames, "output frames including the prompt: 1 + 8m (default 33)")
      .Option("prompt", &a.prompt, "text prompt (Video2World models)")
      .Option("seed", &a.seed, "random seed (same seed -> same video; sample i of a seed is batch-independent)")
      .Option("num-samples", &a.num_samples, "B futures from the same prompt (default 1)")
      .Option("temperature", &a.temperature, "sampling temperature (default 1.0; 0 = greedy)")
      .Option("top-p", &a.top_p, "nucleus sampling threshold (default 0.8)")
      .Option("top-k", &a.top_k, "top-k sampling instead of top-p (default off)")
      .Option("guidance", &a.guidance,
              "classifier-free guidance on the text, against a zeroed context (as text dropout in training); "
              "default 1 = off")
      .Option("window-context-frames", &a.window_context_frames,
              "latent frames kept as context when the window slides (default: window - 1)")
      .Option("fps", &a.fps, "output frame rate when the input has none (default 24)")
      .Option("output", &a.output, "OUT.mp4, or a folder for --num-samples > 1", true)
      .Flag("save-tokens", &a.save_tokens, "also write the token grid (safetensors `tokens` [B, t, h, w])")
      .Flag("stream", &a.stream,
            "decode and encode frames as each latent frame is generated (bounded memory; each MP4 is renamed "
            "into place when complete)")
      .Flag("random-init", &a.random_init, "random AR (and tokenizer) weights, for smoke tests")
      .Flag("bf16-head", &a.bf16_head,
            "run the output projection in bfloat16: ~2x faster batch-1 decode on CPU, logits within ~1e-2")
      .Flag("int8-head", &a.int8_head,
            "run the output projection with int8 weights (per-row scales, fp32 input): the fastest batch-1 decode on "
            "CPU, logits within ~1e-2")
      .Option("device", &a.device, "cpu | cuda | cuda:N | auto (default cpu)")
      .Option("dtype", &a.dtype, "auto (float32 on CPU, the config precision on GPU) | float32 | bfloat16")
      .Epilog("example:\n  wfm ar generate --config 5B-Video2World --weights ckpt/model.pt \\\n"
              "    --tokenizer-config DV8x16x16-720p --tokenizer-weights ckpt/DV8x16x16 --text-encoder ckpt/t5 \\\n"
              "    --input-video in.mp4 --num-input-frames 9 --num-frames 33 --prompt \"a car turns left\" \\\n"
              "    --seed 1 --num-samples 4 --output futures/\n");
  if (auto rc = p.Parse(argc, argv)) return *rc;
  const absl::Status s = Generate(a);
  return s.ok() ? kExitOk : ReportError(s);
}

WFM_REGISTER_COMMAND("ar generate", "Video2World / Text2World with the AR world model (B futures, MP4 output)",
                     RunGenerate);

// ------------------------------------------------------------------------------------------------ tokenize

absl::Status Tokenize(const std::vector<std::string>& videos, const std::string& config_path,
                      const std::string& tokenizer_config, const std::string& tokenizer_weights, bool random_init,
                      const std::string& text_encoder, const std::string& output, double fps, int64_t clip_frames,
                      int64_t max_clips, const std::string& device) {
  WFM_ASSIGN_OR_RETURN(ArConfig config, LoadConfig(config_path));
  if (tokenizer_weights.empty() && !random_init)
    return absl::InvalidArgumentError("give --tokenizer-weights (or --random-init)");
  WFM_ASSIGN_OR_RETURN(std::unique_ptr<VideoTokenCodec> codec,
                       LoadTokenizerCodec(tokenizer_config, tokenizer_weights, device));
  if (codec->vocab_size() != config.vocab_size)
    return absl::InvalidArgumentError(absl::StrCat("tokenizer/model vocabulary mismatch: ", codec->vocab_size(),
                                                   " codes vs vocab_size ", config.vocab_size));
  std::unique_ptr<text::TextEncoder> enc;
  if (!text_encoder.empty()) {
    text::LoadTextEncoderOptions to;
    to.device = device;
    to.pad_to_max_length = false;
    WFM_ASSIGN_OR_RETURN(enc, text::LoadTextEncoder(text_encoder, to), "--text-encoder");
  }
  // Stored: the caption's real rows + the padding rule that training must apply (PadTextRows, ar/data.h).
  const int64_t pad_to = enc ? TextPadLength(text_encoder, *enc) : 0;
  TokenizeOptions o;
  o.clip_frames = clip_frames > 0 ? clip_frames
                                  : 1 + (config.video_latent_shape[0] - 1) * codec->temporal_compression();
  o.height = config.video_latent_shape[1] * codec->spatial_compression();
  o.width = config.video_latent_shape[2] * codec->spatial_compression();
  o.fps = fps;
  o.max_clips = max_clips;
  WFM_RETURN_IF_ERROR(MakeDirs(output));
  int64_t written = 0;
  for (const std::string& video : videos) {
    WFM_ASSIGN_OR_RETURN(std::vector<at::Tensor> clips, TokenizeVideo(*codec, video, o));
    std::string caption;  // sidecar VIDEO_STEM.txt (the curation / webdataset convention)
    const fs::path side = fs::path(video).replace_extension(".txt");
    if (fs::exists(side)) {
      WFM_ASSIGN_OR_RETURN(caption, ReadFile(side.string()));
      while (!caption.empty() && (caption.back() == '\n' || caption.back() == '\r')) caption.pop_back();
    }
    at::Tensor emb;
    if (enc && !caption.empty()) {
      WFM_ASSIGN_OR_RETURN(text::TextEmbeddings e, enc->Encode({caption}), "encoding the caption of ", video);
      emb = RealTextRows(e)[0].to(at::kCPU, at::kFloat);  // [n, D]
    }
    for (size_t k = 0; k < clips.size(); ++k) {
      const std::string path =
          (fs::path(output) / absl::StrFormat("%s_%04d.safetensors", fs::path(video).stem().string(), k)).string();
      WFM_RETURN_IF_ERROR(TokenFolder::Write(path, TokenClip{path, clips[k], emb, caption, pad_to}));
      ++written;
    }
    WFM_LOG(INFO) << video << ": " << clips.size() << " clips of " << o.clip_frames << " frames"
                  << (caption.empty() ? "" : " (captioned)");
  }
  std::printf("wrote %lld token clips [%lld, %lld, %lld] to %s\n", static_cast<long long>(written),
              static_cast<long long>(1 + (o.clip_frames - 1) / codec->temporal_compression()),
              static_cast<long long>(config.video_latent_shape[1]), static_cast<long long>(config.video_latent_shape[2]),
              output.c_str());
  if (written == 0) return absl::InvalidArgumentError(absl::StrCat("no clip of ", o.clip_frames, " frames in the input"));
  return absl::OkStatus();
}

int RunTokenize(int argc, char** argv) {
  std::vector<std::string> videos;
  std::string config, tokenizer_config, tokenizer_weights, text_encoder, output, device = "cpu";
  double fps = 0;
  int64_t clip_frames = 0, max_clips = 0;
  bool random_init = false;
  ArgParser p("wfm ar tokenize",
              "Cut videos into clips at the AR model's resolution and latent length, tokenize them with the DV "
              "tokenizer and write a token-clip folder for `wfm ar train` (one safetensors per clip: `indices` "
              "[t, h, w], the caption from a sidecar VIDEO.txt, and `crossattn_emb` with --text-encoder).");
  p.Positionals("VIDEO", &videos, "input videos")
      .Option("config", &config, "AR model config (json or preset): sets the clip size and length", true)
      .Option("tokenizer-config", &tokenizer_config, "DV tokenizer config.json or preset", true)
      .Option("tokenizer-weights", &tokenizer_weights, "DV tokenizer weights")
      .Option("text-encoder", &text_encoder, "encode captions now (T5 dir or built-in encoder file)")
      .Option("output", &output, "output folder", true)
      .Option("fps", &fps, "resample videos to this frame rate first (default: keep)")
      .Option("clip-frames", &clip_frames, "frames per clip, 1 + k*8 (default: the model's latent length)")
      .Option("max-clips", &max_clips, "at most this many clips per video (default all)")
      .Flag("random-init", &random_init, "random tokenizer weights (smoke tests)")
      .Option("device", &device, "cpu | cuda | auto (default cpu)");
  if (auto rc = p.Parse(argc, argv)) return *rc;
  const absl::Status s = Tokenize(videos, config, tokenizer_config, tokenizer_weights, random_init, text_encoder,
                                  output, fps, clip_frames, max_clips, device);
  return s.ok() ? kExitOk : ReportError(s);
}

WFM_REGISTER_COMMAND("ar tokenize", "videos -> token-clip folder for AR training (DV tokenizer, captions)",
                     RunTokenize);

}  // namespace
}  // namespace wfm::cli
