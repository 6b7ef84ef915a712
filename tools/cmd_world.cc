// `wfm world`: writes clips of the embedded physical world (MP4 + caption sidecar + ground-truth tracks), the
// checkable data the demo learns from. See wfm/core/world.h.
#include <iostream>

#include "absl/strings/str_split.h"
#include "absl/strings/numbers.h"
#include "cli.h"
#include "wfm/core/world.h"

namespace wfm::cli {
namespace {

int RunWorld(int argc, char** argv) {
  std::string output, size = "128x128";
  int64_t num_clips = 16, seed = 0, frames = 33;
  double fps = 12.0;
  int max_objects = 3, crf = 12;
  double occluder = 0.5;
  bool no_lighting = false;
  ArgParser p("wfm world",
              "Simulate a small 2D physical world (balls and boxes, gravity, bounces, friction, collisions, an\n"
              "occluding wall, changing light) and write each clip as NAME.mp4, its caption as NAME.txt and the\n"
              "ground-truth object tracks as NAME.tracks.json. Deterministic from --seed.");
  p.Option("output", &output, "output folder", /*required=*/true)
      .Option("num-clips", &num_clips, "number of clips")
      .Option("seed", &seed, "seed of the first clip (clip i uses seed + i)")
      .Option("frames", &frames, "frames per clip")
      .Option("fps", &fps, "frames per second")
      .Option("size", &size, "frame size WxH")
      .Option("max-objects", &max_objects, "at most this many objects per clip (1-7)")
      .Option("occluder", &occluder, "probability that a clip has an occluding wall")
      .Flag("no-lighting", &no_lighting, "fixed grey background and constant light")
      .Option("crf", &crf, "H.264 CRF of the written clips")
      .Epilog("example: wfm world --output data/world --num-clips 64 --seed 1");
  if (auto rc = p.Parse(argc, argv)) return *rc;
  std::vector<std::string> wh = absl::StrSplit(size, absl::ByAnyChar("xX"));
  world::WorldOptions wo;
  if (wh.size() != 2 || !absl::SimpleAtoi(wh[0], &wo.width) || !absl::SimpleAtoi(wh[1], &wo.height)) {
    return p.UsageError("--size must be WxH, e.g. 128x128");
  }
  if (num_clips < 0 || frames < 1 || fps <= 0 || max_objects < 1 || max_objects > 7) {
    return p.UsageError("need --num-clips >= 0, --frames >= 1, --fps > 0 and 1 <= --max-objects <= 7");
  }
  wo.num_frames = static_cast<int>(frames);
  wo.fps = fps;
  wo.max_objects = max_objects;
  wo.min_objects = std::min(wo.min_objects, max_objects);
  wo.occluder_probability = occluder;
  wo.vary_lighting = !no_lighting;
  world::DatasetOptions dopt;
  dopt.num_clips = static_cast<int>(num_clips);
  dopt.seed = static_cast<uint64_t>(seed);
  dopt.crf = crf;
  auto paths = world::WriteWorldDataset(output, wo, dopt);
  if (!paths.ok()) return ReportError(paths.status(), /*usage=*/true);
  std::cout << "wrote " << paths->size() << " clips to " << output << "\n";
  return kExitOk;
}

}  // namespace
WFM_REGISTER_COMMAND("world", "simulate the embedded physical world to MP4 + captions + tracks", RunWorld);
}  // namespace wfm::cli
