// RMSNorm, SwiGLU and GELU MLP against straightforward scalar formulas; parameter names of the reference.
#include <ATen/ATen.h>

#include <cmath>
#include <set>
#include <string>

#include "test_support.h"
#include "wfm/core/nn/mlp.h"
#include "wfm/core/nn/norm.h"

namespace wfm::nn {
namespace {

std::set<std::string> ParamNames(const torch::nn::Module& m) {
  std::set<std::string> names;
  for (const auto& p : m.named_parameters()) names.insert(p.key());
  return names;
}

// y[r, i] = x[r, i] / sqrt(mean_j x[r, j]^2 + eps) * w[i], in double.
at::Tensor RmsNormFormula(const at::Tensor& x2d, const at::Tensor& w, double eps) {
  const at::Tensor x = x2d.to(at::kDouble);
  at::Tensor y = at::empty_like(x);
  auto xa = x.accessor<double, 2>();
  auto ya = y.accessor<double, 2>();
  const auto wd = w.to(at::kDouble);
  auto wa = wd.accessor<double, 1>();
  for (int64_t r = 0; r < x.size(0); ++r) {
    double ms = 0;
    for (int64_t i = 0; i < x.size(1); ++i) ms += xa[r][i] * xa[r][i];
    ms /= static_cast<double>(x.size(1));
    for (int64_t i = 0; i < x.size(1); ++i) ya[r][i] = xa[r][i] / std::sqrt(ms + eps) * wa[i];
  }
  return y;
}

TEST(NnRMSNormTest, MatchesFormulaWithEpsAndWeight) {
  at::manual_seed(0);
  RMSNorm norm(RMSNormOptions(24).eps(1e-2));  // a large eps so that it visibly matters
  EXPECT_EQ(ParamNames(*norm), std::set<std::string>{"weight"});
  EXPECT_TRUE(at::equal(norm->weight, at::ones({24})));
  {
    at::NoGradGuard g;
    norm->weight.copy_(at::randn({24}));
  }
  const at::Tensor x = at::randn({3, 5, 24}) * 0.2;
  const at::Tensor y = norm(x);
  const at::Tensor ref = RmsNormFormula(x.reshape({15, 24}), norm->weight.detach(), 1e-2).reshape({3, 5, 24});
  const double d = testing::MaxRelDiff(y, ref);
  EXPECT_LT(d, 1e-6) << "RMSNorm differs from x/sqrt(mean(x^2)+eps)*w; HINT: eps inside the sqrt, mean over last dim";
}

TEST(NnRMSNormTest, Bf16InputKeepsFloat32Statistics) {
  at::manual_seed(1);
  const at::Tensor x = (at::randn({4, 64}) * 1000).to(at::kBFloat16);  // squares overflow bf16 precision
  const at::Tensor w = at::randn({64});
  const at::Tensor y = RmsNorm(x, w.to(at::kBFloat16), 1e-5);
  EXPECT_EQ(y.scalar_type(), at::kBFloat16);
  // reference order: normalise in float32, cast to bf16, multiply by the (bf16) weight
  const at::Tensor ref =
      RmsNormFormula(x.to(at::kFloat), at::ones({64}), 1e-5).to(at::kBFloat16) * w.to(at::kBFloat16);
  EXPECT_LT(testing::MaxRelDiff(y, ref), 1e-2);
}

TEST(NnRMSNormTest, NoAffineHasNoParameters) {
  RMSNorm norm(RMSNormOptions(8).elementwise_affine(false));
  EXPECT_TRUE(ParamNames(*norm).empty());
  const at::Tensor x = at::randn({2, 8});
  EXPECT_LT(testing::MaxRelDiff(norm(x), RmsNormFormula(x, at::ones({8}), 1e-6)), 1e-6);
}

TEST(NnMlpTest, SwiGLUNamesShapesAndFormula) {
  at::manual_seed(2);
  SwiGLU mlp(SwiGLUOptions(16, 40));
  EXPECT_EQ(ParamNames(*mlp), (std::set<std::string>{"w1.weight", "w2.weight", "w3.weight"}));
  EXPECT_EQ(mlp->w1->weight.sizes(), at::IntArrayRef({40, 16}));
  EXPECT_EQ(mlp->w2->weight.sizes(), at::IntArrayRef({16, 40}));
  EXPECT_EQ(mlp->w3->weight.sizes(), at::IntArrayRef({40, 16}));
  const at::Tensor x = at::randn({2, 3, 16}).to(at::kDouble);
  mlp->to(at::kDouble);
  const at::Tensor a = at::matmul(x, mlp->w1->weight.t()), b = at::matmul(x, mlp->w3->weight.t());
  const at::Tensor ref = at::matmul(a / (1 + at::exp(-a)) * b, mlp->w2->weight.t());  // silu(a) = a * sigmoid(a)
  EXPECT_LT(testing::MaxRelDiff(mlp(x), ref), 1e-12) << "HINT: w2(silu(w1 x) * w3 x)";
}

TEST(NnMlpTest, GeluMlpExactAndTanh) {
  at::manual_seed(3);
  GeluMlp mlp(GeluMlpOptions(8, 32).bias(true));
  EXPECT_EQ(ParamNames(*mlp), (std::set<std::string>{"layer1.weight", "layer1.bias", "layer2.weight", "layer2.bias"}));
  mlp->to(at::kDouble);
  const at::Tensor x = at::randn({5, 8}, at::kDouble);
  const at::Tensor h = at::matmul(x, mlp->layer1->weight.t()) + mlp->layer1->bias;
  const at::Tensor exact = 0.5 * h * (1 + at::erf(h / std::sqrt(2.0)));
  const at::Tensor ref = at::matmul(exact, mlp->layer2->weight.t()) + mlp->layer2->bias;
  EXPECT_LT(testing::MaxRelDiff(mlp(x), ref), 1e-12);

  GeluMlp tanh_mlp(GeluMlpOptions(8, 32).approximate("tanh"));
  EXPECT_EQ(ParamNames(*tanh_mlp), (std::set<std::string>{"layer1.weight", "layer2.weight"}));
  tanh_mlp->to(at::kDouble);
  const at::Tensor g = at::matmul(x, tanh_mlp->layer1->weight.t());
  const at::Tensor approx = 0.5 * g * (1 + at::tanh(std::sqrt(2.0 / M_PI) * (g + 0.044715 * g.pow(3))));
  EXPECT_LT(testing::MaxRelDiff(tanh_mlp(x), at::matmul(approx, tanh_mlp->layer2->weight.t())), 1e-12);
}

TEST(NnMlpTest, Llama3HiddenDim) {
  // Llama-3 8B / Cosmos AR 4B: dim 4096, multiple_of 1024, multiplier 1.3 -> 14336 (REFERENCE.md section 2).
  EXPECT_EQ(Llama3FfnHiddenDim(4096, 1024, 1.3), 14336);
  EXPECT_EQ(Llama3FfnHiddenDim(64, 32, 1.0), 192);  // int(2*256/3) = 170 -> 192
}

}  // namespace
}  // namespace wfm::nn
