// Human-facing outputs: SVG line plots (training curves, error vs horizon) and a small self-contained HTML
// report builder (tables, inline SVG, images linked by relative path, code blocks). Everything opens offline.
//
//   PlotSeries s{"AR", {1, 2, 3}, {24.1, 21.0, 19.5}};
//   std::string svg = SvgLinePlot({s}, {.title = "PSNR vs horizon", .x_label = "frame", .y_label = "dB"});
//   HtmlReport r("wfm demo");
//   r.Heading("Scores").Table({"model", "PSNR"}, {{"AR", "21.3"}}).Raw(svg);
//   WFM_RETURN_IF_ERROR(r.Write("out/demo/report.html"));
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace wfm {

struct PlotSeries {
  std::string name;
  std::vector<double> x, y;
  std::string color;  // CSS colour; empty = from a built-in palette
  bool dashed = false;
};

struct PlotOptions {
  std::string title, x_label, y_label;
  int width = 640, height = 360;
  bool log_y = false;
};

// A line chart with axes, ticks, grid and a legend. Non-finite points are skipped.
std::string SvgLinePlot(const std::vector<PlotSeries>& series, const PlotOptions& options);

// Escapes &, <, >, " and ' for HTML text and attributes.
std::string HtmlEscape(const std::string& text);

class HtmlReport {
 public:
  explicit HtmlReport(std::string title);
  HtmlReport& Heading(const std::string& text, int level = 2);
  HtmlReport& Paragraph(const std::string& text);  // escaped
  HtmlReport& Raw(const std::string& html);         // inserted as is (SVG, custom markup)
  HtmlReport& Table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows);
  // <img> with a path relative to the report file, and an optional caption.
  HtmlReport& Image(const std::string& relative_path, const std::string& caption = "", int width = 0);
  HtmlReport& Code(const std::string& text);
  std::string Html() const;
  // Writes atomically.
  absl::Status Write(const std::string& path) const;

 private:
  std::string title_;
  std::string body_;
};

}  // namespace wfm
