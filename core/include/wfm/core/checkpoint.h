// Loading checkpoints into a torch::nn::Module — the ONE place where foreign tensor names are mapped to the
// reference names that modules register (modules never rename anything themselves).
//
// Load = index first (names, dtypes, shapes; no data), map every file name through an ordered list of
// NameRules, compare with the module's named_parameters() + named_buffers(), and report EVERY unknown,
// missing, wrong-shape, duplicate and unconvertible tensor in one error before anything is copied. Only a
// clean match is copied, converting dtypes (bf16 -> f32, ...) and devices on the way. Strict by default;
// `allow_missing` / `allow_unexpected` relax it explicitly.
//
//   LoadOptions o;                                   // rules: DefaultNameRules() (network./module./... prefixes,
//   WFM_ASSIGN_OR_RETURN(LoadReport r,               //        ema.* dropped)
//                        LoadCheckpoint(*model, "model.pt", o));
//   WFM_LOG(INFO) << r.Summary();
//   o.rules = EmaNameRules();                        // the EMA copy instead of the raw weights
//   o.rules = *ParseNameRules(R"([{"strip_prefix": "model."}, {"regex": "^blk\\.(\\d+)\\.", "to": "blocks.$1."}])");
//   WFM_RETURN_IF_ERROR(SaveModule(*model, "out.safetensors"));   // atomic safetensors, reference names
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <torch/nn/module.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "wfm/core/tensor_map.h"

namespace wfm {

// One step of name mapping. Rules apply in order; a dropped name stops there.
struct NameRule {
  enum class Kind {
    kStripPrefix,    // remove `pattern` from the front. Skipped when the module itself has names starting with
                     // `pattern` (so "model." is only stripped from modules that do not use it).
    kReplacePrefix,  // `pattern` at the front -> `replacement` (an empty pattern adds a prefix to every name)
    kReplace,        // every occurrence of `pattern` -> `replacement`
    kRegex,          // ECMAScript regex `pattern` -> `replacement` ($1, $2 groups), every match
    kDrop,           // names matching the regex `pattern` are ignored (counted as dropped, never "unknown")
    kSelectPrefix,   // keep only names starting with `pattern` (stripped); drop the rest. An error if nothing
                     // starts with it.
    kPreferPrefix,   // names starting with `pattern` are stripped and win over the same name without it (which
                     // is then dropped); other names stay. An error if nothing starts with it. (EMA weights:
                     // the EMA copy of each parameter, the regular buffers.)
  };
  Kind kind = Kind::kReplace;
  std::string pattern, replacement;

  static NameRule StripPrefix(std::string prefix);
  static NameRule ReplacePrefix(std::string from, std::string to);
  static NameRule Replace(std::string from, std::string to);
  static NameRule Regex(std::string regex, std::string replacement);
  static NameRule Drop(std::string regex);
  static NameRule SelectPrefix(std::string prefix);
  static NameRule PreferPrefix(std::string prefix);

  // {"strip_prefix": "network."} — the JSON form ParseNameRules reads.
  std::string ToString() const;
};

using NameRules = std::vector<NameRule>;

// The presets (also by name in ParseNameRules):
//  "none":     no mapping.
//  "default":  the raw (non-EMA) weights of any wrapper: drops ema.* and TransformerEngine `_extra_state`,
//              strips "module." (DDP), "_orig_mod." (torch.compile), "network." (Cosmos tokenizer model.pt),
//              "net." (Cosmos diffusion), "model." (training checkpoints / Lightning), each only where the
//              module does not use that prefix itself; drops the non-persistent Haar-wavelet buffers
//              (patcher/unpatcher `wavelets`, `_arange`) that TorchScript archives carry.
//  "ema":      the EMA weights: "ema." names win over the raw copies (Cosmos stores the EMA of every
//              parameter as a buffer with '-' for '.': "ema.network-encoder-conv_in-weight"; buffers such as
//              running statistics have no EMA copy and come from the raw weights), '-' turns back into '.',
//              then the "default" steps. An error if the file has no "ema." tensors.
//  "cosmos-jit": "default" plus the decoder.jit's copy of the FSQ buffers "inv_quant.quantizer.*" ->
//              "quantizer.*" (loading encoder.jit + decoder.jit together, the two copies merge: see LoadOptions).
NameRules DefaultNameRules();
NameRules EmaNameRules();
NameRules NamedNameRules(absl::string_view preset);  // empty for unknown names; see ParseNameRules
// Reads rules from: a preset name; a JSON array of {"strip_prefix": P} / {"replace_prefix": P, "to": R} /
// {"replace": S, "to": R} / {"regex": RE, "to": R} / {"drop": RE} / {"select_prefix": P} /
// {"prefer_prefix": P} / "preset-name"
// (spliced in); or "@file.json" holding such an array. InvalidArgument with the reason otherwise.
absl::StatusOr<NameRules> ParseNameRules(absl::string_view text);
std::string NameRulesToString(const NameRules& rules);

// Result of mapping one file's names. `expected` (the module's names), when given, makes kStripPrefix
// conditional as described above.
struct NameMapping {
  std::map<std::string, std::string> renamed;        // file name -> module name (every kept name)
  std::vector<std::string> dropped;                  // file names dropped by a rule (or a preferred copy)
  std::vector<std::string> duplicates;               // module names that two file names map to
};
absl::StatusOr<NameMapping> MapNames(const std::vector<std::string>& names, const NameRules& rules,
                                     const std::set<std::string>* expected = nullptr);

struct LoadOptions {
  NameRules rules = DefaultNameRules();
  bool allow_missing = false;     // module tensors the file lacks keep their current values
  bool allow_unexpected = false;  // file tensors the module lacks are ignored
  // Floating <-> floating and integer <-> integer conversions happen on copy. A floating value into an
  // integer/bool tensor (or back) is an error unless this is set.
  bool allow_lossy_dtype = false;
  // Module tensors that must be loaded (default: all). Those for which this returns false may be absent from
  // the file (e.g. the decoder's weights when loading encoder.jit into a whole tokenizer) and keep their values;
  // they are listed in LoadReport::missing.
  std::function<bool(const std::string&)> required;
};

struct LoadReport {
  std::string source;                        // the file(s)
  int64_t file_tensors = 0;                  // tensors in the file(s)
  int64_t loaded = 0;                        // copied into the module
  int64_t converted = 0;                     // of which changed dtype
  int64_t dropped = 0;                       // removed by rules
  int64_t module_tensors = 0;                // parameters + buffers of the module
  int64_t values = 0;                        // elements written into the module
  uint64_t bytes = 0;                        // bytes written into the module
  std::vector<std::string> missing;          // allowed missing (module names): allow_missing or not `required`
  std::vector<std::string> unexpected;       // allowed unexpected (file names)
  std::map<std::string, int64_t> conversions;  // "BF16->F32" -> count
  // "loaded 315/315 tensors (105.7M values, 422.6 MB) from 'model.pt'; 315 converted BF16->F32; 630 dropped"
  std::string Summary() const;
};

// Loads one checkpoint file (any format ListTensorFile reads) into `module`.
absl::StatusOr<LoadReport> LoadCheckpoint(torch::nn::Module& module, const std::string& path,
                                          const LoadOptions& options = {});
// Loads several files as one state dict (e.g. encoder.jit + decoder.jit into a whole tokenizer). Several file
// tensors mapping to one module name are merged when they have the same dtype, shape and values (checked before
// anything is copied), and are a "duplicate" error otherwise.
absl::StatusOr<LoadReport> LoadCheckpoint(torch::nn::Module& module, const std::vector<std::string>& paths,
                                          const LoadOptions& options = {});
// Same checks and copy for tensors already in memory; `source` names them in messages.
absl::StatusOr<LoadReport> LoadStateDict(torch::nn::Module& module, const TensorMap& tensors,
                                         const LoadOptions& options = {}, absl::string_view source = "state dict");

// named_parameters() + named_buffers() (recursive, detached; sharing memory with the module).
TensorMap StateDict(const torch::nn::Module& module);

// Writes StateDict(module) to a safetensors file atomically (temp + rename), CPU copies where needed.
absl::Status SaveModule(const torch::nn::Module& module, const std::string& path,
                        const std::map<std::string, std::string>& metadata = {});

}  // namespace wfm
