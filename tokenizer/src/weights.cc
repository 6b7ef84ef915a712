// Strict tokenizer checkpoint loading (see weights.h).
#include "wfm/tokenizer/weights.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <filesystem>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "wfm/core/safetensors.h"
#include "wfm/core/status.h"

namespace wfm::tokenizer {
namespace fs = std::filesystem;

namespace {

bool StartsWith(const std::string& s, absl::string_view p) { return s.rfind(std::string(p), 0) == 0; }

std::string ShapeString(at::IntArrayRef s) { return absl::StrCat("[", absl::StrJoin(s, ", "), "]"); }

// Buffers that are constants of the architecture; the published model.pt leaves the patcher ones out
// (TokenizerModel.state_dict filters network.encoder.patcher* / network.decoder.unpatcher*).
bool IsOptionalConstant(const std::string& name) {
  return StartsWith(name, "encoder.patcher") || StartsWith(name, "decoder.unpatcher");
}

std::string ListSome(const std::vector<std::string>& items, size_t max_items = 12) {
  std::vector<std::string> shown(items.begin(), items.begin() + std::min(items.size(), max_items));
  std::string s = absl::StrJoin(shown, ", ");
  if (items.size() > max_items) absl::StrAppend(&s, ", ... (", items.size() - max_items, " more)");
  return s;
}

}  // namespace

bool InWeightsPart(const std::string& name, WeightsPart part) {
  if (part == WeightsPart::kAll || StartsWith(name, "quantizer.")) return true;
  if (part == WeightsPart::kEncoder) return StartsWith(name, "encoder.") || StartsWith(name, "quant_conv.");
  return StartsWith(name, "decoder.") || StartsWith(name, "post_quant_conv.");
}

TensorMap MapTokenizerCheckpointNames(const TensorMap& raw, bool use_ema) {
  TensorMap out, ema;
  for (const auto& [key, t] : raw) {
    std::string name = key;
    // Training checkpoints: {"model": state_dict, "optimizer": ..., "scheduler": ..., "grad_scaler": ...}.
    if (StartsWith(name, "optimizer.") || StartsWith(name, "scheduler.") || StartsWith(name, "grad_scaler.")) continue;
    if (StartsWith(name, "model.")) name = name.substr(6);
    if (StartsWith(name, "loss.") || StartsWith(name, "ema.loss-")) continue;
    if (StartsWith(name, "ema.")) {
      // EMAModelTracker buffers: "ema.network-encoder-conv_in-0-conv3d-weight".
      std::string rest = name.substr(4);
      if (StartsWith(rest, "network-")) rest = rest.substr(8);
      for (char& c : rest)
        if (c == '-') c = '.';
      ema[rest] = t;
      continue;
    }
    if (StartsWith(name, "network.")) name = name.substr(8);
    // decoder_jit(): nn.Sequential(inv_quant=InvQuantizerJit(quantizer), post_quant_conv, decoder).
    if (StartsWith(name, "inv_quant.quantizer.")) name = name.substr(10);
    out[name] = t;
  }
  if (use_ema)
    for (auto& [name, t] : ema) out[name] = t;
  return out;
}

absl::StatusOr<TensorMap> ReadTokenizerCheckpointFile(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return absl::NotFoundError(absl::StrCat(path, ": no such file"));
  // Only safetensors is read here until the core checkpoint reader (wfm/core/tensor_file.h) lands.
  std::string head;
  {
    FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot open"));
    char buf[4] = {0};
    size_t n = std::fread(buf, 1, 4, f);
    std::fclose(f);
    head.assign(buf, n);
  }
  if (head.size() >= 2 && head[0] == 'P' && head[1] == 'K')
    return absl::UnimplementedError(absl::StrCat(
        path, ": torch.save / TorchScript archives need the core checkpoint reader; convert to safetensors"));
  auto st = SafetensorsFile::Open(path);
  if (!st.ok()) return st.status();
  return (*st)->GetAll();
}

absl::Status LoadStateDictStrict(torch::nn::Module& module, const TensorMap& tensors, const std::string& source,
                                 const std::function<bool(const std::string&)>& in_scope, LoadSummary* summary) {
  std::map<std::string, at::Tensor> expected;
  for (const auto& p : module.named_parameters(true)) expected[p.key()] = p.value();
  for (const auto& b : module.named_buffers(true)) expected[b.key()] = b.value();

  std::vector<std::string> missing, unexpected, wrong_shape, wrong_dtype, wrong_value;
  for (const auto& [name, target] : expected) {
    if (in_scope && !in_scope(name)) continue;
    if (!tensors.count(name) && !IsOptionalConstant(name)) missing.push_back(name);
  }
  for (const auto& [name, t] : tensors) {
    auto it = expected.find(name);
    if (it == expected.end()) {
      unexpected.push_back(name);
      continue;
    }
    const at::Tensor& target = it->second;
    if (t.sizes() != target.sizes()) {
      wrong_shape.push_back(absl::StrCat(name, " (checkpoint ", ShapeString(t.sizes()), ", network ",
                                         ShapeString(target.sizes()), ")"));
      continue;
    }
    const bool t_float = at::isFloatingType(t.scalar_type()), target_float = at::isFloatingType(target.scalar_type());
    if (t_float != target_float) {
      wrong_dtype.push_back(absl::StrCat(name, " (checkpoint ", c10::toString(t.scalar_type()), ", network ",
                                         c10::toString(target.scalar_type()), ")"));
      continue;
    }
    // Architecture constants must agree with the config: FSQ levels/basis, wavelet taps.
    if (!target_float || absl::EndsWith(name, ".wavelets")) {
      if (!at::equal(t.to(target.scalar_type()).cpu(), target.cpu()))
        wrong_value.push_back(absl::StrCat(name, " (checkpoint ", t.flatten().slice(0, 0, 8).cpu().to(at::kDouble).toString(),
                                           " values differ from the config's)"));
    }
  }
  if (!missing.empty() || !unexpected.empty() || !wrong_shape.empty() || !wrong_dtype.empty() ||
      !wrong_value.empty()) {
    std::string msg = absl::StrCat(source, ": checkpoint does not match the network");
    if (!missing.empty()) absl::StrAppend(&msg, "; ", missing.size(), " missing: ", ListSome(missing));
    if (!unexpected.empty()) absl::StrAppend(&msg, "; ", unexpected.size(), " unexpected: ", ListSome(unexpected));
    if (!wrong_shape.empty()) absl::StrAppend(&msg, "; ", wrong_shape.size(), " wrong shape: ", ListSome(wrong_shape));
    if (!wrong_dtype.empty()) absl::StrAppend(&msg, "; ", wrong_dtype.size(), " wrong dtype: ", ListSome(wrong_dtype));
    if (!wrong_value.empty())
      absl::StrAppend(&msg, "; ", wrong_value.size(), " constants differ (wrong config?): ", ListSome(wrong_value));
    return absl::InvalidArgumentError(msg);
  }
  return CatchToStatus(source, [&]() -> absl::Status {
    torch::NoGradGuard no_grad;
    int64_t count = 0, elements = 0;
    for (const auto& [name, t] : tensors) {
      at::Tensor& target = expected.at(name);
      target.copy_(t);
      ++count, elements += t.numel();
    }
    if (summary != nullptr) summary->tensors += count, summary->elements += elements;
    return absl::OkStatus();
  });
}

absl::StatusOr<LoadSummary> LoadTokenizerWeights(TokenizerNetworkImpl& net, const std::string& spec,
                                                 WeightsPart part, bool use_ema) {
  std::vector<std::string> files;
  for (absl::string_view piece : absl::StrSplit(spec, ',', absl::SkipEmpty())) {
    std::string p(piece);
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      // Preference: one full checkpoint, else the encoder/decoder halves.
      const char* full[] = {"model.safetensors", "autoencoder.jit", "model.pt"};
      std::string found;
      for (const char* f : full)
        if (fs::exists(fs::path(p) / f)) {
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
      } else {
        bool any = false;
        for (const char* half : {"encoder.jit", "decoder.jit"}) {
          if (fs::exists(fs::path(p) / half)) files.push_back((fs::path(p) / half).string()), any = true;
        }
        if (!any)
          return absl::NotFoundError(absl::StrCat(
              p, ": no tokenizer checkpoint in this directory (looked for model.safetensors, autoencoder.jit, "
                 "model.pt, a single *.safetensors, encoder.jit/decoder.jit)"));
      }
    } else {
      files.push_back(p);
    }
  }
  if (files.empty()) return absl::InvalidArgumentError("no weights given");
  TensorMap merged;
  for (const std::string& f : files) {
    WFM_ASSIGN_OR_RETURN(TensorMap raw, ReadTokenizerCheckpointFile(f));
    TensorMap mapped = MapTokenizerCheckpointNames(raw, use_ema);
    for (auto& [name, t] : mapped) merged[name] = t;
  }
  LoadSummary summary;
  summary.files = files;
  summary.part = part == WeightsPart::kAll ? "all" : part == WeightsPart::kEncoder ? "encoder" : "decoder";
  auto scope = [part](const std::string& name) { return InWeightsPart(name, part); };
  WFM_RETURN_IF_ERROR(LoadStateDictStrict(net, merged, absl::StrJoin(files, ","), scope, &summary));
  return summary;
}

std::vector<std::pair<std::string, std::vector<int64_t>>> StateDictShapes(torch::nn::Module& module) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  for (const auto& p : module.named_parameters(true)) out.emplace_back(p.key(), p.value().sizes().vec());
  for (const auto& b : module.named_buffers(true)) out.emplace_back(b.key(), b.value().sizes().vec());
  return out;
}

absl::Status SaveTokenizerWeights(torch::nn::Module& module, const std::string& path, const TokenizerConfig* config) {
  TensorMap tensors;
  for (const auto& p : module.named_parameters(true)) tensors[p.key()] = p.value().detach();
  for (const auto& b : module.named_buffers(true)) tensors[b.key()] = b.value().detach();
  std::map<std::string, std::string> meta = {{"format", "pt"}};
  if (config != nullptr) meta["config"] = config->ToJson().dump();
  return WriteSafetensors(path, tensors, meta);
}

}  // namespace wfm::tokenizer
