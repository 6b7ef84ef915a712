// Demo stage "ar": the autoregressive world model on the DV tokenizer's discrete tokens. Every curated training
// clip is cut into prediction windows (17 frames at starts 0 and 16), each encoded on its own as the model
// will see a prompt (5 latent frames of 8x8 tokens). A small Cosmos-Predict1 Video2World transformer
// (wfm/autoregressive: cross-attention to the text, <bov>, QK-norm) and a built-in text encoder are trained
// jointly with the reference's teacher-forced loss (ar::TeacherForcedLoss: the first two latent frames condition,
// the rest are predicted; text dropout for the unconditional branch). Video2World = ar::GenerateWorld (encode
// the given frames, sample the remaining tokens, decode). Saves OUTPUT/ar/{model.safetensors, config.json,
// text_encoder.safetensors}.
#include <ATen/ATen.h>

#include <chrono>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "demo_common.h"
#include "wfm/autoregressive/config.h"
#include "wfm/autoregressive/train.h"
#include "wfm/autoregressive/transformer.h"
#include "wfm/autoregressive/weights.h"
#include "wfm/autoregressive/world.h"
#include "wfm/core/file_util.h"
#include "wfm/core/runtime.h"
#include "wfm/core/status.h"
#include "wfm/core/text/builtin_encoder.h"

namespace wfm::demo {
namespace {

std::string ArDir(const DemoContext& ctx) { return OutPath(ctx, "ar"); }

absl::StatusOr<std::unique_ptr<ar::VideoTokenCodec>> OpenCodec(const DemoContext& ctx, const DemoPlan& plan) {
  return ar::LoadTokenizerCodec(OutPath(ctx, "tokenizer/dv.json"), OutPath(ctx, "tokenizer/dv.safetensors"),
                                plan.device);
}

absl::StatusOr<ar::ArConfig> DemoArConfig(const DemoPlan& plan, int64_t vocab, int64_t latent_frames,
                                          int64_t latent_size) {
  WFM_ASSIGN_OR_RETURN(ar::ArConfig c, ar::ArConfig::Preset("tiny-v2w"));
  c.dim = plan.ar_dim;
  c.n_layers = plan.ar_layers;
  c.n_heads = plan.ar_heads;
  c.n_kv_heads = plan.ar_heads;
  c.head_dim = std::nullopt;
  c.ffn_hidden_size = 3 * plan.ar_dim;
  c.vocab_size = vocab;
  c.video_latent_shape = {latent_frames, latent_size, latent_size};
  c.max_seq_len = c.VideoTokens() + 1;
  c.original_seq_len = c.max_seq_len;
  c.max_batch_size = std::max<int64_t>(plan.ar_batch, plan.seeds);
  c.context_dim = plan.text_dim;
  WFM_RETURN_IF_ERROR(c.Validate());
  return c;
}

absl::Status RunArStage(DemoContext& ctx) {
  WFM_ASSIGN_OR_RETURN(const DemoPlan plan, DemoPlan::For(ctx));
  WFM_ASSIGN_OR_RETURN(c10::Device device, ParseDevice(plan.device));
  WFM_ASSIGN_OR_RETURN(ClipSet train, LoadClipSet(OutPath(ctx, "data/train_clips.safetensors")));
  WFM_ASSIGN_OR_RETURN(std::unique_ptr<ar::VideoTokenCodec> codec, OpenCodec(ctx, plan));

  // Tokenize the training windows.
  WFM_ASSIGN_OR_RETURN(EncodedWindows windows,
                       EncodeClipWindows(train, plan, "ar tokenize",
                                         [&](const at::Tensor& w) { return codec->Encode(w); }));
  const at::Tensor& all = windows.codes;  // int64 [W, t, h, w]
  WFM_ASSIGN_OR_RETURN(ar::ArConfig config, DemoArConfig(plan, codec->vocab_size(), all.size(1), all.size(2)));
  const int64_t condition_frames = 1 + (plan.context_frames - 1) / codec->temporal_compression();

  at::manual_seed(30);
  ar::ArTransformer net(config);
  net->InitWeights(30);
  net->to(device);
  WFM_ASSIGN_OR_RETURN(std::unique_ptr<text::T5TextEncoder> text_encoder,
                       text::CreateBuiltinTextEncoder(DemoTextEncoderOptions(plan, 31)));
  int64_t net_params = 0;
  for (const at::Tensor& p : net->parameters()) net_params += p.numel();

  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(32);
  ar::ArLossOptions lo;
  lo.condition_frames = condition_frames;
  lo.text_dropout = 0.1;
  const auto t0 = std::chrono::steady_clock::now();
  const DemoTrainOptions to{"ar train", OutPath(ctx, "ar/train"), plan.ar_steps, plan.ar_lr};
  WFM_ASSIGN_OR_RETURN(
      train::Metrics m,
      TrainDemoModel(to, {{"model", net.get()}, {"text_encoder", text_encoder->module().get()}},
                     [&](int64_t, train::Metrics* metrics) -> absl::StatusOr<at::Tensor> {
                       WFM_ASSIGN_OR_RETURN(WindowBatch b,
                                            SampleWindowBatch(train, windows, plan.ar_batch, *text_encoder, gen));
                       const ar::TextContext text = ar::EncodedTextContext(b.text, /*pad_to=*/0);
                       WFM_ASSIGN_OR_RETURN(ar::ArLossOutput out,
                                            ar::TeacherForcedLoss(*net, all.index_select(0, b.pick).to(device), &text,
                                                                  lo, &gen));
                       (*metrics)["accuracy"] = out.accuracy;
                       return out.loss;
                     }));
  const double loss = m["loss"], accuracy = m["accuracy"];
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const std::string dir = ctx.StageDir("ar");
  net->to(at::kCPU);
  WFM_RETURN_IF_ERROR(ar::SaveWeights(*net, dir + "/model.safetensors"));
  WFM_RETURN_IF_ERROR(WriteFileAtomically(dir + "/config.json", config.ToJson().dump(2) + "\n"));
  WFM_RETURN_IF_ERROR(text::SaveBuiltinTextEncoder(*text_encoder, dir + "/text_encoder.safetensors"));
  ctx.Table("AR world model (teacher-forced, training windows)",
            {"parameters", "windows", "tokens/window", "steps", "loss", "token acc", "train s"},
            {{absl::StrFormat("%.2fM", net_params / 1e6), absl::StrCat(all.size(0)),
              absl::StrCat(config.VideoTokens()), absl::StrCat(plan.ar_steps), Fmt(loss, 3), Fmt(accuracy, 3),
              Fmt(seconds, 1)}});
  ctx.summary["ar"] = {{"parameters", net_params}, {"windows", all.size(0)}, {"steps", plan.ar_steps},
                       {"train_loss", loss}, {"train_token_accuracy", accuracy}, {"train_seconds", seconds}};
  return absl::OkStatus();
}

// Video2World with the trained model: GenerateWorld from the given frames and the caption.
class ArPredictor : public FuturePredictor {
 public:
  absl::StatusOr<at::Tensor> Predict(const at::Tensor& context, const std::string& caption, int64_t horizon,
                                     const std::vector<uint64_t>& seeds) override {
    at::NoGradGuard ng;
    WFM_ASSIGN_OR_RETURN(text::TextEmbeddings emb, text_encoder->Encode({caption}));
    const ar::TextContext text = ar::EncodedTextContext(emb, /*pad_to=*/0);
    ar::WorldOptions o;
    o.num_input_frames = context.size(0);
    o.num_frames = context.size(0) + horizon;
    o.generation.num_samples = static_cast<int64_t>(seeds.size());
    o.generation.seed = seeds.empty() ? 0 : seeds[0];
    o.generation.sampling.temperature = plan.temperature;
    o.generation.sampling.top_p = plan.top_p;
    o.generation.show_progress = false;
    WFM_ASSIGN_OR_RETURN(ar::WorldResult r, ar::GenerateWorld(*net, *codec, context, &text, o));
    return r.videos.narrow(1, context.size(0), horizon).contiguous();  // [S, horizon, H, W, 3]
  }

  DemoPlan plan;
  ar::ArTransformer net{nullptr};
  std::unique_ptr<ar::VideoTokenCodec> codec;
  std::unique_ptr<text::TextEncoder> text_encoder;
};

absl::StatusOr<std::unique_ptr<FuturePredictor>> LoadArPredictor(const DemoContext& ctx, const DemoPlan& plan) {
  const std::string dir = ArDir(ctx);
  if (!std::filesystem::exists(dir + "/model.safetensors")) {
    return absl::NotFoundError(dir + "/model.safetensors: not trained");
  }
  auto p = std::make_unique<ArPredictor>();
  p->plan = plan;
  WFM_ASSIGN_OR_RETURN(ar::ArConfig config, ar::ArConfig::FromJsonFile(dir + "/config.json"));
  p->net = ar::ArTransformer(config);
  WFM_RETURN_IF_ERROR(ar::LoadWeights(*p->net, dir + "/model.safetensors"));
  WFM_ASSIGN_OR_RETURN(c10::Device device, ParseDevice(plan.device));
  p->net->to(device);
  p->net->eval();
  WFM_ASSIGN_OR_RETURN(p->codec, OpenCodec(ctx, plan));
  WFM_ASSIGN_OR_RETURN(p->text_encoder, LoadDemoTextEncoder(dir + "/text_encoder.safetensors", plan));
  return p;
}

const DemoModelRegistrar kArModel({"ar", "AR (DV tokens)", LoadArPredictor});

}  // namespace

WFM_REGISTER_DEMO_STAGE(60, "ar", "train the AR world model on DV tokens (+ the built-in text encoder)", RunArStage);

}  // namespace wfm::demo
