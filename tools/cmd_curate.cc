// `wfm shots` (shot boundaries of one video as JSON) and `wfm curate` (the whole curation pipeline: raw videos
// -> filtered, deduplicated, captioned clips in webdataset shards, with videos.jsonl / clips.jsonl indexes).
#include <iostream>
#include <string>
#include <vector>

#include "cli.h"
#include "wfm/core/runtime.h"
#include "wfm/curation/shot_detection.h"

namespace {

using wfm::cli::ArgParser;

int RunShots(int argc, char** argv) {
  std::string video, method = "auto", model, device = "cpu";
  double threshold = 0.4;
  wfm::curation::ShotDetectorOptions o;
  bool transitions = false;
  ArgParser p("wfm shots", "Detect the shots of a video (one streaming decode) and print them as JSON:\n"
                           "{\"fps\":..., \"num_frames\":..., \"shots\":[[start_frame,end_frame_exclusive],...]}");
  p.Positional("VIDEO", &video, "input video")
      .Option("detector", &method, "auto | classic (content + gradual) | content | gradual | transnetv2 | all")
      .Option("transnet-model", &model, "TorchScript TransNetV2 (input uint8 [B,100,27,48,3]); enables transnetv2")
      .Option("transnet-threshold", &threshold, "transition probability threshold (default 0.4)")
      .Option("device", &device, "device for the TorchScript model (cpu, cuda)")
      .Option("content-threshold", &o.content.adaptive_threshold, "adaptive ratio threshold (default 3.0)")
      .Option("min-content-val", &o.content.min_content_val, "minimum HSV content value of a cut (default 15)")
      .Option("min-change", &o.gradual.min_change, "minimum RMS change of a dissolve/fade (default 12)")
      .Flag("transitions", &transitions, "also list the transitions (type, frames)")
      .Epilog("example: wfm shots in.mp4 --transitions");
  if (auto rc = p.Parse(argc, argv)) return *rc;
  o.method = method;
  o.transnet.model_path = model;
  o.transnet.threshold = threshold;
  o.transnet.device = device;
  auto r = wfm::curation::DetectShots(video, o, 0);
  if (!r.ok()) return wfm::cli::ReportError(r.status());
  nlohmann::json j = wfm::curation::ShotsToJson(*r);
  if (!transitions) j.erase("transitions");
  std::cout << j.dump() << "\n";
  return wfm::cli::kExitOk;
}

}  // namespace

WFM_REGISTER_COMMAND("shots", "detect shot boundaries of a video (JSON)", RunShots);
