// Parity with the Cosmos-Predict1 AR network (../shared/fixtures/autoregressive, README there): strict weight
// load, full forward and prefill + KV-cache decode logits, RoPE and absolute position tables.
// Tolerance: max|diff| <= 1e-4 * max|ref| on logits (what a faithful float32 implementation meets).
#include <ATen/ATen.h>

#include <iostream>
#include <string>
#include <vector>

#include "test_support.h"
#include "wfm/autoregressive/config.h"
#include "wfm/autoregressive/transformer.h"
#include "wfm/autoregressive/weights.h"
#include "wfm/core/safetensors.h"

namespace wfm::ar {
namespace {

struct Case {
  ArConfig config;
  ArTransformer net{nullptr};
  TensorMap io;
  TextContext context;
};

void LoadCase(const std::string& name, Case* c) {
  const std::string dir = testing::SharedPath("fixtures/autoregressive/");
  WFM_ASSERT_OK_AND_ASSIGN(c->config, ArConfig::FromJsonFile(dir + name + ".json"));
  c->net = ArTransformer(c->config);
  c->net->eval();
  WFM_ASSERT_OK(LoadWeights(*c->net, dir + name + ".weights.safetensors"));
  WFM_ASSERT_OK_AND_ASSIGN(c->io, ReadSafetensors(dir + name + ".io.safetensors"));
  if (c->io.count("context")) c->context = TextContext{c->io.at("context"), c->io.at("context_mask")};
}

class ArParityTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ArParityTest, FullForwardLogits) {
  const std::string path = testing::SharedPath("fixtures/autoregressive/" + GetParam() + ".io.safetensors");
  WFM_REQUIRE_FILE(path);
  Case c;
  ASSERT_NO_FATAL_FAILURE(LoadCase(GetParam(), &c));
  at::NoGradGuard g;
  const at::Tensor logits =
      c.net->forward(c.io.at("tokens"), 0, nullptr, c.context.embeddings.defined() ? &c.context : nullptr);
  const double d = testing::MaxRelDiff(logits, c.io.at("logits"));
  std::cout << "[ parity ] " << GetParam() << " full forward max|diff|/max|ref| = " << d << "\n";
  EXPECT_LE(d, 1e-4) << GetParam() << " full forward max|diff|/max|ref| = " << d
                     << " HINT: check QK-norm eps, the abs embedding before every block, the context mask";
}

TEST_P(ArParityTest, PrefillThenKvCacheStepsLogits) {
  const std::string path = testing::SharedPath("fixtures/autoregressive/" + GetParam() + ".io.safetensors");
  WFM_REQUIRE_FILE(path);
  Case c;
  ASSERT_NO_FATAL_FAILURE(LoadCase(GetParam(), &c));
  at::NoGradGuard g;
  const at::Tensor& tokens = c.io.at("tokens");
  const int64_t b = tokens.size(0), n = tokens.size(1), half = n / 2;
  const TextContext* ctx = c.context.embeddings.defined() ? &c.context : nullptr;
  KvCache cache = c.net->NewCache(b, c.config.max_seq_len);
  std::vector<at::Tensor> parts{c.net->forward(tokens.narrow(1, 0, half), 0, &cache, ctx)};
  for (int64_t p = half; p < n; ++p) parts.push_back(c.net->forward(tokens.narrow(1, p, 1), p, &cache, ctx));
  EXPECT_EQ(cache.length(), n);
  const at::Tensor logits = at::cat(parts, 1);
  const double d = testing::MaxRelDiff(logits, c.io.at("logits_incremental"));
  std::cout << "[ parity ] " << GetParam() << " incremental max|diff|/max|ref| = " << d << "\n";
  EXPECT_LE(d, 1e-4) << GetParam() << " incremental max|diff|/max|ref| = " << d
                     << " HINT: RoPE rows must follow the absolute position; keys only over the filled cache";
}

TEST_P(ArParityTest, PositionTables) {
  const std::string path = testing::SharedPath("fixtures/autoregressive/" + GetParam() + ".io.safetensors");
  WFM_REQUIRE_FILE(path);
  Case c;
  ASSERT_NO_FATAL_FAILURE(LoadCase(GetParam(), &c));
  const int64_t n = c.io.at("rope_cos").size(1), d = c.config.HeadDim();
  EXPECT_LT(testing::MaxAbsDiff(c.net->rope_cos().narrow(0, 0, n).view({1, n, 1, d}), c.io.at("rope_cos")), 1e-6);
  EXPECT_LT(testing::MaxAbsDiff(c.net->rope_sin().narrow(0, 0, n).view({1, n, 1, d}), c.io.at("rope_sin")), 1e-6);
  if (c.io.count("abs_pos_emb")) {
    ASSERT_TRUE(c.net->abs_pos_emb().defined());
    EXPECT_EQ(testing::MaxAbsDiff(c.net->abs_pos_emb().narrow(0, 0, n).unsqueeze(0), c.io.at("abs_pos_emb")), 0.0);
  } else {
    EXPECT_FALSE(c.net->abs_pos_emb().defined());
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ArParityTest, ::testing::Values("ar_base", "ar_v2w"));

}  // namespace
}  // namespace wfm::ar
