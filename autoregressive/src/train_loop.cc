// The AR world-model training driver behind `wfm ar train` (see wfm/autoregressive/train.h): data sources
// (pre-tokenized clip folders, videos tokenized on the fly with a DV tokenizer, the synthetic moving-bar process),
// text conditioning (stored embeddings, or captions through a frozen T5 / a jointly trained built-in encoder),
// the optimisation step around TeacherForcedLoss, evaluation with the EMA weights (teacher-forced ce / accuracy
// and a greedy rollout) and periodic samples. The loop itself, AdamW, schedules, EMA, checkpoints + resume, JSONL
// metrics, the time budget and data parallelism are core/train's.
//
// Every batch is a pure function of (seed, step, micro-batch, rank), so a resumed run sees exactly the data an
// uninterrupted one would have.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/nn/module.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "wfm/autoregressive/data.h"
#include "wfm/autoregressive/generate.h"
#include "wfm/autoregressive/train.h"
#include "wfm/autoregressive/weights.h"
#include "wfm/autoregressive/world.h"
#include "wfm/core/file_util.h"
#include "wfm/core/logging.h"
#include "wfm/core/runtime.h"
#include "wfm/core/safetensors.h"
#include "wfm/core/status.h"
#include "wfm/core/text/builtin_encoder.h"
#include "wfm/core/text/embedding_cache.h"
#include "wfm/core/text/text_encoder.h"
#include "wfm/core/train/distributed.h"
#include "wfm/core/train/ema.h"
#include "wfm/core/train/optimizer.h"
#include "wfm/core/train/rng.h"
#include "wfm/core/train/trainer.h"
#include "wfm/core/train/video_clips.h"
#include "wfm/core/video_io.h"

namespace wfm::ar {
namespace {

namespace fs = std::filesystem;

// ---- data ----

// Latent windows with their text: tokens int64 [B, t, h, w]; context/context_mask when every clip stores
// embeddings; captions otherwise (one per sample, "" when none).
using Batch = TokenBatch;

class TokenSource {
 public:
  virtual ~TokenSource() = default;
  // Micro-batch `index` (= step * grad_accum + micro) of rank `rank` of `world`.
  virtual absl::StatusOr<Batch> Train(int64_t index, int64_t batch_size, int rank, int world) = 0;
  // Fixed held-out windows (the first `n`).
  virtual absl::StatusOr<Batch> Validation(int64_t n) = 0;
  virtual std::string Describe() const = 0;
};

class FolderSource : public TokenSource {
 public:
  static absl::StatusOr<std::unique_ptr<FolderSource>> Open(const std::string& dir, int64_t frames, double val_fraction,
                                                            uint64_t seed) {
    WFM_ASSIGN_OR_RETURN(TokenFolder folder, TokenFolder::Open(dir));
    auto s = std::unique_ptr<FolderSource>(new FolderSource(std::move(folder), dir));
    s->batcher_ = std::make_unique<TokenBatcher>(s->folder_, frames, val_fraction, seed);
    WFM_RETURN_IF_ERROR(s->batcher_->status(), dir);
    return s;
  }
  int64_t height() const { return folder_.height(); }
  int64_t width() const { return folder_.width(); }
  absl::StatusOr<Batch> Train(int64_t index, int64_t batch_size, int rank, int world) override {
    return batcher_->Train(index, batch_size, rank, world);
  }
  absl::StatusOr<Batch> Validation(int64_t n) override {
    if (batcher_->val_clips() == 0) {  // one clip, or val_fraction 0: score fixed training windows instead
      WFM_LOG(WARNING) << dir_ << ": no held-out clips; evaluating on training windows";
      return batcher_->Train(int64_t{1} << 40, n, 0, 1);
    }
    return batcher_->Validation(std::min<int64_t>(n, batcher_->val_clips()));
  }
  std::string Describe() const override {
    return absl::StrCat(dir_, ": ", folder_.size(), " token clips of ", folder_.height(), "x", folder_.width(),
                        " (train ", batcher_->train_clips(), ", held out ", batcher_->val_clips(), ")");
  }

 private:
  FolderSource(TokenFolder f, std::string dir) : folder_(std::move(f)), dir_(std::move(dir)) {}
  TokenFolder folder_;
  std::string dir_;
  std::unique_ptr<TokenBatcher> batcher_;
};

// Captions of videos: the sidecar VIDEO.txt (the `wfm world` / curation convention), read once.
class SidecarCaptions {
 public:
  const std::string& Get(const std::string& video) {
    auto it = cache_.find(video);
    if (it != cache_.end()) return it->second;
    std::string caption;
    const fs::path side = fs::path(video).replace_extension(".txt");
    std::error_code ec;
    if (fs::exists(side, ec)) {
      auto text = ReadFile(side.string());
      if (text.ok()) caption = *text;
      while (!caption.empty() && (caption.back() == '\n' || caption.back() == '\r')) caption.pop_back();
    }
    return cache_[video] = caption;
  }

 private:
  std::map<std::string, std::string> cache_;
};

// Videos cut into random clips (core/train VideoClipDataset: time split, random crops) and tokenized per step.
class VideoSource : public TokenSource {
 public:
  VideoSource(std::unique_ptr<train::VideoClipDataset> data, VideoTokenCodec* codec)
      : data_(std::move(data)), codec_(codec) {}
  absl::StatusOr<Batch> Train(int64_t index, int64_t batch_size, int rank, int world) override {
    std::vector<train::VideoClip> clips;
    for (int64_t i = 0; i < batch_size; ++i) {
      const auto item = static_cast<uint64_t>((index * world + rank) * batch_size + i);
      WFM_ASSIGN_OR_RETURN(train::VideoClip c, data_->TrainClip(item));
      clips.push_back(std::move(c));
    }
    return Tokenize(clips);
  }
  absl::StatusOr<Batch> Validation(int64_t n) override {
    WFM_ASSIGN_OR_RETURN(std::vector<train::VideoClip> clips, data_->ValidationClips(n));
    if (clips.empty()) return absl::InvalidArgumentError("the videos leave no held-out clip (raise --val-fraction)");
    return Tokenize(clips);
  }
  std::string Describe() const override { return data_->Summary() + ", tokenized on the fly"; }

 private:
  absl::StatusOr<Batch> Tokenize(const std::vector<train::VideoClip>& clips) {
    Batch b;
    std::vector<at::Tensor> toks;
    torch::NoGradGuard no_grad;
    for (const auto& c : clips) {
      WFM_ASSIGN_OR_RETURN(at::Tensor idx, codec_->Encode(train::ClipsToBatch({c})), c.path);  // [1, t, h, w]
      toks.push_back(idx[0].to(at::kCPU, at::kLong));
      b.captions.push_back(captions_.Get(c.path));
    }
    b.tokens = at::stack(toks, 0);
    return b;
  }
  std::unique_ptr<train::VideoClipDataset> data_;
  VideoTokenCodec* codec_;
  SidecarCaptions captions_;
};

class SyntheticSource : public TokenSource {
 public:
  SyntheticSource(const ArConfig& c, int64_t frames, uint64_t seed)
      : frames_(frames), h_(c.video_latent_shape[1]), w_(c.video_latent_shape[2]),
        vocab_(std::min<int64_t>(c.vocab_size, 64)), seed_(seed) {}
  // Every sample follows its global index, so N ranks with batch B train on what 1 rank with batch N*B does.
  absl::StatusOr<Batch> Train(int64_t index, int64_t batch_size, int rank, int world) override {
    Batch b;
    std::vector<at::Tensor> tokens;
    for (int64_t i = 0; i < batch_size; ++i) {
      const auto item = static_cast<uint64_t>((index * world + rank) * batch_size + i);
      Batch one = Make(train::MixSeed(seed_, item, 0xba5u), 1);
      tokens.push_back(one.tokens);
      b.captions.push_back(one.captions[0]);
    }
    b.tokens = at::cat(tokens, 0);
    return b;
  }
  absl::StatusOr<Batch> Validation(int64_t n) override { return Make(train::MixSeed(seed_ ^ 0x5eedull, ~0ull), n); }
  std::string Describe() const override {
    return absl::StrCat("synthetic moving bars: ", frames_, "x", h_, "x", w_, " tokens from ", vocab_,
                        " values, moving left or right (said by the caption)");
  }

 private:
  Batch Make(uint64_t seed, int64_t n) const {
    at::Generator gen = train::MakeCpuGenerator(seed);
    std::vector<int> dirs;
    Batch b;
    b.tokens = MovingBarTokens(n, frames_, h_, w_, vocab_, gen, &dirs);
    for (int d : dirs) b.captions.push_back(d > 0 ? "a bar moving right" : "a bar moving left");
    return b;
  }
  int64_t frames_, h_, w_, vocab_;
  uint64_t seed_;
};

// ---- text ----

// Text contexts for batches. Stored embeddings win; then captions through the encoder; then zeros (the dropped
// condition). A frozen encoder sits behind an on-disk embedding cache; a trained built-in one runs with autograd.
class TextProvider {
 public:
  TextProvider(std::unique_ptr<text::TextEncoder> enc, int64_t pad_to, int64_t dim, c10::Device device)
      : enc_(std::move(enc)), pad_to_(pad_to), dim_(dim), device_(device) {}
  text::TextEncoder* encoder() { return enc_.get(); }

  absl::StatusOr<TextContext> For(const Batch& b) {
    const int64_t B = b.tokens.size(0);
    if (b.context.defined()) return TextContext{b.context.to(device_, at::kFloat), b.context_mask.to(device_)};
    bool any = false;
    for (const auto& c : b.captions) any = any || !c.empty();
    if (enc_ && any) {
      WFM_ASSIGN_OR_RETURN(text::TextEmbeddings e, enc_->Encode(b.captions), "encoding captions");
      return EncodedTextContext(e, pad_to_);
    }
    if (!warned_) {
      WFM_LOG(WARNING) << (any ? "captions but no --text-encoder" : "clips without text")
                       << ": training with a zero text context (the unconditional branch)";
      warned_ = true;
    }
    return TextContext{at::zeros({B, 1, dim_}, at::TensorOptions().device(device_)),
                       at::ones({B, 1}, at::TensorOptions().dtype(at::kBool).device(device_))};
  }

 private:
  std::unique_ptr<text::TextEncoder> enc_;
  int64_t pad_to_;  // PadTextRows rule of the encoder
  int64_t dim_;
  c10::Device device_;
  bool warned_ = false;
};

// For evaluation and samples: the EMA weights (of the model and a trained text encoder) in eval mode without
// autograd for the scope; the live weights and train mode come back on exit, also on an early error return.
class EmaEvalScope {
 public:
  EmaEvalScope(train::Ema& ema, train::Ema* text_ema, torch::nn::Module& net, torch::nn::Module* text)
      : swap_(ema), net_(net), text_(text) {
    if (text_ema) swap_text_.emplace(*text_ema);
    net_.eval();
    if (text_) text_->eval();
  }
  ~EmaEvalScope() {
    net_.train();
    if (text_) text_->train();
  }

 private:
  train::Ema::ScopedSwap swap_;
  std::optional<train::Ema::ScopedSwap> swap_text_;
  torch::nn::Module& net_;
  torch::nn::Module* text_;
  torch::NoGradGuard no_grad_;
};

absl::Status Validate(const ArTrainOptions& o) {
  const int sources = (o.tokens_dir.empty() ? 0 : 1) + (o.videos.empty() ? 0 : 1) + (o.synthetic ? 1 : 0);
  if (sources != 1) return absl::InvalidArgumentError("give exactly one data source: tokens, videos or synthetic");
  if (o.output_dir.empty()) return absl::InvalidArgumentError("no output directory");
  if (o.steps < 1 || o.batch_size < 1 || o.grad_accum < 1)
    return absl::InvalidArgumentError("steps, batch size and gradient accumulation must be >= 1");
  if (!(o.lr > 0) || o.min_lr < 0 || o.weight_decay < 0 || o.clip_norm < 0 || o.warmup_steps < 0)
    return absl::InvalidArgumentError("lr must be > 0; min lr, weight decay, clipping and warmup >= 0");
  if (o.ema_decay < 0 || o.ema_decay >= 1) return absl::InvalidArgumentError("EMA decay must be in [0, 1)");
  if (o.loss.text_dropout < 0 || o.loss.text_dropout > 1)
    return absl::InvalidArgumentError("text dropout must be in [0, 1]");
  if (o.val_fraction < 0 || o.val_fraction >= 1) return absl::InvalidArgumentError("val fraction must be in [0, 1)");
  if (!o.videos.empty() && o.tokenizer_config.empty())
    return absl::InvalidArgumentError("training on videos needs a DV tokenizer (--tokenizer-config/-weights)");
  if (!o.tokenizer_config.empty() && o.tokenizer_weights.empty() && !o.random_tokenizer)
    return absl::InvalidArgumentError("give the tokenizer weights (or allow a random tokenizer for smoke tests)");
  return o.config.Validate();
}

}  // namespace

absl::StatusOr<ArTrainResult> TrainArModel(const ArTrainOptions& options) {
  WFM_RETURN_IF_ERROR(Validate(options));
  const ArConfig& config = options.config;
  WFM_ASSIGN_OR_RETURN(c10::Device device, ParseDevice(options.device));
  WFM_ASSIGN_OR_RETURN(c10::ScalarType precision, train::ParsePrecision(options.precision, device));
  WFM_ASSIGN_OR_RETURN(train::LrSchedule::Kind sched_kind, train::LrSchedule::ParseKind(options.schedule));
  WFM_ASSIGN_OR_RETURN(std::shared_ptr<train::ProcessGroup> group, train::ProcessGroup::Create(options.distributed));
  const bool main = group->is_main();
  const std::string out = options.output_dir;
  WFM_RETURN_IF_ERROR(MakeDirs(out));
  const int64_t frames = options.frames > 0 ? options.frames : config.video_latent_shape[0];
  if (frames > config.video_latent_shape[0])
    return absl::InvalidArgumentError(absl::StrCat("training windows of ", frames, " latent frames exceed the model's ",
                                                   config.video_latent_shape[0]));
  if (options.loss.condition_frames >= frames)
    return absl::InvalidArgumentError(absl::StrCat(options.loss.condition_frames, " condition frames leave none of ",
                                                   frames, " to predict"));

  // ---- tokenizer and data ----
  std::unique_ptr<VideoTokenCodec> codec;
  if (!options.tokenizer_config.empty()) {
    WFM_ASSIGN_OR_RETURN(codec, LoadTokenizerCodec(options.tokenizer_config, options.tokenizer_weights, device.str()));
    if (codec->vocab_size() != config.vocab_size)
      return absl::InvalidArgumentError(absl::StrCat("tokenizer/model vocabulary mismatch: the tokenizer has ",
                                                     codec->vocab_size(), " codes, the model vocab_size ",
                                                     config.vocab_size));
  }
  std::unique_ptr<TokenSource> source;
  if (options.synthetic) {
    source = std::make_unique<SyntheticSource>(config, frames, options.seed);
  } else if (!options.tokens_dir.empty()) {
    WFM_ASSIGN_OR_RETURN(auto folder, FolderSource::Open(options.tokens_dir, frames, options.val_fraction, options.seed));
    if (folder->height() != config.video_latent_shape[1] || folder->width() != config.video_latent_shape[2])
      return absl::InvalidArgumentError(absl::StrCat(options.tokens_dir, ": clips of ", folder->height(), "x",
                                                     folder->width(), " tokens per frame, the model's latent grid is ",
                                                     config.video_latent_shape[1], "x", config.video_latent_shape[2]));
    source = std::move(folder);
  } else {
    train::VideoClipOptions vo;
    vo.num_frames = 1 + (frames - 1) * codec->temporal_compression();
    vo.height = static_cast<int>(config.video_latent_shape[1] * codec->spatial_compression());
    vo.width = static_cast<int>(config.video_latent_shape[2] * codec->spatial_compression());
    vo.fps = options.fps;
    vo.val_fraction = options.val_fraction > 0 ? options.val_fraction : 0.1;
    vo.seed = options.seed;
    WFM_ASSIGN_OR_RETURN(auto data, train::VideoClipDataset::Open(options.videos, vo));
    source = std::make_unique<VideoSource>(std::move(data), codec.get());
  }
  if (main) WFM_LOG(INFO) << "data: " << source->Describe();

  // ---- text ----
  std::unique_ptr<text::TextEncoder> encoder;
  bool train_text = false;
  int64_t pad_to = 0;
  if (config.insert_cross_attn && !options.text_encoder.empty()) {
    if (options.text_encoder == "builtin") {
      text::BuiltinTextEncoderOptions bo;
      bo.d_model = config.context_dim;
      bo.d_ff = 2 * config.context_dim;
      bo.num_layers = 2;
      bo.num_heads = std::max<int64_t>(1, config.context_dim / 64);
      bo.d_kv = config.context_dim / bo.num_heads;
      bo.max_length = 384;  // bytes: captions of a few sentences
      bo.seed = options.seed;
      bo.device = device.str();
      bo.pad_to_max_length = false;
      WFM_ASSIGN_OR_RETURN(std::unique_ptr<text::T5TextEncoder> e, text::CreateBuiltinTextEncoder(bo),
                           "creating the built-in text encoder");
      encoder = std::move(e);
      train_text = true;
    } else if (options.train_text_encoder) {
      text::LoadBuiltinOptions lo;
      lo.device = device.str();
      lo.trainable = true;
      lo.pad_to_max_length = false;
      WFM_ASSIGN_OR_RETURN(std::unique_ptr<text::T5TextEncoder> e, text::LoadBuiltinTextEncoder(options.text_encoder, lo),
                           "--text-encoder (training a text encoder needs a built-in encoder .safetensors)");
      encoder = std::move(e);
      train_text = true;
    } else {
      text::LoadTextEncoderOptions lo;
      lo.device = device.str();
      lo.pad_to_max_length = false;
      WFM_ASSIGN_OR_RETURN(std::unique_ptr<text::TextEncoder> e, text::LoadTextEncoder(options.text_encoder, lo),
                           "--text-encoder");
      pad_to = TextPadLength(options.text_encoder, *e);
      auto cached = std::make_unique<text::CachedTextEncoder>(std::move(e), (fs::path(out) / "text_cache").string());
      cached->set_pad_to_max_length(false);
      encoder = std::move(cached);
    }
    if (encoder->dim() != config.context_dim)
      return absl::InvalidArgumentError(absl::StrCat("the text encoder gives ", encoder->dim(),
                                                     "-dim embeddings, the model's context_dim is ", config.context_dim));
  } else if (!config.insert_cross_attn && !options.text_encoder.empty()) {
    WFM_LOG(WARNING) << "the model has no cross-attention; --text-encoder is ignored";
  }
  TextProvider text(std::move(encoder), pad_to, config.context_dim, device);
  std::shared_ptr<torch::nn::Module> text_module = train_text ? text.encoder()->module() : nullptr;
  if (train_text && !text_module) return absl::InvalidArgumentError("the text encoder has no trainable module");

  // ---- model and optimisation ----
  WFM_ASSIGN_OR_RETURN(ArTransformer net, CatchToStatus("building the AR network", [&]() -> absl::StatusOr<ArTransformer> {
    return ArTransformer(config);
  }));
  net->InitWeights(options.seed);
  if (!options.init_weights.empty()) WFM_RETURN_IF_ERROR(LoadWeights(*net, options.init_weights), "--init-weights");
  WFM_RETURN_IF_ERROR(CatchToStatus("moving the AR network", [&]() {
    net->to(device, at::kFloat);  // float32 master weights; bf16 compute through autocast
    net->train();
    if (text_module) text_module->train();
    return absl::OkStatus();
  }));
  WFM_RETURN_IF_ERROR(train::BroadcastParameters(*group, *net));
  if (text_module) WFM_RETURN_IF_ERROR(train::BroadcastParameters(*group, *text_module));
  train::AdamWOptions ao{options.lr, options.beta1, options.beta2, 1e-8, options.weight_decay};
  std::vector<train::ParamGroup> groups = train::AdamW::ForModule(*net, ao).groups();
  if (text_module) {
    const train::AdamW text_opt = train::AdamW::ForModule(*text_module, ao, {}, "text_encoder.");
    for (train::ParamGroup g : text_opt.groups()) {
      g.name = "text_encoder_" + g.name;
      groups.push_back(std::move(g));
    }
  }
  train::AdamW opt(std::move(groups), ao);
  train::Ema ema(*net, options.ema_decay);
  std::unique_ptr<train::Ema> text_ema;
  if (text_module) text_ema = std::make_unique<train::Ema>(*text_module, options.ema_decay);
  const train::LrSchedule sched{sched_kind, options.lr, options.warmup_steps, options.steps, options.min_lr};
  if (main)
    WFM_LOG(INFO) << absl::StrFormat("model: %d layers, dim %d, vocab %d, latent %dx%dx%d, %.2fM parameters%s; %s, %s, "
                                     "%d process(es)",
                                     config.n_layers, config.dim, config.vocab_size, config.video_latent_shape[0],
                                     config.video_latent_shape[1], config.video_latent_shape[2],
                                     config.NumParameters() / 1e6, text_module ? " + a trained text encoder" : "",
                                     device.str(), c10::toString(precision), group->world_size());

  const std::string config_path = (fs::path(out) / "config.json").string();
  nlohmann::json run_config = {{"model", config.ToJson()},
                               {"training_type", config.training_type},
                               {"command_line", options.command_line},
                               {"steps", options.steps},
                               {"batch_size", options.batch_size * options.grad_accum * group->world_size()},
                               {"frames", frames},
                               {"condition_frames", options.loss.condition_frames},
                               {"lr", options.lr},
                               {"text_dropout", options.loss.text_dropout},
                               {"text_encoder", options.text_encoder},
                               {"text_pad_to", pad_to},
                               {"data", source->Describe()}};
  if (main) {
    nlohmann::json params = config.ToJson();
    params["training_type"] = config.training_type;
    WFM_RETURN_IF_ERROR(WriteFileAtomically(config_path, params.dump(2) + "\n"));
    WFM_RETURN_IF_ERROR(WriteFileAtomically((fs::path(out) / "train_config.json").string(), run_config.dump(2) + "\n"));
  }

  // ---- evaluation and samples ----
  WFM_ASSIGN_OR_RETURN(Batch val, source->Validation(std::max<int64_t>(1, options.val_samples)));
  ArLossOptions eval_loss = options.loss;
  eval_loss.text_dropout = 0;
  const int64_t rollouts = std::min<int64_t>(val.tokens.size(0), 4);
  // Greedy continuation of the first val windows from their condition frames: [n, t, h, w] (CPU).
  auto rollout = [&](int64_t n, const TextContext* ctx) -> absl::StatusOr<at::Tensor> {
    GenerationOptions g;
    g.sampling.temperature = 0;
    g.show_progress = false;
    std::vector<at::Tensor> outs;
    for (int64_t i = 0; i < n; ++i) {
      std::optional<TextContext> one;
      if (ctx) one = TextContext{ctx->embeddings.narrow(0, i, 1), ctx->mask.defined() ? ctx->mask.narrow(0, i, 1) : at::Tensor()};
      const at::Tensor prompt = val.tokens[i].narrow(0, 0, options.loss.condition_frames).reshape({1, -1});
      WFM_ASSIGN_OR_RETURN(GenerationResult r, GenerateTokens(*net, prompt, frames, one ? &*one : nullptr, g));
      outs.push_back(r.tokens[0]);
    }
    return at::stack(outs, 0);
  };
  ArTrainResult result;
  result.rank = group->rank();
  // The text of the held-out windows (none for models without cross-attention).
  auto val_context = [&]() -> absl::StatusOr<std::optional<TextContext>> {
    if (!config.insert_cross_attn) return std::optional<TextContext>();
    WFM_ASSIGN_OR_RETURN(TextContext c, text.For(val));
    return std::optional<TextContext>(std::move(c));
  };
  auto evaluate = [&](int64_t) -> absl::StatusOr<train::Metrics> {
    EmaEvalScope scope(ema, text_ema.get(), *net, text_module.get());
    WFM_ASSIGN_OR_RETURN(std::optional<TextContext> ctx, val_context());
    train::Metrics m;
    {
      train::AutocastGuard autocast(device, precision);
      WFM_ASSIGN_OR_RETURN(ArLossOutput l, TeacherForcedLoss(*net, val.tokens, ctx ? &*ctx : nullptr, eval_loss));
      m["val_ce"] = l.ce;
      m["val_accuracy"] = l.accuracy;
    }
    WFM_ASSIGN_OR_RETURN(at::Tensor gen, rollout(rollouts, ctx ? &*ctx : nullptr));
    const int64_t skip = options.loss.condition_frames;
    m["rollout_match"] = (gen.narrow(1, skip, frames - skip) == val.tokens.narrow(0, 0, rollouts).narrow(1, skip, frames - skip))
                             .to(at::kDouble)
                             .mean()
                             .item<double>();
    result.val_ce = m["val_ce"];
    result.val_accuracy = m["val_accuracy"];
    result.val_rollout_match = m["rollout_match"];
    return m;
  };
  const std::string samples_dir = (fs::path(out) / "samples").string();
  auto sample = [&](int64_t step) -> absl::Status {
    at::Tensor gen;
    {
      EmaEvalScope scope(ema, text_ema.get(), *net, text_module.get());
      WFM_ASSIGN_OR_RETURN(std::optional<TextContext> ctx, val_context());
      WFM_ASSIGN_OR_RETURN(gen, rollout(rollouts, ctx ? &*ctx : nullptr));
    }
    const at::Tensor truth = val.tokens.narrow(0, 0, rollouts).contiguous();
    const std::string base = absl::StrFormat("%s/step_%08d", samples_dir, step);
    WFM_RETURN_IF_ERROR(MakeDirs(samples_dir));
    std::map<std::string, std::string> meta{{"condition_frames", std::to_string(options.loss.condition_frames)}};
    for (int64_t i = 0; i < rollouts && i < static_cast<int64_t>(val.captions.size()); ++i)
      meta["caption_" + std::to_string(i)] = val.captions[static_cast<size_t>(i)];
    WFM_RETURN_IF_ERROR(WriteSafetensors(base + ".safetensors", {{"tokens", gen.contiguous()}, {"truth", truth}}, meta));
    if (codec) {  // truth | rollout side by side, all windows one after another
      WFM_ASSIGN_OR_RETURN(at::Tensor a, codec->Decode(truth));  // [n, 3, T, H, W]
      WFM_ASSIGN_OR_RETURN(at::Tensor b, codec->Decode(gen));
      at::Tensor v = at::cat({a, b}, -1).clamp(-1, 1).add(1).mul(127.5).round().to(at::kByte);  // [n, 3, T, H, 2W]
      v = v.permute({0, 2, 3, 4, 1}).reshape({-1, v.size(3), v.size(4), 3}).cpu().contiguous();
      WFM_RETURN_IF_ERROR(WriteVideo(base + ".mp4", v, EncodeOptions{options.fps > 0 ? options.fps : 8.0}));
    }
    return absl::OkStatus();
  };

  // ---- the loop ----
  train::Trainer trainer(train::TrainerOptions::From(options, out,
                                                     options.batch_size * options.grad_accum * group->world_size(),
                                                     "train ar"),
                         group);
  trainer.items().modules["model"] = net.get();
  trainer.items().emas["model_ema"] = &ema;
  trainer.items().optimizers["optimizer"] = &opt;
  if (text_module) {
    trainer.items().modules["text_encoder"] = text_module.get();
    trainer.items().emas["text_encoder_ema"] = text_ema.get();
  }
  trainer.set_config(run_config);
  trainer.OnEval(evaluate);
  trainer.OnSample(sample);
  WFM_ASSIGN_OR_RETURN(result.start_step, trainer.Resume());
  if (result.start_step > 0 && main) WFM_LOG(INFO) << "resuming at step " << result.start_step << " of " << options.steps;

  bool first_logged = false;
  auto step_fn = [&](int64_t step) -> absl::StatusOr<train::Metrics> {
    const double lr = sched.At(step);
    opt.ZeroGrad();
    std::map<std::string, double> sums;
    for (int m = 0; m < options.grad_accum; ++m) {
      const int64_t index = step * options.grad_accum + m;
      WFM_ASSIGN_OR_RETURN(Batch b, source->Train(index, options.batch_size, group->rank(), group->world_size()));
      std::optional<TextContext> ctx;
      if (config.insert_cross_attn) {
        WFM_ASSIGN_OR_RETURN(ctx, text.For(b));
      }
      at::Generator gen = train::MakeCpuGenerator(
          train::MixSeed(options.seed, static_cast<uint64_t>(index), 0x7e47u + static_cast<uint64_t>(group->rank())));
      ArLossOutput l;
      {
        train::AutocastGuard autocast(device, precision);
        WFM_ASSIGN_OR_RETURN(l, TeacherForcedLoss(*net, b.tokens, ctx ? &*ctx : nullptr, options.loss, &gen));
      }
      WFM_RETURN_IF_ERROR(CatchToStatus("AR backward", [&]() {
        (l.loss / static_cast<double>(options.grad_accum)).backward();
        return absl::OkStatus();
      }));
      sums["loss"] += l.ce + l.z;
      sums["ce"] += l.ce;
      sums["z_loss"] += l.z;
      sums["accuracy"] += l.accuracy;
    }
    WFM_ASSIGN_OR_RETURN(double gnorm, train::ApplyGradients(opt, {.lr = lr, .clip_norm = options.clip_norm,
                                                                    .group = group.get(), .ema = &ema}));
    if (text_ema && std::isfinite(gnorm)) text_ema->Update();
    train::Metrics metrics;
    for (const auto& [k, v] : sums) metrics[k] = v / options.grad_accum;
    metrics["grad_norm"] = gnorm;
    metrics["lr"] = lr;
    if (!first_logged) {
      result.first_loss = metrics["loss"];
      first_logged = true;
    }
    return metrics;
  };
  WFM_ASSIGN_OR_RETURN(train::TrainerResult tr, trainer.Run(step_fn));
  result.steps = tr.end_step;
  result.train_seconds = tr.seconds;
  result.interrupted = tr.interrupted;
  result.time_budget_reached = tr.time_budget_reached;
  if (tr.last_train.count("loss")) result.last_loss = tr.last_train.at("loss");
  if (tr.last_eval.count("val_ce")) {
    result.val_ce = tr.last_eval.at("val_ce");
    result.val_accuracy = tr.last_eval.at("val_accuracy");
    result.val_rollout_match = tr.last_eval.at("rollout_match");
  }

  // ---- export ----
  if (main) {
    result.config_path = config_path;
    result.weights_path = (fs::path(out) / "model.safetensors").string();
    result.ema_weights_path = (fs::path(out) / "model_ema.safetensors").string();
    WFM_RETURN_IF_ERROR(SaveWeights(*net, result.weights_path));
    {
      train::Ema::ScopedSwap swap(ema);
      WFM_RETURN_IF_ERROR(SaveWeights(*net, result.ema_weights_path));
    }
    if (text_module) {
      auto* t5 = dynamic_cast<text::T5TextEncoder*>(text.encoder());
      if (t5 != nullptr) {
        result.text_encoder_path = (fs::path(out) / "text_encoder.safetensors").string();
        train::Ema::ScopedSwap swap(*text_ema);
        WFM_RETURN_IF_ERROR(text::SaveBuiltinTextEncoder(*t5, result.text_encoder_path));
      }
    }
    nlohmann::json summary = {{"steps", result.steps},
                              {"start_step", result.start_step},
                              {"train_seconds_this_run", result.train_seconds},
                              {"interrupted", result.interrupted},
                              {"time_budget_reached", result.time_budget_reached},
                              {"first_loss", result.first_loss},
                              {"last_loss", result.last_loss},
                              {"val_ce", result.val_ce},
                              {"val_accuracy", result.val_accuracy},
                              {"rollout_match", result.val_rollout_match},
                              {"config", result.config_path},
                              {"weights", result.ema_weights_path},
                              {"text_encoder", result.text_encoder_path}};
    WFM_RETURN_IF_ERROR(WriteFileAtomically((fs::path(out) / "summary.json").string(), summary.dump(2) + "\n"));
  }
  return result;
}

}  // namespace wfm::ar
