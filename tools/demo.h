// The `wfm demo` pipeline: an ordered list of stages that each add one part of the world-model demo (media IO
// today; world simulation, curation, training, prediction and the HTML report later). A stage lives in its own
// tools/demo_*.cc file and registers itself; `wfm demo` runs the registered stages in order, prints each
// stage's table and writes OUTPUT/summary.json with every stage's results.
//
//   absl::Status RunCurationStage(DemoContext& ctx) {
//     ...                                            // write under ctx.StageDir("curation")
//     ctx.Table("curation", {"clip", "shots"}, rows);  // printed and kept for the report
//     ctx.summary["curation"] = {...};               // machine-readable results (summary.json)
//     return absl::OkStatus();
//   }
//   WFM_REGISTER_DEMO_STAGE(30, "curation", "split clips into shots and filter them", RunCurationStage);
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"

namespace wfm::demo {

struct DemoContext {
  std::string shared_dir;   // ../shared: media/, fixtures/
  std::string output_dir;   // out/demo
  bool quick = false;       // a fast pass: fewer frames / steps everywhere
  std::string device = "cpu";  // where models train and run ("cpu", "cuda"): cuda scales the quality knobs up
  std::vector<std::string> overrides;  // "knob=value" settings of the run plan (--set), see demo_common.h
  int threads = 1;          // intra-op threads in effect
  nlohmann::ordered_json summary = nlohmann::ordered_json::object();  // stage name -> results

  // OUTPUT/NAME, created.
  std::string StageDir(const std::string& name) const;
  // Prints a titled, aligned text table to stdout.
  void Table(const std::string& title, const std::vector<std::string>& header,
             const std::vector<std::vector<std::string>>& rows) const;
};

using DemoStageFn = std::function<absl::Status(DemoContext&)>;
struct DemoStage {
  int order;             // stages run by increasing order (10 media, 20 world simulation, 30 curation, ...)
  std::string name;      // --stages selects by name
  std::string summary;   // one line for --help
  DemoStageFn run;
};
std::vector<DemoStage>& DemoStages();
struct DemoStageRegistrar {
  DemoStageRegistrar(int order, std::string name, std::string summary, DemoStageFn fn);
};

// Aligned plain-text table (also used by stages that write text reports).
std::string FormatTable(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows);

}  // namespace wfm::demo

#define WFM_DEMO_CONCAT_INNER_(a, b) a##b
#define WFM_DEMO_CONCAT_(a, b) WFM_DEMO_CONCAT_INNER_(a, b)
#define WFM_REGISTER_DEMO_STAGE(order, name, summary, fn) \
  static ::wfm::demo::DemoStageRegistrar WFM_DEMO_CONCAT_(wfm_demo_stage_, __LINE__)(order, name, summary, fn)
