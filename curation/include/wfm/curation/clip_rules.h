// Clip rules: shots -> clip spans, as cosmos-curate's TransNetV2ClipExtractionStage._get_filtered_scenes in
// "stride" mode: a shot longer than max_length is cut into max_length pieces (a trailing piece shorter than
// min_length is dropped), every piece loses crop_length frames at each end, and pieces shorter than
// min_length after the crop are dropped. In frames: min_length = max(ceil(min_length_s * fps),
// min_length_frames), max_length = ceil(max_length_s * fps), crop_length = int(crop_s * fps).
//
// ClipSegmenter applies the same rules incrementally while frames stream past: it learns the transitions as
// the detectors finalise them and releases each frame as soon as its fate (in which clip, or in none) is
// certain, so per-clip statistics are accumulated without keeping frames.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <vector>

#include "wfm/curation/shot_detection.h"

namespace wfm::curation {

struct ClipRuleOptions {
  double min_length_s = 2.0;
  int min_length_frames = 48;  // cosmos-curate --transnetv2-min-length-frames
  double max_length_s = 60.0;  // <= 0: no maximum
  double crop_s = 0.5;         // trimmed at each end of every piece
};

struct ClipFrames {
  int64_t min_length = 0, max_length = 0, crop = 0;  // in frames; max_length 0 = none
};
ClipFrames ClipRulesInFrames(const ClipRuleOptions& options, double fps);

struct ClipSpan {
  int64_t start = 0, end = 0;  // frames [start, end)
  int64_t length() const { return end - start; }
};

// Batch form: the clip spans of a list of shots.
std::vector<ClipSpan> ComputeClipSpans(const std::vector<Shot>& shots, double fps, const ClipRuleOptions& options);

// Streaming form. Usage per frame i (in order): AddTransitions(new ones); SetFrontier(detector frontier);
// Push(i) -- then Release() hands back, in order, every frame whose clip membership is decided, calling
// `on_open(span_start)` before the first frame of a candidate clip, `on_frame(i, in_clip)` for every frame,
// and `on_close(span, keep)` after a candidate's last frame (keep is false when it ended up too short).
class ClipSegmenter {
 public:
  struct Callbacks {
    std::function<void(int64_t start)> on_open;
    std::function<void(int64_t frame, bool in_clip)> on_frame;
    std::function<void(const ClipSpan& span, bool keep)> on_close;
  };
  ClipSegmenter(const ClipRuleOptions& options, double fps, Callbacks callbacks);

  void AddTransitions(const std::vector<Transition>& transitions);
  // Transitions starting before `frontier` are all known.
  void SetFrontier(int64_t frontier) { frontier_ = frontier; }
  void Push(int64_t frame) { queue_.push_back(frame); }
  // Releases every frame whose membership is decided.
  void Release();
  // End of stream after `num_frames` frames: releases the rest.
  void Finish(int64_t num_frames);
  // Frames pushed but not released yet (bounded by crop + detector latency).
  size_t pending() const { return queue_.size(); }

 private:
  void ReleaseFrame(int64_t f);
  void Close(int64_t end);

  ClipFrames rules_;
  Callbacks cb_;
  std::deque<Transition> transitions_;  // not yet passed
  std::deque<int64_t> queue_;
  int64_t frontier_ = 0, num_frames_ = -1;
  int64_t shot_start_ = 0, piece_start_ = 0;
  bool in_transition_ = false;
  std::optional<int64_t> open_start_;
};

}  // namespace wfm::curation
