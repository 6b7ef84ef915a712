// `wfm curate` orchestration (see pipeline.h): discovery, crash recovery, worker threads and MPI ranks with
// atomic claims, the per-video analyse -> transcode -> shard -> journal step, and the final merge (dedup,
// shard rewrites, indexes, summary).
#include "wfm/curation/pipeline.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "wfm/core/file_util.h"
#include "wfm/core/logging.h"
#include "wfm/core/progress.h"
#include "wfm/core/status.h"
#include "wfm/core/train/distributed.h"
#include "wfm/curation/gpu.h"
#include "wfm/curation/webdataset.h"

namespace wfm::curation {
namespace fs = std::filesystem;

namespace {

const std::set<std::string>& VideoExtensions() {
  static const std::set<std::string> kExt = {".mp4", ".mov", ".mkv", ".avi", ".mpg", ".mpeg", ".webm", ".m4v",
                                             ".ts",  ".mts", ".m2ts", ".flv", ".wmv", ".3gp", ".ogv", ".vob",
                                             ".dv",  ".mxf", ".y4m", ".h264", ".hevc"};
  return kExt;
}

std::string Lower(std::string s) {
  absl::AsciiStrToLower(&s);
  return s;
}

std::string Absolute(const std::string& p) { return fs::absolute(fs::path(p)).lexically_normal().string(); }

absl::Status Errno(const std::string& what) { return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno))); }

// Append-only JSON-lines file; every line is fsynced before Append returns.
class Journal {
 public:
  absl::Status Open(const std::string& path) {
    path_ = path;
    fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) return Errno(absl::StrCat("opening journal ", path));
    return absl::OkStatus();
  }
  absl::Status Append(const nlohmann::json& line) {
    std::string s = line.dump() + "\n";
    const char* p = s.data();
    size_t n = s.size();
    while (n > 0) {
      ssize_t k = ::write(fd_, p, n);
      if (k < 0) {
        if (errno == EINTR) continue;
        return Errno(absl::StrCat("writing journal ", path_));
      }
      p += k;
      n -= static_cast<size_t>(k);
    }
    if (::fsync(fd_) != 0) return Errno(absl::StrCat("fsync ", path_));
    return absl::OkStatus();
  }
  ~Journal() {
    if (fd_ >= 0) ::close(fd_);
  }

 private:
  std::string path_;
  int fd_ = -1;
};

struct Entry {
  VideoRecord video;
  std::vector<ClipRecord> clips;
  std::map<std::string, int64_t> offsets;  // shard (relative to DIR) -> committed bytes
  double analysis_s = 0;

  nlohmann::json ToJson() const {
    nlohmann::json j;
    j["video"] = video.ToJson();
    j["clips"] = nlohmann::json::array();
    for (const auto& c : clips) {
      nlohmann::json cj = c.ToJson(/*with_embedding=*/true);
      j["clips"].push_back(cj);
    }
    j["offsets"] = offsets;
    return j;
  }
  static Entry FromJson(const nlohmann::json& j) {
    Entry e;
    e.video = VideoRecord::FromJson(j.at("video"));
    for (const auto& c : j.at("clips")) e.clips.push_back(ClipRecord::FromJson(c));
    e.offsets = j.value("offsets", std::map<std::string, int64_t>{});
    return e;
  }
};

// Reads every journal in `state`; torn last lines (a crash mid-write) are ignored, and cut off when `repair`.
absl::StatusOr<std::vector<Entry>> ReadJournals(const std::string& state, bool repair) {
  std::vector<Entry> out;
  std::error_code ec;
  if (!fs::is_directory(state, ec)) return out;
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(state, ec)) {
    std::string n = e.path().filename().string();
    if (absl::StartsWith(n, "journal_") && absl::EndsWith(n, ".jsonl")) files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    WFM_ASSIGN_OR_RETURN(std::string text, ReadFile(f));
    size_t pos = 0, good_end = 0;
    while (pos < text.size()) {
      size_t nl = text.find('\n', pos);
      if (nl == std::string::npos) break;  // no newline: torn
      nlohmann::json j = nlohmann::json::parse(text.begin() + pos, text.begin() + nl, nullptr, false);
      if (j.is_discarded() || !j.is_object() || !j.contains("video")) break;
      try {
        out.push_back(Entry::FromJson(j));
      } catch (const std::exception& ex) {
        return absl::DataLossError(absl::StrCat(f, ": bad journal entry at byte ", pos, ": ", ex.what()));
      }
      pos = good_end = nl + 1;
    }
    if (repair && good_end < text.size()) {
      WFM_LOG(WARNING) << f << ": dropping " << (text.size() - good_end) << " bytes of an interrupted journal write";
      fs::resize_file(f, good_end, ec);
      if (ec) return absl::InternalError(absl::StrCat("truncating ", f, ": ", ec.message()));
    }
  }
  return out;
}

// The options that change what a run produces; a resumed run must use the same.
nlohmann::json Fingerprint(const CurateOptions& o) {
  const AnalysisOptions& a = o.analysis;
  const ShotDetectorOptions& s = a.shots;
  nlohmann::json j;
  j["shots"] = {{"method", s.method},
                {"content", {s.content.adaptive_threshold, s.content.min_content_val, s.content.window_width,
                             s.content.min_scene_len, s.content.luma_only}},
                {"gradual", {s.gradual.half_windows_s, s.gradual.min_change, s.gradual.min_contrast,
                             s.gradual.max_residual, s.gradual.max_step, s.gradual.max_backtrack,
                             s.gradual.max_shift_ratio, s.gradual.blank_luma, s.gradual.blank_std}},
                {"transnet", {s.transnet.model_path, s.transnet.threshold}},
                {"merge_gap", s.merge_gap}};
  j["clips"] = {a.clips.min_length_s, a.clips.min_length_frames, a.clips.max_length_s, a.clips.crop_s};
  const FilterOptions& f = a.filters;
  j["filters"] = {f.motion_filter, f.motion_global_mean_threshold, f.motion_per_patch_min_256_threshold,
                  f.static_threshold, f.blank_threshold, f.min_brightness, f.max_brightness, f.blur_threshold,
                  f.min_width, f.min_height, f.min_aspect, f.max_aspect, f.min_duration_s, f.max_duration_s,
                  f.aesthetic_threshold};
  j["border"] = {a.border.enabled, a.border.limit, a.border.max_asymmetry};
  j["sampling"] = {a.sample_fps, a.hash_frames, a.model_frames, a.model_fps, a.sidecar_captions};
  const TranscodeOptions& t = o.transcode;
  j["transcode"] = {o.transcode_enabled, t.encoder, t.bit_rate, t.crf, t.preset, t.height, t.fps, t.crop, t.stream_copy};
  j["shards"] = {o.shard_bytes, o.binned_shards};
  j["dedup"] = {o.dedup, o.dedup_options.max_hamming, o.dedup_options.bands, o.semantic_dedup,
                o.semantic_options.clusters, o.semantic_options.eps};
  j["models"] = o.model_info;
  j["latents"] = static_cast<bool>(o.latent_writer);
  return j;
}

std::string Rel(const std::string& root, const std::string& path) {
  return fs::path(path).lexically_relative(root).string();
}

// Rewrites `tar` without the samples in `drop`; removes it when nothing is left.
absl::Status RemoveSamples(const std::string& tar, const std::set<std::string>& drop) {
  std::error_code ec;
  if (!fs::exists(tar, ec)) return absl::OkStatus();
  WFM_ASSIGN_OR_RETURN(auto reader, ShardReader::Open(tar));
  std::vector<Sample> keep;
  bool changed = false;
  std::string tmp = tar + ".rewrite";
  WFM_ASSIGN_OR_RETURN(auto writer, TarWriter::Open(tmp));
  int64_t kept = 0;
  Sample s;
  while (true) {
    WFM_ASSIGN_OR_RETURN(bool more, reader->Next(&s));
    if (!more) break;
    if (drop.count(s.key)) {
      changed = true;
      continue;
    }
    // Members in the writer's order: mp4 first, then the rest.
    std::vector<std::string> exts;
    if (s.Has("mp4")) exts.push_back("mp4");
    for (const auto& [ext, data] : s.files) {
      if (ext != "mp4") exts.push_back(ext);
    }
    for (const auto& ext : exts) WFM_RETURN_IF_ERROR(writer->Add(absl::StrCat(s.key, ".", ext), s.files[ext]));
    ++kept;
  }
  if (!changed) {
    writer.reset();
    fs::remove(tmp, ec);
    return absl::OkStatus();
  }
  WFM_RETURN_IF_ERROR(writer->Finish());
  if (kept == 0) {
    fs::remove(tmp, ec);
    fs::remove(tar, ec);
    return absl::OkStatus();
  }
  fs::rename(tmp, tar, ec);
  if (ec) return absl::InternalError(absl::StrCat("renaming ", tmp, ": ", ec.message()));
  return absl::OkStatus();
}

// Crash-safety test hook: WFM_CURATE_CRASH_AT=POINT:N makes the process SIGKILL itself the N-th time (counted
// over all worker threads of this run) it reaches POINT, so the resume tests can kill deterministically at every
// interesting moment instead of at a wall-clock guess. Points, in pipeline order: `analysed` (clip files in the
// temp folder, nothing committed), `before_journal` (shard bytes written and fsynced, journal line not yet),
// `after_journal` (committed, temp files not yet removed), `before_merge` (all videos done, shards sealed),
// `before_indexes` (merge: shards rewritten, indexes not yet written).
void CrashPoint(const char* point) {
  static const std::pair<std::string, int> spec = []() -> std::pair<std::string, int> {
    const char* v = std::getenv("WFM_CURATE_CRASH_AT");
    if (!v || !*v) return {"", 0};
    std::string s(v);
    size_t colon = s.rfind(':');
    if (colon == std::string::npos) return {s, 1};
    return {s.substr(0, colon), std::max(1, std::atoi(s.c_str() + colon + 1))};
  }();
  static std::atomic<int> hits{0};
  if (spec.second == 0 || spec.first != point) return;
  if (++hits == spec.second) {
    std::fprintf(stderr, "curate: WFM_CURATE_CRASH_AT=%s:%d reached, killing the process\n", point, spec.second);
    std::raise(SIGKILL);
  }
}

std::string NewRunId() {
  auto now = std::chrono::system_clock::now().time_since_epoch();
  return absl::StrCat(std::chrono::duration_cast<std::chrono::milliseconds>(now).count(), "-", ::getpid());
}

}  // namespace

absl::StatusOr<std::vector<std::string>> DiscoverInputs(const std::vector<std::string>& inputs) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  auto add = [&](const std::string& p) {
    std::string a = Absolute(p);
    if (seen.insert(a).second) out.push_back(a);
  };
  for (const std::string& in : inputs) {
    std::error_code ec;
    fs::path p(in);
    if (fs::is_directory(p, ec)) {
      std::vector<std::string> found;
      for (auto it = fs::recursive_directory_iterator(p, fs::directory_options::follow_directory_symlink, ec);
           !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (it->is_regular_file(ec) && VideoExtensions().count(Lower(it->path().extension().string()))) {
          found.push_back(it->path().string());
        }
      }
      if (ec) return absl::InternalError(absl::StrCat("listing ", in, ": ", ec.message()));
      std::sort(found.begin(), found.end());
      for (const auto& f : found) add(f);
      continue;
    }
    std::string ext = Lower(p.extension().string());
    if (fs::is_regular_file(p, ec) && (ext == ".txt" || ext == ".list" || ext == ".jsonl")) {
      WFM_ASSIGN_OR_RETURN(std::string text, ReadFile(in));
      fs::path base = p.parent_path();
      size_t pos = 0;
      int line_no = 0;
      while (pos <= text.size()) {
        size_t nl = text.find('\n', pos);
        std::string line = text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
        pos = nl == std::string::npos ? text.size() + 1 : nl + 1;
        ++line_no;
        line = std::string(absl::StripAsciiWhitespace(line));
        if (line.empty() || line[0] == '#') continue;
        if (ext == ".jsonl") {
          nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
          std::string path;
          if (j.is_object()) path = j.value("path", j.value("source_video", std::string()));
          if (path.empty()) {
            return absl::InvalidArgumentError(absl::StrCat(in, ":", line_no, ": expected {\"path\": ...}"));
          }
          line = path;
        }
        fs::path lp(line);
        add(lp.is_absolute() ? lp.string() : (base / lp).string());
      }
      continue;
    }
    add(in);  // a video (or a missing path, recorded as failed)
  }
  return out;
}

absl::StatusOr<nlohmann::json> RunCurate(const CurateOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  // One rank per process under mpirun/srun (the processes share the output directory); one process otherwise.
  WFM_ASSIGN_OR_RETURN(std::shared_ptr<train::ProcessGroup> group, train::ProcessGroup::Create("auto"), "curate");
  train::ProcessGroup& pg = *group;
  auto broadcast = [&](std::string* value) -> absl::Status {
    WFM_ASSIGN_OR_RETURN(*value, pg.BroadcastString(*value), "curate: broadcasting from rank 0");
    return absl::OkStatus();
  };
  auto sum_all = [&](long long value) -> absl::StatusOr<long long> {
    WFM_ASSIGN_OR_RETURN(double sum, pg.AllReduceScalar(static_cast<double>(value)), "curate: summing over ranks");
    return static_cast<long long>(std::llround(sum));
  };
  if (o.output.empty()) return absl::InvalidArgumentError("curate: --output is required");
  const std::string out = Absolute(o.output);
  const std::string state = out + "/.state";
  const std::string shards = out + "/shards";

  // This rank's GPU for NVDEC decode and NVENC encode: --gpu, else local rank % visible GPUs (core's
  // DeviceForLocalRank). Decided collectively: a rank that cannot decode as asked stops every rank.
  GpuPlan gpu = ProcessGpu();
  gpu.local_rank = pg.local_rank();
  if (o.analysis.gpu >= 0) gpu.gpu = o.analysis.gpu;
  absl::StatusOr<std::string> decode_used = ResolveDecode(o.analysis.decode, gpu.gpu);
  WFM_ASSIGN_OR_RETURN(long long decode_failures, sum_all(decode_used.ok() ? 0 : 1));
  WFM_RETURN_IF_ERROR(decode_used.status(), "curate");
  if (decode_failures > 0) return absl::FailedPreconditionError("curate: another rank cannot decode as asked (see its log)");
  WFM_ASSIGN_OR_RETURN(long long ranks_nvdec, sum_all(*decode_used == "nvdec" ? 1 : 0));
  if (pg.world_size() > 1 || *decode_used == "nvdec") {
    WFM_LOG(INFO) << "curate rank " << pg.rank() << " (local rank " << gpu.local_rank << "): "
                  << (gpu.gpu >= 0 ? absl::StrCat("GPU ", gpu.gpu, " of ", gpu.num_gpus) : std::string("no GPU"))
                  << ", decode " << *decode_used;
  }

  // ---- rank 0: configuration check, discovery, crash recovery ----
  std::string setup_error, inputs_text, pending_text, run_id;
  if (pg.rank() == 0) {
    absl::Status s = [&]() -> absl::Status {
      WFM_RETURN_IF_ERROR(MakeDirs(state));
      nlohmann::json fp = Fingerprint(o);
      const std::string cfg = state + "/config.json";
      std::error_code ec;
      if (fs::exists(cfg, ec)) {
        WFM_ASSIGN_OR_RETURN(std::string text, ReadFile(cfg));
        nlohmann::json old = nlohmann::json::parse(text, nullptr, false);
        if (old != fp) {
          if (!o.overwrite) {
            return absl::FailedPreconditionError(absl::StrCat(
                out, " holds a run made with different options; use the same options to resume, another --output, "
                     "or --overwrite to start over"));
          }
          WFM_LOG(WARNING) << "curate: --overwrite: discarding the previous run in " << out;
          fs::remove_all(state, ec);
          fs::remove_all(shards, ec);
          for (const char* f : {"/videos.jsonl", "/clips.jsonl", "/summary.json"}) fs::remove(out + f, ec);
          WFM_RETURN_IF_ERROR(MakeDirs(state));
        }
      }
      WFM_RETURN_IF_ERROR(WriteFileAtomically(cfg, fp.dump(2)));
      WFM_ASSIGN_OR_RETURN(std::vector<std::string> inputs, DiscoverInputs(o.inputs));
      if (inputs.empty()) return absl::InvalidArgumentError("curate: no input videos found");
      inputs_text = nlohmann::json(inputs).dump();
      // Recovery: cut torn journal lines, seal partial shards at their committed size, drop temp files.
      WFM_ASSIGN_OR_RETURN(std::vector<Entry> entries, ReadJournals(state, /*repair=*/true));
      std::map<std::string, int64_t> committed;
      for (const auto& e : entries) {
        for (const auto& [rel, off] : e.offsets) {
          std::string abs = out + "/" + rel;
          committed[abs] = std::max(committed[abs], off);
        }
      }
      WFM_RETURN_IF_ERROR(ShardWriter::Recover(shards, committed), "recovering shards");
      fs::remove_all(state + "/tmp", ec);
      fs::remove_all(state + "/claims", ec);
      // What is left to do, decided here once for all ranks: a rank that read the journals itself could see a
      // video another rank had just finished, and the ranks' lists (and so their index claims) would disagree.
      std::set<std::string> done;
      for (const auto& e : entries) done.insert(e.video.source_video);
      std::vector<std::string> pending;
      for (const auto& p : inputs) {
        if (!done.count(p)) pending.push_back(p);
      }
      pending_text = nlohmann::json(pending).dump();
      run_id = NewRunId();
      WFM_RETURN_IF_ERROR(MakeDirs(state + "/claims/" + run_id));
      return absl::OkStatus();
    }();
    if (!s.ok()) setup_error = s.ToString();
  }
  WFM_RETURN_IF_ERROR(broadcast(&setup_error));
  if (!setup_error.empty()) return absl::FailedPreconditionError(setup_error);
  for (std::string* v : {&inputs_text, &pending_text, &run_id}) WFM_RETURN_IF_ERROR(broadcast(v));
  WFM_RETURN_IF_ERROR(pg.Barrier());
  const std::vector<std::string> inputs = nlohmann::json::parse(inputs_text).get<std::vector<std::string>>();
  const std::vector<std::string> pending = nlohmann::json::parse(pending_text).get<std::vector<std::string>>();

  int workers = o.workers > 0 ? o.workers : std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / 4);
  workers = std::max(1, std::min<int>(workers, static_cast<int>(pending.size())));
  AnalysisOptions analysis = o.analysis;
  TranscodeOptions transcode = o.transcode;
  if (analysis.decode_threads == 0) {
    analysis.decode_threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / workers);
  }
  if (transcode.threads == 0) transcode.threads = analysis.decode_threads;
  analysis.gpu = transcode.gpu = gpu.gpu;
  transcode.decode = analysis.decode;

  const std::string tmp = absl::StrCat(state, "/tmp/r", pg.rank());
  WFM_RETURN_IF_ERROR(MakeDirs(tmp));
  Journal journal;
  WFM_RETURN_IF_ERROR(journal.Open(absl::StrCat(state, "/journal_r", pg.rank(), ".jsonl")));
  ShardWriterOptions swo;
  swo.root = shards;
  swo.part = pg.rank();
  swo.target_bytes = o.shard_bytes;
  swo.binned = o.binned_shards;
  std::unique_ptr<ShardWriter> writer;
  if (o.transcode_enabled) writer = std::make_unique<ShardWriter>(swo);

  ProgressOptions popt;
  popt.quiet = o.quiet || pg.rank() != 0;
  Progress progress(pg.world_size() > 1 ? absl::StrCat("curate (rank 0 of ", pg.world_size(), ")") : "curate",
                    static_cast<int64_t>(pending.size()), "videos", popt);
  std::mutex commit_mu, stats_mu;
  std::atomic<size_t> cursor{0};
  std::atomic<bool> stop{false};
  absl::Status fatal;
  std::string first_failure;
  double input_seconds = 0;
  int64_t clips_kept_run = 0;

  auto process = [&](const std::string& path) -> absl::Status {
    Entry e;
    e.video.source_video = path;
    std::error_code ec;
    absl::StatusOr<VideoAnalysis> a = fs::is_regular_file(path, ec)
                                          ? AnalyzeVideo(path, analysis)
                                          : absl::StatusOr<VideoAnalysis>(absl::NotFoundError(absl::StrCat(path, ": not found")));
    std::vector<std::string> temp_files;
    std::vector<PendingSample> samples;
    std::vector<size_t> sample_clip;
    if (!a.ok()) {
      e.video.status = "failed";
      e.video.error = std::string(a.status().message());
    } else {
      e.video = std::move(a->video);
      e.clips = std::move(a->clips);
      if (o.transcode_enabled) {
        std::vector<ClipJob> jobs;
        std::vector<size_t> job_clip;
        for (size_t k = 0; k < e.clips.size(); ++k) {
          const ClipRecord& c = e.clips[k];
          if (!c.kept) continue;
          ClipJob j = JobForClip(c, absl::StrCat(tmp, "/", c.span_uuid, ".mp4"));
          jobs.push_back(j);
          job_clip.push_back(k);
          temp_files.push_back(j.output);
        }
        auto outs = TranscodeClips(path, jobs, transcode);
        for (size_t q = 0; q < jobs.size(); ++q) {
          ClipRecord& c = e.clips[job_clip[q]];
          if (!outs.ok()) {
            c.errors.push_back(absl::StrCat("transcode: ", outs.status().message()));
            c.filter_reasons.push_back("transcode");
            c.kept = false;
            continue;
          }
          const ClipOutput& r = (*outs)[q];
          c.width = r.width;
          c.height = r.height;
          c.framerate = r.fps;
          c.num_frames = r.num_frames;
          c.num_bytes = r.num_bytes;
          c.video_codec = r.codec;
          c.stream_copied = r.stream_copied;
          c.stream_copy_declined = r.copy_declined;
          PendingSample s;
          s.key = c.key;
          s.bin = ShardBin(c.width, c.height, c.end_s - c.start_s);
          s.members.push_back({"mp4", "", jobs[q].output});
          nlohmann::json meta = c.ToJson();
          meta.erase("shard");
          s.members.push_back({"json", meta.dump(), ""});
          if (!c.caption.empty()) s.members.push_back({"txt", c.caption, ""});
          if (o.latent_writer) {
            std::string lat = absl::StrCat(tmp, "/", c.span_uuid, ".latent.safetensors");
            absl::Status ls = o.latent_writer(jobs[q].output, lat);
            if (ls.ok()) {
              s.members.push_back({"latent.safetensors", "", lat});
              temp_files.push_back(lat);
            } else {
              c.errors.push_back(absl::StrCat("latent: ", ls.message()));
            }
          }
          samples.push_back(std::move(s));
          sample_clip.push_back(job_clip[q]);
        }
      }
    }
    CrashPoint("analysed");
    {
      // Shard bytes first (fsynced), then the journal line: the journal is the commit point.
      std::lock_guard<std::mutex> lock(commit_mu);
      if (writer && !samples.empty()) {
        WFM_ASSIGN_OR_RETURN(ShardWriter::CommitInfo info, writer->Commit(samples));
        for (size_t q = 0; q < samples.size(); ++q) e.clips[sample_clip[q]].shard = Rel(out, info.placements[q].shard);
        for (const auto& [p, off] : info.end_offsets) e.offsets[Rel(out, p)] = off;
      }
      CrashPoint("before_journal");
      WFM_RETURN_IF_ERROR(journal.Append(e.ToJson()));
      if (writer) WFM_RETURN_IF_ERROR(writer->Committed());
    }
    CrashPoint("after_journal");
    for (const auto& f : temp_files) fs::remove(f, ec);
    {
      std::lock_guard<std::mutex> lock(stats_mu);
      if (e.video.status == "ok") {
        input_seconds += e.video.duration_s;
        for (const auto& c : e.clips) clips_kept_run += c.kept;
      } else if (first_failure.empty()) {
        first_failure = e.video.error;
      }
      progress.SetStatus(absl::StrFormat("%.1f input-s/s, %lld clips kept", input_seconds / std::max(progress.elapsed_s(), 1e-3),
                                         static_cast<long long>(clips_kept_run)));
    }
    if (e.video.status != "ok") {
      WFM_LOG(WARNING) << "curate: failed input: " << e.video.error;
      if (o.fail_fast) stop = true;
    }
    progress.Add(1);
    return absl::OkStatus();
  };

  const std::string claims = absl::StrCat(state, "/claims/", run_id);
  auto worker = [&]() {
    while (!stop && !progress.cancelled()) {
      size_t i = cursor++;
      if (i >= pending.size()) break;
      if (pg.world_size() > 1) {
        // Atomic claim on the shared output directory: the first rank to create the file owns the video.
        int fd = ::open(absl::StrCat(claims, "/", i).c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
        if (fd < 0) continue;
        ::close(fd);
      }
      absl::Status s = process(pending[i]);
      if (!s.ok()) {
        std::lock_guard<std::mutex> lock(stats_mu);
        if (fatal.ok()) fatal = s;
        stop = true;
      }
    }
  };
  std::vector<std::thread> threads;
  for (int w = 0; w < workers; ++w) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  if (writer && fatal.ok()) {
    fatal = writer->Close();
  } else {
    writer.reset();  // after a failure: leave the .partial tars to the next start's recovery
  }
  if (fatal.ok() && progress.cancelled())  // a ProgressSink (e.g. a Python callback) asked to stop
    fatal = absl::CancelledError(
        "curate: stopped by the progress observer (committed videos are kept; run again to resume)");
  progress.Finish();
  CrashPoint("before_merge");

  WFM_ASSIGN_OR_RETURN(const long long any_fatal, sum_all(fatal.ok() ? 0 : 1));
  WFM_ASSIGN_OR_RETURN(const long long stopped, sum_all((o.fail_fast && !first_failure.empty()) ? 1 : 0));
  WFM_ASSIGN_OR_RETURN(const long long input_ms, sum_all(static_cast<long long>(input_seconds * 1000)));
  WFM_RETURN_IF_ERROR(pg.Barrier());
  if (!fatal.ok()) return fatal;
  if (any_fatal) return absl::InternalError("curate: another rank failed (see its log)");

  // ---- merge (rank 0): dedup, shard rewrites, indexes, summary ----
  nlohmann::json summary;
  absl::Status merge_status;
  if (pg.rank() == 0) {
    merge_status = [&]() -> absl::Status {
      WFM_ASSIGN_OR_RETURN(std::vector<Entry> entries, ReadJournals(state, false));
      std::map<std::string, size_t> order;
      for (size_t i = 0; i < inputs.size(); ++i) order[inputs[i]] = i;
      std::map<std::string, size_t> first;  // one entry per video (the first committed)
      std::vector<Entry> unique;
      for (auto& e : entries) {
        if (first.emplace(e.video.source_video, unique.size()).second) unique.push_back(std::move(e));
      }
      std::sort(unique.begin(), unique.end(), [&](const Entry& a, const Entry& b) {
        auto ia = order.find(a.video.source_video), ib = order.find(b.video.source_video);
        size_t xa = ia == order.end() ? SIZE_MAX : ia->second, xb = ib == order.end() ? SIZE_MAX : ib->second;
        return xa != xb ? xa < xb : a.video.source_video < b.video.source_video;
      });
      std::vector<ClipRecord*> clips;
      for (auto& e : unique) {
        std::sort(e.clips.begin(), e.clips.end(), [](const ClipRecord& a, const ClipRecord& b) { return a.start_frame < b.start_frame; });
        for (auto& c : e.clips) clips.push_back(&c);
      }
      std::map<std::string, int64_t> reasons;
      int64_t found = static_cast<int64_t>(clips.size()), after_filters = 0;
      for (auto* c : clips) {
        for (const auto& r : c->filter_reasons) ++reasons[r];
        after_filters += c->kept;
      }
      // Near-duplicate dedup over the clips that passed the filters.
      int64_t dups = 0, sem_dups = 0;
      // "Highest resolution" is the source resolution inside the crop (outputs may all be resized alike).
      auto pixels = [](const ClipRecord* c) { return static_cast<int64_t>(c->crop.w) * c->crop.h; };
      std::set<std::string> removed;
      if (o.dedup) {
        std::vector<DedupItem> items;
        std::vector<ClipRecord*> who;
        for (auto* c : clips) {
          if (!c->kept || c->phash.empty()) continue;
          items.push_back({c->span_uuid, c->phash, pixels(c), c->end_s - c->start_s});
          who.push_back(c);
        }
        std::vector<int> d = FindNearDuplicates(items, o.dedup_options);
        for (size_t i = 0; i < d.size(); ++i) {
          if (d[i] < 0) continue;
          who[i]->kept = false;
          who[i]->filter_reasons.push_back("duplicate");
          who[i]->duplicate_of = who[d[i]]->span_uuid;
          ++dups;
        }
      }
      if (o.semantic_dedup) {
        std::vector<SemanticItem> items;
        std::vector<ClipRecord*> who;
        for (auto* c : clips) {
          if (!c->kept || c->embedding.empty()) continue;
          items.push_back({c->span_uuid, c->embedding, pixels(c), c->end_s - c->start_s});
          who.push_back(c);
        }
        std::vector<int> d = SemanticDuplicates(items, o.semantic_options);
        for (size_t i = 0; i < d.size(); ++i) {
          if (d[i] < 0) continue;
          who[i]->kept = false;
          who[i]->filter_reasons.push_back("semantic_duplicate");
          who[i]->duplicate_of = who[d[i]]->span_uuid;
          ++sem_dups;
        }
      }
      // Take dropped clips out of their shards (idempotent: a rerun finds nothing left to remove).
      std::map<std::string, std::set<std::string>> drop;
      for (auto* c : clips) {
        if (!c->kept && !c->shard.empty()) {
          drop[out + "/" + c->shard].insert(c->key);
          c->shard.clear();
        }
      }
      for (const auto& [tar, keys] : drop) WFM_RETURN_IF_ERROR(RemoveSamples(tar, keys), "deduplicating ", tar);
      CrashPoint("before_indexes");
      // Indexes.
      std::string videos_text, clips_text;
      int64_t ok = 0, failed = 0, kept = 0, shots = 0, written = 0;
      double hours_in = 0, hours_out = 0;
      for (const auto& e : unique) {
        videos_text += e.video.ToJson().dump() + "\n";
        if (e.video.status == "ok") {
          ++ok;
          hours_in += e.video.duration_s / 3600.0;
          shots += static_cast<int64_t>(e.video.shots.size());
        } else {
          ++failed;
        }
        for (const auto& c : e.clips) {
          clips_text += c.ToJson().dump() + "\n";
          if (c.kept) {
            ++kept;
            hours_out += (c.end_s - c.start_s) / 3600.0;
            written += !c.shard.empty();
          }
        }
      }
      WFM_RETURN_IF_ERROR(WriteFileAtomically(out + "/videos.jsonl", videos_text));
      WFM_RETURN_IF_ERROR(WriteFileAtomically(out + "/clips.jsonl", clips_text));
      const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      summary["inputs"] = inputs.size();
      summary["videos"] = {{"ok", ok}, {"failed", failed}, {"processed_this_run", pending.size()},
                           {"resumed", inputs.size() - pending.size()}};
      summary["clips"] = {{"shots", shots},
                          {"found", found},
                          {"after_filters", after_filters},
                          {"filtered", reasons},
                          {"duplicates", dups},
                          {"semantic_duplicates", sem_dups},
                          {"kept", kept},
                          {"written", written}};
      summary["hours_in"] = hours_in;
      summary["hours_out"] = hours_out;
      summary["wall_time_s"] = wall;
      summary["input_seconds_this_run"] = input_ms / 1000.0;
      summary["throughput_input_s_per_s"] = wall > 0 ? input_ms / 1000.0 / wall : 0.0;
      summary["processes"] = pg.world_size();
      summary["workers_per_process"] = workers;
      summary["transcode"] = o.transcode_enabled;
      if (o.transcode_enabled) summary["encoder"] = ResolveEncoder(o.transcode.encoder);
      summary["devices"] = {{"decode", o.analysis.decode},
                            {"ranks_on_nvdec", ranks_nvdec},
                            {"rank0", {{"local_rank", gpu.local_rank},
                                       {"visible_gpus", gpu.num_gpus},
                                       {"gpu", gpu.gpu >= 0 ? nlohmann::json(gpu.gpu) : nlohmann::json(nullptr)},
                                       {"decode", *decode_used}}}};
      summary["config"] = Fingerprint(o);
      WFM_RETURN_IF_ERROR(WriteFileAtomically(out + "/summary.json", summary.dump(2) + "\n"));
      if (!o.quiet) {
        std::fprintf(stderr,
                     "curate: %lld videos (%lld failed), %.2f h in -> %lld clips found, %lld after filters, "
                     "%lld duplicates, %lld kept (%.2f h) in %s (%.1f input-s/s)\n",
                     static_cast<long long>(ok + failed), static_cast<long long>(failed), hours_in,
                     static_cast<long long>(found), static_cast<long long>(after_filters),
                     static_cast<long long>(dups + sem_dups), static_cast<long long>(kept), hours_out,
                     FormatDuration(wall).c_str(), wall > 0 ? input_ms / 1000.0 / wall : 0.0);
      }
      return absl::OkStatus();
    }();
  }
  WFM_ASSIGN_OR_RETURN(const long long merge_failed, sum_all(merge_status.ok() ? 0 : 1));
  WFM_RETURN_IF_ERROR(pg.Barrier());
  WFM_RETURN_IF_ERROR(merge_status, "merging ", out);
  if (merge_failed) return absl::InternalError("curate: the merge on rank 0 failed");
  if (stopped) {
    return absl::AbortedError(absl::StrCat("curate: stopped at the first failed input (--fail-fast): ",
                                           first_failure.empty() ? "on another rank" : first_failure));
  }
  if (pg.rank() != 0) summary = {{"rank", pg.rank()}, {"merged_by", 0}};
  return summary;
}

}  // namespace wfm::curation
