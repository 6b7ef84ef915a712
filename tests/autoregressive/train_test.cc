// AR training pieces: the teacher-forced loss against its definition (shifted targets, condition frames skipped,
// <bov> handling, z-loss), text dropout, and a tiny model that learns a moving-bar token process in the test.
#include <ATen/ATen.h>

#include <cstdlib>
#include <iostream>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/optim/adamw.h>

#include "ar_test_util.h"
#include "test_support.h"
#include "wfm/autoregressive/generate.h"
#include "wfm/autoregressive/train.h"
#include "wfm/core/checkpoint.h"
#include "wfm/core/train/distributed.h"
#include "wfm/core/train/ema.h"
#include "wfm/core/train/optimizer.h"
#include "wfm/core/train/trainer.h"

namespace wfm::ar {
namespace {

TEST(ArTrainTest, LossIsShiftedCrossEntropyAfterTheConditionFramePlusZLoss) {
  for (bool v2w : {false, true}) {
    const ArConfig c = Tiny(v2w);
    ArTransformer net(c);
    net->InitWeights(1);
    at::manual_seed(0);
    const at::Tensor tokens = at::randint(0, c.vocab_size, {2, 3, 4, 4}, at::kLong);
    const TextContext text{at::randn({2, 5, c.context_dim}), at::ones({2, 5}, at::kBool)};
    ArLossOptions o;
    o.z_loss = 1e-3;
    WFM_ASSERT_OK_AND_ASSIGN(ArLossOutput out, TeacherForcedLoss(*net, tokens, v2w ? &text : nullptr, o));
    // reference: logits of the full sequence, labels = next tokens, the first latent frame (16 tokens) not predicted
    at::NoGradGuard g;
    at::Tensor seq = tokens.reshape({2, 48});
    if (v2w) seq = at::cat({at::full({2, 1}, c.BovToken(), at::kLong), seq}, 1);
    const at::Tensor logits = net->forward(seq, 0, nullptr, v2w ? &text : nullptr);
    const int64_t first = v2w ? 16 : 15;  // logits row predicting video token 16
    const at::Tensor l = logits.narrow(1, first, 32).reshape({64, -1});
    const at::Tensor t = tokens.reshape({2, 48}).narrow(1, 16, 32).reshape({64});
    const double ce = at::nll_loss(at::log_softmax(l, -1), t).item<double>();
    const double z = 1e-3 * at::logsumexp(l, -1).square().mean().item<double>();
    EXPECT_NEAR(out.ce, ce, 1e-5) << (v2w ? "v2w" : "base");
    EXPECT_NEAR(out.z, z, 1e-7);
    EXPECT_NEAR(out.loss.item<double>(), ce + z, 1e-5);
    EXPECT_EQ(out.targets, 64);
    EXPECT_NEAR(out.ce, std::log(512.0), 1.5) << "an untrained model is near chance";
  }
}

// The memory-bounded cross-entropy (chunks of 7 positions: 10 chunks, a short last one) gives the plain version's
// loss, statistics and gradients of every parameter.
TEST(ArTrainTest, ChunkedCrossEntropyEqualsThePlainOne) {
  for (bool v2w : {false, true}) {
    const ArConfig c = Tiny(v2w);
    ArTransformer net(c);
    net->InitWeights(3);
    at::manual_seed(2);
    const at::Tensor tokens = at::randint(0, c.vocab_size, {2, 3, 4, 4}, at::kLong);
    const TextContext text{at::randn({2, 5, c.context_dim}), at::ones({2, 5}, at::kBool)};
    std::vector<ArLossOutput> outs;
    std::vector<std::vector<at::Tensor>> grads;
    for (int64_t chunk : {int64_t{-1}, int64_t{7}}) {
      ArLossOptions o;
      o.z_loss = 1e-2;  // large enough that its gradient matters
      o.ce_chunk = chunk;
      net->zero_grad();
      WFM_ASSERT_OK_AND_ASSIGN(ArLossOutput out, TeacherForcedLoss(*net, tokens, v2w ? &text : nullptr, o));
      (out.loss * 3.0).backward();  // a non-unit upstream gradient
      outs.push_back(out);
      grads.emplace_back();
      for (const at::Tensor& p : net->parameters()) grads.back().push_back(p.grad().clone());
    }
    const double dl = std::abs(outs[1].loss.item<double>() - outs[0].loss.item<double>()) / outs[0].loss.item<double>();
    EXPECT_LE(dl, 1e-5) << "loss";
    EXPECT_NEAR(outs[1].ce, outs[0].ce, 1e-5 * outs[0].ce);
    EXPECT_NEAR(outs[1].z, outs[0].z, 1e-5 * outs[0].z);
    EXPECT_EQ(outs[1].accuracy, outs[0].accuracy);
    double worst = 0;
    for (size_t i = 0; i < grads[0].size(); ++i) worst = std::max(worst, testing::MaxRelDiff(grads[1][i], grads[0][i]));
    std::cout << "[ chunked ce ] " << (v2w ? "v2w" : "base") << ": loss rel diff " << dl << ", grads max rel diff "
              << worst << "\n";
    EXPECT_LE(worst, 1e-5) << "HINT: d loss / d logits = (softmax - onehot) / M + z * 2 * lse / M * softmax";
  }
}

TEST(ArTrainTest, TextDropoutZeroesTheContext) {
  const ArConfig c = Tiny(true);
  ArTransformer net(c);
  net->InitWeights(2);
  at::manual_seed(1);
  const at::Tensor tokens = at::randint(0, c.vocab_size, {3, 2, 4, 4}, at::kLong);
  const TextContext text{at::randn({3, 5, c.context_dim}), at::ones({3, 5}, at::kBool)};
  const TextContext zero{at::zeros({3, 5, c.context_dim}), at::ones({3, 5}, at::kBool)};
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(5);
  ArLossOptions o;
  o.z_loss = 0;
  o.text_dropout = 1.0;
  const double dropped = TeacherForcedLoss(*net, tokens, &text, o, &gen)->ce;
  o.text_dropout = 0.0;
  EXPECT_NEAR(dropped, TeacherForcedLoss(*net, tokens, &zero, o)->ce, 1e-6);
  EXPECT_GT(std::abs(dropped - TeacherForcedLoss(*net, tokens, &text, o)->ce), 1e-6);
  o.text_dropout = 0.5;
  EXPECT_FALSE(TeacherForcedLoss(*net, tokens, &text, o, nullptr).ok()) << "dropout without a generator";
}

TEST(ArTrainTest, BadBatches) {
  ArTransformer net(Tiny(true));
  const at::Tensor tokens = at::zeros({1, 2, 4, 4}, at::kLong);
  EXPECT_FALSE(TeacherForcedLoss(*net, tokens, nullptr, {}).ok()) << "text required";
  const TextContext text{at::zeros({1, 5, 32}), at::Tensor()};
  EXPECT_FALSE(TeacherForcedLoss(*net, at::zeros({1, 2, 5, 4}, at::kLong), &text, {}).ok()) << "frame size";
  EXPECT_FALSE(TeacherForcedLoss(*net, at::zeros({1, 4, 4, 4}, at::kLong), &text, {}).ok()) << "too many frames";
  EXPECT_FALSE(TeacherForcedLoss(*net, at::zeros({1, 1, 4, 4}, at::kLong), &text, {}).ok()) << "nothing to predict";
  EXPECT_FALSE(TeacherForcedLoss(*net, at::full({1, 2, 4, 4}, 600, at::kLong), &text, {}).ok()) << "vocabulary";
}

// A tiny model trained here (150 AdamW steps of 16 sequences, ~10 s of CPU) predicts the moving bar: teacher-forced
// accuracy on fresh sequences and greedy generation from the first frame. Tokens come from 64 values, so chance
// is 1/64; predicting the background everywhere would score 0.75 - above 0.9 the bar itself must move.
TEST(ArTrainTest, TinyModelLearnsAMovingBar) {
  const ArConfig c = Tiny(false);
  ArTransformer net(c);
  net->InitWeights(3);
  net->train();
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(7);
  torch::optim::AdamW opt(net->parameters(), torch::optim::AdamWOptions(1e-2).weight_decay(0.0));
  ArLossOptions o;
  double first_ce = 0, last_acc = 0;
  for (int step = 0; step < 150; ++step) {
    const at::Tensor batch = MovingBarTokens(16, 3, 4, 4, 64, gen);
    opt.zero_grad();
    WFM_ASSERT_OK_AND_ASSIGN(ArLossOutput out, TeacherForcedLoss(*net, batch, nullptr, o));
    out.loss.backward();
    opt.step();
    if (step == 0) first_ce = out.ce;
    last_acc = out.accuracy;
  }
  net->eval();
  const at::Tensor test = MovingBarTokens(32, 3, 4, 4, 64, gen);
  WFM_ASSERT_OK_AND_ASSIGN(ArLossOutput eval, TeacherForcedLoss(*net, test, nullptr, o));
  std::cout << "[ moving bar ] ce " << first_ce << " -> " << eval.ce << ", teacher-forced accuracy " << eval.accuracy
            << " (train " << last_acc << ", chance 1/64, background-only 0.75)\n";
  EXPECT_GT(eval.accuracy, 0.9) << "HINT: the loss must target the next token after the condition frame";
  // Greedy generation from the first frame continues the motion.
  int64_t correct = 0, total = 0;
  GenerationOptions g;
  g.sampling.temperature = 0;
  g.show_progress = false;
  for (int64_t b = 0; b < 8; ++b) {
    WFM_ASSERT_OK_AND_ASSIGN(GenerationResult r, GenerateTokens(*net, test[b][0].reshape(-1), 3, nullptr, g));
    correct += (r.tokens[0].narrow(0, 1, 2) == test[b].narrow(0, 1, 2)).sum().item<int64_t>();
    total += 32;
  }
  EXPECT_GT(static_cast<double>(correct) / total, 0.9) << correct << "/" << total;
}

TEST(ArTrainTest, MovingBarDirections) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(11);
  std::vector<int> dirs;
  const at::Tensor t = MovingBarTokens(16, 4, 3, 5, 64, gen, &dirs);
  ASSERT_EQ(dirs.size(), 16u);
  int left = 0;
  for (int64_t b = 0; b < 16; ++b) {
    // the bar is the column whose tokens differ from the corner-most background majority
    const at::Tensor f0 = t[b][0], f1 = t[b][1];
    int64_t c0 = -1, c1 = -1;
    const int64_t bg = std::get<0>(f0.flatten().mode()).item<int64_t>();
    for (int64_t x = 0; x < 5; ++x) {
      if (f0[0][x].item<int64_t>() != bg) c0 = x;
      if (f1[0][x].item<int64_t>() != bg) c1 = x;
    }
    ASSERT_GE(c0, 0);
    EXPECT_EQ(c1, (c0 + dirs[static_cast<size_t>(b)] + 5) % 5) << "sample " << b;
    left += dirs[static_cast<size_t>(b)] < 0;
  }
  EXPECT_GT(left, 0);
  EXPECT_LT(left, 16);
}

// With one condition frame and one predicted frame the bar's direction is only in the text: a text-blind model
// scores at most 0.75 (guess a side, or predict background everywhere); a tiny Video2World model trained with a
// per-direction context predicts the motion, and the opposite caption moves the bar the other way.
TEST(ArTrainTest, CrossAttentionLearnsTheDirectionFromText) {
  const ArConfig c = Tiny(true);
  ArTransformer net(c);
  net->InitWeights(4);
  net->train();
  at::manual_seed(2);
  const at::Tensor dir_emb = at::randn({2, 1, c.context_dim});  // [left, right] -> [1, D] each
  auto context = [&](const std::vector<int>& dirs) {
    std::vector<at::Tensor> rows;
    for (int d : dirs) rows.push_back(dir_emb[d > 0 ? 1 : 0]);
    return TextContext{at::stack(rows, 0), at::ones({static_cast<int64_t>(dirs.size()), 1}, at::kBool)};
  };
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(9);
  torch::optim::AdamW opt(net->parameters(), torch::optim::AdamWOptions(1e-2).weight_decay(0.0));
  ArLossOptions o;
  for (int step = 0; step < 400; ++step) {
    std::vector<int> dirs;
    const at::Tensor batch = MovingBarTokens(16, 2, 4, 4, 64, gen, &dirs);
    const TextContext text = context(dirs);
    opt.zero_grad();
    WFM_ASSERT_OK_AND_ASSIGN(ArLossOutput out, TeacherForcedLoss(*net, batch, &text, o));
    out.loss.backward();
    opt.step();
  }
  net->eval();
  std::vector<int> dirs;
  const at::Tensor test = MovingBarTokens(32, 2, 4, 4, 64, gen, &dirs);
  const TextContext text = context(dirs);
  // Teacher forcing reveals the direction once the first bar token of frame 1 is seen, so score the first row of
  // frame 1 (4 tokens, one of them the bar): logits at input positions 16..19 ([bov, frame 0, ...]).
  auto first_row_accuracy = [&](const TextContext& t) {
    at::NoGradGuard g;
    const at::Tensor seq = at::cat({at::full({32, 1}, c.BovToken(), at::kLong), test.reshape({32, 32})}, 1);
    const at::Tensor logits = net->forward(seq.narrow(1, 0, 32), 0, nullptr, &t);  // [32, 32, V]
    return (logits.narrow(1, 16, 4).argmax(-1) == test.select(1, 1).select(1, 0)).to(at::kDouble).mean().item<double>();
  };
  std::vector<int> flipped;
  for (int d : dirs) flipped.push_back(-d);
  const double right = first_row_accuracy(text), wrong = first_row_accuracy(context(flipped));
  std::cout << "[ direction from text ] first predicted row: accuracy " << right << " with the right caption, "
            << wrong << " with the opposite one (a text-blind model: <= 0.75)\n";
  EXPECT_GT(right, 0.9) << "HINT: the context must reach the cross-attention layers";
  EXPECT_LT(wrong, 0.6) << "the prediction must depend on the text";
}

// Data parallelism of AR training under `mpirun -np 2` (ctest ArDistributedMpiTest.TwoRanks, label mpi; skipped
// otherwise): each rank computes the teacher-forced loss (chunked cross-entropy, z-loss, cross-attention to text)
// on its B = 2 sequences and ApplyGradients averages the gradients: at every step the averaged (and clipped)
// gradients equal those of one process on all 2B = 4 sequences (computed on every rank for comparison) within
// 1e-5, and after 3 AdamW steps with EMA so do the weights within 1e-4 (AdamW divides by sqrt(v): a gradient
// entry near zero turns float-rounding differences of the reduction order into ~1e-5 relative weight changes).
TEST(ArDistributedMpiTest, TwoRanksEqualOneRankWithTheDoubledBatch) {
  if (!std::getenv("OMPI_COMM_WORLD_SIZE") && !std::getenv("PMI_SIZE"))
    GTEST_SKIP() << "not started by mpirun (ctest runs this as ArDistributedMpiTest.TwoRanks, label mpi)";
  WFM_ASSERT_OK_AND_ASSIGN(auto pg, train::ProcessGroup::Create("auto"));
  ASSERT_EQ(pg->world_size(), 2);
  const int rank = pg->rank();
  const ArConfig c = Tiny(true);
  ArTransformer dp(c), single(c);
  dp->InitWeights(10 + rank);  // different per rank: BroadcastParameters must fix it
  single->InitWeights(10);
  WFM_ASSERT_OK(train::BroadcastParameters(*pg, *dp));
  for (const auto& [k, v] : StateDict(*dp)) ASSERT_TRUE(at::equal(v, StateDict(*single).at(k))) << k;
  train::AdamW opt_dp = train::AdamW::ForModule(*dp, {.lr = 3e-3, .weight_decay = 0.1});
  train::AdamW opt_single = train::AdamW::ForModule(*single, {.lr = 3e-3, .weight_decay = 0.1});
  train::Ema ema_dp(*dp, 0.9), ema_single(*single, 0.9);
  ArLossOptions o;
  o.ce_chunk = 5;  // several chunks per rank
  for (int64_t step = 0; step < 3; ++step) {
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(50 + step);
    const at::Tensor tokens = MovingBarTokens(4, 3, 4, 4, c.vocab_size, gen);  // [2B, 3, 4, 4], same on both ranks
    const at::Tensor emb = at::randn({4, 5, c.context_dim}, gen);
    const TextContext all{emb, at::ones({4, 5}, at::kBool)};
    const TextContext half{emb.narrow(0, 2 * rank, 2), at::ones({2, 5}, at::kBool)};
    opt_dp.ZeroGrad();
    WFM_ASSERT_OK_AND_ASSIGN(ArLossOutput l_dp, TeacherForcedLoss(*dp, tokens.narrow(0, 2 * rank, 2), &half, o));
    l_dp.loss.backward();
    WFM_ASSERT_OK(train::ApplyGradients(opt_dp, {.lr = 3e-3, .clip_norm = 0.5, .group = pg.get(), .ema = &ema_dp})
                      .status());
    opt_single.ZeroGrad();
    WFM_ASSERT_OK_AND_ASSIGN(ArLossOutput l_single, TeacherForcedLoss(*single, tokens, &all, o));
    l_single.loss.backward();
    WFM_ASSERT_OK(train::ApplyGradients(opt_single, {.lr = 3e-3, .clip_norm = 0.5, .ema = &ema_single}).status());
    const auto pd = dp->named_parameters(), ps = single->named_parameters();
    for (const auto& p : ps)
      EXPECT_LE(testing::MaxRelDiff(pd[p.key()].grad(), p.value().grad()), 1e-5)
          << "rank " << rank << " step " << step << " gradient of " << p.key();
  }
  double worst = 0;
  for (const auto& [k, v] : StateDict(*single)) {
    const double d = testing::MaxRelDiff(StateDict(*dp).at(k), v);
    worst = std::max(worst, d);
    EXPECT_LT(d, 1e-4) << "rank " << rank << " " << k;
  }
  for (const auto& [k, v] : ema_single.StateDict()) {
    if (k == "steps_seen") continue;
    EXPECT_LT(testing::MaxRelDiff(ema_dp.StateDict().at(k), v), 1e-4) << "rank " << rank << " ema " << k;
  }
  std::cout << "[ ar mpi ] rank " << rank << ": weights max rel diff vs one rank with 2B " << worst << "\n";
  WFM_ASSERT_OK(pg->Barrier());
}

}  // namespace
}  // namespace wfm::ar
