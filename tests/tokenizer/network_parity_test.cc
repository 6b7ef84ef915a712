// Parity of the native tokenizer networks with the Cosmos-Tokenize1 reference (../shared/fixtures/tokenizer):
// strict weight loading, latent / codes / indices / reconstructions at max|diff| <= 1e-4 * max|ref|, and the
// full-size presets' exact state-dict key sets, shapes and dtypes.
#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "test_support.h"
#include "wfm/core/safetensors.h"
#include "wfm/tokenizer/config.h"
#include "wfm/tokenizer/network.h"
#include "wfm/tokenizer/weights.h"

namespace wfm::tokenizer {
namespace {

constexpr double kTol = 1e-4;

std::string Fixture(const std::string& name, const std::string& suffix) {
  return testing::SharedPath("fixtures/tokenizer/" + name + suffix);
}

void ExpectClose(const at::Tensor& got, const at::Tensor& ref, const std::string& what) {
  ASSERT_EQ(got.sizes(), ref.sizes()) << what << ": shape";
  const double rel = testing::MaxRelDiff(got, ref);
  std::cout << "  " << what << ": max|diff|/max|ref| = " << rel << "\n";
  EXPECT_LE(rel, kTol) << what << ": max|diff| " << testing::MaxAbsDiff(got, ref) << " vs max|ref| "
                       << ref.abs().max().item<double>()
                       << "\nHINT: compare the layer outputs one by one with the reference (layers3d.py); a wrong "
                          "padding/band order/upsampling rule shows up as O(1) differences, float-order noise as <1e-5.";
}

class NetworkParityTest : public ::testing::TestWithParam<std::string> {};

TEST_P(NetworkParityTest, MatchesReference) {
  const std::string name = GetParam();
  WFM_REQUIRE_FILE(Fixture(name, ".json"));
  WFM_ASSERT_OK_AND_ASSIGN(TokenizerConfig config, TokenizerConfig::FromJsonFile(Fixture(name, ".json")));
  TokenizerNetwork net(config);
  WFM_ASSERT_OK_AND_ASSIGN(LoadReport report, LoadTokenizerWeights(*net, Fixture(name, ".weights.safetensors")));
  std::cout << report.Summary() << "\n";
  EXPECT_EQ(report.loaded + report.dropped, report.file_tensors) << "every checkpoint tensor is used";
  EXPECT_TRUE(report.unexpected.empty());
  net->eval();
  torch::NoGradGuard no_grad;
  WFM_ASSERT_OK_AND_ASSIGN(TensorMap io, ReadSafetensors(Fixture(name, ".io.safetensors")));
  const at::Tensor input = io.at("input");
  std::cout << name << " input " << input.sizes() << "\n";
  auto enc = net->Encode(input);
  if (config.is_discrete()) {
    const at::Tensor ref_idx = io.at("indices");
    ASSERT_EQ(enc.indices.sizes(), ref_idx.sizes());
    const int64_t flipped = enc.indices.ne(ref_idx).sum().item<int64_t>();
    std::cout << "  indices: " << flipped << " of " << ref_idx.numel() << " differ\n";
    EXPECT_EQ(flipped, 0) << "HINT: a flipped FSQ index means the pre-rounding values differ (bound/tanh) or the "
                             "code -> index basis/order is wrong";
    ExpectClose(enc.latent, io.at("codes"), "codes");
    ExpectClose(net->Decode(io.at("codes")), io.at("reconstruction"), "reconstruction (from reference codes)");
    ExpectClose(net->Decode(enc.latent), io.at("reconstruction"), "reconstruction (end to end)");
    ExpectClose(net->DecodeIndices(ref_idx), io.at("reconstruction_from_indices"), "reconstruction_from_indices");
  } else {
    ExpectClose(enc.latent, io.at("latent"), "latent");
    ExpectClose(net->Decode(io.at("latent")), io.at("reconstruction"), "reconstruction (from reference latent)");
    ExpectClose(net->Decode(enc.latent), io.at("reconstruction"), "reconstruction (end to end)");
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, NetworkParityTest,
                         ::testing::Values("CV8x8x8", "CV4x8x8", "DV8x16x16", "DV4x8x8", "CI8x8", "DI16x16"));

// The full-size published configs: the preset equals the fixture's reference config, and the network built from
// it has exactly the reference key set, shapes and dtypes (so the public checkpoints load strictly).
class FullKeysTest : public ::testing::TestWithParam<std::string> {};

std::string DtypeName(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float32";
    case at::kBFloat16: return "bfloat16";
    case at::kHalf: return "float16";
    case at::kInt: return "int32";
    case at::kLong: return "int64";
    default: return c10::toString(t);
  }
}

TEST_P(FullKeysTest, PresetMatchesReferenceKeySet) {
  const std::string name = GetParam();
  WFM_REQUIRE_FILE(Fixture(name, ".full_keys.json"));
  std::ifstream f(Fixture(name, ".full_keys.json"));
  nlohmann::json ref = nlohmann::json::parse(f);
  std::ifstream f2(Fixture(name, ".json"));
  const std::string preset_name = nlohmann::json::parse(f2).at("reference_config").get<std::string>();

  WFM_ASSERT_OK_AND_ASSIGN(TokenizerConfig preset, TokenizerConfig::Preset(preset_name));
  WFM_ASSERT_OK_AND_ASSIGN(TokenizerConfig from_json, TokenizerConfig::FromJson(ref));
  EXPECT_EQ(preset.ToJson(), from_json.ToJson()) << "preset " << preset_name << " differs from the reference config";
  WFM_ASSERT_OK_AND_ASSIGN(TokenizerConfig short_name, TokenizerConfig::Preset(name));
  EXPECT_EQ(short_name.ToJson(), preset.ToJson()) << name << " should name the " << preset_name << " preset";

  TokenizerNetwork net(preset);
  std::map<std::string, std::pair<std::vector<int64_t>, std::string>> ours;
  int64_t params = 0;
  for (const auto& p : net->named_parameters(true)) {
    ours[p.key()] = {p.value().sizes().vec(), DtypeName(p.value().scalar_type())};
    params += p.value().numel();
  }
  for (const auto& b : net->named_buffers(true)) ours[b.key()] = {b.value().sizes().vec(), DtypeName(b.value().scalar_type())};
  const auto& sd = ref.at("state_dict");
  EXPECT_EQ(ours.size(), sd.size());
  int mismatches = 0;
  for (auto it = sd.begin(); it != sd.end(); ++it) {
    auto o = ours.find(it.key());
    if (o == ours.end()) {
      ADD_FAILURE() << "missing key " << it.key();
      if (++mismatches > 20) break;
      continue;
    }
    const auto shape = it.value().at("shape").get<std::vector<int64_t>>();
    EXPECT_EQ(o->second.first, shape) << it.key();
    EXPECT_EQ(o->second.second, it.value().at("dtype").get<std::string>()) << it.key();
  }
  for (const auto& [key, v] : ours)
    if (!sd.contains(key)) ADD_FAILURE() << "extra key " << key;
  EXPECT_EQ(params, ref.at("num_parameters").get<int64_t>());
  std::cout << preset_name << ": " << ours.size() << " tensors, " << params << " parameters\n";
}

INSTANTIATE_TEST_SUITE_P(Fixtures, FullKeysTest,
                         ::testing::Values("CV8x8x8", "CV4x8x8", "DV8x16x16", "DV4x8x8", "CI8x8", "DI16x16"));

}  // namespace
}  // namespace wfm::tokenizer
