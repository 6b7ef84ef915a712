// Tokenisers: SentencePiece through the dlopen'ed shim matches `spm_encode` on models trained here with
// `spm_train` (inside a process that has LibTorch and its protobuf loaded), the shim stays isolated, byte tokens,
// and batch tokenisation (EOS, truncation, padding, mask) against hand-computed expectations.
#include "wfm/core/text/tokenizer.h"

#include <dlfcn.h>

#include <ATen/ATen.h>

#include <filesystem>
#include <fstream>

#include "test_support.h"
#include "text_test_util.h"

namespace wfm::text {
namespace {

using ::wfm::testing::BinaryDir;
using ::wfm::testing::RunCommand;
using ::wfm::testing::TempDir;

const std::vector<std::string> kStrings = {
    "A robot arm picks up a blue cup on the table.",
    "The red car drives past the busy intersection at night.",
    "  leading and trailing   spaces  ",
    "Unseen words: zebra quantum xylophone!",
    "unicode: café naïve — 東京 ✓",
    "numbers 12345 and punctuation?!;",
    "",
};

void ExpectMatchesSpmEncode(const std::string& flags, int vocab) {
  if (!text::testing::HaveTool("spm_train") || !text::testing::HaveTool("spm_encode")) {
    GTEST_SKIP() << "spm_train/spm_encode not installed (Debian package sentencepiece)";
  }
  const std::string dir = TempDir();
  std::string error;
  const std::string model = text::testing::TrainSpm(dir, "m", vocab, flags, &error);
  ASSERT_FALSE(model.empty()) << error;
  WFM_ASSERT_OK_AND_ASSIGN(auto tok, SentencePieceTokenizer::Load(model));
  const auto expected = text::testing::SpmEncodeIds(model, kStrings, dir);
  ASSERT_EQ(expected.size(), kStrings.size());
  for (size_t i = 0; i < kStrings.size(); ++i) {
    WFM_ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, tok->Encode(kStrings[i]));
    EXPECT_EQ(ids, expected[i]) << "string " << i << " '" << kStrings[i] << "' (flags " << flags
                                << ")\nHINT: our ids differ from spm_encode --output_format=id";
  }
}

TEST(SentencePieceTokenizer, UnigramWithT5SpecialIdsMatchesSpmEncode) {
  ExpectMatchesSpmEncode("--model_type=unigram --pad_id=0 --eos_id=1 --unk_id=2 --bos_id=-1", 120);
}

TEST(SentencePieceTokenizer, BpeWithDefaultSpecialIdsMatchesSpmEncode) {
  ExpectMatchesSpmEncode("--model_type=bpe", 150);
}

TEST(SentencePieceTokenizer, SpecialIdsDecodeAndFingerprint) {
  if (!text::testing::HaveTool("spm_train")) GTEST_SKIP() << "spm_train not installed";
  const std::string dir = TempDir();
  std::string error;
  const std::string t5_like =
      text::testing::TrainSpm(dir, "t5", 120, "--pad_id=0 --eos_id=1 --unk_id=2 --bos_id=-1", &error);
  ASSERT_FALSE(t5_like.empty()) << error;
  WFM_ASSERT_OK_AND_ASSIGN(auto tok, SentencePieceTokenizer::Load(t5_like));
  EXPECT_EQ(tok->pad_id(), 0);
  EXPECT_EQ(tok->eos_id(), 1);
  EXPECT_EQ(tok->unk_id(), 2);
  EXPECT_EQ(tok->IdToPiece(1), "</s>");
  EXPECT_EQ(tok->IdToPiece(100000), "");
  WFM_ASSERT_OK_AND_ASSIGN(auto ids, tok->Encode("The red car drives past the station."));
  WFM_ASSERT_OK_AND_ASSIGN(std::string back, tok->Decode(ids));
  EXPECT_EQ(back, "The red car drives past the station.");
  EXPECT_FALSE(tok->Decode({-1}).ok());

  // spm_train defaults: unk 0, bos 1, eos 2, no pad -> the fallback pad id.
  const std::string plain = text::testing::TrainSpm(dir, "plain", 120, "", &error);
  ASSERT_FALSE(plain.empty()) << error;
  WFM_ASSERT_OK_AND_ASSIGN(auto tok2, SentencePieceTokenizer::Load(plain, /*fallback_pad_id=*/7));
  EXPECT_EQ(tok2->eos_id(), 2);
  EXPECT_EQ(tok2->pad_id(), 7);
  EXPECT_NE(tok->fingerprint(), tok2->fingerprint());

  // Without an EOS the T5 convention cannot be followed.
  const std::string no_eos = text::testing::TrainSpm(dir, "noeos", 120, "--eos_id=-1", &error);
  ASSERT_FALSE(no_eos.empty()) << error;
  auto bad = SentencePieceTokenizer::Load(no_eos);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("EOS"), std::string::npos) << bad.status();
}

TEST(SentencePieceTokenizer, BadModelFiles) {
  const std::string dir = TempDir();
  auto missing = SentencePieceTokenizer::Load(dir + "/spiece.model");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound) << missing.status();
  EXPECT_NE(missing.status().message().find("spiece.model"), std::string::npos);

  std::ofstream(dir + "/garbage.model") << "this is not a protobuf";
  auto garbage = SentencePieceTokenizer::Load(dir + "/garbage.model");
  ASSERT_FALSE(garbage.ok());
  EXPECT_EQ(garbage.status().code(), absl::StatusCode::kInvalidArgument) << garbage.status();
  EXPECT_NE(garbage.status().message().find("garbage.model"), std::string::npos) << garbage.status();

  std::ofstream(dir + "/empty.model");
  EXPECT_FALSE(SentencePieceTokenizer::Load(dir + "/empty.model").ok());
}

// The isolation that keeps libsentencepiece's bundled protobuf away from LibTorch's: wfm_core must not link it,
// the shim must, and the shim's symbols must stay out of the global scope after loading (RTLD_LOCAL).
TEST(SentencePieceShim, IsolatedFromLibTorch) {
  WFM_ASSERT_OK(EnsureSentencePieceShim());
  WFM_ASSERT_OK_AND_ASSIGN(std::string shim, FindSentencePieceShim());
  EXPECT_EQ(dlsym(RTLD_DEFAULT, "wfm_spm_encode"), nullptr) << "the shim leaked into the global symbol scope";
  std::string out;
  ASSERT_EQ(RunCommand("readelf -d " + BinaryDir() + "/lib/libwfm_core.so", &out), 0) << out;
  EXPECT_EQ(out.find("sentencepiece"), std::string::npos) << "libwfm_core.so links libsentencepiece:\n" << out;
  EXPECT_NE(out.find("libtorch"), std::string::npos) << out;
  ASSERT_EQ(RunCommand("readelf -d " + shim, &out), 0) << out;
  EXPECT_NE(out.find("libsentencepiece.so"), std::string::npos) << out;
  EXPECT_EQ(out.find("libtorch"), std::string::npos) << out;
  // LibTorch still works beside it.
  EXPECT_EQ(at::ones({2, 2}).sum().item<float>(), 4.0f);
}

TEST(ByteTokenizer, ByT5Convention) {
  ByteTokenizer tok;
  WFM_ASSERT_OK_AND_ASSIGN(auto ids, tok.Encode("ab\xc3\xa9"));  // "abé": é is two UTF-8 bytes
  EXPECT_EQ(ids, (std::vector<int32_t>{97 + 3, 98 + 3, 0xc3 + 3, 0xa9 + 3}));
  WFM_ASSERT_OK_AND_ASSIGN(std::string back, tok.Decode({100, 1, 101, 0}));
  EXPECT_EQ(back, "ab");  // specials dropped
  EXPECT_EQ(tok.vocab_size(), 259);
}

TEST(TokenizeBatch, EosPaddingMaskAndLongestPadding) {
  ByteTokenizer tok;
  TokenizeOptions o;
  o.max_length = 6;
  WFM_ASSERT_OK_AND_ASSIGN(TokenBatch b, TokenizeBatch(tok, {"abc", "", "z"}, o));
  ASSERT_EQ(b.ids.sizes(), (std::vector<int64_t>{3, 6}));
  const std::vector<int64_t> row0 = {100, 101, 102, 1, 0, 0};
  const std::vector<int64_t> row1 = {1, 0, 0, 0, 0, 0};
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(b.ids[0][i].item<int64_t>(), row0[i]) << i;
    EXPECT_EQ(b.ids[1][i].item<int64_t>(), row1[i]) << i;
  }
  EXPECT_EQ(b.lengths, (std::vector<int64_t>{4, 1, 2}));
  EXPECT_EQ(b.mask.sum(1).to(at::kLong)[0].item<int64_t>(), 4);
  EXPECT_TRUE(b.mask[2][1].item<bool>());
  EXPECT_FALSE(b.mask[2][2].item<bool>());
  EXPECT_EQ(b.num_truncated, 0);

  o.pad_to_max_length = false;
  WFM_ASSERT_OK_AND_ASSIGN(TokenBatch c, TokenizeBatch(tok, {"abc", "", "z"}, o));
  EXPECT_EQ(c.ids.size(1), 4);
  EXPECT_TRUE(c.ids.equal(b.ids.slice(1, 0, 4)));
}

TEST(TokenizeBatch, TruncatesKeepingEos) {
  ByteTokenizer tok;
  TokenizeOptions o;
  o.max_length = 4;
  WFM_ASSERT_OK_AND_ASSIGN(TokenBatch b, TokenizeBatch(tok, {"abcdefgh", "ab"}, o));
  // Hugging Face truncation=True: max_length - 1 text tokens, then the EOS.
  const std::vector<int64_t> row0 = {100, 101, 102, 1};
  for (int i = 0; i < 4; ++i) EXPECT_EQ(b.ids[0][i].item<int64_t>(), row0[i]) << i;
  EXPECT_EQ(b.num_truncated, 1);
  EXPECT_EQ(b.untruncated_lengths, (std::vector<int64_t>{9, 3}));
  EXPECT_EQ(b.lengths, (std::vector<int64_t>{4, 3}));

  o.add_eos = false;
  WFM_ASSERT_OK_AND_ASSIGN(TokenBatch c, TokenizeBatch(tok, {"abcdefgh"}, o));
  EXPECT_EQ(c.ids[0][3].item<int64_t>(), 103);

  EXPECT_FALSE(TokenizeBatch(tok, {}, o).ok());
  o.add_eos = true;
  o.max_length = 1;
  EXPECT_FALSE(TokenizeBatch(tok, {"a"}, o).ok());
}

TEST(Fingerprint, Fnv1a128TestVectors) {
  EXPECT_EQ(Fingerprint(""), "6c62272e07bb014262b821756295c58d");  // the FNV-1a 128 offset basis
  EXPECT_EQ(Fingerprint("a"), "d228cb696f1a8caf78912b704e4a8964");
  EXPECT_EQ(Fingerprint("foobar"), "343e1662793c64bf6f0d3597ba446f18");
}

}  // namespace
}  // namespace wfm::text
