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
    // Every caption must fit the text encoder whole (byte tokens + EOS): a truncated caption loses the events
    // at its end (often the last object's), which the world models could then not be told about.
    size_t longest = 0;
    for (const std::string& path : paths) {
      const std::string txt = std::filesystem::path(path).replace_extension(".txt").string();
      WFM_ASSIGN_OR_RETURN(std::string caption, ReadFile(txt));
      while (!caption.empty() && caption.back() == '\n') caption.pop_back();
      longest = std::max(longest, caption.size());
      if (static_cast<int64_t>(caption.size()) + 1 > plan.text_max_length) {
        return absl::FailedPreconditionError(absl::StrCat(
            txt, ": caption of ", caption.size(), " bytes needs ", caption.size() + 1,
            " text tokens but the text encoder takes ", plan.text_max_length, " (--set text_max_length=N)"));
      }
    }
    summary[split] = {{"clips", paths.size()}, {"seed", seed}, {"dir", dir}, {"longest_caption_bytes", longest}};
    rows.push_back({split, absl::StrCat(paths.size()), absl::StrCat(seed), dir});
  }
  // One example caption per split for the terminal.
  world::Clip example = world::SimulateClip(wo, plan.heldout_seed);
  ctx.Table(absl::StrFormat("world: %dx%d, %d frames at %g fps, up to %d objects", wo.width, wo.height,
                            wo.num_frames, wo.fps, wo.max_objects),
            {"split", "clips", "first seed", "folder"}, rows);
  std::cout << "example caption (held-out clip 0): " << example.caption << "\n";
  summary["options"] = {{"size", plan.size}, {"fps", plan.fps}, {"frames", plan.clip_frames},
                        {"max_objects", plan.max_objects}, {"text_max_length", plan.text_max_length}};
  ctx.summary["world"] = summary;
  return absl::OkStatus();
}

}  // namespace

WFM_REGISTER_DEMO_STAGE(20, "world", "simulate train and held-out clips of the embedded physical world",
                        RunWorldStage);

}  // namespace wfm::demo
