// Demo stage "world": simulates the embedded physical world (wfm/core/world.h): the training clips and the
// held-out clips, each as MP4 + caption + ground-truth tracks.
#include <filesystem>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "demo_common.h"
#include "wfm/core/file_util.h"
#include "wfm/core/logging.h"
#include "wfm/core/progress.h"
#include "wfm/core/status.h"
#include "wfm/core/video_io.h"
#include "wfm/core/world.h"

namespace wfm::demo {

namespace {

absl::Status RunWorldStage(DemoContext& ctx) {
  WFM_ASSIGN_OR_RETURN(const DemoPlan plan, DemoPlan::For(ctx));
  const world::WorldOptions wo = DemoWorldOptions(plan);
  nlohmann::ordered_json summary;
  std::vector<std::vector<std::string>> rows;
  for (const auto& [split, count, seed] :
       {std::make_tuple("train", plan.train_clips, plan.train_seed),
        std::make_tuple("heldout", plan.heldout_clips, plan.heldout_seed)}) {
    world::DatasetOptions d;
    d.num_clips = count;
    d.seed = seed;
    d.prefix = absl::StrCat(split, "_");
    const std::string dir = ctx.StageDir(absl::StrCat("world/", split));
    WFM_ASSIGN_OR_RETURN(std::vector<std::string> paths, world::WriteWorldDataset(dir, wo, d));
    summary[split] = {{"clips", paths.size()}, {"seed", seed}, {"dir", dir}};
    rows.push_back({split, absl::StrCat(paths.size()), absl::StrCat(seed), dir});
  }
  // One example caption per split for the terminal.
  world::Clip example = world::SimulateClip(wo, plan.heldout_seed);
  ctx.Table(absl::StrFormat("world: %dx%d, %d frames at %g fps, up to %d objects", wo.width, wo.height,
                            wo.num_frames, wo.fps, wo.max_objects),
            {"split", "clips", "first seed", "folder"}, rows);
  std::cout << "example caption (held-out clip 0): " << example.caption << "\n";
  summary["options"] = {{"size", plan.size}, {"fps", plan.fps}, {"frames", plan.clip_frames},
                        {"max_objects", plan.max_objects}};
  ctx.summary["world"] = summary;
  return absl::OkStatus();
}

}  // namespace

WFM_REGISTER_DEMO_STAGE(20, "world", "simulate train and held-out clips of the embedded physical world",
                        RunWorldStage);

}  // namespace wfm::demo
