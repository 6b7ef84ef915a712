// Pre-tokenized clip folders: write/read round trip, deterministic batches with windows inside each clip, the
// train/validation split, text embeddings padded with a mask, and bad files.
#include <ATen/ATen.h>

#include <set>

#include "test_support.h"
#include "wfm/autoregressive/data.h"
#include "wfm/core/safetensors.h"

namespace wfm::ar {
namespace {

// Clip i has frames[i] latent frames of 4x4; token value = 100 * i + 10 * frame + anything (frame id recoverable).
std::string MakeFolder(const std::vector<int64_t>& frames, bool with_emb) {
  const std::string dir = testing::TempDir() + "/clips";
  for (size_t i = 0; i < frames.size(); ++i) {
    TokenClip c;
    c.tokens = (at::arange(frames[i]) * 10 + 100 * static_cast<int64_t>(i)).view({-1, 1, 1}).expand({-1, 4, 4});
    c.caption = "clip " + std::to_string(i);
    if (with_emb) c.crossattn_emb = at::full({2 + static_cast<int64_t>(i), 8}, static_cast<double>(i + 1));
    EXPECT_TRUE(TokenFolder::Write(dir + "/c" + std::to_string(i) + ".safetensors", c).ok());
  }
  return dir;
}

TEST(ArDataTest, FolderRoundTripAndDeterministicBatches) {
  const std::string dir = MakeFolder({3, 5, 2, 4, 3}, true);
  WFM_ASSERT_OK_AND_ASSIGN(TokenFolder f, TokenFolder::Open(dir));
  EXPECT_EQ(f.size(), 5);
  EXPECT_EQ(f.frames(1), 5);
  WFM_ASSERT_OK_AND_ASSIGN(TokenClip c, f.Get(3));
  EXPECT_EQ(c.caption, "clip 3");
  EXPECT_EQ(c.tokens.sizes(), at::IntArrayRef({4, 4, 4}));

  TokenBatcher b(f, /*frames=*/3, /*val_fraction=*/0.25, /*seed=*/1);
  WFM_ASSERT_OK(b.status());
  EXPECT_EQ(b.train_clips() + b.val_clips(), 4) << "the 2-frame clip is too short";
  EXPECT_EQ(b.val_clips(), 1);
  WFM_ASSERT_OK_AND_ASSIGN(TokenBatch x, b.Train(7, 6));
  WFM_ASSERT_OK_AND_ASSIGN(TokenBatch y, b.Train(7, 6));
  WFM_ASSERT_OK_AND_ASSIGN(TokenBatch z, b.Train(8, 6));
  EXPECT_TRUE(at::equal(x.tokens, y.tokens)) << "a batch is a function of (seed, step)";
  EXPECT_FALSE(at::equal(x.tokens, z.tokens));
  EXPECT_EQ(x.tokens.sizes(), at::IntArrayRef({6, 3, 4, 4}));
  std::set<int64_t> clips;
  for (int64_t i = 0; i < 6; ++i) {
    const int64_t clip = x.tokens[i][0][0][0].item<int64_t>() / 100, f0 = x.tokens[i][0][0][0].item<int64_t>() % 100;
    clips.insert(clip);
    EXPECT_NE(clip, 2);
    EXPECT_NE(clip, 4) << "clip 4 is the validation clip";
    for (int64_t t = 1; t < 3; ++t) EXPECT_EQ(x.tokens[i][t][0][0].item<int64_t>() % 100, f0 + 10 * t) << "window";
    EXPECT_EQ(x.captions[i], "clip " + std::to_string(clip));
  }
  // embeddings: padded to the longest in the batch, mask marks the real rows
  ASSERT_TRUE(x.context.defined());
  EXPECT_EQ(x.context.size(2), 8);
  for (int64_t i = 0; i < 6; ++i) {
    const int64_t clip = x.tokens[i][0][0][0].item<int64_t>() / 100;
    EXPECT_EQ(x.context_mask[i].sum().item<int64_t>(), 2 + clip);
  }
  // ranks draw different clips for the same step
  WFM_ASSERT_OK_AND_ASSIGN(TokenBatch r1, b.Train(7, 6, 1, 2));
  EXPECT_FALSE(at::equal(r1.tokens, x.tokens));
  WFM_ASSERT_OK_AND_ASSIGN(TokenBatch v, b.Validation(2));
  EXPECT_EQ(v.tokens[0][0][0][0].item<int64_t>(), 400);
}

// The padding rule travels with stored embeddings: clips tokenized with a T5 directory (crossattn_pad_to 512 there)
// come back zero-padded to pad_to with every row attended; clips of two rules cannot share a batch.
TEST(ArDataTest, StoredPaddingRuleIsApplied) {
  const std::string dir = testing::TempDir();
  for (int64_t i = 0; i < 2; ++i) {
    TokenClip c{"", at::zeros({2, 4, 4}, at::kLong), at::full({3 + i, 8}, 1.0), "", /*crossattn_pad_to=*/6};
    WFM_ASSERT_OK(TokenFolder::Write(dir + "/c" + std::to_string(i) + ".safetensors", c));
  }
  WFM_ASSERT_OK_AND_ASSIGN(TokenFolder f, TokenFolder::Open(dir));
  WFM_ASSERT_OK_AND_ASSIGN(TokenClip c1, f.Get(1));
  EXPECT_EQ(c1.crossattn_pad_to, 6);
  EXPECT_EQ(c1.crossattn_emb.size(0), 4) << "stored unpadded";
  WFM_ASSERT_OK_AND_ASSIGN(TokenBatch b, TokenBatcher(f, 2, 0.0, 0).Train(0, 4));
  EXPECT_EQ(b.context.sizes(), at::IntArrayRef({4, 6, 8}));
  EXPECT_TRUE(b.context_mask.all().item<bool>());
  const at::Tensor real_rows = (b.context.abs().sum(2) > 0).sum(1);  // [B]: 3 or 4 stored rows, the rest zero
  EXPECT_TRUE(((real_rows == 3) | (real_rows == 4)).all().item<bool>()) << real_rows;
  // a clip stored with the mask rule next to them
  TokenClip m{"", at::zeros({2, 4, 4}, at::kLong), at::full({3, 8}, 1.0), "", 0};
  WFM_ASSERT_OK(TokenFolder::Write(dir + "/c2.safetensors", m));
  WFM_ASSERT_OK_AND_ASSIGN(TokenFolder g, TokenFolder::Open(dir));
  absl::Status mixed = absl::OkStatus();
  for (int64_t step = 0; step < 8 && mixed.ok(); ++step) mixed = TokenBatcher(g, 2, 0.0, 0).Train(step, 4).status();
  EXPECT_NE(mixed.message().find("crossattn_pad_to"), std::string::npos) << mixed;
  // more rows than the rule allows
  TokenClip bad{"", at::zeros({2, 4, 4}, at::kLong), at::full({7, 8}, 1.0), "", 6};
  EXPECT_FALSE(TokenFolder::Write(dir + "/bad.safetensors", bad).ok());
}

TEST(ArDataTest, BadFolders) {
  EXPECT_EQ(TokenFolder::Open(testing::TempDir() + "/none").status().code(), absl::StatusCode::kNotFound);
  const std::string dir = testing::TempDir();
  EXPECT_EQ(TokenFolder::Open(dir).status().code(), absl::StatusCode::kNotFound);  // empty
  ASSERT_TRUE(WriteSafetensors(dir + "/a.safetensors", {{"indices", at::zeros({2, 4, 4}, at::kLong)}}).ok());
  ASSERT_TRUE(WriteSafetensors(dir + "/b.safetensors", {{"indices", at::zeros({2, 4, 5}, at::kLong)}}).ok());
  EXPECT_NE(TokenFolder::Open(dir).status().message().find("b.safetensors"), std::string::npos);
  std::remove((dir + "/b.safetensors").c_str());
  ASSERT_TRUE(WriteSafetensors(dir + "/c.safetensors", {{"indices", at::zeros({2, 4, 4})}}).ok());
  EXPECT_NE(TokenFolder::Open(dir).status().message().find("integer"), std::string::npos);
  std::remove((dir + "/c.safetensors").c_str());
  ASSERT_TRUE(WriteSafetensors(dir + "/d.safetensors", {{"latent", at::zeros({2, 4, 4})}}).ok());
  EXPECT_NE(TokenFolder::Open(dir).status().message().find("indices"), std::string::npos);
  std::remove((dir + "/d.safetensors").c_str());
  // `wfm tokenizer encode` output ([1, t, h, w]) is accepted
  ASSERT_TRUE(WriteSafetensors(dir + "/e.safetensors", {{"indices", at::zeros({1, 3, 4, 4}, at::kLong)}}).ok());
  WFM_ASSERT_OK_AND_ASSIGN(TokenFolder f, TokenFolder::Open(dir));
  EXPECT_EQ(f.frames(1), 3);
  TokenBatcher too_long(f, 4, 0.0, 0);
  EXPECT_FALSE(too_long.status().ok());
}

}  // namespace
}  // namespace wfm::ar
