// Video IO against the ffmpeg/ffprobe tools on the real shared clips: probe fields and exact frame counts,
// decoded pixels vs `ffmpeg -pix_fmt rgb24`, resize, frame ranges, fps resampling, bounded-memory streaming,
// encode round trips (timestamps checked with ffprobe, odd sizes, codecs/containers, atomic writes), PNG, and
// the tensor layout conversions. Bad-input tests live in video_io_bad_input_asan_test.cc (ctest label asan).
#include "wfm/core/video_io.h"

#include <sys/resource.h>

#include <ATen/ATen.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "test_support.h"
#include "wfm/core/file_util.h"

namespace wfm {
namespace {
namespace fs = std::filesystem;

const char* const kClips[] = {"media/vtest.avi", "media/tree.avi", "media/cityCC0.mpg"};

// ffprobe -show_entries stream=... for the first video stream, as key -> value.
std::map<std::string, std::string> FfprobeStream(const std::string& path, const std::string& entries,
                                                 bool count_frames = false) {
  std::string out;
  const std::string cmd = absl::StrCat("ffprobe -v error ", count_frames ? "-count_frames " : "",
                                       "-select_streams v:0 -show_entries stream=", entries,
                                       " -of default=noprint_wrappers=1 '", path, "'");
  EXPECT_EQ(testing::RunCommand(cmd, &out), 0) << cmd << "\n" << out;
  std::map<std::string, std::string> kv;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    std::pair<std::string, std::string> p = absl::StrSplit(line, absl::MaxSplits('=', 1));
    kv[p.first] = p.second;
  }
  return kv;
}

int64_t ToInt(const std::string& s) {
  int64_t v = -1;
  EXPECT_TRUE(absl::SimpleAtoi(s, &v)) << "not an integer: '" << s << "'";
  return v;
}

double ToDouble(const std::string& s) {
  double v = -1;
  EXPECT_TRUE(absl::SimpleAtod(s, &v)) << "not a number: '" << s << "'";
  return v;
}

// Reference RGB frames from the ffmpeg tool with the same swscale flags as wfm: uint8 [n, H, W, 3].
at::Tensor FfmpegRgb(const std::string& path, int64_t n, int width, int height, const std::string& vf = "",
                     const std::string& sws_flags = "bicubic+full_chroma_int") {
  const std::string raw = testing::TempDir() + "/ref.rgb";
  const std::string cmd =
      absl::StrCat("ffmpeg -v error -nostdin -y -i '", path, "' -frames:v ", n, vf.empty() ? "" : " -vf " + vf,
                   " -vsync passthrough -sws_flags ", sws_flags, " -pix_fmt rgb24 -f rawvideo '", raw, "'");
  std::string out;
  EXPECT_EQ(testing::RunCommand(cmd, &out), 0) << cmd << "\n" << out;
  auto bytes = ReadFile(raw);
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  if (!bytes.ok()) return at::Tensor();
  const int64_t frame = static_cast<int64_t>(width) * height * 3;
  EXPECT_EQ(static_cast<int64_t>(bytes->size()), n * frame) << "unexpected ffmpeg output size";
  return at::from_blob(bytes->data(), {static_cast<int64_t>(bytes->size()) / frame, height, width, 3}, at::kByte)
      .clone();
}

double Psnr(const at::Tensor& a, const at::Tensor& b) {
  const double mse = (a.to(at::kDouble) - b.to(at::kDouble)).pow(2).mean().item<double>();
  return mse <= 0 ? 99.0 : 10.0 * std::log10(255.0 * 255.0 / mse);
}

// A short real clip: the first `n` frames of cityCC0 at width x height.
at::Tensor RealFrames(int64_t n, int width, int height) {
  DecodeOptions o;
  o.width = width;
  o.height = height;
  o.num_frames = n;
  auto frames = DecodeVideo(testing::SharedPath("media/cityCC0.mpg"), o);
  EXPECT_TRUE(frames.ok()) << frames.status();
  return frames.ok() ? *frames : at::Tensor();
}

#define REQUIRE_MEDIA()                                                  \
  do {                                                                   \
    for (const char* c : kClips) WFM_REQUIRE_FILE(testing::SharedPath(c)); \
  } while (0)

TEST(VideoProbeTest, MatchesFfprobeOnSharedClips) {
  REQUIRE_MEDIA();
  for (const char* clip : kClips) {
    const std::string path = testing::SharedPath(clip);
    SCOPED_TRACE(path);
    auto ref = FfprobeStream(path, "codec_name,width,height,avg_frame_rate,nb_frames");
    WFM_ASSERT_OK_AND_ASSIGN(VideoInfo info, ProbeVideo(path));
    EXPECT_EQ(info.codec, ref["codec_name"]);
    EXPECT_EQ(info.width, ToInt(ref["width"]));
    EXPECT_EQ(info.height, ToInt(ref["height"]));
    EXPECT_EQ(absl::StrCat(info.fps.num, "/", info.fps.den), ref["avg_frame_rate"]);
    if (ref["nb_frames"] != "N/A") EXPECT_EQ(info.num_frames, ToInt(ref["nb_frames"]));
    EXPECT_FALSE(info.num_frames_exact);
    EXPECT_GT(info.duration_s, 1.0);
    EXPECT_EQ(info.rotation, 0);
  }
}

TEST(VideoProbeTest, ExactFrameCountEqualsFfprobeCountFrames) {
  REQUIRE_MEDIA();
  for (const char* clip : kClips) {
    const std::string path = testing::SharedPath(clip);
    SCOPED_TRACE(path);
    const int64_t expected = ToInt(FfprobeStream(path, "nb_read_frames", true)["nb_read_frames"]);
    WFM_ASSERT_OK_AND_ASSIGN(VideoInfo info, ProbeVideo(path, /*exact=*/true));
    EXPECT_TRUE(info.num_frames_exact);
    EXPECT_EQ(info.num_frames, expected) << "HINT: exact probe must decode like ffprobe -count_frames";
  }
}

TEST(VideoDecodeTest, DecodesEveryFrameOfSharedClips) {
  REQUIRE_MEDIA();
  for (const char* clip : kClips) {
    const std::string path = testing::SharedPath(clip);
    SCOPED_TRACE(path);
    const int64_t expected = ToInt(FfprobeStream(path, "nb_read_frames", true)["nb_read_frames"]);
    DecodeOptions o;
    o.width = 64;  // small output keeps the test fast; the decode itself is full
    o.chunk_frames = 50;
    int64_t seen = 0;
    WFM_ASSERT_OK_AND_ASSIGN(int64_t n, DecodeVideoStream(path, o, [&](const at::Tensor& chunk, int64_t first) {
                               EXPECT_EQ(first, seen);
                               EXPECT_EQ(chunk.size(2), 64);
                               seen += chunk.size(0);
                               return absl::OkStatus();
                             }));
    EXPECT_EQ(n, expected);
    EXPECT_EQ(seen, expected);
  }
}

TEST(VideoDecodeTest, PixelsMatchFfmpegTool) {
  REQUIRE_MEDIA();
  for (const char* clip : kClips) {
    const std::string path = testing::SharedPath(clip);
    SCOPED_TRACE(path);
    DecodeOptions o;
    o.num_frames = 6;
    WFM_ASSERT_OK_AND_ASSIGN(at::Tensor frames, DecodeVideo(path, o));  // [6, H, W, 3]
    WFM_ASSERT_OK_AND_ASSIGN(VideoInfo info, ProbeVideo(path));
    ASSERT_EQ(frames.sizes(), (at::IntArrayRef{6, info.height, info.width, 3}));
    at::Tensor ref = FfmpegRgb(path, 6, info.width, info.height);
    ASSERT_TRUE(ref.defined());
    const double diff = testing::MaxAbsDiff(frames, ref);
    EXPECT_LE(diff, 1.0) << "max |wfm - ffmpeg| = " << diff
                         << " HINT: colour matrix/range or swscale flags differ from ffmpeg's";
  }
}

TEST(VideoDecodeTest, ResizeMatchesFfmpegScale) {
  REQUIRE_MEDIA();
  const std::string path = testing::SharedPath("media/vtest.avi");
  DecodeOptions o;
  o.width = 192;  // 768x576 -> 192x144, aspect kept
  o.num_frames = 3;
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor frames, DecodeVideo(path, o));
  ASSERT_EQ(frames.sizes(), (at::IntArrayRef{3, 144, 192, 3}));
  at::Tensor ref = FfmpegRgb(path, 3, 192, 144, "scale=192:144");
  ASSERT_TRUE(ref.defined());
  // ffmpeg scales in YUV then converts; wfm converts and scales in one swscale pass: close, not identical.
  const double psnr = Psnr(frames, ref);
  EXPECT_GT(psnr, 38.0) << "PSNR vs ffmpeg scale = " << psnr;

  o.width = 100, o.height = 30;  // both given: exact size, aspect not kept
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor squashed, DecodeVideo(path, o));
  EXPECT_EQ(squashed.sizes(), (at::IntArrayRef{3, 30, 100, 3}));
}

TEST(VideoDecodeTest, FrameRangeIsASliceOfTheFullDecode) {
  REQUIRE_MEDIA();
  const std::string path = testing::SharedPath("media/cityCC0.mpg");
  DecodeOptions o;
  o.width = 96;
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor all, DecodeVideo(path, o));
  ASSERT_EQ(all.size(0), 190);
  o.start_frame = 110;
  o.num_frames = 15;
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor part, DecodeVideo(path, o));
  ASSERT_EQ(part.size(0), 15);
  EXPECT_TRUE(at::equal(part, all.narrow(0, 110, 15)));
  o.start_frame = 185;  // range past the end is clipped
  o.num_frames = 100;
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor tail, DecodeVideo(path, o));
  ASSERT_EQ(tail.size(0), 5);
  EXPECT_TRUE(at::equal(tail, all.narrow(0, 185, 5)));
  o.start_frame = 500;
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor none, DecodeVideo(path, o));
  EXPECT_EQ(none.size(0), 0);
}

TEST(VideoDecodeTest, FpsResamplingPicksNearestFrames) {
  REQUIRE_MEDIA();
  const std::string path = testing::SharedPath("media/vtest.avi");  // 10 fps CFR, 795 frames
  DecodeOptions o;
  o.width = 48;
  o.num_frames = 200;
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor src, DecodeVideo(path, o));
  ASSERT_EQ(src.size(0), 200);
  o.fps = 5;  // every other frame
  o.num_frames = 100;
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor half, DecodeVideo(path, o));
  ASSERT_EQ(half.size(0), 100);
  for (int64_t k = 0; k < 100; ++k) ASSERT_TRUE(at::equal(half[k], src[2 * k])) << "slot " << k;
  o.fps = 20;  // each frame twice (ties at the midpoint go to the earlier frame, like ffmpeg -vf fps)
  o.num_frames = 200;
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor twice, DecodeVideo(path, o));
  ASSERT_EQ(twice.size(0), 200);
  for (int64_t k = 0; k < 200; ++k) ASSERT_TRUE(at::equal(twice[k], src[k / 2])) << "slot " << k;
  // Resampled output count covers the whole duration: 79.5 s at 5 fps.
  o.fps = 5;
  o.num_frames = -1;
  o.start_frame = 390;
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor end, DecodeVideo(path, o));
  EXPECT_EQ(end.size(0), 398 - 390);
}

TEST(VideoDecodeTest, ResampledRangeDeepInsideSeeksToTheSameFrames) {
  REQUIRE_MEDIA();
  // With fps set, a range starting > 3 s in is reached by seeking; the frames must equal a linear decode.
  struct Case {
    const char* clip;
    double fps;
    int64_t start, count;
  };
  for (const Case& c : {Case{"media/vtest.avi", 10, 600, 30}, Case{"media/cityCC0.mpg", 25, 150, 20},
                        Case{"media/tree.avi", 15, 300, 40}, Case{"media/vtest.avi", 4, 250, 100}}) {
    const std::string path = testing::SharedPath(c.clip);
    SCOPED_TRACE(absl::StrCat(c.clip, " fps ", c.fps, " start ", c.start));
    DecodeOptions o;
    o.width = 48;
    o.fps = c.fps;
    WFM_ASSERT_OK_AND_ASSIGN(at::Tensor all, DecodeVideo(path, o));
    o.start_frame = c.start;
    o.num_frames = c.count;
    WFM_ASSERT_OK_AND_ASSIGN(at::Tensor part, DecodeVideo(path, o));
    const int64_t expected = std::min<int64_t>(c.count, all.size(0) - c.start);
    ASSERT_EQ(part.size(0), expected);
    EXPECT_TRUE(at::equal(part, all.narrow(0, c.start, expected)))
        << "max diff " << testing::MaxAbsDiff(part, all.narrow(0, c.start, expected));
  }
}

TEST(VideoDecodeTest, ResamplingVariableFrameRateFillsTheTimeline) {
  REQUIRE_MEDIA();
  // tree.avi stores 68 frames on a 15 fps timeline of 444 slots (skipped frames are empty AVI entries).
  const std::string path = testing::SharedPath("media/tree.avi");
  auto ref = FfprobeStream(path, "nb_frames");
  DecodeOptions o;
  o.width = 40;
  WFM_ASSERT_OK_AND_ASSIGN(VideoInfo info, ProbeVideo(path));
  o.fps = info.fps.value();
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor frames, DecodeVideo(path, o));
  EXPECT_EQ(frames.size(0), ToInt(ref["nb_frames"])) << "HINT: one output frame per container slot";
  // Every output frame is one of the 68 decoded ones.
  o.fps = 0;
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor decoded, DecodeVideo(path, o));
  EXPECT_EQ(decoded.size(0), 68);
  EXPECT_TRUE(at::equal(frames[0], decoded[0]));
  EXPECT_TRUE(at::equal(frames[frames.size(0) - 1], decoded[decoded.size(0) - 1]));
}

TEST(VideoDecodeTest, StreamingKeepsMemoryBounded) {
  REQUIRE_MEDIA();
  // 795 frames of 768x576 RGB = 1.05 GB if held at once; streaming in chunks of 16 must stay far below.
  const std::string path = testing::SharedPath("media/vtest.avi");
  struct rusage before;
  getrusage(RUSAGE_SELF, &before);
  DecodeOptions o;
  o.chunk_frames = 16;
  int64_t chunks = 0;
  double checksum = 0;
  WFM_ASSERT_OK_AND_ASSIGN(int64_t n, DecodeVideoStream(path, o, [&](const at::Tensor& chunk, int64_t) {
                             EXPECT_LE(chunk.size(0), 16);
                             EXPECT_TRUE(chunk.is_contiguous());
                             checksum += chunk[0][0][0][0].item<int>();
                             ++chunks;
                             return absl::OkStatus();
                           }));
  struct rusage after;
  getrusage(RUSAGE_SELF, &after);
  EXPECT_EQ(n, 795);
  EXPECT_EQ(chunks, (795 + 15) / 16);
  const double grown_mb = (after.ru_maxrss - before.ru_maxrss) / 1024.0;
  EXPECT_LT(grown_mb, 250.0) << "peak RSS grew by " << grown_mb << " MB while streaming (1 GB of frames)";
}

TEST(VideoDecodeTest, ChunksKeptByTheCallbackStayIntact) {
  REQUIRE_MEDIA();
  // The stream reuses its chunk buffer only when the callback dropped it: kept chunks must not be overwritten.
  const std::string path = testing::SharedPath("media/cityCC0.mpg");
  DecodeOptions o;
  o.width = 32;
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor all, DecodeVideo(path, o));
  o.chunk_frames = 7;
  std::vector<at::Tensor> kept;
  int64_t dropped_sum = 0;
  WFM_ASSERT_OK(DecodeVideoStream(path, o, [&](const at::Tensor& chunk, int64_t first) {
    if ((first / 7) % 2 == 0) kept.push_back(chunk); else dropped_sum += chunk.sum().item<int64_t>();
    return absl::OkStatus();
  }));
  at::Tensor rebuilt = at::cat(kept);
  std::vector<at::Tensor> expected;
  for (int64_t first = 0; first < all.size(0); first += 14) expected.push_back(all.narrow(0, first, std::min<int64_t>(7, all.size(0) - first)));
  EXPECT_TRUE(at::equal(rebuilt, at::cat(expected)));
  EXPECT_GT(dropped_sum, 0);
}

TEST(VideoDecodeTest, CallbackErrorStopsDecoding) {
  REQUIRE_MEDIA();
  DecodeOptions o;
  o.width = 32;
  o.chunk_frames = 10;
  int calls = 0;
  auto n = DecodeVideoStream(testing::SharedPath("media/vtest.avi"), o, [&](const at::Tensor&, int64_t) {
    return ++calls == 2 ? absl::CancelledError("enough") : absl::OkStatus();
  });
  EXPECT_EQ(n.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(calls, 2);
}

TEST(VideoDecodeTest, ReaderPullsChunksAndThreadCountsAgree) {
  REQUIRE_MEDIA();
  const std::string path = testing::SharedPath("media/cityCC0.mpg");
  DecodeOptions o;
  o.width = 64;
  o.threads = 1;
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor one, DecodeVideo(path, o));
  o.threads = 2;
  WFM_ASSERT_OK_AND_ASSIGN(auto reader, VideoReader::Open(path, o));
  EXPECT_EQ(reader->info().codec, "mpeg2video");
  std::vector<at::Tensor> parts;
  while (true) {
    const int64_t pos = reader->position();
    WFM_ASSERT_OK_AND_ASSIGN(at::Tensor t, reader->Next(37));
    if (!t.defined()) break;
    EXPECT_EQ(pos, static_cast<int64_t>(parts.size()) * 37);
    parts.push_back(t);
  }
  at::Tensor two = at::cat(parts);
  EXPECT_TRUE(at::equal(one, two)) << "HINT: frame threading must not change the decoded frames";
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor after, reader->Next(5));
  EXPECT_FALSE(after.defined());
}

TEST(VideoDecodeTest, HwaccelCudaIsCleanErrorWithoutGpu) {
  REQUIRE_MEDIA();
  DecodeOptions o;
  o.hwaccel = "cuda";
  o.num_frames = 4;
  auto frames = DecodeVideo(testing::SharedPath("media/cityCC0.mpg"), o);
  if (frames.ok()) {  // a GPU with NVDEC: same frames as software decoding, within rounding of NV12 output
    o.hwaccel = "";
    WFM_ASSERT_OK_AND_ASSIGN(at::Tensor sw, DecodeVideo(testing::SharedPath("media/cityCC0.mpg"), o));
    EXPECT_GT(Psnr(*frames, sw), 40.0);
    return;
  }
  EXPECT_NE(frames.status().message().find("cityCC0.mpg"), std::string::npos) << frames.status();
  o.hwaccel = "auto";  // falls back to software
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor sw, DecodeVideo(testing::SharedPath("media/cityCC0.mpg"), o));
  EXPECT_EQ(sw.size(0), 4);
  o.hwaccel = "bogus";
  EXPECT_EQ(DecodeVideo(testing::SharedPath("media/cityCC0.mpg"), o).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(VideoTensorTest, ModelInputLayoutAndRoundTrip) {
  at::Tensor frames = at::randint(0, 256, {3, 5, 7, 3}, at::kByte);  // [T, H, W, 3]
  at::Tensor x = FramesToModelInput(frames);                           // [3, T, H, W]
  ASSERT_EQ(x.sizes(), (at::IntArrayRef{3, 3, 5, 7}));
  EXPECT_EQ(x.scalar_type(), at::kFloat);
  EXPECT_NEAR(x[1][2][4][6].item<float>(), frames[2][4][6][1].item<int>() / 127.5 - 1.0, 1e-6);
  EXPECT_GE(x.min().item<float>(), -1.0f);
  EXPECT_LE(x.max().item<float>(), 1.0f);
  EXPECT_TRUE(at::equal(ModelOutputToFrames(x), frames));
  at::Tensor out_of_range = at::full({3, 1, 2, 2}, 3.0);
  EXPECT_EQ(ModelOutputToFrames(out_of_range).max().item<int>(), 255);
  EXPECT_EQ(ModelOutputToFrames(-out_of_range).min().item<int>(), 0);
}

TEST(VideoEncodeTest, H264RoundTripWithCorrectTimestamps) {
  REQUIRE_MEDIA();
  at::Tensor frames = RealFrames(30, 320, 180);
  ASSERT_TRUE(frames.defined());
  const std::string path = testing::TempDir() + "/sub/dir/out.mp4";  // parent dirs are created
  EncodeOptions e;
  e.fps = 12;
  e.crf = 18;
  WFM_ASSERT_OK(WriteVideo(path, frames, e));
  auto ref = FfprobeStream(path, "codec_name,width,height,avg_frame_rate,r_frame_rate,nb_frames,duration");
  EXPECT_EQ(ref["codec_name"], "h264");
  EXPECT_EQ(ref["width"], "320");
  EXPECT_EQ(ref["height"], "180");
  EXPECT_EQ(ref["avg_frame_rate"], "12/1");
  EXPECT_EQ(ref["r_frame_rate"], "12/1");
  EXPECT_EQ(ref["nb_frames"], "30");
  EXPECT_NEAR(ToDouble(ref["duration"]), 2.5, 1e-3);
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor back, DecodeVideo(path));
  ASSERT_EQ(back.sizes(), frames.sizes());
  // The ffmpeg tool gets 32.6 dB on these frames at CRF 18 (preset medium) and 35.3 dB lossless (4:2:0 chroma
  // loss only); a colour-matrix mismatch between encode and decode would cost several dB more.
  const double psnr = Psnr(back, frames);
  EXPECT_GT(psnr, 30.0) << "CRF 18 re-encode PSNR " << psnr;
  e.crf = 0;
  WFM_ASSERT_OK(WriteVideo(path, frames, e));  // overwrites atomically
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor lossless, DecodeVideo(path));
  const double psnr0 = Psnr(lossless, frames);
  EXPECT_GT(psnr0, 34.5) << "CRF 0 PSNR " << psnr0 << " HINT: RGB->YUV and YUV->RGB matrices/ranges disagree";
  // No temp files are left beside the output.
  const auto entries = std::distance(fs::directory_iterator(fs::path(path).parent_path()), fs::directory_iterator());
  EXPECT_EQ(entries, 1);
}

TEST(VideoEncodeTest, CrfControlsQualityAndSize) {
  REQUIRE_MEDIA();
  at::Tensor frames = RealFrames(12, 256, 144);
  const std::string dir = testing::TempDir();
  EncodeOptions hi, lo;
  hi.crf = 16;
  lo.crf = 38;
  WFM_ASSERT_OK(WriteVideo(dir + "/hi.mp4", frames, hi));
  WFM_ASSERT_OK(WriteVideo(dir + "/lo.mp4", frames, lo));
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor h, DecodeVideo(dir + "/hi.mp4"));
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor l, DecodeVideo(dir + "/lo.mp4"));
  EXPECT_GT(Psnr(h, frames), Psnr(l, frames) + 3.0);
  EXPECT_GT(fs::file_size(dir + "/hi.mp4"), 2 * fs::file_size(dir + "/lo.mp4"));
}

TEST(VideoEncodeTest, RationalFrameRateIsKeptExactly) {
  REQUIRE_MEDIA();
  at::Tensor frames = RealFrames(10, 128, 72);
  const std::string path = testing::TempDir() + "/ntsc.mkv";
  EncodeOptions e;
  e.fps_rational = {30000, 1001};
  WFM_ASSERT_OK(WriteVideo(path, frames, e));
  auto ref = FfprobeStream(path, "avg_frame_rate,r_frame_rate");
  EXPECT_EQ(ref["r_frame_rate"], "30000/1001");
  WFM_ASSERT_OK_AND_ASSIGN(VideoInfo info, ProbeVideo(path, true));
  EXPECT_EQ(info.num_frames, 10);
  EXPECT_NEAR(info.fps.value(), 30000.0 / 1001, 1e-3);
}

TEST(VideoEncodeTest, OddSizesArePaddedByEdgeReplication) {
  REQUIRE_MEDIA();
  at::Tensor frames = RealFrames(4, 65, 47);
  const std::string path = testing::TempDir() + "/odd.mp4";
  EncodeOptions e;
  e.crf = 10;
  WFM_ASSERT_OK(WriteVideo(path, frames, e));
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor back, DecodeVideo(path));
  ASSERT_EQ(back.sizes(), (at::IntArrayRef{4, 48, 66, 3}));
  EXPECT_GT(Psnr(back.narrow(1, 0, 47).narrow(2, 0, 65), frames), 30.0);
  // The padding column repeats the last one.
  EXPECT_LE(testing::MaxAbsDiff(back.select(2, 65), back.select(2, 64)), 24.0);
  // Decoding this BT.709-tagged, odd-row-length (66 * 3 bytes) clip matches the ffmpeg tool.
  at::Tensor ref = FfmpegRgb(path, 4, 66, 48, "", "bicubic+full_chroma_int+accurate_rnd");
  ASSERT_TRUE(ref.defined());
  EXPECT_LE(testing::MaxAbsDiff(back, ref), 1.0) << "HINT: BT.709 matrix or unaligned swscale rows";
}

TEST(VideoEncodeTest, Mpeg4AndOtherContainers) {
  REQUIRE_MEDIA();
  at::Tensor frames = RealFrames(8, 160, 90);
  const std::string dir = testing::TempDir();
  for (const std::string name : {"a.avi", "b.mkv", "c.mp4"}) {
    EncodeOptions e;
    e.codec = "mpeg4";
    e.fps = 8;
    WFM_ASSERT_OK(WriteVideo(dir + "/" + name, frames, e));
    auto ref = FfprobeStream(dir + "/" + name, "codec_name,avg_frame_rate");
    EXPECT_EQ(ref["codec_name"], "mpeg4") << name;
    WFM_ASSERT_OK_AND_ASSIGN(VideoInfo info, ProbeVideo(dir + "/" + name, true));
    EXPECT_EQ(info.num_frames, 8) << name;
    WFM_ASSERT_OK_AND_ASSIGN(at::Tensor back, DecodeVideo(dir + "/" + name));
    EXPECT_GT(Psnr(back, frames), 28.0) << name;
  }
}

TEST(VideoEncodeTest, WebmGetsItsOwnCodecByDefault) {
  REQUIRE_MEDIA();
  at::Tensor frames = RealFrames(4, 64, 36);
  const std::string path = testing::TempDir() + "/clip.webm";
  EncodeOptions e;
  e.preset = "";
  WFM_ASSERT_OK(WriteVideo(path, frames, e));
  auto ref = FfprobeStream(path, "codec_name");
  EXPECT_TRUE(ref["codec_name"] == "vp9" || ref["codec_name"] == "vp8" || ref["codec_name"] == "av1")
      << ref["codec_name"];
  e.codec = "h264";  // asked for explicitly (not the default): a clear error
  auto s = WriteVideo(testing::TempDir() + "/x.webm", frames, e);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
}

TEST(VideoEncodeTest, IncrementalWriterAndAtomicity) {
  REQUIRE_MEDIA();
  at::Tensor frames = RealFrames(9, 96, 64);
  const std::string dir = testing::TempDir();
  {
    WFM_ASSERT_OK_AND_ASSIGN(auto w, VideoWriter::Open(dir + "/inc.mp4", 96, 64));
    WFM_ASSERT_OK(w->Write(frames.narrow(0, 0, 4)));
    WFM_ASSERT_OK(w->Write(frames[4]));  // one [H, W, 3] frame
    WFM_ASSERT_OK(w->Write(frames.narrow(0, 5, 4)));
    EXPECT_EQ(w->frames_written(), 9);
    EXPECT_FALSE(fs::exists(dir + "/inc.mp4")) << "visible before Close()";
    WFM_ASSERT_OK(w->Close());
    EXPECT_FALSE(w->Close().ok());
    EXPECT_FALSE(w->Write(frames[0]).ok());
  }
  WFM_ASSERT_OK_AND_ASSIGN(VideoInfo info, ProbeVideo(dir + "/inc.mp4", true));
  EXPECT_EQ(info.num_frames, 9);
  {
    WFM_ASSERT_OK_AND_ASSIGN(auto w, VideoWriter::Open(dir + "/abandoned.mp4", 96, 64));
    WFM_ASSERT_OK(w->Write(frames));
  }  // destroyed without Close(): nothing is left behind
  EXPECT_FALSE(fs::exists(dir + "/abandoned.mp4"));
  int entries = 0;
  for (const auto& e : fs::directory_iterator(dir)) entries += e.is_regular_file();
  EXPECT_EQ(entries, 1) << "temp files left in " << dir;
}

TEST(VideoEncodeTest, RejectsBadFramesAndOptions) {
  const std::string dir = testing::TempDir();
  at::Tensor ok = at::zeros({2, 16, 16, 3}, at::kByte);
  EXPECT_EQ(WriteVideo(dir + "/f.mp4", ok.to(at::kFloat)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(WriteVideo(dir + "/f.mp4", at::zeros({2, 16, 16, 4}, at::kByte)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(WriteVideo(dir + "/f.unknownext", ok).code(), absl::StatusCode::kInvalidArgument);
  EncodeOptions e;
  e.codec = "no-such-codec";
  auto s = WriteVideo(dir + "/f.mp4", ok, e);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented) << s;
  EXPECT_NE(s.message().find("f.mp4"), std::string::npos) << s;
  e = EncodeOptions();
  e.preset = "warp-speed";
  EXPECT_FALSE(WriteVideo(dir + "/f.mp4", ok, e).ok());
  e = EncodeOptions();
  e.fps = 0;
  EXPECT_EQ(WriteVideo(dir + "/f.mp4", ok, e).code(), absl::StatusCode::kInvalidArgument);
  WFM_ASSERT_OK_AND_ASSIGN(auto w, VideoWriter::Open(dir + "/g.mp4", 16, 16));
  EXPECT_EQ(w->Write(at::zeros({1, 8, 8, 3}, at::kByte)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(w->Close().code(), absl::StatusCode::kFailedPrecondition);  // no frames
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir)) files += entry.is_regular_file();
  EXPECT_EQ(files, 0) << "failed writes must leave nothing behind";
}

TEST(VideoImageTest, PngFramesRoundTripLosslessly) {
  at::manual_seed(1);
  at::Tensor frames = at::randint(0, 256, {3, 17, 23, 3}, at::kByte);
  const std::string dir = testing::TempDir() + "/png";
  WFM_ASSERT_OK(WritePngFrames(dir, frames, "f"));
  for (int i = 0; i < 3; ++i) {
    const std::string path = dir + "/f00000" + std::to_string(i) + ".png";
    WFM_ASSERT_OK_AND_ASSIGN(at::Tensor back, ReadImage(path));
    EXPECT_TRUE(at::equal(back, frames[i])) << path;
    std::string kind;
    ASSERT_EQ(testing::RunCommand("ffprobe -v error -show_entries stream=codec_name -of csv=p=0 '" + path + "'", &kind),
              0);
    EXPECT_EQ(std::string(absl::StripAsciiWhitespace(kind)), "png");
  }
  WFM_ASSERT_OK(WritePng(dir + "/one.png", frames[1]));
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor one, ReadImage(dir + "/one.png"));
  EXPECT_TRUE(at::equal(one, frames[1]));
  EXPECT_FALSE(WritePng(dir + "/two.png", frames).ok());  // more than one frame
}

TEST(VideoImageTest, ReadsJpegWrittenByFfmpeg) {
  const std::string path = testing::TempDir() + "/pattern.jpg";
  ASSERT_EQ(testing::RunCommand("ffmpeg -v error -nostdin -y -f lavfi -i testsrc2=size=96x64 -frames:v 1 -q:v 2 '" +
                                path + "'"),
            0);
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor img, ReadImage(path));
  EXPECT_EQ(img.sizes(), (at::IntArrayRef{64, 96, 3}));
  EXPECT_GT(img.to(at::kFloat).std().item<float>(), 20.0f);  // a real pattern, not a blank frame
}

// The world models' input preparation (cosmos resize_input): cover, then centre crop with Python-rounded offsets.
TEST(ResizeCoverCropTest, CoversThenCropsTheCentre) {
  // 16x32 with value 4*column: covering 16x16 keeps the scale (max(16/32, 16/16) = 1) and crops columns 8..23.
  at::Tensor f = at::arange(32, at::kFloat).mul(4).to(at::kByte).view({1, 1, 32, 1}).expand({2, 16, 32, 3}).contiguous();
  at::Tensor out = ResizeCoverCrop(f, 16, 16);
  ASSERT_EQ(out.sizes(), (at::IntArrayRef{2, 16, 16, 3}));
  EXPECT_TRUE(out.equal(f.narrow(2, 8, 16)));
  // (17 - 12) / 2 = 2.5 rounds to 2 like Python's round() (halves to even), not 3.
  at::Tensor g = at::arange(17, at::kFloat).mul(10).to(at::kByte).view({1, 1, 17, 1}).expand({1, 10, 17, 3}).contiguous();
  EXPECT_TRUE(ResizeCoverCrop(g, 10, 12).equal(g.narrow(2, 2, 12)));
  // 40x80, left half red / right half blue -> 32x32: scaled by 0.8 to 32x64, columns 16..47 kept.
  at::Tensor h = at::zeros({1, 40, 80, 3}, at::kByte);
  h.narrow(2, 0, 40).select(3, 0).fill_(200);
  h.narrow(2, 40, 40).select(3, 2).fill_(100);
  at::Tensor r = ResizeCoverCrop(h, 32, 32);
  ASSERT_EQ(r.sizes(), (at::IntArrayRef{1, 32, 32, 3}));
  EXPECT_EQ(r[0][16][2][0].item<int>(), 200);
  EXPECT_EQ(r[0][16][29][2].item<int>(), 100);
  // Upscaling 8x8 -> 16x16 covers exactly; the target size is the source size: unchanged.
  EXPECT_EQ(ResizeCoverCrop(at::zeros({1, 8, 8, 3}, at::kByte), 16, 16).sizes(), (at::IntArrayRef{1, 16, 16, 3}));
  EXPECT_TRUE(ResizeCoverCrop(h, 40, 80).equal(h));
  EXPECT_THROW(ResizeCoverCrop(at::zeros({1, 8, 8, 3}, at::kFloat), 4, 4), c10::Error);
}

}  // namespace
}  // namespace wfm
