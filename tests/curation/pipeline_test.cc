// End-to-end `RunCurate` on a small real input set: outputs and metadata names, failed inputs, sidecar
// captions, dedup of a rescaled re-encoded copy (the higher resolution survives), shards readable through
// the DatasetReader API, resume idempotence, --no-transcode, option changes and --fail-fast.
#include <filesystem>
#include <fstream>
#include <set>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "curation_test_util.h"
#include "test_support.h"
#include "wfm/core/file_util.h"
#include "wfm/curation/pipeline.h"
#include "wfm/curation/webdataset.h"

namespace wfm::curation {
namespace {
namespace fs = std::filesystem;

std::vector<nlohmann::json> ReadJsonl(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
  return out;
}

class PipelineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string city = wfm::testing::SharedPath("media/cityCC0.mpg");
    if (!fs::exists(city)) return;
    dir_ = new std::string(wfm::testing::TempDir());
    const std::string in = *dir_ + "/in";
    fs::create_directories(in);
    fs::copy_file(city, in + "/city.mpg");
    fs::copy_file(wfm::testing::SharedPath("media/tree.avi"), in + "/tree.avi");
    // A rescaled, re-encoded copy of the city clip (a near duplicate at lower resolution).
    ASSERT_EQ(wfm::testing::RunCommand("ffmpeg -v error -y -i '" + city + "' -vf scale=360:202 -c:v libx264 -crf 30 '" +
                                       in + "/city_small.mp4'"), 0);
    ASSERT_TRUE(WriteFileAtomically(in + "/city.txt", "a city skyline at night\n").ok());
    ASSERT_TRUE(WriteFileAtomically(in + "/random.mp4", std::string(20000, '\x5a')).ok());
    ASSERT_TRUE(WriteFileAtomically(in + "/empty.mkv", "").ok());
    ASSERT_EQ(wfm::testing::RunCommand("ffmpeg -v error -y -f lavfi -i sine=d=1 '" + in + "/audio_only.mp4'"), 0);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (!dir_) GTEST_SKIP() << "missing fixture: media/cityCC0.mpg";
  }
  CurateOptions Options(const std::string& out) const {
    CurateOptions o;
    o.inputs = {*dir_ + "/in", *dir_ + "/missing.mp4"};
    o.output = out;
    o.workers = 2;
    o.quiet = true;
    o.analysis.decode_threads = 1;
    o.transcode.height = 180;
    o.transcode.threads = 1;
    return o;
  }
  static std::string* dir_;
};
std::string* PipelineTest::dir_ = nullptr;

TEST_F(PipelineTest, EndToEndOutputsDedupCaptionsAndResume) {
  const std::string out = *dir_ + "/run";
  WFM_ASSERT_OK_AND_ASSIGN(nlohmann::json summary, RunCurate(Options(out)));
  // videos.jsonl: every input, failures with reasons.
  auto videos = ReadJsonl(out + "/videos.jsonl");
  ASSERT_EQ(videos.size(), 7u);
  std::map<std::string, nlohmann::json> by_name;
  for (const auto& v : videos) {
    for (const char* k : {"source_video", "status", "error", "fps", "num_frames", "width", "height", "shots", "clips"}) {
      EXPECT_TRUE(v.contains(k)) << k;
    }
    by_name[fs::path(v["source_video"].get<std::string>()).filename().string()] = v;
  }
  for (const char* bad : {"random.mp4", "empty.mkv", "audio_only.mp4", "missing.mp4"}) {
    EXPECT_EQ(by_name[bad]["status"], "failed") << bad;
    EXPECT_FALSE(by_name[bad]["error"].get<std::string>().empty()) << bad;
  }
  EXPECT_NE(by_name["audio_only.mp4"]["error"].get<std::string>().find("no video stream"), std::string::npos);
  ASSERT_EQ(by_name["city.mpg"]["status"], "ok");
  EXPECT_EQ(by_name["city.mpg"]["shots"]["shots"], nlohmann::json::parse("[[0,116],[116,190]]"));
  EXPECT_EQ(by_name["city.mpg"]["num_frames"], 190);

  // clips.jsonl: upstream fields + ours; the small copy's clips are duplicates of the full-size ones.
  auto clips = ReadJsonl(out + "/clips.jsonl");
  std::map<std::string, nlohmann::json> by_uuid;
  std::set<std::string> kept_keys;
  for (const auto& c : clips) {
    for (const char* k : {"span_uuid", "source_video", "duration_span", "width_source", "height_source",
                          "framerate_source", "width", "height", "framerate", "num_frames", "video_codec", "num_bytes",
                          "motion_score", "aesthetic_score", "windows", "errors", "start_frame", "end_frame", "kept",
                          "filter_reasons", "shard", "key"}) {
      EXPECT_TRUE(c.contains(k)) << k;
    }
    by_uuid[c["span_uuid"]] = c;
    EXPECT_EQ(c["key"], c["span_uuid"]);
    EXPECT_EQ(c["key"].get<std::string>().find('.'), std::string::npos);
    if (c["kept"]) {
      kept_keys.insert(c["key"]);
      EXPECT_TRUE(c["shard"].is_string());
    } else {
      EXPECT_TRUE(c["shard"].is_null());
    }
  }
  int dup_of_city = 0;
  for (const auto& c : clips) {
    std::string src = fs::path(c["source_video"].get<std::string>()).filename().string();
    if (src == "city_small.mp4") {
      EXPECT_FALSE(c["kept"]) << c.dump();
      ASSERT_TRUE(c["duplicate_of"].is_string()) << c.dump();
      const auto& orig = by_uuid[c["duplicate_of"].get<std::string>()];
      EXPECT_EQ(fs::path(orig["source_video"].get<std::string>()).filename(), "city.mpg");
      EXPECT_EQ(orig["start_frame"], c["start_frame"]);
      ++dup_of_city;
    }
    if (src == "city.mpg") {
      EXPECT_TRUE(c["kept"]) << c.dump();
      EXPECT_EQ(c["windows"][0]["caption"], "a city skyline at night");
    }
  }
  EXPECT_EQ(dup_of_city, 2);
  EXPECT_EQ(summary["clips"]["duplicates"], 2);
  for (const char* k : {"inputs", "videos", "clips", "hours_in", "hours_out", "wall_time_s", "throughput_input_s_per_s"}) {
    EXPECT_TRUE(summary.contains(k)) << k;
  }
  WFM_ASSERT_OK_AND_ASSIGN(std::string summary_file, ReadFile(out + "/summary.json"));
  EXPECT_EQ(nlohmann::json::parse(summary_file)["inputs"], 7);

  // Shards: exactly the kept clips, readable through the dataset API; mp4s decode to the recorded frames.
  WFM_ASSERT_OK_AND_ASSIGN(auto reader, DatasetReader::Open({out + "/shards"}));
  std::set<std::string> shard_keys;
  Sample s;
  while (true) {
    WFM_ASSERT_OK_AND_ASSIGN(bool more, reader->Next(&s));
    if (!more) break;
    EXPECT_TRUE(shard_keys.insert(s.key).second) << "duplicate sample " << s.key;
    WFM_ASSERT_OK_AND_ASSIGN(nlohmann::json meta, s.Json());
    EXPECT_EQ(meta["span_uuid"], s.key);
    const auto& c = by_uuid[s.key];
    EXPECT_EQ(fs::path(s.shard).lexically_relative(out).string(), c["shard"].get<std::string>());
    WFM_ASSERT_OK_AND_ASSIGN(at::Tensor frames, s.DecodeVideo(64, 36));
    EXPECT_EQ(frames.size(0), c["num_frames"].get<int64_t>());
    EXPECT_EQ(c["height"], 180);
    if (fs::path(c["source_video"].get<std::string>()).filename() == "city.mpg") {
      EXPECT_EQ(s.Text(), "a city skyline at night");
    }
  }
  EXPECT_EQ(shard_keys, kept_keys);

  // Resume: the same command again redoes nothing and reproduces the indexes byte for byte.
  WFM_ASSERT_OK_AND_ASSIGN(std::string clips_before, ReadFile(out + "/clips.jsonl"));
  WFM_ASSERT_OK_AND_ASSIGN(nlohmann::json again, RunCurate(Options(out)));
  EXPECT_EQ(again["videos"]["processed_this_run"], 0);
  EXPECT_EQ(again["videos"]["resumed"], 7);
  WFM_ASSERT_OK_AND_ASSIGN(std::string clips_after, ReadFile(out + "/clips.jsonl"));
  EXPECT_EQ(clips_after, clips_before);

  // Other options on the same output: refused, unless --overwrite.
  CurateOptions changed = Options(out);
  changed.analysis.clips.min_length_s = 3.0;
  auto refused = RunCurate(changed);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();

  // --no-transcode: the same clips and decisions, no shards.
  CurateOptions survey = Options(*dir_ + "/survey");
  survey.transcode_enabled = false;
  WFM_ASSERT_OK_AND_ASSIGN(nlohmann::json ssum, RunCurate(survey));
  EXPECT_FALSE(fs::exists(*dir_ + "/survey/shards"));
  auto sclips = ReadJsonl(*dir_ + "/survey/clips.jsonl");
  ASSERT_EQ(sclips.size(), clips.size());
  for (size_t i = 0; i < clips.size(); ++i) {
    EXPECT_EQ(sclips[i]["span_uuid"], clips[i]["span_uuid"]);
    EXPECT_EQ(sclips[i]["kept"], clips[i]["kept"]);
    EXPECT_TRUE(sclips[i]["shard"].is_null());
  }
}

TEST_F(PipelineTest, FailFastStopsWithAnError) {
  CurateOptions o = Options(*dir_ + "/failfast");
  o.inputs = {*dir_ + "/in/random.mp4", *dir_ + "/in/tree.avi"};
  o.workers = 1;
  o.fail_fast = true;
  o.transcode_enabled = false;
  auto r = RunCurate(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kAborted) << r.status();
  auto videos = ReadJsonl(*dir_ + "/failfast/videos.jsonl");
  ASSERT_EQ(videos.size(), 1u);  // stopped before tree.avi
  EXPECT_EQ(videos[0]["status"], "failed");
}

TEST(DiscoverInputsTest, FoldersManifestsAndMissingPaths) {
  std::string dir = wfm::testing::TempDir();
  fs::create_directories(dir + "/a/b");
  for (const char* f : {"/a/x.mp4", "/a/b/y.MKV", "/a/notes.md", "/a/c.txt"}) ASSERT_TRUE(WriteFileAtomically(dir + f, "").ok());
  ASSERT_TRUE(WriteFileAtomically(dir + "/list.txt", "# comment\na/x.mp4\n/abs/z.mov\n\n").ok());
  ASSERT_TRUE(WriteFileAtomically(dir + "/list.jsonl", "{\"path\": \"q.avi\"}\n").ok());
  WFM_ASSERT_OK_AND_ASSIGN(auto v, DiscoverInputs({dir + "/a", dir + "/list.txt", dir + "/list.jsonl", "gone.mp4"}));
  std::vector<std::string> want = {dir + "/a/b/y.MKV", dir + "/a/x.mp4", "/abs/z.mov", dir + "/q.avi",
                                   fs::absolute("gone.mp4").string()};
  EXPECT_EQ(v, want);
  ASSERT_TRUE(WriteFileAtomically(dir + "/bad.jsonl", "{\"file\": 1}\n").ok());
  auto bad = DiscoverInputs({dir + "/bad.jsonl"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("bad.jsonl:1"), std::string::npos) << bad.status();
}

}  // namespace
}  // namespace wfm::curation
