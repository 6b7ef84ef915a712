// TokenizerConfig presets and JSON IO (see config.h). The base dictionaries follow
// cosmos_predict1/tokenizer/networks/configs.py; the Cosmos-0.1 variants follow Cosmos-Tokenizer's
// video_cli/image_cli (base config + compression override).
#include "wfm/tokenizer/config.h"

#include <cctype>
#include <cmath>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "wfm/core/file_util.h"
#include "wfm/core/status.h"

namespace wfm::tokenizer {
namespace {

bool IsPowerOfTwo(int64_t v) { return v > 0 && (v & (v - 1)) == 0; }
int64_t Log2(int64_t v) {
  int64_t r = 0;
  while (v > 1) v >>= 1, ++r;
  return r;
}

std::string Normalize(absl::string_view name) {
  std::string s;
  for (char c : name) s.push_back(c == '_' ? '-' : static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  for (const char* prefix : {"COSMOS-TOKENIZE1-", "COSMOS-1.0-TOKENIZER-"}) {
    if (s.rfind(prefix, 0) == 0) s = s.substr(std::string(prefix).size());
  }
  return s;
}

struct PresetDef {
  const char* name;  // canonical, upper case
  const char* kind;  // CV/DV/CI/DI
  int64_t temporal, spatial, patch;
  int64_t z_channels;  // 0 = base value
};

// Cosmos-Tokenize1 (predict1 configs.py) and Cosmos-0.1 (base config + compression override).
constexpr PresetDef kPresets[] = {
    {"CV8X8X8-720P", "CV", 8, 8, 4, 0},      {"CV4X8X8-360P", "CV", 4, 8, 2, 0},
    {"DV8X16X16-720P", "DV", 8, 16, 4, 0},   {"DV4X8X8-360P", "DV", 4, 8, 2, 256},
    {"CI8X8-360P", "CI", 1, 8, 2, 0},        {"CI16X16-360P", "CI", 1, 16, 2, 0},
    {"DI8X8-360P", "DI", 1, 8, 2, 0},        {"DI16X16-360P", "DI", 1, 16, 2, 0},
    {"COSMOS-0.1-TOKENIZER-CV4X8X8", "CV", 4, 8, 4, 0},
    {"COSMOS-0.1-TOKENIZER-CV8X8X8", "CV", 8, 8, 4, 0},
    {"COSMOS-0.1-TOKENIZER-CV8X16X16", "CV", 8, 16, 4, 0},
    {"COSMOS-0.1-TOKENIZER-DV4X8X8", "DV", 4, 8, 4, 0},
    {"COSMOS-0.1-TOKENIZER-DV8X8X8", "DV", 8, 8, 4, 0},
    {"COSMOS-0.1-TOKENIZER-DV8X16X16", "DV", 8, 16, 4, 0},
    {"COSMOS-0.1-TOKENIZER-CI8X8", "CI", 1, 8, 4, 0},
    {"COSMOS-0.1-TOKENIZER-CI16X16", "CI", 1, 16, 4, 0},
    {"COSMOS-0.1-TOKENIZER-DI8X8", "DI", 1, 8, 4, 0},
    {"COSMOS-0.1-TOKENIZER-DI16X16", "DI", 1, 16, 4, 0},
};

// Short names: the Tokenize1 variant where one exists, else Cosmos-0.1.
constexpr std::pair<const char*, const char*> kAliases[] = {
    {"CV8X8X8", "CV8X8X8-720P"},       {"CV4X8X8", "CV4X8X8-360P"},
    {"DV8X16X16", "DV8X16X16-720P"},   {"DV4X8X8", "DV4X8X8-360P"},
    {"CI8X8", "CI8X8-360P"},           {"CI16X16", "CI16X16-360P"},
    {"DI8X8", "DI8X8-360P"},           {"DI16X16", "DI16X16-360P"},
    {"CV8X16X16", "COSMOS-0.1-TOKENIZER-CV8X16X16"},
    {"DV8X8X8", "COSMOS-0.1-TOKENIZER-DV8X8X8"},
    {"CV8X16X16-720P", "COSMOS-0.1-TOKENIZER-CV8X16X16"},
    {"DV8X8X8-720P", "COSMOS-0.1-TOKENIZER-DV8X8X8"},
};

// Typed getters that turn json type errors into statuses naming the key.
template <typename T>
absl::Status Get(const nlohmann::json& j, const char* key, T* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  try {
    *out = it->get<T>();
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config key \"", key, "\" has the wrong type (", it->type_name(),
                                                   "): ", e.what()));
  }
  return absl::OkStatus();
}

absl::Status GetInt(const nlohmann::json& j, const char* key, int64_t* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (it->is_number_integer()) {
    *out = it->get<int64_t>();
  } else if (it->is_number_float() && std::floor(it->get<double>()) == it->get<double>()) {
    *out = static_cast<int64_t>(it->get<double>());
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("config key \"", key, "\" must be an integer, got ", it->dump()));
  }
  return absl::OkStatus();
}

absl::Status GetIntList(const nlohmann::json& j, const char* key, std::vector<int64_t>* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_array())
    return absl::InvalidArgumentError(absl::StrCat("config key \"", key, "\" must be a list of integers"));
  std::vector<int64_t> v;
  for (const auto& e : *it) {
    if (!e.is_number_integer())
      return absl::InvalidArgumentError(
          absl::StrCat("config key \"", key, "\" must be a list of integers, got ", it->dump()));
    v.push_back(e.get<int64_t>());
  }
  *out = std::move(v);
  return absl::OkStatus();
}

}  // namespace

TokenizerConfig BaseConfig(absl::string_view kind) {
  TokenizerConfig c;
  c.name = std::string(kind);
  if (kind == "CI" || kind == "DI") {
    c.spatial_compression = 16;
    c.temporal_compression = 1;
    c.encoder = "Default";
    c.decoder = "Default";
    c.z_channels = kind == "DI" ? 256 : 16;
  } else {
    c.spatial_compression = kind == "DV" ? 16 : 8;
    c.temporal_compression = 8;
  }
  return c;
}

int64_t TokenizerConfig::latent_dim() const { return is_discrete() ? embedding_dim : latent_channels; }

int64_t TokenizerConfig::codebook_size() const {
  int64_t n = 1;
  for (int64_t l : levels) n *= l;
  return n;
}

absl::Status TokenizerConfig::Validate() const {
  auto bad = [](auto... parts) { return absl::InvalidArgumentError(absl::StrCat("tokenizer config: ", parts...)); };
  if (name != "CV" && name != "DV" && name != "CI" && name != "DI")
    return bad("name must be CV, DV, CI or DI, got \"", name, "\"");
  if (channels <= 0) return bad("channels must be > 0, got ", channels);
  if (channels_mult.empty()) return bad("channels_mult must not be empty");
  for (int64_t m : channels_mult)
    if (m <= 0) return bad("channels_mult entries must be > 0");
  if (in_channels <= 0 || out_channels <= 0) return bad("in_channels/out_channels must be > 0");
  if (num_res_blocks <= 0) return bad("num_res_blocks must be > 0, got ", num_res_blocks);
  if (dropout < 0 || dropout >= 1) return bad("dropout must be in [0, 1), got ", dropout);
  if (!IsPowerOfTwo(patch_size)) return bad("patch_size must be a power of two, got ", patch_size);
  if (patch_method != "haar" && patch_method != "rearrange")
    return bad("patch_method must be \"haar\" or \"rearrange\", got \"", patch_method, "\"");
  if (!IsPowerOfTwo(spatial_compression) || spatial_compression < patch_size)
    return bad("spatial_compression must be a power of two >= patch_size (", patch_size, "), got ",
               spatial_compression);
  const int64_t levels_n = static_cast<int64_t>(channels_mult.size());
  if (Log2(spatial_compression) - Log2(patch_size) > levels_n)
    return bad("spatial_compression ", spatial_compression, " needs more levels than channels_mult has (",
               levels_n, ")");
  if (z_channels <= 0 || z_factor <= 0) return bad("z_channels and z_factor must be > 0");
  if (is_video()) {
    if (!IsPowerOfTwo(temporal_compression) || temporal_compression < patch_size)
      return bad("temporal_compression must be a power of two >= patch_size (", patch_size, "), got ",
                 temporal_compression);
    if (Log2(temporal_compression) - Log2(patch_size) > levels_n)
      return bad("temporal_compression ", temporal_compression, " needs more levels than channels_mult has");
    if (encoder != "FACTORIZED")
      return absl::UnimplementedError(absl::StrCat(
          "tokenizer config: video encoder \"", encoder,
          "\" is not implemented (the published Cosmos-Tokenize1 checkpoints use FACTORIZED)"));
    if (decoder != "FACTORIZED")
      return absl::UnimplementedError(absl::StrCat(
          "tokenizer config: video decoder \"", decoder,
          "\" is not implemented (the published Cosmos-Tokenize1 checkpoints use FACTORIZED)"));
    if (num_groups <= 0) return bad("num_groups must be > 0");
    // The decoder's upsampling schedule (DecoderFactorized) must undo the encoder's downsampling.
    const int64_t nsu = Log2(spatial_compression) - Log2(patch_size);
    const int64_t ntu = Log2(temporal_compression) - Log2(patch_size);
    int64_t spatial_ups = 0, temporal_ups = 0;
    for (int64_t i = levels_n - 1; i >= 1; --i) {
      const int64_t i_rev = levels_n - i - 1;
      const bool t_up = legacy_mode ? i_rev < ntu : (0 < i_rev && i_rev < ntu + 1);
      const bool s_up = t_up || (i_rev < nsu && nsu > ntu);
      spatial_ups += s_up, temporal_ups += t_up;
    }
    if (spatial_ups != nsu || temporal_ups != ntu)
      return bad("with ", levels_n, " levels", legacy_mode ? " (legacy_mode)" : "",
                 " the decoder upsamples ", spatial_ups, "x spatially / ", temporal_ups,
                 "x temporally (powers of two) but the encoder downsamples ", nsu, "x / ", ntu,
                 "x; use more channels_mult levels");
  } else {
    if (encoder != "Default") return absl::UnimplementedError(absl::StrCat(
        "tokenizer config: image encoder \"", encoder, "\" is not implemented (published: Default)"));
    if (decoder != "Default") return absl::UnimplementedError(absl::StrCat(
        "tokenizer config: image decoder \"", decoder, "\" is not implemented (published: Default)"));
    // The 2D blocks use GroupNorm(32).
    for (int64_t m : channels_mult)
      if ((channels * m) % 32 != 0) return bad("image tokenizers need channels*mult divisible by 32 (GroupNorm 32)");
    if (channels % 32 != 0) return bad("image tokenizers need channels divisible by 32 (GroupNorm 32)");
  }
  if (is_discrete()) {
    if (quantizer != "FSQ")
      return absl::UnimplementedError(absl::StrCat("tokenizer config: quantizer \"", quantizer,
                                                   "\" is not implemented (published: FSQ)"));
    if (levels.empty()) return bad("levels must not be empty");
    for (int64_t l : levels)
      if (l < 2) return bad("FSQ levels must be >= 2");
    if (embedding_dim != static_cast<int64_t>(levels.size()))
      return bad("embedding_dim (", embedding_dim, ") must equal the number of FSQ levels (", levels.size(), ")");
    if (codebook_size() > (int64_t{1} << 31)) return bad("FSQ codebook too large");
  } else {
    if (formulation != "AE" && formulation != "VAE")
      return bad("formulation must be \"AE\" or \"VAE\", got \"", formulation, "\"");
    if (latent_channels <= 0) return bad("latent_channels must be > 0");
  }
  return absl::OkStatus();
}

absl::StatusOr<TokenizerConfig> TokenizerConfig::Preset(absl::string_view name) {
  std::string key = Normalize(name);
  for (const auto& [alias, target] : kAliases)
    if (key == alias) key = target;
  for (const PresetDef& p : kPresets) {
    if (key != p.name) continue;
    TokenizerConfig c = BaseConfig(p.kind);
    c.spatial_compression = p.spatial;
    c.temporal_compression = c.is_video() ? p.temporal : c.temporal_compression;
    c.patch_size = p.patch;
    if (p.z_channels > 0) c.z_channels = p.z_channels;
    return c;
  }
  return absl::NotFoundError(absl::StrCat("unknown tokenizer preset \"", name, "\"; known: ",
                                          absl::StrJoin(PresetNames(), ", ")));
}

std::vector<std::string> TokenizerConfig::PresetNames() {
  return {"CV8x8x8-720p", "CV4x8x8-360p", "DV8x16x16-720p", "DV4x8x8-360p", "CI8x8-360p", "CI16x16-360p",
          "DI8x8-360p", "DI16x16-360p", "Cosmos-0.1-Tokenizer-CV4x8x8", "Cosmos-0.1-Tokenizer-CV8x8x8",
          "Cosmos-0.1-Tokenizer-CV8x16x16", "Cosmos-0.1-Tokenizer-DV4x8x8", "Cosmos-0.1-Tokenizer-DV8x8x8",
          "Cosmos-0.1-Tokenizer-DV8x16x16", "Cosmos-0.1-Tokenizer-CI8x8", "Cosmos-0.1-Tokenizer-CI16x16",
          "Cosmos-0.1-Tokenizer-DI8x8", "Cosmos-0.1-Tokenizer-DI16x16", "CV8x8x8", "CV4x8x8", "CV8x16x16",
          "DV8x16x16", "DV4x8x8", "DV8x8x8", "CI8x8", "CI16x16", "DI8x8", "DI16x16"};
}

absl::StatusOr<TokenizerConfig> TokenizerConfig::FromJson(const nlohmann::json& json_in) {
  const nlohmann::json* j = &json_in;
  if (j->is_object() && j->contains("config") && (*j)["config"].is_object()) j = &(*j)["config"];
  if (!j->is_object()) return absl::InvalidArgumentError("tokenizer config must be a JSON object");
  std::string name = "CV";
  WFM_RETURN_IF_ERROR(Get(*j, "name", &name));
  if (name != "CV" && name != "DV" && name != "CI" && name != "DI")
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer config: \"name\" must be CV, DV, CI or DI, got \"", name, "\""));
  TokenizerConfig c = BaseConfig(name);
  WFM_RETURN_IF_ERROR(GetIntList(*j, "attn_resolutions", &c.attn_resolutions));
  WFM_RETURN_IF_ERROR(GetInt(*j, "channels", &c.channels));
  WFM_RETURN_IF_ERROR(GetIntList(*j, "channels_mult", &c.channels_mult));
  WFM_RETURN_IF_ERROR(Get(*j, "dropout", &c.dropout));
  WFM_RETURN_IF_ERROR(GetInt(*j, "in_channels", &c.in_channels));
  WFM_RETURN_IF_ERROR(GetInt(*j, "out_channels", &c.out_channels));
  WFM_RETURN_IF_ERROR(GetInt(*j, "num_res_blocks", &c.num_res_blocks));
  WFM_RETURN_IF_ERROR(GetInt(*j, "resolution", &c.resolution));
  WFM_RETURN_IF_ERROR(GetInt(*j, "patch_size", &c.patch_size));
  WFM_RETURN_IF_ERROR(Get(*j, "patch_method", &c.patch_method));
  WFM_RETURN_IF_ERROR(GetInt(*j, "latent_channels", &c.latent_channels));
  WFM_RETURN_IF_ERROR(GetInt(*j, "z_channels", &c.z_channels));
  WFM_RETURN_IF_ERROR(GetInt(*j, "z_factor", &c.z_factor));
  WFM_RETURN_IF_ERROR(GetInt(*j, "num_groups", &c.num_groups));
  WFM_RETURN_IF_ERROR(Get(*j, "legacy_mode", &c.legacy_mode));
  WFM_RETURN_IF_ERROR(GetInt(*j, "spatial_compression", &c.spatial_compression));
  WFM_RETURN_IF_ERROR(GetInt(*j, "temporal_compression", &c.temporal_compression));
  WFM_RETURN_IF_ERROR(Get(*j, "formulation", &c.formulation));
  WFM_RETURN_IF_ERROR(Get(*j, "encoder", &c.encoder));
  WFM_RETURN_IF_ERROR(Get(*j, "decoder", &c.decoder));
  WFM_RETURN_IF_ERROR(Get(*j, "quantizer", &c.quantizer));
  WFM_RETURN_IF_ERROR(GetInt(*j, "embedding_dim", &c.embedding_dim));
  WFM_RETURN_IF_ERROR(GetIntList(*j, "levels", &c.levels));
  WFM_RETURN_IF_ERROR(GetInt(*j, "num_quantizers", &c.num_quantizers));
  if (!c.is_video()) c.temporal_compression = 1;
  WFM_RETURN_IF_ERROR(c.Validate());
  return c;
}

absl::StatusOr<TokenizerConfig> TokenizerConfig::FromJsonString(absl::string_view text) {
  nlohmann::json j = nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError("tokenizer config is not valid JSON");
  return FromJson(j);
}

absl::StatusOr<TokenizerConfig> TokenizerConfig::FromJsonFile(const std::string& path) {
  WFM_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  auto c = FromJsonString(text);
  if (!c.ok()) return Annotate(c.status(), path);
  return c;
}

absl::StatusOr<TokenizerConfig> TokenizerConfig::FromPresetOrFile(const std::string& name_or_path) {
  auto preset = Preset(name_or_path);
  if (preset.ok()) return preset;
  if (name_or_path.find('/') != std::string::npos || name_or_path.find(".json") != std::string::npos)
    return FromJsonFile(name_or_path);
  // Neither a preset nor something that looks like a path: try the file, but report both.
  auto file = FromJsonFile(name_or_path);
  if (file.ok()) return file;
  return absl::InvalidArgumentError(
      absl::StrCat("--config \"", name_or_path, "\" is neither a preset nor a readable json file (",
                   file.status().message(), "); presets: ", absl::StrJoin(PresetNames(), ", ")));
}

nlohmann::json TokenizerConfig::ToJson() const {
  nlohmann::json j;
  j["name"] = name;
  j["attn_resolutions"] = attn_resolutions;
  j["channels"] = channels;
  j["channels_mult"] = channels_mult;
  j["dropout"] = dropout;
  j["in_channels"] = in_channels;
  j["out_channels"] = out_channels;
  j["num_res_blocks"] = num_res_blocks;
  j["resolution"] = resolution;
  j["patch_size"] = patch_size;
  j["patch_method"] = patch_method;
  j["z_channels"] = z_channels;
  j["z_factor"] = z_factor;
  j["spatial_compression"] = spatial_compression;
  j["encoder"] = encoder;
  j["decoder"] = decoder;
  if (is_video()) {
    j["num_groups"] = num_groups;
    j["legacy_mode"] = legacy_mode;
    j["temporal_compression"] = temporal_compression;
  }
  if (is_discrete()) {
    j["quantizer"] = quantizer;
    j["embedding_dim"] = embedding_dim;
    j["levels"] = levels;
    if (!is_video()) j["num_quantizers"] = num_quantizers;
  } else {
    j["latent_channels"] = latent_channels;
    j["formulation"] = formulation;
  }
  return j;
}

std::string TokenizerConfig::ToJsonString() const { return ToJson().dump(1); }

}  // namespace wfm::tokenizer
