// `wfm ar ...`: the autoregressive world model from the command line.
//   logits    run the network on stored tokens (full forward or prefill + KV-cache steps) — parity checks
//   generate  Video2World / Text2World: prompt video (+ text) -> B futures as MP4
//   train     teacher-forced training on tokenized clips (see train_ar.cc in the library)
#include <filesystem>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli.h"
#include "wfm/autoregressive/config.h"
#include "wfm/autoregressive/generate.h"
#include "wfm/autoregressive/transformer.h"
#include "wfm/autoregressive/weights.h"
#include "wfm/core/logging.h"
#include "wfm/core/runtime.h"
#include "wfm/core/safetensors.h"
#include "wfm/core/status.h"

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
  if (!fs::exists(config)) {
    auto preset = ArConfig::Preset(config);
    if (preset.ok()) return preset;
    return absl::NotFoundError(absl::StrCat("--config '", config, "' is neither a file nor a preset (",
                                            absl::StrJoin(ArConfig::PresetNames(), ", "), ")"));
  }
  return ArConfig::FromJsonFile(config);
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

}  // namespace
}  // namespace wfm::cli
