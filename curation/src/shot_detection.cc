// Streaming shot detectors (see shot_detection.h): PySceneDetect-style adaptive content detector, the
// linear-blend gradual-transition (dissolve / fade / blank) detector, a TorchScript TransNetV2 runner, and
// the merger that turns their outputs into one ordered list of transitions.
#include "wfm/curation/shot_detection.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <limits>

#include <ATen/ATen.h>

#include "wfm/core/status.h"
#include "wfm/curation/decoder.h"
#include "wfm/curation/models.h"

namespace wfm::curation {
namespace {

constexpr int64_t kForever = std::numeric_limits<int64_t>::max();
constexpr int kPixels = kAnalysisWidth * kAnalysisHeight;

// OpenCV's 8-bit RGB->HSV (hrange 180) with its fixed-point tables (cv::RGB2HSV_b), so content_val matches
// PySceneDetect's numbers on the same frames.
struct HsvTables {
  int sdiv[256], hdiv[256];
  HsvTables() {
    constexpr int kShift = 12;
    sdiv[0] = hdiv[0] = 0;
    for (int i = 1; i < 256; ++i) {
      sdiv[i] = static_cast<int>(std::lround((255 << kShift) / (1.0 * i)));
      hdiv[i] = static_cast<int>(std::lround((180 << kShift) / (6.0 * i)));
    }
  }
};
const HsvTables& Tables() {
  static const HsvTables t;
  return t;
}

void RgbToHsv(const uint8_t* rgb, uint8_t* h, uint8_t* s, uint8_t* v, int n) {
  constexpr int kShift = 12, kRound = 1 << (kShift - 1);
  const HsvTables& t = Tables();
  for (int i = 0; i < n; ++i) {
    int r = rgb[3 * i], g = rgb[3 * i + 1], b = rgb[3 * i + 2];
    int vmax = std::max(r, std::max(g, b)), vmin = std::min(r, std::min(g, b));
    int diff = vmax - vmin;
    int vr = vmax == r ? -1 : 0, vg = vmax == g ? -1 : 0;
    int sat = (diff * t.sdiv[vmax] + kRound) >> kShift;
    int hue = (vr & (g - b)) + (~vr & ((vg & (b - r + 2 * diff)) + ((~vg) & (r - g + 4 * diff))));
    hue = (hue * t.hdiv[diff] + kRound) >> kShift;
    hue += hue < 0 ? 180 : 0;
    h[i] = static_cast<uint8_t>(hue);
    s[i] = static_cast<uint8_t>(sat);
    v[i] = static_cast<uint8_t>(vmax);
  }
}

double MeanAbsDiff(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  int64_t sum = 0;
  for (size_t i = 0; i < a.size(); ++i) sum += std::abs(static_cast<int>(a[i]) - static_cast<int>(b[i]));
  return static_cast<double>(sum) / static_cast<double>(a.size());
}

// ---------------------------------------------------------------------------------------------------------
// PySceneDetect AdaptiveDetector (scenedetect/detectors/adaptive_detector.py) over ContentDetector scores.
class ContentDetector : public ShotDetector {
 public:
  explicit ContentDetector(const ContentDetectorOptions& o) : o_(o) {
    for (auto* p : {&h_, &s_, &v_, &ph_, &ps_, &pv_}) p->resize(kPixels);
  }

  absl::Status Push(int64_t index, const uint8_t* rgb) override {
    RgbToHsv(rgb, h_.data(), s_.data(), v_.data(), kPixels);
    double score = 0.0;  // the first frame scores 0 (ContentDetector._calculate_frame_score)
    if (have_last_) {
      double dv = MeanAbsDiff(v_, pv_);
      score = o_.luma_only ? dv : (MeanAbsDiff(h_, ph_) + MeanAbsDiff(s_, ps_) + dv) / 3.0;
    }
    std::swap(h_, ph_);
    std::swap(s_, ps_);
    std::swap(v_, pv_);
    have_last_ = true;
    if (last_cut_ < 0) last_cut_ = index;
    buffer_.push_back({index, score});
    const size_t required = 1 + 2 * static_cast<size_t>(o_.window_width);
    if (buffer_.size() > required) buffer_.pop_front();
    if (buffer_.size() == required) {
      const auto [target_index, target_score] = buffer_[o_.window_width];
      double sum = 0.0;
      for (size_t i = 0; i < buffer_.size(); ++i) {
        if (static_cast<int>(i) != o_.window_width) sum += buffer_[i].second;
      }
      double avg = sum / (2.0 * o_.window_width);
      double ratio = 0.0;
      if (std::abs(avg) >= 1e-5) {
        ratio = std::min(target_score / avg, 255.0);
      } else if (target_score >= o_.min_content_val) {
        ratio = 255.0;
      }
      bool threshold_met = ratio >= o_.adaptive_threshold && target_score >= o_.min_content_val;
      bool min_length_met = index - last_cut_ >= o_.min_scene_len;
      if (threshold_met && min_length_met) {
        last_cut_ = target_index;
        out_.push_back(Transition{target_index, target_index, "cut", target_score});
      }
      frontier_ = target_index + 1;
    }
    return absl::OkStatus();
  }
  absl::Status Finish() override {
    frontier_ = kForever;
    return absl::OkStatus();
  }
  std::vector<Transition> TakeTransitions() override { return std::exchange(out_, {}); }
  int64_t frontier() const override { return frontier_; }
  std::string name() const override { return "content"; }

 private:
  ContentDetectorOptions o_;
  std::vector<uint8_t> h_, s_, v_, ph_, ps_, pv_;
  bool have_last_ = false;
  int64_t last_cut_ = -1, frontier_ = 0;
  std::deque<std::pair<int64_t, double>> buffer_;
  std::vector<Transition> out_;
};

// ---------------------------------------------------------------------------------------------------------
// Gradual transitions by linear-blend fitting on 64x36 thumbnails, plus blank-frame runs.
class GradualDetector : public ShotDetector {
 public:
  static constexpr int kW = kAnalysisWidth / 2, kH = kAnalysisHeight / 2, kN = kW * kH * 3;
  static_assert(kN % 8 == 0);

  GradualDetector(const GradualDetectorOptions& o, double fps) : o_(o) {
    for (double s : o.half_windows_s) {
      int h = std::max(2, static_cast<int>(std::lround(s * fps)));
      if (std::find(halves_.begin(), halves_.end(), h) == halves_.end()) halves_.push_back(h);
    }
    std::sort(halves_.begin(), halves_.end());
    hmax_ = halves_.empty() ? 2 : halves_.back();
  }

  absl::Status Push(int64_t index, const uint8_t* rgb) override {
    Thumb t;
    t.index = index;
    t.px.resize(kN);
    double lsum = 0, lsq = 0;
    for (int y = 0; y < kH; ++y) {
      for (int x = 0; x < kW; ++x) {
        for (int c = 0; c < 3; ++c) {
          const uint8_t* p = rgb + ((2 * y) * kAnalysisWidth + 2 * x) * 3 + c;
          float v = 0.25f * (p[0] + p[3] + p[kAnalysisWidth * 3] + p[kAnalysisWidth * 3 + 3]);
          t.px[(y * kW + x) * 3 + c] = v;
        }
        const float* q = &t.px[(y * kW + x) * 3];
        double l = 0.299 * q[0] + 0.587 * q[1] + 0.114 * q[2];
        lsum += l;
        lsq += l * l;
      }
    }
    t.gray.resize(kPixels);
    for (int k = 0; k < kPixels; ++k) {
      t.gray[k] = static_cast<uint8_t>((299 * rgb[3 * k] + 587 * rgb[3 * k + 1] + 114 * rgb[3 * k + 2] + 500) / 1000);
    }
    t.luma = lsum / (kW * kH);
    t.luma_std = std::sqrt(std::max(0.0, lsq / (kW * kH) - t.luma * t.luma));
    TrackBlank(index, t.luma < o_.blank_luma && t.luma_std < o_.blank_std);
    frames_.push_back(std::move(t));
    last_index_ = index;
    // Evaluate every centre whose full (largest) window has arrived.
    while (next_center_ + 2 * hmax_ <= last_index_) EvaluateCenter(next_center_++);
    while (!frames_.empty() && frames_.front().index < next_center_ - 2 * hmax_ - 1) frames_.pop_front();
    return absl::OkStatus();
  }

  absl::Status Finish() override {
    // Remaining centres with the windows that still fit.
    while (next_center_ <= last_index_) EvaluateCenter(next_center_++);
    CloseRun();
    TrackBlank(last_index_ + 1, false);
    finished_ = true;
    return absl::OkStatus();
  }

  std::vector<Transition> TakeTransitions() override {
    int64_t f = frontier();
    std::sort(pending_.begin(), pending_.end(), [](const Transition& a, const Transition& b) { return a.start < b.start; });
    std::vector<Transition> out;
    auto it = pending_.begin();
    while (it != pending_.end() && it->start < f) out.push_back(*it++);
    pending_.erase(pending_.begin(), it);
    return out;
  }

  int64_t frontier() const override {
    if (finished_) return kForever;
    int64_t f = next_center_ - hmax_;
    if (run_active_) f = std::min(f, run_first_ - hmax_);
    if (blank_start_ >= 0) f = std::min(f, blank_start_);
    return std::max<int64_t>(f, 0);
  }
  std::string name() const override { return "gradual"; }

 private:
  struct Thumb {
    int64_t index = 0;
    std::vector<float> px;       // 64x36 RGB
    std::vector<uint8_t> gray;   // 128x72 luma
    double luma = 0, luma_std = 0;
  };
  struct Candidate {
    int64_t center = 0;
    double score = 0, mid = 0;
    int64_t start = 0, end = 0;
    bool dark = false;
  };

  const Thumb* Get(int64_t index) const {
    if (frames_.empty()) return nullptr;
    int64_t off = index - frames_.front().index;
    if (off < 0 || off >= static_cast<int64_t>(frames_.size())) return nullptr;
    return &frames_[off];
  }

  void TrackBlank(int64_t index, bool blank) {
    if (blank && blank_start_ < 0) blank_start_ = index;
    if (!blank && blank_start_ >= 0) {
      pending_.push_back(Transition{blank_start_, index, "blank", 0.0});
      blank_start_ = -1;
    }
  }

  // Tests centre t with every half-window; keeps the best passing fit.
  void EvaluateCenter(int64_t t) {
    std::optional<Candidate> best;
    for (int h : halves_) {
      const Thumb* p = Get(t - h);
      const Thumb* q = Get(t + h);
      if (!p || !q) continue;
      auto c = Fit(t, h, *p, *q);
      if (c && (!best || c->score > best->score)) best = c;
    }
    if (best) {
      if (run_active_ && t - run_last_ > 2) CloseRun();
      if (!run_active_) {
        run_active_ = true;
        run_first_ = t;
        run_best_ = *best;
      } else if (std::abs(best->mid - 0.5) < std::abs(run_best_.mid - 0.5) ||
                 (std::abs(best->mid - 0.5) == std::abs(run_best_.mid - 0.5) && best->score > run_best_.score)) {
        run_best_ = *best;
      }
      run_last_ = t;
    } else if (run_active_ && t - run_last_ > 2) {
      CloseRun();
    }
  }

  void CloseRun() {
    if (!run_active_) return;
    run_active_ = false;
    const Candidate& c = run_best_;
    pending_.push_back(Transition{c.start, std::max(c.end, c.start + 1), c.dark ? "fade" : "dissolve", c.score});
  }

  // Sum of squared differences and, optionally, the dot product of (x - p) with (q - p), in 8 independent
  // float lanes so the compiler vectorises without -ffast-math (kN is a multiple of 8).
  static double SquaredDistance(const float* x, const float* y) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int i = 0; i < kN; i += 8) {
      for (int k = 0; k < 8; ++k) {
        float d = x[i + k] - y[i + k];
        acc[k] += d * d;
      }
    }
    double sum = 0;
    for (float a : acc) sum += a;
    return sum;
  }
  static void Project(const float* x, const float* p, const float* q, double* dot, double* xx) {
    float ad[8] = {0, 0, 0, 0, 0, 0, 0, 0}, ax[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int i = 0; i < kN; i += 8) {
      for (int k = 0; k < 8; ++k) {
        float e = x[i + k] - p[i + k];
        ad[k] += e * (q[i + k] - p[i + k]);
        ax[k] += e * e;
      }
    }
    *dot = *xx = 0;
    for (int k = 0; k < 8; ++k) {
      *dot += ad[k];
      *xx += ax[k];
    }
  }
  static double Rms(const Thumb& a, const Thumb& b) { return std::sqrt(SquaredDistance(a.px.data(), b.px.data()) / kN); }

  std::optional<Candidate> Fit(int64_t t, int h, const Thumb& P, const Thumb& Q) const {
    static const bool debug = std::getenv("WFM_SHOT_DEBUG") != nullptr;
    const float* p = P.px.data();
    const float* q = Q.px.data();
    const double change = Rms(P, Q);
    if (change < o_.min_change && !(debug && change >= 0.5 * o_.min_change)) return std::nullopt;
    // Change across the window versus change over h frames just outside it (the calmer side): a transition
    // stands out, steady camera or object motion does not.
    double side = -1;
    const Thumb* b0 = Get(t - 2 * h);
    const Thumb* a1 = Get(t + 2 * h);
    if (b0) side = Rms(*b0, P);
    if (a1) side = side < 0 ? Rms(Q, *a1) : std::min(side, Rms(Q, *a1));
    const double contrast = side < 0 ? o_.min_contrast : change / std::max(side, 2.0);
    if (contrast < o_.min_contrast && !debug) return std::nullopt;
    const double dd = change * change * kN;
    std::vector<double> alpha;
    alpha.reserve(2 * h + 1);
    alpha.push_back(0.0);
    double resid_sum = 0;
    for (int64_t s = t - h + 1; s < t + h; ++s) {
      const Thumb* f = Get(s);
      if (!f) return std::nullopt;
      const float* x = f->px.data();
      // |x - p - a d|^2 = |x - p|^2 - 2 a <x - p, d> + a^2 |d|^2 with d = q - p.
      double dot, xx;
      Project(x, p, q, &dot, &xx);
      double a = std::clamp(dot / dd, 0.0, 1.0);
      double r2 = std::max(0.0, xx - 2 * a * dot + a * a * dd);
      resid_sum += std::sqrt(r2 / kN);
      alpha.push_back(a);
    }
    alpha.push_back(1.0);
    const double resid = resid_sum / (2 * h - 1) / change;
    double max_step = 0, back = 0;
    for (size_t i = 1; i < alpha.size(); ++i) {
      double d = alpha[i] - alpha[i - 1];
      max_step = std::max(max_step, d);
      if (d < 0) back -= d;
    }
    bool pass = change >= o_.min_change && contrast >= o_.min_contrast && resid <= o_.max_residual &&
                max_step <= o_.max_step && back <= o_.max_backtrack;
    // Camera motion (pan / tilt) between P and Q looks like a blend at low resolution: reject when a global
    // shift of P explains Q much better than no shift.
    double moved = pass || debug ? ShiftedRms(P, Q) : 1.0;
    pass = pass && moved >= o_.max_shift_ratio;
    if (debug) {
      std::fprintf(stderr, "gradual t=%lld h=%d change=%.1f contrast=%.2f resid=%.3f step=%.2f back=%.2f shift=%.2f %s\n",
                   static_cast<long long>(t), h, change, contrast, resid, max_step, back, moved, pass ? "PASS" : "");
    }
    if (!pass) return std::nullopt;
    Candidate c;
    c.center = t;
    c.mid = alpha[h];
    c.score = change * (1.0 - resid / o_.max_residual);
    // The transition spans the frames whose blend weight is strictly between the shots.
    int first = -1, last = -1;
    for (size_t i = 0; i < alpha.size(); ++i) {
      if (alpha[i] > 0.1 && first < 0) first = static_cast<int>(i);
      if (alpha[i] < 0.9) last = static_cast<int>(i);
    }
    if (first < 0) first = h;
    if (last < first) last = first;
    c.start = t - h + first;
    c.end = t - h + last + 1;
    c.dark = std::min(P.luma, Q.luma) < 1.5 * o_.blank_luma;
    return c;
  }

  // RMS difference of Q and P (128x72 luma) with P shifted by (dx, dy), over the overlap.
  static double ShiftRms(const Thumb& P, const Thumb& Q, int dx, int dy) {
    constexpr int W = kAnalysisWidth, H = kAnalysisHeight;
    int64_t sum = 0, n = 0;
    for (int y = std::max(0, -dy); y < std::min(H, H - dy); ++y) {
      const uint8_t* q = &Q.gray[y * W];
      const uint8_t* p = &P.gray[(y + dy) * W];
      int x0 = std::max(0, -dx), x1 = std::min(W, W - dx);
      for (int x = x0; x < x1; ++x) {
        int d = static_cast<int>(q[x]) - static_cast<int>(p[x + dx]);
        sum += d * d;
      }
      n += x1 - x0;
    }
    return n > 0 ? std::sqrt(static_cast<double>(sum) / n) : std::numeric_limits<double>::infinity();
  }

  // Camera motion test: the best RMS over global shifts of up to 8 px (coarse step 2, then refined) divided by
  // the unshifted RMS, at 128x72. Near 1 for a real change of content, well below 1 for a pan or tilt.
  static double ShiftedRms(const Thumb& P, const Thumb& Q) {
    constexpr int kShift = 8;
    double zero = ShiftRms(P, Q, 0, 0);
    if (zero <= 0) return 1.0;
    double best = zero;
    int bx = 0, by = 0;
    for (int dy = -kShift; dy <= kShift; dy += 2) {
      for (int dx = -kShift; dx <= kShift; dx += 2) {
        double r = ShiftRms(P, Q, dx, dy);
        if (r < best) best = r, bx = dx, by = dy;
      }
    }
    for (int dy = by - 1; dy <= by + 1; ++dy) {
      for (int dx = bx - 1; dx <= bx + 1; ++dx) {
        if (std::abs(dx) > kShift + 1 || std::abs(dy) > kShift + 1) continue;
        best = std::min(best, ShiftRms(P, Q, dx, dy));
      }
    }
    return best / zero;
  }

  GradualDetectorOptions o_;
  std::vector<int> halves_;
  int hmax_ = 2;
  std::deque<Thumb> frames_;
  int64_t last_index_ = -1, next_center_ = 0;
  bool run_active_ = false, finished_ = false;
  int64_t run_first_ = 0, run_last_ = 0;
  Candidate run_best_;
  int64_t blank_start_ = -1;
  std::vector<Transition> pending_;
};

// ---------------------------------------------------------------------------------------------------------
// TransNetV2 windows: 100 frames (25 of context each side), stride 50, middle 50 predictions kept; the first
// and last frames are repeated as padding.
class TransNetV2Detector : public ShotDetector {
 public:
  static constexpr int kW = 48, kH = 27, kFrame = kW * kH * 3;

  TransNetV2Detector(std::unique_ptr<ScriptModel> model, const TransNetOptions& o) : model_(std::move(model)), o_(o) {}

  absl::Status Push(int64_t index, const uint8_t* rgb) override {
    at::Tensor src = at::from_blob(const_cast<uint8_t*>(rgb), {1, kAnalysisHeight, kAnalysisWidth, 3}, at::kByte)
                         .permute({0, 3, 1, 2})
                         .to(at::kFloat);
    at::Tensor small = at::adaptive_avg_pool2d(src, {kH, kW}).round().clamp(0, 255).to(at::kByte);  // [1, 3, 27, 48]
    frames_.push_back(small.permute({0, 2, 3, 1}).contiguous()[0]);                                    // [27, 48, 3]
    ++count_;
    while (next_window_ + 75 <= count_) WFM_RETURN_IF_ERROR(RunWindow(false));
    return absl::OkStatus();
  }

  absl::Status Finish() override {
    while (next_window_ < count_) WFM_RETURN_IF_ERROR(RunWindow(true));
    EmitRuns(true);
    finished_ = true;
    return absl::OkStatus();
  }

  std::vector<Transition> TakeTransitions() override { return std::exchange(out_, {}); }
  int64_t frontier() const override {
    if (finished_) return kForever;
    return run_start_ >= 0 ? run_start_ : predicted_;
  }
  std::string name() const override { return "transnetv2"; }

 private:
  // frames_ holds frames [first_, count_).
  const at::Tensor& FrameAt(int64_t i) const {
    i = std::clamp<int64_t>(i, 0, count_ - 1);
    return frames_[i - first_];
  }

  absl::Status RunWindow(bool at_end) {
    (void)at_end;
    std::vector<at::Tensor> window;
    window.reserve(100);
    for (int64_t k = next_window_ - 25; k < next_window_ + 75; ++k) window.push_back(FrameAt(k));
    at::Tensor batch = at::stack(window).unsqueeze(0);  // [1, 100, 27, 48, 3] uint8
    WFM_ASSIGN_OR_RETURN(at::Tensor out, model_->RunTensor({batch}), "TransNetV2 ", model_->path());
    out = out.to(at::kFloat).reshape({-1});
    if (out.numel() < 100) {
      return absl::InvalidArgumentError(absl::StrCat("TransNetV2 model ", model_->path(), " returned ", out.numel(),
                                                     " values for a 100-frame window (expected [1, 100, 1])"));
    }
    out = out.slice(0, 0, 100);
    if (out.min().item<float>() < 0.f || out.max().item<float>() > 1.f) out = out.sigmoid();  // logits
    auto acc = out.accessor<float, 1>();
    for (int k = 25; k < 75 && next_window_ + (k - 25) < count_; ++k) {
      probs_.push_back(acc[k]);
    }
    next_window_ += 50;
    predicted_ = std::min<int64_t>(next_window_, count_);
    EmitRuns(false);
    // Keep the 25 frames of context the next window needs.
    while (first_ < next_window_ - 25 && !frames_.empty()) {
      frames_.pop_front();
      ++first_;
    }
    return absl::OkStatus();
  }

  // Transition frames are the runs with probability > threshold (cosmos-curate _get_scenes).
  void EmitRuns(bool at_end) {
    for (; scanned_ < static_cast<int64_t>(probs_.size()); ++scanned_) {
      bool on = probs_[scanned_] > o_.threshold;
      if (on && run_start_ < 0) {
        run_start_ = scanned_;
        run_score_ = 0;
      }
      if (on) run_score_ = std::max(run_score_, static_cast<double>(probs_[scanned_]));
      if (!on && run_start_ >= 0) {
        if (run_start_ > 0) out_.push_back(Transition{run_start_, scanned_, "learned", run_score_});
        run_start_ = -1;
      }
    }
    if (at_end && run_start_ >= 0) {
      if (run_start_ > 0) out_.push_back(Transition{run_start_, scanned_, "learned", run_score_});
      run_start_ = -1;
    }
  }

  std::unique_ptr<ScriptModel> model_;
  TransNetOptions o_;
  std::deque<at::Tensor> frames_;
  int64_t first_ = 0, count_ = 0, next_window_ = 0, predicted_ = 0, scanned_ = 0, run_start_ = -1;
  double run_score_ = 0;
  std::vector<float> probs_;
  bool finished_ = false;
  std::vector<Transition> out_;
};

// ---------------------------------------------------------------------------------------------------------
// Runs several detectors on the same frames and merges overlapping / adjacent transitions.
class MergedDetector : public ShotDetector {
 public:
  MergedDetector(std::vector<std::unique_ptr<ShotDetector>> parts, int merge_gap)
      : parts_(std::move(parts)), gap_(merge_gap) {}

  absl::Status Push(int64_t index, const uint8_t* rgb) override {
    for (auto& p : parts_) WFM_RETURN_IF_ERROR(p->Push(index, rgb), p->name(), " detector");
    Collect();
    return absl::OkStatus();
  }
  absl::Status Finish() override {
    for (auto& p : parts_) WFM_RETURN_IF_ERROR(p->Finish(), p->name(), " detector");
    Collect();
    return absl::OkStatus();
  }
  std::vector<Transition> TakeTransitions() override {
    int64_t sub = SubFrontier();
    std::vector<Transition> out;
    // Merge groups; a group is final once no transition can still start within the gap after it.
    while (!pending_.empty()) {
      Transition g = pending_.front();
      size_t n = 1;
      while (n < pending_.size() && pending_[n].start <= g.end + gap_) {
        const Transition& t = pending_[n];
        if (t.end > g.end) g.end = t.end;
        if (g.type == "cut" && t.type != "cut") g.type = t.type;
        g.score = std::max(g.score, t.score);
        ++n;
      }
      if (sub != kForever && g.end + gap_ >= sub) break;
      pending_.erase(pending_.begin(), pending_.begin() + n);
      out.push_back(g);
    }
    return out;
  }
  int64_t frontier() const override {
    int64_t f = SubFrontier();
    if (!pending_.empty()) f = std::min(f, pending_.front().start);
    return f;
  }
  std::string name() const override { return "merged"; }

 private:
  int64_t SubFrontier() const {
    int64_t f = kForever;
    for (const auto& p : parts_) f = std::min(f, p->frontier());
    return f;
  }
  void Collect() {
    bool added = false;
    for (auto& p : parts_) {
      for (auto& t : p->TakeTransitions()) {
        pending_.push_back(std::move(t));
        added = true;
      }
    }
    if (added) {
      std::stable_sort(pending_.begin(), pending_.end(),
                       [](const Transition& a, const Transition& b) { return a.start < b.start; });
    }
  }

  std::vector<std::unique_ptr<ShotDetector>> parts_;
  int gap_;
  std::vector<Transition> pending_;
};

}  // namespace

std::unique_ptr<ShotDetector> MakeContentDetector(const ContentDetectorOptions& options) {
  return std::make_unique<ContentDetector>(options);
}

std::unique_ptr<ShotDetector> MakeGradualDetector(const GradualDetectorOptions& options, double fps) {
  return std::make_unique<GradualDetector>(options, fps > 0 ? fps : 25.0);
}

absl::StatusOr<std::unique_ptr<ShotDetector>> MakeTransNetV2Detector(const TransNetOptions& options) {
  if (options.model_path.empty()) return absl::InvalidArgumentError("TransNetV2 detector needs a model file");
  WFM_ASSIGN_OR_RETURN(auto model, ScriptModel::Load(options.model_path, options.device));
  return std::unique_ptr<ShotDetector>(std::make_unique<TransNetV2Detector>(std::move(model), options));
}

absl::StatusOr<std::unique_ptr<ShotDetector>> MakeShotDetector(const ShotDetectorOptions& options, double fps) {
  std::string method = options.method;
  if (method == "auto") method = options.transnet.model_path.empty() ? "classic" : "transnetv2";
  std::vector<std::unique_ptr<ShotDetector>> parts;
  if (method == "classic" || method == "content" || method == "all") parts.push_back(MakeContentDetector(options.content));
  if (method == "classic" || method == "gradual" || method == "all") {
    parts.push_back(MakeGradualDetector(options.gradual, fps));
  }
  if (method == "transnetv2" || method == "all") {
    if (options.transnet.model_path.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("shot detector '", method, "' needs a TransNetV2 model file"));
    }
    WFM_ASSIGN_OR_RETURN(auto t, MakeTransNetV2Detector(options.transnet));
    parts.push_back(std::move(t));
  }
  if (parts.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("unknown shot detector '", options.method,
                                                   "' (auto, classic, content, gradual, transnetv2, all)"));
  }
  return std::unique_ptr<ShotDetector>(std::make_unique<MergedDetector>(std::move(parts), options.merge_gap));
}

std::vector<Shot> ShotsFromTransitions(const std::vector<Transition>& transitions, int64_t num_frames) {
  std::vector<Shot> shots;
  int64_t start = 0;
  for (const auto& t : transitions) {
    int64_t end = std::min(t.start, num_frames);
    if (end > start) shots.push_back({start, end});
    start = std::max(start, t.end);
  }
  if (num_frames > start) shots.push_back({start, num_frames});
  return shots;
}

at::Tensor ToAnalysisFrames(const at::Tensor& frames_thwc_u8) {
  at::Tensor x = frames_thwc_u8.permute({0, 3, 1, 2}).to(at::kFloat);           // [T, 3, H, W]
  x = at::adaptive_avg_pool2d(x, {kAnalysisHeight, kAnalysisWidth});             // [T, 3, 72, 128]
  return x.round().clamp(0, 255).to(at::kByte).permute({0, 2, 3, 1}).contiguous();  // [T, 72, 128, 3]
}

absl::StatusOr<ShotResult> DetectShotsInFrames(const at::Tensor& frames_thwc_u8, double fps,
                                               const ShotDetectorOptions& options) {
  if (frames_thwc_u8.dim() != 4 || frames_thwc_u8.size(3) != 3 || frames_thwc_u8.scalar_type() != at::kByte) {
    return absl::InvalidArgumentError("DetectShotsInFrames: expected uint8 [T, H, W, 3] frames");
  }
  WFM_ASSIGN_OR_RETURN(auto det, MakeShotDetector(options, fps));
  at::Tensor small = ToAnalysisFrames(frames_thwc_u8);
  ShotResult r;
  r.fps = fps;
  r.num_frames = small.size(0);
  for (int64_t i = 0; i < r.num_frames; ++i) {
    WFM_RETURN_IF_ERROR(det->Push(i, small[i].data_ptr<uint8_t>()));
    for (auto& t : det->TakeTransitions()) r.transitions.push_back(t);
  }
  WFM_RETURN_IF_ERROR(det->Finish());
  for (auto& t : det->TakeTransitions()) r.transitions.push_back(t);
  r.shots = ShotsFromTransitions(r.transitions, r.num_frames);
  return r;
}

absl::StatusOr<ShotResult> DetectShots(const std::string& path, const ShotDetectorOptions& options, int threads) {
  DecoderOptions dopt;
  dopt.threads = threads;
  WFM_ASSIGN_OR_RETURN(auto dec, VideoDecoder::Open(path, dopt));
  ShotResult r;
  r.fps = dec->info().fps.value();
  WFM_ASSIGN_OR_RETURN(auto det, MakeShotDetector(options, r.fps));
  std::vector<uint8_t> rgb(static_cast<size_t>(kPixels) * 3);
  while (true) {
    WFM_ASSIGN_OR_RETURN(bool more, dec->Next());
    if (!more) break;
    const DecodedFrame& f = dec->frame();
    WFM_RETURN_IF_ERROR(f.ToRgb(kAnalysisWidth, kAnalysisHeight, rgb.data()), path);
    WFM_RETURN_IF_ERROR(det->Push(f.index(), rgb.data()), path);
    for (auto& t : det->TakeTransitions()) r.transitions.push_back(t);
  }
  r.num_frames = dec->frames_decoded();
  if (r.num_frames == 0) return absl::DataLossError(absl::StrCat(path, ": no frames could be decoded"));
  WFM_RETURN_IF_ERROR(det->Finish());
  for (auto& t : det->TakeTransitions()) r.transitions.push_back(t);
  r.shots = ShotsFromTransitions(r.transitions, r.num_frames);
  return r;
}

nlohmann::json ShotsToJson(const ShotResult& result) {
  nlohmann::json j;
  j["fps"] = result.fps;
  j["num_frames"] = result.num_frames;
  j["shots"] = nlohmann::json::array();
  for (const auto& s : result.shots) j["shots"].push_back({s.start, s.end});
  j["transitions"] = nlohmann::json::array();
  for (const auto& t : result.transitions) {
    j["transitions"].push_back({{"start", t.start}, {"end", t.end}, {"type", t.type}, {"score", t.score}});
  }
  return j;
}

}  // namespace wfm::curation
