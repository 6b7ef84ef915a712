// Webdataset shards: POSIX ustar tar files whose members are grouped into samples by key (the member path up
// to the first dot of its file name: `KEY.mp4`, `KEY.json`, `KEY.txt` form sample KEY), as webdataset's
// base_plus_ext / group_by_keys. Keys must not contain dots.
//
// Reading (training code and the Python bindings iterate shards through this):
//   WFM_ASSIGN_OR_RETURN(auto reader, DatasetReader::Open({"out/shards"}, {.rank = 0, .world_size = 1}));
//   Sample s;
//   while (true) {
//     WFM_ASSIGN_OR_RETURN(bool more, reader->Next(&s));
//     if (!more) break;
//     WFM_ASSIGN_OR_RETURN(nlohmann::json meta, s.Json());             // KEY.json
//     std::string caption = s.Text();                                 // KEY.txt
//     WFM_ASSIGN_OR_RETURN(at::Tensor frames, s.DecodeVideo(256, 256)); // KEY.mp4 -> uint8 [T, 256, 256, 3]
//   }
// Writing: TarWriter (one archive) and ShardWriter (the pipeline's crash-safe, size-targeted, binned shards).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace wfm::curation {

// ---- tar ----
inline constexpr int64_t kTarBlock = 512;

struct TarMember {
  std::string name;
  int64_t header_offset = 0;  // offset of the (first) header block
  int64_t data_offset = 0;    // offset of the contents
  int64_t size = 0;
};

// Writes a POSIX ustar archive. Members are appended in order; Finish() writes the two zero end blocks.
// Names longer than 100 bytes are split into the ustar prefix (up to 255 bytes in all); sizes beyond the
// octal field use the GNU base-256 encoding.
class TarWriter {
 public:
  // Creates `path` (truncating it), or with `append_at` >= 0 reopens an existing archive and continues
  // after its first `append_at` bytes (everything after is cut off).
  static absl::StatusOr<std::unique_ptr<TarWriter>> Open(const std::string& path, int64_t append_at = -1);
  ~TarWriter();
  absl::Status Add(const std::string& name, absl::string_view data);
  // Streams the member's contents from a file.
  absl::Status AddFile(const std::string& name, const std::string& source_path);
  // fsync (data and size) so that offset() bytes survive a crash.
  absl::Status Sync();
  // End-of-archive blocks, fsync, close.
  absl::Status Finish();
  int64_t offset() const { return offset_; }  // end of the last member (where the next header goes)
  const std::string& path() const { return path_; }

 private:
  TarWriter() = default;
  absl::Status WriteAll(const void* data, size_t n);
  absl::Status Header(const std::string& name, int64_t size);
  std::string path_;
  int fd_ = -1;
  int64_t offset_ = 0;
};

// Reads a tar's member index (headers only). Understands ustar prefixes, pax 'x' headers (path, size), GNU
// long names ('L') and base-256 sizes. A truncated archive is an error unless `valid_end` is given: then
// the members that are complete are returned and *valid_end is where the last complete one ends.
absl::StatusOr<std::vector<TarMember>> ListTar(const std::string& path, int64_t* valid_end = nullptr);

// webdataset key / extension split ("dir/abc.mp4" -> "dir/abc", "mp4"; "abc.latent.safetensors" -> "abc",
// "latent.safetensors"). False when the name has no extension.
bool SplitKey(const std::string& member_name, std::string* key, std::string* extension);

// ---- samples ----
struct Sample {
  std::string key;
  std::string shard;                          // the tar it came from
  std::map<std::string, std::string> files;   // extension -> contents ("mp4", "json", "txt", ...)

  bool Has(const std::string& ext) const { return files.count(ext) > 0; }
  // Contents of KEY.<ext>; empty when absent.
  const std::string& Get(const std::string& ext) const;
  absl::StatusOr<nlohmann::json> Json(const std::string& ext = "json") const;
  std::string Text(const std::string& ext = "txt") const { return Get(ext); }
  // Decodes KEY.<ext> (a video) to uint8 [T, height, width, 3] RGB (0 = the clip's size).
  absl::StatusOr<at::Tensor> DecodeVideo(int width = 0, int height = 0, const std::string& ext = "mp4") const;
};

struct ShardReaderOptions {
  std::vector<std::string> extensions;  // only load these members (empty = all)
};

// Iterates the samples of one tar in order.
class ShardReader {
 public:
  static absl::StatusOr<std::unique_ptr<ShardReader>> Open(const std::string& path, ShardReaderOptions options = {});
  ~ShardReader();
  // Next sample; false at the end. A truncated or corrupt archive is an error naming the file and offset.
  absl::StatusOr<bool> Next(Sample* sample);
  const std::string& path() const { return path_; }

 private:
  ShardReader() = default;
  absl::StatusOr<bool> NextMember(std::string* name, std::string* data, bool* wanted);
  std::string path_;
  ShardReaderOptions options_;
  std::FILE* file_ = nullptr;
  int64_t offset_ = 0;
  bool pending_ = false, done_ = false;
  std::string pending_name_, pending_data_;
  bool pending_wanted_ = false;
  absl::Status error_;
};

// Every *.tar under `path` (recursively, sorted); `path` may also be a single .tar file.
absl::StatusOr<std::vector<std::string>> ListShards(const std::string& path);

struct DatasetOptions {
  int rank = 0, world_size = 1;  // shard i goes to rank i % world_size
  uint64_t shuffle_seed = 0;     // != 0: shuffle the shard order (per epoch: seed + epoch)
  int epochs = 1;                // <= 0: repeat forever
  std::vector<std::string> extensions;
};

// Samples of many shards (directories, tars), split across ranks, optionally shuffled and repeated.
class DatasetReader {
 public:
  static absl::StatusOr<std::unique_ptr<DatasetReader>> Open(const std::vector<std::string>& paths,
                                                             DatasetOptions options = {});
  absl::StatusOr<bool> Next(Sample* sample);
  const std::vector<std::string>& shards() const { return shards_; }  // this rank's shards

 private:
  DatasetReader() = default;
  std::vector<std::string> shards_, order_;
  DatasetOptions options_;
  int epoch_ = 0;
  size_t next_ = 0;
  std::unique_ptr<ShardReader> current_;
};

// ---- shards as a folder of clips (the training CLIs' and wfm.*.train's `shards` data source) ----
struct ExtractedShards {
  std::vector<std::string> shards;   // the *.tar files read
  // What a video-folder training source reads: the inputs that are no shards (only with allow_other_inputs),
  // then `dir` when shards were found.
  std::vector<std::string> sources;
  int64_t clips = 0;                 // KEY.mp4 samples of the shards (all now in `dir`)
  int64_t extracted = 0;             // of which written by this call (the others were there already)
};
struct ExtractOptions {
  // false: every input must be a *.tar or a directory holding some (else an error naming it).
  // true (`wfm tokenizer train --input` mixes videos and shards): other inputs go to `sources` unchanged; a
  // directory goes there too (its videos still count) and its *.tar files are extracted.
  bool allow_other_inputs = false;
};

// Extracts the clips of curated webdataset shards (`wfm curate` output: KEY.mp4 [+ KEY.txt caption]) into `dir` as
// <shard stem>_<key>.mp4 and the caption sidecar <shard stem>_<key>.txt ('/' in keys -> '_'), the layout of a
// video folder for the video-folder training sources. Files already in `dir` are kept, so a resumed run does not
// extract again; writes are atomic. Errors name the shard: a corrupt or truncated tar (with the offset), a missing
// input, shards without any KEY.mp4 sample. With no shards among the inputs (allow_other_inputs) nothing is
// written and clips == 0.
absl::StatusOr<ExtractedShards> ExtractShardClips(const std::vector<std::string>& inputs, const std::string& dir,
                                                  const ExtractOptions& options = {});

// ---- the pipeline's shard writer ----
// Upstream bin of a clip (cosmos-curate ResolutionAspectRatioFramesBinsSpec.for_standard_video_datasets):
// "resolution_{1080|720|lt_720}/aspect_ratio_{9_16|3_4|1_1|4_3|16_9}/duration_{5_10|10_30|30_inf}"; clips
// shorter than 5 s (which upstream leaves out of every bin) go to duration_0_5.
std::string ShardBin(int width, int height, double duration_s);

struct ShardWriterOptions {
  std::string root;                 // DIR/shards
  int part = 0;                     // writer id (MPI rank): shards go to <bin>/part_<part>/<seq>.tar
  int64_t target_bytes = 500LL << 20;
  bool binned = true;               // false: <root>/part_<part>/<seq>.tar
};

struct PendingMember {
  std::string extension;  // "mp4", "json", "txt", ...
  std::string data;       // contents, or
  std::string file;       // a file to stream from
};
struct PendingSample {
  std::string key;
  std::string bin;
  std::vector<PendingMember> members;
};

// Appends samples to size-targeted tars, one open tar per bin. In-progress tars are named NNNNNN.tar.partial;
// the caller records the end offsets returned by Commit() in its journal, then calls Committed(), which renames
// the tars that filled up to NNNNNN.tar (Close() does the same for the rest). A tar is never sealed while it may
// hold samples the caller has not recorded, so after a crash Recover() can cut every .partial back to the last
// recorded sample and seal it, and no .tar holds a lost sample. Destroying the writer without Close() leaves the
// .partial files for Recover().
class ShardWriter {
 public:
  explicit ShardWriter(ShardWriterOptions options);
  ~ShardWriter();
  struct Placement {
    std::string shard;  // final tar path
    std::string key;
  };
  struct CommitInfo {
    std::vector<Placement> placements;              // one per sample, in order
    std::map<std::string, int64_t> end_offsets;     // final tar path -> committed bytes
  };
  // Appends all samples of one video and fsyncs the touched tars. Thread-safe.
  absl::StatusOr<CommitInfo> Commit(const std::vector<PendingSample>& samples);
  // Seals the tars that filled up during earlier Commit()s; call once their end offsets are recorded.
  absl::Status Committed();
  // Committed(), then seals every open tar (call when every Commit() is recorded).
  absl::Status Close();
  // Crash recovery for every *.tar.partial under `root`: keeps the first committed[final path] bytes (0 or
  // absent: the file is removed), appends the end blocks and renames it to .tar.
  static absl::Status Recover(const std::string& root, const std::map<std::string, int64_t>& committed);

 private:
  struct Open_ {
    std::unique_ptr<TarWriter> tar;
    std::string final_path;
  };
  absl::Status Seal(Open_* o);
  absl::StatusOr<Open_*> TarFor(const std::string& bin);
  ShardWriterOptions options_;
  std::mutex mu_;
  std::map<std::string, Open_> open_;  // bin -> open tar
  std::vector<Open_> full_;            // filled up, awaiting Committed()
  std::map<std::string, int> next_seq_;
};

}  // namespace wfm::curation
