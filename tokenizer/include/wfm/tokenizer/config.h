// Tokenizer configuration: the Cosmos-Tokenize1 network hyper-parameters under the reference config keys
// (cosmos_predict1/tokenizer/networks/configs.py), named presets for every published variant, and FromJson
// for a reference config.json or a fixture json with a `config` object.
//
//   WFM_ASSIGN_OR_RETURN(TokenizerConfig c, TokenizerConfig::Preset("CV8x8x8"));     // = CV8x8x8-720p
//   WFM_ASSIGN_OR_RETURN(TokenizerConfig s, TokenizerConfig::FromJsonFile("CV8x8x8.json"));
//
// Presets: the Cosmos-Tokenize1 checkpoints (Cosmos-Tokenize1-CV8x8x8-720p, CV4x8x8-360p, DV8x16x16-720p,
// DV4x8x8-360p, CI8x8-360p, CI16x16-360p, DI8x8-360p, DI16x16-360p) and the Cosmos-0.1 ones (CV4x8x8, CV8x8x8,
// CV8x16x16, DV4x8x8, DV8x8x8, DV8x16x16, CI8x8, CI16x16, DI8x8, DI16x16: the base config with the compression
// overridden, patch size 4). A short name (CV8x8x8) means the Tokenize1 variant where one exists (360p for the
// 4x8x8 video and all image tokenizers, 720p for 8x8x8 / 8x16x16), else the Cosmos-0.1 one (CV8x16x16, DV8x8x8).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace wfm::tokenizer {

struct TokenizerConfig {
  // "CV" (causal continuous video), "DV" (causal discrete video), "CI" (continuous image), "DI" (discrete image).
  std::string name = "CV";
  std::vector<int64_t> attn_resolutions = {32};
  int64_t channels = 128;
  std::vector<int64_t> channels_mult = {2, 4, 4};
  double dropout = 0.0;
  int64_t in_channels = 3;
  int64_t out_channels = 3;
  int64_t num_res_blocks = 2;
  int64_t resolution = 1024;
  int64_t patch_size = 4;
  std::string patch_method = "haar";  // "haar" | "rearrange"
  int64_t latent_channels = 16;       // continuous only
  int64_t z_channels = 16;
  int64_t z_factor = 1;
  int64_t num_groups = 1;             // video only: 1 = per-frame (causal) GroupNorm
  bool legacy_mode = false;           // video decoder: which levels upsample in time
  int64_t spatial_compression = 8;
  int64_t temporal_compression = 8;   // video only
  std::string formulation = "AE";     // continuous: "AE" | "VAE"
  std::string encoder = "FACTORIZED"; // video: "FACTORIZED"; image: "Default"
  std::string decoder = "FACTORIZED";
  std::string quantizer = "FSQ";      // discrete: "FSQ"
  int64_t embedding_dim = 6;          // discrete: FSQ code dimension
  std::vector<int64_t> levels = {8, 8, 8, 5, 5, 5};
  int64_t num_quantizers = 4;         // present in the image configs; unused by FSQ

  bool is_video() const { return name == "CV" || name == "DV"; }
  bool is_discrete() const { return name == "DV" || name == "DI"; }
  // Channels of the latent the decoder takes: latent_channels (CV/CI) or embedding_dim (DV/DI, the FSQ codes).
  int64_t latent_dim() const;
  // Product of the FSQ levels (64000 for the published ones).
  int64_t codebook_size() const;
  // Temporal compression for video, 1 for images.
  int64_t time_factor() const { return is_video() ? temporal_compression : 1; }

  // Checks every field the networks depend on; the message names the bad field.
  absl::Status Validate() const;

  // A named preset (see the file comment; names are case-insensitive, "-"/"_" interchangeable, with or
  // without a "Cosmos-Tokenize1-" / "Cosmos-0.1-Tokenizer-" prefix).
  static absl::StatusOr<TokenizerConfig> Preset(absl::string_view name);
  // The canonical preset names.
  static std::vector<std::string> PresetNames();
  // Reads the reference keys; a json with a "config" object (the fixtures) is unwrapped. Unknown keys are
  // ignored (the reference passes **kwargs through); wrong types are errors. Missing keys keep the defaults
  // of the reference base config for that name (CV/DV/CI/DI).
  static absl::StatusOr<TokenizerConfig> FromJson(const nlohmann::json& json);
  static absl::StatusOr<TokenizerConfig> FromJsonString(absl::string_view text);
  static absl::StatusOr<TokenizerConfig> FromJsonFile(const std::string& path);
  // The config under the reference keys (round-trips through FromJson).
  nlohmann::json ToJson() const;
  std::string ToJsonString() const;

  // Resolves a --config argument: a preset name, or a path to a json file.
  static absl::StatusOr<TokenizerConfig> FromPresetOrFile(const std::string& name_or_path);
};

// The reference base dictionaries (continuous_video, discrete_video, continuous_image, discrete_image).
TokenizerConfig BaseConfig(absl::string_view kind);

}  // namespace wfm::tokenizer
