// `wfm diffusion ...`: the diffusion world model from the command line.
//   forward   run the DiT once on stored inputs (parity checks against the Python reference)
#include <string>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include "absl/strings/str_cat.h"
#include "cli.h"
#include "wfm/core/logging.h"
#include "wfm/core/runtime.h"
#include "wfm/core/safetensors.h"
#include "wfm/core/status.h"
#include "wfm/diffusion/dit.h"

namespace wfm::cli {
namespace {

absl::StatusOr<c10::ScalarType> ParseDtype(const std::string& name) {
  if (name == "float32" || name == "fp32") return at::kFloat;
  if (name == "bfloat16" || name == "bf16") return at::kBFloat16;
  if (name == "float16" || name == "fp16") return at::kHalf;
  return absl::InvalidArgumentError(absl::StrCat("--dtype must be float32, bfloat16 or float16, got '", name, "'"));
}

absl::Status Forward(const std::string& config_path, const std::string& weights, const std::string& input,
                     const std::string& output, const std::string& device_name, const std::string& dtype_name,
                     double fps) {
  using namespace wfm::diffusion;
  WFM_ASSIGN_OR_RETURN(DiTConfig config, DiTConfig::FromJsonFile(config_path));
  WFM_ASSIGN_OR_RETURN(c10::Device device, ParseDevice(device_name));
  WFM_ASSIGN_OR_RETURN(c10::ScalarType dtype, ParseDtype(dtype_name));
  WFM_ASSIGN_OR_RETURN(TensorMap io, ReadSafetensors(input));
  auto get = [&](const char* name, bool required) -> absl::StatusOr<at::Tensor> {
    auto it = io.find(name);
    if (it == io.end()) {
      if (required) return absl::InvalidArgumentError(absl::StrCat(input, ": missing tensor '", name, "'"));
      return at::Tensor();
    }
    if (it->second.is_floating_point() && !at::isfinite(it->second).all().item<bool>())
      return absl::InvalidArgumentError(absl::StrCat(input, ": tensor '", name, "' has NaN or Inf values"));
    return it->second.to(device);
  };
  DiTInputs in;
  WFM_ASSIGN_OR_RETURN(in.x, get("x", true));
  WFM_ASSIGN_OR_RETURN(in.timesteps, get("timesteps", true));
  WFM_ASSIGN_OR_RETURN(in.crossattn_emb, get("crossattn_emb", true));
  WFM_ASSIGN_OR_RETURN(in.padding_mask, get("padding_mask", false));
  WFM_ASSIGN_OR_RETURN(in.condition_video_input_mask, get("condition_video_input_mask", config.video_conditioned()));
  WFM_ASSIGN_OR_RETURN(in.condition_video_augment_sigma, get("condition_video_augment_sigma", false));
  WFM_ASSIGN_OR_RETURN(at::Tensor fps_t, get("fps", false));
  in.fps = fps_t.defined() ? fps_t.flatten()[0].item<double>() : fps;

  GeneralDiT net(config);
  WFM_RETURN_IF_ERROR(LoadDiTWeights(*net, weights));
  WFM_RETURN_IF_ERROR(net->ValidateInputs(in), input);
  return CatchToStatus("DiT forward", [&]() -> absl::Status {
    net->to(device, dtype);
    net->eval();
    torch::NoGradGuard no_grad;
    const at::Tensor out = net->Forward(in).to(at::kFloat).cpu();
    WFM_LOG(INFO) << (config.video_conditioned() ? "VideoExtendGeneralDIT" : "GeneralDIT") << " output "
                  << c10::str(out.sizes()) << " -> " << output;
    return WriteSafetensors(output, {{"output", out}}, {{"network", config.video_conditioned() ? "v2w" : "t2w"}});
  });
}

int RunForward(int argc, char** argv) {
  std::string config, weights, input, output, device = "cpu", dtype = "float32";
  double fps = 24.0;
  ArgParser p("wfm diffusion forward",
              "Run the diffusion transformer once on stored inputs and write its output F(x) (before the EDM "
              "c_skip/c_out combination). The Video2World network is used when the config's in_channels is "
              "out_channels + 1.");
  p.Option("config", &config, "reference network config: a fixture json (its `config`) or the dict itself", true)
      .Option("weights", &weights, "network weights (safetensors; reference names, `net.` prefix allowed)", true)
      .Option("input", &input,
              "safetensors with x [B,C,T,H,W], timesteps [B] (c_noise), crossattn_emb [B,N,D], optional "
              "padding_mask [B,1,H',W'], condition_video_input_mask [B,1,T,H,W] (Video2World), fps",
              true)
      .Option("output", &output, "safetensors to write with `output` [B,C,T,H,W] (float32)", true)
      .Option("device", &device, "cpu | cuda | cuda:N | auto (default cpu)")
      .Option("dtype", &dtype, "float32 | bfloat16 | float16 (default float32)")
      .Option("fps", &fps, "frame rate for the RoPE time scale when the input has no `fps` (default 24)")
      .Epilog("example:\n  wfm diffusion forward --config ../shared/fixtures/diffusion/dit_t2w.json \\\n"
              "    --weights ../shared/fixtures/diffusion/dit_t2w.weights.safetensors \\\n"
              "    --input ../shared/fixtures/diffusion/dit_t2w.io.safetensors --output out.safetensors\n");
  if (auto rc = p.Parse(argc, argv)) return *rc;
  const absl::Status s = Forward(config, weights, input, output, device, dtype, fps);
  return s.ok() ? kExitOk : ReportError(s);
}

WFM_REGISTER_COMMAND("diffusion forward", "run the diffusion DiT once on stored inputs", RunForward);

}  // namespace
}  // namespace wfm::cli
