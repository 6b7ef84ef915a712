// The embedded physical world (see world.h): impulse-based 2D rigid-body physics for circles and axis-aligned
// boxes, an anti-aliased software renderer, ground-truth tracks, event-based captions and a colour detector.
// Everything is deterministic: the RNG is a SplitMix64 stream (no std:: distributions, whose output differs
// between standard libraries).
#include "wfm/core/world.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace wfm::world {
namespace {

class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull) {}
  uint64_t Next() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double Uniform() { return (Next() >> 11) * 0x1.0p-53; }
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }
  int Int(int lo, int hi) { return lo + static_cast<int>(Next() % static_cast<uint64_t>(hi - lo + 1)); }
  bool Chance(double p) { return Uniform() < p; }

 private:
  uint64_t s_;
};

struct Body {
  Shape shape;
  double x, y, vx, vy, hw, hh;
  double inv_mass, restitution, friction;
};

// Per-object event log used to write the caption.
struct Events {
  bool started_on_floor = false;
  bool thrown_up = false;
  int floor_bounces = 0;
  int wall_bounces_left = 0, wall_bounces_right = 0;
  std::map<int, int> hits;        // other object -> count
  double floor_travel = 0;        // signed horizontal distance travelled while on the floor
  double max_floor_speed = 0;
  bool moving_at_end = false;
  bool hidden = false, reappeared = false;
};

constexpr double kPi = 3.14159265358979323846;

std::string CountWord(int n) {
  switch (n) {
    case 1: return "once";
    case 2: return "twice";
    case 3: return "three times";
    default: return absl::StrCat(n, " times");
  }
}

double Coverage1D(double lo, double hi, double p) {
  // Fraction of the pixel [p, p+1) inside [lo, hi].
  return std::clamp(std::min(hi, p + 1.0) - std::max(lo, p), 0.0, 1.0);
}

}  // namespace

const std::vector<NamedColor>& Palette() {
  static const std::vector<NamedColor> kPalette = {
      {"red", {212, 38, 38}},    {"green", {40, 170, 56}},   {"blue", {48, 78, 212}},   {"yellow", {214, 190, 36}},
      {"magenta", {196, 46, 196}}, {"cyan", {36, 180, 196}}, {"orange", {215, 118, 26}},
  };
  return kPalette;
}

const char* ShapeName(Shape s) { return s == Shape::kBall ? "ball" : "box"; }

std::vector<Rgb> Clip::ObjectColors() const {
  std::vector<Rgb> out;
  for (const auto& t : tracks) out.push_back(t.color);
  return out;
}

nlohmann::json Clip::ToJson() const {
  nlohmann::json j;
  j["seed"] = seed;
  j["fps"] = fps;
  j["num_frames"] = frames.defined() ? frames.size(0) : 0;
  j["height"] = frames.defined() ? frames.size(1) : 0;
  j["width"] = frames.defined() ? frames.size(2) : 0;
  j["caption"] = caption;
  j["lighting"] = lighting;
  j["background"] = {{"top", {background_top.r, background_top.g, background_top.b}},
                     {"bottom", {background_bottom.r, background_bottom.g, background_bottom.b}}};
  j["occluder"] = occluder.present ? nlohmann::json{{"x0", occluder.x0}, {"x1", occluder.x1}, {"y0", occluder.y0},
                                                     {"y1", occluder.y1}}
                                   : nlohmann::json(nullptr);
  nlohmann::json objs = nlohmann::json::array();
  for (const auto& t : tracks) {
    objs.push_back({{"id", t.id},
                    {"shape", ShapeName(t.shape)},
                    {"color", t.color_name},
                    {"rgb", {t.color.r, t.color.g, t.color.b}},
                    {"half_size", {t.half_w, t.half_h}},
                    {"positions", t.positions},
                    {"velocities", t.velocities},
                    {"visible_fraction", t.visible_fraction},
                    {"floor_bounces", t.floor_bounces},
                    {"object_hits", t.object_hits}});
  }
  j["objects"] = objs;
  return j;
}

Clip SimulateClip(const WorldOptions& opt, uint64_t seed) {
  TORCH_CHECK(opt.width >= 16 && opt.height >= 16 && opt.num_frames >= 1 && opt.fps > 0,
              "world: invalid options");
  Rng rng(seed);
  const double W = opt.width, H = opt.height, S = std::min(W, H);
  const double g = opt.gravity > 0 ? opt.gravity : 2.5 * H;
  const double dt = 1.0 / (opt.fps * std::max(1, opt.substeps));
  const double rest_speed = std::sqrt(2 * g * 0.006 * H);   // slower impacts settle instead of bouncing
  const double bounce_speed = std::sqrt(2 * g * 0.03 * H);  // a visible bounce (>= 3% of the height)

  Clip clip;
  clip.seed = seed;
  clip.fps = opt.fps;

  // ---- scene set-up ----
  int n = rng.Int(std::max(1, opt.min_objects), std::max(opt.min_objects, opt.max_objects));
  n = std::min<int>(n, static_cast<int>(Palette().size()));
  std::vector<int> colors(Palette().size());
  for (size_t i = 0; i < colors.size(); ++i) colors[i] = static_cast<int>(i);
  for (size_t i = colors.size() - 1; i > 0; --i) std::swap(colors[i], colors[rng.Next() % (i + 1)]);

  std::vector<Body> bodies;
  std::vector<Events> events(n);
  for (int i = 0; i < n; ++i) {
    Body b{};
    b.shape = rng.Chance(opt.box_probability) ? Shape::kBox : Shape::kBall;
    if (b.shape == Shape::kBall) {
      b.hw = b.hh = rng.Uniform(0.055, 0.09) * S;
      b.restitution = rng.Uniform(0.55, 0.8);
      b.friction = 0.25;  // rolling resistance (1/s)
    } else {
      b.hw = rng.Uniform(0.06, 0.1) * S;
      b.hh = b.hw * rng.Uniform(0.75, 1.25);
      b.restitution = rng.Uniform(0.15, 0.35);
      b.friction = rng.Uniform(0.25, 0.45);  // sliding friction coefficient
    }
    b.inv_mass = 1.0 / (4.0 * b.hw * b.hh);
    // Place without overlap: try a few random spots.
    for (int attempt = 0; attempt < 50; ++attempt) {
      bool on_floor = b.shape == Shape::kBox ? rng.Chance(0.5) : rng.Chance(0.2);
      b.x = rng.Uniform(b.hw + 1, W - b.hw - 1);
      b.y = on_floor ? H - b.hh : rng.Uniform(b.hh + 1, 0.55 * H);
      bool ok = true;
      for (const Body& o : bodies) {
        if (std::abs(o.x - b.x) < o.hw + b.hw + 2 && std::abs(o.y - b.y) < o.hh + b.hh + 2) ok = false;
      }
      if (ok || attempt == 49) {
        events[i].started_on_floor = on_floor;
        break;
      }
    }
    double speed = rng.Uniform(0.3, 1.0) * W;
    b.vx = rng.Chance(0.5) ? speed : -speed;
    if (events[i].started_on_floor) {
      b.vy = 0;
    } else if (rng.Chance(0.25)) {
      b.vy = -rng.Uniform(0.6, 1.1) * std::sqrt(2 * g * 0.3 * H);  // thrown upward
      events[i].thrown_up = true;
    } else {
      b.vy = rng.Uniform(-0.1, 0.2) * H;
    }
    bodies.push_back(b);
    ObjectTrack t;
    t.id = i;
    t.shape = b.shape;
    t.color_name = Palette()[colors[i]].name;
    t.color = Palette()[colors[i]].rgb;
    t.half_w = b.hw;
    t.half_h = b.hh;
    clip.tracks.push_back(std::move(t));
  }

  if (rng.Chance(opt.occluder_probability)) {
    double w = rng.Uniform(0.12, 0.2) * W;
    double x0 = rng.Uniform(0.25 * W, 0.75 * W - w);
    clip.occluder = {true, x0, x0 + w, 0.0, H};
  }

  // Lighting: a near-grey background gradient and a slow global light change.
  auto grey = [&](double lo, double hi) {
    double v = rng.Uniform(lo, hi);
    return Rgb{static_cast<uint8_t>(std::clamp(v + rng.Uniform(-10, 10), 0.0, 255.0)),
               static_cast<uint8_t>(std::clamp(v + rng.Uniform(-10, 10), 0.0, 255.0)),
               static_cast<uint8_t>(std::clamp(v + rng.Uniform(-10, 10), 0.0, 255.0))};
  };
  clip.background_top = opt.vary_lighting ? grey(120, 175) : Rgb{150, 150, 150};
  clip.background_bottom = opt.vary_lighting ? grey(80, 130) : Rgb{105, 105, 105};
  const double light_base = opt.vary_lighting ? rng.Uniform(0.85, 1.05) : 1.0;
  const double light_amp = opt.vary_lighting ? rng.Uniform(0.0, 0.12) : 0.0;
  const double light_phase = rng.Uniform(0, 2 * kPi);
  const double light_period = rng.Uniform(2.0, 6.0);  // seconds

  // ---- simulation + rendering ----
  const int T = opt.num_frames, Hi = opt.height, Wi = opt.width;
  at::Tensor frames = at::empty({T, Hi, Wi, 3}, at::kByte);
  uint8_t* out = frames.data_ptr<uint8_t>();
  std::vector<float> img(static_cast<size_t>(Hi) * Wi * 3);
  std::set<std::pair<int, int>> touching;  // object pairs in contact during the previous substep
  std::vector<bool> was_on_floor(n, false);

  for (int f = 0; f < T; ++f) {
    if (f > 0) {
      for (int step = 0; step < opt.substeps; ++step) {
        for (auto& b : bodies) {
          b.vy += g * dt;
          b.x += b.vx * dt;
          b.y += b.vy * dt;
        }
        // Object-object contacts: positional correction + restitution impulse along the contact normal.
        std::set<std::pair<int, int>> now_touching;
        for (int iter = 0; iter < 2; ++iter) {
          for (int i = 0; i < n; ++i) {
            for (int j = i + 1; j < n; ++j) {
              Body& a = bodies[i];
              Body& c = bodies[j];
              double nx = 0, ny = 0, pen = 0;
              double dx = c.x - a.x, dy = c.y - a.y;
              if (a.shape == Shape::kBall && c.shape == Shape::kBall) {
                double d = std::hypot(dx, dy), r = a.hw + c.hw;
                if (d >= r) continue;
                if (d < 1e-9) { dx = 1; d = 1; }
                nx = dx / d;
                ny = dy / d;
                pen = r - d;
              } else if (a.shape == Shape::kBox && c.shape == Shape::kBox) {
                double ox = a.hw + c.hw - std::abs(dx), oy = a.hh + c.hh - std::abs(dy);
                if (ox <= 0 || oy <= 0) continue;
                if (ox < oy) { nx = dx >= 0 ? 1 : -1; pen = ox; } else { ny = dy >= 0 ? 1 : -1; pen = oy; }
              } else {
                // Ball vs box: closest point of the box to the ball centre.
                const Body& ball = a.shape == Shape::kBall ? a : c;
                const Body& box = a.shape == Shape::kBall ? c : a;
                double qx = std::clamp(ball.x, box.x - box.hw, box.x + box.hw);
                double qy = std::clamp(ball.y, box.y - box.hh, box.y + box.hh);
                double ex = ball.x - qx, ey = ball.y - qy, d = std::hypot(ex, ey);
                double bx, by;  // normal from box to ball
                if (d > 1e-9) {
                  if (d >= ball.hw) continue;
                  bx = ex / d;
                  by = ey / d;
                  pen = ball.hw - d;
                } else {  // centre inside the box: push out along the shallowest axis
                  double ox = box.hw + ball.hw - std::abs(ball.x - box.x);
                  double oy = box.hh + ball.hw - std::abs(ball.y - box.y);
                  if (ox < oy) { bx = ball.x >= box.x ? 1 : -1; by = 0; pen = ox; } else { bx = 0; by = ball.y >= box.y ? 1 : -1; pen = oy; }
                }
                // Normal must point from a to c.
                double s = a.shape == Shape::kBox ? 1.0 : -1.0;
                nx = s * bx;
                ny = s * by;
              }
              double inv = a.inv_mass + c.inv_mass;
              a.x -= nx * pen * a.inv_mass / inv;
              a.y -= ny * pen * a.inv_mass / inv;
              c.x += nx * pen * c.inv_mass / inv;
              c.y += ny * pen * c.inv_mass / inv;
              double vn = (c.vx - a.vx) * nx + (c.vy - a.vy) * ny;
              if (vn < 0) {
                double e = std::min(a.restitution, c.restitution);
                if (-vn < rest_speed) e = 0;
                double jimp = -(1 + e) * vn / inv;
                a.vx -= jimp * a.inv_mass * nx;
                a.vy -= jimp * a.inv_mass * ny;
                c.vx += jimp * c.inv_mass * nx;
                c.vy += jimp * c.inv_mass * ny;
                if (iter == 0 && -vn > bounce_speed && !touching.count({i, j})) {
                  events[i].hits[j]++;
                  events[j].hits[i]++;
                  clip.tracks[i].object_hits++;
                  clip.tracks[j].object_hits++;
                }
              }
              now_touching.insert({i, j});
            }
          }
        }
        touching = std::move(now_touching);
        // Walls, floor, ceiling, friction.
        for (int i = 0; i < n; ++i) {
          Body& b = bodies[i];
          bool on_floor = false;
          if (b.y + b.hh >= H) {
            b.y = H - b.hh;
            if (b.vy > 0) {
              if (b.vy > bounce_speed && !was_on_floor[i]) {
                events[i].floor_bounces++;
                clip.tracks[i].floor_bounces++;
              }
              b.vy = b.vy > rest_speed ? -b.restitution * b.vy : 0.0;
            }
            on_floor = std::abs(b.vy) < 1e-9;
          }
          // Resting on top of another object counts as "supported" for friction too.
          for (int j = 0; j < n && !on_floor; ++j) {
            if (j == i) continue;
            const Body& o = bodies[j];
            if (std::abs(b.x - o.x) < b.hw + o.hw && std::abs((b.y + b.hh) - (o.y - o.hh)) < 0.5 && std::abs(b.vy) < rest_speed)
              on_floor = true;
          }
          if (b.y - b.hh < 0) {
            b.y = b.hh;
            if (b.vy < 0) b.vy = -b.restitution * b.vy;
          }
          if (b.x - b.hw < 0) {
            b.x = b.hw;
            if (b.vx < 0) {
              if (-b.vx > bounce_speed) events[i].wall_bounces_left++;
              b.vx = -b.restitution * b.vx;
            }
          }
          if (b.x + b.hw > W) {
            b.x = W - b.hw;
            if (b.vx > 0) {
              if (b.vx > bounce_speed) events[i].wall_bounces_right++;
              b.vx = -b.restitution * b.vx;
            }
          }
          if (on_floor) {
            if (b.shape == Shape::kBall) {
              b.vx *= std::exp(-b.friction * dt);
            } else {
              double dv = b.friction * g * dt;
              b.vx = std::abs(b.vx) <= dv ? 0.0 : b.vx - std::copysign(dv, b.vx);
            }
            events[i].floor_travel += b.vx * dt;
            events[i].max_floor_speed = std::max(events[i].max_floor_speed, std::abs(b.vx));
          }
          was_on_floor[i] = b.y + b.hh >= H - 0.5;
        }
      }
    }

    // ---- render frame f ----
    double light = light_base * (1.0 + light_amp * std::sin(2 * kPi * (f / opt.fps) / light_period + light_phase));
    clip.lighting.push_back(static_cast<float>(light));
    for (int y = 0; y < Hi; ++y) {
      double a = (y + 0.5) / Hi;
      float r = static_cast<float>((1 - a) * clip.background_top.r + a * clip.background_bottom.r);
      float gc = static_cast<float>((1 - a) * clip.background_top.g + a * clip.background_bottom.g);
      float bc = static_cast<float>((1 - a) * clip.background_top.b + a * clip.background_bottom.b);
      for (int x = 0; x < Wi; ++x) {
        float* p = &img[(static_cast<size_t>(y) * Wi + x) * 3];
        p[0] = r;
        p[1] = gc;
        p[2] = bc;
      }
    }
    for (int i = 0; i < n; ++i) {
      const Body& b = bodies[i];
      const Rgb col = clip.tracks[i].color;
      int x0 = std::max(0, static_cast<int>(std::floor(b.x - b.hw - 1)));
      int x1 = std::min(Wi - 1, static_cast<int>(std::ceil(b.x + b.hw + 1)));
      int y0 = std::max(0, static_cast<int>(std::floor(b.y - b.hh - 1)));
      int y1 = std::min(Hi - 1, static_cast<int>(std::ceil(b.y + b.hh + 1)));
      double area = 0, hidden = 0;
      for (int y = y0; y <= y1; ++y) {
        for (int x = x0; x <= x1; ++x) {
          double cov;
          if (b.shape == Shape::kBall) {
            double d = std::hypot(x + 0.5 - b.x, y + 0.5 - b.y);
            cov = std::clamp(b.hw + 0.5 - d, 0.0, 1.0);
          } else {
            cov = Coverage1D(b.x - b.hw, b.x + b.hw, x) * Coverage1D(b.y - b.hh, b.y + b.hh, y);
          }
          if (cov <= 0) continue;
          area += cov;
          if (clip.occluder.present && x + 0.5 >= clip.occluder.x0 && x + 0.5 < clip.occluder.x1) hidden += cov;
          float* p = &img[(static_cast<size_t>(y) * Wi + x) * 3];
          p[0] = static_cast<float>(p[0] * (1 - cov) + col.r * cov);
          p[1] = static_cast<float>(p[1] * (1 - cov) + col.g * cov);
          p[2] = static_cast<float>(p[2] * (1 - cov) + col.b * cov);
        }
      }
      float vis = area > 0 ? static_cast<float>(1.0 - hidden / area) : 0.f;
      clip.tracks[i].visible_fraction.push_back(vis);
      clip.tracks[i].positions.push_back({b.x, b.y});
      clip.tracks[i].velocities.push_back({b.vx, b.vy});
      if (vis < 0.3) events[i].hidden = true;
      if (events[i].hidden && vis > 0.9) events[i].reappeared = true;
    }
    if (clip.occluder.present) {
      int ox0 = std::max(0, static_cast<int>(std::floor(clip.occluder.x0)));
      int ox1 = std::min(Wi - 1, static_cast<int>(std::ceil(clip.occluder.x1)));
      for (int y = 0; y < Hi; ++y) {
        for (int x = ox0; x <= ox1; ++x) {
          double cov = Coverage1D(clip.occluder.x0, clip.occluder.x1, x);
          // A dark grey wall with faint vertical planks.
          float v = ((x - ox0) / 4) % 2 ? 64.f : 72.f;
          float* p = &img[(static_cast<size_t>(y) * Wi + x) * 3];
          for (int c = 0; c < 3; ++c) p[c] = static_cast<float>(p[c] * (1 - cov) + (v + (c == 2 ? 4 : 0)) * cov);
        }
      }
    }
    uint8_t* dst = out + static_cast<size_t>(f) * Hi * Wi * 3;
    for (size_t k = 0; k < img.size(); ++k) {
      dst[k] = static_cast<uint8_t>(std::clamp(std::lround(img[k] * light), 0L, 255L));
    }
  }

  // ---- caption ----
  std::vector<std::string> parts;
  for (int i = 0; i < n; ++i) {
    const Events& e = events[i];
    const ObjectTrack& t = clip.tracks[i];
    const bool ball = t.shape == Shape::kBall;
    std::string noun = absl::StrCat(t.color_name, " ", ShapeName(t.shape));
    std::vector<std::string> verbs;
    const double move_thresh = 0.08 * W;
    const char* dir = e.floor_travel < 0 ? "left" : "right";
    if (e.started_on_floor) {
      if (std::abs(e.floor_travel) > move_thresh) verbs.push_back(absl::StrCat(ball ? "rolls " : "slides ", dir));
      else verbs.push_back("rests on the floor");
    } else {
      verbs.push_back(e.thrown_up ? "is thrown upward" : "falls");
      if (e.floor_bounces > 0) verbs.push_back(absl::StrCat("bounces ", CountWord(e.floor_bounces), " off the floor"));
      if (std::abs(e.floor_travel) > move_thresh) verbs.push_back(absl::StrCat(ball ? "rolls " : "slides ", dir));
    }
    if (e.wall_bounces_left + e.wall_bounces_right > 0) {
      verbs.push_back(e.wall_bounces_left && e.wall_bounces_right ? "hits both side walls"
                      : e.wall_bounces_left                       ? "bounces off the left wall"
                                                                  : "bounces off the right wall");
    }
    for (const auto& [other, count] : e.hits) {
      if (other > i) {
        verbs.push_back(absl::StrCat("hits the ", clip.tracks[other].color_name, " ",
                                     ShapeName(clip.tracks[other].shape)));
      }
    }
    const auto& v_end = t.velocities.back();
    bool still = std::hypot(v_end[0], v_end[1]) < 0.02 * W;
    if (still && e.max_floor_speed > move_thresh) verbs.push_back("stops");
    if (e.hidden) verbs.push_back(e.reappeared ? "passes behind the wall" : "disappears behind the wall");
    std::string phrase = absl::StrCat("a ", noun, " ");
    if (verbs.size() == 1) {
      phrase += verbs[0];
    } else {
      phrase += absl::StrJoin(verbs.begin(), verbs.end() - 1, ", ") + " and " + verbs.back();
    }
    parts.push_back(phrase);
  }
  if (clip.lighting.size() > 1) {
    double d = clip.lighting.back() - clip.lighting.front();
    if (d < -0.06) parts.push_back("the light dims");
    if (d > 0.06) parts.push_back("the light brightens");
  }
  clip.caption = absl::StrJoin(parts, "; ");
  clip.frames = frames;
  return clip;
}

std::vector<Detection> DetectObjects(const at::Tensor& frame, const std::vector<Rgb>& colors, int64_t min_pixels) {
  TORCH_CHECK(frame.dim() == 3 && frame.size(2) == 3 && frame.scalar_type() == at::kByte,
              "DetectObjects expects uint8 [H, W, 3]");
  at::Tensor f = frame.contiguous();
  const int64_t H = f.size(0), W = f.size(1);
  const uint8_t* p = f.data_ptr<uint8_t>();
  struct Acc {
    double sx = 0, sy = 0;
    int64_t n = 0;
  };
  std::vector<Acc> acc(colors.size());
  std::vector<std::array<double, 3>> ref;
  for (const auto& c : colors) {
    double s = std::max(1.0, static_cast<double>(c.r) + c.g + c.b);
    ref.push_back({c.r / s, c.g / s, c.b / s});
  }
  for (int64_t y = 0; y < H; ++y) {
    for (int64_t x = 0; x < W; ++x) {
      const uint8_t* q = p + (y * W + x) * 3;
      double s = static_cast<double>(q[0]) + q[1] + q[2];
      int mx = std::max({q[0], q[1], q[2]}), mn = std::min({q[0], q[1], q[2]});
      if (s < 40 || mx == 0 || static_cast<double>(mx - mn) / mx < 0.45) continue;
      int best = -1;
      double best_d = 0.09;
      for (size_t k = 0; k < ref.size(); ++k) {
        double d = std::abs(q[0] / s - ref[k][0]) + std::abs(q[1] / s - ref[k][1]) + std::abs(q[2] / s - ref[k][2]);
        if (d < best_d) {
          best_d = d;
          best = static_cast<int>(k);
        }
      }
      if (best >= 0) {
        acc[best].sx += x + 0.5;
        acc[best].sy += y + 0.5;
        acc[best].n++;
      }
    }
  }
  std::vector<Detection> out(colors.size());
  for (size_t k = 0; k < colors.size(); ++k) {
    out[k].pixels = acc[k].n;
    if (acc[k].n >= min_pixels) {
      out[k].found = true;
      out[k].x = acc[k].sx / acc[k].n;
      out[k].y = acc[k].sy / acc[k].n;
    }
  }
  return out;
}

}  // namespace wfm::world

namespace wfm::world {

at::Tensor PredictCopyLast(const at::Tensor& context, int64_t horizon) {
  TORCH_CHECK(context.dim() == 4 && context.size(0) >= 1 && context.size(3) == 3, "context must be [T, H, W, 3]");
  return context[-1].unsqueeze(0).expand({horizon, -1, -1, -1}).contiguous();
}

at::Tensor PredictConstantVelocity(const at::Tensor& context, const std::vector<Rgb>& colors, int64_t horizon) {
  TORCH_CHECK(context.dim() == 4 && context.size(0) >= 1 && context.size(3) == 3 &&
                  context.scalar_type() == at::kByte,
              "context must be uint8 [T, H, W, 3]");
  const int64_t T = context.size(0), H = context.size(1), W = context.size(2);
  at::Tensor last = context[T - 1].contiguous();
  // Background: per-pixel temporal median of the context frames.
  at::Tensor background = std::get<0>(context.to(at::kShort).median(0)).to(at::kByte).contiguous();
  std::vector<Detection> now = DetectObjects(last, colors);
  std::vector<Detection> before = T >= 2 ? DetectObjects(context[T - 2], colors) : now;

  // Object masks in the last frame: pixels assigned to each colour by the detector's rule.
  // Re-run the classification per pixel to cut sprites.
  std::vector<std::array<double, 3>> ref;
  for (const auto& c : colors) {
    double s = std::max(1.0, static_cast<double>(c.r) + c.g + c.b);
    ref.push_back({c.r / s, c.g / s, c.b / s});
  }
  const uint8_t* lp = last.data_ptr<uint8_t>();
  std::vector<int> owner(static_cast<size_t>(H * W), -1);
  for (int64_t i = 0; i < H * W; ++i) {
    const uint8_t* q = lp + i * 3;
    double s = static_cast<double>(q[0]) + q[1] + q[2];
    int mx = std::max({q[0], q[1], q[2]}), mn = std::min({q[0], q[1], q[2]});
    // Looser than the detector so anti-aliased edges travel with the sprite.
    if (s < 30 || mx == 0 || static_cast<double>(mx - mn) / mx < 0.2) continue;
    double best_d = 0.2;
    for (size_t k = 0; k < ref.size(); ++k) {
      double d = std::abs(q[0] / s - ref[k][0]) + std::abs(q[1] / s - ref[k][1]) + std::abs(q[2] / s - ref[k][2]);
      if (d < best_d && now[k].found) {
        best_d = d;
        owner[i] = static_cast<int>(k);
      }
    }
  }
  // With one context frame the "median" still contains the objects: fill their pixels with the mean colour of
  // the other pixels in the same row (the background is a vertical gradient).
  if (T == 1) {
    uint8_t* bp = background.data_ptr<uint8_t>();
    for (int64_t y = 0; y < H; ++y) {
      double sum[3] = {0, 0, 0};
      int64_t cnt = 0;
      for (int64_t x = 0; x < W; ++x) {
        if (owner[y * W + x] >= 0) continue;
        for (int c = 0; c < 3; ++c) sum[c] += bp[(y * W + x) * 3 + c];
        ++cnt;
      }
      if (cnt == 0) continue;
      for (int64_t x = 0; x < W; ++x) {
        if (owner[y * W + x] < 0) continue;
        for (int c = 0; c < 3; ++c) bp[(y * W + x) * 3 + c] = static_cast<uint8_t>(std::lround(sum[c] / cnt));
      }
    }
  }

  at::Tensor out = background.unsqueeze(0).repeat({horizon, 1, 1, 1}).contiguous();
  uint8_t* op = out.data_ptr<uint8_t>();
  for (int64_t h = 0; h < horizon; ++h) {
    uint8_t* frame = op + h * H * W * 3;
    for (int64_t i = 0; i < H * W; ++i) {
      int k = owner[i];
      if (k < 0) continue;
      double vx = before[k].found ? now[k].x - before[k].x : 0.0;
      double vy = before[k].found ? now[k].y - before[k].y : 0.0;
      int64_t dx = std::llround(vx * (h + 1)), dy = std::llround(vy * (h + 1));
      int64_t x = i % W + dx, y = i / W + dy;
      if (x < 0 || x >= W || y < 0 || y >= H) continue;
      std::memcpy(frame + (y * W + x) * 3, lp + i * 3, 3);
    }
  }
  return out;
}

}  // namespace wfm::world

// ---- dataset writer ----
#include <filesystem>

#include "absl/strings/str_format.h"
#include "wfm/core/file_util.h"
#include "wfm/core/progress.h"
#include "wfm/core/status.h"
#include "wfm/core/video_io.h"

namespace wfm::world {

absl::StatusOr<std::vector<std::string>> WriteWorldDataset(const std::string& dir, const WorldOptions& world,
                                                           const DatasetOptions& options) {
  if (options.num_clips < 0) return absl::InvalidArgumentError("world dataset: num_clips must be >= 0");
  if (world.width < 16 || world.height < 16 || world.num_frames < 1 || !(world.fps > 0)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "world dataset: invalid clip shape %dx%d, %d frames at %g fps (need >= 16x16, >= 1 frame, fps > 0)",
        world.width, world.height, world.num_frames, world.fps));
  }
  WFM_RETURN_IF_ERROR(MakeDirs(dir));
  ProgressOptions po;
  po.quiet = options.quiet;
  Progress progress("world", options.num_clips, "clips", po);
  std::vector<std::string> paths;
  for (int i = 0; i < options.num_clips; ++i) {
    const std::string base = absl::StrFormat("%s/%s%06d", dir, options.prefix, i);
    const std::string video = base + ".mp4", caption = base + ".txt", tracks = base + ".tracks.json";
    paths.push_back(video);
    // The tracks file is written last: its presence marks a complete clip.
    if (std::filesystem::exists(tracks) && std::filesystem::exists(video) && std::filesystem::exists(caption)) {
      progress.Add(1);
      continue;
    }
    Clip clip = SimulateClip(world, options.seed + static_cast<uint64_t>(i));
    EncodeOptions eo;
    eo.fps = world.fps;
    eo.crf = options.crf;
    eo.preset = "medium";
    WFM_RETURN_IF_ERROR(WriteVideo(video, clip.frames, eo), "writing world clip ", video);
    WFM_RETURN_IF_ERROR(WriteFileAtomically(caption, clip.caption + "\n"));
    WFM_RETURN_IF_ERROR(WriteFileAtomically(tracks, clip.ToJson().dump(1)));
    progress.Add(1);
  }
  progress.Finish();
  return paths;
}

}  // namespace wfm::world
