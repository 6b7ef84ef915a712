// Tokenizer checkpoint loading (see weights.h) on top of wfm/core/checkpoint.h.
#include "wfm/tokenizer/weights.h"

#include <ATen/ATen.h>

#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "wfm/core/status.h"
#include "wfm/core/tensor_file.h"

namespace wfm::tokenizer {
namespace fs = std::filesystem;

namespace {

// Buffers that are constants of the architecture (derived from the config).
bool IsConstant(const std::string& name) {
  return absl::StartsWith(name, "encoder.patcher") || absl::StartsWith(name, "decoder.unpatcher") ||
         absl::StartsWith(name, "quantizer.");
}

LoadOptions TokenizerLoadOptions(bool use_ema) {
  LoadOptions o;
  o.rules = use_ema ? EmaNameRules() : DefaultNameRules();
  o.rules.push_back(NameRule::Drop(R"(^inv_quant\.)"));  // decoder.jit: InvQuantizerJit's copy of the FSQ buffers
  o.allow_missing = true;                                // checked below against the requested part
  return o;
}

// After a load: the requested part is complete, and the constants equal what the config implies.
absl::Status CheckLoaded(TokenizerNetworkImpl& net, const LoadReport& report, WeightsPart part,
                         const std::map<std::string, at::Tensor>& constants_before) {
  std::vector<std::string> missing;
  for (const std::string& name : report.missing)
    if (InWeightsPart(name, part) && !IsConstant(name)) missing.push_back(name);
  if (!missing.empty()) {
    std::vector<std::string> shown(missing.begin(), missing.begin() + std::min<size_t>(missing.size(), 12));
    return absl::InvalidArgumentError(
        absl::StrCat(report.source, ": checkpoint does not cover the ",
                     part == WeightsPart::kAll ? "network" : part == WeightsPart::kEncoder ? "encoder" : "decoder",
                     "; ", missing.size(), " missing: ", absl::StrJoin(shown, ", "),
                     missing.size() > shown.size() ? ", ..." : "",
                     part == WeightsPart::kAll ? " (an encoder.jit or decoder.jit alone covers one half)" : ""));
  }
  auto values = [](const at::Tensor& t) {
    at::Tensor v = t.flatten().to(at::kCPU, at::kDouble);
    std::vector<std::string> parts;
    for (int64_t i = 0; i < std::min<int64_t>(v.numel(), 8); ++i) parts.push_back(absl::StrCat(v[i].item<double>()));
    return absl::StrCat("[", absl::StrJoin(parts, ", "), v.numel() > 8 ? ", ...]" : "]");
  };
  std::vector<std::string> differ;
  for (const auto& b : net.named_buffers(true)) {
    auto it = constants_before.find(b.key());
    if (it == constants_before.end()) continue;
    if (at::equal(b.value().to(at::kCPU, at::kDouble), it->second.to(at::kDouble))) continue;
    differ.push_back(absl::StrCat(b.key(), " (checkpoint ", values(b.value()), ", config ", values(it->second), ")"));
    torch::NoGradGuard ng;
    b.value().copy_(it->second);  // keep the network consistent with its config
  }
  if (!differ.empty())
    return absl::InvalidArgumentError(absl::StrCat(report.source,
                                                   ": checkpoint constants differ from the config (wrong config "
                                                   "for these weights?): ",
                                                   absl::StrJoin(differ, "; ")));
  return absl::OkStatus();
}

std::map<std::string, at::Tensor> Constants(TokenizerNetworkImpl& net) {
  std::map<std::string, at::Tensor> out;
  for (const auto& b : net.named_buffers(true))
    if (IsConstant(b.key())) out[b.key()] = b.value().detach().to(at::kCPU).clone();
  return out;
}

}  // namespace

bool InWeightsPart(const std::string& name, WeightsPart part) {
  if (part == WeightsPart::kAll || absl::StartsWith(name, "quantizer.")) return true;
  if (part == WeightsPart::kEncoder) return absl::StartsWith(name, "encoder.") || absl::StartsWith(name, "quant_conv.");
  return absl::StartsWith(name, "decoder.") || absl::StartsWith(name, "post_quant_conv.");
}

absl::StatusOr<std::vector<std::string>> ResolveTokenizerWeights(const std::string& spec) {
  std::vector<std::string> files;
  for (absl::string_view piece : absl::StrSplit(spec, ',', absl::SkipEmpty())) {
    const std::string p(piece);
    std::error_code ec;
    if (!fs::is_directory(p, ec)) {
      if (!fs::exists(p, ec)) return absl::NotFoundError(absl::StrCat(p, ": no such weights file or directory"));
      files.push_back(p);
      continue;
    }
    std::string found;
    for (const char* f : {"model.safetensors", "autoencoder.jit", "model.pt"})
      if (fs::exists(fs::path(p) / f, ec)) {
        found = (fs::path(p) / f).string();
        break;
      }
    if (found.empty()) {
      std::vector<std::string> st;
      for (const auto& e : fs::directory_iterator(p, ec))
        if (e.path().extension() == ".safetensors") st.push_back(e.path().string());
      if (st.size() == 1) found = st[0];
    }
    if (!found.empty()) {
      files.push_back(found);
      continue;
    }
    bool any = false;
    for (const char* half : {"encoder.jit", "decoder.jit"})
      if (fs::exists(fs::path(p) / half, ec)) files.push_back((fs::path(p) / half).string()), any = true;
    if (!any)
      return absl::NotFoundError(absl::StrCat(p, ": no tokenizer checkpoint in this directory (looked for "
                                                 "model.safetensors, autoencoder.jit, model.pt, a single "
                                                 "*.safetensors, encoder.jit / decoder.jit)"));
  }
  if (files.empty()) return absl::InvalidArgumentError("no weights given");
  return files;
}

namespace {
// Validates the file(s) against the network with the core loader WITHOUT reading their data (zero-memory
// stand-ins of the right dtype/shape), then lets the parameters and buffers adopt the file's memory-mapped
// tensors where the dtype already matches (zero-copy, copy-on-write) and copies the rest. The weights are thus
// resident once, not twice (the file's pages plus a copy): ~0.4 GB less peak memory for a full-size tokenizer.
absl::StatusOr<LoadReport> LoadZeroCopy(TokenizerNetworkImpl& net, const std::vector<std::string>& files,
                                        const LoadOptions& options) {
  TensorMap standins;
  std::vector<std::string> sources;
  for (const std::string& f : files) {
    WFM_ASSIGN_OR_RETURN(TensorFileIndex index, ListTensorFile(f));
    for (const TensorInfo& t : index.tensors) {
      // A file name that occurs in two files is reported by the core loader when given both; keep the first.
      if (standins.count(t.name)) continue;
      standins[t.name] = at::zeros({}, at::TensorOptions().dtype(t.dtype)).expand(t.shape);
    }
    sources.push_back(f);
  }
  WFM_ASSIGN_OR_RETURN(LoadReport report, LoadStateDict(net, standins, options, absl::StrJoin(sources, ", ")));
  std::set<std::string> expected;
  std::map<std::string, at::Tensor> targets;
  for (const auto& p : net.named_parameters(true)) expected.insert(p.key()), targets[p.key()] = p.value();
  for (const auto& b : net.named_buffers(true)) expected.insert(b.key()), targets[b.key()] = b.value();
  return CatchToStatus("loading weights", [&]() -> absl::StatusOr<LoadReport> {
    torch::NoGradGuard no_grad;
    for (const std::string& f : files) {
      WFM_ASSIGN_OR_RETURN(TensorMap raw, ReadTensorFile(f));
      std::vector<std::string> names;
      for (const auto& [name, t] : raw) names.push_back(name);
      WFM_ASSIGN_OR_RETURN(NameMapping mapping, MapNames(names, options.rules, &expected));
      for (const auto& [from, to] : mapping.renamed) {
        auto it = targets.find(to);
        if (it == targets.end()) continue;  // unexpected names were reported (or allowed) above
        at::Tensor& target = it->second;
        const at::Tensor& src = raw.at(from);
        if (src.scalar_type() == target.scalar_type() && target.is_cpu() && src.is_contiguous())
          target.set_data(src);
        else
          target.copy_(src);
      }
    }
    return report;
  });
}
}  // namespace

absl::StatusOr<LoadReport> LoadTokenizerWeights(TokenizerNetworkImpl& net, const std::string& spec, WeightsPart part,
                                                bool use_ema) {
  WFM_ASSIGN_OR_RETURN(std::vector<std::string> files, ResolveTokenizerWeights(spec));
  const auto constants = Constants(net);
  const LoadOptions options = TokenizerLoadOptions(use_ema);
  absl::StatusOr<LoadReport> report = LoadZeroCopy(net, files, options);
  if (!report.ok()) {
    // The core loader ran with allow_missing (constants may be absent): add the missing required tensors to
    // its report so that one error lists every problem.
    std::set<std::string> expected;
    for (const auto& p : net.named_parameters(true)) expected.insert(p.key());
    for (const auto& b : net.named_buffers(true)) expected.insert(b.key());
    std::set<std::string> present;
    for (const std::string& f : files) {
      auto index = ListTensorFile(f);
      if (!index.ok()) return report.status();
      std::vector<std::string> names;
      for (const auto& t : index->tensors) names.push_back(t.name);
      auto mapping = MapNames(names, options.rules, &expected);
      if (!mapping.ok()) return report.status();
      for (const auto& [from, to] : mapping->renamed) present.insert(to);
    }
    std::vector<std::string> missing;
    for (const std::string& name : expected)
      if (!present.count(name) && InWeightsPart(name, part) && !IsConstant(name)) missing.push_back(name);
    if (missing.empty()) return report.status();
    std::string msg(report.status().message());
    absl::StrAppend(&msg, "\n  missing (in the module, not in the file) [", missing.size(), "]:");
    for (const std::string& name : missing) absl::StrAppend(&msg, "\n    ", name);
    return absl::Status(report.status().code(), msg);
  }
  WFM_RETURN_IF_ERROR(CheckLoaded(net, *report, part, constants));
  return report;
}

absl::StatusOr<LoadReport> LoadTokenizerStateDict(TokenizerNetworkImpl& net, const TensorMap& tensors,
                                                  WeightsPart part, const std::string& source) {
  const auto constants = Constants(net);
  WFM_ASSIGN_OR_RETURN(LoadReport report, LoadStateDict(net, tensors, TokenizerLoadOptions(false), source));
  WFM_RETURN_IF_ERROR(CheckLoaded(net, report, part, constants));
  return report;
}

std::vector<std::pair<std::string, std::vector<int64_t>>> StateDictShapes(torch::nn::Module& module) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  for (const auto& p : module.named_parameters(true)) out.emplace_back(p.key(), p.value().sizes().vec());
  for (const auto& b : module.named_buffers(true)) out.emplace_back(b.key(), b.value().sizes().vec());
  return out;
}

absl::Status SaveTokenizerWeights(TokenizerNetworkImpl& net, const std::string& path) {
  return SaveModule(net, path, {{"format", "pt"}, {"config", net.config().ToJson().dump()}});
}

}  // namespace wfm::tokenizer
