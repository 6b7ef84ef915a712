// The serving facade: streaming (chunked == whole clip), windowed (the reference procedure), padding/cropping
// to any size, tiling/blending, image tokenizers on frames, bounded streaming state, and input errors.
#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <iostream>

#include "test_support.h"
#include "wfm/core/safetensors.h"
#include "wfm/tokenizer/layers3d.h"
#include "wfm/tokenizer/tokenizer.h"

namespace wfm::tokenizer {
namespace {

std::string Fixture(const std::string& name, const std::string& suffix) {
  return testing::SharedPath("fixtures/tokenizer/" + name + suffix);
}

std::unique_ptr<Tokenizer> Load(const std::string& name) {
  auto config = TokenizerConfig::FromJsonFile(Fixture(name, ".json"));
  EXPECT_TRUE(config.ok()) << config.status();
  auto tok = Tokenizer::Create(*config, Fixture(name, ".weights.safetensors"));
  EXPECT_TRUE(tok.ok()) << tok.status();
  return tok.ok() ? std::move(*tok) : nullptr;
}

at::Tensor RandomVideo(std::vector<int64_t> shape, int64_t seed = 0) {
  at::manual_seed(seed);
  // Smooth-ish content: upsampled noise, in [-1, 1].
  return (at::rand(shape) * 2 - 1).clamp(-1, 1);
}

void ExpectRel(const at::Tensor& got, const at::Tensor& ref, double tol, const std::string& what) {
  ASSERT_EQ(got.sizes(), ref.sizes()) << what;
  const double rel = testing::MaxRelDiff(got, ref);
  std::cout << "  " << what << ": rel diff " << rel << "\n";
  EXPECT_LE(rel, tol) << what << "\nHINT: a streaming op that loses or repeats a frame at a chunk boundary gives "
                                 "O(1) differences in the frames after the boundary";
}

// Each temporal module on its own: chunk outputs concatenated == the whole-clip output.
template <typename M>
void ExpectStreamsExactly(M module, const at::Tensor& x, std::vector<int64_t> chunks, const std::string& what) {
  torch::NoGradGuard ng;
  at::Tensor whole = module->forward(x, nullptr);
  CausalCache cache;
  std::vector<at::Tensor> outs;
  int64_t t = 0;
  for (int64_t n : chunks) {
    cache.BeginChunk();
    outs.push_back(module->forward(x.narrow(2, t, n), &cache));
    t += n;
  }
  ASSERT_EQ(t, x.size(2));
  ExpectRel(at::cat(outs, 2), whole, 1e-6, what);
}

TEST(TokenizerServingTest, EveryTemporalModuleStreamsExactly) {
  at::manual_seed(0);
  const std::array<int64_t, 3> k311 = {3, 1, 1};
  at::Tensor x = at::randn({2, 4, 7, 6, 6});
  ExpectStreamsExactly(CausalConv3d(4, 5, k311, 1, 1, 0), x, {3, 1, 2, 1}, "causal conv (3,1,1)");
  ExpectStreamsExactly(CausalConv3d(4, 5, std::array<int64_t, 3>{3, 3, 3}, 1, 1, 1), x, {1, 4, 2}, "causal conv 3x3x3");
  ExpectStreamsExactly(CausalTemporalAttnBlock(4, 1), x, {2, 1, 3, 1}, "temporal attention");
  ExpectStreamsExactly(CausalAttnPair(4, 1), x, {1, 6}, "attention pair");
  ExpectStreamsExactly(CausalResnetBlockFactorized3d(4, 8, 0.0, 1), x, {4, 3}, "residual block");
  // Temporal downsampling: first chunk odd (1 + 2k), then even.
  ExpectStreamsExactly(CausalHybridDownsample3d(4, true, true), x, {3, 2, 2}, "hybrid downsample");
  ExpectStreamsExactly(CausalHybridUpsample3d(4, true, true), x, {2, 1, 3, 1}, "hybrid upsample");
  ExpectStreamsExactly(CausalHybridUpsample3d(4, false, true), x, {1, 6}, "temporal upsample");
  // Patcher: first chunk 1 + k*p frames, then multiples of p.
  ExpectStreamsExactly(Patcher3D(4, "haar"), at::randn({1, 3, 13, 8, 8}), {5, 4, 4}, "haar patcher");
  ExpectStreamsExactly(UnPatcher3D(4, "haar"), at::randn({1, 192, 4, 2, 2}), {2, 1, 1}, "haar unpatcher");
  ExpectStreamsExactly(Patcher3D(2, "rearrange"), at::randn({1, 3, 7, 8, 8}), {3, 2, 2}, "rearrange patcher");
}

// The inference shortcuts equal the reference formulations they replace.
TEST(TokenizerServingTest, FastPathsMatchTheReferenceFormulations) {
  torch::NoGradGuard ng;
  at::manual_seed(1);
  CausalHybridUpsample3d up(6, true, false);
  at::Tensor x = at::randn({2, 6, 3, 5, 7});
  ExpectRel(up->SpatialUpSubPixel(x), up->SpatialUpReference(x), 1e-5, "sub-pixel upsampling conv");
  // Per-frame GroupNorm statistics: the sum-based fast path, and the exact fallback when the mean dominates.
  CausalNormalize norm(6, 1);
  for (double offset : {0.0, 5.0, 50.0}) {  // 50: mean^2 >> variance, the exact reduction is used
    at::Tensor y = at::randn({2, 6, 3, 5, 7}) + offset;
    at::Tensor yd = y.to(at::kDouble).transpose(1, 2).reshape({6, 6, 5, 7});
    at::Tensor ref = at::group_norm(yd, 1, norm->norm->weight.to(at::kDouble), norm->norm->bias.to(at::kDouble), 1e-6)
                         .view({2, 3, 6, 5, 7})
                         .transpose(1, 2);
    ExpectRel(norm(y), ref, 2e-5, "per-frame GroupNorm, offset " + std::to_string(offset));
  }
}

// Chunked (streaming) encoding and decoding equal whole-clip encoding/decoding, for several chunkings, and the
// whole-clip path equals the bare network call.
TEST(TokenizerServingTest, StreamingEqualsWholeClip) {
  WFM_REQUIRE_FILE(Fixture("CV8x8x8", ".weights.safetensors"));
  auto tok = Load("CV8x8x8");
  ASSERT_TRUE(tok);
  at::Tensor video = RandomVideo({1, 3, 41, 32, 48});
  ServeOptions whole;
  whole.chunk_frames = 0;
  WFM_ASSERT_OK_AND_ASSIGN(EncodeResult ref, tok->Encode(video, whole));
  {
    torch::NoGradGuard ng;
    EXPECT_LE(testing::MaxRelDiff(ref.latent, tok->network()->Encode(video).latent), 1e-6);
  }
  EXPECT_EQ(ref.latent.size(2), 6);
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor rec_ref, tok->Decode(ref.latent, ref.geometry, whole));
  EXPECT_EQ(rec_ref.sizes(), video.sizes());
  for (int64_t chunk : {8, 16, 24}) {
    ServeOptions o;
    o.chunk_frames = chunk;
    WFM_ASSERT_OK_AND_ASSIGN(EncodeResult enc, tok->Encode(video, o));
    ExpectRel(enc.latent, ref.latent, 1e-4, "latent, chunk " + std::to_string(chunk));
    WFM_ASSERT_OK_AND_ASSIGN(at::Tensor rec, tok->Decode(ref.latent, ref.geometry, o));
    ExpectRel(rec, rec_ref, 1e-4, "reconstruction, chunk " + std::to_string(chunk));
  }
  // Frames pushed in uneven pieces.
  WFM_ASSERT_OK_AND_ASSIGN(auto stream, tok->StartEncode());
  std::vector<at::Tensor> parts;
  int64_t t = 0;
  for (int64_t n : {5, 7, 1, 20, 8}) {
    WFM_ASSERT_OK_AND_ASSIGN(EncodeResult r, stream->Push(video.narrow(2, t, n)));
    parts.push_back(r.latent);
    t += n;
  }
  WFM_ASSERT_OK_AND_ASSIGN(EncodeResult last, stream->Finish());
  parts.push_back(last.latent);
  ExpectRel(at::cat(parts, 2), ref.latent, 1e-4, "latent, uneven pushes");
}

TEST(TokenizerServingTest, StreamingDiscreteIndicesMatchWholeClip) {
  WFM_REQUIRE_FILE(Fixture("DV4x8x8", ".weights.safetensors"));
  auto tok = Load("DV4x8x8");
  ASSERT_TRUE(tok);
  at::Tensor video = RandomVideo({1, 3, 25, 32, 32}, 1);
  ServeOptions whole;
  whole.chunk_frames = 0;
  WFM_ASSERT_OK_AND_ASSIGN(EncodeResult ref, tok->Encode(video, whole));
  ServeOptions o;
  o.chunk_frames = 4;
  WFM_ASSERT_OK_AND_ASSIGN(EncodeResult enc, tok->Encode(video, o));
  const int64_t flipped = enc.indices.ne(ref.indices).sum().item<int64_t>();
  std::cout << "  flipped indices: " << flipped << " of " << ref.indices.numel() << "\n";
  EXPECT_EQ(flipped, 0);
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor rec_ref, tok->Decode(ref.indices, ref.geometry, whole));
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor rec, tok->Decode(ref.indices, ref.geometry, o));
  ExpectRel(rec, rec_ref, 1e-4, "reconstruction from indices, chunk 4");
}

// The causal state is small and, with an attention window, does not grow with the clip length.
TEST(TokenizerServingTest, StreamingStateIsBounded) {
  WFM_REQUIRE_FILE(Fixture("CV4x8x8", ".weights.safetensors"));
  auto tok = Load("CV4x8x8");
  ASSERT_TRUE(tok);
  at::Tensor video = RandomVideo({1, 3, 1 + 4 * 12, 32, 32}, 2);
  for (int64_t window : {0, 2}) {
    ServeOptions o;
    o.chunk_frames = 4;
    o.attention_window = window;
    WFM_ASSERT_OK_AND_ASSIGN(auto stream, tok->StartEncode(o));
    std::vector<int64_t> bytes;
    for (int64_t t = 0; t < video.size(2);) {
      const int64_t n = t == 0 ? 5 : 4;
      WFM_ASSERT_OK(stream->Push(video.narrow(2, t, n)).status());
      bytes.push_back(stream->state_bytes());
      t += n;
    }
    std::cout << "  attention_window " << window << ": state bytes after chunk 2 / last: " << bytes[2] << " / "
              << bytes.back() << "\n";
    if (window > 0) {
      EXPECT_EQ(bytes.back(), bytes[3]) << "state must not grow once the window is full";
    } else {
      EXPECT_GT(bytes.back(), bytes[3]) << "exact mode keeps every key/value";
      // ... but only the temporal-attention keys/values grow: by one latent frame per chunk.
      EXPECT_EQ(bytes.back() - bytes[bytes.size() - 2], bytes[4] - bytes[3]);
    }
  }
}

// Windowed mode reproduces the reference procedure: independent 17-frame windows, each padded like
// pad_video_batch (edge frames, centred; black borders to multiples of 16) and cropped back.
TEST(TokenizerServingTest, WindowedFollowsTheReferenceProcedure) {
  WFM_REQUIRE_FILE(Fixture("CV8x8x8", ".weights.safetensors"));
  auto tok = Load("CV8x8x8");
  ASSERT_TRUE(tok);
  const int64_t T = 40, H = 40, W = 40;  // windows of 17, 17, 6 frames; 40 -> 48 pixels
  at::Tensor video = RandomVideo({1, 3, T, H, W}, 3);
  ServeOptions o;
  o.mode = ServeMode::kWindowed;
  WFM_ASSERT_OK_AND_ASSIGN(EncodeResult enc, tok->Encode(video, o));
  EXPECT_EQ(enc.latent.size(2), 3 + 3 + 2);
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor rec, tok->Decode(enc.latent, enc.geometry, o));
  ASSERT_EQ(rec.sizes(), video.sizes());
  // Independent restatement of the reference for the last window (6 frames -> 1 in front, 2 behind; 4 px
  // black border on every side).
  torch::NoGradGuard ng;
  at::Tensor win = video.narrow(2, 34, 6);
  win = at::constant_pad_nd(win, {4, 4, 4, 4}, -1.0);
  win = at::cat({win.narrow(2, 0, 1), win, win.narrow(2, 5, 1), win.narrow(2, 5, 1)}, 2);
  auto ref_enc = tok->network()->Encode(win);
  ExpectRel(enc.latent.narrow(2, 6, 2), ref_enc.latent, 1e-5, "last window latent");
  at::Tensor ref_rec = tok->network()->Decode(ref_enc.latent).narrow(2, 1, 6).narrow(3, 4, H).narrow(4, 4, W);
  ExpectRel(rec.narrow(2, 34, 6), ref_rec, 1e-5, "last window reconstruction");
}

TEST(TokenizerServingTest, AnySizeIsPaddedAndCroppedBack) {
  WFM_REQUIRE_FILE(Fixture("DV8x16x16", ".weights.safetensors"));
  auto tok = Load("DV8x16x16");
  ASSERT_TRUE(tok);
  for (auto mode : {ServeMode::kStreaming, ServeMode::kWindowed}) {
    at::Tensor video = RandomVideo({2, 3, 10, 37, 45}, 4);
    ServeOptions o;
    o.mode = mode;
    WFM_ASSERT_OK_AND_ASSIGN(EncodeResult enc, tok->Encode(video, o));
    EXPECT_EQ(enc.indices.dim(), 4);
    EXPECT_EQ(enc.indices.size(0), 2);
    EXPECT_EQ(enc.indices.size(2), mode == ServeMode::kWindowed ? 3 : 3);  // 37 -> 48 / 16
    WFM_ASSERT_OK_AND_ASSIGN(at::Tensor rec, tok->Decode(enc.indices, enc.geometry, o));
    EXPECT_EQ(rec.sizes(), video.sizes()) << ServeModeName(mode);
    WFM_ASSERT_OK_AND_ASSIGN(at::Tensor rec2, tok->Reconstruct(video, o));
    EXPECT_TRUE(at::allclose(rec, rec2, 1e-5, 1e-5));
    // Geometry survives a trip through safetensors metadata.
    WFM_ASSERT_OK_AND_ASSIGN(ClipGeometry g, ClipGeometry::FromMetadata(enc.geometry.ToMetadata()));
    EXPECT_EQ(g.frames, 10);
    EXPECT_EQ(g.height, 37);
    EXPECT_EQ(g.width, 45);
    EXPECT_EQ(g.mode, mode);
  }
  // A single image through a video tokenizer: [B, C, H, W] in, [B, C, H, W] out.
  at::Tensor image = RandomVideo({1, 3, 20, 30}, 5);
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor rec, tok->Reconstruct(image));
  EXPECT_EQ(rec.sizes(), image.sizes());
}

TEST(TokenizerServingTest, ImageTokenizerOnImagesAndFrames) {
  WFM_REQUIRE_FILE(Fixture("DI16x16", ".weights.safetensors"));
  auto tok = Load("DI16x16");
  ASSERT_TRUE(tok);
  WFM_ASSERT_OK_AND_ASSIGN(TensorMap io, ReadSafetensors(Fixture("DI16x16", ".io.safetensors")));
  WFM_ASSERT_OK_AND_ASSIGN(EncodeResult enc, tok->Encode(io.at("input")));
  EXPECT_TRUE(at::equal(enc.indices, io.at("indices")));
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor rec, tok->Decode(enc.indices, enc.geometry));
  ExpectRel(rec, io.at("reconstruction_from_indices"), 1e-4, "DI16x16 through the facade");
  // Frames of a video, odd size, processed 2 images at a time.
  at::Tensor frames = RandomVideo({1, 3, 5, 20, 36}, 6);
  ServeOptions o;
  o.chunk_frames = 2;
  WFM_ASSERT_OK_AND_ASSIGN(EncodeResult fe, tok->Encode(frames, o));
  EXPECT_EQ(fe.indices.sizes(), (std::vector<int64_t>{1, 5, 2, 3}));
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor fr, tok->Decode(fe.indices, fe.geometry, o));
  EXPECT_EQ(fr.sizes(), frames.sizes());
  // Frame 3 alone gives the same indices.
  WFM_ASSERT_OK_AND_ASSIGN(EncodeResult one, tok->Encode(frames.select(2, 3)));
  EXPECT_TRUE(at::equal(one.indices[0], fe.indices[0][3]));
}

// Tiling machinery: with local operators the blended result equals the untiled one exactly.
TEST(TokenizerServingTest, TiledApplyBlendsToTheUntiledResultForLocalOps) {
  at::Tensor x = RandomVideo({1, 2, 3, 64, 80}, 7);
  auto down = [](const at::Tensor& t, size_t) { return at::avg_pool3d(t, {1, 8, 8}, {1, 8, 8}); };
  at::Tensor ref = down(x, 0);
  at::Tensor tiled = TiledApply(x, 32, 16, 1, 8, down);
  EXPECT_LE(testing::MaxAbsDiff(tiled, ref), 1e-6);
  auto up = [](const at::Tensor& t, size_t) { return at::upsample_nearest3d(t, {t.size(2), t.size(3) * 4, t.size(4) * 4}); };
  at::Tensor small = x.narrow(3, 0, 12).narrow(4, 0, 10);
  EXPECT_LE(testing::MaxAbsDiff(TiledApply(small, 4, 2, 4, 1, up), up(small, 0)), 1e-6);
  EXPECT_EQ(TileStarts(100, 32, 8), (std::vector<int64_t>{0, 24, 48, 68}));
  EXPECT_EQ(TileStarts(32, 32, 8), (std::vector<int64_t>{0}));
}

TEST(TokenizerServingTest, TiledNetworkRunsAndTileCoveringTheFrameIsExact) {
  WFM_REQUIRE_FILE(Fixture("CV8x8x8", ".weights.safetensors"));
  auto tok = Load("CV8x8x8");
  ASSERT_TRUE(tok);
  at::Tensor video = RandomVideo({1, 3, 9, 48, 64}, 8);
  WFM_ASSERT_OK_AND_ASSIGN(EncodeResult ref, tok->Encode(video));
  ServeOptions big;
  big.tile = 64;
  WFM_ASSERT_OK_AND_ASSIGN(EncodeResult same, tok->Encode(video, big));
  EXPECT_LE(testing::MaxRelDiff(same.latent, ref.latent), 1e-6);
  ServeOptions o;
  o.tile = 32;
  o.tile_overlap = 16;
  o.chunk_frames = 8;
  WFM_ASSERT_OK_AND_ASSIGN(EncodeResult tiled, tok->Encode(video, o));
  EXPECT_EQ(tiled.latent.sizes(), ref.latent.sizes());
  EXPECT_TRUE(at::isfinite(tiled.latent).all().item<bool>());
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor rec, tok->Decode(tiled.latent, tiled.geometry, o));
  EXPECT_EQ(rec.sizes(), video.sizes());
  EXPECT_TRUE(at::isfinite(rec).all().item<bool>());
}

TEST(TokenizerServingTest, BadInputGivesClearErrors) {
  WFM_REQUIRE_FILE(Fixture("DV8x16x16", ".weights.safetensors"));
  auto tok = Load("DV8x16x16");
  ASSERT_TRUE(tok);
  auto expect_error = [](const auto& result, const std::string& needle) {
    ASSERT_FALSE(result.ok()) << "expected an error mentioning " << needle;
    EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << result.status();
    EXPECT_NE(result.status().message().find(needle), std::string::npos) << result.status();
  };
  at::Tensor video = RandomVideo({1, 3, 9, 32, 32});
  at::Tensor nan = video.clone();
  nan[0][1][4][3][3] = std::numeric_limits<float>::quiet_NaN();
  expect_error(tok->Encode(nan), "NaN");
  expect_error(tok->Encode(nan), "frame 4");
  at::Tensor inf = video.clone();
  inf[0][0][0][0][0] = std::numeric_limits<float>::infinity();
  expect_error(tok->Encode(inf), "Inf");
  expect_error(tok->Encode(RandomVideo({1, 4, 9, 32, 32})), "4 channels");
  expect_error(tok->Encode(at::zeros({1, 3, 0, 32, 32})), "no frames");
  expect_error(tok->Encode(at::zeros({3, 32, 32})), "[B, C, T, H, W]");
  expect_error(tok->Encode(at::zeros({1, 3, 9, 32, 32}, at::kLong)), "float");
  expect_error(tok->Decode(at::full({1, 2, 2, 2}, 64000, at::kLong)), "out of range");
  expect_error(tok->Decode(at::full({1, 2, 2, 2}, -1, at::kLong)), "out of range");
  expect_error(tok->Decode(at::zeros({1, 16, 2, 2, 2})), "channels");
  expect_error(tok->Decode(at::full({1, 6, 2, 2, 2}, std::numeric_limits<float>::quiet_NaN())), "NaN");
  auto config = TokenizerConfig::FromJsonFile(Fixture("DV8x16x16", ".json"));
  ASSERT_TRUE(config.ok());
  // A tokenizer loaded for one half refuses the other.
  TokenizerOptions encode_only;
  encode_only.part = WeightsPart::kEncoder;
  auto enc = Tokenizer::Create(*config, Fixture("DV8x16x16", ".weights.safetensors"), encode_only);
  WFM_ASSERT_OK(enc.status());
  WFM_EXPECT_OK((*enc)->Encode(video).status());
  auto refused = (*enc)->Decode(at::zeros({1, 2, 2, 2}, at::kLong));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();
  EXPECT_NE(refused.status().message().find("encoding only"), std::string::npos) << refused.status();
  TokenizerOptions bad_dtype;
  bad_dtype.dtype = "float8";
  expect_error(Tokenizer::Create(*config, Fixture("DV8x16x16", ".weights.safetensors"), bad_dtype), "dtype");
}

}  // namespace
}  // namespace wfm::tokenizer
