// Scaled dot-product attention against a scalar-loop reference: GQA, causal (incl. decode alignment), boolean and
// additive masks, T5-style bias and scale, and the SDPA path against the explicit math path.
#include <ATen/ATen.h>

#include <cmath>
#include <limits>
#include <vector>

#include "test_support.h"
#include "wfm/core/nn/attention.h"

namespace wfm::nn {
namespace {

// out[b, h, i] = sum_j softmax_j(scale * q.k + bias[b,h,i,j] + (allowed ? 0 : -inf)) v[b, h/rep, j], in double.
// `allowed_fn(b, h, i, j)` and `bias_fn` describe the masks; keys j > Sk - Sq + i are excluded when causal.
template <typename Allowed, typename Bias>
at::Tensor Reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, bool causal, double scale,
                     Allowed allowed_fn, Bias bias_fn) {
  const at::Tensor qd = q.to(at::kDouble), kd = k.to(at::kDouble), vd = v.to(at::kDouble);
  const int64_t B = q.size(0), Hq = q.size(1), Sq = q.size(2), D = q.size(3);
  const int64_t Hkv = k.size(1), Sk = k.size(2), Dv = v.size(3), rep = Hq / Hkv;
  at::Tensor out = at::zeros({B, Hq, Sq, Dv}, at::kDouble);
  auto qa = qd.accessor<double, 4>();
  auto ka = kd.accessor<double, 4>();
  auto va = vd.accessor<double, 4>();
  auto oa = out.accessor<double, 4>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hq; ++h)
      for (int64_t i = 0; i < Sq; ++i) {
        std::vector<double> s(Sk, -std::numeric_limits<double>::infinity());
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < Sk; ++j) {
          if (causal && j > Sk - Sq + i) continue;
          if (!allowed_fn(b, h, i, j)) continue;
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += qa[b][h][i][d] * ka[b][h / rep][j][d];
          s[j] = dot * scale + bias_fn(b, h, i, j);
          mx = std::max(mx, s[j]);
        }
        double z = 0;
        for (int64_t j = 0; j < Sk; ++j) z += std::exp(s[j] - mx);
        for (int64_t j = 0; j < Sk; ++j) {
          const double p = std::exp(s[j] - mx) / z;
          for (int64_t d = 0; d < Dv; ++d) oa[b][h][i][d] += p * va[b][h / rep][j][d];
        }
      }
  return out;
}

const auto kAll = [](int64_t, int64_t, int64_t, int64_t) { return true; };
const auto kNoBias = [](int64_t, int64_t, int64_t, int64_t) { return 0.0; };

std::vector<AttentionBackend> Backends() {
  std::vector<AttentionBackend> b{AttentionBackend::kMath};
  if (SdpaAvailable()) b.push_back(AttentionBackend::kSdpa);
  return b;
}

const char* Name(AttentionBackend b) { return b == AttentionBackend::kSdpa ? "sdpa" : "math"; }

TEST(NnAttentionTest, PlainAndCausalSelfAttention) {
  at::manual_seed(0);
  const at::Tensor q = at::randn({2, 3, 7, 8}), k = at::randn({2, 3, 7, 8}), v = at::randn({2, 3, 7, 5});
  for (auto be : Backends()) {
    for (bool causal : {false, true}) {
      const at::Tensor out = Attention(q, k, v, AttentionOptions().causal(causal).backend(be));
      const at::Tensor ref = Reference(q, k, v, causal, 1 / std::sqrt(8.0), kAll, kNoBias);
      EXPECT_LT(testing::MaxRelDiff(out, ref), 1e-5) << Name(be) << " causal=" << causal;
    }
  }
}

TEST(NnAttentionTest, GroupedQueryHeadsReadTheirKvHead) {
  at::manual_seed(1);
  // 8 query heads over 2 KV heads: heads 0-3 read KV 0, heads 4-7 read KV 1 (repeat_interleave).
  const at::Tensor q = at::randn({2, 8, 5, 16}), k = at::randn({2, 2, 5, 16}), v = at::randn({2, 2, 5, 16});
  for (auto be : Backends()) {
    const at::Tensor out = Attention(q, k, v, AttentionOptions().causal(true).backend(be));
    EXPECT_LT(testing::MaxRelDiff(out, Reference(q, k, v, true, 0.25, kAll, kNoBias)), 1e-5) << Name(be);
    const at::Tensor expanded =
        Attention(q, RepeatKvHeads(k, 4), RepeatKvHeads(v, 4), AttentionOptions().causal(true).backend(be));
    EXPECT_LT(testing::MaxRelDiff(out, expanded), 1e-6) << Name(be);
  }
}

TEST(NnAttentionTest, CausalDecodeAlignsQueriesToTheEndOfTheKeys) {
  at::manual_seed(2);
  // 3 new queries at absolute positions 4, 5, 6 over 7 cached keys (prefill-then-decode of a KV cache).
  const at::Tensor q = at::randn({1, 4, 3, 8}), k = at::randn({1, 2, 7, 8}), v = at::randn({1, 2, 7, 8});
  for (auto be : Backends()) {
    const at::Tensor out = Attention(q, k, v, AttentionOptions().causal(true).backend(be));
    EXPECT_LT(testing::MaxRelDiff(out, Reference(q, k, v, true, 1 / std::sqrt(8.0), kAll, kNoBias)), 1e-5)
        << Name(be) << " HINT: query i must see keys 0..Sk-Sq+i (bottom-right alignment)";
    // A single query needs no mask at all.
    const at::Tensor one = Attention(q.narrow(2, 2, 1), k, v, AttentionOptions().causal(true).backend(be));
    EXPECT_LT(testing::MaxRelDiff(one, out.narrow(2, 2, 1)), 1e-6) << Name(be);
  }
}

TEST(NnAttentionTest, BooleanAndAdditiveMasksAgree) {
  at::manual_seed(3);
  const at::Tensor q = at::randn({2, 4, 6, 8}), k = at::randn({2, 2, 5, 8}), v = at::randn({2, 2, 5, 8});
  // Per-batch key-padding mask [B, 1, 1, Sk]: batch 1 has 3 valid keys (a text context mask).
  at::Tensor keep = at::ones({2, 1, 1, 5}, at::kBool);
  keep[1].narrow(-1, 3, 2).fill_(false);
  const at::Tensor additive = at::zeros({2, 1, 1, 5}).masked_fill(keep.logical_not(), -INFINITY);
  const auto allowed = [&](int64_t b, int64_t, int64_t, int64_t j) { return b == 0 || j < 3; };
  const at::Tensor ref = Reference(q, k, v, false, 1 / std::sqrt(8.0), allowed, kNoBias);
  for (auto be : Backends()) {
    EXPECT_LT(testing::MaxRelDiff(Attention(q, k, v, AttentionOptions().mask(keep).backend(be)), ref), 1e-5)
        << Name(be);
    EXPECT_LT(testing::MaxRelDiff(Attention(q, k, v, AttentionOptions().mask(additive).backend(be)), ref), 1e-5)
        << Name(be);
  }
}

TEST(NnAttentionTest, T5BiasNoScaleWithMaskAndCausal) {
  at::manual_seed(4);
  const at::Tensor q = at::randn({2, 4, 6, 8}) * 0.3, k = at::randn({2, 4, 6, 8}) * 0.3, v = at::randn({2, 4, 6, 8});
  const at::Tensor bias = at::randn({1, 4, 6, 6});  // relative position bias [1, H, Sq, Sk]
  at::Tensor keep = at::ones({2, 1, 1, 6}, at::kBool);
  keep[0].narrow(-1, 4, 2).fill_(false);
  auto ba = bias.accessor<float, 4>();
  const auto allowed = [&](int64_t b, int64_t, int64_t, int64_t j) { return b == 1 || j < 4; };
  const auto bias_fn = [&](int64_t, int64_t h, int64_t i, int64_t j) { return static_cast<double>(ba[0][h][i][j]); };
  const at::Tensor ref = Reference(q, k, v, true, 1.0, allowed, bias_fn);
  for (auto be : Backends()) {
    const at::Tensor out =
        Attention(q, k, v, AttentionOptions().bias(bias).mask(keep).causal(true).scale(1.0).backend(be));
    EXPECT_LT(testing::MaxRelDiff(out, ref), 1e-5) << Name(be);
  }
}

TEST(NnAttentionTest, SdpaAndMathGiveTheSameNumbers) {
  if (!SdpaAvailable()) GTEST_SKIP() << "at::scaled_dot_product_attention needs LibTorch >= 2.0";
  at::manual_seed(5);
  const at::Tensor q = at::randn({2, 8, 33, 32}), k = at::randn({2, 2, 40, 32}), v = at::randn({2, 2, 40, 32});
  const at::Tensor bias = at::randn({1, 8, 33, 40});
  for (bool causal : {false, true}) {
    auto o = AttentionOptions().causal(causal).bias(bias);
    const at::Tensor a = Attention(q, k, v, o.backend(AttentionBackend::kMath));
    const at::Tensor b = Attention(q, k, v, o.backend(AttentionBackend::kSdpa));
    EXPECT_LT(testing::MaxRelDiff(b, a), 1e-5) << "causal=" << causal;
  }
}

TEST(NnAttentionTest, SdpaUnavailableIsAClearError) {
  if (SdpaAvailable()) GTEST_SKIP() << "SDPA exists in this LibTorch";
  const at::Tensor q = at::randn({1, 1, 2, 4});
  try {
    Attention(q, q, q, AttentionOptions().backend(AttentionBackend::kSdpa));
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("LibTorch >= 2.0"), std::string::npos) << e.what();
  }
}

TEST(NnAttentionTest, Bf16CloseToFloat32) {
  at::manual_seed(6);
  const at::Tensor q = at::randn({1, 4, 9, 16}), k = at::randn({1, 2, 9, 16}), v = at::randn({1, 2, 9, 16});
  const at::Tensor ref = Attention(q, k, v, AttentionOptions().causal(true));
  const at::Tensor low = Attention(q.to(at::kBFloat16), k.to(at::kBFloat16), v.to(at::kBFloat16),
                                   AttentionOptions().causal(true).backend(AttentionBackend::kMath));
  EXPECT_EQ(low.scalar_type(), at::kBFloat16);
  EXPECT_LT(testing::MaxRelDiff(low, ref), 3e-2);
}

TEST(NnAttentionTest, GradientsMatchUnfusedExpression) {
  at::manual_seed(7);
  const at::Tensor q = at::randn({1, 4, 5, 8}).set_requires_grad(true),
                   k = at::randn({1, 2, 5, 8}).set_requires_grad(true),
                   v = at::randn({1, 2, 5, 8}).set_requires_grad(true);
  Attention(q, k, v, AttentionOptions().causal(true).backend(AttentionBackend::kMath)).square().sum().backward();
  const at::Tensor gq = q.grad().clone(), gk = k.grad().clone(), gv = v.grad().clone();
  q.mutable_grad().zero_();
  k.mutable_grad().zero_();
  v.mutable_grad().zero_();
  const at::Tensor kk = k.repeat_interleave(2, 1), vv = v.repeat_interleave(2, 1);
  const at::Tensor s = at::matmul(q, kk.transpose(-2, -1)) / std::sqrt(8.0) +
                       at::full({5, 5}, -INFINITY).triu(1);
  at::matmul(at::softmax(s, -1), vv).square().sum().backward();
  EXPECT_LT(testing::MaxRelDiff(gq, q.grad()), 1e-5);
  EXPECT_LT(testing::MaxRelDiff(gk, k.grad()), 1e-5);
  EXPECT_LT(testing::MaxRelDiff(gv, v.grad()), 1e-5);
}

TEST(NnAttentionTest, ShapeMistakesAreChecked) {
  const at::Tensor q = at::randn({1, 3, 2, 4}), k = at::randn({1, 2, 2, 4});
  EXPECT_THROW(Attention(q, k, k), c10::Error);  // 3 query heads over 2 KV heads
  EXPECT_THROW(Attention(at::randn({1, 2, 5, 4}), k, k, AttentionOptions().causal(true)), c10::Error);
  EXPECT_THROW(Attention(at::randn({2, 4}), k, k), c10::Error);
}

}  // namespace
}  // namespace wfm::nn
