// SVG line plots and the HTML report builder (see report.h).
#include "wfm/core/report.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "wfm/core/file_util.h"

namespace wfm {
namespace {

const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"};

// "Nice" tick step for a range (1, 2 or 5 times a power of ten).
double NiceStep(double range, int target_ticks) {
  if (!(range > 0)) return 1.0;
  double raw = range / std::max(1, target_ticks);
  double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double n = raw / mag;
  return (n < 1.5 ? 1 : n < 3 ? 2 : n < 7 ? 5 : 10) * mag;
}

std::string FormatTick(double v) {
  if (v == 0) return "0";
  double a = std::abs(v);
  if (a >= 1e5 || a < 1e-3) return absl::StrFormat("%.1e", v);
  std::string s = absl::StrFormat("%.4f", v);
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

}  // namespace

std::string HtmlEscape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string SvgLinePlot(const std::vector<PlotSeries>& series, const PlotOptions& o) {
  const double W = o.width, H = o.height;
  const double left = 64, right = 150, top = o.title.empty() ? 16 : 36, bottom = 48;
  const double pw = W - left - right, ph = H - top - bottom;
  auto ty = [&](double y) { return o.log_y ? std::log10(y) : y; };
  double xmin = std::numeric_limits<double>::infinity(), xmax = -xmin, ymin = xmin, ymax = -xmin;
  for (const auto& s : series) {
    for (size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i]) || (o.log_y && s.y[i] <= 0)) continue;
      xmin = std::min(xmin, s.x[i]);
      xmax = std::max(xmax, s.x[i]);
      ymin = std::min(ymin, ty(s.y[i]));
      ymax = std::max(ymax, ty(s.y[i]));
    }
  }
  if (!std::isfinite(xmin)) xmin = 0, xmax = 1, ymin = 0, ymax = 1;
  if (xmax == xmin) xmax = xmin + 1;
  if (ymax == ymin) ymax = ymin + 1;
  double ystep = NiceStep(ymax - ymin, 5), xstep = NiceStep(xmax - xmin, 8);
  ymin = std::floor(ymin / ystep) * ystep;
  ymax = std::ceil(ymax / ystep) * ystep;
  auto px = [&](double x) { return left + (x - xmin) / (xmax - xmin) * pw; };
  auto py = [&](double y) { return top + (1 - (ty(y) - ymin) / (ymax - ymin)) * ph; };
  auto pyt = [&](double t) { return top + (1 - (t - ymin) / (ymax - ymin)) * ph; };

  std::string svg = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
      "font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
      o.width, o.height, o.width, o.height);
  if (!o.title.empty()) {
    absl::StrAppendFormat(&svg, "<text x=\"%.1f\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">%s</text>\n",
                          left + pw / 2, HtmlEscape(o.title));
  }
  for (double t = ymin; t <= ymax + ystep * 1e-6; t += ystep) {
    double y = pyt(t);
    std::string label = o.log_y ? FormatTick(std::pow(10.0, t)) : FormatTick(t);
    absl::StrAppendFormat(&svg,
                          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                          "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                          left, y, left + pw, y, left - 6, y + 4, label);
  }
  for (double t = std::ceil(xmin / xstep) * xstep; t <= xmax + xstep * 1e-6; t += xstep) {
    double x = px(t);
    absl::StrAppendFormat(&svg,
                          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>"
                          "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
                          x, top, x, top + ph, x, top + ph + 16, FormatTick(t));
  }
  absl::StrAppendFormat(&svg, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#333\"/>\n",
                        left, top, pw, ph);
  absl::StrAppendFormat(&svg, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", left + pw / 2, H - 10,
                        HtmlEscape(o.x_label));
  absl::StrAppendFormat(&svg,
                        "<text x=\"14\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 14 %.1f)\">%s</text>\n",
                        top + ph / 2, top + ph / 2, HtmlEscape(o.y_label + (o.log_y ? " (log)" : "")));
  for (size_t k = 0; k < series.size(); ++k) {
    const auto& s = series[k];
    std::string color = s.color.empty() ? kColors[k % 8] : s.color;
    std::string points;
    for (size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i]) || (o.log_y && s.y[i] <= 0)) continue;
      absl::StrAppendFormat(&points, "%.1f,%.1f ", px(s.x[i]), py(s.y[i]));
    }
    absl::StrAppendFormat(&svg, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"%s\"/>\n", color,
                          s.dashed ? " stroke-dasharray=\"6 4\"" : "", points);
    double ly = top + 12 + 18 * k;
    absl::StrAppendFormat(&svg,
                          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"%s/>"
                          "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n",
                          left + pw + 10, ly, left + pw + 34, ly, color, s.dashed ? " stroke-dasharray=\"6 4\"" : "",
                          left + pw + 40, ly + 4, HtmlEscape(s.name));
  }
  svg += "</svg>\n";
  return svg;
}

HtmlReport::HtmlReport(std::string title) : title_(std::move(title)) {}

HtmlReport& HtmlReport::Heading(const std::string& text, int level) {
  level = std::clamp(level, 1, 6);
  absl::StrAppendFormat(&body_, "<h%d>%s</h%d>\n", level, HtmlEscape(text), level);
  return *this;
}
HtmlReport& HtmlReport::Paragraph(const std::string& text) {
  absl::StrAppend(&body_, "<p>", HtmlEscape(text), "</p>\n");
  return *this;
}
HtmlReport& HtmlReport::Raw(const std::string& html) {
  absl::StrAppend(&body_, html, "\n");
  return *this;
}
HtmlReport& HtmlReport::Table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  body_ += "<table>\n<tr>";
  for (const auto& h : header) absl::StrAppend(&body_, "<th>", HtmlEscape(h), "</th>");
  body_ += "</tr>\n";
  for (const auto& r : rows) {
    body_ += "<tr>";
    for (const auto& c : r) absl::StrAppend(&body_, "<td>", HtmlEscape(c), "</td>");
    body_ += "</tr>\n";
  }
  body_ += "</table>\n";
  return *this;
}
HtmlReport& HtmlReport::Image(const std::string& path, const std::string& caption, int width) {
  absl::StrAppend(&body_, "<figure><img src=\"", HtmlEscape(path), "\"",
                  width > 0 ? absl::StrCat(" width=\"", width, "\"") : "", " alt=\"", HtmlEscape(caption), "\">");
  if (!caption.empty()) absl::StrAppend(&body_, "<figcaption>", HtmlEscape(caption), "</figcaption>");
  body_ += "</figure>\n";
  return *this;
}
HtmlReport& HtmlReport::Code(const std::string& text) {
  absl::StrAppend(&body_, "<pre><code>", HtmlEscape(text), "</code></pre>\n");
  return *this;
}

std::string HtmlReport::Html() const {
  return absl::StrCat(
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>", HtmlEscape(title_),
      "</title>\n<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
      "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
      "th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}figure{margin:1em 0}"
      "img{image-rendering:pixelated;max-width:100%}pre{background:#f6f6f6;padding:8px;overflow-x:auto}"
      "figcaption{font-size:90%;color:#555}</style></head>\n<body>\n<h1>",
      HtmlEscape(title_), "</h1>\n", body_, "</body></html>\n");
}

absl::Status HtmlReport::Write(const std::string& path) const { return WriteFileAtomically(path, Html()); }

}  // namespace wfm
