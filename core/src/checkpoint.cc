// Checkpoint -> module loading with name-mapping rules and one complete mismatch report (see checkpoint.h).
// Design after leejet/stable-diffusion.cpp (name_conversion.cpp: ordered prefix/substring maps; model.cpp:
// index every tensor first, then check and copy) and torch.nn.Module.load_state_dict (missing/unexpected/
// size-mismatch lists), with the rules as data so callers and the CLI can configure them.
#include "wfm/core/checkpoint.h"

#include <ATen/ATen.h>

#include <regex>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "wfm/core/file_util.h"
#include "wfm/core/safetensors.h"
#include "wfm/core/status.h"
#include "wfm/core/tensor_file.h"

namespace wfm {
namespace {

std::string ShapeStr(c10::IntArrayRef shape) { return absl::StrCat("[", absl::StrJoin(shape, ", "), "]"); }

bool IsFloatingLike(c10::ScalarType t) { return c10::isFloatingType(t) || c10::isComplexType(t); }

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// rules
// ---------------------------------------------------------------------------------------------------------

NameRule NameRule::StripPrefix(std::string prefix) { return {Kind::kStripPrefix, std::move(prefix), ""}; }
NameRule NameRule::ReplacePrefix(std::string from, std::string to) { return {Kind::kReplacePrefix, std::move(from), std::move(to)}; }
NameRule NameRule::Replace(std::string from, std::string to) { return {Kind::kReplace, std::move(from), std::move(to)}; }
NameRule NameRule::Regex(std::string regex, std::string replacement) { return {Kind::kRegex, std::move(regex), std::move(replacement)}; }
NameRule NameRule::Drop(std::string regex) { return {Kind::kDrop, std::move(regex), ""}; }
NameRule NameRule::SelectPrefix(std::string prefix) { return {Kind::kSelectPrefix, std::move(prefix), ""}; }
NameRule NameRule::PreferPrefix(std::string prefix) { return {Kind::kPreferPrefix, std::move(prefix), ""}; }

std::string NameRule::ToString() const {
  nlohmann::ordered_json j;
  switch (kind) {
    case Kind::kStripPrefix: j["strip_prefix"] = pattern; break;
    case Kind::kReplacePrefix: j["replace_prefix"] = pattern; j["to"] = replacement; break;
    case Kind::kReplace: j["replace"] = pattern; j["to"] = replacement; break;
    case Kind::kRegex: j["regex"] = pattern; j["to"] = replacement; break;
    case Kind::kDrop: j["drop"] = pattern; break;
    case Kind::kSelectPrefix: j["select_prefix"] = pattern; break;
    case Kind::kPreferPrefix: j["prefer_prefix"] = pattern; break;
  }
  return j.dump();
}

std::string NameRulesToString(const NameRules& rules) {
  std::vector<std::string> parts;
  for (const auto& r : rules) parts.push_back(r.ToString());
  return absl::StrCat("[", absl::StrJoin(parts, ", "), "]");
}

namespace {

NameRules DefaultSteps(bool drop_ema) {
  NameRules r;
  r.push_back(NameRule::StripPrefix("module."));                       // DistributedDataParallel
  if (drop_ema) r.push_back(NameRule::Drop(R"(^ema\.)"));              // Cosmos EMA buffers
  r.push_back(NameRule::Drop(R"((^|\.)_extra_state$)"));               // TransformerEngine FP8 state
  r.push_back(NameRule::StripPrefix("network._orig_mod."));           // torch.compile inside Cosmos models
  r.push_back(NameRule::StripPrefix("_orig_mod."));
  r.push_back(NameRule::StripPrefix("network."));                      // Cosmos tokenizer model.pt
  r.push_back(NameRule::StripPrefix("net."));                          // Cosmos diffusion model.pt
  r.push_back(NameRule::StripPrefix("model."));                        // training checkpoints
  r.push_back(NameRule::Drop(R"((^|\.)(un)?patcher(3d)?\.(wavelets|_arange)$)"));  // non-persistent Haar buffers
  return r;
}

}  // namespace

NameRules DefaultNameRules() { return DefaultSteps(/*drop_ema=*/true); }

NameRules EmaNameRules() {
  NameRules r;
  r.push_back(NameRule::StripPrefix("module."));
  r.push_back(NameRule::PreferPrefix("ema."));
  r.push_back(NameRule::Replace("-", "."));  // EMAModelTracker: register_buffer names cannot hold '.'
  for (auto& step : DefaultSteps(/*drop_ema=*/false)) r.push_back(std::move(step));
  return r;
}

NameRules NamedNameRules(absl::string_view preset) {
  if (preset == "none") return {};
  if (preset == "default") return DefaultNameRules();
  if (preset == "ema") return EmaNameRules();
  if (preset == "cosmos-jit") {
    NameRules r = DefaultNameRules();
    r.push_back(NameRule::ReplacePrefix("inv_quant.quantizer.", "quantizer."));
    return r;
  }
  return {};
}

namespace {

absl::StatusOr<NameRules> PresetRules(absl::string_view name) {
  static const char* kPresets[] = {"none", "default", "ema", "cosmos-jit"};
  for (const char* p : kPresets)
    if (name == p) return NamedNameRules(name);
  return absl::InvalidArgumentError(absl::StrCat("unknown name-rule preset '", name,
                                                 "' (presets: none, default, ema, cosmos-jit)"));
}

absl::Status CheckRegex(const std::string& re) {
  try {
    std::regex compiled(re, std::regex::ECMAScript);
    (void)compiled;
    return absl::OkStatus();
  } catch (const std::regex_error& e) {
    return absl::InvalidArgumentError(absl::StrCat("invalid regex '", re, "': ", e.what()));
  }
}

}  // namespace

absl::StatusOr<NameRules> ParseNameRules(absl::string_view text_in) {
  std::string text(absl::StripAsciiWhitespace(text_in));
  if (!text.empty() && text[0] == '@') {
    WFM_ASSIGN_OR_RETURN(text, ReadFile(text.substr(1)), "name rules");
    text = std::string(absl::StripAsciiWhitespace(text));
  }
  if (text.empty() || text[0] != '[') {
    NameRules out;
    for (absl::string_view p : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
      WFM_ASSIGN_OR_RETURN(NameRules r, PresetRules(absl::StripAsciiWhitespace(p)));
      out.insert(out.end(), r.begin(), r.end());
    }
    return out;
  }
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_array()) return absl::InvalidArgumentError("name rules: not a valid JSON array");
  NameRules out;
  for (size_t i = 0; i < j.size(); ++i) {
    const auto& e = j[i];
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat("name rule ", i, " ", e.dump(), ": ", why));
    };
    if (e.is_string()) {
      WFM_ASSIGN_OR_RETURN(NameRules r, PresetRules(e.get<std::string>()));
      out.insert(out.end(), r.begin(), r.end());
      continue;
    }
    if (!e.is_object()) return bad("must be an object or a preset name");
    auto str = [&](const char* key) -> std::optional<std::string> {
      if (!e.contains(key) || !e[key].is_string()) return std::nullopt;
      return e[key].get<std::string>();
    };
    const std::string to = str("to").value_or("");
    if (e.contains("to") && !e["to"].is_string()) return bad("\"to\" must be a string");
    if (auto p = str("strip_prefix")) out.push_back(NameRule::StripPrefix(*p));
    else if (auto p = str("replace_prefix")) out.push_back(NameRule::ReplacePrefix(*p, to));
    else if (auto p = str("replace")) {
      if (p->empty()) return bad("\"replace\" needs a non-empty string");
      out.push_back(NameRule::Replace(*p, to));
    } else if (auto p = str("regex")) {
      WFM_RETURN_IF_ERROR(CheckRegex(*p), "name rule ", i);
      out.push_back(NameRule::Regex(*p, to));
    } else if (auto p = str("drop")) {
      WFM_RETURN_IF_ERROR(CheckRegex(*p), "name rule ", i);
      out.push_back(NameRule::Drop(*p));
    } else if (auto p = str("select_prefix")) {
      out.push_back(NameRule::SelectPrefix(*p));
    } else if (auto p = str("prefer_prefix")) {
      out.push_back(NameRule::PreferPrefix(*p));
    } else {
      return bad("needs one of strip_prefix, replace_prefix, replace, regex, drop, select_prefix, prefer_prefix "
                 "(a string)");
    }
  }
  return out;
}

absl::StatusOr<NameMapping> MapNames(const std::vector<std::string>& names, const NameRules& rules,
                                     const std::set<std::string>* expected) {
  // Per rule: compiled regex, and whether a conditional strip is active for this module.
  std::vector<std::optional<std::regex>> regexes(rules.size());
  std::vector<bool> active(rules.size(), true);
  for (size_t r = 0; r < rules.size(); ++r) {
    const NameRule& rule = rules[r];
    if (rule.kind == NameRule::Kind::kRegex || rule.kind == NameRule::Kind::kDrop) {
      WFM_RETURN_IF_ERROR(CheckRegex(rule.pattern), "name rule ", rule.ToString());
      regexes[r].emplace(rule.pattern, std::regex::ECMAScript | std::regex::optimize);
    }
    if (rule.kind == NameRule::Kind::kStripPrefix && expected) {
      auto it = expected->lower_bound(rule.pattern);
      active[r] = !(it != expected->end() && absl::StartsWith(*it, rule.pattern));
    }
  }
  std::vector<int64_t> selected(rules.size(), 0);
  struct Mapped {
    const std::string* original;
    std::string name;
    bool preferred = false;
  };
  std::vector<Mapped> kept;
  NameMapping m;
  for (const std::string& original : names) {
    Mapped cur{&original, original};
    bool dropped = false;
    for (size_t r = 0; r < rules.size() && !dropped; ++r) {
      const NameRule& rule = rules[r];
      std::string& n = cur.name;
      switch (rule.kind) {
        case NameRule::Kind::kStripPrefix:
          if (active[r] && absl::StartsWith(n, rule.pattern)) n.erase(0, rule.pattern.size());
          break;
        case NameRule::Kind::kReplacePrefix:
          if (absl::StartsWith(n, rule.pattern)) n = rule.replacement + n.substr(rule.pattern.size());
          break;
        case NameRule::Kind::kReplace:
          if (!rule.pattern.empty()) n = absl::StrReplaceAll(n, {{rule.pattern, rule.replacement}});
          break;
        case NameRule::Kind::kRegex:
          n = std::regex_replace(n, *regexes[r], rule.replacement);
          break;
        case NameRule::Kind::kDrop:
          // Never drops a name the module has.
          if (std::regex_search(n, *regexes[r]) && !(expected && expected->count(n))) dropped = true;
          break;
        case NameRule::Kind::kSelectPrefix:
        case NameRule::Kind::kPreferPrefix:
          if (absl::StartsWith(n, rule.pattern)) {
            n.erase(0, rule.pattern.size());
            ++selected[r];
            if (rule.kind == NameRule::Kind::kPreferPrefix) cur.preferred = true;
          } else if (rule.kind == NameRule::Kind::kSelectPrefix) {
            dropped = true;
          }
          break;
      }
    }
    if (dropped) {
      m.dropped.push_back(original);
    } else {
      kept.push_back(std::move(cur));
    }
  }
  // A preferred name replaces its plain twin; other collisions are duplicates.
  std::map<std::string, std::vector<const Mapped*>> by_name;
  for (const auto& k : kept) by_name[k.name].push_back(&k);
  for (const auto& [name, list] : by_name) {
    int preferred = 0;
    for (const Mapped* k : list) preferred += k->preferred;
    for (const Mapped* k : list) {
      if (preferred == 1 && !k->preferred) {
        m.dropped.push_back(*k->original);
        continue;
      }
      m.renamed[*k->original] = name;
    }
    if (list.size() > 1 && preferred != 1) m.duplicates.push_back(name);
  }
  for (size_t r = 0; r < rules.size(); ++r) {
    const bool selects = rules[r].kind == NameRule::Kind::kSelectPrefix || rules[r].kind == NameRule::Kind::kPreferPrefix;
    if (selects && selected[r] == 0 && !names.empty()) {
      // The caller asked for tensors (e.g. the EMA copy) that the file does not have.
      return absl::NotFoundError(absl::StrCat("name rule ", rules[r].ToString(), ": no tensor name starts with '",
                                              rules[r].pattern, "' (e.g. '", names.front(), "')"));
    }
  }
  return m;
}

// ---------------------------------------------------------------------------------------------------------
// loading
// ---------------------------------------------------------------------------------------------------------

namespace {

std::string HumanCount(int64_t n) {
  if (n >= 1000000000) return absl::StrFormat("%.1fB", n / 1e9);
  if (n >= 1000000) return absl::StrFormat("%.1fM", n / 1e6);
  if (n >= 1000) return absl::StrFormat("%.1fK", n / 1e3);
  return absl::StrCat(n);
}

std::string HumanBytes(uint64_t n) {
  if (n >= (1ull << 30)) return absl::StrFormat("%.2f GB", n / 1e9);
  if (n >= (1ull << 20)) return absl::StrFormat("%.1f MB", n / 1e6);
  if (n >= 1024) return absl::StrFormat("%.1f KB", n / 1e3);
  return absl::StrCat(n, " B");
}

// One source of tensors: a file (read lazily after the checks) or an in-memory map.
struct Source {
  std::string label;                 // "'model.pt'"
  std::string path;                  // empty for in-memory
  const TensorMap* tensors = nullptr;
  std::vector<TensorInfo> infos;
};

struct Entry {
  size_t source;
  const TensorInfo* info;
  std::string module_name;
};

std::string EntryLine(const Entry& e, const std::vector<Source>& sources, bool with_dtype) {
  std::string s = absl::StrCat("    ", e.module_name);
  if (with_dtype) absl::StrAppend(&s, "  ", DtypeShortName(e.info->dtype), " ", ShapeStr(e.info->shape));
  if (e.info->name != e.module_name) absl::StrAppend(&s, "  (file name '", e.info->name, "')");
  if (sources.size() > 1) absl::StrAppend(&s, "  in ", sources[e.source].label);
  return s;
}

// Prefix hints: unknown names that become expected names without a leading "a.b." (strip) or expected names
// that are unknown names with a prefix added.
std::vector<std::string> Hints(const std::vector<std::string>& unknown, const std::set<std::string>& missing) {
  std::vector<std::string> hints;
  if (unknown.empty() || missing.empty()) return hints;
  std::set<std::string> unknown_set(unknown.begin(), unknown.end());
  std::map<std::string, int> strip, add;
  for (const auto& u : unknown) {
    for (size_t p = u.find('.'); p != std::string::npos; p = u.find('.', p + 1)) {
      if (missing.count(u.substr(p + 1))) ++strip[u.substr(0, p + 1)];
    }
  }
  for (const auto& m : missing) {
    for (size_t p = m.find('.'); p != std::string::npos; p = m.find('.', p + 1)) {
      if (unknown_set.count(m.substr(p + 1))) ++add[m.substr(0, p + 1)];
    }
  }
  auto best = [](const std::map<std::string, int>& c) {
    return std::max_element(c.begin(), c.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
  };
  if (!strip.empty()) {
    auto b = best(strip);
    hints.push_back(absl::StrCat("HINT: ", b->second, " unknown name(s) match module names without the prefix '",
                                 b->first, "': add the rule {\"strip_prefix\": \"", b->first, "\"}"));
  }
  if (!add.empty()) {
    auto b = best(add);
    hints.push_back(absl::StrCat("HINT: ", b->second, " missing name(s) are unknown names with the prefix '", b->first,
                                 "' added: add the rule {\"replace_prefix\": \"\", \"to\": \"", b->first, "\"}"));
  }
  return hints;
}

// The preset's name when the rules are one, else their JSON.
std::string RulesDescription(const NameRules& rules) {
  const std::string text = NameRulesToString(rules);
  for (const char* preset : {"none", "default", "ema", "cosmos-jit"}) {
    if (NameRulesToString(NamedNameRules(preset)) == text) return absl::StrCat("preset \"", preset, "\" = ", text);
  }
  return text;
}

absl::StatusOr<LoadReport> LoadSources(torch::nn::Module& module, std::vector<Source> sources,
                                       const LoadOptions& options) {
  // The module's tensors.
  std::map<std::string, at::Tensor> expected_tensors;
  for (const auto& p : module.named_parameters(/*recurse=*/true))
    if (p.value().defined()) expected_tensors[p.key()] = p.value();
  for (const auto& b : module.named_buffers(/*recurse=*/true))
    if (b.value().defined()) expected_tensors[b.key()] = b.value();
  std::set<std::string> expected;
  for (const auto& [name, t] : expected_tensors) expected.insert(name);

  LoadReport report;
  report.module_tensors = static_cast<int64_t>(expected.size());
  std::vector<std::string> labels;
  for (const auto& s : sources) labels.push_back(s.label);
  report.source = absl::StrJoin(labels, " + ");

  // 1. Map every name.
  std::vector<Entry> entries;
  for (size_t s = 0; s < sources.size(); ++s) {
    std::vector<std::string> names;
    for (const auto& info : sources[s].infos) names.push_back(info.name);
    report.file_tensors += static_cast<int64_t>(names.size());
    WFM_ASSIGN_OR_RETURN(NameMapping m, MapNames(names, options.rules, &expected), "loading ", sources[s].label);
    report.dropped += static_cast<int64_t>(m.dropped.size());
    for (const auto& info : sources[s].infos) {
      auto it = m.renamed.find(info.name);
      if (it != m.renamed.end()) entries.push_back({s, &info, it->second});
    }
  }

  // 2. Compare with the module; collect every problem.
  std::map<std::string, std::vector<const Entry*>> by_module_name;
  for (const auto& e : entries) by_module_name[e.module_name].push_back(&e);
  std::vector<const Entry*> unknown, wrong_shape, bad_dtype;
  std::vector<std::string> duplicate_lines;
  std::set<std::string> provided;
  auto from_list = [&](const std::vector<const Entry*>& list) {
    std::vector<std::string> from;
    for (const Entry* e : list) {
      from.push_back(absl::StrCat("'", e->info->name, "'", sources.size() > 1 ? " in " + sources[e->source].label : ""));
    }
    return absl::StrJoin(from, ", ");
  };
  for (const auto& [name, list] : by_module_name) {
    if (list.size() > 1) {
      // Copies with the same dtype and shape (e.g. the FSQ buffers in both encoder.jit and decoder.jit) are one
      // tensor if their values agree (checked after reading); anything else is ambiguous.
      bool twins = true;
      for (const Entry* e : list) {
        twins = twins && e->info->dtype == list.front()->info->dtype && e->info->shape == list.front()->info->shape;
      }
      if (!twins) {
        duplicate_lines.push_back(absl::StrCat("    ", name, " <- ", from_list(list)));
        continue;
      }
    }
    const Entry* e = list.front();
    auto it = expected_tensors.find(name);
    if (it == expected_tensors.end()) {
      unknown.push_back(e);
      continue;
    }
    provided.insert(name);
    if (it->second.sizes() != c10::IntArrayRef(e->info->shape)) {
      wrong_shape.push_back(e);
    } else if (!options.allow_lossy_dtype && (IsFloatingLike(e->info->dtype) != IsFloatingLike(it->second.scalar_type()) ||
                                              (e->info->dtype == at::kBool) != (it->second.scalar_type() == at::kBool))) {
      bad_dtype.push_back(e);
    }
  }
  std::vector<std::string> missing;          // required by the module, absent
  std::vector<std::string> optional_missing;  // outside options.required
  std::set<std::string> missing_set;
  for (const auto& name : expected) {
    if (!provided.count(name) && !by_module_name.count(name)) {
      (options.required && !options.required(name) ? optional_missing : missing).push_back(name);
      missing_set.insert(name);
    }
  }

  const bool fail_unknown = !unknown.empty() && !options.allow_unexpected;
  const bool fail_missing = !missing.empty() && !options.allow_missing;
  if (fail_unknown || fail_missing || !wrong_shape.empty() || !bad_dtype.empty() || !duplicate_lines.empty()) {
    std::vector<std::string> counts;
    if (fail_unknown) counts.push_back(absl::StrCat(unknown.size(), " unknown"));
    if (fail_missing) counts.push_back(absl::StrCat(missing.size(), " missing"));
    if (!wrong_shape.empty()) counts.push_back(absl::StrCat(wrong_shape.size(), " wrong shape"));
    if (!bad_dtype.empty()) counts.push_back(absl::StrCat(bad_dtype.size(), " incompatible dtype"));
    if (!duplicate_lines.empty()) counts.push_back(absl::StrCat(duplicate_lines.size(), " duplicate"));
    std::vector<std::string> lines;
    lines.push_back(absl::StrCat("checkpoint ", report.source, " does not match the module (", absl::StrJoin(counts, ", "),
                                 "); nothing was loaded. ", report.file_tensors, " tensors in the file, ",
                                 report.dropped, " dropped by name rules, ", expected.size(), " in the module."));
    if (fail_unknown) {
      lines.push_back(absl::StrCat("  unknown (in the file, not in the module) [", unknown.size(), "]:"));
      for (const Entry* e : unknown) lines.push_back(EntryLine(*e, sources, true));
    }
    if (fail_missing) {
      lines.push_back(absl::StrCat("  missing (in the module, not in the file) [", missing.size(), "]:"));
      for (const auto& name : missing) {
        const at::Tensor& t = expected_tensors[name];
        lines.push_back(absl::StrCat("    ", name, "  ", DtypeShortName(t.scalar_type()), " ", ShapeStr(t.sizes())));
      }
    }
    if (!wrong_shape.empty()) {
      lines.push_back(absl::StrCat("  wrong shape (file vs module) [", wrong_shape.size(), "]:"));
      for (const Entry* e : wrong_shape) {
        lines.push_back(absl::StrCat(EntryLine(*e, sources, false), ": file ", ShapeStr(e->info->shape), " vs module ",
                                     ShapeStr(expected_tensors[e->module_name].sizes())));
      }
    }
    if (!bad_dtype.empty()) {
      lines.push_back(absl::StrCat("  incompatible dtype (file vs module; allow_lossy_dtype converts) [", bad_dtype.size(), "]:"));
      for (const Entry* e : bad_dtype) {
        lines.push_back(absl::StrCat(EntryLine(*e, sources, false), ": file ", DtypeShortName(e->info->dtype), " vs module ",
                                     DtypeShortName(expected_tensors[e->module_name].scalar_type())));
      }
    }
    if (!duplicate_lines.empty()) {
      lines.push_back(absl::StrCat("  duplicate (several file tensors map to one module name) [", duplicate_lines.size(), "]:"));
      lines.insert(lines.end(), duplicate_lines.begin(), duplicate_lines.end());
    }
    std::vector<std::string> unknown_names;
    for (const Entry* e : unknown) unknown_names.push_back(e->module_name);
    for (auto& h : Hints(unknown_names, missing_set)) lines.push_back("  " + h);
    lines.push_back(absl::StrCat("  name rules: ", RulesDescription(options.rules)));
    return absl::InvalidArgumentError(absl::StrJoin(lines, "\n"));
  }
  for (const Entry* e : unknown) report.unexpected.push_back(e->info->name);
  report.missing = missing;
  report.missing.insert(report.missing.end(), optional_missing.begin(), optional_missing.end());
  std::sort(report.missing.begin(), report.missing.end());

  // 3. Read the tensors that will be copied (views of mapped files, cheap), check that twins agree, then copy.
  std::vector<TensorMap> read(sources.size());
  std::vector<const TensorMap*> tensors(sources.size(), nullptr);
  for (size_t s = 0; s < sources.size(); ++s) {
    std::set<std::string> names;
    for (const auto& [mname, list] : by_module_name) {
      if (!expected_tensors.count(mname)) continue;
      for (const Entry* e : list)
        if (e->source == s) names.insert(e->info->name);
    }
    tensors[s] = sources[s].tensors;
    if (!tensors[s] && !names.empty()) {
      WFM_ASSIGN_OR_RETURN(read[s], ReadTensorFile(sources[s].path, [&](const std::string& n) { return names.count(n) > 0; }));
      tensors[s] = &read[s];
    }
  }
  auto source_tensor = [&](const Entry* e) -> const at::Tensor* {
    if (!tensors[e->source]) return nullptr;
    auto it = tensors[e->source]->find(e->info->name);
    return it == tensors[e->source]->end() ? nullptr : &it->second;
  };
  std::vector<std::string> differing;
  for (const auto& [mname, list] : by_module_name) {
    if (list.size() < 2 || !expected_tensors.count(mname)) continue;
    const at::Tensor* first = source_tensor(list.front());
    for (size_t k = 1; k < list.size(); ++k) {
      const at::Tensor* other = source_tensor(list[k]);
      if (first && other && !at::equal(*first, *other)) {
        differing.push_back(absl::StrCat("    ", mname, " <- ", from_list(list)));
        break;
      }
    }
  }
  if (!differing.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint ", report.source, ": ", differing.size(),
        " module tensor(s) come from several file tensors with different values; nothing was loaded:\n",
        absl::StrJoin(differing, "\n")));
  }
  absl::Status copied = CatchToStatus(absl::StrCat("copying ", report.source, " into the module"), [&]() {
    at::NoGradGuard no_grad;
    for (const auto& [mname, list] : by_module_name) {
      auto dst_it = expected_tensors.find(mname);
      if (dst_it == expected_tensors.end()) continue;
      const at::Tensor* src = source_tensor(list.front());
      if (!src) {
        return absl::InternalError(absl::StrCat(report.source, ": tensor '", list.front()->info->name, "' vanished on read"));
      }
      at::Tensor& dst = dst_it->second;
      if (src->scalar_type() != dst.scalar_type()) {
        ++report.converted;
        ++report.conversions[absl::StrCat(DtypeShortName(src->scalar_type()), "->", DtypeShortName(dst.scalar_type()))];
      }
      dst.copy_(*src);
      report.bytes += static_cast<uint64_t>(dst.numel()) * dst.element_size();
      report.values += dst.numel();
      ++report.loaded;
    }
    return absl::OkStatus();
  });
  WFM_RETURN_IF_ERROR(copied);
  return report;
}

absl::StatusOr<Source> FileSource(const std::string& path) {
  Source s;
  s.path = path;
  s.label = absl::StrCat("'", path, "'");
  WFM_ASSIGN_OR_RETURN(TensorFileIndex index, ListTensorFile(path));
  s.infos = std::move(index.tensors);
  return s;
}

}  // namespace

std::string LoadReport::Summary() const {
  std::string s = absl::StrCat("loaded ", loaded, "/", module_tensors, " tensors (", HumanCount(values), " values, ",
                               HumanBytes(bytes), ") from ", source);
  for (const auto& [conv, n] : conversions) absl::StrAppend(&s, "; converted ", n, " ", conv);
  if (dropped) absl::StrAppend(&s, "; ", dropped, " dropped by name rules");
  if (!missing.empty()) absl::StrAppend(&s, "; ", missing.size(), " missing (allowed)");
  if (!unexpected.empty()) absl::StrAppend(&s, "; ", unexpected.size(), " unexpected (ignored)");
  return s;
}

absl::StatusOr<LoadReport> LoadCheckpoint(torch::nn::Module& module, const std::string& path, const LoadOptions& options) {
  return LoadCheckpoint(module, std::vector<std::string>{path}, options);
}

absl::StatusOr<LoadReport> LoadCheckpoint(torch::nn::Module& module, const std::vector<std::string>& paths,
                                          const LoadOptions& options) {
  if (paths.empty()) return absl::InvalidArgumentError("LoadCheckpoint: no checkpoint file given");
  std::vector<Source> sources;
  for (const auto& p : paths) {
    WFM_ASSIGN_OR_RETURN(Source s, FileSource(p));
    sources.push_back(std::move(s));
  }
  return LoadSources(module, std::move(sources), options);
}

absl::StatusOr<LoadReport> LoadStateDict(torch::nn::Module& module, const TensorMap& tensors, const LoadOptions& options,
                                         absl::string_view source) {
  Source s;
  s.label = std::string(source);
  s.tensors = &tensors;
  for (const auto& [name, t] : tensors) {
    if (!t.defined()) return absl::InvalidArgumentError(absl::StrCat(source, ": tensor '", name, "' is undefined"));
    TensorInfo info;
    info.name = name;
    info.dtype = t.scalar_type();
    info.shape = t.sizes().vec();
    s.infos.push_back(std::move(info));
  }
  std::vector<Source> sources;
  sources.push_back(std::move(s));
  return LoadSources(module, std::move(sources), options);
}

TensorMap StateDict(const torch::nn::Module& module) {
  TensorMap out;
  for (const auto& p : module.named_parameters(/*recurse=*/true))
    if (p.value().defined()) out[p.key()] = p.value().detach();
  for (const auto& b : module.named_buffers(/*recurse=*/true))
    if (b.value().defined()) out[b.key()] = b.value().detach();
  return out;
}

absl::Status SaveModule(const torch::nn::Module& module, const std::string& path,
                        const std::map<std::string, std::string>& metadata) {
  return CatchToStatus(absl::StrCat("saving module to '", path, "'"),
                       [&]() { return WriteSafetensors(path, StateDict(module), metadata); });
}

}  // namespace wfm
