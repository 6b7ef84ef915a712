// AR weight IO (see wfm/autoregressive/weights.h).
// TODO(ar): switch to the core checkpoint loader (wfm/core/checkpoint.h LoadCheckpoint) once it is on main; this
// strict safetensors loader is the interim implementation.
#include "wfm/autoregressive/weights.h"

#include <set>
#include <vector>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "wfm/core/safetensors.h"
#include "wfm/core/status.h"

namespace wfm::ar {
namespace {

TensorMap ModuleState(const torch::nn::Module& m) {
  TensorMap out;
  for (const auto& p : m.named_parameters(true)) out[p.key()] = p.value();
  for (const auto& b : m.named_buffers(true)) out[b.key()] = b.value();
  return out;
}

std::string Shape(at::IntArrayRef s) { return absl::StrCat("[", absl::StrJoin(s, ", "), "]"); }

}  // namespace

absl::Status LoadWeights(ArTransformerImpl& net, const std::string& path, const WeightLoadOptions& options) {
  WFM_ASSIGN_OR_RETURN(TensorMap file, ReadSafetensors(path));
  TensorMap mod = ModuleState(net);
  std::vector<std::string> missing, unexpected, mismatched;
  for (const auto& [name, t] : mod) {
    auto it = file.find(name);
    if (it == file.end()) {
      missing.push_back(name);
    } else if (it->second.sizes() != t.sizes()) {
      std::string m = absl::StrCat(name, " (file ", Shape(it->second.sizes()), ", model ", Shape(t.sizes()), ")");
      if (name == "tok_embeddings.weight" || name == "output.weight")
        absl::StrAppend(&m, " - vocabulary mismatch: the config has vocab_size ", net.config.vocab_size,
                        net.config.HasBov() ? " (+<bov>, embedding rows rounded to 64)" : "");
      mismatched.push_back(m);
    }
  }
  for (const auto& [name, t] : file)
    if (!mod.count(name)) unexpected.push_back(name);
  std::vector<std::string> problems;
  if (!mismatched.empty()) problems.push_back(absl::StrCat("wrong shape: ", absl::StrJoin(mismatched, "; ")));
  if (!missing.empty() && !options.allow_missing)
    problems.push_back(absl::StrCat("missing: ", absl::StrJoin(missing, ", ")));
  if (!unexpected.empty() && !options.allow_unexpected)
    problems.push_back(absl::StrCat("unexpected: ", absl::StrJoin(unexpected, ", ")));
  if (!problems.empty())
    return absl::InvalidArgumentError(
        absl::StrCat("AR weights '", path, "' do not match the model: ", absl::StrJoin(problems, " | ")));
  return CatchToStatus(absl::StrCat("copying AR weights from ", path), [&]() -> absl::Status {
    at::NoGradGuard g;
    for (auto& [name, t] : mod) {
      auto it = file.find(name);
      if (it != file.end()) t.copy_(it->second);
    }
    return absl::OkStatus();
  });
}

absl::Status SaveWeights(const ArTransformerImpl& net, const std::string& path) {
  return WriteSafetensors(path, ModuleState(net), {{"format", "pt"}, {"model", "wfm autoregressive"}});
}

}  // namespace wfm::ar
