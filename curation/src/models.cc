// TorchScript model wrappers (embedder, scorer, captioner, TransNetV2) and sidecar captions (see models.h).
#include "wfm/curation/models.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <ATen/ATen.h>
#include <torch/script.h>

#include "wfm/core/file_util.h"
#include "wfm/core/runtime.h"
#include "wfm/core/status.h"

namespace wfm::curation {
namespace fs = std::filesystem;

struct ScriptModel::Impl {
  torch::jit::Module module;
  c10::Device device = c10::Device(c10::kCPU);
};

ScriptModel::ScriptModel() : impl_(std::make_unique<Impl>()) {}
ScriptModel::~ScriptModel() = default;

absl::StatusOr<std::unique_ptr<ScriptModel>> ScriptModel::Load(const std::string& path, const std::string& device) {
  if (!fs::exists(path)) return absl::NotFoundError(absl::StrCat("TorchScript model not found: ", path));
  WFM_ASSIGN_OR_RETURN(c10::Device dev, ParseDevice(device));
  std::unique_ptr<ScriptModel> m(new ScriptModel());
  m->path_ = path;
  m->impl_->device = dev;
  WFM_RETURN_IF_ERROR(CatchToStatus(absl::StrCat("loading TorchScript model ", path), [&]() -> absl::Status {
    m->impl_->module = torch::jit::load(path, dev);
    m->impl_->module.eval();
    return absl::OkStatus();
  }));
  return m;
}

namespace {
absl::StatusOr<c10::IValue> Forward(torch::jit::Module& module, const c10::Device& device,
                                    const std::vector<at::Tensor>& inputs, const std::string& path) {
  return CatchToStatus(absl::StrCat("running TorchScript model ", path), [&]() -> absl::StatusOr<c10::IValue> {
    c10::InferenceMode guard;
    std::vector<c10::IValue> args;
    for (const auto& t : inputs) args.emplace_back(t.to(device));
    return module.forward(args);
  });
}

absl::StatusOr<at::Tensor> FirstTensor(const c10::IValue& v, const std::string& path) {
  if (v.isTensor()) return v.toTensor().to(at::kCPU);
  if (v.isTuple()) {
    for (const auto& e : v.toTupleRef().elements()) {
      if (e.isTensor()) return e.toTensor().to(at::kCPU);
    }
  }
  if (v.isList()) {
    for (const auto& e : v.toListRef()) {
      if (e.isTensor()) return e.toTensor().to(at::kCPU);
    }
  }
  if (v.isDouble() || v.isInt()) return at::scalar_tensor(v.toScalar().toDouble(), at::kDouble);
  return absl::InvalidArgumentError(absl::StrCat("TorchScript model ", path, " returned ", v.tagKind(),
                                                 ", expected a tensor"));
}
}  // namespace

absl::StatusOr<at::Tensor> ScriptModel::RunTensor(const std::vector<at::Tensor>& inputs) {
  std::lock_guard<std::mutex> lock(mu_);
  WFM_ASSIGN_OR_RETURN(c10::IValue out, Forward(impl_->module, impl_->device, inputs, path_));
  return FirstTensor(out, path_);
}

absl::StatusOr<std::string> ScriptModel::RunString(const std::vector<at::Tensor>& inputs) {
  std::lock_guard<std::mutex> lock(mu_);
  WFM_ASSIGN_OR_RETURN(c10::IValue out, Forward(impl_->module, impl_->device, inputs, path_));
  if (out.isString()) return out.toStringRef();
  if (out.isTuple() && !out.toTupleRef().elements().empty() && out.toTupleRef().elements()[0].isString()) {
    return out.toTupleRef().elements()[0].toStringRef();
  }
  return absl::InvalidArgumentError(absl::StrCat("TorchScript captioner ", path_, " returned ", out.tagKind(),
                                                 ", expected str"));
}

namespace {

// uint8 [T, H, W, 3] -> float [T, 3, H, W] in [0, 1].
at::Tensor ToUnitFloat(const at::Tensor& frames) { return frames.permute({0, 3, 1, 2}).to(at::kFloat).div(255.0); }

class ScriptEmbedder : public ClipEmbedder {
 public:
  ScriptEmbedder(std::unique_ptr<ScriptModel> m, int w, int h) : m_(std::move(m)), w_(w), h_(h) {}
  int width() const override { return w_; }
  int height() const override { return h_; }
  absl::StatusOr<std::vector<float>> Embed(const at::Tensor& frames) override {
    WFM_ASSIGN_OR_RETURN(at::Tensor e, m_->RunTensor({ToUnitFloat(frames)}));
    e = e.to(at::kFloat);
    if (e.dim() >= 2) e = e.reshape({e.size(0), -1}).mean(0);  // [D]
    e = e.reshape({-1});
    double n = e.norm().item<double>();
    if (!(n > 0) || !std::isfinite(n)) {
      return absl::InvalidArgumentError(absl::StrCat("embedder ", m_->path(), " returned a zero or non-finite vector"));
    }
    e = (e / n).contiguous();
    return std::vector<float>(e.data_ptr<float>(), e.data_ptr<float>() + e.numel());
  }
  std::string name() const override { return fs::path(m_->path()).filename().string(); }

 private:
  std::unique_ptr<ScriptModel> m_;
  int w_, h_;
};

class ScriptScorer : public ClipScorer {
 public:
  ScriptScorer(std::unique_ptr<ScriptModel> m, int w, int h) : m_(std::move(m)), w_(w), h_(h) {}
  int width() const override { return w_; }
  int height() const override { return h_; }
  absl::StatusOr<double> Score(const at::Tensor& frames) override {
    WFM_ASSIGN_OR_RETURN(at::Tensor s, m_->RunTensor({ToUnitFloat(frames)}));
    if (s.numel() == 0) return absl::InvalidArgumentError(absl::StrCat("scorer ", m_->path(), " returned nothing"));
    double v = s.to(at::kDouble).mean().item<double>();
    if (!std::isfinite(v)) return absl::InvalidArgumentError(absl::StrCat("scorer ", m_->path(), " returned NaN/inf"));
    return v;
  }
  std::string name() const override { return fs::path(m_->path()).filename().string(); }

 private:
  std::unique_ptr<ScriptModel> m_;
  int w_, h_;
};

class ScriptCaptioner : public Captioner {
 public:
  ScriptCaptioner(std::unique_ptr<ScriptModel> m, int w, int h) : m_(std::move(m)), w_(w), h_(h) {}
  int width() const override { return w_; }
  int height() const override { return h_; }
  absl::StatusOr<std::string> Caption(const at::Tensor& frames) override { return m_->RunString({frames.contiguous()}); }
  std::string name() const override { return fs::path(m_->path()).filename().string(); }

 private:
  std::unique_ptr<ScriptModel> m_;
  int w_, h_;
};

absl::Status CheckSize(int w, int h) {
  if (w <= 0 || h <= 0 || w > 4096 || h > 4096) {
    return absl::InvalidArgumentError(absl::StrCat("model input size ", w, "x", h, " is out of range"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<ClipEmbedder>> LoadTorchScriptEmbedder(const std::string& path, int width, int height,
                                                                      const std::string& device) {
  WFM_RETURN_IF_ERROR(CheckSize(width, height));
  WFM_ASSIGN_OR_RETURN(auto m, ScriptModel::Load(path, device));
  return std::unique_ptr<ClipEmbedder>(std::make_unique<ScriptEmbedder>(std::move(m), width, height));
}

absl::StatusOr<std::unique_ptr<ClipScorer>> LoadTorchScriptScorer(const std::string& path, int width, int height,
                                                                  const std::string& device) {
  WFM_RETURN_IF_ERROR(CheckSize(width, height));
  WFM_ASSIGN_OR_RETURN(auto m, ScriptModel::Load(path, device));
  return std::unique_ptr<ClipScorer>(std::make_unique<ScriptScorer>(std::move(m), width, height));
}

absl::StatusOr<std::unique_ptr<Captioner>> LoadTorchScriptCaptioner(const std::string& path, int width, int height,
                                                                    const std::string& device) {
  WFM_RETURN_IF_ERROR(CheckSize(width, height));
  WFM_ASSIGN_OR_RETURN(auto m, ScriptModel::Load(path, device));
  return std::unique_ptr<Captioner>(std::make_unique<ScriptCaptioner>(std::move(m), width, height));
}

absl::StatusOr<SidecarCaptions> SidecarCaptions::Load(const std::string& video_path) {
  SidecarCaptions c;
  fs::path p(video_path);
  std::vector<fs::path> candidates;
  for (const char* ext : {".json", ".txt"}) {
    candidates.push_back(fs::path(video_path + ext));
    fs::path stem = p.parent_path() / (p.stem().string() + ext);
    if (stem != p) candidates.push_back(stem);
  }
  for (const auto& cand : candidates) {
    std::error_code ec;
    if (!fs::is_regular_file(cand, ec)) continue;
    WFM_ASSIGN_OR_RETURN(std::string text, ReadFile(cand.string()));
    c.found_ = true;
    c.source_ = cand.string();
    if (cand.extension() == ".txt") {
      while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
      c.whole_ = text;
      return c;
    }
    nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat("caption sidecar ", cand.string(), " is not a JSON object"));
    }
    if (j.contains("caption") && j["caption"].is_string()) c.whole_ = j["caption"].get<std::string>();
    if (j.contains("captions")) {
      if (!j["captions"].is_array()) {
        return absl::InvalidArgumentError(absl::StrCat("caption sidecar ", cand.string(), ": \"captions\" must be a list"));
      }
      for (const auto& e : j["captions"]) {
        if (!e.is_object() || !e.contains("caption") || !e["caption"].is_string() || !e.value("start", nlohmann::json()).is_number() ||
            !e.value("end", nlohmann::json()).is_number()) {
          return absl::InvalidArgumentError(absl::StrCat("caption sidecar ", cand.string(),
                                                         ": each caption needs numeric start, end and a string caption"));
        }
        c.entries_.push_back({e["start"].get<double>(), e["end"].get<double>(), e["caption"].get<std::string>()});
      }
    }
    return c;
  }
  return c;
}

std::string SidecarCaptions::For(double start_s, double end_s) const {
  const Entry* best = nullptr;
  double best_overlap = 0;
  for (const auto& e : entries_) {
    double ov = std::min(end_s, e.end) - std::max(start_s, e.start);
    if (ov > best_overlap) {
      best_overlap = ov;
      best = &e;
    }
  }
  if (best) return best->caption;
  return whole_;
}

}  // namespace wfm::curation
