// Data-scaled initialisation of a tokenizer's skip path (see tokenizer/train.h).
#include <ATen/ATen.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "wfm/core/status.h"
#include "wfm/tokenizer/layers3d.h"
#include "wfm/tokenizer/train.h"

namespace wfm::tokenizer {

absl::Status ScaleSkipPathToData(TokenizerNetworkImpl& net, const at::Tensor& x) {
  auto enc = std::dynamic_pointer_cast<EncoderFactorizedImpl>(net.encoder);
  auto dec = std::dynamic_pointer_cast<DecoderFactorizedImpl>(net.decoder);
  if (!enc || !dec)
    return absl::InvalidArgumentError(absl::StrCat("ScaleSkipPathToData: factorized video tokenizers (CV/DV) only, not ",
                                                   net.config().name));
  if (x.dim() != 5 || x.size(1) != 3)
    return absl::InvalidArgumentError("ScaleSkipPathToData: expected a [B, 3, T, H, W] batch");
  return CatchToStatus("ScaleSkipPathToData", [&]() -> absl::Status {
    at::NoGradGuard no_grad;
    // Scales the last conv of `conv` (weight and bias) by `factor`: its output scales exactly.
    auto scale = [](FactorizedConv3d& conv, double factor) {
      conv->temporal->conv3d->weight.mul_(factor);
      if (conv->temporal->conv3d->bias.defined()) conv->temporal->conv3d->bias.mul_(factor);
    };
    auto spread = [](const at::Tensor& t, const char* what) -> absl::StatusOr<double> {
      const double sd = t.to(at::kDouble).std().item<double>();
      if (!std::isfinite(sd) || sd <= 1e-12)
        return absl::InvalidArgumentError(absl::StrCat("ScaleSkipPathToData: ", what, " has no spread (std ", sd,
                                                       "); use a batch of real training windows"));
      return sd;
    };
    WFM_ASSIGN_OR_RETURN(const double data_sd, spread(x, "the batch"));
    WFM_ASSIGN_OR_RETURN(const double enc_sd, spread(enc->conv_in(enc->patcher3d(x, nullptr), nullptr), "encoder.conv_in"));
    scale(enc->conv_in, 1.0 / enc_sd);
    const at::Tensor z = net.Encode(x).latent;
    WFM_ASSIGN_OR_RETURN(const double dec_sd, spread(dec->conv_in(net.post_quant_conv3d(z), nullptr), "decoder.conv_in"));
    scale(dec->conv_in, 1.0 / dec_sd);
    // The encoder is final, so its latent z serves the reconstruction too (no second encode).
    WFM_ASSIGN_OR_RETURN(const double rec_sd, spread(net.Decode(z), "the reconstruction"));
    scale(dec->conv_out, data_sd / rec_sd);
    return absl::OkStatus();
  });
}

}  // namespace wfm::tokenizer
