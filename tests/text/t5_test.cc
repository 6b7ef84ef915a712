// T5 encoder: relative position buckets (hand-checked table), config presets / config.json, parity with the
// plain-torch reference of t5_reference.py (ReLU and gated-GELU, every checkpoint layout), strict loading errors,
// padding invariance, and the text path (SentencePiece -> encoder) including its bad inputs.
#include "wfm/core/text/t5.h"

#include <ATen/ATen.h>

#include <filesystem>
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "test_support.h"
#include "text_test_util.h"
#include "wfm/core/safetensors.h"

namespace wfm::text {
namespace {

namespace fs = std::filesystem;
using ::wfm::testing::MaxAbsDiff;
using ::wfm::testing::MaxRelDiff;
using ::wfm::testing::TempDir;

struct BucketCase {
  int64_t relative_position;
  bool bidirectional;
  int64_t num_buckets, max_distance, bucket;
};

// Worked by hand from T5Attention._relative_position_bucket (bucket = sign offset + n if n < max_exact, else
// max_exact + floor(log(n / max_exact) / log(max_distance / max_exact) * (num_buckets' - max_exact)), clamped to
// num_buckets' - 1; num_buckets' = num_buckets / 2 when bidirectional) and re-checked with torch in
// /usr/bin/python3. Bidirectional 32/128: half = 16, max_exact = 8, log range 8..128 over 8 buckets.
const BucketCase kBucketCases[] = {
    {0, true, 32, 128, 0},      {-1, true, 32, 128, 1},     {1, true, 32, 128, 17},     {-7, true, 32, 128, 7},
    {7, true, 32, 128, 23},     {-8, true, 32, 128, 8},     {8, true, 32, 128, 24},     {-15, true, 32, 128, 9},
    {-16, true, 32, 128, 10},   {16, true, 32, 128, 26},    {20, true, 32, 128, 26},    {-32, true, 32, 128, 12},
    {-64, true, 32, 128, 14},   {64, true, 32, 128, 30},    {-100, true, 32, 128, 15},  {-128, true, 32, 128, 15},
    {-1000, true, 32, 128, 15}, {1000, true, 32, 128, 31},
    // Unidirectional (decoder) 32/128: max_exact 16, log range 16..128 over 16 buckets; positive -> 0.
    {5, false, 32, 128, 0},     {-5, false, 32, 128, 5},    {-16, false, 32, 128, 16},  {-20, false, 32, 128, 17},
    {-64, false, 32, 128, 26},  {-127, false, 32, 128, 31}, {-200, false, 32, 128, 31},
    // Bidirectional 8/20: half 4, max_exact 2, log range 2..20 over 2 buckets.
    {1, true, 8, 20, 5},        {-1, true, 8, 20, 1},       {2, true, 8, 20, 6},        {-5, true, 8, 20, 2},
    {-10, true, 8, 20, 3},      {-19, true, 8, 20, 3},      {-20, true, 8, 20, 3},      {100, true, 8, 20, 7},
};

TEST(T5RelativePositionBucket, HandCheckedTable) {
  for (const auto& c : kBucketCases) {
    EXPECT_EQ(RelativePositionBucket(c.relative_position, c.bidirectional, c.num_buckets, c.max_distance), c.bucket)
        << "relative position " << c.relative_position << (c.bidirectional ? " bidirectional " : " causal ")
        << c.num_buckets << "/" << c.max_distance;
    const at::Tensor t = RelativePositionBuckets(at::full({1}, c.relative_position, at::kLong), c.bidirectional,
                                                 c.num_buckets, c.max_distance);
    EXPECT_EQ(t.item<int64_t>(), c.bucket) << "tensor version, relative position " << c.relative_position;
  }
}

TEST(T5RelativePositionBucket, ScalarAndTensorAgreeEverywhere) {
  const at::Tensor rel = at::arange(-3000, 3000, at::kLong);
  for (bool bidirectional : {true, false}) {
    for (auto [nb, md] : {std::pair<int64_t, int64_t>{32, 128}, {64, 256}, {8, 20}, {32, 20}}) {
      const at::Tensor t = RelativePositionBuckets(rel, bidirectional, nb, md);
      for (int64_t i = 0; i < rel.numel(); i += 7) {
        ASSERT_EQ(t[i].item<int64_t>(), RelativePositionBucket(i - 3000, bidirectional, nb, md))
            << "relative position " << i - 3000 << " " << nb << "/" << md << " bidirectional " << bidirectional;
      }
      EXPECT_LT(t.max().item<int64_t>(), nb);
      EXPECT_GE(t.min().item<int64_t>(), 0);
    }
  }
}

TEST(T5Config, PresetsAndJson) {
  WFM_ASSERT_OK_AND_ASSIGN(T5Config xxl, T5Config::Preset("google/t5-v1_1-xxl"));
  EXPECT_EQ(xxl.d_model, 4096);
  EXPECT_EQ(xxl.d_ff, 10240);
  EXPECT_TRUE(xxl.is_gated_act());
  EXPECT_EQ(xxl.dense_act_fn(), "gelu_new");
  WFM_ASSERT_OK_AND_ASSIGN(T5Config t11, T5Config::Preset("google-t5/t5-11b"));  // Cosmos' text encoder
  EXPECT_EQ(t11.d_model, 1024);
  EXPECT_EQ(t11.inner_dim(), 128 * 128);
  EXPECT_FALSE(t11.is_gated_act());
  EXPECT_EQ(t11.dense_act_fn(), "relu");
  EXPECT_EQ(T5Config::PresetNames().size(), 15u);
  EXPECT_EQ(T5Config::Preset("t5-huge").status().code(), absl::StatusCode::kNotFound);

  // A t5-small config.json as published (older transformers: n_positions, no max_distance).
  const auto j = nlohmann::json::parse(R"({"architectures": ["T5ForConditionalGeneration"], "d_ff": 2048, "d_kv": 64,
      "d_model": 512, "decoder_start_token_id": 0, "dropout_rate": 0.1, "eos_token_id": 1, "initializer_factor": 1.0,
      "is_encoder_decoder": true, "layer_norm_epsilon": 1e-06, "model_type": "t5", "n_positions": 512,
      "num_heads": 8, "num_layers": 6, "pad_token_id": 0, "relative_attention_num_buckets": 32,
      "vocab_size": 32128})");
  WFM_ASSERT_OK_AND_ASSIGN(T5Config small, T5Config::FromJson(j));
  EXPECT_EQ(small.relative_attention_max_distance, 128);
  EXPECT_EQ(small.feed_forward_proj, "relu");
  WFM_ASSERT_OK_AND_ASSIGN(T5Config again, T5Config::FromJson(small.ToJson()));
  EXPECT_EQ(again.ToJson(), small.ToJson());

  // Newer configs also carry the parsed activation, which wins (PretrainedConfig sets kwargs last).
  auto flan = nlohmann::json::parse(R"({"model_type": "t5", "feed_forward_proj": "gated-gelu",
                                        "dense_act_fn": "gelu_new", "is_gated_act": true})");
  WFM_ASSERT_OK_AND_ASSIGN(T5Config f, T5Config::FromJson(flan));
  EXPECT_TRUE(f.is_gated_act());
  EXPECT_EQ(f.dense_act_fn(), "gelu_new");

  EXPECT_EQ(T5Config::FromJson(nlohmann::json::parse(R"({"model_type": "umt5"})")).status().code(),
            absl::StatusCode::kUnimplemented);
  EXPECT_FALSE(T5Config::FromJson(nlohmann::json::parse(R"({"model_type": "bert"})")).ok());
  EXPECT_FALSE(T5Config::FromJson(nlohmann::json::parse(R"({"feed_forward_proj": "gated-gelu-x"})")).ok());
  EXPECT_FALSE(T5Config::FromJson(nlohmann::json::parse(R"({"feed_forward_proj": "tanh"})")).ok());
  EXPECT_FALSE(T5Config::FromJson(nlohmann::json::parse(R"({"d_model": "big"})")).ok());
  EXPECT_FALSE(T5Config::FromJson(nlohmann::json::parse(R"({"num_heads": 0})")).ok());
}

TEST(T5Model, StateDictNamesMatchTheReference) {
  T5Config c;
  c.num_layers = 2;
  c.feed_forward_proj = "gated-gelu";
  T5EncoderModel m(c);
  std::set<std::string> names;
  for (const auto& p : m->named_parameters()) names.insert(p.key());
  for (const char* n : {"shared.weight", "encoder.block.0.layer.0.SelfAttention.q.weight",
                        "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                        "encoder.block.1.layer.0.layer_norm.weight", "encoder.block.1.layer.1.DenseReluDense.wi_0.weight",
                        "encoder.block.1.layer.1.DenseReluDense.wi_1.weight",
                        "encoder.block.1.layer.1.DenseReluDense.wo.weight", "encoder.final_layer_norm.weight"}) {
    EXPECT_TRUE(names.count(n)) << n;
  }
  EXPECT_FALSE(names.count("encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight"));
  EXPECT_EQ(names.size(), 1u + 2 * 9 + 1 + 1);  // shared, 9 per block, the bias table, final norm
}

// ---- parity with the plain-torch reference ----

class T5ReferenceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string error;
    dir_ = text::testing::T5ReferenceDir(GetParam(), &error);
    if (dir_.empty()) GTEST_SKIP() << error;
    auto ref = ReadSafetensors(dir_ + "/ref.safetensors");
    ASSERT_TRUE(ref.ok()) << ref.status();
    ref_ = *ref;
  }
  // Loads `layout` and checks the hidden states against the reference; returns the encoder.
  std::unique_ptr<T5TextEncoder> ExpectParity(const std::string& layout) {
    const std::string d = dir_ + "/" + layout;
    auto config = T5Config::FromJsonFile(d + "/config.json");
    EXPECT_TRUE(config.ok()) << config.status();
    if (!config.ok()) return nullptr;
    auto enc = T5TextEncoder::Create(*config, std::make_shared<ByteTokenizer>(), {});
    EXPECT_TRUE(enc.ok()) << enc.status();
    std::vector<std::string> files;
    auto loaded = LoadT5Checkpoint((*enc)->model(), d, &files);
    EXPECT_TRUE(loaded.ok()) << loaded.status();
    if (!loaded.ok()) return nullptr;
    EXPECT_EQ(files.size(), layout == "sharded" || layout == "binshard" ? 2u : 1u);
    const at::Tensor ids = ref_.at("ids"), mask = ref_.at("mask"), hidden = ref_.at("hidden");
    at::Tensor out;
    {
      at::NoGradGuard g;
      out = (*enc)->model()->forward(ids, mask);  // [B, L, D], not zeroed
    }
    const at::Tensor valid = mask.to(at::kBool).unsqueeze(-1).expand_as(hidden);
    const double diff = MaxRelDiff(out.masked_select(valid), hidden.masked_select(valid));
    std::cout << "[ parity ] " << layout << " (" << GetParam() << "): max rel diff " << diff << "\n";
    EXPECT_LT(diff, 1e-5) << layout << " (" << GetParam() << "): max rel diff " << diff
                          << "\nHINT: compare T5LayerNorm, the bucket table and the mask with t5_reference.py";
    // EncodeTokens zeroes the padded rows exactly, as Cosmos does.
    auto e = (*enc)->EncodeTokens(ids, mask);
    EXPECT_TRUE(e.ok()) << e.status();
    if (e.ok()) {
      EXPECT_EQ(e->embeddings.masked_select(valid.logical_not()).abs().max().item<float>(), 0.0f);
      EXPECT_LT(MaxRelDiff(e->embeddings.masked_select(valid), hidden.masked_select(valid)), 1e-5);
    }
    return std::move(*enc);
  }
  std::string dir_;
  TensorMap ref_;
};

TEST_P(T5ReferenceTest, SafetensorsMatchesReference) { ExpectParity("single"); }
TEST_P(T5ReferenceTest, ShardedSafetensorsMatchesReference) { ExpectParity("sharded"); }
TEST_P(T5ReferenceTest, PytorchBinMatchesReference) { ExpectParity("bin"); }
TEST_P(T5ReferenceTest, ShardedPytorchBinMatchesReference) { ExpectParity("binshard"); }

TEST_P(T5ReferenceTest, OutputsDoNotChangeWhenPaddedLonger) {
  auto enc = ExpectParity("single");
  ASSERT_TRUE(enc);
  const at::Tensor ids = ref_.at("ids"), mask = ref_.at("mask");
  WFM_ASSERT_OK_AND_ASSIGN(TextEmbeddings base, enc->EncodeTokens(ids, mask));
  // Append 25 padded positions: every real position must keep its value.
  const at::Tensor ids2 = at::cat({ids, at::zeros({ids.size(0), 25}, at::kLong)}, 1);
  const at::Tensor mask2 = at::cat({mask, at::zeros({mask.size(0), 25}, mask.options())}, 1);
  WFM_ASSERT_OK_AND_ASSIGN(TextEmbeddings longer, enc->EncodeTokens(ids2, mask2));
  EXPECT_LT(MaxAbsDiff(longer.embeddings.slice(1, 0, ids.size(1)), base.embeddings), 1e-5);
  EXPECT_EQ(longer.embeddings.slice(1, ids.size(1)).abs().max().item<float>(), 0.0f);
  // A prompt alone gives what it gives inside the batch (row 2 has 1 token, row 1 has 17).
  WFM_ASSERT_OK_AND_ASSIGN(TextEmbeddings alone, enc->EncodeTokens(ids.slice(0, 1, 2).slice(1, 0, 17),
                                                                    mask.slice(0, 1, 2).slice(1, 0, 17)));
  EXPECT_LT(MaxAbsDiff(alone.embeddings[0], base.embeddings[1].slice(0, 0, 17)), 1e-5);
}

// bfloat16 compute (the GPU setting for the 11B encoder): float32 checkpoint converted on load, statistics and
// softmax in float32, outputs returned as float32.
TEST_P(T5ReferenceTest, BFloat16IsCloseToTheReference) {
  auto config = T5Config::FromJsonFile(dir_ + "/single/config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  T5EncoderOptions o;
  o.dtype = "bfloat16";
  WFM_ASSERT_OK_AND_ASSIGN(auto enc, T5TextEncoder::Create(*config, std::make_shared<ByteTokenizer>(), o));
  WFM_ASSERT_OK_AND_ASSIGN(LoadReport report, LoadT5Checkpoint(enc->model(), dir_ + "/single"));
  EXPECT_GT(report.converted, 0);
  EXPECT_EQ(enc->model()->shared->weight.scalar_type(), at::kBFloat16);
  const at::Tensor mask = ref_.at("mask"), hidden = ref_.at("hidden");
  WFM_ASSERT_OK_AND_ASSIGN(TextEmbeddings e, enc->EncodeTokens(ref_.at("ids"), mask));
  EXPECT_EQ(e.embeddings.scalar_type(), at::kFloat);
  const at::Tensor valid = mask.to(at::kBool).unsqueeze(-1).expand_as(hidden);
  const double diff = MaxRelDiff(e.embeddings.masked_select(valid), hidden.masked_select(valid));
  std::cout << "[ parity ] bfloat16 (" << GetParam() << "): max rel diff " << diff << "\n";
  EXPECT_LT(diff, 5e-2) << "HINT: bfloat16 keeps ~3 significant digits; a larger error means a float32 step is lost";
}

INSTANTIATE_TEST_SUITE_P(Ffn, T5ReferenceTest, ::testing::Values("relu", "gated-gelu"),
                         [](const auto& info) { return info.param == "relu" ? std::string("Relu") : "GatedGelu"; });

// ---- strict loading ----

TEST(T5Loader, ReportsEveryMismatchAtOnce) {
  T5Config c;
  c.vocab_size = 64;
  c.d_model = 16;
  c.d_kv = 4;
  c.num_heads = 2;
  c.d_ff = 24;
  c.num_layers = 2;
  T5EncoderModel m(c);
  TensorMap sd;
  for (const auto& p : m->named_parameters()) sd[p.key()] = at::randn(p.value().sizes());
  WFM_EXPECT_OK(LoadT5StateDict(m, sd, "ok"));

  TensorMap bad = sd;
  bad.erase("encoder.final_layer_norm.weight");
  bad["encoder.block.1.layer.0.SelfAttention.k.weight"] = at::randn({3, 3});
  bad["encoder.block.7.layer.0.SelfAttention.q.weight"] = at::randn({8, 16});
  bad["decoder.block.0.layer.0.SelfAttention.q.weight"] = at::randn({1});  // ignored: decoder of a full model
  bad["lm_head.weight"] = at::randn({1});                                  // ignored
  const absl::Status s = LoadT5StateDict(m, bad, "bad.safetensors");
  ASSERT_FALSE(s.ok());
  const std::string msg(s.message());
  EXPECT_NE(msg.find("bad.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("1 unknown, 1 missing, 1 wrong shape"), std::string::npos) << msg;
  EXPECT_NE(msg.find("    encoder.final_layer_norm.weight  F32 [16]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("    encoder.block.7.layer.0.SelfAttention.q.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("k.weight: file [3, 3] vs module [8, 16]"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("decoder.block"), std::string::npos) << msg;  // a full model's decoder is not an error

  // The tied alias stands in for shared.weight.
  TensorMap alias = sd;
  alias["encoder.embed_tokens.weight"] = alias["shared.weight"];
  alias.erase("shared.weight");
  WFM_EXPECT_OK(LoadT5StateDict(m, alias, "alias"));
  EXPECT_TRUE(m->shared->weight.equal(sd["shared.weight"]));

  TensorMap nan = sd;
  nan["encoder.final_layer_norm.weight"] = at::full({16}, NAN);
  EXPECT_FALSE(LoadT5StateDict(m, nan, "nan").ok());
  TensorMap ints = sd;
  ints["encoder.final_layer_norm.weight"] = at::ones({16}, at::kLong);
  EXPECT_FALSE(LoadT5StateDict(m, ints, "ints").ok());
}

TEST(T5Loader, BadDirectories) {
  const std::string dir = TempDir();
  T5Config c;
  c.num_layers = 1;
  T5EncoderModel m(c);
  EXPECT_EQ(LoadT5Checkpoint(m, dir).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(T5TextEncoder::Load(dir + "/nope").status().code(), absl::StatusCode::kNotFound);
  auto no_config = T5TextEncoder::Load(dir);
  ASSERT_FALSE(no_config.ok());
  EXPECT_NE(no_config.status().message().find("config.json"), std::string::npos) << no_config.status();

  std::ofstream(dir + "/model.safetensors.index.json") << R"({"weight_map": {"shared.weight": "missing.safetensors"}})";
  auto missing_shard = LoadT5Checkpoint(m, dir);
  ASSERT_FALSE(missing_shard.ok());
  EXPECT_NE(missing_shard.status().message().find("missing.safetensors"), std::string::npos) << missing_shard.status();
  std::ofstream(dir + "/model.safetensors.index.json") << "{not json";
  EXPECT_FALSE(LoadT5Checkpoint(m, dir).ok());
  // A checkpoint whose values are not finite.
  fs::remove(dir + "/model.safetensors.index.json");
  TensorMap sd;
  for (const auto& p : m->named_parameters()) sd[p.key()] = at::zeros(p.value().sizes());
  sd["encoder.final_layer_norm.weight"][3] = INFINITY;
  WFM_ASSERT_OK(WriteSafetensors(dir + "/model.safetensors", sd));
  auto inf = LoadT5Checkpoint(m, dir);
  ASSERT_FALSE(inf.ok());
  EXPECT_NE(inf.status().message().find("NaN or Inf"), std::string::npos) << inf.status();
}

// ---- the text path: SentencePiece + encoder ----

class T5TextTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!text::testing::HaveTool("spm_train")) GTEST_SKIP() << "spm_train not installed";
    std::string error;
    ref_ = text::testing::T5ReferenceDir("gated-gelu", &error);
    if (ref_.empty()) GTEST_SKIP() << error;
    dir_ = TempDir();
    // A model directory: the reference's config + weights and a SentencePiece model trained here.
    fs::copy(ref_ + "/single", dir_ + "/model", fs::copy_options::recursive);
    spm_ = text::testing::TrainSpm(dir_, "spiece", 100, "--pad_id=0 --eos_id=1 --unk_id=2 --bos_id=-1", &error);
    ASSERT_FALSE(spm_.empty()) << error;
    fs::copy_file(spm_, dir_ + "/model/spiece.model");
  }
  std::string ref_, dir_, spm_;
};

TEST_F(T5TextTest, EncodeEqualsTokenizeThenEncodeTokens) {
  T5EncoderOptions o;
  o.max_length = 48;
  WFM_ASSERT_OK_AND_ASSIGN(auto enc, T5TextEncoder::Load(dir_ + "/model", o));
  const std::vector<std::string> prompts = {"A robot arm picks up a blue cup.", "", "The red car drives past."};
  WFM_ASSERT_OK_AND_ASSIGN(TextEmbeddings e, enc->Encode(prompts));
  ASSERT_EQ(e.embeddings.sizes(), (std::vector<int64_t>{3, 48, 32}));
  ASSERT_EQ(e.mask.sizes(), (std::vector<int64_t>{3, 48}));
  EXPECT_EQ(e.mask.scalar_type(), at::kBool);
  EXPECT_EQ(e.embeddings.scalar_type(), at::kFloat);

  const auto spm_ids = text::testing::SpmEncodeIds(spm_, prompts, dir_);
  TokenizeOptions t;
  t.max_length = 48;
  WFM_ASSERT_OK_AND_ASSIGN(TokenBatch batch, TokenizeBatch(enc->tokenizer(), prompts, t));
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(batch.lengths[i], static_cast<int64_t>(spm_ids[i].size()) + 1) << i;  // + EOS
    EXPECT_EQ(e.mask[i].sum().item<int64_t>(), batch.lengths[i]) << i;
    EXPECT_EQ(batch.ids[i][batch.lengths[i] - 1].item<int64_t>(), 1) << "EOS";
  }
  WFM_ASSERT_OK_AND_ASSIGN(TextEmbeddings direct, enc->EncodeTokens(batch.ids, batch.mask));
  EXPECT_LT(MaxAbsDiff(e.embeddings, direct.embeddings), 1e-5);
  EXPECT_TRUE(e.mask.equal(direct.mask));

  // Padding to the batch's longest prompt gives the same values, shorter.
  o.pad_to_max_length = false;
  WFM_ASSERT_OK_AND_ASSIGN(auto enc2, T5TextEncoder::Load(dir_ + "/model", o));
  WFM_ASSERT_OK_AND_ASSIGN(TextEmbeddings s, enc2->Encode(prompts));
  const int64_t longest = *std::max_element(batch.lengths.begin(), batch.lengths.end());
  ASSERT_EQ(s.embeddings.size(1), longest);
  EXPECT_LT(MaxAbsDiff(s.embeddings, e.embeddings.slice(1, 0, longest)), 1e-5);
  EXPECT_EQ(enc->model_id(), enc2->model_id());  // same model, same max_length
  EXPECT_EQ(enc->model_id().rfind("t5:model:", 0), 0u) << enc->model_id();
}

TEST_F(T5TextTest, LongPromptsAreTruncatedToMaxLength) {
  T5EncoderOptions o;
  o.max_length = 8;
  WFM_ASSERT_OK_AND_ASSIGN(auto enc, T5TextEncoder::Load(dir_ + "/model", o));
  const std::string long_prompt = "A robot arm picks up a blue cup on the table while the camera pans across it.";
  WFM_ASSERT_OK_AND_ASSIGN(TextEmbeddings e, enc->Encode({long_prompt, "A drone."}));
  ASSERT_EQ(e.embeddings.size(1), 8);
  EXPECT_EQ(e.mask[0].sum().item<int64_t>(), 8);
  EXPECT_LT(e.mask[1].sum().item<int64_t>(), 8);
}

TEST_F(T5TextTest, MissingSpieceAndMismatchedVocabulary) {
  fs::remove(dir_ + "/model/spiece.model");
  auto missing = T5TextEncoder::Load(dir_ + "/model");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("spiece.model"), std::string::npos) << missing.status();

  // A SentencePiece model with more pieces than the model's embedding table has rows (a tokenizer from another
  // model): config.json says 64 rows, the SentencePiece model has 92 pieces.
  fs::copy_file(spm_, dir_ + "/model/spiece.model");
  auto j = nlohmann::json::parse(std::ifstream(dir_ + "/model/config.json"));
  const nlohmann::json original = j;
  j["vocab_size"] = 64;
  std::ofstream(dir_ + "/model/config.json") << j.dump();
  auto mismatch = T5TextEncoder::Load(dir_ + "/model");
  ASSERT_FALSE(mismatch.ok());
  EXPECT_EQ(mismatch.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(mismatch.status().message().find("vocab_size 64"), std::string::npos) << mismatch.status();

  // Weights from another architecture.
  j = original;
  j["num_layers"] = 4;
  std::ofstream(dir_ + "/model/config.json") << j.dump();
  auto wrong = T5TextEncoder::Load(dir_ + "/model");
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("missing (in the module, not in the file) [9]"), std::string::npos)
      << wrong.status();
}

TEST_F(T5TextTest, RejectsBadTokenInput) {
  WFM_ASSERT_OK_AND_ASSIGN(auto enc, T5TextEncoder::Load(dir_ + "/model"));
  EXPECT_FALSE(enc->EncodeTokens(at::full({1, 3}, 500, at::kLong), at::ones({1, 3}, at::kBool)).ok());
  EXPECT_FALSE(enc->EncodeTokens(at::zeros({1, 3}, at::kLong), at::ones({1, 4}, at::kBool)).ok());
  EXPECT_FALSE(enc->EncodeTokens(at::zeros({3}, at::kLong), at::ones({3}, at::kBool)).ok());
  EXPECT_FALSE(enc->Encode({}).ok());
}

}  // namespace
}  // namespace wfm::text
