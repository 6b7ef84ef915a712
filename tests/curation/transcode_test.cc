// Clip transcoding from one decode pass: frame-exact spans, crop + resize, fps resampling, stream copy of
// keyframe-aligned clips (and re-encoding of the others), encoder resolution.
#include <filesystem>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "curation_test_util.h"
#include "test_support.h"
#include "wfm/curation/analysis.h"
#include "wfm/curation/decoder.h"
#include "wfm/curation/pipeline.h"
#include "wfm/curation/transcode.h"
#include "wfm/curation/webdataset.h"

namespace wfm::curation {
namespace {
namespace fs = std::filesystem;

double Psnr(const at::Tensor& a, const at::Tensor& b) {
  double mse = (a.to(at::kDouble) - b.to(at::kDouble)).pow(2).mean().item<double>();
  return 10 * std::log10(255.0 * 255.0 / std::max(mse, 1e-10));
}

class TranscodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    city_ = wfm::testing::SharedPath("media/cityCC0.mpg");
    WFM_REQUIRE_FILE(city_);
    dir_ = wfm::testing::TempDir();
  }
  // Three shots of 100, 100 and 70 frames (320x180, 25 fps), a keyframe every 25 frames.
  void WriteGopVideo(const std::string& video, const std::string& x264_extra = "", const std::string& mux = "") {
    WFM_ASSERT_OK_AND_ASSIGN(at::Tensor a, testing::LoadFrames(city_, 320, 180, 0, 100));
    WFM_ASSERT_OK_AND_ASSIGN(at::Tensor b, testing::LoadFrames(wfm::testing::SharedPath("media/vtest.avi"), 320, 180, 0, 100));
    WFM_ASSERT_OK_AND_ASSIGN(at::Tensor c, testing::LoadFrames(city_, 320, 180, 120, 70));
    WFM_ASSERT_OK(testing::EncodeFrames(at::cat({a, b, c}), 25, video,
                                        "-c:v libx264 -preset veryfast -x264-params keyint=25:min-keyint=25:scenecut=0" +
                                            x264_extra + " -pix_fmt yuv420p " + mux));
  }
  std::string city_, dir_;
};

TEST_F(TranscodeTest, SpansCropResizeAndFps) {
  TranscodeOptions o;
  o.bit_rate = 0;
  o.crf = 16;
  std::vector<ClipJob> jobs(3);
  jobs[0].start_frame = 12, jobs[0].end_frame = 104, jobs[0].output = dir_ + "/a.mp4";
  jobs[1].start_frame = 128, jobs[1].end_frame = 178, jobs[1].output = dir_ + "/b.mp4";
  jobs[1].crop = CropBox{100, 50, 400, 300};
  jobs[2].start_frame = 178, jobs[2].end_frame = 190, jobs[2].output = dir_ + "/c.mp4";
  WFM_ASSERT_OK_AND_ASSIGN(auto outs, TranscodeClips(city_, jobs, o));
  ASSERT_EQ(outs.size(), 3u);
  EXPECT_EQ(outs[0].num_frames, 92);
  EXPECT_EQ(outs[0].width, 720);
  EXPECT_EQ(outs[0].height, 404);
  EXPECT_EQ(outs[1].num_frames, 50);
  EXPECT_EQ(outs[1].width, 400);
  EXPECT_EQ(outs[1].height, 300);
  EXPECT_EQ(outs[2].num_frames, 12);
  EXPECT_EQ(outs[0].codec, "h264");
  // Frame-exact: the clip's first frame is the source's frame 128 (cropped), not a neighbour.
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor src, testing::LoadFrames(city_, 0, 0, 127, 3));
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor clip, testing::LoadFrames(dir_ + "/b.mp4", 0, 0, 0, 1));
  EXPECT_EQ(clip.size(0), 1);
  at::Tensor want = src.slice(1, 50, 350).slice(2, 100, 500);  // [3, 300, 400, 3]
  double at128 = Psnr(clip[0], want[1]), at127 = Psnr(clip[0], want[0]), at129 = Psnr(clip[0], want[2]);
  std::printf("PSNR of clip frame 0 vs source 127/128/129: %.1f / %.1f / %.1f dB\n", at127, at128, at129);
  EXPECT_GT(at128, 35.0);
  EXPECT_GT(at128, at127 + 1.0);
  EXPECT_GT(at128, at129 + 1.0);
  // Resize to 180 p and resample 25 -> 10 fps.
  o.height = 180;
  o.fps = 10;
  std::vector<ClipJob> one = {jobs[0]};
  one[0].output = dir_ + "/small.mp4";
  WFM_ASSERT_OK_AND_ASSIGN(auto small, TranscodeClips(city_, one, o));
  EXPECT_EQ(small[0].height, 180);
  EXPECT_EQ(small[0].width, 320);
  EXPECT_NEAR(small[0].num_frames, 92 * 10 / 25, 1);
  EXPECT_NEAR(small[0].fps, 10.0, 1e-6);
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor back, testing::LoadFrames(dir_ + "/small.mp4"));
  EXPECT_EQ(back.size(0), small[0].num_frames);
  // Overlapping jobs are a usage error; a span past the end is reported.
  std::vector<ClipJob> bad = {jobs[0], jobs[0]};
  EXPECT_FALSE(TranscodeClips(city_, bad, o).ok());
  std::vector<ClipJob> late(1);
  late[0].start_frame = 500, late[0].end_frame = 600, late[0].output = dir_ + "/late.mp4";
  EXPECT_FALSE(TranscodeClips(city_, late, o).ok());
}

TEST_F(TranscodeTest, StreamCopiesKeyframeAlignedClips) {
  // Three shots of 100 frames with a keyframe every 25 frames: with no trimming the clips start and end on
  // keyframes and are copied; with the default 0.5 s trim they are not aligned and get re-encoded.
  std::string video = dir_ + "/gop.mp4";
  WriteGopVideo(video);
  if (HasFatalFailure()) return;
  for (double trim : {0.0, 0.5}) {
    AnalysisOptions ao;
    ao.clips.crop_s = trim;
    ao.clips.min_length_s = 1.0;  // keep the 70-frame last shot after the 0.5 s trims
    ao.clips.min_length_frames = 25;
    WFM_ASSERT_OK_AND_ASSIGN(VideoAnalysis an, AnalyzeVideo(video, ao));
    ASSERT_EQ(an.clips.size(), 3u) << an.video.ToJson().dump();
    std::vector<ClipJob> jobs;
    for (const auto& cl : an.clips) {
      jobs.push_back(JobForClip(cl, dir_ + "/" + cl.span_uuid + ".mp4"));
      EXPECT_EQ(cl.start_key, trim == 0.0) << cl.start_frame;
      EXPECT_EQ(cl.end_key, trim == 0.0) << cl.end_frame;  // the next shot's keyframe, or the end of the stream
      EXPECT_EQ(cl.end_pts == ClipRecord::kEndOfStream, cl.end_frame == an.video.num_frames) << cl.end_frame;
    }
    TranscodeOptions o;
    o.stream_copy = true;
    WFM_ASSERT_OK_AND_ASSIGN(auto outs, TranscodeClips(video, jobs, o));
    for (size_t k = 0; k < outs.size(); ++k) {
      EXPECT_EQ(outs[k].stream_copied, trim == 0.0) << k;
      EXPECT_EQ(outs[k].num_frames, jobs[k].end_frame - jobs[k].start_frame) << k;
      WFM_ASSERT_OK_AND_ASSIGN(at::Tensor back, testing::LoadFrames(jobs[k].output, 64, 36));
      EXPECT_EQ(back.size(0), jobs[k].end_frame - jobs[k].start_frame) << k;
      if (outs[k].stream_copied) {
        // The same bitstream from a keyframe: the copy decodes to exactly the source's frames.
        WFM_ASSERT_OK_AND_ASSIGN(at::Tensor src, testing::LoadFrames(video, 64, 36, jobs[k].start_frame,
                                                                     jobs[k].end_frame - jobs[k].start_frame));
        EXPECT_TRUE(back.equal(src)) << "clip " << k << " max diff " << wfm::testing::MaxAbsDiff(back, src);
      }
    }
  }
}

TEST_F(TranscodeTest, VariableFrameRateSpansAreReencodedNotCopied) {
  // The GOP video with its timestamps rewritten (setts bitstream filter; same pictures and keyframes, average
  // still 25 fps): in the middle shot, pictures 140-149 come at 50 fps and 150-154 at 12.5 fps. The analysis
  // numbers frames on the 25 fps grid, dropping 4 of those pictures and repeating 4 frames, so a copy of that shot
  // would hold other pictures than frames [100, 200) its metadata names: it must be re-encoded (the recorded
  // frames, at the nominal rate), with the reason recorded, while the constant-rate shots are still copied.
  // MP4 time base 1/50 (1 tick = half a frame; below 10000, so the copies' muxer picks another: the copied
  // packets must be rescaled).
  const std::string cfr = dir_ + "/cfr.mp4", vfr = dir_ + "/vfr.mp4";
  WriteGopVideo(cfr, ":bframes=0", "-video_track_timescale 50");
  if (HasFatalFailure()) return;
  const std::string setts = "setts=ts='if(lt(N,140),2*N,if(lt(N,150),140+N,if(lt(N,155),290+4*(N-150),2*N)))'";
  ASSERT_EQ(wfm::testing::RunCommand("ffmpeg -v error -y -i '" + cfr + "' -c copy -bsf:v \"" + setts +
                                     "\" -video_track_timescale 50 '" + vfr + "'"),
            0);
  AnalysisOptions ao;
  ao.clips.crop_s = 0;
  ao.clips.min_length_s = 1.0;
  ao.clips.min_length_frames = 25;
  ao.decode_threads = 1;
  WFM_ASSERT_OK_AND_ASSIGN(VideoAnalysis an, AnalyzeVideo(vfr, ao));
  ASSERT_EQ(an.clips.size(), 3u) << an.video.ToJson().dump();
  EXPECT_EQ(an.video.num_frames, 270);
  std::vector<ClipJob> jobs;
  for (const auto& cl : an.clips) {
    jobs.push_back(JobForClip(cl, dir_ + "/" + cl.span_uuid + ".mp4"));
    EXPECT_TRUE(cl.start_key) << cl.start_frame;
  }
  ASSERT_EQ(jobs[1].start_frame, 100);
  ASSERT_EQ(jobs[1].end_frame, 200);
  TranscodeOptions o;
  o.stream_copy = true;
  o.threads = 1;
  o.encoder = "libx264";
  WFM_ASSERT_OK_AND_ASSIGN(auto outs, TranscodeClips(vfr, jobs, o));
  for (size_t k = 0; k < outs.size(); ++k) {
    SCOPED_TRACE("clip " + std::to_string(k));
    const int64_t n = jobs[k].end_frame - jobs[k].start_frame;
    EXPECT_EQ(outs[k].stream_copied, k != 1);
    if (k == 1) {
      EXPECT_NE(outs[k].copy_declined.find("variable frame rate"), std::string::npos) << outs[k].copy_declined;
    } else {
      EXPECT_EQ(outs[k].copy_declined, "");
    }
    EXPECT_EQ(outs[k].num_frames, n);
    // The clip's pictures are the analysis' frames [start, end): bit-exact when copied, re-encoded otherwise.
    WFM_ASSERT_OK_AND_ASSIGN(at::Tensor back, testing::LoadFrames(jobs[k].output, 64, 36));
    WFM_ASSERT_OK_AND_ASSIGN(at::Tensor src, testing::LoadFrames(vfr, 64, 36, jobs[k].start_frame, n));
    ASSERT_EQ(back.size(0), n);
    if (outs[k].stream_copied) {
      EXPECT_TRUE(back.equal(src)) << "max diff " << wfm::testing::MaxAbsDiff(back, src);
    } else {
      EXPECT_GT(Psnr(back, src), 30.0);
    }
    // ... shown at the clip's constant rate: picture i at i / 25 s.
    DecoderOptions raw;
    raw.constant_frame_rate = false;
    WFM_ASSERT_OK_AND_ASSIGN(auto dec, VideoDecoder::Open(jobs[k].output, raw));
    EXPECT_NEAR(dec->info().fps.value(), 25.0, 1e-6);
    int64_t i = 0;
    double worst = 0;
    while (true) {
      WFM_ASSERT_OK_AND_ASSIGN(bool more, dec->Next());
      if (!more) break;
      worst = std::max(worst, std::abs(dec->frame().time_s() - i / 25.0));
      ++i;
    }
    EXPECT_EQ(i, n);
    EXPECT_LT(worst, 1e-3) << "largest timestamp deviation from i / 25 s";
  }
  // The constant-frame-rate rule the check shares with the decoder.
  EXPECT_EQ(CfrDecision(10.0, 10, 25), 0);
  EXPECT_EQ(CfrDecision(8.8, 10, 25), -1);
  EXPECT_EQ(CfrDecision(12.0, 10, 25), 2);
  EXPECT_EQ(CfrDecision(11.0, 10, 25), 0);
}

TEST_F(TranscodeTest, CurateStreamCopiesAlignedClipsIntoShards) {
  // `wfm curate --stream-copy --trim-s 0`: the keyframe alignment found by the analysis reaches the transcode
  // step, the clips are copied (not re-encoded) and the shards' mp4s hold the recorded frames.
  fs::create_directories(dir_ + "/in");
  WriteGopVideo(dir_ + "/in/gop.mp4");
  if (HasFatalFailure()) return;
  CurateOptions o;
  o.inputs = {dir_ + "/in"};
  o.output = dir_ + "/out";
  o.quiet = true;
  o.workers = 1;
  o.analysis.decode_threads = 1;
  o.analysis.clips.crop_s = 0;
  o.analysis.clips.min_length_s = 1.0;
  o.analysis.clips.min_length_frames = 25;
  o.analysis.filters.motion_filter = "disable";
  o.transcode.stream_copy = true;
  o.transcode.threads = 1;
  WFM_ASSERT_OK_AND_ASSIGN(nlohmann::json summary, RunCurate(o));
  EXPECT_EQ(summary["clips"]["written"], 3) << summary.dump();
  WFM_ASSERT_OK_AND_ASSIGN(auto reader, DatasetReader::Open({dir_ + "/out/shards"}));
  Sample s;
  int copied = 0;
  while (true) {
    WFM_ASSERT_OK_AND_ASSIGN(bool more, reader->Next(&s));
    if (!more) break;
    WFM_ASSERT_OK_AND_ASSIGN(nlohmann::json meta, s.Json());
    copied += meta["stream_copied"].get<bool>();
    EXPECT_TRUE(meta["stream_copy_declined"].is_null()) << meta.dump();
    EXPECT_TRUE(meta["keyframes"]["start_key"].get<bool>()) << meta.dump();
    WFM_ASSERT_OK_AND_ASSIGN(at::Tensor frames, s.DecodeVideo(64, 36));
    EXPECT_EQ(frames.size(0), meta["end_frame"].get<int64_t>() - meta["start_frame"].get<int64_t>()) << meta.dump();
  }
  EXPECT_EQ(copied, 3);
}

TEST(EncoderTest, AutoResolvesToAnEncoderThatOpens) {
  std::string e = ResolveEncoder("auto");
  EXPECT_TRUE(e == "h264_nvenc" || e == "libx264" || e == "libopenh264" || e == "mpeg4") << e;
  EXPECT_EQ(ResolveEncoder("libx264"), "libx264");
}

}  // namespace
}  // namespace wfm::curation
