// Single-pass video analysis (see analysis.h): decode -> per-frame features -> shot detector -> streaming
// clip rules -> per-clip accumulators -> ClipRecords with scores, crop, hashes and filter decisions.
#include "wfm/curation/analysis.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <memory>

#include <ATen/ATen.h>

extern "C" {
#include <libavutil/mem.h>
#include <libavutil/sha.h>
}

#include "wfm/core/status.h"
#include "wfm/curation/decoder.h"

namespace wfm::curation {
namespace {

constexpr int kCell = 8;      // motion map resolution (H.264 / MPEG partitions are multiples of 8)
constexpr int kBlurCell = 16; // blur statistics cells at the 256-px-short-side gray
constexpr int kAW = kAnalysisWidth, kAH = kAnalysisHeight;

struct SampleData {
  bool has_mv = false, has_fallback = false;
  std::vector<float> motion;      // per kCell cell, [ch][cw]: |flow| / (W + H)
  std::vector<float> rows, cols;  // full-resolution mean luma per row / column
  std::vector<double> lap_sum, lap_sq;
  std::vector<int> lap_n;
  std::vector<uint8_t> gray;      // kAW x kAH
};

struct FrameRecord {
  int64_t index = 0;
  float luma = 0, luma_std = 0, diff = 0;  // diff: mean |gray - previous distinct gray|
  bool repeated = false;                    // a constant-frame-rate repeat (no new picture)
  bool key = false;                         // a keyframe (and not a repeat)
  int64_t pts = 0;
  std::shared_ptr<SampleData> sample;
  at::Tensor model_rgb;  // [mh, mw, 3] on model-sampled frames
};

struct Geometry {
  int W = 0, H = 0;        // source size
  int cw = 0, ch = 0;      // motion cells
  int bw = 0, bh = 0;      // blur gray size
  int bcw = 0, bch = 0;    // blur cells
  int mw = 0, mh = 0;      // model input size (0 = no models)
};

// Paints each 8x8 / 16x16 / 16x8 / 8x16 motion vector's |motion| / (W + H) over its block (later vectors
// overwrite earlier ones, like cosmos-curate's index_put).
void PaintMotion(const std::vector<MotionVector>& mvs, const Geometry& g, std::vector<float>* cells) {
  cells->assign(static_cast<size_t>(g.cw) * g.ch, 0.f);
  const float norm = 1.0f / static_cast<float>(g.W + g.H);
  for (const MotionVector& mv : mvs) {
    bool supported = (mv.w == 8 || mv.w == 16) && (mv.h == 8 || mv.h == 16);
    if (!supported || mv.motion_scale == 0) continue;
    float dx = static_cast<float>(mv.motion_x) / mv.motion_scale, dy = static_cast<float>(mv.motion_y) / mv.motion_scale;
    float mag = std::sqrt(dx * dx + dy * dy) * norm;
    int x0 = mv.dst_x - mv.w / 2, y0 = mv.dst_y - mv.h / 2;
    // Cells whose centre (8c + 4) lies inside [x0, x0 + w) x [y0, y0 + h).
    auto ceil_div = [](int a, int b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); };
    auto floor_div = [](int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); };
    int cx0 = std::max(0, ceil_div(x0 - kCell / 2, kCell)), cx1 = std::min(g.cw, floor_div(x0 + mv.w - 1 - kCell / 2, kCell) + 1);
    int cy0 = std::max(0, ceil_div(y0 - kCell / 2, kCell)), cy1 = std::min(g.ch, floor_div(y0 + mv.h - 1 - kCell / 2, kCell) + 1);
    for (int cy = cy0; cy < cy1; ++cy) {
      for (int cx = cx0; cx < cx1; ++cx) (*cells)[static_cast<size_t>(cy) * g.cw + cx] = mag;
    }
  }
}

// Fallback motion for codecs without vectors: exhaustive block matching (8x8 blocks, +-4 px) between two gray
// analysis frames, converted to source pixels per frame interval and painted on the motion cells.
void BlockMatchMotion(const uint8_t* cur, const uint8_t* prev, double frames_apart, const Geometry& g,
                      std::vector<float>* cells) {
  constexpr int kB = 8, kR = 4;
  const int nbx = kAW / kB, nby = kAH / kB;
  std::vector<float> block(static_cast<size_t>(nbx) * nby, 0.f);
  const double sx = static_cast<double>(g.W) / kAW, sy = static_cast<double>(g.H) / kAH;
  for (int by = 0; by < nby; ++by) {
    for (int bx = 0; bx < nbx; ++bx) {
      int best = std::numeric_limits<int>::max(), zero = 0, bdx = 0, bdy = 0;
      for (int dy = -kR; dy <= kR; ++dy) {
        for (int dx = -kR; dx <= kR; ++dx) {
          int x0 = bx * kB + dx, y0 = by * kB + dy;
          if (x0 < 0 || y0 < 0 || x0 + kB > kAW || y0 + kB > kAH) continue;
          int sad = 0;
          for (int y = 0; y < kB; ++y) {
            const uint8_t* a = cur + (by * kB + y) * kAW + bx * kB;
            const uint8_t* b = prev + (y0 + y) * kAW + x0;
            for (int x = 0; x < kB; ++x) sad += std::abs(static_cast<int>(a[x]) - static_cast<int>(b[x]));
          }
          if (dx == 0 && dy == 0) zero = sad;
          if (sad < best) {
            best = sad;
            bdx = dx;
            bdy = dy;
          }
        }
      }
      // Prefer "no motion" unless a shift is clearly better (noise, flat areas).
      if (zero <= best + best / 16 + kB * kB) bdx = bdy = 0;
      double mx = bdx * sx, my = bdy * sy;
      block[static_cast<size_t>(by) * nbx + bx] =
          static_cast<float>(std::sqrt(mx * mx + my * my) / std::max(frames_apart, 1.0) / (g.W + g.H));
    }
  }
  cells->assign(static_cast<size_t>(g.cw) * g.ch, 0.f);
  for (int cy = 0; cy < g.ch; ++cy) {
    int by = std::min(nby - 1, static_cast<int>(((cy + 0.5) * kCell) / sy) / kB);
    for (int cx = 0; cx < g.cw; ++cx) {
      int bx = std::min(nbx - 1, static_cast<int>(((cx + 0.5) * kCell) / sx) / kB);
      (*cells)[static_cast<size_t>(cy) * g.cw + cx] = block[static_cast<size_t>(by) * nbx + bx];
    }
  }
}

void RgbToGray(const uint8_t* rgb, uint8_t* gray, int n) {
  for (int i = 0; i < n; ++i) {
    gray[i] = static_cast<uint8_t>((299 * rgb[3 * i] + 587 * rgb[3 * i + 1] + 114 * rgb[3 * i + 2] + 500) / 1000);
  }
}

// Laplacian (3x3, OpenCV ksize=1 aperture) statistics per kBlurCell cell.
void LaplacianCells(const std::vector<uint8_t>& gray, const Geometry& g, SampleData* s) {
  s->lap_sum.assign(static_cast<size_t>(g.bcw) * g.bch, 0.0);
  s->lap_sq.assign(s->lap_sum.size(), 0.0);
  s->lap_n.assign(s->lap_sum.size(), 0);
  for (int y = 1; y + 1 < g.bh; ++y) {
    const uint8_t* r = &gray[static_cast<size_t>(y) * g.bw];
    int cy = y / kBlurCell;
    for (int x = 1; x + 1 < g.bw; ++x) {
      int lap = r[x - 1] + r[x + 1] + r[x - g.bw] + r[x + g.bw] - 4 * r[x];
      size_t c = static_cast<size_t>(cy) * g.bcw + x / kBlurCell;
      s->lap_sum[c] += lap;
      s->lap_sq[c] += static_cast<double>(lap) * lap;
      s->lap_n[c] += 1;
    }
  }
}

// Accumulates one clip's frames.
class ClipAccumulator {
 public:
  ClipAccumulator(const Geometry& g) : g_(g) {
    motion_mv_.assign(static_cast<size_t>(g.cw) * g.ch, 0.0);
    motion_fb_.assign(motion_mv_.size(), 0.0);
    row_max_.assign(g.H, 0.f);
    col_max_.assign(g.W, 0.f);
    lap_sum_.assign(static_cast<size_t>(g.bcw) * g.bch, 0.0);
    lap_sq_.assign(lap_sum_.size(), 0.0);
    lap_n_.assign(lap_sum_.size(), 0);
  }

  void Add(const FrameRecord& r) {
    if (frames_ == 0) {
      start_pts_ = r.pts;
      start_key_ = r.key;
    }
    ++frames_;
    luma_ += r.luma;
    std_ += r.luma_std;
    if (!r.repeated) {
      if (distinct_ > 0) diff_ += r.diff;
      ++distinct_;
    }
    if (r.model_rgb.defined()) model_frames_.push_back(r.model_rgb);
    if (!r.sample) return;
    const SampleData& s = *r.sample;
    ++samples_;
    if (s.has_mv) {
      ++mv_frames_;
      for (size_t i = 0; i < s.motion.size(); ++i) motion_mv_[i] += s.motion[i];
    } else if (s.has_fallback) {
      ++fb_frames_;
      for (size_t i = 0; i < s.motion.size(); ++i) motion_fb_[i] += s.motion[i];
    }
    for (int y = 0; y < g_.H; ++y) row_max_[y] = std::max(row_max_[y], s.rows[y]);
    for (int x = 0; x < g_.W; ++x) col_max_[x] = std::max(col_max_[x], s.cols[x]);
    for (size_t i = 0; i < lap_sum_.size(); ++i) {
      lap_sum_[i] += s.lap_sum[i];
      lap_sq_[i] += s.lap_sq[i];
      lap_n_[i] += s.lap_n[i];
    }
    hash_frames_.push_back({r.index, s.gray});
  }

  int64_t frames() const { return frames_; }
  int64_t start_pts() const { return start_pts_; }
  bool start_key() const { return start_key_; }

  void Finalize(ClipRecord* c, const AnalysisOptions& o) {
    c->crop = o.border.enabled ? BorderCrop(row_max_, col_max_, o.border) : CropBox{0, 0, g_.W, g_.H};
    if (samples_ == 0) c->crop = CropBox{0, 0, g_.W, g_.H};
    const CropBox& b = c->crop;
    c->brightness = frames_ ? luma_ / frames_ : 0;
    c->contrast = frames_ ? std_ / frames_ : 0;
    c->frame_diff = distinct_ > 1 ? diff_ / (distinct_ - 1) : 0;
    // Motion inside the crop.
    const std::vector<double>* sum = mv_frames_ > 0 ? &motion_mv_ : fb_frames_ > 0 ? &motion_fb_ : nullptr;
    int64_t n = mv_frames_ > 0 ? mv_frames_ : fb_frames_;
    if (sum) {
      std::vector<float> map(static_cast<size_t>(b.w) * b.h);
      for (int y = 0; y < b.h; ++y) {
        const double* row = &(*sum)[static_cast<size_t>((b.y + y) / kCell) * g_.cw];
        for (int x = 0; x < b.w; ++x) map[static_cast<size_t>(y) * b.w + x] = static_cast<float>(row[(b.x + x) / kCell] / n);
      }
      double gm = 0, pm = 0;
      MotionScoresFromMap(map, b.w, b.h, &gm, &pm);
      c->motion_global_mean = gm;
      c->motion_per_patch_min_256 = pm;
      c->motion_method = mv_frames_ > 0 ? "motion_vectors" : "frame_diff";
    }
    // Blur: pooled variance of the Laplacian over the cells inside the crop.
    if (samples_ > 0 && g_.bw > 2) {
      double sx = static_cast<double>(g_.bw) / g_.W, sy = static_cast<double>(g_.bh) / g_.H;
      double s = 0, s2 = 0;
      int64_t cnt = 0;
      for (int cy = 0; cy < g_.bch; ++cy) {
        for (int cx = 0; cx < g_.bcw; ++cx) {
          double x0 = cx * kBlurCell / sx, y0 = cy * kBlurCell / sy;
          double x1 = (cx + 1) * kBlurCell / sx, y1 = (cy + 1) * kBlurCell / sy;
          if (x0 < b.x || y0 < b.y || x1 > b.x + b.w + kBlurCell / sx || y1 > b.y + b.h + kBlurCell / sy) continue;
          size_t i = static_cast<size_t>(cy) * g_.bcw + cx;
          s += lap_sum_[i];
          s2 += lap_sq_[i];
          cnt += lap_n_[i];
        }
      }
      if (cnt > 0) c->blur = s2 / cnt - (s / cnt) * (s / cnt);
    }
    // Perceptual hashes of evenly spaced sampled frames, cropped to the content box.
    if (!hash_frames_.empty() && o.hash_frames > 0) {
      int hx = static_cast<int>(std::floor(b.x * static_cast<double>(kAW) / g_.W));
      int hy = static_cast<int>(std::floor(b.y * static_cast<double>(kAH) / g_.H));
      int hw = std::max(1, static_cast<int>(std::ceil(b.w * static_cast<double>(kAW) / g_.W)));
      int hh = std::max(1, static_cast<int>(std::ceil(b.h * static_cast<double>(kAH) / g_.H)));
      hw = std::min(hw, kAW - hx);
      hh = std::min(hh, kAH - hy);
      for (int k = 0; k < o.hash_frames; ++k) {
        double pos = c->start_frame + (k + 0.5) / o.hash_frames * c->length();
        const auto* best = &hash_frames_.front();
        for (const auto& h : hash_frames_) {
          if (std::abs(h.first - pos) < std::abs(best->first - pos)) best = &h;
        }
        c->phash.push_back(PerceptualHash(best->second.data() + hy * kAW + hx, hw, hh, kAW));
      }
    }
  }

  // Up to `k` evenly spaced model frames, uint8 [k, mh, mw, 3].
  at::Tensor ModelFrames(int k) const {
    if (model_frames_.empty()) return at::Tensor();
    std::vector<at::Tensor> pick;
    int n = static_cast<int>(model_frames_.size());
    int m = std::min(k, n);
    for (int i = 0; i < m; ++i) pick.push_back(model_frames_[static_cast<size_t>((i + 0.5) * n / m)]);
    return at::stack(pick);
  }

 private:
  Geometry g_;
  int64_t start_pts_ = 0;
  bool start_key_ = false;
  int64_t frames_ = 0, distinct_ = 0, samples_ = 0, mv_frames_ = 0, fb_frames_ = 0;
  double luma_ = 0, std_ = 0, diff_ = 0;
  std::vector<double> motion_mv_, motion_fb_;
  std::vector<float> row_max_, col_max_;
  std::vector<double> lap_sum_, lap_sq_;
  std::vector<int64_t> lap_n_;
  std::vector<std::pair<int64_t, std::vector<uint8_t>>> hash_frames_;
  std::vector<at::Tensor> model_frames_;
};

void ApplyFilters(ClipRecord* c, const FilterOptions& f) {
  auto reject = [&](const char* why) { c->filter_reasons.push_back(why); };
  if (f.motion_filter == "enable" && c->motion_global_mean) {
    if (*c->motion_global_mean < f.motion_global_mean_threshold ||
        *c->motion_per_patch_min_256 < f.motion_per_patch_min_256_threshold) {
      reject("motion");
    }
  }
  if (f.static_threshold > 0 && c->frame_diff < f.static_threshold) reject("static");
  if (f.blank_threshold > 0 && c->contrast < f.blank_threshold) reject("blank");
  if (f.min_brightness > 0 && c->brightness < f.min_brightness) reject("dark");
  if (f.max_brightness > 0 && f.max_brightness < 255 && c->brightness > f.max_brightness) reject("bright");
  if (f.blur_threshold > 0 && c->blur && *c->blur < f.blur_threshold) reject("blur");
  if ((f.min_width > 0 && c->crop.w < f.min_width) || (f.min_height > 0 && c->crop.h < f.min_height)) reject("resolution");
  double aspect = c->crop.h > 0 ? static_cast<double>(c->crop.w) / c->crop.h : 0;
  if ((f.min_aspect > 0 && aspect < f.min_aspect) || (f.max_aspect > 0 && aspect > f.max_aspect)) reject("aspect");
  double dur = c->end_s - c->start_s;
  if ((f.min_duration_s > 0 && dur < f.min_duration_s) || (f.max_duration_s > 0 && dur > f.max_duration_s)) {
    reject("duration");
  }
  if (c->aesthetic_score && *c->aesthetic_score < f.aesthetic_threshold) reject("aesthetic");
  c->kept = c->filter_reasons.empty();
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
std::string Uuid5Url(const std::string& name) {
  // RFC 4122 NAMESPACE_URL 6ba7b811-9dad-11d1-80b4-00c04fd430c8.
  static const uint8_t kNs[16] = {0x6b, 0xa7, 0xb8, 0x11, 0x9d, 0xad, 0x11, 0xd1,
                                  0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8};
  uint8_t digest[20];
  struct AVSHA* sha = av_sha_alloc();
  av_sha_init(sha, 160);
  av_sha_update(sha, kNs, 16);
  av_sha_update(sha, reinterpret_cast<const uint8_t*>(name.data()), static_cast<unsigned>(name.size()));
  av_sha_final(sha, digest);
  av_free(sha);
  digest[6] = (digest[6] & 0x0f) | 0x50;
  digest[8] = (digest[8] & 0x3f) | 0x80;
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 15];
  }
  return out;
}

std::string SpanUuid(const std::string& source_video, int64_t start_frame, int64_t end_frame) {
  return Uuid5Url(absl::StrCat(source_video, "_", start_frame, "_", end_frame));
}

void MotionScoresFromMap(const std::vector<float>& map, int w, int h, double* global_mean, double* per_patch_min_256) {
  double sum = 0;
  for (float v : map) sum += v;
  *global_mean = map.empty() ? 0.0 : sum / static_cast<double>(map.size());
  // cv2.resize(map, None, fx=1/256, fy=1/256), INTER_LINEAR, then min.
  int ow = std::max(1, static_cast<int>(std::lround(w / 256.0)));
  int oh = std::max(1, static_cast<int>(std::lround(h / 256.0)));
  double best = std::numeric_limits<double>::infinity();
  for (int oy = 0; oy < oh; ++oy) {
    double fy = (oy + 0.5) * 256.0 - 0.5;
    int sy = static_cast<int>(std::floor(fy));
    fy -= sy;
    if (sy < 0) fy = 0, sy = 0;
    if (sy >= h - 1) fy = 0, sy = h - 1;
    int sy1 = std::min(sy + 1, h - 1);
    for (int ox = 0; ox < ow; ++ox) {
      double fx = (ox + 0.5) * 256.0 - 0.5;
      int sx = static_cast<int>(std::floor(fx));
      fx -= sx;
      if (sx < 0) fx = 0, sx = 0;
      if (sx >= w - 1) fx = 0, sx = w - 1;
      int sx1 = std::min(sx + 1, w - 1);
      auto at = [&](int y, int x) { return static_cast<double>(map[static_cast<size_t>(y) * w + x]); };
      double v = (1 - fy) * ((1 - fx) * at(sy, sx) + fx * at(sy, sx1)) + fy * ((1 - fx) * at(sy1, sx) + fx * at(sy1, sx1));
      best = std::min(best, v);
    }
  }
  *per_patch_min_256 = std::isfinite(best) ? best : 0.0;
}

uint64_t PerceptualHash(const uint8_t* gray, int w, int h, int stride) {
  // Area-resize to 32x32.
  constexpr int kN = 32;
  double img[kN][kN];
  for (int oy = 0; oy < kN; ++oy) {
    double y0 = oy * static_cast<double>(h) / kN, y1 = (oy + 1) * static_cast<double>(h) / kN;
    for (int ox = 0; ox < kN; ++ox) {
      double x0 = ox * static_cast<double>(w) / kN, x1 = (ox + 1) * static_cast<double>(w) / kN;
      double acc = 0, area = 0;
      for (int y = static_cast<int>(y0); y < std::min(h, static_cast<int>(std::ceil(y1))); ++y) {
        double wy = std::min<double>(y + 1, y1) - std::max<double>(y, y0);
        if (wy <= 0) continue;
        for (int x = static_cast<int>(x0); x < std::min(w, static_cast<int>(std::ceil(x1))); ++x) {
          double wx = std::min<double>(x + 1, x1) - std::max<double>(x, x0);
          if (wx <= 0) continue;
          acc += wx * wy * gray[static_cast<size_t>(y) * stride + x];
          area += wx * wy;
        }
      }
      img[oy][ox] = area > 0 ? acc / area : 0;
    }
  }
  // Unnormalised DCT-II along columns then rows (scipy.fftpack.dct), keep the 8x8 low frequencies.
  static double cosines[8][kN];
  static bool init = [] {
    for (int k = 0; k < 8; ++k)
      for (int n = 0; n < kN; ++n) cosines[k][n] = 2.0 * std::cos(M_PI * k * (2 * n + 1) / (2.0 * kN));
    return true;
  }();
  (void)init;
  double tmp[8][kN];
  for (int k = 0; k < 8; ++k) {
    for (int x = 0; x < kN; ++x) {
      double s = 0;
      for (int y = 0; y < kN; ++y) s += cosines[k][y] * img[y][x];
      tmp[k][x] = s;
    }
  }
  double low[64];
  for (int k = 0; k < 8; ++k) {
    for (int l = 0; l < 8; ++l) {
      double s = 0;
      for (int x = 0; x < kN; ++x) s += cosines[l][x] * tmp[k][x];
      low[k * 8 + l] = s;
    }
  }
  double sorted[64];
  std::copy(low, low + 64, sorted);
  std::sort(sorted, sorted + 64);
  double median = 0.5 * (sorted[31] + sorted[32]);
  uint64_t bits = 0;
  for (int i = 0; i < 64; ++i) {
    if (low[i] > median) bits |= uint64_t{1} << (63 - i);
  }
  return bits;
}

CropBox BorderCrop(const std::vector<float>& row_max, const std::vector<float>& col_max, const BorderOptions& o) {
  const int H = static_cast<int>(row_max.size()), W = static_cast<int>(col_max.size());
  CropBox full{0, 0, W, H};
  auto span = [&](const std::vector<float>& v, int n, int* lo, int* hi) {
    *lo = 0;
    while (*lo < n && v[*lo] <= o.limit) ++*lo;
    *hi = n - 1;
    while (*hi >= *lo && v[*hi] <= o.limit) --*hi;
    return *lo <= *hi;
  };
  int top, bottom, left, right;
  if (!span(row_max, H, &top, &bottom) || !span(col_max, W, &left, &right)) return full;
  // Letterbox / pillarbox bars are symmetric; a one-sided dark band is content (night sky, shadow).
  auto symmetric = [&](int a, int b, int n) { return std::abs(a - b) <= std::max(4.0, o.max_asymmetry * n); };
  if (!symmetric(top, H - 1 - bottom, H)) top = 0, bottom = H - 1;
  if (!symmetric(left, W - 1 - right, W)) left = 0, right = W - 1;
  CropBox b;
  b.x = left & ~1;
  b.y = top & ~1;
  b.w = (right + 1 - b.x) & ~1;
  b.h = (bottom + 1 - b.y) & ~1;
  if (b.w < 16 || b.h < 16) return full;
  return b;
}

// ---------------------------------------------------------------------------------------------------------
absl::StatusOr<VideoAnalysis> AnalyzeVideo(const std::string& path, const AnalysisOptions& o) {
  DecoderOptions dopt;
  dopt.threads = o.decode_threads;
  dopt.decode = o.decode;
  dopt.gpu = o.gpu;
  dopt.export_motion_vectors = o.filters.motion_filter != "disable";
  WFM_ASSIGN_OR_RETURN(auto dec, VideoDecoder::Open(path, dopt));
  const VideoInfo& info = dec->info();
  const double fps = info.fps.value() > 0 ? info.fps.value() : 25.0;

  VideoAnalysis out;
  VideoRecord& v = out.video;
  v.source_video = path;
  v.fps = fps;
  v.width = info.width;
  v.height = info.height;
  v.codec = info.codec;

  Geometry g;
  g.W = info.width;
  g.H = info.height;
  g.cw = (g.W + kCell - 1) / kCell;
  g.ch = (g.H + kCell - 1) / kCell;
  double bscale = std::min(1.0, 256.0 / std::max(1, std::min(g.W, g.H)));
  g.bw = std::max(3, static_cast<int>(std::lround(g.W * bscale)));
  g.bh = std::max(3, static_cast<int>(std::lround(g.H * bscale)));
  g.bcw = (g.bw + kBlurCell - 1) / kBlurCell;
  g.bch = (g.bh + kBlurCell - 1) / kBlurCell;
  const bool models = o.embedder || o.scorer || o.captioner;
  if (models) {
    const ClipEmbedder* e = o.embedder;
    g.mw = e ? e->width() : o.scorer ? o.scorer->width() : o.captioner->width();
    g.mh = e ? e->height() : o.scorer ? o.scorer->height() : o.captioner->height();
  }
  const int64_t sample_step = std::max<int64_t>(1, std::llround(fps / std::max(o.sample_fps, 1e-3)));
  const int64_t model_step = std::max<int64_t>(1, std::llround(fps / std::max(o.model_fps, 1e-3)));

  SidecarCaptions sidecar;
  if (o.sidecar_captions) {
    WFM_ASSIGN_OR_RETURN(sidecar, SidecarCaptions::Load(path));
  }

  WFM_ASSIGN_OR_RETURN(auto detector, MakeShotDetector(o.shots, fps));
  std::deque<FrameRecord> records;
  std::deque<size_t> awaiting_end;  // out.clips whose first frame after the clip is not decoded yet
  std::unique_ptr<ClipAccumulator> acc;
  absl::Status clip_status;

  auto finalize = [&](const ClipSpan& span) -> absl::Status {
    ClipRecord c;
    c.start_pts = acc->start_pts();
    c.start_key = acc->start_key();
    // The frame after the clip: the next one to be released, or one not decoded yet (filled in when it is; if
    // the stream ends first, the clip runs to the end of the stream).
    c.end_pts = ClipRecord::kEndOfStream;
    c.end_key = true;
    bool end_known = !records.empty() && records.front().index == span.end;
    if (end_known) {
      c.end_pts = records.front().pts;
      c.end_key = records.front().key;
    }
    c.source_video = path;
    c.start_frame = span.start;
    c.end_frame = span.end;
    c.span_uuid = SpanUuid(path, span.start, span.end);
    c.key = c.span_uuid;
    c.start_s = span.start / fps;
    c.end_s = span.end / fps;
    c.width_source = g.W;
    c.height_source = g.H;
    c.framerate_source = fps;
    acc->Finalize(&c, o);
    at::Tensor mf = models ? acc->ModelFrames(o.model_frames) : at::Tensor();
    if (o.scorer && mf.defined()) {
      auto s = o.scorer->Score(mf);
      if (s.ok()) c.aesthetic_score = *s; else c.errors.push_back(absl::StrCat("aesthetic: ", s.status().message()));
    }
    if (o.embedder && mf.defined()) {
      auto e = o.embedder->Embed(mf);
      if (e.ok()) c.embedding = std::move(*e); else c.errors.push_back(absl::StrCat("embedding: ", e.status().message()));
    }
    c.caption_source = "none";
    if (sidecar.found()) {
      c.caption = sidecar.For(c.start_s, c.end_s);
      if (!c.caption.empty()) c.caption_source = "sidecar:" + sidecar.source();
    }
    if (c.caption.empty() && o.captioner && mf.defined()) {
      auto cap = o.captioner->Caption(mf);
      if (cap.ok()) {
        c.caption = *cap;
        c.caption_source = "model:" + o.captioner->name();
      } else {
        c.errors.push_back(absl::StrCat("caption: ", cap.status().message()));
      }
    }
    ApplyFilters(&c, o.filters);
    if (!end_known) awaiting_end.push_back(out.clips.size());
    out.clips.push_back(std::move(c));
    return absl::OkStatus();
  };

  ClipSegmenter::Callbacks cb;
  cb.on_open = [&](int64_t) { acc = std::make_unique<ClipAccumulator>(g); };
  cb.on_frame = [&](int64_t f, bool in_clip) {
    if (in_clip && acc && !records.empty() && records.front().index == f) acc->Add(records.front());
    if (!records.empty() && records.front().index == f) records.pop_front();
  };
  cb.on_close = [&](const ClipSpan& span, bool keep) {
    if (keep && acc && clip_status.ok()) clip_status = finalize(span);
    acc.reset();
  };
  ClipSegmenter segmenter(o.clips, fps, cb);

  std::vector<uint8_t> rgb(static_cast<size_t>(kAW) * kAH * 3), gray(static_cast<size_t>(kAW) * kAH);
  std::vector<uint8_t> last_distinct(gray.size()), prev_distinct(gray.size());
  std::vector<uint8_t> blur_gray(static_cast<size_t>(g.bw) * g.bh);
  int64_t last_distinct_index = -1, prev_distinct_index = -1;
  bool have_prev = false;

  while (true) {
    WFM_ASSIGN_OR_RETURN(bool more, dec->Next());
    if (!more) break;
    const DecodedFrame& f = dec->frame();
    const int64_t i = f.index();
    WFM_RETURN_IF_ERROR(f.ToRgb(kAW, kAH, rgb.data()));
    RgbToGray(rgb.data(), gray.data(), kAW * kAH);
    FrameRecord r;
    r.index = i;
    double s = 0, s2 = 0, d = 0;
    for (size_t k = 0; k < gray.size(); ++k) {
      double p = gray[k];
      s += p;
      s2 += p * p;
      if (have_prev) d += std::abs(p - last_distinct[k]);
    }
    const double n = static_cast<double>(gray.size());
    r.luma = static_cast<float>(s / n);
    r.luma_std = static_cast<float>(std::sqrt(std::max(0.0, s2 / n - (s / n) * (s / n))));
    r.diff = static_cast<float>(d / n);
    r.repeated = f.repeated();
    r.key = f.key_frame() && !f.repeated();
    r.pts = f.pts();
    if (!f.repeated()) {
      std::swap(prev_distinct, last_distinct);
      prev_distinct_index = last_distinct_index;
      last_distinct = gray;
      last_distinct_index = i;
    }
    if (i % sample_step == 0) {
      auto sd = std::make_shared<SampleData>();
      // Motion: the codec's vectors, else block matching between the two latest distinct frames.
      if (dopt.export_motion_vectors && f.has_motion_vectors()) {
        PaintMotion(f.MotionVectors(), g, &sd->motion);
        sd->has_mv = true;
      } else if (dopt.export_motion_vectors && prev_distinct_index >= 0) {
        BlockMatchMotion(last_distinct.data(), prev_distinct.data(),
                         static_cast<double>(last_distinct_index - prev_distinct_index), g, &sd->motion);
        sd->has_fallback = true;
      }
      // Border profiles on the full-resolution luma.
      const uint8_t* y;
      int stride;
      WFM_RETURN_IF_ERROR(f.Luma(&y, &stride));
      sd->rows.assign(g.H, 0.f);
      std::vector<uint32_t> colsum(g.W, 0);
      for (int yy = 0; yy < g.H; ++yy) {
        const uint8_t* row = y + static_cast<size_t>(yy) * stride;
        uint32_t rs = 0;
        for (int xx = 0; xx < g.W; ++xx) {
          rs += row[xx];
          colsum[xx] += row[xx];
        }
        sd->rows[yy] = static_cast<float>(rs) / g.W;
      }
      sd->cols.resize(g.W);
      for (int xx = 0; xx < g.W; ++xx) sd->cols[xx] = static_cast<float>(colsum[xx]) / g.H;
      WFM_RETURN_IF_ERROR(f.ToGray(g.bw, g.bh, blur_gray.data()));
      LaplacianCells(blur_gray, g, sd.get());
      sd->gray = gray;
      r.sample = std::move(sd);
    }
    if (models && i % model_step == 0) {
      at::Tensor t = at::empty({g.mh, g.mw, 3}, at::kByte);
      WFM_RETURN_IF_ERROR(f.ToRgb(g.mw, g.mh, t.data_ptr<uint8_t>()));
      r.model_rgb = t;
    }
    have_prev = true;
    while (!awaiting_end.empty() && out.clips[awaiting_end.front()].end_frame <= r.index) {
      ClipRecord& c = out.clips[awaiting_end.front()];
      if (c.end_frame == r.index) {
        c.end_pts = r.pts;
        c.end_key = r.key;
      }
      awaiting_end.pop_front();
    }
    records.push_back(std::move(r));

    WFM_RETURN_IF_ERROR(detector->Push(i, rgb.data()), path);
    auto ts = detector->TakeTransitions();
    v.transitions.insert(v.transitions.end(), ts.begin(), ts.end());
    segmenter.AddTransitions(ts);
    segmenter.SetFrontier(detector->frontier());
    segmenter.Push(i);
    segmenter.Release();
    WFM_RETURN_IF_ERROR(clip_status, path);
    out.peak_pending_frames = std::max<int64_t>(out.peak_pending_frames, static_cast<int64_t>(records.size()));
  }
  const int64_t num_frames = dec->frames_decoded();
  v.num_frames = num_frames;
  v.decode_errors = dec->decode_errors();
  v.duration_s = num_frames / fps;
  if (num_frames == 0) return absl::DataLossError(absl::StrCat(path, ": no frames could be decoded"));
  if (dec->read_error()) {
    return absl::DataLossError(absl::StrCat(path, ": read error after ", num_frames, " frames (",
                                            dec->read_error_message(), ")"));
  }
  if (dec->ends_corrupt()) {
    return absl::DataLossError(absl::StrCat(path, ": truncated or corrupt at the end (", dec->corrupt_packets(),
                                            " corrupt packets, ", dec->corrupt_frames(), " corrupt frames)"));
  }
  // Truncated files: far fewer frames than the container announces.
  if (info.num_frames > 0 && num_frames + std::max<int64_t>(2, std::llround(fps)) < info.num_frames * 9 / 10) {
    return absl::DataLossError(absl::StrCat(path, ": truncated or corrupt: decoded ", num_frames, " of ",
                                            info.num_frames, " frames"));
  }
  WFM_RETURN_IF_ERROR(detector->Finish(), path);
  auto ts = detector->TakeTransitions();
  v.transitions.insert(v.transitions.end(), ts.begin(), ts.end());
  segmenter.AddTransitions(ts);
  segmenter.Finish(num_frames);
  WFM_RETURN_IF_ERROR(clip_status, path);
  v.shots = ShotsFromTransitions(v.transitions, num_frames);
  for (const auto& c : out.clips) v.clips.push_back(c.span_uuid);
  return out;
}

// ---------------------------------------------------------------------------------------------------------
namespace {
std::string HashHex(uint64_t h) { return absl::StrFormat("%016x", h); }
uint64_t HexHash(const std::string& s) { return std::stoull(s, nullptr, 16); }
template <typename T>
void GetOpt(const nlohmann::json& j, const char* k, std::optional<T>* out) {
  if (j.contains(k) && !j[k].is_null()) *out = j[k].get<T>();
}
}  // namespace

nlohmann::json ClipRecord::ToJson(bool with_embedding) const {
  nlohmann::json j;
  j["span_uuid"] = span_uuid;
  j["source_video"] = source_video;
  j["duration_span"] = {start_s, end_s};
  j["start_frame"] = start_frame;
  j["end_frame"] = end_frame;
  j["width_source"] = width_source;
  j["height_source"] = height_source;
  j["framerate_source"] = framerate_source;
  j["width"] = width;
  j["height"] = height;
  j["framerate"] = framerate;
  j["num_frames"] = num_frames;
  j["video_codec"] = video_codec;
  j["num_bytes"] = num_bytes;
  j["crop"] = {{"x", crop.x}, {"y", crop.y}, {"w", crop.w}, {"h", crop.h}};
  if (motion_global_mean) {
    j["motion_score"] = {{"global_mean", *motion_global_mean}, {"per_patch_min_256", *motion_per_patch_min_256},
                         {"method", motion_method}};
  } else {
    j["motion_score"] = nullptr;
  }
  j["aesthetic_score"] = aesthetic_score ? nlohmann::json(*aesthetic_score) : nlohmann::json(nullptr);
  j["scores"] = {{"brightness", brightness}, {"contrast", contrast}, {"frame_diff", frame_diff},
                 {"blur", blur ? nlohmann::json(*blur) : nlohmann::json(nullptr)}};
  nlohmann::json ph = nlohmann::json::array();
  for (uint64_t h : phash) ph.push_back(HashHex(h));
  j["phash"] = ph;
  j["windows"] = nlohmann::json::array({{{"start_frame", 0}, {"end_frame", length()}, {"caption", caption}}});
  j["has_caption"] = !caption.empty();
  j["caption_source"] = caption_source;
  j["valid"] = kept && num_bytes > 0;
  j["kept"] = kept;
  j["filter_reasons"] = filter_reasons;
  j["duplicate_of"] = duplicate_of.empty() ? nlohmann::json(nullptr) : nlohmann::json(duplicate_of);
  j["errors"] = errors;
  j["shard"] = shard.empty() ? nlohmann::json(nullptr) : nlohmann::json(shard);
  j["key"] = key;
  j["stream_copied"] = stream_copied;
  j["stream_copy_declined"] = stream_copy_declined.empty() ? nlohmann::json(nullptr) : nlohmann::json(stream_copy_declined);
  j["keyframes"] = {{"start_pts", start_pts},
                    {"end_pts", end_pts == kEndOfStream ? nlohmann::json(nullptr) : nlohmann::json(end_pts)},
                    {"start_key", start_key},
                    {"end_key", end_key}};
  if (with_embedding && !embedding.empty()) j["embedding"] = embedding;
  return j;
}

ClipRecord ClipRecord::FromJson(const nlohmann::json& j) {
  ClipRecord c;
  c.span_uuid = j.value("span_uuid", "");
  c.source_video = j.value("source_video", "");
  if (j.contains("duration_span") && j["duration_span"].size() == 2) {
    c.start_s = j["duration_span"][0].get<double>();
    c.end_s = j["duration_span"][1].get<double>();
  }
  c.start_frame = j.value("start_frame", int64_t{0});
  c.end_frame = j.value("end_frame", int64_t{0});
  c.width_source = j.value("width_source", 0);
  c.height_source = j.value("height_source", 0);
  c.framerate_source = j.value("framerate_source", 0.0);
  c.width = j.value("width", 0);
  c.height = j.value("height", 0);
  c.framerate = j.value("framerate", 0.0);
  c.num_frames = j.value("num_frames", int64_t{0});
  c.video_codec = j.value("video_codec", "");
  c.num_bytes = j.value("num_bytes", int64_t{0});
  if (j.contains("crop") && j["crop"].is_object()) {
    c.crop = CropBox{j["crop"].value("x", 0), j["crop"].value("y", 0), j["crop"].value("w", 0), j["crop"].value("h", 0)};
  }
  if (j.contains("motion_score") && j["motion_score"].is_object()) {
    c.motion_global_mean = j["motion_score"].value("global_mean", 0.0);
    c.motion_per_patch_min_256 = j["motion_score"].value("per_patch_min_256", 0.0);
    c.motion_method = j["motion_score"].value("method", "");
  }
  GetOpt(j, "aesthetic_score", &c.aesthetic_score);
  if (j.contains("scores")) {
    const auto& s = j["scores"];
    c.brightness = s.value("brightness", 0.0);
    c.contrast = s.value("contrast", 0.0);
    c.frame_diff = s.value("frame_diff", 0.0);
    GetOpt(s, "blur", &c.blur);
  }
  if (j.contains("phash")) {
    for (const auto& h : j["phash"]) c.phash.push_back(HexHash(h.get<std::string>()));
  }
  if (j.contains("embedding")) c.embedding = j["embedding"].get<std::vector<float>>();
  if (j.contains("windows") && !j["windows"].empty()) c.caption = j["windows"][0].value("caption", "");
  c.caption_source = j.value("caption_source", "none");
  c.kept = j.value("kept", true);
  c.filter_reasons = j.value("filter_reasons", std::vector<std::string>{});
  if (j.contains("duplicate_of") && j["duplicate_of"].is_string()) c.duplicate_of = j["duplicate_of"];
  c.errors = j.value("errors", std::vector<std::string>{});
  if (j.contains("shard") && j["shard"].is_string()) c.shard = j["shard"];
  c.key = j.value("key", "");
  c.stream_copied = j.value("stream_copied", false);
  if (j.contains("stream_copy_declined") && j["stream_copy_declined"].is_string())
    c.stream_copy_declined = j["stream_copy_declined"].get<std::string>();
  if (j.contains("keyframes") && j["keyframes"].is_object()) {
    const auto& k = j["keyframes"];
    c.start_pts = k.value("start_pts", int64_t{0});
    c.end_pts = k.contains("end_pts") && k["end_pts"].is_number() ? k["end_pts"].get<int64_t>() : kEndOfStream;
    c.start_key = k.value("start_key", false);
    c.end_key = k.value("end_key", false);
  }
  return c;
}

nlohmann::json VideoRecord::ToJson() const {
  nlohmann::json j;
  j["source_video"] = source_video;
  j["status"] = status;
  j["error"] = error.empty() ? nlohmann::json(nullptr) : nlohmann::json(error);
  j["fps"] = fps;
  j["num_frames"] = num_frames;
  j["width"] = width;
  j["height"] = height;
  j["duration_s"] = duration_s;
  j["codec"] = codec;
  j["decode_errors"] = decode_errors;
  nlohmann::json s = nlohmann::json::array();
  for (const auto& x : shots) s.push_back({x.start, x.end});
  j["shots"] = {{"fps", fps}, {"num_frames", num_frames}, {"shots", s}};
  nlohmann::json t = nlohmann::json::array();
  for (const auto& x : transitions) t.push_back({{"start", x.start}, {"end", x.end}, {"type", x.type}});
  j["shots"]["transitions"] = t;
  j["clips"] = clips;
  return j;
}

VideoRecord VideoRecord::FromJson(const nlohmann::json& j) {
  VideoRecord v;
  v.source_video = j.value("source_video", "");
  v.status = j.value("status", "ok");
  if (j.contains("error") && j["error"].is_string()) v.error = j["error"];
  v.fps = j.value("fps", 0.0);
  v.num_frames = j.value("num_frames", int64_t{0});
  v.width = j.value("width", 0);
  v.height = j.value("height", 0);
  v.duration_s = j.value("duration_s", 0.0);
  v.codec = j.value("codec", "");
  v.decode_errors = j.value("decode_errors", 0);
  if (j.contains("shots") && j["shots"].is_object()) {
    for (const auto& s : j["shots"].value("shots", nlohmann::json::array())) {
      v.shots.push_back({s[0].get<int64_t>(), s[1].get<int64_t>()});
    }
    for (const auto& t : j["shots"].value("transitions", nlohmann::json::array())) {
      v.transitions.push_back({t.value("start", int64_t{0}), t.value("end", int64_t{0}), t.value("type", ""), 0.0});
    }
  }
  v.clips = j.value("clips", std::vector<std::string>{});
  return v;
}

}  // namespace wfm::curation
