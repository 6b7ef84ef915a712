// Webdataset shards: ustar archives readable by GNU tar and Python's tarfile, Python/pax archives readable by
// ShardReader, key grouping, truncation errors, the ShardWriter's crash recovery, bins and the dataset
// reader's rank split / shuffling, and shards extracted into a clip folder for training (ExtractShardClips).
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "test_support.h"
#include "wfm/core/file_util.h"
#include "wfm/curation/webdataset.h"

namespace wfm::curation {
namespace {
namespace fs = std::filesystem;

std::string Bytes(size_t n, int seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + seed * 7) & 0xff);
  return s;
}

TEST(WebDatasetTest, TarRoundTripAndGnuTarCompatibility) {
  std::string dir = wfm::testing::TempDir();
  std::string path = dir + "/a.tar";
  std::string long_dir = std::string(120, 'd');
  {
    WFM_ASSERT_OK_AND_ASSIGN(auto w, TarWriter::Open(path));
    WFM_ASSERT_OK(w->Add("k1.mp4", Bytes(1000, 1)));
    WFM_ASSERT_OK(w->Add("k1.json", "{\"a\": 1}"));
    WFM_ASSERT_OK(w->Add("k1.txt", ""));
    WFM_ASSERT_OK(w->Add("k2.latent.safetensors", Bytes(512, 2)));
    WFM_ASSERT_OK(w->Add(long_dir + "/k3.mp4", Bytes(7, 3)));
    WFM_ASSERT_OK(w->Finish());
  }
  EXPECT_EQ(fs::file_size(path) % 512, 0u);
  std::string listing;
  ASSERT_EQ(wfm::testing::RunCommand("tar -tf '" + path + "'", &listing), 0) << listing;
  EXPECT_EQ(listing, "k1.mp4\nk1.json\nk1.txt\nk2.latent.safetensors\n" + long_dir + "/k3.mp4\n");
  if (wfm::testing::RunCommand("/usr/bin/python3 -c 'import tarfile' 2>/dev/null") == 0) {
    std::string sizes;
    ASSERT_EQ(wfm::testing::RunCommand("/usr/bin/python3 -c \"import tarfile; t = tarfile.open('" + path +
                                       "'); print([m.size for m in t.getmembers()])\"", &sizes), 0);
    EXPECT_EQ(sizes, "[1000, 8, 0, 512, 7]\n");
  }
  WFM_ASSERT_OK_AND_ASSIGN(auto members, ListTar(path));
  ASSERT_EQ(members.size(), 5u);
  EXPECT_EQ(members[4].name, long_dir + "/k3.mp4");
  EXPECT_EQ(members[0].data_offset, 512);
  WFM_ASSERT_OK_AND_ASSIGN(auto r, ShardReader::Open(path));
  Sample s;
  WFM_ASSERT_OK_AND_ASSIGN(bool more, r->Next(&s));
  ASSERT_TRUE(more);
  EXPECT_EQ(s.key, "k1");
  EXPECT_EQ(s.files.size(), 3u);
  EXPECT_EQ(s.Get("mp4"), Bytes(1000, 1));
  WFM_ASSERT_OK_AND_ASSIGN(auto j, s.Json());
  EXPECT_EQ(j["a"], 1);
  EXPECT_EQ(s.Text(), "");
  WFM_ASSERT_OK_AND_ASSIGN(more, r->Next(&s));
  ASSERT_TRUE(more);
  EXPECT_EQ(s.key, "k2");
  EXPECT_EQ(s.Get("latent.safetensors"), Bytes(512, 2));
  WFM_ASSERT_OK_AND_ASSIGN(more, r->Next(&s));
  ASSERT_TRUE(more);
  EXPECT_EQ(s.key, long_dir + "/k3");
  WFM_ASSERT_OK_AND_ASSIGN(more, r->Next(&s));
  EXPECT_FALSE(more);
}

TEST(WebDatasetTest, ReadsPythonPaxArchives) {
  if (wfm::testing::RunCommand("/usr/bin/python3 -c 'import tarfile' 2>/dev/null") != 0) GTEST_SKIP() << "no python3";
  std::string dir = wfm::testing::TempDir();
  std::string path = dir + "/py.tar";
  std::string name = std::string(150, 'x');  // forces a pax header
  std::string script = "import tarfile, io\nt = tarfile.open('" + path + "', 'w', format=tarfile.PAX_FORMAT)\n"
                       "for n, d in [('" + name + ".json', b'{}'), ('" + name + ".mp4', b'abc'), ('b.txt', b'hi')]:\n"
                       "    i = tarfile.TarInfo(n); i.size = len(d); t.addfile(i, io.BytesIO(d))\nt.close()\n";
  WFM_ASSERT_OK(WriteFileAtomically(dir + "/mk.py", script));
  ASSERT_EQ(wfm::testing::RunCommand("/usr/bin/python3 " + dir + "/mk.py"), 0);
  WFM_ASSERT_OK_AND_ASSIGN(auto r, ShardReader::Open(path));
  Sample s;
  WFM_ASSERT_OK_AND_ASSIGN(bool more, r->Next(&s));
  ASSERT_TRUE(more);
  EXPECT_EQ(s.key, name);
  EXPECT_EQ(s.Get("mp4"), "abc");
  WFM_ASSERT_OK_AND_ASSIGN(more, r->Next(&s));
  ASSERT_TRUE(more);
  EXPECT_EQ(s.key, "b");
  EXPECT_EQ(s.Text(), "hi");
}

TEST(WebDatasetTest, TruncatedAndCorruptArchivesAreErrors) {
  std::string dir = wfm::testing::TempDir();
  std::string path = dir + "/t.tar";
  {
    WFM_ASSERT_OK_AND_ASSIGN(auto w, TarWriter::Open(path));
    WFM_ASSERT_OK(w->Add("a.mp4", Bytes(5000, 1)));
    WFM_ASSERT_OK(w->Add("b.mp4", Bytes(5000, 2)));
    WFM_ASSERT_OK(w->Finish());
  }
  fs::resize_file(path, 512 + 5120 + 512 + 1000);  // cut inside b.mp4
  WFM_ASSERT_OK_AND_ASSIGN(auto r, ShardReader::Open(path));
  Sample s;
  WFM_ASSERT_OK_AND_ASSIGN(bool more, r->Next(&s));
  EXPECT_TRUE(more);
  auto bad = r->Next(&s);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("truncated"), std::string::npos) << bad.status();
  int64_t valid_end = -1;
  WFM_ASSERT_OK_AND_ASSIGN(auto members, ListTar(path, &valid_end));
  EXPECT_EQ(members.size(), 1u);
  EXPECT_EQ(valid_end, 512 + 5120);
  EXPECT_FALSE(ListTar(path).ok());
  // A flipped byte in a header fails the checksum.
  WFM_ASSERT_OK(WriteFileAtomically(dir + "/c.tar", std::string(512, 'z')));
  EXPECT_FALSE(ListTar(dir + "/c.tar").ok());
}

TEST(WebDatasetTest, ShardWriterCommitsRollsOverAndRecovers) {
  std::string dir = wfm::testing::TempDir();
  std::string root = dir + "/shards";
  ShardWriterOptions o;
  o.root = root;
  o.part = 3;
  o.target_bytes = 20000;
  std::map<std::string, int64_t> committed;
  std::vector<std::string> keys;
  {
    ShardWriter w(o);
    for (int v = 0; v < 6; ++v) {
      std::vector<PendingSample> video;
      for (int c = 0; c < 2; ++c) {
        PendingSample s;
        s.key = absl::StrCat("v", v, "c", c);
        s.bin = ShardBin(1280, 720, 8.0);
        s.members = {{"mp4", Bytes(4000, v), ""}, {"json", "{}", ""}, {"txt", "caption", ""}};
        video.push_back(s);
        keys.push_back(s.key);
      }
      WFM_ASSERT_OK_AND_ASSIGN(auto info, w.Commit(video));
      ASSERT_EQ(info.placements.size(), 2u);
      for (auto& [p, off] : info.end_offsets) committed[p] = std::max(committed[p], off);
      WFM_ASSERT_OK(w.Committed());  // recorded: the tars that filled up become .tar
    }
    int sealed = 0;
    for (auto& e : fs::recursive_directory_iterator(root)) sealed += e.path().extension() == ".tar";
    EXPECT_GE(sealed, 2);
    // A video whose samples were appended but never committed (the process dies before the journal write).
    // Its first sample fills the open tar and its second rolls over to a new one: the full tar must stay
    // .partial (sealing it would publish the lost sample).
    std::vector<PendingSample> lost(2);
    for (int c = 0; c < 2; ++c) {
      lost[c].key = absl::StrCat("lost", c);
      lost[c].bin = ShardBin(1280, 720, 8.0);
      lost[c].members = {{"mp4", Bytes(21000, 9), ""}};
    }
    WFM_ASSERT_OK_AND_ASSIGN(auto lost_info, w.Commit(lost));
    ASSERT_NE(lost_info.placements[0].shard, lost_info.placements[1].shard);
    for (const auto& pl : lost_info.placements) EXPECT_FALSE(fs::exists(pl.shard)) << pl.shard << " sealed too early";
    // The crash: no Committed(), no Close(); the destructor leaves the .partial files.
  }
  WFM_ASSERT_OK(ShardWriter::Recover(root, committed));
  WFM_ASSERT_OK_AND_ASSIGN(auto shards, ListShards(root));
  EXPECT_GE(shards.size(), 3u);  // 20 kB target with ~12.6 kB per video
  std::vector<std::string> seen;
  for (const auto& sh : shards) {
    EXPECT_NE(sh.find("/resolution_720/aspect_ratio_16_9/duration_5_10/part_000003/"), std::string::npos) << sh;
    std::string out;
    ASSERT_EQ(wfm::testing::RunCommand("tar -tf '" + sh + "' >/dev/null", &out), 0) << sh;
    WFM_ASSERT_OK_AND_ASSIGN(auto r, ShardReader::Open(sh));
    Sample s;
    while (true) {
      WFM_ASSERT_OK_AND_ASSIGN(bool more, r->Next(&s));
      if (!more) break;
      seen.push_back(s.key);
      EXPECT_EQ(s.files.size(), 3u);
    }
  }
  EXPECT_EQ(seen, keys);  // the uncommitted sample is gone, nothing duplicated
  for (auto& e : fs::recursive_directory_iterator(root)) EXPECT_NE(e.path().extension(), ".partial");
  // A writer started after recovery continues the numbering.
  ShardWriter w2(o);
  PendingSample s;
  s.key = "again";
  s.bin = ShardBin(1280, 720, 8.0);
  s.members = {{"txt", "x", ""}};
  WFM_ASSERT_OK_AND_ASSIGN(auto info, w2.Commit({s}));
  EXPECT_EQ(std::count(shards.begin(), shards.end(), info.placements[0].shard), 0);
  WFM_ASSERT_OK(w2.Close());
  EXPECT_FALSE(w2.Commit({PendingSample{"bad.key", "", {}}}).ok());
}

TEST(WebDatasetTest, UpstreamBins) {
  EXPECT_EQ(ShardBin(1920, 1080, 12.0), "resolution_1080/aspect_ratio_16_9/duration_10_30");
  EXPECT_EQ(ShardBin(1280, 720, 5.0), "resolution_720/aspect_ratio_16_9/duration_5_10");
  EXPECT_EQ(ShardBin(720, 1280, 40.0), "resolution_720/aspect_ratio_9_16/duration_30_inf");
  EXPECT_EQ(ShardBin(640, 480, 7.0), "resolution_lt_720/aspect_ratio_4_3/duration_5_10");
  EXPECT_EQ(ShardBin(512, 512, 3.0), "resolution_lt_720/aspect_ratio_1_1/duration_0_5");
  EXPECT_EQ(ShardBin(600, 800, 10.0), "resolution_lt_720/aspect_ratio_3_4/duration_5_10");
}

TEST(WebDatasetTest, DatasetReaderSplitsRanksAndShuffles) {
  std::string dir = wfm::testing::TempDir();
  for (int t = 0; t < 5; ++t) {
    WFM_ASSERT_OK_AND_ASSIGN(auto w, TarWriter::Open(dir + absl::StrFormat("/d/%06d.tar", t)));
    for (int k = 0; k < 3; ++k) WFM_ASSERT_OK(w->Add(absl::StrCat("t", t, "k", k, ".txt"), "x"));
    WFM_ASSERT_OK(w->Finish());
  }
  std::vector<std::string> all;
  for (int rank = 0; rank < 2; ++rank) {
    WFM_ASSERT_OK_AND_ASSIGN(auto r, DatasetReader::Open({dir + "/d"}, {.rank = rank, .world_size = 2, .shuffle_seed = 5}));
    EXPECT_EQ(r->shards().size(), rank == 0 ? 3u : 2u);
    Sample s;
    while (true) {
      WFM_ASSERT_OK_AND_ASSIGN(bool more, r->Next(&s));
      if (!more) break;
      all.push_back(s.key);
    }
  }
  std::sort(all.begin(), all.end());
  EXPECT_EQ(all.size(), 15u);
  EXPECT_EQ(std::unique(all.begin(), all.end()), all.end());
  EXPECT_FALSE(DatasetReader::Open({dir + "/d"}, {.rank = 2, .world_size = 2}).ok());
  EXPECT_FALSE(DatasetReader::Open({dir + "/missing"}).ok());
}

// Writes a shard with samples `keys` (KEY.mp4 of distinct bytes, KEY.txt caption "caption KEY", KEY.json).
void WriteShard(const std::string& path, const std::vector<std::string>& keys, bool with_mp4 = true) {
  WFM_ASSERT_OK_AND_ASSIGN(auto w, TarWriter::Open(path));
  for (size_t i = 0; i < keys.size(); ++i) {
    WFM_ASSERT_OK(w->Add(keys[i] + ".json", "{}"));
    WFM_ASSERT_OK(w->Add(keys[i] + ".txt", "caption " + keys[i]));
    if (with_mp4) WFM_ASSERT_OK(w->Add(keys[i] + ".mp4", Bytes(700 + i, static_cast<int>(i))));
  }
  WFM_ASSERT_OK(w->Finish());
}

std::string Contents(const std::string& path) {
  absl::StatusOr<std::string> s = ReadFile(path);
  return s.ok() ? *s : "<" + std::string(s.status().message()) + ">";
}

TEST(WebDatasetTest, ExtractShardClipsWritesClipsAndCaptionsOnceAndNamesBadShards) {
  const std::string dir = wfm::testing::TempDir();
  WriteShard(dir + "/shards/a/000000.tar", {"v1_0", "v1_1"});
  WriteShard(dir + "/shards/b/000001.tar", {"v2_0"});
  const std::string clips = dir + "/clips";
  WFM_ASSERT_OK_AND_ASSIGN(ExtractedShards x, ExtractShardClips({dir + "/shards"}, clips));
  EXPECT_EQ(x.shards.size(), 2u);
  EXPECT_EQ(x.clips, 3);
  EXPECT_EQ(x.extracted, 3);
  EXPECT_EQ(x.sources, std::vector<std::string>{clips});
  EXPECT_EQ(Contents(clips + "/000000_v1_1.mp4"), Bytes(701, 1));
  EXPECT_EQ(Contents(clips + "/000001_v2_0.mp4"), Bytes(700, 0));
  EXPECT_EQ(Contents(clips + "/000000_v1_0.txt"), "caption v1_0");
  EXPECT_FALSE(fs::exists(clips + "/000000_v1_0.json"));  // only clips and captions
  // Resumed: nothing written again (a changed file stays), same counts.
  WFM_ASSERT_OK(WriteFileAtomically(clips + "/000001_v2_0.mp4", "kept"));
  WFM_ASSERT_OK_AND_ASSIGN(x, ExtractShardClips({dir + "/shards/a/000000.tar", dir + "/shards/b"}, clips));
  EXPECT_EQ(x.clips, 3);
  EXPECT_EQ(x.extracted, 0);
  EXPECT_EQ(Contents(clips + "/000001_v2_0.mp4"), "kept");

  // Mixed inputs (the tokenizer's --input): videos and folders pass through, the folder's shards are extracted.
  WFM_ASSERT_OK(WriteFileAtomically(dir + "/video.mp4", "not really"));
  ExtractOptions mixed;
  mixed.allow_other_inputs = true;
  WFM_ASSERT_OK_AND_ASSIGN(x, ExtractShardClips({dir + "/video.mp4", dir + "/shards/b"}, dir + "/clips2", mixed));
  EXPECT_EQ(x.sources, (std::vector<std::string>{dir + "/video.mp4", dir + "/shards/b", dir + "/clips2"}));
  EXPECT_EQ(x.clips, 1);
  WFM_ASSERT_OK_AND_ASSIGN(x, ExtractShardClips({dir + "/video.mp4"}, dir + "/clips3", mixed));
  EXPECT_EQ(x.sources, std::vector<std::string>{dir + "/video.mp4"});
  EXPECT_EQ(x.clips, 0);
  EXPECT_FALSE(fs::exists(dir + "/clips3"));

  // Errors name the culprit.
  auto expect_error = [](const absl::StatusOr<ExtractedShards>& r, const std::string& needle) {
    ASSERT_FALSE(r.ok()) << "expected an error naming " << needle;
    EXPECT_NE(std::string(r.status().message()).find(needle), std::string::npos) << r.status();
  };
  expect_error(ExtractShardClips({dir + "/video.mp4"}, clips), dir + "/video.mp4");  // strict: not a shard
  expect_error(ExtractShardClips({dir + "/missing"}, clips), dir + "/missing");
  expect_error(ExtractShardClips({dir + "/clips"}, clips), dir + "/clips");  // a folder without shards
  WriteShard(dir + "/nomp4/000000.tar", {"k"}, /*with_mp4=*/false);
  expect_error(ExtractShardClips({dir + "/nomp4"}, clips), "no KEY.mp4");
  // A corrupt shard among good ones: a garbage header, and a tar cut inside a member.
  const std::string corrupt = dir + "/bad/000002.tar";
  WFM_ASSERT_OK(MakeDirs(dir + "/bad"));
  WFM_ASSERT_OK(WriteFileAtomically(corrupt, std::string(1024, 'z')));
  absl::StatusOr<ExtractedShards> r = ExtractShardClips({dir + "/shards", corrupt}, dir + "/clips4");
  expect_error(r, corrupt);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
  WriteShard(dir + "/cut/000003.tar", {"c0", "c1"});
  fs::resize_file(dir + "/cut/000003.tar", fs::file_size(dir + "/cut/000003.tar") - 2048);
  expect_error(ExtractShardClips({dir + "/cut"}, dir + "/clips5"), dir + "/cut/000003.tar");
}

}  // namespace
}  // namespace wfm::curation
