// Video2World / Text2World pipeline: frame bookkeeping (1 + k*N), the last input frames as prompt, cover-resize
// + centre crop, prompt tokens = tokenizer output, decoded videos, and the bad-input errors. Uses a transparent
// test codec (patch means) and, once, the real DV tokenizer network at a tiny width (random weights).
#include <ATen/ATen.h>

#include "ar_test_util.h"
#include "test_support.h"
#include "wfm/autoregressive/world.h"
#include "wfm/core/video_io.h"

namespace wfm::ar {
namespace {

// Temporal 2, spatial 4, vocab 512: a latent frame is the patch-mean brightness (0..511) of the last frame of its
// group (frame 0 alone, then pairs). Decoding paints constant patches.
class PatchCodec : public VideoTokenCodec {
 public:
  explicit PatchCodec(int64_t vocab = 512) : vocab_(vocab) {}
  int64_t vocab_size() const override { return vocab_; }
  int64_t temporal_compression() const override { return 2; }
  int64_t spatial_compression() const override { return 4; }
  absl::StatusOr<at::Tensor> Encode(const at::Tensor& video) override {
    ++encodes;
    last_input = video.clone();
    const int64_t T = video.size(2);
    std::vector<int64_t> keep{0};
    for (int64_t t = 2; t < T; t += 2) keep.push_back(t);
    at::Tensor v = video.index_select(2, at::tensor(keep, at::kLong)).mean(1);  // [1, t, H, W]
    v = at::avg_pool2d(v, {4, 4});                                               // [1, t, h, w]
    return ((v + 1) / 2 * (vocab_ - 1)).round().clamp(0, vocab_ - 1).to(at::kLong);
  }
  absl::StatusOr<at::Tensor> Decode(const at::Tensor& idx) override {
    const at::Tensor v = idx.to(at::kFloat) / (vocab_ - 1) * 2 - 1;  // [B, t, h, w]
    at::Tensor frames = v.repeat_interleave(4, 2).repeat_interleave(4, 3);
    std::vector<at::Tensor> parts{frames.narrow(1, 0, 1)};
    for (int64_t t = 1; t < idx.size(1); ++t) parts.push_back(frames.narrow(1, t, 1).expand({-1, 2, -1, -1}));
    return at::cat(parts, 1).unsqueeze(1).expand({-1, 3, -1, -1, -1}).contiguous();  // [B, 3, T, H, W]
  }
  int encodes = 0;
  at::Tensor last_input;

 private:
  int64_t vocab_;
};

WorldOptions Opts(int64_t in, int64_t out) {
  WorldOptions o;
  o.num_input_frames = in;
  o.num_frames = out;
  o.generation.show_progress = false;
  o.generation.seed = 3;
  return o;
}

TEST(ArWorldTest, Video2WorldUsesTheLastInputFramesAndKeepsPromptTokens) {
  ArTransformer net = Net(Tiny(false));
  PatchCodec codec;
  // 6 frames of 16x16; frame t has brightness ramp t -> the prompt must be the LAST 3 frames (3, 4, 5).
  at::Tensor frames = at::zeros({6, 16, 16, 3}, at::kByte);
  for (int64_t t = 0; t < 6; ++t) frames[t].fill_(40 * t);
  WorldOptions o = Opts(3, 5);
  o.generation.num_samples = 2;
  WFM_ASSERT_OK_AND_ASSIGN(WorldResult r, GenerateWorld(*net, codec, frames, nullptr, o));
  EXPECT_EQ(r.videos.sizes(), at::IntArrayRef({2, 5, 16, 16, 3}));
  EXPECT_EQ(r.videos.scalar_type(), at::kByte);
  EXPECT_EQ(r.tokens.sizes(), at::IntArrayRef({2, 3, 4, 4}));
  ASSERT_EQ(codec.last_input.size(2), 3);
  EXPECT_NEAR(codec.last_input[0][0][0][0][0].item<double>(), 120 / 127.5 - 1, 1e-6) << "first prompt frame = frame 3";
  // prompt latent frames (frames 3 and 5 of the input) are in the output tokens and decode to their brightness
  const int64_t q3 = std::lround((120 / 127.5) / 2 * 511), q5 = std::lround((200 / 127.5) / 2 * 511);
  EXPECT_TRUE((r.tokens.select(1, 0) == q3).all().item<bool>());
  EXPECT_TRUE((r.tokens.select(1, 1) == q5).all().item<bool>());
  EXPECT_NEAR(r.videos[0][0].to(at::kFloat).mean().item<double>(), 120, 1.0);
  EXPECT_NEAR(r.videos[1][2].to(at::kFloat).mean().item<double>(), 200, 1.0);
}

TEST(ArWorldTest, StreamedFramesEqualTheWholeDecode) {
  ArTransformer net = Net(Tiny(false));
  PatchCodec codec;
  at::Tensor frames = at::zeros({3, 16, 16, 3}, at::kByte);
  for (int64_t t = 0; t < 3; ++t) frames[t].fill_(50 + 30 * t);
  WorldOptions o = Opts(3, 9);  // 2 prompt latent frames + 3 generated (one window slide)
  o.generation.num_samples = 2;
  WFM_ASSERT_OK_AND_ASSIGN(WorldResult whole, GenerateWorld(*net, codec, frames, nullptr, o));
  std::vector<int64_t> sizes;
  o.on_frames = [&](const at::Tensor& f) {
    EXPECT_EQ(f.size(0), 2);
    sizes.push_back(f.size(1));
    return absl::OkStatus();
  };
  WFM_ASSERT_OK_AND_ASSIGN(WorldResult streamed, GenerateWorld(*net, codec, frames, nullptr, o));
  EXPECT_EQ(sizes, (std::vector<int64_t>{3, 2, 2, 2})) << "prompt frames first, then 2 frames per latent frame";
  EXPECT_TRUE(at::equal(streamed.videos, whole.videos));
}

TEST(ArWorldTest, ImagePromptAndLongRollout) {
  ArTransformer net = Net(Tiny(false));
  PatchCodec codec;
  const at::Tensor image = at::full({1, 16, 16, 3}, 90, at::kByte);
  // 1 input frame, 11 output frames = 6 latent frames: twice the model's 3-frame window
  WFM_ASSERT_OK_AND_ASSIGN(WorldResult r, GenerateWorld(*net, codec, image, nullptr, Opts(1, 11)));
  EXPECT_EQ(r.videos.sizes(), at::IntArrayRef({1, 11, 16, 16, 3}));
  EXPECT_EQ(r.generation.window_slides, 3);
  EXPECT_EQ(codec.encodes, 1) << "a long rollout must never re-encode pixels";
}

TEST(ArWorldTest, TextToWorld) {
  const ArConfig c = Tiny(true);
  ArTransformer net = Net(c);
  PatchCodec codec;
  const TextContext text{at::randn({1, 4, c.context_dim}), at::ones({1, 4}, at::kBool)};
  WFM_ASSERT_OK_AND_ASSIGN(WorldResult r, GenerateWorld(*net, codec, at::Tensor(), &text, Opts(0, 5)));
  EXPECT_EQ(r.videos.sizes(), at::IntArrayRef({1, 5, 16, 16, 3}));
  EXPECT_EQ(codec.encodes, 0);
}

TEST(ArWorldTest, BadInputErrors) {
  ArTransformer net = Net(Tiny(false));
  PatchCodec codec, big(64000);
  const at::Tensor frames = at::zeros({3, 16, 16, 3}, at::kByte);
  const auto msg = [](const absl::StatusOr<WorldResult>& r) { return std::string(r.status().message()); };
  EXPECT_NE(msg(GenerateWorld(*net, codec, frames, nullptr, Opts(5, 7))).find("fewer than the 5 requested"),
            std::string::npos);
  EXPECT_NE(msg(GenerateWorld(*net, big, frames, nullptr, Opts(3, 5))).find("vocabulary mismatch"), std::string::npos);
  EXPECT_NE(msg(GenerateWorld(*net, codec, frames, nullptr, Opts(2, 5))).find("1 + k*2"), std::string::npos);
  EXPECT_NE(msg(GenerateWorld(*net, codec, frames, nullptr, Opts(3, 3))).find("nothing to generate"),
            std::string::npos);
  EXPECT_NE(msg(GenerateWorld(*net, codec, frames.to(at::kFloat), nullptr, Opts(3, 5))).find("uint8"),
            std::string::npos);
}

TEST(ArWorldTest, TokenizeVideoCutsConsecutiveClips) {
  // 13 frames of 16x16, frame t at brightness 12 t; clips of 5 frames -> frames 0-4 and 5-9 (the tail is dropped)
  at::Tensor frames = at::empty({13, 16, 16, 3}, at::kByte);
  for (int64_t t = 0; t < 13; ++t) frames[t].fill_(12 * t);
  const std::string path = testing::TempDir() + "/ramp.mp4";
  EncodeOptions eo;
  eo.crf = 0;
  WFM_ASSERT_OK(WriteVideo(path, frames, eo));
  PatchCodec codec;
  TokenizeOptions o;
  o.clip_frames = 5;
  o.height = o.width = 16;
  WFM_ASSERT_OK_AND_ASSIGN(std::vector<at::Tensor> clips, TokenizeVideo(codec, path, o));
  ASSERT_EQ(clips.size(), 2u);
  EXPECT_EQ(clips[0].sizes(), at::IntArrayRef({3, 4, 4}));
  // latent frames are the frames 0, 2, 4 and 5, 7, 9: token ~ brightness * 511 / 255
  const std::vector<std::vector<int64_t>> src = {{0, 2, 4}, {5, 7, 9}};
  for (size_t c = 0; c < 2; ++c)
    for (int64_t t = 0; t < 3; ++t)
      EXPECT_NEAR(clips[c][t].to(at::kFloat).mean().item<double>(), 12.0 * src[c][t] * 511 / 255, 8) << c << "," << t;
  o.max_clips = 1;
  EXPECT_EQ(TokenizeVideo(codec, path, o)->size(), 1u);
  o.clip_frames = 4;
  EXPECT_FALSE(TokenizeVideo(codec, path, o).ok()) << "4 is not 1 + k*2";
  o.clip_frames = 5;
  EXPECT_FALSE(TokenizeVideo(codec, testing::TempDir() + "/missing.mp4", o).ok());
}

TEST(ArWorldTest, RealTokenizerNetworkPlumbing) {
  // The wfm DV tokenizer at a tiny width with an 8x8x8 FSQ (512 codes): 9 frames of 64x64 -> 2x4x4 tokens.
  const std::string cfg = testing::SourceDir() + "/tests/autoregressive/data/dv_tiny_tokenizer.json";
  WFM_ASSERT_OK_AND_ASSIGN(std::unique_ptr<VideoTokenCodec> codec, LoadTokenizerCodec(cfg, "", "cpu"));
  EXPECT_EQ(codec->vocab_size(), 512);
  ArTransformer net = Net(Tiny(false));
  at::manual_seed(0);
  const at::Tensor frames = at::randint(0, 255, {9, 64, 64, 3}, at::kByte);
  WFM_ASSERT_OK_AND_ASSIGN(WorldResult r, GenerateWorld(*net, *codec, frames, nullptr, Opts(9, 17)));
  EXPECT_EQ(r.videos.sizes(), at::IntArrayRef({1, 17, 64, 64, 3}));
  EXPECT_EQ(r.tokens.sizes(), at::IntArrayRef({1, 3, 4, 4}));
  // the tokenizer's causal decode stream gives the frames of the whole-clip decode
  WorldOptions so = Opts(9, 17);
  int64_t calls = 0;
  so.on_frames = [&](const at::Tensor&) {
    ++calls;
    return absl::OkStatus();
  };
  WFM_ASSERT_OK_AND_ASSIGN(WorldResult s, GenerateWorld(*net, *codec, frames, nullptr, so));
  EXPECT_EQ(calls, 2);  // the 9 prompt frames, then the 8 of the generated latent frame
  EXPECT_TRUE(at::equal(s.tokens, r.tokens));
  EXPECT_LE(testing::MaxAbsDiff(s.videos, r.videos), 1.0) << "streamed decode != whole decode";
  EXPECT_FALSE(LoadTokenizerCodec("CV8x8x8", "", "cpu").ok()) << "a continuous tokenizer must be refused";
}

}  // namespace
}  // namespace wfm::ar
