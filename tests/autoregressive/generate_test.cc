// Generation: token policies against their definitions, seed determinism, multiverse samples, greedy decode ==
// argmax of a full recompute (also across sliding-window slides), guidance, the frame callback, bad input.
#include <ATen/ATen.h>

#include <set>

#include <vector>

#include "ar_test_util.h"
#include "test_support.h"
#include "wfm/autoregressive/generate.h"
#include "wfm/autoregressive/sampling.h"

namespace wfm::ar {
namespace {

TextContext Text(uint64_t seed, int64_t dim) {
  at::manual_seed(seed);
  return TextContext{at::randn({1, 5, dim}), at::ones({1, 5}, at::kBool)};
}

GenerationOptions Quiet() {
  GenerationOptions o;
  o.show_progress = false;
  return o;
}

// ---------------------------------------------------------------- policies

TEST(ArSamplingTest, TopPDrawsOnlyTheNucleusWithRenormalisedFrequencies) {
  // probabilities 0.5, 0.3, 0.15, 0.05: with p = 0.7 the nucleus is {0, 1} (mass before token 2 is 0.8 > 0.7)
  const at::Tensor logits = at::log(at::tensor({0.15, 0.5, 0.05, 0.3})).to(at::kFloat).unsqueeze(0);
  TopPPolicy policy(1.0, 0.7);
  auto gens = SampleGenerators(11, 1);
  std::vector<int64_t> counts(4, 0);
  const int n = 4000;
  for (int i = 0; i < n; ++i) ++counts[policy.Choose(logits, gens).item<int64_t>()];
  EXPECT_EQ(counts[0] + counts[2], 0) << "tokens outside the nucleus were drawn";
  EXPECT_NEAR(counts[1] / double(n), 0.5 / 0.8, 0.03);
  EXPECT_NEAR(counts[3] / double(n), 0.3 / 0.8, 0.03);
}

TEST(ArSamplingTest, TopPWithALargeFlatVocabulary) {
  // a flat distribution over 5000 tokens: the head-growing search must reach ~90% of them
  at::manual_seed(0);
  const at::Tensor logits = at::randn({2, 5000}) * 0.01;
  TopPPolicy policy(1.0, 0.9);
  auto gens = SampleGenerators(3, 2);
  const at::Tensor probs = at::softmax(logits, -1);
  for (int i = 0; i < 50; ++i) {
    const at::Tensor t = policy.Choose(logits, gens);
    for (int64_t r = 0; r < 2; ++r) {
      // the drawn token must be inside the nucleus: mass of strictly more likely tokens <= 0.9
      const double p = probs[r][t[r].item<int64_t>()].item<double>();
      EXPECT_LE(probs[r].masked_select(probs[r] > p).sum().item<double>(), 0.9 + 1e-6);
    }
  }
}

TEST(ArSamplingTest, TopPWithAPeakedLargeVocabulary) {
  // a trained model's peaked distribution over 64000 codes: the threshold search finds the few-code nucleus
  at::manual_seed(1);
  const at::Tensor logits = at::randn({2, 64000}) * 8;
  TopPPolicy policy(1.0, 0.9);
  auto gens = SampleGenerators(4, 2);
  const at::Tensor probs = at::softmax(logits, -1);
  std::set<int64_t> seen;
  for (int i = 0; i < 200; ++i) {
    const at::Tensor t = policy.Choose(logits, gens);
    for (int64_t r = 0; r < 2; ++r) {
      const double p = probs[r][t[r].item<int64_t>()].item<double>();
      EXPECT_LE(probs[r].masked_select(probs[r] > p).sum().item<double>(), 0.9 + 1e-6) << "outside the nucleus";
      if (r == 0) seen.insert(t[r].item<int64_t>());
    }
  }
  // every nucleus token of row 0 with probability >= 5% is drawn at least once in 200 draws
  const auto [vals, idx] = probs[0].sort(-1, true);
  const at::Tensor before = vals.cumsum(0) - vals;
  for (int64_t j = 0; j < 64000 && before[j].item<double>() <= 0.9; ++j)
    if (vals[j].item<double>() >= 0.05) EXPECT_TRUE(seen.count(idx[j].item<int64_t>())) << "rank " << j;
}

TEST(ArSamplingTest, TopKTemperatureAndGreedy) {
  const at::Tensor logits = at::tensor({1.0f, 3.0f, 2.0f, -1.0f, 2.5f}).unsqueeze(0);
  auto gens = SampleGenerators(5, 1);
  TopKPolicy top2(1.0, 2);
  std::vector<int64_t> counts(5, 0);
  for (int i = 0; i < 3000; ++i) ++counts[top2.Choose(logits, gens).item<int64_t>()];
  EXPECT_EQ(counts[0] + counts[2] + counts[3], 0);
  EXPECT_NEAR(counts[1] / 3000.0, 1 / (1 + std::exp(-0.5)), 0.03);  // softmax over {3.0, 2.5}
  // a very low temperature concentrates on the argmax; temperature 0 is greedy
  TopKPolicy cold(1e-3, 0);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(cold.Choose(logits, gens).item<int64_t>(), 1);
  auto greedy = *MakeTokenPolicy(SamplingOptions{0.0, 0, 1.0});
  EXPECT_EQ(greedy->Choose(logits, gens).item<int64_t>(), 1);
  EXPECT_EQ(greedy->Describe(), "greedy");
}

TEST(ArSamplingTest, InvalidOptions) {
  EXPECT_FALSE(MakeTokenPolicy(SamplingOptions{-1.0, 0, 1.0}).ok());
  EXPECT_FALSE(MakeTokenPolicy(SamplingOptions{1.0, -2, 1.0}).ok());
  EXPECT_FALSE(MakeTokenPolicy(SamplingOptions{1.0, 0, 0.0}).ok());
  EXPECT_FALSE(MakeTokenPolicy(SamplingOptions{1.0, 0, 1.5}).ok());
  EXPECT_FALSE(MakeTokenPolicy(SamplingOptions{1.0, 10, 0.9}).ok());  // both, as the reference forbids
}

// ---------------------------------------------------------------- generation

TEST(ArGenerateTest, SameSeedSameTokensDifferentSeedDifferentTokens) {
  const ArConfig c = Tiny(false);
  ArTransformer net = Net(c);
  at::manual_seed(0);
  const at::Tensor prompt = at::randint(0, c.vocab_size, {16}, at::kLong);
  GenerationOptions o = Quiet();
  o.sampling.top_p = 0.9;
  o.seed = 42;
  WFM_ASSERT_OK_AND_ASSIGN(GenerationResult a, GenerateTokens(*net, prompt, 3, nullptr, o));
  WFM_ASSERT_OK_AND_ASSIGN(GenerationResult b, GenerateTokens(*net, prompt, 3, nullptr, o));
  EXPECT_TRUE(at::equal(a.tokens, b.tokens));
  EXPECT_EQ(a.tokens.sizes(), at::IntArrayRef({1, 3, 4, 4}));
  EXPECT_TRUE(at::equal(a.tokens[0][0].reshape(-1), prompt)) << "prompt frames come first";
  EXPECT_EQ(a.generated_tokens, 32);
  o.seed = 43;
  WFM_ASSERT_OK_AND_ASSIGN(GenerationResult c2, GenerateTokens(*net, prompt, 3, nullptr, o));
  EXPECT_FALSE(at::equal(a.tokens, c2.tokens));
}

TEST(ArGenerateTest, MultiverseSamplesDifferAndSampleZeroIsBatchIndependent) {
  const ArConfig c = Tiny(true);
  ArTransformer net = Net(c);
  net->to(at::kDouble);  // batch-size-independent logits to the last bit, so sampling is comparable
  const TextContext text = Text(1, c.context_dim);
  at::manual_seed(1);
  const at::Tensor prompt = at::randint(0, c.vocab_size, {16}, at::kLong);
  GenerationOptions o = Quiet();
  o.seed = 9;
  o.num_samples = 3;
  WFM_ASSERT_OK_AND_ASSIGN(GenerationResult many, GenerateTokens(*net, prompt, 3, &text, o));
  EXPECT_EQ(many.tokens.sizes(), at::IntArrayRef({3, 3, 4, 4}));
  EXPECT_FALSE(at::equal(many.tokens[0], many.tokens[1]));
  EXPECT_FALSE(at::equal(many.tokens[1], many.tokens[2]));
  o.num_samples = 1;
  WFM_ASSERT_OK_AND_ASSIGN(GenerationResult one, GenerateTokens(*net, prompt, 3, &text, o));
  EXPECT_TRUE(at::equal(one.tokens[0], many.tokens[0]));
}

// Greedy tokens must be the argmax of a full (cache-free) forward over the sequence so far.
TEST(ArGenerateTest, GreedyDecodeEqualsArgmaxOfFullRecompute) {
  for (bool v2w : {false, true}) {
    const ArConfig c = Tiny(v2w);
    ArTransformer net = Net(c, 4);
    const TextContext text = Text(2, c.context_dim);
    at::manual_seed(2);
    const at::Tensor prompt = at::randint(0, c.vocab_size, {16}, at::kLong);
    GenerationOptions o = Quiet();
    o.sampling.temperature = 0;
    WFM_ASSERT_OK_AND_ASSIGN(GenerationResult r, GenerateTokens(*net, prompt, 3, v2w ? &text : nullptr, o));
    at::Tensor seq = r.tokens.reshape({1, -1});
    if (c.HasBov()) seq = at::cat({at::full({1, 1}, c.BovToken(), at::kLong), seq}, 1);
    at::NoGradGuard g;
    const at::Tensor logits = net->forward(seq, 0, nullptr, v2w ? &text : nullptr);
    const int64_t off = c.HasBov() ? 1 : 0;
    for (int64_t p = 16; p < 48; ++p)
      ASSERT_EQ(seq[0][p + off].item<int64_t>(), logits[0][p + off - 1].argmax().item<int64_t>())
          << (v2w ? "v2w" : "base") << " position " << p;
  }
}

TEST(ArGenerateTest, SlidingWindowKeepsTokensAndRepositionsThem) {
  // 7 latent frames from a 3-frame model: the window slides keeping 2 context frames (re-prefilled at 0..).
  const ArConfig c = Tiny(false);
  ArTransformer net = Net(c, 5);
  at::manual_seed(3);
  const at::Tensor prompt = at::randint(0, c.vocab_size, {16}, at::kLong);
  GenerationOptions o = Quiet();
  o.sampling.temperature = 0;
  std::vector<int64_t> frames;
  o.on_frame = [&](int64_t f, const at::Tensor& t) {
    EXPECT_EQ(t.sizes(), at::IntArrayRef({1, 4, 4}));
    frames.push_back(f);
    return absl::OkStatus();
  };
  WFM_ASSERT_OK_AND_ASSIGN(GenerationResult r, GenerateTokens(*net, prompt, 7, nullptr, o));
  EXPECT_EQ(frames, (std::vector<int64_t>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(r.window_slides, 4);  // frames 3, 4, 5, 6 each open a new window
  const at::Tensor flat = r.tokens.reshape({-1});
  at::NoGradGuard g;
  // Every token of frame f >= 3 is the argmax given frames f-2, f-1 (at positions 0..31) and frame f so far.
  for (int64_t f = 3; f < 7; ++f) {
    const at::Tensor window = flat.narrow(0, (f - 2) * 16, 48).unsqueeze(0);
    const at::Tensor logits = net->forward(window, 0, nullptr, nullptr);
    for (int64_t i = 0; i < 16; ++i)
      ASSERT_EQ(window[0][32 + i].item<int64_t>(), logits[0][31 + i].argmax().item<int64_t>())
          << "frame " << f << " token " << i;
  }
  // window_context_frames = 1 keeps a single frame
  o.window_context_frames = 1;
  o.on_frame = nullptr;
  WFM_ASSERT_OK_AND_ASSIGN(GenerationResult r1, GenerateTokens(*net, prompt, 5, nullptr, o));
  // frame 3 slides to window [2, 3, 4] (one context frame), which then holds frame 4 as well
  EXPECT_EQ(r1.window_slides, 1);
}

TEST(ArGenerateTest, GuidanceMixesConditionalAndUnconditionalLogits) {
  const ArConfig c = Tiny(true);
  ArTransformer net = Net(c, 6);
  const TextContext text = Text(4, c.context_dim), empty = Text(5, c.context_dim);
  at::manual_seed(4);
  const at::Tensor prompt = at::randint(0, c.vocab_size, {16}, at::kLong);
  GenerationOptions o = Quiet();
  o.sampling.temperature = 0;
  o.guidance = 3.0;
  WFM_ASSERT_OK_AND_ASSIGN(GenerationResult r, GenerateTokens(*net, prompt, 2, &text, o, &empty));
  at::Tensor seq = at::cat({at::full({1, 1}, c.BovToken(), at::kLong), r.tokens.reshape({1, -1})}, 1);
  at::NoGradGuard g;
  const at::Tensor lc = net->forward(seq, 0, nullptr, &text), lu = net->forward(seq, 0, nullptr, &empty);
  const at::Tensor mixed = lu + 3.0 * (lc - lu);
  for (int64_t p = 17; p < 33; ++p)
    ASSERT_EQ(seq[0][p].item<int64_t>(), mixed[0][p - 1].argmax().item<int64_t>()) << "position " << p;
}

TEST(ArGenerateTest, TextToWorldFromBovAlone) {
  const ArConfig c = Tiny(true);
  ArTransformer net = Net(c, 7);
  const TextContext text = Text(6, c.context_dim);
  GenerationOptions o = Quiet();
  o.seed = 1;
  WFM_ASSERT_OK_AND_ASSIGN(GenerationResult r, GenerateTokens(*net, at::empty({0}, at::kLong), 3, &text, o));
  EXPECT_EQ(r.tokens.sizes(), at::IntArrayRef({1, 3, 4, 4}));
  EXPECT_EQ(r.generated_tokens, 48);
  EXPECT_TRUE((r.tokens >= 0).all().item<bool>() && (r.tokens < c.vocab_size).all().item<bool>());
}

TEST(ArGenerateTest, BadInputIsAClearError) {
  const ArConfig base = Tiny(false), v2w = Tiny(true);
  ArTransformer nb = Net(base), nv = Net(v2w);
  const GenerationOptions o = Quiet();
  const at::Tensor frame = at::zeros({16}, at::kLong);
  const auto msg = [](const absl::StatusOr<GenerationResult>& r) { return std::string(r.status().message()); };
  EXPECT_NE(msg(GenerateTokens(*nb, at::zeros({10}, at::kLong), 3, nullptr, o)).find("whole number"),
            std::string::npos);
  EXPECT_NE(msg(GenerateTokens(*nb, at::full({16}, 9999, at::kLong), 3, nullptr, o)).find("outside the vocabulary"),
            std::string::npos);
  EXPECT_NE(msg(GenerateTokens(*nb, frame, 1, nullptr, o)).find("nothing to generate"), std::string::npos);
  EXPECT_NE(msg(GenerateTokens(*nb, at::empty({0}, at::kLong), 2, nullptr, o)).find("text_to_video"),
            std::string::npos);
  EXPECT_NE(msg(GenerateTokens(*nv, frame, 2, nullptr, o)).find("text context is required"), std::string::npos);
  TextContext dead{at::randn({1, 5, v2w.context_dim}), at::zeros({1, 5}, at::kBool)};
  EXPECT_NE(msg(GenerateTokens(*nv, frame, 2, &dead, o)).find("no valid token"), std::string::npos);
  TextContext narrow{at::randn({1, 5, 7}), at::Tensor()};
  EXPECT_NE(msg(GenerateTokens(*nv, frame, 2, &narrow, o)).find("context_dim"), std::string::npos);
  GenerationOptions stop = o;
  stop.on_frame = [](int64_t, const at::Tensor&) { return absl::CancelledError("enough"); };
  EXPECT_EQ(GenerateTokens(*nb, frame, 3, nullptr, stop).status().code(), absl::StatusCode::kCancelled);
}

}  // namespace
}  // namespace wfm::ar
