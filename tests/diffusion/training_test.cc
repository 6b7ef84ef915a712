// Diffusion training: a tiny DiT trained here on the synthetic latent process lowers its denoising loss well
// below the untrained value; loss plumbing (dropouts, condition frames) behaves as specified; per-sample noise
// seeds make a batch's draws independent of how it is split, and data-parallel training over MPI (2 ranks with
// batch B) equals one rank with batch 2B (ctest DiffusionDistributedMpiTest.TwoRanks, label mpi).
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/optim/adamw.h>

#include <cstdlib>

#include "test_support.h"
#include "wfm/core/checkpoint.h"
#include "wfm/core/train/distributed.h"
#include "wfm/core/train/optimizer.h"
#include "wfm/core/train/rng.h"
#include "wfm/core/train/trainer.h"
#include "wfm/diffusion/training.h"

namespace wfm::diffusion {
namespace {

SyntheticLatentProcess Process() {
  SyntheticLatentProcess p;
  p.channels = 16;
  p.frames = 3;
  p.height = 4;
  p.width = 4;
  p.text_tokens = 4;
  p.text_dim = 32;
  return p;
}

TEST(DiffusionTraining, TinyDiTLearnsTheSyntheticProcess) {
  at::manual_seed(0);
  GeneralDiT net(DiTConfig::Preset("tiny-video2world").value());  // GeneralDIT, EDM
  EdmParametrization edm;
  const SyntheticLatentProcess proc = Process();
  const TrainingBatch val = proc.Batch(1 << 20, 16, /*seed=*/5);
  const double before = EvaluationLoss(*net, edm, val, 123);
  torch::optim::AdamW opt(net->parameters(), torch::optim::AdamWOptions(2e-3).weight_decay(0.0));
  DiffusionTrainingOptions o;
  at::Generator g = at::make_generator<at::CPUGeneratorImpl>(1);
  net->train();
  double last = 0;
  for (int step = 0; step < 250; ++step) {
    opt.zero_grad();
    LossOutput l = DiffusionTrainingLoss(*net, edm, proc.Batch(step * 8, 8, 5), o, g);
    ASSERT_TRUE(std::isfinite(l.loss.item<double>())) << "step " << step;
    l.loss.backward();
    opt.step();
    last = l.loss.item<double>();
  }
  net->eval();
  const double after = EvaluationLoss(*net, edm, val, 123);
  std::printf("evaluation loss: untrained %.4f, after 250 steps %.4f (last train loss %.4f)\n", before, after, last);
  EXPECT_LT(after, 0.5 * before) << "HINT: the denoising loss should fall well below the untrained value";
}

TEST(DiffusionTraining, LossPlumbing) {
  at::manual_seed(0);
  GeneralDiT v2w(DiTConfig::Preset("tiny-video2world").value());
  EdmParametrization edm;
  const TrainingBatch b = Process().Batch(0, 6, 3);
  ASSERT_EQ(b.x0.sizes(), (std::vector<int64_t>{6, 16, 3, 4, 4}));
  // The same process index gives the same clip.
  EXPECT_TRUE(Process().Batch(2, 1, 3).x0[0].equal(b.x0[2]));
  EXPECT_NEAR(b.x0.std().item<double>(), 0.5, 0.15) << "unit variance times sigma_data";

  DiffusionTrainingOptions o;
  o.condition_dropout = 0.0;
  o.min_condition_frames = o.max_condition_frames = 2;
  at::Generator g1 = at::make_generator<at::CPUGeneratorImpl>(7), g2 = at::make_generator<at::CPUGeneratorImpl>(7);
  const LossOutput a = DiffusionTrainingLoss(*v2w, edm, b, o, g1);
  EXPECT_DOUBLE_EQ(a.condition_frames, 2.0);
  EXPECT_TRUE(std::isfinite(a.loss.item<double>()));
  // Reproducible given the generator state.
  EXPECT_EQ(DiffusionTrainingLoss(*v2w, edm, b, o, g2).loss.item<double>(), a.loss.item<double>());
  // Condition-frame dropout 1: every sample is Text2World.
  o.condition_dropout = 1.0;
  EXPECT_DOUBLE_EQ(DiffusionTrainingLoss(*v2w, edm, b, o, g1).condition_frames, 0.0);
  // Gradients reach the parameters.
  LossOutput l = DiffusionTrainingLoss(*v2w, edm, b, o, g1);
  l.loss.backward();
  EXPECT_TRUE(v2w->patch_proj->weight.grad().defined());
  EXPECT_GT(v2w->patch_proj->weight.grad().abs().sum().item<double>(), 0.0);
}

TEST(LatentFolder, RoundTripAndErrors) {
  const std::string dir = wfm::testing::TempDir();
  LatentClip c;
  c.latent = at::randn({16, 2, 4, 6});
  c.crossattn_emb = at::randn({5, 32});
  c.caption = "a ball rolls left";
  WFM_ASSERT_OK(LatentFolder::Write(dir + "/a/000.safetensors", c));
  c.crossattn_emb = at::Tensor();
  WFM_ASSERT_OK(LatentFolder::Write(dir + "/a/001.safetensors", c));
  WFM_ASSERT_OK_AND_ASSIGN(LatentFolder f, LatentFolder::Open(dir + "/a"));
  EXPECT_EQ(f.size(), 2);
  EXPECT_EQ(f.latent_shape(), (std::vector<int64_t>{16, 2, 4, 6}));
  WFM_ASSERT_OK_AND_ASSIGN(LatentClip g, f.Get(0));
  EXPECT_TRUE(g.latent.equal(c.latent));
  EXPECT_EQ(g.caption, "a ball rolls left");
  EXPECT_EQ(g.crossattn_emb.sizes(), (std::vector<int64_t>{5, 32}));
  EXPECT_FALSE(f.Get(2).ok());
  // A clip of another shape is named.
  c.latent = at::randn({16, 3, 4, 6});
  WFM_ASSERT_OK(LatentFolder::Write(dir + "/a/002.safetensors", c));
  const absl::Status s = LatentFolder::Open(dir + "/a").status();
  EXPECT_NE(std::string(s.message()).find("002.safetensors"), std::string::npos) << s;
  EXPECT_FALSE(LatentFolder::Open(dir + "/missing").ok());
}

// Samples [first, first + n) of a fixed synthetic batch with their own noise seeds (step, global index).
TrainingBatch Slice(const TrainingBatch& b, int64_t first, int64_t n, int64_t step) {
  TrainingBatch s;
  s.x0 = b.x0.narrow(0, first, n);
  s.crossattn_emb = b.crossattn_emb.narrow(0, first, n);
  for (int64_t i = first; i < first + n; ++i)
    s.noise_seeds.push_back(train::MixSeed(77, static_cast<uint64_t>(step), static_cast<uint64_t>(i)));
  return s;
}

// Per-sample seeds: the loss (and its gradients) of a batch is the mean over its halves computed apart, whatever
// the generator passed in; without them the halves would draw different noise.
TEST(DiffusionTraining, PerSampleNoiseSeedsMakeTheBatchSplittable) {
  at::manual_seed(0);
  GeneralDiT net(DiTConfig::Preset("tiny-video2world").value());
  EdmParametrization edm;
  const TrainingBatch full = Process().Batch(0, 4, 5);
  DiffusionTrainingOptions o;  // text and condition dropout on: their draws must follow the sample too
  at::Generator g1 = at::make_generator<at::CPUGeneratorImpl>(1), g2 = at::make_generator<at::CPUGeneratorImpl>(2);
  auto grads = [&](const TrainingBatch& b, at::Generator& g) {
    net->zero_grad();
    LossOutput l = DiffusionTrainingLoss(*net, edm, b, o, g);
    l.loss.backward();
    std::vector<at::Tensor> out{l.loss.detach().clone()};
    for (const auto& p : net->parameters()) out.push_back(p.grad().defined() ? p.grad().clone() : at::zeros_like(p));
    return out;
  };
  const auto whole = grads(Slice(full, 0, 4, 3), g1);
  const auto a = grads(Slice(full, 0, 2, 3), g2), b = grads(Slice(full, 2, 2, 3), g1);
  for (size_t i = 0; i < whole.size(); ++i)
    EXPECT_LT(testing::MaxRelDiff((a[i] + b[i]) / 2, whole[i]), 1e-5) << (i == 0 ? "loss" : "gradient ") << i;
  // Another step's seeds draw other noise.
  EXPECT_GT(testing::MaxAbsDiff(grads(Slice(full, 0, 4, 4), g1)[0], whole[0]), 1e-6);
}

// Under `mpirun -np 2`: each rank takes its half of the batch (per-sample noise seeds), gradients are averaged
// across ranks by ApplyGradients; after the steps both ranks hold the weights of one process trained on the
// whole batch (computed on every rank for comparison).
TEST(DiffusionDistributedMpiTest, TwoRanksEqualOneRankWithTheDoubledBatch) {
  if (!std::getenv("OMPI_COMM_WORLD_SIZE") && !std::getenv("PMI_SIZE"))
    GTEST_SKIP() << "not started by mpirun (ctest runs this as DiffusionDistributedMpiTest.TwoRanks, label mpi)";
  WFM_ASSERT_OK_AND_ASSIGN(auto pg, train::ProcessGroup::Create("auto"));
  ASSERT_EQ(pg->world_size(), 2);
  const int rank = pg->rank();
  const DiTConfig cfg = DiTConfig::Preset("tiny-video2world").value();
  at::manual_seed(100 + rank);  // different init per rank: BroadcastParameters must fix it
  GeneralDiT dp(cfg);
  WFM_ASSERT_OK(train::BroadcastParameters(*pg, *dp));
  at::manual_seed(100);
  GeneralDiT single(cfg);
  for (const auto& [k, v] : wfm::StateDict(*dp)) ASSERT_TRUE(at::equal(v, wfm::StateDict(*single).at(k))) << k;
  EdmParametrization edm;
  DiffusionTrainingOptions o;
  const train::AdamWOptions adam{.lr = 2e-3, .weight_decay = 0.01};
  train::AdamW opt_dp = train::AdamW::ForModule(*dp, adam), opt_single = train::AdamW::ForModule(*single, adam);
  at::Generator unused = at::make_generator<at::CPUGeneratorImpl>(1000 + rank);  // per-sample seeds decide
  for (int64_t step = 0; step < 2; ++step) {
    const TrainingBatch full = Process().Batch(step * 4, 4, 5);  // 2B = 4
    opt_dp.ZeroGrad();
    DiffusionTrainingLoss(*dp, edm, Slice(full, 2 * rank, 2, step), o, unused).loss.backward();
    WFM_ASSERT_OK(train::ApplyGradients(opt_dp, {.lr = 2e-3, .clip_norm = 1.0, .group = pg.get()}).status());
    opt_single.ZeroGrad();
    DiffusionTrainingLoss(*single, edm, Slice(full, 0, 4, step), o, unused).loss.backward();
    WFM_ASSERT_OK(train::ApplyGradients(opt_single, {.lr = 2e-3, .clip_norm = 1.0}).status());
  }
  double worst = 0;
  for (const auto& [k, v] : wfm::StateDict(*single)) {
    const double d = testing::MaxRelDiff(wfm::StateDict(*dp).at(k), v);
    worst = std::max(worst, d);
    EXPECT_LT(d, 1e-4) << "rank " << rank << " " << k;
  }
  std::printf("rank %d: worst max-rel diff 2-rank vs 1-rank weights %.2e\n", rank, worst);
  at::manual_seed(100);
  GeneralDiT init(cfg);
  EXPECT_GT(testing::MaxAbsDiff(wfm::StateDict(*single).at("final_layer.linear.weight"),
                                wfm::StateDict(*init).at("final_layer.linear.weight")),
            1e-4)
      << "the steps must change the weights";
  WFM_ASSERT_OK(pg->Barrier());
}

}  // namespace
}  // namespace wfm::diffusion
