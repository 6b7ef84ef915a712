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
