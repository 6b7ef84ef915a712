// `wfm demo`: runs the registered demo stages (tools/demo_*.cc) in order into OUTPUT (default out/demo), prints
// each stage's table and a final timing summary, and writes OUTPUT/summary.json. `make demo` calls it through
// scripts/demo.sh.
#include "demo.h"
#include "demo_common.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli.h"
#include "wfm/core/file_util.h"
#include "wfm/core/progress.h"
#include "wfm/core/runtime.h"

namespace wfm::demo {

std::vector<DemoStage>& DemoStages() {
  static std::vector<DemoStage> stages;
  return stages;
}

DemoStageRegistrar::DemoStageRegistrar(int order, std::string name, std::string summary, DemoStageFn fn) {
  DemoStages().push_back(DemoStage{order, std::move(name), std::move(summary), std::move(fn)});
}

std::string DemoContext::StageDir(const std::string& name) const {
  const std::string dir = absl::StrCat(output_dir, "/", name);
  (void)MakeDirs(dir);  // a failure surfaces when the stage writes there
  return dir;
}

std::string FormatTable(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size());
  for (size_t c = 0; c < header.size(); ++c) width[c] = header[c].size();
  for (const auto& r : rows)
    for (size_t c = 0; c < r.size() && c < width.size(); ++c) width[c] = std::max(width[c], r[c].size());
  auto line = [&](const std::vector<std::string>& cells) {
    std::string s;
    for (size_t c = 0; c < width.size(); ++c) {
      const std::string cell = c < cells.size() ? cells[c] : "";
      // First column left-aligned (names), the rest right-aligned (numbers).
      s += c == 0 ? cell + std::string(width[c] - cell.size(), ' ') : std::string(width[c] - cell.size(), ' ') + cell;
      if (c + 1 < width.size()) s += "  ";
    }
    return s + "\n";
  };
  std::string out = line(header);
  size_t total = 0;
  for (size_t w : width) total += w + 2;
  out += std::string(total > 2 ? total - 2 : 0, '-') + "\n";
  for (const auto& r : rows) out += line(r);
  return out;
}

void DemoContext::Table(const std::string& title, const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows) const {
  std::cout << "\n== " << title << " ==\n" << FormatTable(header, rows) << std::flush;
}

namespace {

int RunDemo(int argc, char** argv) {
  std::string shared = "../shared", output = "out/demo", device = "cpu";
  bool quick = false;
  std::vector<std::string> only, overrides;
  std::sort(DemoStages().begin(), DemoStages().end(),
            [](const DemoStage& a, const DemoStage& b) { return a.order < b.order; });
  std::string stage_help = "stages to run (default: all):";
  for (const auto& s : DemoStages()) absl::StrAppend(&stage_help, "\n        ", s.name, ": ", s.summary);
  cli::ArgParser p("wfm demo", "The world-model demo: runs every stage on the shared media into OUTPUT.");
  p.Option("shared", &shared, "the shared data folder (media/, fixtures/)")
      .Option("output", &output, "output folder")
      .Flag("quick", &quick, "a fast pass (fewer frames and steps)")
      .Option("device", &device, "where models train and run: cpu, cuda (cuda scales the quality knobs up)")
      .MultiOption("stages", &only, stage_help)
      .MultiOption("set", &overrides, "override a knob of the run plan, e.g. --set ar_steps=800 (see plan.json)")
      .Epilog("example: wfm demo --shared ../shared --output out/demo --quick");
  if (auto rc = p.Parse(argc, argv)) return *rc;
  for (const auto& name : only) {
    if (std::none_of(DemoStages().begin(), DemoStages().end(), [&](const DemoStage& s) { return s.name == name; })) {
      return p.UsageError(absl::StrCat("unknown stage '", name, "'"));
    }
  }
  DemoContext ctx;
  ctx.shared_dir = shared;
  ctx.output_dir = output;
  ctx.quick = quick;
  ctx.device = device;
  ctx.overrides = overrides;
  ctx.threads = at::get_num_threads();
  absl::StatusOr<DemoPlan> plan = DemoPlan::For(ctx);
  if (!plan.ok()) return p.UsageError(std::string(plan.status().message()));
  if (absl::Status s = MakeDirs(output); !s.ok()) return cli::ReportError(s);
  if (absl::Status s = WriteFileAtomically(output + "/plan.json", plan->ToJson().dump(2) + "\n"); !s.ok()) {
    return cli::ReportError(s);
  }
  std::cout << "wfm demo" << (quick ? " (quick)" : "") << ": shared " << shared << " -> " << output << "\n"
            << RuntimeSummary() << "\n";
  std::vector<std::vector<std::string>> timing;
  int failures = 0;
  std::vector<const DemoStage*> selected;
  for (const DemoStage& stage : DemoStages()) {
    if (only.empty() || std::find(only.begin(), only.end(), stage.name) != only.end()) selected.push_back(&stage);
  }
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < selected.size(); ++i) {
    const DemoStage& stage = *selected[i];
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::cout << "\n-- stage " << i + 1 << "/" << selected.size() << " " << stage.name << ": " << stage.summary
              << " (" << FormatDuration(elapsed) << " elapsed)\n"
              << std::flush;
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = CpuSeconds();
    absl::Status s = stage.run(ctx);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double cpu = CpuSeconds() - c0;
    timing.push_back({stage.name, s.ok() ? "ok" : "FAILED", FormatDuration(dt), FormatDuration(cpu)});
    if (!s.ok()) {
      ++failures;
      std::cerr << "wfm demo: stage " << stage.name << " failed: " << s.message() << "\n";
      ctx.summary[stage.name]["error"] = std::string(s.message());
    }
    ctx.summary[stage.name]["seconds"] = dt;
    ctx.summary[stage.name]["cpu_seconds"] = cpu;
  }
  ctx.Table("demo summary", {"stage", "status", "wall", "CPU"}, timing);
  const std::string summary_path = output + "/summary.json";
  if (absl::Status s = WriteFileAtomically(summary_path, ctx.summary.dump(2) + "\n"); !s.ok()) {
    return cli::ReportError(s);
  }
  std::cout << "results: " << summary_path << "\n";
  return failures ? cli::kExitFailure : cli::kExitOk;
}

}  // namespace

WFM_REGISTER_COMMAND("demo", "run the world-model demo on the shared media (make demo)", RunDemo);

}  // namespace wfm::demo
