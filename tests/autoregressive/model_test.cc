// AR network behaviour: causality, KV-cache decode == full recompute at every position (chunked too), cache
// gathering for multiple futures, parameter names, presets and config / weight-file errors.
#include <ATen/ATen.h>

#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "ar_test_util.h"
#include "test_support.h"
#include "wfm/autoregressive/config.h"
#include "wfm/autoregressive/transformer.h"
#include "wfm/autoregressive/weights.h"
#include "wfm/core/safetensors.h"

namespace wfm::ar {
namespace {

TextContext Text(int64_t b, int64_t dim) {
  at::manual_seed(3);
  at::Tensor mask = at::ones({b, 5}, at::kBool);
  if (b > 1) mask[1].narrow(0, 3, 2).fill_(false);
  return TextContext{at::randn({b, 5, dim}), mask};
}

class ArModelTest : public ::testing::TestWithParam<bool> {};

TEST_P(ArModelTest, LaterTokensDoNotChangeEarlierLogits) {
  const ArConfig c = Tiny(GetParam());
  ArTransformer net = Net(c);
  at::NoGradGuard g;
  const TextContext text = Text(2, c.context_dim);
  at::manual_seed(0);
  const at::Tensor a = at::randint(0, c.vocab_size, {2, 40}, at::kLong);
  for (int64_t i : {0, 7, 20, 38}) {
    at::Tensor b = a.clone();
    b.narrow(1, i + 1, 40 - i - 1).random_(0, c.vocab_size);
    const at::Tensor la = net->forward(a, 0, nullptr, &text), lb = net->forward(b, 0, nullptr, &text);
    EXPECT_LT(testing::MaxAbsDiff(la.narrow(1, 0, i + 1), lb.narrow(1, 0, i + 1)), 1e-5)
        << "logits at positions <= " << i << " changed when later tokens changed (causal mask broken)";
    EXPECT_GT(testing::MaxAbsDiff(la.narrow(1, i + 1, 40 - i - 1), lb.narrow(1, i + 1, 40 - i - 1)), 1e-3);
  }
}

TEST_P(ArModelTest, KvCacheDecodeEqualsFullRecomputeAtEveryPosition) {
  const ArConfig c = Tiny(GetParam());
  ArTransformer net = Net(c, 2);
  at::NoGradGuard g;
  const TextContext text = Text(2, c.context_dim);
  at::manual_seed(1);
  const int64_t n = c.max_seq_len;
  const at::Tensor tokens = at::randint(0, c.vocab_size, {2, n}, at::kLong);
  const at::Tensor full = net->forward(tokens, 0, nullptr, &text);  // [2, n, V]
  // one token at a time from position 0
  KvCache cache = net->NewCache(2, n);
  for (int64_t p = 0; p < n; ++p) {
    const at::Tensor step = net->forward(tokens.narrow(1, p, 1), p, &cache, &text);
    const double d = testing::MaxRelDiff(step, full.narrow(1, p, 1));
    ASSERT_LE(d, 1e-4) << "position " << p << ": decode with cache != full recompute";
  }
  // uneven chunks (prefill 5, then 1, 7, 3, ...)
  cache.Reset();
  int64_t p = 0;
  for (int64_t chunk : {5, 1, 7, 3, 11, 2}) {
    chunk = std::min(chunk, n - p);
    const at::Tensor part = net->forward(tokens.narrow(1, p, chunk), p, &cache, &text);
    EXPECT_LE(testing::MaxRelDiff(part, full.narrow(1, p, chunk)), 1e-4) << "chunk at " << p;
    p += chunk;
  }
  // last_only gives the last row
  cache.Reset();
  const at::Tensor last = net->forward(tokens.narrow(1, 0, 9), 0, &cache, &text, /*last_only=*/true);
  EXPECT_LE(testing::MaxRelDiff(last, full.narrow(1, 8, 1)), 1e-4);
}

TEST_P(ArModelTest, GatheredCacheContinuesEveryRow) {
  const ArConfig c = Tiny(GetParam());
  ArTransformer net = Net(c, 3);
  at::NoGradGuard g;
  const TextContext text1 = Text(1, c.context_dim);
  at::manual_seed(2);
  const at::Tensor prompt = at::randint(0, c.vocab_size, {1, 16}, at::kLong);
  KvCache one = net->NewCache(1, c.max_seq_len);
  net->forward(prompt, 0, &one, &text1);
  KvCache three = one.Gather({0, 0, 0});
  EXPECT_EQ(three.batch(), 3);
  EXPECT_EQ(three.length(), 16);
  const at::Tensor next = at::randint(0, c.vocab_size, {3, 4}, at::kLong);
  const at::Tensor got = net->forward(next, 16, &three, &text1);
  const at::Tensor ref = net->forward(at::cat({prompt.expand({3, 16}), next}, 1), 0, nullptr, &text1).narrow(1, 16, 4);
  EXPECT_LE(testing::MaxRelDiff(got, ref), 1e-4);
}

// The fused decode step (plain C++ over the raw weights) against the ATen path it replaces, step by step after a
// prefill, for 3 rows and for 1 row, with both RoPE styles and fused wqkv: logits and the written K/V.
TEST_P(ArModelTest, FusedDecodeEqualsTheAtenPath) {
  for (const bool v1 : {false, true}) {
    ArConfig c = Tiny(GetParam());
    if (v1) c.pytorch_rope_version = "v1", c.fuse_qkv = true;
    ArTransformer net = Net(c, 4);
    at::NoGradGuard g;
    const TextContext text = Text(3, c.context_dim);
    at::manual_seed(6);
    const int64_t n = c.max_seq_len;
    const at::Tensor tokens = at::randint(0, c.vocab_size, {3, n}, at::kLong);
    for (const int64_t rows : {3, 1}) {
      const TextContext t{text.embeddings.narrow(0, 0, rows), text.mask.narrow(0, 0, rows)};
      KvCache fused = net->NewCache(rows, n), aten = net->NewCache(rows, n);
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
      if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        EXPECT_TRUE(net->FusedDecodeApplies(rows, fused)) << "the fused path should serve this step";
#endif
      net->forward(tokens.narrow(0, 0, rows).narrow(1, 0, 5), 0, &fused, &t);
      net->forward(tokens.narrow(0, 0, rows).narrow(1, 0, 5), 0, &aten, &t);
      double worst = 0;
      for (int64_t p = 5; p < n; ++p) {
        const at::Tensor step = tokens.narrow(0, 0, rows).narrow(1, p, 1);
        const at::Tensor a = net->forward(step, p, &fused, &t);
        net->set_fused_decode(false);
        EXPECT_FALSE(net->FusedDecodeApplies(rows, aten));
        const at::Tensor b = net->forward(step, p, &aten, &t);
        net->set_fused_decode(true);
        worst = std::max(worst, testing::MaxRelDiff(a, b));
      }
      EXPECT_LE(worst, 1e-5) << (v1 ? "v1 rope, wqkv" : "v2 rope") << ", " << rows
                             << " rows: fused decode logits != ATen path (max rel diff " << worst << ")";
      for (size_t i = 0; i < fused.layers.size(); ++i) {
        EXPECT_LE(testing::MaxRelDiff(fused.layers[i].k, aten.layers[i].k), 1e-5) << "layer " << i << " keys";
        EXPECT_LE(testing::MaxRelDiff(fused.layers[i].v, aten.layers[i].v), 1e-5) << "layer " << i << " values";
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Layouts, ArModelTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Video2World" : "Base"; });

TEST(ArModelTest, Bf16OutputHeadIsCloseAndFollowsWeightChanges) {
  const ArConfig c = Tiny(false);
  ArTransformer net = Net(c, 8);
  at::manual_seed(5);
  const at::Tensor tokens = at::randint(0, c.vocab_size, {2, 20}, at::kLong);
  at::NoGradGuard g;
  const at::Tensor exact = net->forward(tokens);
  net->set_output_dtype(at::kBFloat16);
  const at::Tensor fast = net->forward(tokens);
  EXPECT_EQ(fast.scalar_type(), at::kFloat);
  EXPECT_LT(testing::MaxRelDiff(fast, exact), 2e-2);
  EXPECT_GT(testing::MaxAbsDiff(fast, exact), 0.0) << "the bf16 head should actually be used";
  {  // the decode-sized kernel (<= 16 rows, fp32 input) = the fp32 product with the bf16-rounded weight
    const at::Tensor h = net->Hidden(tokens).narrow(1, 19, 1);  // [2, 1, dim]
    const at::Tensor ref = at::linear(h, net->output->weight.to(at::kBFloat16).to(at::kFloat));
    const at::Tensor last = net->forward(tokens, 0, nullptr, nullptr, /*last_only=*/true);
    EXPECT_LE(testing::MaxRelDiff(last, ref), 1e-4) << "bf16 decode kernel";
  }
  net->output->weight.mul_(2);  // the cached bf16 copy must be refreshed
  const at::Tensor doubled = net->forward(tokens);
  EXPECT_LT(testing::MaxRelDiff(doubled, exact * 2), 2e-2);
  net->set_output_dtype(std::nullopt);
  EXPECT_TRUE(at::allclose(net->forward(tokens), exact * 2, 1e-5, 1e-5));
}

// int8 weight-only output head (per-row scales): every logit within the quantisation bound
// |dot(x, w - q*s)| <= s/2 * sum|x| of the exact one, close overall, the same argmax on almost every row; the
// decode-sized kernel (<= 16 rows) and the dequantised fallback (more rows) agree; weight changes are followed.
TEST(ArModelTest, Int8OutputHeadIsWithinItsBoundAndKeepsTheArgmax) {
  const ArConfig c = Tiny(false);
  ArTransformer net = Net(c, 8);
  at::manual_seed(5);
  const at::Tensor tokens = at::randint(0, c.vocab_size, {2, 20}, at::kLong);
  at::NoGradGuard g;
  const at::Tensor exact = net->forward(tokens);                                   // [2, 20, V]
  const at::Tensor h = net->Hidden(tokens);                                        // [2, 20, dim]
  const at::Tensor scale = net->output->weight.abs().amax(1) / 127;                // [V]
  const at::Tensor bound = 0.5 * h.abs().sum(-1, true) * scale + 1e-5 * exact.abs() + 1e-6;
  net->set_output_dtype(at::kChar);
  const at::Tensor q = net->forward(tokens);  // 40 rows: the dequantised fallback
  const at::Tensor last = net->forward(tokens, 0, nullptr, nullptr, /*last_only=*/true);  // 2 rows: the kernel
  EXPECT_EQ(q.scalar_type(), at::kFloat);
  EXPECT_TRUE(((q - exact).abs() <= bound).all().item<bool>())
      << "int8 head exceeds its quantisation bound; max excess " << ((q - exact).abs() - bound).max().item<double>();
  const double rel = testing::MaxRelDiff(q, exact);
  EXPECT_LT(rel, 1e-2) << "int8 head max rel diff " << rel;
  EXPECT_GT(testing::MaxAbsDiff(q, exact), 0.0) << "the int8 head should actually be used";
  const double agree = (q.argmax(-1) == exact.argmax(-1)).to(at::kFloat).mean().item<double>();
  EXPECT_GE(agree, 0.9) << "argmax agreement " << agree;
  EXPECT_LE(testing::MaxRelDiff(last, q.narrow(1, 19, 1)), 1e-5) << "kernel != dequantised fallback";
  net->output->weight.mul_(2);
  EXPECT_LE(testing::MaxRelDiff(net->forward(tokens), exact * 2), 1e-2) << "stale int8 weight after a change";
  net->set_output_dtype(at::kBFloat16);  // switching the mode re-converts
  EXPECT_LE(testing::MaxRelDiff(net->forward(tokens, 0, nullptr, nullptr, true), exact.narrow(1, 19, 1) * 2), 2e-2);
  EXPECT_THROW(net->set_output_dtype(at::kLong), c10::Error);
}

// The decode GEMV (AVX2 kernel where available) against at::linear: 1..16 input rows, a weight whose row count is
// not a multiple of 4 (tail rows), non-contiguous input, and the fallbacks (K % 8 != 0, 17 rows, autograd).
TEST(ArModelTest, DecodeLinearEqualsLinear) {
  at::manual_seed(4);
  const at::Tensor w = at::randn({1003, 256});
  at::NoGradGuard no_grad;
  for (int64_t m : {1, 2, 3, 8, 16, 17}) {
    const at::Tensor x = at::randn({m, 1, 256});
    const double d = testing::MaxRelDiff(DecodeLinear(x, w), at::linear(x, w));
    EXPECT_LE(d, 1e-5) << m << " rows";
    EXPECT_EQ(DecodeLinear(x, w).sizes(), at::IntArrayRef({m, 1, 1003}));
  }
  const at::Tensor w264 = at::randn({77, 264});  // K % 16 != 0: the 8-lane kernel on AVX-512 machines too
  for (int64_t m : {1, 3}) {
    const at::Tensor x = at::randn({m, 264});
    EXPECT_LE(testing::MaxRelDiff(DecodeLinear(x, w264), at::linear(x, w264)), 1e-5) << m << " rows, K = 264";
  }
  const at::Tensor xt = at::randn({256, 2}).t();  // [2, 256], non-contiguous
  EXPECT_LE(testing::MaxRelDiff(DecodeLinear(xt, w), at::linear(xt, w)), 1e-5);
  const at::Tensor w100 = at::randn({37, 100}), x100 = at::randn({2, 100});
  EXPECT_LE(testing::MaxRelDiff(DecodeLinear(x100, w100), at::linear(x100, w100)), 1e-5);
  {
    at::AutoGradMode grad(true);
    const at::Tensor wg = w.clone().requires_grad_(true);
    DecodeLinear(at::randn({1, 256}), wg).sum().backward();
    EXPECT_TRUE(wg.grad().defined()) << "with autograd it is at::linear";
  }
}

TEST(ArModelTest, ParameterNamesFollowTheReference) {
  ArTransformer net(Tiny(true));
  std::set<std::string> names;
  for (const auto& p : net->named_parameters()) names.insert(p.key());
  for (const char* n : {"tok_embeddings.weight", "layers.0.attention.wq.weight", "layers.0.attention.wk.weight",
                        "layers.0.attention.wv.weight", "layers.0.attention.wo.weight",
                        "layers.1.attention.q_norm.weight", "layers.1.attention.k_norm.weight",
                        "layers.0.cross_attention.wq.weight", "layers.0.cross_attention.k_norm.weight",
                        "layers.0.cross_attention_norm.weight", "layers.1.feed_forward.w1.weight",
                        "layers.1.feed_forward.w2.weight", "layers.1.feed_forward.w3.weight",
                        "layers.0.attention_norm.weight", "layers.0.ffn_norm.weight", "norm.weight", "output.weight"})
    EXPECT_TRUE(names.count(n)) << n;
  EXPECT_TRUE(net->named_buffers().is_empty()) << "position tables must not enter the state dict";
  // text_to_video: <bov> row in the embedding (rounded up to 64), the output keeps the video vocabulary
  EXPECT_EQ(net->tok_embeddings->weight.size(0), 576);
  EXPECT_EQ(net->output->weight.size(0), 512);
  int64_t total = 0;
  for (const auto& p : net->parameters()) total += p.numel();
  EXPECT_EQ(total, net->config.NumParameters());
}

TEST(ArConfigTest, PresetsHaveThePublishedSizes) {
  const auto billions = [](const char* name) { return ArConfig::Preset(name)->NumParameters() / 1e9; };
  EXPECT_NEAR(billions("4B"), 4.0, 0.3);
  EXPECT_NEAR(billions("5B-Video2World"), 4.6, 0.4);
  EXPECT_NEAR(billions("12B"), 11.6, 0.6);
  EXPECT_NEAR(billions("13B-Video2World"), 13.3, 0.5);
  const ArConfig v2w = *ArConfig::Preset("5B-Video2World");
  EXPECT_EQ(v2w.max_seq_len, 12864);  // 5*40*64 + <bov>, padded to 64
  EXPECT_EQ(v2w.EmbeddingVocab(), 64064);
  EXPECT_EQ(ArConfig::Preset("12B")->HeadDim(), 128);
  EXPECT_TRUE(ArConfig::Preset("13B-Video2World")->apply_yarn);
  for (const auto& n : ArConfig::PresetNames()) WFM_EXPECT_OK(ArConfig::Preset(n));
  EXPECT_EQ(ArConfig::Preset("7B").status().code(), absl::StatusCode::kNotFound);
}

TEST(ArConfigTest, JsonRoundTripAndErrors) {
  const ArConfig a = *ArConfig::Preset("13B-Video2World");
  WFM_ASSERT_OK_AND_ASSIGN(ArConfig b, ArConfig::FromJson(a.ToJson()));
  EXPECT_EQ(a.ToJson(), b.ToJson());
  WFM_ASSERT_OK_AND_ASSIGN(ArConfig wrapped, ArConfig::FromJson(nlohmann::json{{"params", a.ToJson()}}));
  EXPECT_EQ(wrapped.ToJson(), a.ToJson());

  nlohmann::json j = a.ToJson();
  j["n_kv_heads"] = 5;
  EXPECT_NE(ArConfig::FromJson(j).status().message().find("n_kv_heads"), std::string::npos);
  j = a.ToJson();
  j["dim"] = "big";
  EXPECT_EQ(ArConfig::FromJson(j).status().code(), absl::StatusCode::kInvalidArgument);
  j = a.ToJson();
  j["tensor_model_parallel_size"] = 4;
  EXPECT_FALSE(ArConfig::FromJson(j).ok());
  EXPECT_EQ(ArConfig::FromJsonFile("/nonexistent/c.json").status().code(), absl::StatusCode::kNotFound);
  const std::string bad = testing::TempDir() + "/bad.json";
  { std::ofstream(bad) << "{ not json"; }
  EXPECT_EQ(ArConfig::FromJsonFile(bad).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ArWeightsTest, SaveLoadRoundTripAndStrictErrors) {
  const ArConfig c = Tiny(false);
  ArTransformer a = Net(c, 5), b = Net(c, 6);
  const std::string path = testing::TempDir() + "/w.safetensors";
  WFM_ASSERT_OK(SaveWeights(*a, path));
  WFM_ASSERT_OK(LoadWeights(*b, path));
  for (const auto& p : a->named_parameters())
    EXPECT_TRUE(at::equal(p.value(), b->named_parameters()[p.key()])) << p.key();

  // missing + unexpected + wrong vocabulary, all reported at once
  WFM_ASSERT_OK_AND_ASSIGN(TensorMap sd, ReadSafetensors(path));
  sd.erase("norm.weight");
  sd["extra.weight"] = at::zeros({2});
  sd["tok_embeddings.weight"] = at::zeros({1000, c.dim});
  const std::string broken = testing::TempDir() + "/broken.safetensors";
  WFM_ASSERT_OK(WriteSafetensors(broken, sd));
  const absl::Status s = LoadWeights(*b, broken);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  for (const char* part : {"norm.weight", "extra.weight", "vocabulary mismatch", "broken.safetensors"})
    EXPECT_NE(s.message().find(part), std::string::npos) << part << " not in: " << s;
  EXPECT_FALSE(LoadWeights(*b, testing::TempDir() + "/none.safetensors").ok());
}

}  // namespace
}  // namespace wfm::ar
