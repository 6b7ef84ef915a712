// The training driver behind `wfm diffusion train` and wfm.diffusion.train (see train.h): the data sources
// (synthetic latent process, pre-tokenized clip folders, video folders and curated webdataset shards tokenized on
// the fly), text conditioning with dropout, the loss (training.h), evaluation with the EMA weights and periodic
// samples, on the shared core/train loop. (Moved from tools/cmd_diffusion_train.cc so that the CLI and the Python
// bindings run the same function.)
#include "wfm/diffusion/train.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "wfm/core/checkpoint.h"
#include "wfm/core/file_util.h"
#include "wfm/core/logging.h"
#include "wfm/core/runtime.h"
#include "wfm/core/safetensors.h"
#include "wfm/core/status.h"
#include "wfm/core/text/embedding_cache.h"
#include "wfm/core/text/text_encoder.h"
#include "wfm/core/train/distributed.h"
#include "wfm/core/train/ema.h"
#include "wfm/core/train/optimizer.h"
#include "wfm/core/train/rng.h"
#include "wfm/core/train/trainer.h"
#include "wfm/core/train/video_clips.h"
#include "wfm/core/video_io.h"
#include "wfm/curation/webdataset.h"
#include "wfm/diffusion/training.h"
#include "wfm/diffusion/world_model.h"
#include "wfm/tokenizer/tokenizer.h"

namespace wfm::diffusion {
namespace {

// One clip in diffusion space plus its text.
struct ClipItem {
  at::Tensor x0;       // [C, T, H, W] = sigma_data * normalised latent
  at::Tensor emb;      // [N, D] or undefined
  std::string caption;
};

// A training data source. Clips are pure functions of their index where the source allows it (synthetic, clip
// folders, video folders), so resumed runs see the same data; shards stream and skip what was consumed.
class ClipSource {
 public:
  virtual ~ClipSource() = default;
  virtual absl::StatusOr<ClipItem> Get(uint64_t index) = 0;
  // Fixed clips for evaluation and samples.
  virtual absl::StatusOr<std::vector<ClipItem>> Validation(int64_t n) = 0;
  virtual std::string Describe() const = 0;
  virtual nlohmann::json SaveState() const { return nlohmann::json::object(); }
  virtual absl::Status LoadState(const nlohmann::json&) { return absl::OkStatus(); }
};

class SyntheticSource : public ClipSource {
 public:
  SyntheticSource(SyntheticLatentProcess p, uint64_t seed) : p_(p), seed_(seed) {}
  absl::StatusOr<ClipItem> Get(uint64_t index) override {
    TrainingBatch b = p_.Batch(static_cast<int64_t>(index), 1, seed_);
    return ClipItem{b.x0[0], b.crossattn_emb[0], ""};
  }
  absl::StatusOr<std::vector<ClipItem>> Validation(int64_t n) override {
    std::vector<ClipItem> v;
    for (int64_t i = 0; i < n; ++i) {
      TrainingBatch b = p_.Batch(int64_t{1} << 40 | i, 1, seed_);  // never drawn in training
      v.push_back({b.x0[0], b.crossattn_emb[0], ""});
    }
    return v;
  }
  std::string Describe() const override {
    return absl::StrCat("synthetic latent process ", p_.channels, "x", p_.frames, "x", p_.height, "x", p_.width);
  }

 private:
  SyntheticLatentProcess p_;
  uint64_t seed_;
};

// Pre-tokenized clips (raw tokenizer latents, normalised here).
class LatentFolderSource : public ClipSource {
 public:
  LatentFolderSource(LatentFolder folder, LatentStats stats, double sigma_data, uint64_t seed)
      : folder_(std::move(folder)), stats_(std::move(stats)), sigma_data_(sigma_data), seed_(seed) {}
  absl::StatusOr<ClipItem> Get(uint64_t index) override {
    // Epoch-wise permutation: every clip once per epoch, in a seeded order.
    const uint64_t n = static_cast<uint64_t>(folder_.size()), epoch = index / n;
    const at::Tensor perm = at::randperm(static_cast<int64_t>(n), train::MakeCpuGenerator(train::MixSeed(seed_, epoch)),
                                         at::TensorOptions().dtype(at::kLong));
    return Load(perm[static_cast<int64_t>(index % n)].item<int64_t>());
  }
  absl::StatusOr<std::vector<ClipItem>> Validation(int64_t n) override {
    std::vector<ClipItem> v;
    for (int64_t i = 0; i < std::min<int64_t>(n, folder_.size()); ++i) {
      WFM_ASSIGN_OR_RETURN(ClipItem c, Load(i));
      v.push_back(std::move(c));
    }
    return v;
  }
  std::string Describe() const override {
    return absl::StrCat(folder_.size(), " pre-tokenized clips of ", c10::str(folder_.latent_shape()));
  }

 private:
  absl::StatusOr<ClipItem> Load(int64_t i) {
    WFM_ASSIGN_OR_RETURN(LatentClip c, folder_.Get(i));
    return ClipItem{stats_.Normalize(c.latent.unsqueeze(0))[0] * sigma_data_, c.crossattn_emb, c.caption};
  }
  LatentFolder folder_;
  LatentStats stats_;
  double sigma_data_;
  uint64_t seed_;
};

// Encodes pixel clips [3, T, H, W] in [-1, 1] into diffusion space.
class Encoder {
 public:
  Encoder(std::unique_ptr<tokenizer::Tokenizer> tok, LatentStats stats, double sigma_data, c10::Device device)
      : tok_(std::move(tok)), stats_(std::move(stats)), sigma_data_(sigma_data), device_(device) {}
  absl::StatusOr<at::Tensor> Encode(const at::Tensor& video_cthw) {
    torch::NoGradGuard g;
    WFM_ASSIGN_OR_RETURN(tokenizer::EncodeResult e, tok_->Encode(video_cthw.unsqueeze(0)));
    return (stats_.Normalize(e.latent.to(device_, at::kFloat)) * sigma_data_)[0];
  }
  tokenizer::Tokenizer& tokenizer() { return *tok_; }
  const LatentStats& stats() const { return stats_; }

 private:
  std::unique_ptr<tokenizer::Tokenizer> tok_;
  LatentStats stats_;
  double sigma_data_;
  c10::Device device_;
};

// The caption of a video file: KEY.txt beside it, else the first window caption of KEY.json.
std::string SidecarCaption(const std::string& video_path) {
  namespace fs = std::filesystem;
  const fs::path p(video_path);
  auto read = [](const fs::path& f) -> std::string {
    std::ifstream in(f);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  if (fs::exists(fs::path(p).replace_extension(".txt"))) return read(fs::path(p).replace_extension(".txt"));
  if (fs::exists(fs::path(p).replace_extension(".json"))) {
    const nlohmann::json j = nlohmann::json::parse(read(fs::path(p).replace_extension(".json")), nullptr, false);
    if (j.is_object() && j.contains("windows") && j["windows"].is_array() && !j["windows"].empty() &&
        j["windows"][0].contains("caption") && j["windows"][0]["caption"].is_string())
      return j["windows"][0]["caption"].get<std::string>();
  }
  return "";
}

// Random clips of a folder of videos (train::VideoClipDataset), tokenized on the fly.
class VideoFolderSource : public ClipSource {
 public:
  VideoFolderSource(std::unique_ptr<train::VideoClipDataset> ds, Encoder* enc) : ds_(std::move(ds)), enc_(enc) {}
  absl::StatusOr<ClipItem> Get(uint64_t index) override {
    WFM_ASSIGN_OR_RETURN(train::VideoClip c, ds_->TrainClip(index));
    return Make(c);
  }
  absl::StatusOr<std::vector<ClipItem>> Validation(int64_t n) override {
    WFM_ASSIGN_OR_RETURN(std::vector<train::VideoClip> clips, ds_->ValidationClips(n));
    std::vector<ClipItem> v;
    for (const auto& c : clips) {
      WFM_ASSIGN_OR_RETURN(ClipItem item, Make(c));
      v.push_back(std::move(item));
    }
    return v;
  }
  std::string Describe() const override { return ds_->Summary(); }

 private:
  absl::StatusOr<ClipItem> Make(const train::VideoClip& c) {
    WFM_ASSIGN_OR_RETURN(at::Tensor x0, enc_->Encode(FramesToModelInput(c.frames)), c.path);
    return ClipItem{x0, at::Tensor(), SidecarCaption(c.path)};
  }
  std::unique_ptr<train::VideoClipDataset> ds_;
  Encoder* enc_;
};

// Curated webdataset shards (KEY.mp4 + KEY.txt / KEY.json, and KEY.latent.safetensors when `wfm curate --latents`
// stored the tokenized clip), streamed, split across ranks by shard and repeated with a per-epoch shuffled shard
// order. A clip is the first num_frames frames at the training size: from the stored latents (first latent
// frames, centre crop; no decoding) when present, else decoded and tokenized on the fly.
class ShardSource : public ClipSource {
 public:
  static absl::StatusOr<std::unique_ptr<ShardSource>> Open(const std::string& path, const DiffusionTrainOptions& a, int rank,
                                                           int world, Encoder* enc, const LatentStats& stats,
                                                           double sigma_data, int64_t spatial, int64_t temporal) {
    auto s = std::unique_ptr<ShardSource>(new ShardSource);
    s->path_ = path;
    s->a_ = a;
    s->enc_ = enc;
    s->stats_ = stats;
    s->sigma_data_ = sigma_data;
    s->latent_frames_ = LatentFramesFor(a.num_frames, temporal);
    s->latent_h_ = a.height / spatial;
    s->latent_w_ = a.width / spatial;
    s->options_.rank = rank;
    s->options_.world_size = world;
    s->options_.shuffle_seed = static_cast<uint64_t>(a.seed) + 1;
    s->options_.epochs = 0;  // forever
    WFM_ASSIGN_OR_RETURN(s->reader_, curation::DatasetReader::Open({path}, s->options_));
    return s;
  }
  absl::StatusOr<ClipItem> Get(uint64_t) override {
    for (int attempts = 0; attempts < 1000; ++attempts) {
      curation::Sample s;
      WFM_ASSIGN_OR_RETURN(bool more, reader_->Next(&s));
      if (!more) return absl::OutOfRangeError(absl::StrCat(path_, ": no samples"));
      ++consumed_;
      if (skip_ > 0) {
        --skip_;
        continue;
      }
      auto item = Make(s);
      if (item.ok()) return item;
      WFM_LOG(WARNING) << "skipping " << s.key << " (" << s.shard << "): " << item.status().message();
    }
    return absl::DataLossError(absl::StrCat(path_, ": too many unusable samples in a row"));
  }
  absl::StatusOr<std::vector<ClipItem>> Validation(int64_t n) override {
    curation::DatasetOptions o;  // the first clips of the first shards, fixed
    WFM_ASSIGN_OR_RETURN(auto r, curation::DatasetReader::Open({path_}, o));
    std::vector<ClipItem> v;
    curation::Sample s;
    while (static_cast<int64_t>(v.size()) < n) {
      WFM_ASSIGN_OR_RETURN(bool more, r->Next(&s));
      if (!more) break;
      auto item = Make(s);
      if (item.ok()) v.push_back(std::move(*item));
    }
    if (v.empty()) return absl::NotFoundError(absl::StrCat(path_, ": no usable validation clip"));
    return v;
  }
  std::string Describe() const override { return absl::StrCat("webdataset shards under ", path_); }
  nlohmann::json SaveState() const override { return {{"consumed", consumed_}}; }
  absl::Status LoadState(const nlohmann::json& j) override {
    skip_ = j.value("consumed", int64_t{0});
    consumed_ = 0;
    return absl::OkStatus();
  }

 private:
  ShardSource() = default;
  absl::StatusOr<at::Tensor> StoredLatent(const curation::Sample& s) {
    WFM_ASSIGN_OR_RETURN(TensorMap t,
                         ReadSafetensorsFromBytes(s.Get("latent.safetensors"),
                                                  absl::StrCat(s.shard, ":", s.key, ".latent.safetensors")));
    auto it = t.find("latent");
    if (it == t.end() || it->second.dim() != 4)
      return absl::InvalidArgumentError("KEY.latent.safetensors has no continuous `latent` [C, t, h, w]");
    at::Tensor lat = it->second.to(at::kFloat);
    const int64_t h = lat.size(2), w = lat.size(3);
    if (lat.size(1) < latent_frames_ || h < latent_h_ || w < latent_w_)
      return absl::InvalidArgumentError(absl::StrCat("stored latent ", c10::str(lat.sizes()), " is smaller than ",
                                                     latent_frames_, "x", latent_h_, "x", latent_w_));
    lat = lat.narrow(1, 0, latent_frames_).narrow(2, (h - latent_h_) / 2, latent_h_).narrow(3, (w - latent_w_) / 2, latent_w_);
    return (stats_.Normalize(lat.unsqueeze(0)) * sigma_data_)[0].contiguous();
  }
  absl::StatusOr<ClipItem> Make(const curation::Sample& s) {
    at::Tensor x0;
    if (s.Has("latent.safetensors")) {
      WFM_ASSIGN_OR_RETURN(x0, StoredLatent(s));
    } else {
      if (!s.Has("mp4")) return absl::InvalidArgumentError("neither latent.safetensors nor mp4 member");
      if (!enc_) return absl::FailedPreconditionError("the clip has no stored latents: pass --tokenizer-weights");
      WFM_ASSIGN_OR_RETURN(at::Tensor frames, s.DecodeVideo(static_cast<int>(a_.width), static_cast<int>(a_.height)));
      if (frames.size(0) < a_.num_frames)
        return absl::InvalidArgumentError(absl::StrCat(frames.size(0), " frames < ", a_.num_frames));
      WFM_ASSIGN_OR_RETURN(x0, enc_->Encode(FramesToModelInput(frames.narrow(0, 0, a_.num_frames))));
    }
    std::string caption = s.Text();
    if (caption.empty() && s.Has("json")) {
      auto j = s.Json();
      if (j.ok() && j->contains("windows") && (*j)["windows"].is_array() && !(*j)["windows"].empty())
        caption = (*j)["windows"][0].value("caption", "");
    }
    return ClipItem{x0, at::Tensor(), caption};
  }
  std::string path_;
  DiffusionTrainOptions a_;
  Encoder* enc_ = nullptr;
  LatentStats stats_;
  double sigma_data_ = 0.5;
  int64_t latent_frames_ = 0, latent_h_ = 0, latent_w_ = 0;
  curation::DatasetOptions options_;
  std::unique_ptr<curation::DatasetReader> reader_;
  int64_t consumed_ = 0, skip_ = 0;
};

// Text for a batch: stored embeddings, else captions through the text encoder, else zeros (unconditional).
class TextProvider {
 public:
  TextProvider(std::unique_ptr<text::TextEncoder> enc, int64_t dim, c10::Device device)
      : enc_(std::move(enc)), dim_(dim), device_(device) {}
  absl::StatusOr<at::Tensor> Embed(const std::vector<ClipItem>& items) {
    std::vector<at::Tensor> embs;
    for (const ClipItem& it : items) {
      if (it.emb.defined()) {
        if (it.emb.size(-1) != dim_)
          return absl::InvalidArgumentError(absl::StrCat("stored text embedding has ", it.emb.size(-1),
                                                         " channels, the DiT expects ", dim_));
        embs.push_back(it.emb.to(device_, at::kFloat));
      } else if (enc_ && !it.caption.empty()) {
        WFM_ASSIGN_OR_RETURN(text::TextEmbeddings e, enc_->Encode({it.caption}));
        embs.push_back(e.embeddings[0].to(device_, at::kFloat));
      } else {
        if (!warned_) WFM_LOG(WARNING) << "clips without text: training them unconditionally (zero embedding)";
        warned_ = true;
        embs.push_back(at::zeros({1, dim_}, at::TensorOptions().device(device_)));
      }
    }
    int64_t n = 0;
    for (const auto& e : embs) n = std::max(n, e.size(0));
    for (auto& e : embs)
      if (e.size(0) < n) e = at::constant_pad_nd(e, {0, 0, 0, n - e.size(0)});
    return at::stack(embs);
  }

 private:
  std::unique_ptr<text::TextEncoder> enc_;
  int64_t dim_;
  c10::Device device_;
  bool warned_ = false;
};

absl::StatusOr<TrainingBatch> MakeBatch(const std::vector<ClipItem>& items, TextProvider& text, double fps,
                                        c10::Device device) {
  std::vector<at::Tensor> xs;
  for (const auto& it : items) {
    if (!xs.empty() && it.x0.sizes() != xs.front().sizes())
      return absl::InvalidArgumentError(absl::StrCat("clips of different latent shapes in one batch: ",
                                                     c10::str(xs.front().sizes()), " and ", c10::str(it.x0.sizes())));
    xs.push_back(it.x0.to(device, at::kFloat));
  }
  TrainingBatch b;
  b.x0 = at::stack(xs);
  WFM_ASSIGN_OR_RETURN(b.crossattn_emb, text.Embed(items));
  b.fps = fps;
  return b;
}


}  // namespace

absl::StatusOr<DiffusionTrainResult> TrainDiffusion(const DiffusionTrainOptions& a) {
  // ---- setup ----
  WFM_ASSIGN_OR_RETURN(DiTConfig cfg, DiTConfig::FromPresetOrFile(a.config));
  WFM_ASSIGN_OR_RETURN(c10::Device device, ParseDevice(a.device));
  WFM_ASSIGN_OR_RETURN(c10::ScalarType precision, train::ParsePrecision(a.precision, device));
  WFM_ASSIGN_OR_RETURN(train::LrSchedule::Kind sched_kind, train::LrSchedule::ParseKind(a.schedule));
  WFM_ASSIGN_OR_RETURN(std::shared_ptr<train::ProcessGroup> group, train::ProcessGroup::Create(a.distributed));
  std::unique_ptr<Parametrization> param = DefaultParametrization(cfg);

  WFM_ASSIGN_OR_RETURN(std::shared_ptr<DiffusionNetwork> net, MakeDiffusionNetwork(cfg));
  at::manual_seed(static_cast<uint64_t>(a.seed));
  net->InitializeWeights();
  if (!a.init_weights.empty()) WFM_RETURN_IF_ERROR(LoadDiTWeights(*net, a.init_weights));
  net->to(device);
  WFM_RETURN_IF_ERROR(train::BroadcastParameters(*group, *net));

  // ---- data ----
  std::unique_ptr<Encoder> encoder;
  LatentStats stats = LatentStats::Identity(cfg.latent_channels());
  if (!a.latent_stats.empty()) {
    WFM_ASSIGN_OR_RETURN(stats, LatentStats::Load(a.latent_stats, cfg.latent_channels()));
  }
  WFM_ASSIGN_OR_RETURN(tokenizer::TokenizerConfig tcfg, tokenizer::TokenizerConfig::FromPresetOrFile(a.tokenizer_config));
  if (!a.videos.empty() || !a.shards.empty()) {
    if (tcfg.name != "CV" || tcfg.latent_channels != cfg.latent_channels())
      return absl::InvalidArgumentError(absl::StrCat("the tokenizer (", tcfg.name, ", ", tcfg.latent_channels,
                                                     " latent channels) does not fit the DiT (",
                                                     cfg.latent_channels(), " channels)"));
    WFM_RETURN_IF_ERROR(CheckPixelFrameCount(a.num_frames, tcfg.temporal_compression, "--num-frames"));
    if (a.height % tcfg.spatial_compression || a.width % tcfg.spatial_compression)
      return absl::InvalidArgumentError(absl::StrCat("--height/--width must be multiples of ", tcfg.spatial_compression));
  }
  if (!a.tokenizer_weights.empty()) {
    tokenizer::TokenizerOptions to;
    to.device = device.str();
    WFM_ASSIGN_OR_RETURN(auto tok, tokenizer::Tokenizer::Create(tcfg, a.tokenizer_weights, to));
    encoder = std::make_unique<Encoder>(std::move(tok), stats, param->sigma_data(), device);
  }
  std::unique_ptr<ClipSource> source;
  if (a.synthetic) {
    SyntheticLatentProcess p;
    p.channels = cfg.latent_channels();
    p.frames = a.synthetic_frames;
    p.height = p.width = a.synthetic_size;
    p.text_dim = cfg.crossattn_emb_channels;
    p.sigma_data = param->sigma_data();
    source = std::make_unique<SyntheticSource>(p, static_cast<uint64_t>(a.seed));
  } else if (!a.data.empty()) {
    WFM_ASSIGN_OR_RETURN(LatentFolder folder, LatentFolder::Open(a.data));
    if (folder.latent_shape()[0] != cfg.latent_channels())
      return absl::InvalidArgumentError(absl::StrCat(a.data, ": clips have ", folder.latent_shape()[0],
                                                     " latent channels, the DiT expects ", cfg.latent_channels()));
    source = std::make_unique<LatentFolderSource>(std::move(folder), stats, param->sigma_data(),
                                                  static_cast<uint64_t>(a.seed));
  } else if (!a.videos.empty()) {
    if (!encoder) return absl::InvalidArgumentError("--videos needs --tokenizer-weights to tokenize on the fly");
    train::VideoClipOptions vo;
    vo.num_frames = a.num_frames;
    vo.width = static_cast<int>(a.width);
    vo.height = static_cast<int>(a.height);
    vo.fps = a.fps;
    vo.seed = static_cast<uint64_t>(a.seed);
    WFM_ASSIGN_OR_RETURN(auto ds, train::VideoClipDataset::Open({a.videos}, vo));
    source = std::make_unique<VideoFolderSource>(std::move(ds), encoder.get());
  } else {
    WFM_ASSIGN_OR_RETURN(source, ShardSource::Open(a.shards, a, group->rank(), group->world_size(), encoder.get(),
                                                   stats, param->sigma_data(), tcfg.spatial_compression,
                                                   tcfg.temporal_compression));
  }
  std::unique_ptr<text::TextEncoder> text_encoder;
  if (!a.text_encoder.empty()) {
    text::LoadTextEncoderOptions lo;
    lo.device = device.str();
    WFM_ASSIGN_OR_RETURN(auto enc, text::LoadTextEncoder(a.text_encoder, lo));
    if (enc->dim() != cfg.crossattn_emb_channels)
      return absl::InvalidArgumentError(absl::StrCat("the text encoder gives ", enc->dim(), "-dim embeddings, the DiT "
                                                     "expects crossattn_emb_channels ", cfg.crossattn_emb_channels));
    text_encoder = std::make_unique<text::CachedTextEncoder>(std::move(enc), a.output + "/text_cache");
  }
  TextProvider text(std::move(text_encoder), cfg.crossattn_emb_channels, device);
  WFM_LOG(INFO) << "data: " << source->Describe();
  WFM_ASSIGN_OR_RETURN(std::vector<ClipItem> val_items, source->Validation(std::max<int64_t>(a.batch_size, 2)));
  WFM_ASSIGN_OR_RETURN(TrainingBatch val, MakeBatch(val_items, text, a.fps, device));

  // ---- optimisation ----
  train::AdamWOptions ao;
  ao.lr = a.lr;
  ao.weight_decay = a.weight_decay;
  train::AdamW opt = train::AdamW::ForModule(*net, ao);
  train::Ema ema(*net, a.ema_decay);
  train::LrSchedule sched;
  sched.kind = sched_kind;
  sched.base_lr = a.lr;
  sched.warmup_steps = a.warmup_steps;
  sched.total_steps = a.steps;
  sched.min_lr = a.min_lr;
  DiffusionTrainingOptions lo;
  lo.sigma.p_mean = a.p_mean;
  lo.sigma.p_std = a.p_std;
  lo.text_dropout = a.text_dropout;
  lo.condition_dropout = a.condition_dropout;
  lo.min_condition_frames = a.min_condition_frames;
  lo.max_condition_frames = a.max_condition_frames;

  const train::TrainerOptions to = train::TrainerOptions::From(
      a, a.output, a.batch_size * a.grad_accum * group->world_size(), "diffusion train");
  train::Trainer trainer(to, group);
  trainer.items().modules["model"] = net.get();
  trainer.items().emas["model_ema"] = &ema;
  trainer.items().optimizers["optimizer"] = &opt;
  trainer.AddState("data", [&] { return source->SaveState(); }, [&](const nlohmann::json& j) { return source->LoadState(j); });
  nlohmann::json run_config = {{"dit", cfg.ToJson()}, {"lr", a.lr}, {"batch_size", a.batch_size},
                               {"grad_accum", a.grad_accum}, {"text_dropout", a.text_dropout},
                               {"condition_dropout", a.condition_dropout}, {"seed", a.seed},
                               {"parametrization", param->name()}, {"data", source->Describe()}};
  trainer.set_config(run_config);
  if (trainer.is_main()) {
    WFM_RETURN_IF_ERROR(MakeDirs(a.output));
    WFM_RETURN_IF_ERROR(WriteFileAtomically(a.output + "/config.json", cfg.ToJson().dump(2) + "\n"));
  }

  trainer.OnEval([&](int64_t) -> absl::StatusOr<train::Metrics> {
    train::Ema::ScopedSwap swap(ema);
    net->eval();
    const double l = EvaluationLoss(*net, *param, val, 1234);
    net->train();
    return train::Metrics{{"eval_loss", l}};
  });
  trainer.OnSample([&](int64_t step) -> absl::Status {
    if (!trainer.is_main()) return absl::OkStatus();
    train::Ema::ScopedSwap swap(ema);
    DiffusionWorldModel wm(net, DefaultParametrization(cfg));
    GenerateOptions go;
    go.num_steps = static_cast<int>(a.sample_steps);
    go.seed = static_cast<uint64_t>(a.seed);
    go.fps = a.fps;
    TextConditioning tc{val.crossattn_emb.narrow(0, 0, 1), {}};
    VideoConditioning vc;
    if (cfg.video_conditioned()) {
      vc.latent = val.x0.narrow(0, 0, 1);
      vc.num_frames = 1;
    }
    const auto shape = val.x0.sizes().slice(1);
    WFM_ASSIGN_OR_RETURN(at::Tensor x, wm.Generate(shape, tc, vc, go));
    net->train();
    const std::string base = absl::StrCat(a.output, "/samples/step_", step);
    const at::Tensor latent = encoder ? encoder->stats().Denormalize(x / param->sigma_data())
                                      : stats.Denormalize(x / param->sigma_data());
    WFM_RETURN_IF_ERROR(WriteSafetensors(base + ".safetensors", {{"latent", latent.cpu()}, {"x0", x.cpu()}}));
    if (encoder) {
      WFM_ASSIGN_OR_RETURN(at::Tensor rec, encoder->tokenizer().Decode(latent));
      EncodeOptions eo;
      eo.fps = a.fps;
      WFM_RETURN_IF_ERROR(WriteVideo(base + ".mp4", ModelOutputToFrames(rec[0]), eo));
    }
    return absl::OkStatus();
  });

  const int rank = group->rank(), world = group->world_size();
  net->train();
  WFM_ASSIGN_OR_RETURN(train::TrainerResult result, trainer.Run([&](int64_t step) -> absl::StatusOr<train::Metrics> {
    opt.ZeroGrad();
    train::Metrics m;
    for (int64_t k = 0; k < a.grad_accum; ++k) {
      const uint64_t micro = static_cast<uint64_t>(step * a.grad_accum + k);
      std::vector<ClipItem> items;
      for (int64_t i = 0; i < a.batch_size; ++i) {
        WFM_ASSIGN_OR_RETURN(ClipItem it, source->Get((micro * world + rank) * a.batch_size + i));
        items.push_back(std::move(it));
      }
      WFM_ASSIGN_OR_RETURN(TrainingBatch batch, MakeBatch(items, text, a.fps, device));
      // The noise follows the sample (its global index), so N ranks with batch B draw what 1 rank with N*B draws.
      for (int64_t i = 0; i < a.batch_size; ++i)
        batch.noise_seeds.push_back(train::MixSeed(static_cast<uint64_t>(a.seed),
                                                   (micro * world + rank) * static_cast<uint64_t>(a.batch_size) + i, 1));
      at::Generator gen = train::MakeCpuGenerator(train::MixSeed(static_cast<uint64_t>(a.seed), micro, rank));
      LossOutput l;
      {
        train::AutocastGuard autocast(device, precision);
        l = DiffusionTrainingLoss(*net, *param, batch, lo, gen);
      }
      (l.loss / static_cast<double>(a.grad_accum)).backward();
      m["loss"] += l.loss.item<double>() / a.grad_accum;
      m["mse"] += l.mse / a.grad_accum;
      m["log_sigma"] += l.mean_log_sigma / a.grad_accum;
      m["condition_frames"] += l.condition_frames / a.grad_accum;
    }
    train::UpdateOptions uo;
    uo.lr = sched.At(step);
    uo.clip_norm = a.clip_norm;
    uo.group = group.get();
    uo.ema = &ema;
    WFM_ASSIGN_OR_RETURN(double gnorm, train::ApplyGradients(opt, uo));
    m["grad_norm"] = gnorm;
    m["lr"] = uo.lr;
    return m;
  }));
  DiffusionTrainResult r;
  r.rank = rank;
  r.start_step = result.start_step;
  r.steps = result.end_step;
  r.seconds = result.seconds;
  r.interrupted = result.interrupted;
  r.time_budget_reached = result.time_budget_reached;
  r.last_train = result.last_train;
  r.last_eval = result.last_eval;
  if (trainer.is_main()) {
    train::Ema::ScopedSwap swap(ema);
    r.weights_path = a.output + "/model_ema.safetensors";
    r.config_path = a.output + "/config.json";
    WFM_RETURN_IF_ERROR(SaveModule(*net, r.weights_path, {{"dit_config", cfg.ToJson().dump()}}));
    WFM_LOG(INFO) << "trained steps " << result.start_step << ".." << result.end_step << " in "
                  << result.seconds << " s; EMA weights: " << r.weights_path << " (config " << r.config_path << ")";
  }
  return r;
}

}  // namespace wfm::diffusion
