// core/train: AdamW parity with LibTorch's, schedules, clipping, accumulation, EMA, checkpoints, the JSONL log,
// the Trainer (bit-exact resume, clean interruption), autocast, and MPI data parallelism (2 ranks == 1 rank with
// the doubled batch; run by the ctest `DistributedMpiTest.TwoRanks` under mpirun, skipped otherwise).
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/optim/adamw.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>

#include "test_support.h"
#include "wfm/core/checkpoint.h"
#include "wfm/core/file_util.h"
#include "wfm/core/safetensors.h"
#include "wfm/core/status.h"
#include "wfm/core/train/checkpoint.h"
#include "wfm/core/train/distributed.h"
#include "wfm/core/train/ema.h"
#include "wfm/core/train/jsonl_log.h"
#include "wfm/core/train/optimizer.h"
#include "wfm/core/train/rng.h"
#include "wfm/core/train/trainer.h"
#include "wfm/core/train/visualize.h"
#include "wfm/core/video_io.h"

namespace wfm::train {
namespace {
namespace fs = std::filesystem;

// A small network with every kind of tensor the no-decay rule and the checkpoint must handle: conv/linear
// weights, biases, a norm, a buffer, and dropout (so the RNG state matters for resume).
struct TinyNetImpl : torch::nn::Module {
  TinyNetImpl() {
    conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 8, 3).padding(1)));
    norm = register_module("norm", torch::nn::GroupNorm(torch::nn::GroupNormOptions(1, 8)));
    head = register_module("head", torch::nn::Linear(8, 4));
    steps = register_buffer("steps_seen", at::zeros({1}, at::kLong));
  }
  at::Tensor forward(const at::Tensor& x, bool dropout) {
    at::Tensor h = at::silu(norm->forward(conv->forward(x)));  // [B, 8, H, W]
    h = h.mean({2, 3});                                          // [B, 8]
    if (dropout) h = at::dropout(h, 0.2, /*train=*/true);
    if (is_training()) steps.add_(1);
    return head->forward(h);  // [B, 4]
  }
  torch::nn::Conv2d conv{nullptr};
  torch::nn::GroupNorm norm{nullptr};
  torch::nn::Linear head{nullptr};
  at::Tensor steps;
};
TORCH_MODULE(TinyNet);

// Deterministic synthetic regression data: batch for step s depends only on (seed, s).
std::pair<at::Tensor, at::Tensor> Batch(int64_t step, int64_t batch) {
  at::Generator gen = MakeCpuGenerator(MixSeed(1234, static_cast<uint64_t>(step)));
  at::Tensor x = at::randn({batch, 3, 6, 6}, gen);
  at::Tensor y = at::stack({x.mean({1, 2, 3}), x.abs().mean({1, 2, 3}), x.amax({1, 2, 3}), x.amin({1, 2, 3})}, 1);
  return {x, y};
}

TEST(AdamWTest, MatchesLibTorchAdamWBitForBit) {
  at::manual_seed(0);
  TinyNet a, b;
  wfm::LoadStateDict(*b, wfm::StateDict(*a)).IgnoreError();
  // Same decay for every parameter, as torch::optim::AdamW applies one weight decay to its group.
  ParamGroup all{"all", {}, 0.05, 1.0};
  for (const auto& p : a->named_parameters()) all.params.push_back({p.key(), p.value()});
  AdamW mine({all}, {.lr = 3e-3, .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .weight_decay = 0.05});
  torch::optim::AdamW ref(b->parameters(),
                          torch::optim::AdamWOptions(3e-3).betas({0.9, 0.99}).eps(1e-8).weight_decay(0.05));
  for (int step = 0; step < 6; ++step) {
    auto [x, y] = Batch(step, 4);
    mine.ZeroGrad();
    ref.zero_grad();
    at::mse_loss(a->forward(x, false), y).backward();
    at::mse_loss(b->forward(x, false), y).backward();
    mine.Step();
    ref.step();
  }
  for (const auto& [name, t] : wfm::StateDict(*a))
    EXPECT_TRUE(at::equal(t, wfm::StateDict(*b).at(name))) << name << " max diff " << testing::MaxAbsDiff(t, wfm::StateDict(*b).at(name))
                                                            << "\nHINT: AdamW arithmetic must follow torch/csrc/api/src/optim/adamw.cpp op for op";
}

TEST(AdamWTest, ParamGroupsExcludeNormsBiasesAndEmbeddingsFromDecay) {
  TinyNet net;
  AdamW opt = AdamW::ForModule(*net, {.weight_decay = 0.1});
  ASSERT_EQ(opt.groups().size(), 2u);
  std::set<std::string> decay, plain;
  for (const auto& p : opt.groups()[0].params) decay.insert(p.name);
  for (const auto& p : opt.groups()[1].params) plain.insert(p.name);
  EXPECT_EQ(decay, (std::set<std::string>{"conv.weight", "head.weight"}));
  EXPECT_EQ(plain, (std::set<std::string>{"conv.bias", "norm.weight", "norm.bias", "head.bias"}));
  EXPECT_EQ(opt.groups()[0].weight_decay, 0.1);
  EXPECT_EQ(opt.groups()[1].weight_decay, 0.0);
  EXPECT_TRUE(DefaultNoWeightDecay("tok_embeddings.weight", at::zeros({10, 4})));
  EXPECT_TRUE(DefaultNoWeightDecay("layers.0.attention_norm.weight", at::zeros({4, 4})));
  EXPECT_FALSE(DefaultNoWeightDecay("layers.0.attention.wq.weight", at::zeros({4, 4})));
}

TEST(AdamWTest, StateDictRoundTripAndErrors) {
  at::manual_seed(1);
  TinyNet net;
  AdamW opt = AdamW::ForModule(*net, {.lr = 1e-2});
  auto [x, y] = Batch(0, 4);
  at::mse_loss(net->forward(x, false), y).backward();
  opt.Step();
  TensorMap state = opt.StateDict();
  EXPECT_EQ(state.size(), 6u * 3);
  EXPECT_EQ(state.at("conv.weight.step").item<int64_t>(), 1);
  TinyNet other;
  AdamW opt2 = AdamW::ForModule(*other, {.lr = 1e-2});
  WFM_ASSERT_OK(opt2.LoadStateDict(state));
  for (const auto& [k, v] : opt2.StateDict()) EXPECT_TRUE(at::equal(v, state.at(k))) << k;
  TensorMap bad = state;
  bad.erase("head.bias.exp_avg");
  bad["nope.exp_avg"] = at::zeros({1});
  bad["conv.weight.exp_avg_sq"] = at::zeros({2});
  absl::Status s = opt2.LoadStateDict(bad);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  for (const char* needle : {"nope.exp_avg", "conv.weight.exp_avg_sq", "head.bias"})
    EXPECT_NE(s.message().find(needle), std::string::npos) << needle << " not in: " << s;
}

TEST(LrScheduleTest, WarmupCosineLinearConstant) {
  LrSchedule s{.kind = LrSchedule::kCosine, .base_lr = 1.0, .warmup_steps = 10, .total_steps = 110, .min_lr = 0.1};
  EXPECT_DOUBLE_EQ(s.At(0), 0.1);
  EXPECT_DOUBLE_EQ(s.At(4), 0.5);
  EXPECT_DOUBLE_EQ(s.At(9), 1.0);
  EXPECT_DOUBLE_EQ(s.At(10), 1.0);
  EXPECT_NEAR(s.At(60), 0.55, 1e-12);  // half way: (base + min) / 2
  EXPECT_NEAR(s.At(110), 0.1, 1e-12);
  EXPECT_NEAR(s.At(500), 0.1, 1e-12);
  for (int64_t i = 10; i < 110; ++i) EXPECT_GE(s.At(i), s.At(i + 1)) << i;
  s.kind = LrSchedule::kLinear;
  EXPECT_NEAR(s.At(35), 1.0 - 0.9 * 0.25, 1e-12);
  s.kind = LrSchedule::kConstant;
  EXPECT_DOUBLE_EQ(s.At(100), 1.0);
  EXPECT_FALSE(LrSchedule::ParseKind("cosinus").ok());
  EXPECT_EQ(*LrSchedule::ParseKind("linear"), LrSchedule::kLinear);
}

TEST(ClipGradNormTest, ReturnsTheNormAndClipsToMax) {
  at::Tensor a = at::zeros({3}, at::requires_grad()), b = at::zeros({2, 2}, at::requires_grad());
  a.mutable_grad() = at::tensor({3.0f, 0.0f, 0.0f});
  b.mutable_grad() = at::full({2, 2}, 2.0f);  // norm 4
  EXPECT_NEAR(ClipGradNorm({a, b}, 0.0), 5.0, 1e-6);  // measure only
  EXPECT_NEAR(ClipGradNorm({a, b}, 1.0), 5.0, 1e-6);
  EXPECT_NEAR(at::cat({a.grad().flatten(), b.grad().flatten()}).norm().item<double>(), 1.0, 1e-5);
  EXPECT_NEAR(ClipGradNorm({a, b}, 10.0), 1.0, 1e-5);  // under the limit: untouched
  EXPECT_NEAR(a.grad()[0].item<double>(), 0.6, 1e-5);
  b.mutable_grad()[0][0] = NAN;
  EXPECT_TRUE(std::isnan(ClipGradNorm({a, b}, 1.0)));
}

TEST(GradAccumulationTest, TwoHalfBatchesEqualTheFullBatch) {
  at::manual_seed(2);
  TinyNet a, b;
  WFM_ASSERT_OK(wfm::LoadStateDict(*b, wfm::StateDict(*a)));
  auto [x, y] = Batch(0, 8);
  at::mse_loss(a->forward(x, false), y).backward();
  GradAccumulation acc(2);
  bool step = false;
  for (int m = 0; m < 2; ++m) {
    (at::mse_loss(b->forward(x.narrow(0, 4 * m, 4), false), y.narrow(0, 4 * m, 4)) * acc.loss_scale()).backward();
    step = acc.Advance();
    EXPECT_EQ(step, m == 1);
  }
  for (const auto& p : a->named_parameters())
    EXPECT_LT(testing::MaxRelDiff(b->named_parameters()[p.key()].grad(), p.value().grad()), 1e-5) << p.key();
}

TEST(EmaTest, FollowsTheFormulaAndSwapsExactly) {
  at::manual_seed(3);
  TinyNet net;
  Ema ema(*net, 0.9, /*warmup=*/false);
  const at::Tensor w0 = net->head->weight.detach().clone();
  at::Tensor expected = w0.clone();
  for (int i = 0; i < 3; ++i) {
    {
      at::NoGradGuard g;
      net->head->weight.add_(1.0);
    }
    ema.Update();
    expected = 0.9 * expected + 0.1 * net->head->weight.detach();
  }
  EXPECT_LT(testing::MaxAbsDiff(ema.StateDict().at("head.weight"), expected), 1e-6);
  const at::Tensor live = net->head->weight.detach().clone();
  {
    Ema::ScopedSwap swap(ema);
    EXPECT_LT(testing::MaxAbsDiff(net->head->weight, expected), 1e-6);
  }
  EXPECT_TRUE(at::equal(net->head->weight, live)) << "swap back must restore the live weights exactly";
  Ema warm(*net, 0.999, /*warmup=*/true);
  EXPECT_NEAR(warm.CurrentDecay(), 0.1, 1e-12);  // (1 + 0) / (10 + 0)
  TensorMap bad = ema.StateDict();
  bad.erase("conv.weight");
  EXPECT_FALSE(ema.LoadStateDict(bad, 0).ok());
}

TEST(TrainCheckpointTest, SaveLoadPruneAndStrictErrors) {
  const std::string dir = testing::TempDir() + "/ckpt";
  at::manual_seed(4);
  TinyNet net;
  AdamW opt = AdamW::ForModule(*net, {.lr = 1e-2});
  Ema ema(*net, 0.99);
  auto [x, y] = Batch(0, 4);
  at::mse_loss(net->forward(x, true), y).backward();
  opt.Step();
  ema.Update();
  CheckpointItems items;
  items.modules["model"] = net.get();
  items.emas["model_ema"] = &ema;
  items.optimizers["optimizer"] = &opt;
  CheckpointManager mgr(dir, /*keep_last=*/2);
  for (int64_t step : {10, 20, 30}) WFM_ASSERT_OK(mgr.Save(step, items, {{"lr", 0.01}}, {{"note", step}}));
  WFM_ASSERT_OK_AND_ASSIGN(auto latest, mgr.Latest());
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(fs::path(*latest).filename(), "step_00000030");
  EXPECT_FALSE(fs::exists(dir + "/step_00000010")) << "keep_last=2 prunes the oldest";
  EXPECT_TRUE(fs::exists(dir + "/step_00000020/model_ema.safetensors"));
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << "left-over temp dir " << e.path();
  // The EMA file is a plain state dict under the module's names.
  WFM_ASSERT_OK_AND_ASSIGN(TensorMap ema_file, ReadSafetensors(*latest + "/model_ema.safetensors"));
  EXPECT_EQ(ema_file.size(), wfm::StateDict(*net).size());

  TinyNet other;
  AdamW opt2 = AdamW::ForModule(*other, {.lr = 1e-2});
  Ema ema2(*other, 0.99);
  CheckpointItems items2;
  items2.modules["model"] = other.get();
  items2.emas["model_ema"] = &ema2;
  items2.optimizers["optimizer"] = &opt2;
  WFM_ASSERT_OK_AND_ASSIGN(CheckpointInfo info, LoadTrainingCheckpoint(*latest, items2));
  EXPECT_EQ(info.step, 30);
  EXPECT_EQ(info.config["lr"], 0.01);
  EXPECT_EQ(info.extra["note"], 30);
  EXPECT_EQ(ema2.num_updates(), 1);
  for (const auto& [k, v] : wfm::StateDict(*net)) EXPECT_TRUE(at::equal(v, wfm::StateDict(*other).at(k))) << k;

  // A module with a different architecture: one error naming every problem.
  struct OtherNet : torch::nn::Module {
    OtherNet() { register_module("head", torch::nn::Linear(8, 5)); register_parameter("extra", at::zeros({2})); }
  } wrong;
  CheckpointItems items3;
  items3.modules["model"] = &wrong;
  items3.torch_rng = false;
  auto bad = LoadTrainingCheckpoint(*latest, items3);
  ASSERT_FALSE(bad.ok());
  for (const char* needle : {"head.weight", "extra", "conv.weight", "model.safetensors"})
    EXPECT_NE(bad.status().message().find(needle), std::string::npos) << needle << " not in: " << bad.status();
  // Not a checkpoint.
  EXPECT_FALSE(LoadTrainingCheckpoint(testing::TempDir(), items2).ok());
}

TEST(JsonlLogTest, AppendsRewindsAndSurvivesATornLine) {
  const std::string path = testing::TempDir() + "/logs/metrics.jsonl";
  {
    WFM_ASSERT_OK_AND_ASSIGN(auto log, JsonlLog::Open(path));
    for (int s = 1; s <= 5; ++s) WFM_ASSERT_OK(log->Write({{"step", s}, {"loss", 1.0 / s}}));
    WFM_ASSERT_OK(log->Write({{"step", 6}, {"loss", NAN}}));
    EXPECT_FALSE(log->Write(nlohmann::json::array()).ok());
  }
  WFM_ASSERT_OK_AND_ASSIGN(std::string text, ReadFile(path));
  WFM_ASSERT_OK(WriteFileAtomically(path, text + "{\"step\": 7, \"lo"));  // a crash mid-append
  WFM_ASSERT_OK_AND_ASSIGN(auto records, JsonlLog::ReadAll(path));
  ASSERT_EQ(records.size(), 6u);
  EXPECT_TRUE(records[5]["loss"].is_null()) << "NaN must be written as null";
  {
    WFM_ASSERT_OK_AND_ASSIGN(auto log, JsonlLog::Open(path, /*keep_up_to_step=*/3));
    WFM_ASSERT_OK(log->Write({{"step", 4}, {"loss", 0.5}}));
  }
  WFM_ASSERT_OK_AND_ASSIGN(records, JsonlLog::ReadAll(path));
  ASSERT_EQ(records.size(), 4u);
  EXPECT_EQ(records.back()["step"], 4);
  EXPECT_EQ(records.back()["loss"], 0.5);
  WFM_ASSERT_OK(WriteFileAtomically(path, "{\"step\": 1}\nnot json\n{\"step\": 2}\n"));
  EXPECT_EQ(JsonlLog::ReadAll(path).status().code(), absl::StatusCode::kDataLoss);
}

// One training run of the tiny net through the Trainer; returns the final state (weights, EMA, optimizer).
struct RunOutput {
  TensorMap model, ema, optimizer;
  std::vector<nlohmann::json> log;
  TrainerResult result;
};

RunOutput TrainTiny(const std::string& out_dir, int64_t total_steps, int64_t init_seed, int64_t interrupt_at = -1) {
  at::manual_seed(init_seed);  // a resumed run starts from different random weights: the checkpoint must win
  TinyNet net;
  AdamW opt = AdamW::ForModule(*net, {.lr = 1e-2, .weight_decay = 0.1});
  Ema ema(*net, 0.95);
  LrSchedule sched{.kind = LrSchedule::kCosine, .base_lr = 1e-2, .warmup_steps = 3, .total_steps = 12};
  Trainer trainer({.output_dir = out_dir, .total_steps = total_steps, .log_every = 2, .eval_every = 4,
                   .checkpoint_every = 5, .quiet = true});
  trainer.items().modules["model"] = net.get();
  trainer.items().emas["model_ema"] = &ema;
  trainer.items().optimizers["optimizer"] = &opt;
  int64_t data_cursor = 0;  // stands in for a data loader position
  trainer.AddState("data", [&] { return nlohmann::json{{"cursor", data_cursor}}; },
                   [&](const nlohmann::json& j) {
                     data_cursor = j.at("cursor").get<int64_t>();
                     return absl::OkStatus();
                   });
  trainer.set_config({{"lr", 1e-2}});
  trainer.OnEval([&](int64_t) -> absl::StatusOr<Metrics> {
    Ema::ScopedSwap swap(ema);
    auto [x, y] = Batch(999, 8);
    at::NoGradGuard g;
    return Metrics{{"val_loss", at::mse_loss(net->forward(x, false), y).item<double>()}};
  });
  auto result = trainer.Run([&](int64_t step) -> absl::StatusOr<Metrics> {
    if (step == interrupt_at) std::raise(SIGINT);
    auto [x, y] = Batch(data_cursor++, 4);
    opt.ZeroGrad();
    at::Tensor loss = at::mse_loss(net->forward(x, /*dropout=*/true), y);
    loss.backward();
    WFM_ASSIGN_OR_RETURN(double gnorm, ApplyGradients(opt, {.lr = sched.At(step), .clip_norm = 0.5, .ema = &ema}));
    return Metrics{{"loss", loss.item<double>()}, {"grad_norm", gnorm}};
  });
  EXPECT_TRUE(result.ok()) << result.status();
  RunOutput out;
  if (result.ok()) out.result = *result;
  out.model = wfm::StateDict(*net);
  out.ema = ema.StateDict();
  out.optimizer = opt.StateDict();
  auto log = JsonlLog::ReadAll(trainer.metrics_path());
  if (log.ok()) out.log = *log;
  return out;
}

void ExpectSameState(const RunOutput& a, const RunOutput& b) {
  auto same = [](const TensorMap& x, const TensorMap& y, const char* what) {
    ASSERT_EQ(x.size(), y.size()) << what;
    for (const auto& [k, v] : x)
      EXPECT_TRUE(at::equal(v, y.at(k))) << what << " " << k << " differs by " << testing::MaxAbsDiff(v, y.at(k))
                                         << "\nHINT: resume must restore weights, EMA, optimizer moments and steps, "
                                            "RNG and the data position";
  };
  same(a.model, b.model, "model");
  same(a.ema, b.ema, "ema");
  same(a.optimizer, b.optimizer, "optimizer");
}

TEST(TrainerTest, ResumeIsBitExact) {
  const std::string dir = testing::TempDir();
  RunOutput straight = TrainTiny(dir + "/straight", 12, /*init_seed=*/5);
  EXPECT_EQ(straight.result.end_step, 12);
  RunOutput first = TrainTiny(dir + "/resumed", 6, /*init_seed=*/5);
  EXPECT_EQ(first.result.end_step, 6);
  RunOutput second = TrainTiny(dir + "/resumed", 12, /*init_seed=*/77);
  EXPECT_EQ(second.result.start_step, 6);
  ExpectSameState(straight, second);
  // The resumed log reads like the uninterrupted one (same steps and values; only times differ), except for the
  // final evaluation the first, shorter run did at its end (step 6).
  auto strip = [](std::vector<nlohmann::json> log) {
    std::vector<nlohmann::json> out;
    for (auto& r : log) {
      if (r["split"] == "val" && r["step"] == 6) continue;
      r.erase("time_s");
      r.erase("items_per_s");
      out.push_back(r);
    }
    return out;
  };
  EXPECT_EQ(strip(straight.log), strip(second.log));
  EXPECT_EQ(strip(straight.log).size(), 9u);
  EXPECT_TRUE(fs::exists(dir + "/straight/checkpoints/step_00000012/model_ema.safetensors"));
}

TEST(TrainerTest, InterruptionCheckpointsAndResumes) {
  const std::string dir = testing::TempDir();
  RunOutput straight = TrainTiny(dir + "/straight", 12, 5);
  RunOutput cut = TrainTiny(dir + "/cut", 12, 5, /*interrupt_at=*/7);
  EXPECT_TRUE(cut.result.interrupted);
  EXPECT_EQ(cut.result.end_step, 8) << "the step running when the signal came completes";
  EXPECT_TRUE(fs::exists(dir + "/cut/checkpoints/step_00000008/state.json"));
  RunOutput rest = TrainTiny(dir + "/cut", 12, 99);
  EXPECT_EQ(rest.result.start_step, 8);
  EXPECT_FALSE(rest.result.interrupted);
  ExpectSameState(straight, rest);
}

TEST(TrainerTest, NonFiniteLossesStopTraining) {
  Trainer trainer({.output_dir = testing::TempDir(), .total_steps = 100, .max_nonfinite_steps = 3, .quiet = true});
  auto r = trainer.Run([](int64_t) -> absl::StatusOr<Metrics> { return Metrics{{"loss", NAN}}; });
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("non-finite"), std::string::npos) << r.status();
}

TEST(MixedPrecisionTest, AutocastGuardScopesBf16) {
  WFM_ASSERT_OK_AND_ASSIGN(c10::ScalarType cpu_auto, ParsePrecision("auto", c10::Device("cpu")));
  EXPECT_EQ(cpu_auto, c10::kFloat);
  EXPECT_FALSE(ParsePrecision("fp16", c10::Device("cpu")).ok());
  EXPECT_FALSE(ParsePrecision("int8", c10::Device("cpu")).ok());
  at::Tensor x = at::randn({4, 8}), w = at::randn({3, 8});
  {
    AutocastGuard guard(c10::Device("cpu"), c10::kBFloat16);
    EXPECT_EQ(at::linear(x, w).scalar_type(), c10::kBFloat16);
  }
  EXPECT_EQ(at::linear(x, w).scalar_type(), c10::kFloat);
  {
    AutocastGuard guard(c10::Device("cpu"), c10::kFloat);  // no-op
    EXPECT_EQ(at::linear(x, w).scalar_type(), c10::kFloat);
  }
}

TEST(DistributedTest, SingleProcessGroupAndBadBackend) {
  WFM_ASSERT_OK_AND_ASSIGN(auto pg, ProcessGroup::Create("none"));
  EXPECT_EQ(pg->world_size(), 1);
  EXPECT_TRUE(pg->is_main());
  at::Tensor t = at::ones({3});
  WFM_ASSERT_OK(pg->AllReduceMean({t}));
  EXPECT_TRUE(at::equal(t, at::ones({3})));
  WFM_ASSERT_OK_AND_ASSIGN(std::string s, pg->BroadcastString("as is"));
  EXPECT_EQ(s, "as is");
  EXPECT_EQ(ProcessGroup::Create("nccl-ish").status().code(), absl::StatusCode::kInvalidArgument);
}

// Under `mpirun -np 2`: each rank trains on its half of every batch; gradients are averaged. The result must equal
// one process training on the whole batch (computed on every rank for comparison).
TEST(DistributedMpiTest, TwoRanksEqualOneRankWithTheDoubledBatch) {
  if (!std::getenv("OMPI_COMM_WORLD_SIZE") && !std::getenv("PMI_SIZE"))
    GTEST_SKIP() << "not started by mpirun (ctest runs this as DistributedMpiTest.TwoRanks, label mpi)";
  WFM_ASSERT_OK_AND_ASSIGN(auto pg, ProcessGroup::Create("auto"));
  ASSERT_EQ(pg->backend(), "mpi");
  ASSERT_EQ(pg->world_size(), 2);
  const int rank = pg->rank();
  // Strings (rank 0's decision reaches every rank; empty and binary-safe too).
  for (const std::string& text : {std::string("{\"pending\": [\"a.mp4\"]}"), std::string(), std::string("a\0b", 3)}) {
    WFM_ASSERT_OK_AND_ASSIGN(std::string got, pg->BroadcastString(rank == 0 ? text : "other rank's text"));
    EXPECT_EQ(got, text);
  }
  at::manual_seed(100 + rank);  // different init per rank: BroadcastParameters must fix it
  TinyNet dp;
  WFM_ASSERT_OK(BroadcastParameters(*pg, *dp));
  at::manual_seed(100);
  TinyNet single;
  for (const auto& [k, v] : wfm::StateDict(*dp)) ASSERT_TRUE(at::equal(v, wfm::StateDict(*single).at(k))) << k;
  AdamW opt_dp = AdamW::ForModule(*dp, {.lr = 1e-2, .weight_decay = 0.1});
  AdamW opt_single = AdamW::ForModule(*single, {.lr = 1e-2, .weight_decay = 0.1});
  Ema ema_dp(*dp, 0.9), ema_single(*single, 0.9);
  for (int64_t step = 0; step < 5; ++step) {
    auto [x, y] = Batch(step, 8);
    opt_dp.ZeroGrad();
    at::mse_loss(dp->forward(x.narrow(0, 4 * rank, 4), false), y.narrow(0, 4 * rank, 4)).backward();
    WFM_ASSERT_OK(ApplyGradients(opt_dp, {.lr = 1e-2, .clip_norm = 0.5, .group = pg.get(), .ema = &ema_dp}).status());
    opt_single.ZeroGrad();
    at::mse_loss(single->forward(x, false), y).backward();
    WFM_ASSERT_OK(ApplyGradients(opt_single, {.lr = 1e-2, .clip_norm = 0.5, .ema = &ema_single}).status());
  }
  for (const auto& [k, v] : wfm::StateDict(*single)) {
    if (k == "steps_seen") continue;
    EXPECT_LT(testing::MaxRelDiff(wfm::StateDict(*dp).at(k), v), 1e-5) << "rank " << rank << " " << k;
  }
  for (const auto& [k, v] : ema_single.StateDict()) {
    if (k == "steps_seen") continue;
    EXPECT_LT(testing::MaxRelDiff(ema_dp.StateDict().at(k), v), 1e-5) << "rank " << rank << " ema " << k;
  }
  WFM_ASSERT_OK_AND_ASSIGN(double sum, pg->AllReduceScalar(rank + 1.0));
  EXPECT_EQ(sum, 3.0);
  WFM_ASSERT_OK(pg->Barrier());
}

}  // namespace
}  // namespace wfm::train

namespace wfm::train {
namespace {

TEST(VisualizeTest, GridLayoutPngRoundTripAndCurves) {
  at::Tensor a = at::full({3, 8, 10, 3}, 10, at::kByte), b = at::full({2, 8, 10, 3}, 200, at::kByte);
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor grid, MakeImageGrid({a, b}, {.pad = 2, .background = 255}));
  EXPECT_EQ(grid.sizes(), (std::vector<int64_t>{2 * 8 + 3 * 2, 3 * 10 + 4 * 2, 3}));
  EXPECT_EQ(grid[2][2][0].item<int>(), 10);                    // row 0, frame 0
  EXPECT_EQ(grid[2 + 8 + 2][2 + 10 + 2][1].item<int>(), 200);  // row 1, frame 1
  EXPECT_EQ(grid[2 + 8 + 2][2 + 2 * 12][0].item<int>(), 255);  // row 1 has no third frame: background
  EXPECT_EQ(grid[0][0][0].item<int>(), 255);
  // Model layout [3, T, H, W] in [-1, 1]: -1 -> 0, 1 -> 255.
  at::Tensor model = at::full({3, 2, 8, 10}, -1.0);
  model.select(1, 1).fill_(1.0);
  at::Tensor frames = ToDisplayFrames(model);
  EXPECT_EQ(frames.sizes(), (std::vector<int64_t>{2, 8, 10, 3}));
  EXPECT_EQ(frames[0][0][0][0].item<int>(), 0);
  EXPECT_EQ(frames[1][0][0][0].item<int>(), 255);
  EXPECT_FALSE(MakeImageGrid({a, at::zeros({1, 9, 10, 3}, at::kByte)}).ok());
  const std::string dir = testing::TempDir();
  WFM_ASSERT_OK(WriteImageGrid(dir + "/g.png", {a, b}));
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor back, ReadImage(dir + "/g.png"));
  EXPECT_TRUE(at::equal(back, grid)) << "PNG is lossless";
  WFM_ASSERT_OK(WriteReconstructionGrid(dir + "/r.png", at::zeros({2, 3, 4, 16, 16}), at::zeros({2, 3, 4, 16, 16})));
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor r, ReadImage(dir + "/r.png"));
  EXPECT_EQ(r.size(0), 6 * 16 + 7 * 2);  // 2 items x (truth, reconstruction, error)

  {
    WFM_ASSERT_OK_AND_ASSIGN(auto log, JsonlLog::Open(dir + "/m.jsonl"));
    for (int s = 1; s <= 4; ++s) WFM_ASSERT_OK(log->Write({{"step", s * 10}, {"split", "train"}, {"loss", 1.0 / s}}));
    WFM_ASSERT_OK(log->Write({{"step", 40}, {"split", "val"}, {"psnr", 21.5}, {"loss", 0.3}}));
  }
  WFM_ASSERT_OK(WriteTrainingCurves(dir + "/m.jsonl", dir + "/c.svg", {"loss", "psnr", "absent"}));
  WFM_ASSERT_OK_AND_ASSIGN(std::string svg, ReadFile(dir + "/c.svg"));
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  for (const char* needle : {">loss<", ">psnr<", ">train<", ">val<"})
    EXPECT_NE(svg.find(needle), std::string::npos) << needle;
  EXPECT_EQ(WriteTrainingCurves(dir + "/m.jsonl", dir + "/x.svg", {"nope"}).code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace wfm::train
