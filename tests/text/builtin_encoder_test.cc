// The built-in text encoder: interface contract, save/load round trip (byte and SentencePiece tokens), joint
// training through Encode (gradients reach every parameter, a toy objective improves), bad files, and
// LoadTextEncoder dispatch.
#include "wfm/core/text/builtin_encoder.h"

#include <ATen/ATen.h>
#include <torch/optim/adam.h>

#include <filesystem>
#include <fstream>

#include "test_support.h"
#include "text_test_util.h"
#include "wfm/core/safetensors.h"

namespace wfm::text {
namespace {

namespace fs = std::filesystem;
using ::wfm::testing::MaxAbsDiff;
using ::wfm::testing::TempDir;

BuiltinTextEncoderOptions Tiny() {
  BuiltinTextEncoderOptions o;
  o.d_model = 32;
  o.num_layers = 2;
  o.num_heads = 2;
  o.d_kv = 16;
  o.d_ff = 64;
  o.max_length = 40;
  o.seed = 3;
  return o;
}

TEST(BuiltinTextEncoder, FollowsTheTextEncoderContract) {
  WFM_ASSERT_OK_AND_ASSIGN(auto enc, CreateBuiltinTextEncoder(Tiny()));
  EXPECT_EQ(enc->dim(), 32);
  EXPECT_EQ(enc->max_length(), 40);
  EXPECT_EQ(enc->config().vocab_size, 384);  // ByT5's byte vocabulary
  TextEncoder& iface = *enc;
  WFM_ASSERT_OK_AND_ASSIGN(TextEmbeddings e, iface.Encode({"a car", "", "a robot arm picks up a cup"}));
  ASSERT_EQ(e.embeddings.sizes(), (std::vector<int64_t>{3, 40, 32}));
  EXPECT_EQ(e.mask.sum(1).to(at::kLong)[0].item<int64_t>(), 6);  // 5 bytes + EOS
  EXPECT_EQ(e.mask.sum(1).to(at::kLong)[1].item<int64_t>(), 1);
  EXPECT_EQ(e.embeddings.masked_select(e.mask.logical_not().unsqueeze(-1)).abs().max().item<float>(), 0.0f);
  EXPECT_GT(e.embeddings[0][0].abs().sum().item<float>(), 0.0f);
  // Deterministic in eval mode, and seeded.
  WFM_ASSERT_OK_AND_ASSIGN(TextEmbeddings e2, enc->Encode({"a car", "", "a robot arm picks up a cup"}));
  EXPECT_TRUE(e.embeddings.equal(e2.embeddings));
  WFM_ASSERT_OK_AND_ASSIGN(auto same_seed, CreateBuiltinTextEncoder(Tiny()));
  EXPECT_EQ(same_seed->model_id(), enc->model_id());
  auto other = Tiny();
  other.seed = 4;
  WFM_ASSERT_OK_AND_ASSIGN(auto other_seed, CreateBuiltinTextEncoder(other));
  EXPECT_NE(other_seed->model_id(), enc->model_id());
}

TEST(BuiltinTextEncoder, SaveLoadRoundTrip) {
  const std::string dir = TempDir();
  WFM_ASSERT_OK_AND_ASSIGN(auto enc, CreateBuiltinTextEncoder(Tiny()));
  WFM_ASSERT_OK(SaveBuiltinTextEncoder(*enc, dir + "/enc.safetensors"));
  WFM_ASSERT_OK_AND_ASSIGN(auto file, SafetensorsFile::Open(dir + "/enc.safetensors"));
  EXPECT_TRUE(file->Contains("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"));
  EXPECT_EQ(file->metadata().at("wfm.tokenizer"), "byte");

  WFM_ASSERT_OK_AND_ASSIGN(auto back, LoadBuiltinTextEncoder(dir + "/enc.safetensors"));
  const std::vector<std::string> prompts = {"waves crash against the rocky shore", "x"};
  WFM_ASSERT_OK_AND_ASSIGN(TextEmbeddings a, enc->Encode(prompts));
  WFM_ASSERT_OK_AND_ASSIGN(TextEmbeddings b, back->Encode(prompts));
  EXPECT_EQ(MaxAbsDiff(a.embeddings, b.embeddings), 0.0);
  EXPECT_EQ(back->max_length(), 40);

  // LoadTextEncoder recognises the file (frozen, for inference).
  WFM_ASSERT_OK_AND_ASSIGN(auto generic, LoadTextEncoder(dir + "/enc.safetensors"));
  WFM_ASSERT_OK_AND_ASSIGN(TextEmbeddings c, generic->Encode(prompts));
  EXPECT_EQ(MaxAbsDiff(a.embeddings, c.embeddings), 0.0);
  EXPECT_FALSE(c.embeddings.requires_grad());
  EXPECT_EQ(generic->model_id(), back->model_id());
}

TEST(BuiltinTextEncoder, SentencePieceTokensRoundTrip) {
  if (!text::testing::HaveTool("spm_train")) GTEST_SKIP() << "spm_train not installed";
  const std::string dir = TempDir();
  std::string error;
  const std::string spm = text::testing::TrainSpm(dir, "captions", 150, "--pad_id=0 --eos_id=1 --unk_id=2 --bos_id=-1", &error);
  ASSERT_FALSE(spm.empty()) << error;
  auto o = Tiny();
  o.sentencepiece_model = spm;
  WFM_ASSERT_OK_AND_ASSIGN(auto enc, CreateBuiltinTextEncoder(o));
  const int64_t pieces = enc->tokenizer().vocab_size();
  EXPECT_EQ(enc->config().vocab_size, (pieces + 127) / 128 * 128);  // rounded up to a multiple of 128
  WFM_ASSERT_OK(SaveBuiltinTextEncoder(*enc, dir + "/enc.safetensors"));
  fs::remove(spm);  // the checkpoint carries the tokenizer
  WFM_ASSERT_OK_AND_ASSIGN(auto back, LoadBuiltinTextEncoder(dir + "/enc.safetensors"));
  WFM_ASSERT_OK_AND_ASSIGN(TextEmbeddings a, enc->Encode({"A drone flies over the station."}));
  WFM_ASSERT_OK_AND_ASSIGN(TextEmbeddings b, back->Encode({"A drone flies over the station."}));
  EXPECT_EQ(MaxAbsDiff(a.embeddings, b.embeddings), 0.0);
  EXPECT_LT(a.mask.sum().item<int64_t>(), 20);  // pieces, not bytes
}

// Joint training: the world model's loss reaches the text encoder through Encode.
TEST(BuiltinTextEncoder, TrainsThroughEncode) {
  WFM_ASSERT_OK_AND_ASSIGN(auto enc, CreateBuiltinTextEncoder(Tiny()));
  enc->module()->train();
  // Toy objective: the mean embedding of each caption should predict which of two classes it is.
  const std::vector<std::string> prompts = {"a red car", "a red truck", "a blue sea", "a blue sky"};
  const at::Tensor target = at::tensor({1.0f, 1.0f, -1.0f, -1.0f});
  at::manual_seed(0);
  auto head = (at::randn({32}) * 0.1).set_requires_grad(true);
  std::vector<at::Tensor> params = enc->module()->parameters();
  params.push_back(head);
  torch::optim::Adam opt(params, torch::optim::AdamOptions(3e-3));
  auto loss_of = [&](bool check_grads) {
    auto e = enc->Encode(prompts);
    EXPECT_TRUE(e.ok()) << e.status();
    const at::Tensor m = e->mask.to(at::kFloat).unsqueeze(-1);                       // [B, L, 1]
    const at::Tensor pooled = (e->embeddings * m).sum(1) / m.sum(1);                 // [B, D]
    const at::Tensor loss = (at::matmul(pooled, head) - target).pow(2).mean();
    if (check_grads) {
      EXPECT_TRUE(e->embeddings.requires_grad());
    }
    return loss;
  };
  float first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    opt.zero_grad();
    at::Tensor loss = loss_of(step == 0);
    loss.backward();
    if (step == 0) {
      first = loss.item<float>();
      for (const auto& p : enc->module()->named_parameters()) {
        if (p.key() == "shared.weight") continue;  // only used rows get gradients, checked below
        ASSERT_TRUE(p.value().grad().defined()) << p.key();
        EXPECT_GT(p.value().grad().abs().sum().item<float>(), 0.0f) << p.key() << " gets no gradient";
      }
      EXPECT_GT(enc->model()->shared->weight.grad()[ByteTokenizer::kOffset + 'a'].abs().sum().item<float>(), 0.0f);
    }
    opt.step();
    last = loss.item<float>();
  }
  enc->module()->eval();
  EXPECT_LT(last, 0.5f * first) << "first " << first << " last " << last;
}

TEST(BuiltinTextEncoder, BadFiles) {
  const std::string dir = TempDir();
  EXPECT_FALSE(LoadBuiltinTextEncoder(dir + "/missing.safetensors").ok());
  std::ofstream(dir + "/junk.safetensors") << "junk";
  EXPECT_FALSE(LoadBuiltinTextEncoder(dir + "/junk.safetensors").ok());
  WFM_ASSERT_OK(WriteSafetensors(dir + "/other.safetensors", {{"x", at::ones({2})}}));
  auto other = LoadBuiltinTextEncoder(dir + "/other.safetensors");
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.status().message().find("not a built-in text encoder"), std::string::npos) << other.status();

  // A checkpoint missing a tensor is rejected strictly.
  WFM_ASSERT_OK_AND_ASSIGN(auto enc, CreateBuiltinTextEncoder(Tiny()));
  WFM_ASSERT_OK(SaveBuiltinTextEncoder(*enc, dir + "/enc.safetensors"));
  WFM_ASSERT_OK_AND_ASSIGN(auto file, SafetensorsFile::Open(dir + "/enc.safetensors"));
  WFM_ASSERT_OK_AND_ASSIGN(TensorMap t, file->GetAll());
  t.erase("encoder.final_layer_norm.weight");
  WFM_ASSERT_OK(WriteSafetensors(dir + "/partial.safetensors", t, file->metadata()));
  auto partial = LoadBuiltinTextEncoder(dir + "/partial.safetensors");
  ASSERT_FALSE(partial.ok());
  EXPECT_NE(partial.status().message().find("    encoder.final_layer_norm.weight  F32"), std::string::npos)
      << partial.status();

  EXPECT_EQ(LoadTextEncoder(dir + "/nothing-here").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace wfm::text
