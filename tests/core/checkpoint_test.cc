// LoadCheckpoint / name rules / SaveModule: Python-written checkpoints load into a torch::nn module with the
// same layout (tests/data/make_checkpoint_test_data.py `Net`), strict loading reports every problem at once
// and copies nothing, rules map Cosmos / EMA / prefixed names, dtypes convert on copy.
#include "wfm/core/checkpoint.h"

#include <ATen/ATen.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/sequential.h>

#include <filesystem>

#include "test_support.h"
#include "wfm/core/file_util.h"
#include "wfm/core/safetensors.h"
#include "wfm/core/tensor_file.h"

namespace wfm {
namespace {
namespace fs = std::filesystem;
namespace nn = torch::nn;

std::string Data(const std::string& name) { return testing::SourceDir() + "/tests/data/checkpoint/" + name; }

// The generator's Net: encoder.{conv (Conv2d 3->4, k3), norm (GroupNorm 1x4), scale buffer [4]},
// decoder = Sequential(Linear(4,5), SiLU, Linear(5,2)). `variant` breaks it on purpose for error tests.
struct EncoderImpl : nn::Module {
  explicit EncoderImpl(int variant) {
    conv = register_module("conv", nn::Conv2d(nn::Conv2dOptions(3, 4, variant == 1 ? 5 : 3)));
    if (variant != 1) norm = register_module("norm", nn::GroupNorm(nn::GroupNormOptions(1, 4)));
    scale = register_buffer("scale", at::zeros({4}));
    if (variant == 1) extra = register_buffer("extra", at::zeros({2}));
  }
  nn::Conv2d conv{nullptr};
  nn::GroupNorm norm{nullptr};
  at::Tensor scale, extra;
};
TORCH_MODULE(Encoder);

struct NetImpl : nn::Module {
  explicit NetImpl(int variant = 0) {
    encoder = register_module("encoder", Encoder(variant));
    decoder = register_module("decoder", nn::Sequential(nn::Linear(4, 5), nn::SiLU(), nn::Linear(5, 2)));
  }
  Encoder encoder{nullptr};
  nn::Sequential decoder{nullptr};
};
TORCH_MODULE(Net);

void ExpectModuleEquals(const nn::Module& m, const TensorMap& ref, const std::string& what) {
  TensorMap sd = StateDict(m);
  ASSERT_EQ(sd.size(), ref.size()) << what;
  for (const auto& [name, t] : sd) {
    ASSERT_TRUE(ref.count(name)) << what << ": " << name;
    EXPECT_TRUE(at::equal(t, ref.at(name).to(t.scalar_type()))) << what << ": " << name << " max diff "
                                                                << testing::MaxAbsDiff(t, ref.at(name));
  }
}

TEST(CheckpointTest, LoadsPythonStateDictStrictly) {
  const std::pair<const char*, const char*> cases[] = {
      {"state_dict.pt", "state_dict.ref.safetensors"},
      {"module.pt", "state_dict.ref.safetensors"},
      {"scripted.jit", "scripted.ref.safetensors"},
      {"sharded_bin", "sharded.ref.safetensors"},
      {"sharded_st/model.safetensors.index.json", "sharded.ref.safetensors"}};
  for (const auto& [file, ref_file] : cases) {
    SCOPED_TRACE(file);
    WFM_ASSERT_OK_AND_ASSIGN(TensorMap ref, ReadSafetensors(Data(ref_file)));
    Net net;
    WFM_ASSERT_OK_AND_ASSIGN(LoadReport r, LoadCheckpoint(*net, Data(file)));
    EXPECT_EQ(r.loaded, 9);
    EXPECT_EQ(r.module_tensors, 9);
    EXPECT_EQ(r.converted, 0);
    EXPECT_TRUE(r.missing.empty() && r.unexpected.empty());
    ExpectModuleEquals(*net, ref, file);
    EXPECT_NE(r.Summary().find("loaded 9/9 tensors"), std::string::npos) << r.Summary();
  }
}

TEST(CheckpointTest, CosmosModelPtRawAndEma) {
  WFM_ASSERT_OK_AND_ASSIGN(TensorMap raw, ReadSafetensors(Data("cosmos_model.raw.ref.safetensors")));
  WFM_ASSERT_OK_AND_ASSIGN(TensorMap ema, ReadSafetensors(Data("cosmos_model.ema.ref.safetensors")));
  Net a, b;
  WFM_ASSERT_OK_AND_ASSIGN(LoadReport ra, LoadCheckpoint(*a, Data("cosmos_model.pt")));  // default: raw weights
  ExpectModuleEquals(*a, raw, "default rules");
  EXPECT_EQ(ra.dropped, 8) << "the 8 EMA parameter copies";
  LoadOptions o;
  o.rules = EmaNameRules();
  WFM_ASSERT_OK_AND_ASSIGN(LoadReport rb, LoadCheckpoint(*b, Data("cosmos_model.pt"), o));
  ExpectModuleEquals(*b, ema, "ema rules");  // EMA parameters + the raw buffer (no EMA copy of buffers)
  EXPECT_EQ(rb.loaded, 9);
  EXPECT_EQ(rb.dropped, 8) << "the 8 raw parameters the EMA copies replace";
  // Asking for EMA weights in a file without them is an error, not a silent raw load.
  Net c;
  auto none = LoadCheckpoint(*c, Data("state_dict.pt"), o);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(std::string(none.status().message()).find("ema."), std::string::npos) << none.status();
}

TEST(CheckpointTest, StrictLoadReportsEveryProblemAndCopiesNothing) {
  Net bad(/*variant=*/1);  // conv kernel 5 (wrong shape), no norm (2 unknown), extra buffer (1 missing)
  TensorMap before = StateDict(*bad);
  for (auto& [n, t] : before) t = t.clone();
  auto r = LoadCheckpoint(*bad, Data("state_dict.pt"));
  ASSERT_FALSE(r.ok());
  const std::string msg(r.status().message());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  for (const char* needle : {"2 unknown", "1 missing", "1 wrong shape", "encoder.norm.weight", "encoder.norm.bias",
                             "encoder.extra", "encoder.conv.weight: file [4, 3, 3, 3] vs module [4, 3, 5, 5]",
                             "nothing was loaded", "state_dict.pt"}) {
    EXPECT_NE(msg.find(needle), std::string::npos) << "missing '" << needle << "' in:\n" << msg;
  }
  // Nothing was copied, not even the tensors that matched.
  TensorMap after = StateDict(*bad);
  for (const auto& [n, t] : before) EXPECT_TRUE(at::equal(t, after.at(n))) << n << " changed";

  // Explicit permission loads what fits; the wrong shape stays an error.
  LoadOptions lax;
  lax.allow_missing = lax.allow_unexpected = true;
  auto still = LoadCheckpoint(*bad, Data("state_dict.pt"), lax);
  ASSERT_FALSE(still.ok());
  EXPECT_NE(std::string(still.status().message()).find("1 wrong shape"), std::string::npos);
  EXPECT_EQ(std::string(still.status().message()).find("unknown"), std::string::npos) << still.status();

  Net partial;
  TensorMap sd;
  WFM_ASSERT_OK_AND_ASSIGN(sd, ReadTensorFile(Data("state_dict.pt")));
  sd.erase("decoder.2.bias");
  sd["stray.weight"] = at::ones({1});
  EXPECT_FALSE(LoadStateDict(*partial, sd).ok());
  WFM_ASSERT_OK_AND_ASSIGN(LoadReport rp, LoadStateDict(*partial, sd, lax, "partial"));
  EXPECT_EQ(rp.loaded, 8);
  EXPECT_EQ(rp.missing, std::vector<std::string>{"decoder.2.bias"});
  EXPECT_EQ(rp.unexpected, std::vector<std::string>{"stray.weight"});
}

TEST(CheckpointTest, DtypesConvertOnCopy) {
  WFM_ASSERT_OK_AND_ASSIGN(TensorMap ref, ReadSafetensors(Data("traced_bf16.ref.safetensors")));
  Net f32;
  WFM_ASSERT_OK_AND_ASSIGN(LoadReport r, LoadCheckpoint(*f32, Data("traced_bf16.jit")));
  EXPECT_EQ(r.converted, 9);
  EXPECT_EQ(r.conversions.at("BF16->F32"), 9);
  ExpectModuleEquals(*f32, ref, "bf16 jit -> f32 module");  // bf16 -> f32 is exact
  Net bf16;
  bf16->to(at::kBFloat16);
  WFM_ASSERT_OK_AND_ASSIGN(LoadReport rb, LoadCheckpoint(*bf16, Data("traced_bf16.jit")));
  EXPECT_EQ(rb.converted, 0);
  ExpectModuleEquals(*bf16, ref, "bf16 jit -> bf16 module");
  // Integers into floating parameters are refused unless asked for.
  Net n;
  TensorMap sd = StateDict(*n);
  for (auto& [name, t] : sd) t = at::ones_like(t, at::kLong);
  auto lossy = LoadStateDict(*n, sd);
  ASSERT_FALSE(lossy.ok());
  EXPECT_NE(std::string(lossy.status().message()).find("9 incompatible dtype"), std::string::npos) << lossy.status();
  LoadOptions o;
  o.allow_lossy_dtype = true;
  WFM_ASSERT_OK_AND_ASSIGN(LoadReport rl, LoadStateDict(*n, sd, o));
  EXPECT_EQ(rl.conversions.at("I64->F32"), 9);
  EXPECT_EQ(n->encoder->conv->weight.sum().item<float>(), 4 * 3 * 3 * 3);
}

TEST(CheckpointTest, RulesMapNames) {
  const std::set<std::string> expected = {"model.proj.weight", "blocks.0.attn.weight", "blocks.1.attn.weight"};
  WFM_ASSERT_OK_AND_ASSIGN(
      NameRules rules,
      ParseNameRules(R"(["default", {"regex": "^blk\\.(\\d+)\\.att\\.", "to": "blocks.$1.attn."}, {"drop": "^junk\\."}])"));
  WFM_ASSERT_OK_AND_ASSIGN(
      NameMapping m, MapNames({"network.model.proj.weight", "module.blk.0.att.weight", "blk.1.att.weight", "junk.x",
                               "ema.network-model-proj-weight", "x._extra_state"},
                              rules, &expected));
  EXPECT_EQ(m.renamed.at("network.model.proj.weight"), "model.proj.weight")
      << "'model.' is not stripped from a module whose names start with it";
  EXPECT_EQ(m.renamed.at("module.blk.0.att.weight"), "blocks.0.attn.weight");
  EXPECT_EQ(m.renamed.at("blk.1.att.weight"), "blocks.1.attn.weight");
  EXPECT_EQ(m.dropped, (std::vector<std::string>{"junk.x", "ema.network-model-proj-weight", "x._extra_state"}));
  EXPECT_TRUE(m.duplicates.empty());
  // Without a module, strip rules always apply; collisions are reported.
  WFM_ASSERT_OK_AND_ASSIGN(NameMapping u, MapNames({"model.a", "a"}, DefaultNameRules()));
  EXPECT_EQ(u.duplicates, std::vector<std::string>{"a"});
  // A drop rule never drops a name the module has.
  const std::set<std::string> has_ema = {"ema.w"};
  WFM_ASSERT_OK_AND_ASSIGN(NameMapping keep, MapNames({"ema.w"}, DefaultNameRules(), &has_ema));
  EXPECT_EQ(keep.renamed.at("ema.w"), "ema.w");
  // Round trip through the JSON form, presets and errors.
  for (const NameRules& rs : {DefaultNameRules(), EmaNameRules(), rules}) {
    WFM_ASSERT_OK_AND_ASSIGN(NameRules back, ParseNameRules(NameRulesToString(rs)));
    EXPECT_EQ(NameRulesToString(back), NameRulesToString(rs));
  }
  WFM_ASSERT_OK_AND_ASSIGN(NameMapping jit, MapNames({"inv_quant.quantizer._levels", "decoder.conv_in.weight"},
                                                     NamedNameRules("cosmos-jit")));
  EXPECT_EQ(jit.renamed.at("inv_quant.quantizer._levels"), "quantizer._levels");
  WFM_ASSERT_OK_AND_ASSIGN(NameRules two, ParseNameRules("ema, cosmos-jit"));
  EXPECT_EQ(two.size(), EmaNameRules().size() + NamedNameRules("cosmos-jit").size());
  EXPECT_FALSE(ParseNameRules("nonsense-preset").ok());
  EXPECT_FALSE(ParseNameRules(R"([{"regex": "(unclosed"}])").ok());
  EXPECT_FALSE(ParseNameRules(R"([{"strip": "x"}])").ok());
  EXPECT_FALSE(ParseNameRules("[1, 2").ok());
  const std::string rules_file = testing::TempDir() + "/rules.json";
  ASSERT_TRUE(WriteFileAtomically(rules_file, R"([{"strip_prefix": "net."}])").ok());
  WFM_ASSERT_OK_AND_ASSIGN(NameRules from_file, ParseNameRules("@" + rules_file));
  ASSERT_EQ(from_file.size(), 1u);
  EXPECT_EQ(from_file[0].kind, NameRule::Kind::kStripPrefix);
}

TEST(CheckpointTest, ErrorHintsSuggestThePrefixRule) {
  Net net;
  TensorMap sd;
  for (auto& [name, t] : StateDict(*net)) sd["backbone." + name] = t.clone();
  LoadOptions o;
  o.rules = {};
  auto r = LoadStateDict(*net, sd, o, "prefixed");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(std::string(r.status().message()).find(R"({"strip_prefix": "backbone."})"), std::string::npos) << r.status();
  o.rules = {NameRule::StripPrefix("backbone.")};
  WFM_EXPECT_OK(LoadStateDict(*net, sd, o, "prefixed"));
}

TEST(CheckpointTest, SeveralFilesAndDuplicates) {
  const std::string dir = testing::TempDir();
  Net src;
  TensorMap sd = StateDict(*src);
  TensorMap enc, dec;
  for (const auto& [n, t] : sd) (n.rfind("encoder.", 0) == 0 ? enc : dec)[n] = t;
  WFM_ASSERT_OK(WriteSafetensors(dir + "/enc.safetensors", enc));
  WFM_ASSERT_OK(WriteSafetensors(dir + "/dec.safetensors", dec));
  Net dst;
  WFM_ASSERT_OK_AND_ASSIGN(LoadReport r, LoadCheckpoint(*dst, {dir + "/enc.safetensors", dir + "/dec.safetensors"}));
  EXPECT_EQ(r.loaded, 9);
  ExpectModuleEquals(*dst, sd, "two files");
  // The same tensors twice (like the FSQ buffers in encoder.jit and decoder.jit) merge ...
  WFM_ASSERT_OK_AND_ASSIGN(LoadReport twice, LoadCheckpoint(*dst, {dir + "/enc.safetensors", dir + "/enc.safetensors",
                                                                   dir + "/dec.safetensors"}));
  EXPECT_EQ(twice.loaded, 9);
  // ... but copies that disagree in value, or in shape/dtype, are errors and nothing is copied.
  TensorMap enc2 = enc;
  enc2["encoder.scale"] = enc.at("encoder.scale") + 1;
  WFM_ASSERT_OK(WriteSafetensors(dir + "/enc2.safetensors", enc2));
  Net fresh;
  const at::Tensor before = fresh->encoder->conv->weight.clone();
  auto differ = LoadCheckpoint(*fresh, {dir + "/enc.safetensors", dir + "/enc2.safetensors", dir + "/dec.safetensors"});
  ASSERT_FALSE(differ.ok());
  EXPECT_NE(std::string(differ.status().message()).find("encoder.scale"), std::string::npos) << differ.status();
  EXPECT_NE(std::string(differ.status().message()).find("different values"), std::string::npos) << differ.status();
  EXPECT_TRUE(at::equal(fresh->encoder->conv->weight, before)) << "nothing may be copied";
  enc2["encoder.scale"] = at::zeros({5});
  WFM_ASSERT_OK(WriteSafetensors(dir + "/enc3.safetensors", enc2));
  auto dup = LoadCheckpoint(*fresh, {dir + "/enc.safetensors", dir + "/enc3.safetensors", dir + "/dec.safetensors"});
  ASSERT_FALSE(dup.ok());
  EXPECT_NE(std::string(dup.status().message()).find("1 duplicate"), std::string::npos) << dup.status();
  // `required` scopes strictness: the encoder file alone fills the encoder, the decoder keeps its values.
  LoadOptions enc_only;
  enc_only.required = [](const std::string& n) { return n.rfind("encoder.", 0) == 0; };
  WFM_ASSERT_OK_AND_ASSIGN(LoadReport part, LoadCheckpoint(*fresh, dir + "/enc.safetensors", enc_only));
  EXPECT_EQ(part.loaded, 5);
  EXPECT_EQ(part.missing.size(), 4u);
  EXPECT_FALSE(LoadCheckpoint(*fresh, dir + "/enc.safetensors").ok());
}

TEST(CheckpointTest, SaveModuleRoundTripsAtomically) {
  const std::string dir = testing::TempDir();
  Net a;
  WFM_ASSERT_OK(SaveModule(*a, dir + "/net.safetensors", {{"format", "pt"}}));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1) << "temp file left behind";
  Net b;
  WFM_ASSERT_OK(LoadCheckpoint(*b, dir + "/net.safetensors"));
  ExpectModuleEquals(*b, StateDict(*a), "save/load");
  // StateDict shares memory with the module.
  TensorMap sd = StateDict(*a);
  EXPECT_EQ(sd.at("decoder.0.weight").data_ptr(), a->decoder[0]->as<nn::Linear>()->weight.data_ptr());
  // A file that is not a checkpoint at all fails with its name.
  auto bad = LoadCheckpoint(*b, Data("sharded_st/model.safetensors.index.json.missing"));
  EXPECT_FALSE(bad.ok());
}

}  // namespace
}  // namespace wfm
