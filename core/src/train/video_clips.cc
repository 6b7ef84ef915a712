// Video clip sampling, time-based train/val split and the prefetching batch loader (see train/video_clips.h).
#include "wfm/core/train/video_clips.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "wfm/core/logging.h"
#include "wfm/core/progress.h"
#include "wfm/core/status.h"
#include "wfm/core/train/rng.h"
#include "wfm/core/video_io.h"

namespace wfm::train {
namespace fs = std::filesystem;

bool IsVideoFileName(const std::string& path) {
  static const std::set<std::string> kExt = {".mp4", ".mkv", ".webm", ".avi", ".mov", ".mpg", ".mpeg", ".m4v",
                                             ".ts",  ".flv", ".wmv",  ".ogv", ".3gp", ".y4m", ".gif"};
  return kExt.count(absl::AsciiStrToLower(fs::path(path).extension().string())) > 0;
}

absl::StatusOr<std::vector<std::string>> ListVideoFiles(const std::vector<std::string>& sources) {
  std::vector<std::string> out;
  for (const auto& src : sources) {
    std::error_code ec;
    if (fs::is_directory(src, ec)) {
      std::vector<std::string> found;
      for (const auto& e : fs::recursive_directory_iterator(src, fs::directory_options::follow_directory_symlink, ec))
        if (e.is_regular_file() && IsVideoFileName(e.path().string())) found.push_back(e.path().string());
      std::sort(found.begin(), found.end());
      out.insert(out.end(), found.begin(), found.end());
    } else if (fs::is_regular_file(src, ec)) {
      out.push_back(src);
    } else {
      return absl::NotFoundError(absl::StrCat("no such video file or directory: ", src));
    }
  }
  if (out.empty())
    return absl::NotFoundError(absl::StrCat("no video files (", "mp4, mkv, avi, mov, mpg, webm, ...) in the given sources"));
  return out;
}

absl::StatusOr<std::unique_ptr<VideoClipDataset>> VideoClipDataset::Open(const std::vector<std::string>& sources,
                                                                         const VideoClipOptions& options) {
  if (options.num_frames < 1) return absl::InvalidArgumentError("clips need at least one frame");
  const bool whole_frames = options.width == 0 && options.height == 0;
  if (whole_frames ? !options.evaluation_only : (options.width < 1 || options.height < 1))
    return absl::InvalidArgumentError("clip width/height must be > 0 (0 x 0, whole frames, only for evaluation)");
  if (options.val_fraction < 0 || options.val_fraction > 1 || (options.val_fraction == 1 && !options.evaluation_only))
    return absl::InvalidArgumentError(absl::StrCat("val_fraction must be in [0, 1), got ", options.val_fraction));
  if (options.max_zoom < 1) return absl::InvalidArgumentError("max_zoom must be >= 1");
  WFM_ASSIGN_OR_RETURN(std::vector<std::string> files, ListVideoFiles(sources));
  std::unique_ptr<VideoClipDataset> ds(new VideoClipDataset());
  ds->options_ = options;
  const int short_side =
      options.resize_short_side > 0 ? options.resize_short_side : std::max(options.width, options.height);
  if (short_side > 0 && short_side < std::max(options.width, options.height))
    return absl::InvalidArgumentError(absl::StrCat("resize_short_side ", short_side, " is smaller than the clip size ",
                                                   options.width, "x", options.height));

  // Probe everything first: sizes decide whether the decoded videos fit in the cache.
  int64_t planned_bytes = 0;
  for (const auto& path : files) {
    WFM_ASSIGN_OR_RETURN(VideoInfo info, ProbeVideo(path, /*exact=*/true));
    if (info.width <= 0 || info.height <= 0 || info.num_frames <= 0 || info.fps.value() <= 0)
      return absl::InvalidArgumentError(absl::StrCat(path, ": no decodable video stream"));
    Video v;
    v.path = path;
    const double src_fps = info.fps.value();
    v.fps = options.fps > 0 ? options.fps : src_fps;
    // Frames at the output rate (conservative by one when resampling: the last timestamp may not produce a frame).
    v.num_frames = options.fps > 0
                       ? std::max<int64_t>(0, static_cast<int64_t>(std::floor(info.num_frames * v.fps / src_fps)) - 1)
                       : info.num_frames;
    if (short_side == 0) {  // whole frames at the source size
      v.decoded_width = info.width;
      v.decoded_height = info.height;
    } else if (info.width >= info.height) {
      v.decoded_height = short_side;
      v.decoded_width = static_cast<int>(std::lround(static_cast<double>(info.width) * short_side / info.height));
    } else {
      v.decoded_width = short_side;
      v.decoded_height = static_cast<int>(std::lround(static_cast<double>(info.height) * short_side / info.width));
    }
    if (short_side > 0) {
      v.decoded_width += v.decoded_width % 2;  // even sizes (scaler friendly)
      v.decoded_height += v.decoded_height % 2;
    }
    planned_bytes += v.num_frames * v.decoded_width * v.decoded_height * 3;
    ds->videos_.push_back(std::move(v));
  }
  ds->resize_ = short_side > 0;
  const bool cache = planned_bytes <= options.cache_bytes;
  if (cache) {
    Progress progress("decode videos", static_cast<int64_t>(ds->videos_.size()), "videos");
    for (auto& v : ds->videos_) {
      DecodeOptions d;
      if (short_side > 0) {
        d.width = v.decoded_width;
        d.height = v.decoded_height;
      }
      d.fps = options.fps;
      d.threads = options.decode_threads;
      WFM_ASSIGN_OR_RETURN(v.cache, DecodeVideo(v.path, d), "decoding ", v.path);
      v.num_frames = v.cache.size(0);
      ds->cached_bytes_ += v.cache.numel();
      progress.Add(1);
    }
    progress.Finish();
  }
  // Time split: train [0, train_end), validation [val_begin, N).
  int64_t cumulative = 0;
  for (auto& v : ds->videos_) {
    v.train_end = static_cast<int64_t>(std::floor(v.num_frames * (1.0 - options.val_fraction)));
    v.val_begin = options.val_fraction > 0 ? v.train_end : v.num_frames;
    const int64_t starts = std::max<int64_t>(0, v.train_end - options.num_frames + 1);
    if (starts == 0 && !options.evaluation_only)
      WFM_LOG(WARNING) << v.path << ": its training span (" << v.train_end << " frames) is shorter than a clip ("
                       << options.num_frames << " frames); not used for training";
    cumulative += starts;
    ds->train_starts_.push_back(cumulative);
  }
  ds->total_train_starts_ = cumulative;
  if (cumulative == 0 && !options.evaluation_only)
    return absl::InvalidArgumentError(absl::StrCat("no video is long enough for ", options.num_frames,
                                                   "-frame training clips (after holding out ",
                                                   options.val_fraction * 100, "% for validation)"));
  return ds;
}

std::string VideoClipDataset::Summary() const {
  int64_t total = 0, train = 0, val = 0;
  for (const auto& v : videos_) {
    total += v.num_frames;
    train += v.train_end;
    val += v.num_frames - v.val_begin;
  }
  return absl::StrFormat("%d videos, %d frames%s: train %d / val %d frames; %s", videos_.size(), total,
                         options_.fps > 0 ? absl::StrFormat(" at %g fps", options_.fps) : "", train, val,
                         cached_bytes_ > 0 ? absl::StrFormat("cached %.1f MB", cached_bytes_ / 1e6)
                                           : std::string("streaming decode"));
}

absl::StatusOr<at::Tensor> VideoClipDataset::ReadFrames(const Video& v, int64_t start, int64_t count) const {
  if (v.cache.defined()) return v.cache.narrow(0, start, count);
  DecodeOptions d;
  if (resize_) {
    d.width = v.decoded_width;
    d.height = v.decoded_height;
  }
  d.fps = options_.fps;
  d.start_frame = start;
  d.num_frames = count;
  d.threads = options_.decode_threads;
  WFM_ASSIGN_OR_RETURN(at::Tensor frames, DecodeVideo(v.path, d));
  if (frames.size(0) < count)
    return absl::DataLossError(absl::StrCat(v.path, ": decoded ", frames.size(0), " frames at ", start, ", wanted ",
                                            count));
  return frames;
}

at::Tensor VideoClipDataset::CropResize(const at::Tensor& frames, int64_t y, int64_t x, int64_t ch, int64_t cw,
                                        bool flip) const {
  at::Tensor c = frames.narrow(1, y, ch).narrow(2, x, cw);  // [T, ch, cw, 3]
  if (ch != options_.height || cw != options_.width) {
    at::Tensor f = c.permute({0, 3, 1, 2}).to(at::kFloat);  // [T, 3, ch, cw]
    f = at::upsample_bilinear2d(f, {options_.height, options_.width}, /*align_corners=*/false);
    c = f.round().clamp(0, 255).to(at::kByte).permute({0, 2, 3, 1});
  }
  if (flip) c = c.flip({2});
  return c.contiguous();
}

absl::StatusOr<VideoClip> VideoClipDataset::TrainClip(uint64_t index) const {
  if (total_train_starts_ == 0) return absl::FailedPreconditionError("this clip set has no training clips");
  std::mt19937_64 rng(MixSeed(options_.seed, index, 0x747261696eull));
  const int64_t pick = static_cast<int64_t>(rng() % static_cast<uint64_t>(total_train_starts_));
  const size_t vi = std::upper_bound(train_starts_.begin(), train_starts_.end(), pick) - train_starts_.begin();
  const Video& v = videos_[vi];
  const int64_t start = pick - (vi == 0 ? 0 : train_starts_[vi - 1]);
  WFM_ASSIGN_OR_RETURN(at::Tensor frames, ReadFrames(v, start, options_.num_frames));
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  const double zoom = 1.0 + (options_.max_zoom - 1.0) * unit(rng);
  const int64_t fh = frames.size(1), fw = frames.size(2);
  const int64_t ch = std::min<int64_t>(fh, std::max<int64_t>(1, std::lround(options_.height / zoom)));
  const int64_t cw = std::min<int64_t>(fw, std::max<int64_t>(1, std::lround(options_.width / zoom)));
  const int64_t y = static_cast<int64_t>(rng() % static_cast<uint64_t>(fh - ch + 1));
  const int64_t x = static_cast<int64_t>(rng() % static_cast<uint64_t>(fw - cw + 1));
  const bool flip = options_.random_flip && (rng() & 1);
  VideoClip clip;
  clip.frames = CropResize(frames, y, x, ch, cw, flip);
  clip.path = v.path;
  clip.start_frame = start;
  clip.start_s = start / v.fps;
  return clip;
}

absl::StatusOr<std::vector<VideoClip>> VideoClipDataset::ValidationClips(int64_t max_clips) const {
  std::vector<std::pair<size_t, int64_t>> all;  // (video, start)
  const int64_t t = options_.num_frames;
  for (size_t i = 0; i < videos_.size(); ++i)
    for (int64_t s = videos_[i].val_begin; s + t <= videos_[i].num_frames; s += t) all.emplace_back(i, s);
  if (all.empty())
    return absl::FailedPreconditionError(absl::StrCat("no validation clip of ", t, " frames fits in the last ",
                                                      options_.val_fraction * 100, "% of any video"));
  std::vector<std::pair<size_t, int64_t>> chosen;
  if (max_clips > 0 && static_cast<int64_t>(all.size()) > max_clips) {
    for (int64_t k = 0; k < max_clips; ++k) chosen.push_back(all[k * all.size() / max_clips]);
  } else {
    chosen = all;
  }
  std::vector<VideoClip> out;
  for (const auto& [vi, start] : chosen) {
    const Video& v = videos_[vi];
    WFM_ASSIGN_OR_RETURN(at::Tensor frames, ReadFrames(v, start, t));
    const int64_t fh = frames.size(1), fw = frames.size(2);
    VideoClip clip;
    clip.frames = options_.width == 0 ? frames.contiguous()
                                      : CropResize(frames, (fh - options_.height) / 2, (fw - options_.width) / 2,
                                                   options_.height, options_.width, false);
    clip.path = v.path;
    clip.start_frame = start;
    clip.start_s = start / v.fps;
    out.push_back(std::move(clip));
  }
  return out;
}

at::Tensor ClipsToBatch(const std::vector<VideoClip>& clips) {
  std::vector<at::Tensor> items;
  items.reserve(clips.size());
  for (const auto& c : clips) items.push_back(FramesToModelInput(c.frames));  // [3, T, H, W]
  return at::stack(items);                                                    // [B, 3, T, H, W]
}

// ---- ClipBatchLoader ----

ClipBatchLoader::ClipBatchLoader(const VideoClipDataset& dataset, int64_t batch_size, int prefetch, int rank,
                                 int world_size)
    : dataset_(dataset),
      batch_size_(batch_size),
      prefetch_(std::max(1, prefetch)),
      rank_(rank),
      world_size_(std::max(1, world_size)) {
  Start();
}

ClipBatchLoader::~ClipBatchLoader() { Stop(); }

void ClipBatchLoader::Start() {
  stop_ = false;
  worker_ = std::thread([this] { Work(); });
}

void ClipBatchLoader::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

absl::StatusOr<at::Tensor> ClipBatchLoader::MakeBatch(int64_t batch_index) const {
  std::vector<VideoClip> clips;
  for (int64_t i = 0; i < batch_size_; ++i) {
    const uint64_t clip_index = static_cast<uint64_t>((batch_index * world_size_ + rank_) * batch_size_ + i);
    WFM_ASSIGN_OR_RETURN(VideoClip c, dataset_.TrainClip(clip_index));
    clips.push_back(std::move(c));
  }
  return ClipsToBatch(clips);
}

void ClipBatchLoader::Work() {
  for (;;) {
    int64_t index;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || static_cast<int>(ready_.size()) < prefetch_; });
      if (stop_) return;
      index = next_to_make_++;
    }
    absl::StatusOr<at::Tensor> batch = CatchToStatus("preparing a batch", [&] { return MakeBatch(index); });
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
      ready_.emplace_back(index, std::move(batch));
    }
    cv_.notify_all();
  }
}

absl::StatusOr<at::Tensor> ClipBatchLoader::Next() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !ready_.empty(); });
  auto item = std::move(ready_.front());
  ready_.pop_front();
  ++next_to_return_;
  lock.unlock();
  cv_.notify_all();
  return std::move(item.second);
}

int64_t ClipBatchLoader::position() const {
  std::lock_guard<std::mutex> lock(mu_);
  return next_to_return_;
}

void ClipBatchLoader::Seek(int64_t batch_index) {
  Stop();
  ready_.clear();
  next_to_return_ = next_to_make_ = batch_index;
  Start();
}

absl::Status ClipBatchLoader::LoadState(const nlohmann::json& state) {
  if (!state.is_object() || !state.contains("batch") || !state["batch"].is_number_integer())
    return absl::InvalidArgumentError(absl::StrCat("bad data loader state: ", state.dump()));
  Seek(state["batch"].get<int64_t>());
  return absl::OkStatus();
}

}  // namespace wfm::train
