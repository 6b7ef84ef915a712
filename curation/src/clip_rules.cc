// Clip rules, batch and streaming (see clip_rules.h). The batch form follows cosmos-curate
// transnetv2_extraction_stages.py (_get_filtered_scenes with max_length_mode="stride", _create_spans,
// _crop_scenes) line by line; the streaming form must produce the same spans (tested).
#include "wfm/curation/clip_rules.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace wfm::curation {

ClipFrames ClipRulesInFrames(const ClipRuleOptions& o, double fps) {
  ClipFrames f;
  f.min_length = std::max<int64_t>(static_cast<int64_t>(std::ceil(o.min_length_s * fps - 1e-9)), o.min_length_frames);
  f.max_length = o.max_length_s > 0 ? static_cast<int64_t>(std::ceil(o.max_length_s * fps - 1e-9)) : 0;
  f.crop = o.crop_s > 0 ? static_cast<int64_t>(o.crop_s * fps + 1e-9) : 0;
  return f;
}

std::vector<ClipSpan> ComputeClipSpans(const std::vector<Shot>& shots, double fps, const ClipRuleOptions& options) {
  const ClipFrames r = ClipRulesInFrames(options, fps);
  std::vector<ClipSpan> pieces;
  for (const Shot& s : shots) {
    if (r.max_length <= 0) {
      pieces.push_back({s.start, s.end});
      continue;
    }
    // _create_spans: max_length pieces; a trailing piece shorter than min_length is dropped.
    for (int64_t cur = s.start; cur < s.end;) {
      int64_t end = std::min(cur + r.max_length, s.end);
      if (r.min_length > 0 && end - cur < r.min_length && end == s.end) break;
      pieces.push_back({cur, end});
      cur = end;
    }
  }
  std::vector<ClipSpan> out;
  for (ClipSpan p : pieces) {
    p.start += r.crop;  // _crop_scenes keeps positive lengths
    p.end -= r.crop;
    if (p.end - p.start <= 0) continue;
    if (p.end - p.start < r.min_length) continue;
    out.push_back(p);
  }
  return out;
}

ClipSegmenter::ClipSegmenter(const ClipRuleOptions& options, double fps, Callbacks callbacks)
    : rules_(ClipRulesInFrames(options, fps)), cb_(std::move(callbacks)) {}

void ClipSegmenter::AddTransitions(const std::vector<Transition>& transitions) {
  for (const auto& t : transitions) transitions_.push_back(t);
}

void ClipSegmenter::Release() {
  while (!queue_.empty() && (num_frames_ >= 0 || queue_.front() + rules_.crop < frontier_)) {
    ReleaseFrame(queue_.front());
    queue_.pop_front();
  }
}

void ClipSegmenter::Finish(int64_t num_frames) {
  num_frames_ = num_frames;
  frontier_ = std::numeric_limits<int64_t>::max();
  Release();
  if (open_start_) {
    int64_t e = num_frames;
    if (!transitions_.empty()) e = std::min(e, transitions_.front().start);
    int64_t q = rules_.max_length > 0 ? std::min(piece_start_ + rules_.max_length, e) : e;
    Close(q - rules_.crop);
  }
}

void ClipSegmenter::Close(int64_t end) {
  ClipSpan span{*open_start_, end};
  open_start_.reset();
  if (cb_.on_close) cb_.on_close(span, span.length() > 0 && span.length() >= rules_.min_length);
}

void ClipSegmenter::ReleaseFrame(int64_t f) {
  constexpr int64_t kInf = std::numeric_limits<int64_t>::max() / 4;
  while (true) {
    // End of the current shot: the next transition, or the end of the video.
    int64_t e = transitions_.empty() ? (num_frames_ >= 0 ? num_frames_ : kInf) : transitions_.front().start;
    int64_t q = rules_.max_length > 0 ? std::min(piece_start_ + rules_.max_length, e) : e;  // piece end
    if (open_start_ && f >= q - rules_.crop) Close(q - rules_.crop);
    if (f < q) break;
    if (q == e) {
      if (transitions_.empty()) {  // past the end of the video
        if (cb_.on_frame) cb_.on_frame(f, false);
        return;
      }
      const Transition& t = transitions_.front();
      if (f < t.end) {  // inside the transition
        if (cb_.on_frame) cb_.on_frame(f, false);
        return;
      }
      shot_start_ = piece_start_ = std::max(shot_start_, t.end);
      transitions_.pop_front();
    } else {
      piece_start_ = q;  // next max_length piece of the same shot
    }
  }
  const int64_t e = transitions_.empty() ? (num_frames_ >= 0 ? num_frames_ : kInf) : transitions_.front().start;
  const int64_t q = rules_.max_length > 0 ? std::min(piece_start_ + rules_.max_length, e) : e;
  if (f >= piece_start_ + rules_.crop && f < q - rules_.crop) {
    if (!open_start_) {
      open_start_ = piece_start_ + rules_.crop;
      if (cb_.on_open) cb_.on_open(*open_start_);
    }
    if (cb_.on_frame) cb_.on_frame(f, true);
  } else if (cb_.on_frame) {
    cb_.on_frame(f, false);
  }
}

}  // namespace wfm::curation
