// DiT configuration: validation, named presets for the published Cosmos-Predict1/2 sizes and CPU sizes, and the
// reference config keys (dit.h).
#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "dit_internal.h"
#include "wfm/core/file_util.h"
#include "wfm/core/status.h"
#include "wfm/diffusion/dit.h"

namespace wfm::diffusion {

using internal::BlockTypes;


absl::Status DiTConfig::Validate() const {
  auto bad = [](const std::string& m) { return absl::InvalidArgumentError("DiT config: " + m); };
  if (model_channels <= 0 || num_heads <= 0 || model_channels % num_heads != 0)
    return bad(absl::StrCat("model_channels ", model_channels, " must be a positive multiple of num_heads ",
                            num_heads));
  const int64_t hd = head_dim(), dim_h = hd / 6 * 2, dim_t = hd - 2 * dim_h;
  if (dim_h < 4 || dim_t < 4 || dim_t % 2 != 0)
    return bad(absl::StrCat("head dim ", hd, " is too small for the 3D RoPE split (need >= 12)"));
  if (num_blocks <= 0) return bad("num_blocks must be positive");
  if (patch_spatial <= 0 || patch_temporal <= 0) return bad("patch sizes must be positive");
  if (is_general() && in_channels != out_channels && in_channels != out_channels + 1)
    return bad(absl::StrCat("in_channels ", in_channels, " must equal out_channels ", out_channels,
                            " (Text2World) or out_channels + 1 (Video2World)"));
  if (!is_general() && in_channels != out_channels)
    return bad(absl::StrCat("MiniTrainDIT: in_channels ", in_channels, " must equal out_channels ", out_channels,
                            " (MinimalV1LVGDiT adds the condition-mask channel itself)"));
  if (!is_general() && block_config != "FA-CA-MLP")
    return bad("MiniTrainDIT blocks are always FA-CA-MLP");
  if (!is_general() && add_augment_sigma_embedding)
    return bad("add_augment_sigma_embedding is a VideoExtendGeneralDIT option");
  if (crossattn_proj_in_channels < 0) return bad("crossattn_proj_in_channels must be >= 0");
  if (max_img_h < patch_spatial || max_img_w < patch_spatial || max_frames < patch_temporal)
    return bad("max_img_h/max_img_w/max_frames must cover at least one patch");
  for (const std::string& t : BlockTypes(block_config))
    if (t[0] == '?') return bad(absl::StrCat("unknown block type '", t.substr(1), "' in block_config '",
                                             block_config, "' (expected FA, CA, MLP)"));
  if (absl::AsciiStrToLower(pos_emb_cls) != "rope3d")
    return bad(absl::StrCat("pos_emb_cls '", pos_emb_cls, "' is not supported (rope3d)"));
  if (pos_emb_interpolation != "crop") return bad("pos_emb_interpolation must be 'crop'");
  if (extra_per_block_abs_pos_emb && absl::AsciiStrToLower(extra_per_block_abs_pos_emb_type) != "learnable")
    return bad(absl::StrCat("extra_per_block_abs_pos_emb_type '", extra_per_block_abs_pos_emb_type,
                            "' is not supported (learnable)"));
  if (use_cross_attn_mask) return bad("use_cross_attn_mask is not supported (the reference models do not use it)");
  if (use_adaln_lora && adaln_lora_dim <= 0) return bad("adaln_lora_dim must be positive");
  if (mlp_ratio <= 0) return bad("mlp_ratio must be positive");
  if (crossattn_emb_channels <= 0) return bad("crossattn_emb_channels must be positive");
  return absl::OkStatus();
}

std::vector<std::string> DiTConfig::PresetNames() {
  return {"predict1-7b-text2world", "predict1-7b-video2world", "predict1-14b-text2world",
          "predict1-14b-video2world", "predict2-2b-text2world", "predict2-2b-video2world",
          "predict2-14b-text2world", "predict2-14b-video2world", "tiny", "tiny-video2world", "small",
          "small-video2world", "medium", "medium-video2world", "predict2-tiny", "predict2-tiny-video2world"};
}

absl::StatusOr<DiTConfig> DiTConfig::Preset(absl::string_view name_in) {
  std::string name = absl::AsciiStrToLower(name_in);
  bool v2w = false;
  if (absl::EndsWith(name, "-video2world")) {
    v2w = true;
    name = name.substr(0, name.size() - std::string("-video2world").size());
  } else if (absl::EndsWith(name, "-text2world")) {
    name = name.substr(0, name.size() - std::string("-text2world").size());
  }
  DiTConfig c;  // FADITV2Config
  if (name == "predict1-7b") {
    // cosmos-1-diffusion-text2world.py Cosmos_Predict1_Text2World_7B
    c.rope_t_extrapolation_ratio = 2.0;
  } else if (name == "predict1-14b") {
    // FADITV2_14B_Config + Cosmos_Predict1_Text2World_14B
    c.model_channels = 5120;
    c.num_heads = 40;
    c.num_blocks = 36;
    c.rope_h_extrapolation_ratio = c.rope_w_extrapolation_ratio = c.rope_t_extrapolation_ratio = 2.0;
    c.extra_h_extrapolation_ratio = c.extra_w_extrapolation_ratio = c.extra_t_extrapolation_ratio = 2.0;
  } else if (name == "predict2-2b" || name == "predict2-14b" || name == "predict2-tiny") {
    // cosmos_predict2/configs/base/config_video2world.py _PREDICT2_VIDEO2WORLD_NET_{2B,14B}
    c.architecture = DiTArchitecture::kMiniTrainDit;
    c.extra_per_block_abs_pos_emb = false;
    c.pos_emb_learnable = true;
    c.rope_enable_fps_modulation = false;
    c.affline_emb_norm = false;
    c.block_x_format = "BTHWD";
    c.atten_backend = "minimal_a2a";
    if (name == "predict2-2b") {
      c.model_channels = 2048;
      c.num_blocks = 28;
      c.num_heads = 16;
      c.rope_h_extrapolation_ratio = c.rope_w_extrapolation_ratio = 3.0;
      c.rope_t_extrapolation_ratio = 1.0;
    } else if (name == "predict2-14b") {
      c.model_channels = 5120;
      c.num_blocks = 36;
      c.num_heads = 40;
      c.rope_h_extrapolation_ratio = c.rope_w_extrapolation_ratio = 2.0;
      c.rope_t_extrapolation_ratio = 0.8333333333333334;
    } else {  // CPU tests in the Predict2 layout
      c.model_channels = 64;
      c.num_blocks = 2;
      c.num_heads = 4;
      c.adaln_lora_dim = 16;
      c.crossattn_emb_channels = 32;
      c.max_img_h = c.max_img_w = 64;
      c.max_frames = 16;
    }
    c.minitrain_video2world = v2w;
    return c;
  } else if (name == "tiny") {  // the parity fixtures' shape; unit tests
    c.model_channels = 64;
    c.num_blocks = 2;
    c.num_heads = 4;
    c.adaln_lora_dim = 16;
    c.crossattn_emb_channels = 32;
    c.max_img_h = c.max_img_w = 64;
    c.max_frames = 16;
    c.rope_t_extrapolation_ratio = 2.0;
  } else if (name == "small") {  // CPU experiments; T5-sized text input
    c.model_channels = 384;
    c.num_blocks = 6;
    c.num_heads = 6;
    c.adaln_lora_dim = 96;
    c.max_img_h = c.max_img_w = 128;
    c.max_frames = 32;
    c.rope_t_extrapolation_ratio = 2.0;
  } else if (name == "medium") {
    c.model_channels = 768;
    c.num_blocks = 12;
    c.num_heads = 12;
    c.adaln_lora_dim = 192;
    c.max_img_h = c.max_img_w = 240;
    c.max_frames = 64;
    c.rope_t_extrapolation_ratio = 2.0;
  } else {
    return absl::NotFoundError(absl::StrCat("unknown DiT preset '", name_in, "'; known: ",
                                            absl::StrJoin(PresetNames(), ", ")));
  }
  if (v2w) c.in_channels = c.out_channels + 1;
  return c;
}

namespace {
template <typename T>
absl::Status ReadKey(const nlohmann::json& j, const std::string& key, T* out) {
  try {
    *out = j.at(key).get<T>();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("DiT config key '", key, "': ", e.what()));
  }
}
}  // namespace

absl::StatusOr<DiTConfig> DiTConfig::FromJson(const nlohmann::json& json_in) {
  const nlohmann::json& j = (json_in.is_object() && json_in.contains("config") && json_in["config"].is_object())
                                ? json_in["config"]
                                : json_in;
  if (!j.is_object()) return absl::InvalidArgumentError("DiT config must be a JSON object");
  DiTConfig c;
  // The class: `_target_` (LazyCall dicts), the fixture json's `reference`, else Predict2-only keys.
  std::string cls;
  if (j.contains("_target_") && j["_target_"].is_string()) cls = j["_target_"].get<std::string>();
  else if (json_in.is_object() && json_in.contains("reference") && json_in["reference"].is_string())
    cls = json_in["reference"].get<std::string>();
  if (absl::StrContains(cls, "MinimalV1LVGDiT")) {
    c.architecture = DiTArchitecture::kMiniTrainDit;
    c.minitrain_video2world = true;
  } else if (absl::StrContains(cls, "MiniTrainDIT")) {
    c.architecture = DiTArchitecture::kMiniTrainDit;
  } else if (cls.empty()) {
    for (const char* k : {"atten_backend", "crossattn_proj_in_channels", "rope_enable_fps_modulation", "min_fps",
                          "max_fps", "sac_config", "natten_parameters"})
      if (j.contains(k)) c.architecture = DiTArchitecture::kMiniTrainDit;
  }
  if (!c.is_general()) {  // MiniTrainDIT's defaults differ from GeneralDIT's
    c.affline_emb_norm = false;
    c.extra_per_block_abs_pos_emb = false;
  }
  std::vector<std::string> unknown;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    absl::Status s;
#define WFM_DIT_KEY(name) else if (k == #name) s = ReadKey(j, k, &c.name)
    if (k == "_target_" || k == "__class__" || k == "_recursive_" || k == "sac_config" ||
        k == "natten_parameters")
      continue;
    else if (k == "patch_spatial" && it->is_array()) {
      // The reference type hint says tuple; every published config passes an int.
      std::vector<int64_t> p;
      s = ReadKey(j, k, &p);
      if (s.ok() && (p.empty() || std::any_of(p.begin(), p.end(), [&](int64_t v) { return v != p[0]; })))
        s = absl::InvalidArgumentError("DiT config: patch_spatial must be square");
      if (s.ok()) c.patch_spatial = p[0];
    }
    WFM_DIT_KEY(max_img_h); WFM_DIT_KEY(max_img_w); WFM_DIT_KEY(max_frames);
    WFM_DIT_KEY(in_channels); WFM_DIT_KEY(out_channels); WFM_DIT_KEY(patch_spatial); WFM_DIT_KEY(patch_temporal);
    WFM_DIT_KEY(concat_padding_mask); WFM_DIT_KEY(block_config); WFM_DIT_KEY(model_channels);
    WFM_DIT_KEY(num_blocks); WFM_DIT_KEY(num_heads); WFM_DIT_KEY(mlp_ratio); WFM_DIT_KEY(block_x_format);
    WFM_DIT_KEY(crossattn_emb_channels); WFM_DIT_KEY(use_cross_attn_mask); WFM_DIT_KEY(pos_emb_cls);
    WFM_DIT_KEY(pos_emb_learnable); WFM_DIT_KEY(pos_emb_interpolation); WFM_DIT_KEY(affline_emb_norm);
    WFM_DIT_KEY(use_adaln_lora); WFM_DIT_KEY(adaln_lora_dim);
    WFM_DIT_KEY(rope_h_extrapolation_ratio); WFM_DIT_KEY(rope_w_extrapolation_ratio);
    WFM_DIT_KEY(rope_t_extrapolation_ratio); WFM_DIT_KEY(extra_per_block_abs_pos_emb);
    WFM_DIT_KEY(extra_per_block_abs_pos_emb_type); WFM_DIT_KEY(extra_h_extrapolation_ratio);
    WFM_DIT_KEY(extra_w_extrapolation_ratio); WFM_DIT_KEY(extra_t_extrapolation_ratio);
    WFM_DIT_KEY(add_augment_sigma_embedding); WFM_DIT_KEY(base_fps);
    WFM_DIT_KEY(crossattn_proj_in_channels); WFM_DIT_KEY(min_fps); WFM_DIT_KEY(max_fps);
    WFM_DIT_KEY(rope_enable_fps_modulation); WFM_DIT_KEY(atten_backend);
    else unknown.push_back(k);
#undef WFM_DIT_KEY
    WFM_RETURN_IF_ERROR(s);
  }
  if (!unknown.empty())
    return absl::InvalidArgumentError(absl::StrCat("DiT config: unsupported key(s) ", absl::StrJoin(unknown, ", ")));
  WFM_RETURN_IF_ERROR(c.Validate());
  return c;
}

absl::StatusOr<DiTConfig> DiTConfig::FromJsonFile(const std::string& path) {
  WFM_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(path, ": not valid JSON"));
  auto c = FromJson(j);
  if (!c.ok()) return Annotate(c.status(), path);
  return c;
}

absl::StatusOr<DiTConfig> DiTConfig::FromPresetOrFile(const std::string& name_or_path) {
  auto preset = Preset(name_or_path);
  if (preset.ok()) return preset;
  if (absl::EndsWith(name_or_path, ".json") || name_or_path.find('/') != std::string::npos)
    return FromJsonFile(name_or_path);
  return absl::InvalidArgumentError(absl::StrCat("'", name_or_path, "' is neither a DiT preset (",
                                                 absl::StrJoin(PresetNames(), ", "), ") nor a .json file"));
}

std::string DiTConfig::ReferenceClass() const {
  if (is_general()) return video_conditioned() ? "VideoExtendGeneralDIT" : "GeneralDIT";
  return minitrain_video2world ? "MinimalV1LVGDiT" : "MiniTrainDIT";
}

nlohmann::json DiTConfig::ToJson() const {
  nlohmann::json j;
  j["_target_"] = ReferenceClass();
#define WFM_DIT_PUT(name) j[#name] = name
  WFM_DIT_PUT(max_img_h); WFM_DIT_PUT(max_img_w); WFM_DIT_PUT(max_frames); WFM_DIT_PUT(in_channels);
  WFM_DIT_PUT(out_channels); WFM_DIT_PUT(patch_spatial); WFM_DIT_PUT(patch_temporal);
  WFM_DIT_PUT(concat_padding_mask); WFM_DIT_PUT(block_config); WFM_DIT_PUT(model_channels);
  WFM_DIT_PUT(num_blocks); WFM_DIT_PUT(num_heads); WFM_DIT_PUT(mlp_ratio); WFM_DIT_PUT(block_x_format);
  WFM_DIT_PUT(crossattn_emb_channels); WFM_DIT_PUT(use_cross_attn_mask); WFM_DIT_PUT(pos_emb_cls);
  WFM_DIT_PUT(pos_emb_learnable); WFM_DIT_PUT(pos_emb_interpolation); WFM_DIT_PUT(affline_emb_norm);
  WFM_DIT_PUT(use_adaln_lora); WFM_DIT_PUT(adaln_lora_dim); WFM_DIT_PUT(rope_h_extrapolation_ratio);
  WFM_DIT_PUT(rope_w_extrapolation_ratio); WFM_DIT_PUT(rope_t_extrapolation_ratio);
  WFM_DIT_PUT(extra_per_block_abs_pos_emb); WFM_DIT_PUT(extra_per_block_abs_pos_emb_type);
  WFM_DIT_PUT(extra_h_extrapolation_ratio); WFM_DIT_PUT(extra_w_extrapolation_ratio);
  WFM_DIT_PUT(extra_t_extrapolation_ratio); WFM_DIT_PUT(add_augment_sigma_embedding); WFM_DIT_PUT(base_fps);
  if (!is_general()) {
    WFM_DIT_PUT(crossattn_proj_in_channels); WFM_DIT_PUT(min_fps); WFM_DIT_PUT(max_fps);
    WFM_DIT_PUT(rope_enable_fps_modulation); WFM_DIT_PUT(atten_backend);
  }
#undef WFM_DIT_PUT
  return j;
}


}  // namespace wfm::diffusion
