// Video IO on bad input: missing, empty, directory, random bytes, truncated, damaged, audio-only and
// unknown-codec files. Every entry point must return a Status naming the file (or decode what is decodable),
// never crash or leak. This suite is its own executable with the ctest label `asan`, so `make asan` runs it
// under AddressSanitizer + LeakSanitizer.
#include <ATen/ATen.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "test_support.h"
#include "wfm/core/file_util.h"
#include "wfm/core/video_io.h"

namespace wfm {
namespace {
namespace fs = std::filesystem;

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string RandomBytes(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

// Makes a small clip with the ffmpeg tool (lavfi test source).
std::string MakeClip(const std::string& dir, const std::string& name, const std::string& args) {
  const std::string path = dir + "/" + name;
  std::string out;
  const std::string cmd = absl::StrCat("ffmpeg -v error -nostdin -y ", args, " '", path, "'");
  EXPECT_EQ(testing::RunCommand(cmd, &out), 0) << cmd << "\n" << out;
  return path;
}

// Every reading entry point fails with a message that names the file.
void ExpectAllFail(const std::string& path) {
  SCOPED_TRACE(path);
  const std::string name = fs::path(path).filename().string();
  auto expect_named = [&](const absl::Status& s, const char* what) {
    EXPECT_FALSE(s.ok()) << what << " succeeded";
    EXPECT_NE(s.message().find(name), std::string::npos) << what << ": message does not name the file: " << s;
  };
  expect_named(ProbeVideo(path).status(), "ProbeVideo");
  expect_named(ProbeVideo(path, true).status(), "ProbeVideo(exact)");
  expect_named(DecodeVideo(path).status(), "DecodeVideo");
  expect_named(DecodeVideoStream(path, {}, [](const at::Tensor&, int64_t) { return absl::OkStatus(); }).status(),
               "DecodeVideoStream");
  auto reader = VideoReader::Open(path);
  if (reader.ok()) {
    expect_named((*reader)->Next(8).status(), "VideoReader::Next");
  } else {
    expect_named(reader.status(), "VideoReader::Open");
  }
  expect_named(ReadImage(path).status(), "ReadImage");
}

TEST(VideoBadInputTest, MissingEmptyAndDirectory) {
  const std::string dir = testing::TempDir();
  EXPECT_EQ(ProbeVideo(dir + "/missing.mp4").status().code(), absl::StatusCode::kNotFound);
  ExpectAllFail(dir + "/missing.mp4");
  WriteBytes(dir + "/empty.mp4", "");
  auto s = ProbeVideo(dir + "/empty.mp4").status();
  EXPECT_NE(s.message().find("empty"), std::string::npos) << s;
  ExpectAllFail(dir + "/empty.mp4");
  fs::create_directories(dir + "/adir.mp4");
  ExpectAllFail(dir + "/adir.mp4");
}

TEST(VideoBadInputTest, RandomBytes) {
  const std::string dir = testing::TempDir();
  for (unsigned seed : {1u, 2u, 3u}) {
    for (const char* ext : {".mp4", ".avi", ".bin"}) {
      const std::string path = absl::StrCat(dir, "/random", seed, ext);
      WriteBytes(path, RandomBytes(256 * 1024, seed));
      ExpectAllFail(path);
    }
  }
}

TEST(VideoBadInputTest, AudioOnlyFileHasNoVideoStream) {
  const std::string dir = testing::TempDir();
  for (const char* name : {"tone.wav", "tone.m4a"}) {
    const std::string path = MakeClip(dir, name, "-f lavfi -i sine=frequency=440:duration=1");
    auto s = ProbeVideo(path).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find("no video stream"), std::string::npos) << s;
    ExpectAllFail(path);
  }
}

TEST(VideoBadInputTest, UnknownCodecTag) {
  // An AVI whose codec fourcc is replaced by one FFmpeg does not know.
  const std::string dir = testing::TempDir();
  const std::string src =
      MakeClip(dir, "src.avi", "-f lavfi -i testsrc2=size=64x48:rate=10 -frames:v 5 -c:v mpeg4 -vtag FMP4");
  WFM_ASSERT_OK_AND_ASSIGN(std::string bytes, ReadFile(src));
  size_t replaced = 0;
  for (size_t pos = bytes.find("FMP4"); pos != std::string::npos && pos < 8192; pos = bytes.find("FMP4", pos + 4)) {
    bytes.replace(pos, 4, "WFMZ");
    ++replaced;
  }
  ASSERT_GT(replaced, 0u);
  const std::string path = dir + "/unknown_codec.avi";
  WriteBytes(path, bytes);
  auto s = ProbeVideo(path).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented) << s;
  EXPECT_NE(s.message().find("WFMZ"), std::string::npos) << s;
  ExpectAllFail(path);
}

TEST(VideoBadInputTest, TruncatedFiles) {
  const std::string dir = testing::TempDir();
  // MP4 with the index (moov) at the end, cut in half: the index is gone.
  const std::string mp4 = MakeClip(dir, "src.mp4", "-f lavfi -i testsrc2=size=128x96:rate=25 -frames:v 50 -c:v libx264");
  WFM_ASSERT_OK_AND_ASSIGN(std::string bytes, ReadFile(mp4));
  WriteBytes(dir + "/half.mp4", bytes.substr(0, bytes.size() / 2));
  ExpectAllFail(dir + "/half.mp4");
  // Only the first bytes of a clip: headers without a single decodable frame.
  for (const std::string& src : {mp4, testing::SharedPath("media/tree.avi")}) {
    if (!fs::exists(src)) continue;
    WFM_ASSERT_OK_AND_ASSIGN(std::string head, ReadFile(src));
    const std::string path = dir + "/head_" + fs::path(src).filename().string();
    WriteBytes(path, head.substr(0, 300));
    ExpectAllFail(path);
  }
}

TEST(VideoBadInputTest, TruncatedStreamDecodesWhatIsThere) {
  // An AVI cut mid-stream keeps its header: the frames before the cut decode, nothing crashes.
  const std::string src = testing::SharedPath("media/vtest.avi");
  WFM_REQUIRE_FILE(src);
  WFM_ASSERT_OK_AND_ASSIGN(std::string bytes, ReadFile(src));
  const std::string dir = testing::TempDir();
  const std::string path = dir + "/cut.avi";
  WriteBytes(path, bytes.substr(0, bytes.size() / 4));
  DecodeOptions o;
  o.width = 64;
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor frames, DecodeVideo(path, o));
  EXPECT_GT(frames.size(0), 100);
  EXPECT_LT(frames.size(0), 795);
  WFM_ASSERT_OK_AND_ASSIGN(VideoInfo info, ProbeVideo(path, true));
  EXPECT_EQ(info.num_frames, frames.size(0));
  // MPEG program streams have no header to lose: 2 KB of cityCC0 still yield one (concealed) frame, exactly
  // as `ffprobe -count_frames` counts.
  const std::string mpg = testing::SharedPath("media/cityCC0.mpg");
  WFM_ASSERT_OK_AND_ASSIGN(std::string head, ReadFile(mpg));
  WriteBytes(dir + "/head.mpg", head.substr(0, 2000));
  std::string count;
  ASSERT_EQ(testing::RunCommand("ffprobe -v quiet -count_frames -select_streams v:0 -show_entries "
                                "stream=nb_read_frames -of csv=p=0 '" + dir + "/head.mpg'", &count), 0);
  WFM_ASSERT_OK_AND_ASSIGN(VideoInfo head_info, ProbeVideo(dir + "/head.mpg", true));
  const std::string first_field = std::string(absl::StripAsciiWhitespace(count.substr(0, count.find(','))));
  EXPECT_EQ(absl::StrCat(head_info.num_frames), first_field);
}

TEST(VideoBadInputTest, DamagedBytesInsideAValidFile) {
  // Random garbage over parts of a real MPEG-2 stream: the decoder skips damage; no crash, frames still come out.
  const std::string src = testing::SharedPath("media/cityCC0.mpg");
  WFM_REQUIRE_FILE(src);
  WFM_ASSERT_OK_AND_ASSIGN(std::string bytes, ReadFile(src));
  const std::string garbage = RandomBytes(4096, 7);
  for (size_t off = 200000; off + garbage.size() < bytes.size(); off += 600000) bytes.replace(off, garbage.size(), garbage);
  const std::string path = testing::TempDir() + "/damaged.mpg";
  WriteBytes(path, bytes);
  DecodeOptions o;
  o.width = 64;
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor frames, DecodeVideo(path, o));
  EXPECT_GT(frames.size(0), 150);
  EXPECT_LE(frames.size(0), 200);
}

TEST(VideoBadInputTest, WriterErrorsNameTheFile) {
  const std::string dir = testing::TempDir();
  WriteBytes(dir + "/plainfile", "x");
  at::Tensor frames = at::zeros({2, 16, 16, 3}, at::kByte);
  auto s = WriteVideo(dir + "/plainfile/out.mp4", frames);  // parent is a file
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("plainfile"), std::string::npos) << s;
  s = WritePngFrames(dir + "/plainfile/frames", frames);
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(VideoWriter::Open(dir + "/zero.mp4", 0, 16).ok());
  EXPECT_FALSE(fs::exists(dir + "/zero.mp4"));
}

}  // namespace
}  // namespace wfm
