// Demo stage "report": OUTPUT/report.html, a self-contained page (opens offline; images and videos by relative
// path) built from OUTPUT/metrics.json and the stages' results: the scores of every predictor with a plain
// statement of whether each model beats copy-last-frame, error-vs-horizon plots (SVG), frame strips and MP4s of
// held-out windows, the tokenizers, the curation outcome, the time of every stage and the commands that
// reproduce the run. Every number in the scores table is formatted from metrics.json (the test checks this).
#include <cmath>
#include <limits>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "demo_common.h"
#include "wfm/core/file_util.h"
#include "wfm/core/report.h"
#include "wfm/core/runtime.h"
#include "wfm/core/status.h"

namespace wfm::demo {

namespace {

// The digits the report prints for each score (the --quick test formats metrics.json the same way).
std::string FormatScore(const std::string& metric, double v) { return Fmt(v, metric == "ssim" ? 3 : 2); }

double Num(const nlohmann::ordered_json& j) {
  return j.is_number() ? j.get<double>() : std::numeric_limits<double>::quiet_NaN();
}

std::string Verdict(const nlohmann::ordered_json& model, const nlohmann::ordered_json& copy_last) {
  std::vector<std::string> parts;
  for (const auto& [key, name, higher_better] :
       {std::make_tuple("psnr", "PSNR", true), std::make_tuple("ssim", "SSIM", true),
        std::make_tuple("pos_err_px", "object position", false)}) {
    const double m = Num(model["mean"][key]), c = Num(copy_last["mean"][key]);
    const bool better = higher_better ? m > c : m < c;
    parts.push_back(absl::StrCat(better ? "beats" : "does NOT beat", " copy-last on ", name));
  }
  return absl::StrJoin(parts, ", ");
}

absl::Status RunReportStage(DemoContext& ctx) {
  WFM_ASSIGN_OR_RETURN(const DemoPlan plan, DemoPlan::For(ctx));
  const std::string metrics_path = OutPath(ctx, "metrics.json");
  WFM_ASSIGN_OR_RETURN(std::string metrics_text, ReadFile(metrics_path));
  const nlohmann::ordered_json metrics = nlohmann::ordered_json::parse(metrics_text, nullptr, false);
  if (metrics.is_discarded() || !metrics.contains("predictors")) {
    return absl::DataLossError(absl::StrCat(metrics_path, ": not a demo metrics file"));
  }
  const nlohmann::ordered_json& preds = metrics["predictors"];
  const nlohmann::ordered_json& task = metrics["task"];

  HtmlReport r("wfm demo: a physical world, learned end to end");
  r.Paragraph(absl::StrFormat(
      "A small 2D physics world (balls and boxes, gravity, bounces, friction, an occluder, changing light) is "
      "simulated, curated, and learned by video tokenizers and world models, all trained from scratch in this "
      "run (%s mode, device %s). The models then predict the future of held-out clips they never saw: given "
      "the first %d frames and the clip's caption they generate the next %d frames (%d seeds each), which are "
      "scored against the simulator's truth and against two simple baselines.",
      plan.mode, plan.device, plan.context_frames, plan.future_frames, plan.seeds));

  // ---- scores ----
  r.Heading("Scores (means over the horizon)");
  std::vector<std::vector<std::string>> rows;
  for (const auto& [name, p] : preds.items()) {
    if (p["status"] != "ok") {
      rows.push_back({p["label"], p["kind"], "-", "-", "-", "-", p["status"]});
      continue;
    }
    std::string note = p["kind"] == "reference" ? "tokenizer ceiling (sees the true future)" : "baseline";
    if (p["kind"] == "model") note = preds.contains("copy_last") ? Verdict(p, preds["copy_last"]) : "";
    rows.push_back({p["label"], p["kind"], FormatScore("psnr", Num(p["mean"]["psnr"])),
                    FormatScore("ssim", Num(p["mean"]["ssim"])), FormatScore("pos_err_px", Num(p["mean"]["pos_err_px"])),
                    FormatScore("detected", Num(p["mean"]["detected"])), note});
  }
  r.Table({"predictor", "kind", "PSNR dB", "SSIM", "position error px", "objects detected", "verdict"}, rows);
  r.Paragraph(absl::StrFormat(
      "%d held-out windows, %dx%d pixels. PSNR and SSIM (Gaussian 11x11) per predicted frame against the true "
      "frame. Position error: the colour detector (world::DetectObjects) run on the predicted frame vs the "
      "simulator's true object centre, over objects at least %.0f%% visible; an object the detector cannot find "
      "counts as %.0f px. 'objects detected' is the fraction found. Stochastic models are averaged over seeds. "
      "The 'reference' rows are no predictors: each tokenizer encodes and decodes the TRUE frames, which is about "
      "the best a world model on its latents can show through that decoder.",
      static_cast<int>(Num(task["windows"])), plan.size, plan.size, 100 * Num(task["min_visible"]), Num(task["miss_penalty_px"])));

  // ---- plots ----
  r.Heading("Error vs horizon");
  for (const auto& [key, title, unit] :
       {std::make_tuple("psnr", "PSNR vs frames ahead (higher is better)", "dB"),
        std::make_tuple("ssim", "SSIM vs frames ahead (higher is better)", "SSIM"),
        std::make_tuple("pos_err_px", "object position error vs frames ahead (lower is better)", "pixels")}) {
    std::vector<PlotSeries> series;
    for (const auto& [name, p] : preds.items()) {
      if (p["status"] != "ok") continue;
      PlotSeries s{p["label"].get<std::string>()};
      s.y = p["per_step"][key].get<std::vector<double>>();
      for (size_t k = 0; k < s.y.size(); ++k) s.x.push_back(k + 1);
      s.dashed = p["kind"] != "model";
      series.push_back(std::move(s));
    }
    r.Raw(SvgLinePlot(series, {.title = title, .x_label = "frames ahead", .y_label = unit}));
  }

  // ---- examples ----
  r.Heading("Held-out examples");
  r.Paragraph("Each strip: the last given frame, then the predicted frames (first seed), one row per predictor. "
              "The MP4 shows the given and the predicted frames side by side at half speed.");
  for (const auto& ex : metrics.value("shown", nlohmann::json::array())) {
    const std::string rows_text = absl::StrJoin(ex["rows"].get<std::vector<std::string>>(), " / ");
    r.Heading(absl::StrCat(ex["window"].get<std::string>(), ": \"", ex["caption"].get<std::string>(), "\""), 3);
    r.Image(absl::StrCat("predictions/", ex["png"].get<std::string>()), absl::StrCat("rows: ", rows_text));
    r.Raw(absl::StrCat("<p><a href=\"predictions/", HtmlEscape(ex["mp4"]), "\">MP4</a> (columns: ",
                       HtmlEscape(rows_text), ")</p>\n"));
  }

  // ---- stages ----
  if (ctx.summary.contains("tokenizer")) {
    r.Heading("Tokenizers (held-out reconstruction)");
    std::vector<std::vector<std::string>> trows;
    for (const auto& [tag, t] : ctx.summary["tokenizer"].items()) {
      if (!t.is_object() || !t.contains("name")) continue;
      trows.push_back({t["name"], absl::StrFormat("%.2fM", Num(t["parameters"]) / 1e6), absl::StrCat(t["steps"].dump()),
                       Fmt(Num(t["heldout_psnr"])), Fmt(Num(t["seconds"]), 1)});
    }
    r.Table({"tokenizer", "parameters", "steps", "PSNR dB", "train s"}, trows);
  }
  if (ctx.summary.contains("curate") && ctx.summary["curate"].contains("sources")) {
    r.Heading("Curation");
    std::vector<std::vector<std::string>> crows;
    for (const auto& [src, s] : ctx.summary["curate"]["sources"].items()) {
      std::vector<std::string> why;
      for (const auto& [reason, n] : s["dropped"].items()) why.push_back(absl::StrCat(reason, " ", n.dump()));
      crows.push_back({src, s["clips"].dump(), s["kept"].dump(), why.empty() ? "-" : absl::StrJoin(why, ", ")});
    }
    r.Table({"source", "clips", "kept", "dropped (reason, count)"}, crows);
  }
  r.Heading("Time per stage");
  std::vector<std::vector<std::string>> srows;
  double total = 0;
  for (const auto& [stage, s] : ctx.summary.items()) {
    if (!s.is_object() || !s.contains("seconds")) continue;
    total += Num(s["seconds"]);
    srows.push_back({stage, Fmt(Num(s["seconds"]), 1), Fmt(Num(s.value("cpu_seconds", nlohmann::json())), 1),
                     s.contains("error") ? s["error"].get<std::string>() : "ok"});
  }
  srows.push_back({"total (before the report)", Fmt(total, 1), "", ""});
  r.Table({"stage", "wall s", "CPU s", "status"}, srows);
  r.Paragraph(RuntimeSummary());

  r.Heading("Reproduce");
  const std::string base = absl::StrCat("build/bin/wfm demo --shared ", ctx.shared_dir, " --output ", ctx.output_dir,
                                        ctx.quick ? " --quick" : "", plan.device != "cpu" ? " --device " + plan.device : "");
  r.Code(absl::StrCat("make demo            # = ", base, "\n", base, " --stages evaluate report   # re-score the trained models\n",
                      base, " --set ar_steps=2000 --set dit_steps=2000   # any knob of the plan below\n"));
  r.Heading("Run plan", 3);
  r.Code(plan.ToJson().dump(2));
  return r.Write(OutPath(ctx, "report.html"));
}

}  // namespace

WFM_REGISTER_DEMO_STAGE(90, "report", "write OUTPUT/report.html", RunReportStage);

}  // namespace wfm::demo
