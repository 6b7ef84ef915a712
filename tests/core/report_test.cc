// SVG plots and the HTML report: well-formed output, escaping, scaling of points.
#include "wfm/core/report.h"

#include <cmath>

#include "test_support.h"
#include "wfm/core/file_util.h"

namespace wfm {
namespace {

int Count(const std::string& s, const std::string& needle) {
  int n = 0;
  for (size_t p = s.find(needle); p != std::string::npos; p = s.find(needle, p + 1)) ++n;
  return n;
}

TEST(ReportTest, PlotHasOnePolylinePerSeriesAndMapsExtremesToTheFrame) {
  PlotSeries a{"AR <model>", {0, 1, 2}, {10, 20, 30}};
  PlotSeries b{"copy-last", {0, 1, 2}, {5, NAN, 15}, "", true};
  PlotOptions o;
  o.title = "PSNR & horizon";
  std::string svg = SvgLinePlot({a, b}, o);
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_EQ(Count(svg, "<polyline"), 2);
  EXPECT_NE(svg.find("AR &lt;model&gt;"), std::string::npos);
  EXPECT_NE(svg.find("PSNR &amp; horizon"), std::string::npos);
  EXPECT_NE(svg.find("stroke-dasharray"), std::string::npos);
  // x = 0 maps to the left edge of the plot area (64 px), x = 2 to the right edge (640 - 150 = 490 px).
  EXPECT_NE(svg.find("points=\"64.0,"), std::string::npos) << svg;
  EXPECT_NE(svg.find("490.0,"), std::string::npos) << svg;
  // The NaN point of series b is skipped: two points only.
  size_t pb = svg.rfind("points=\"");
  std::string pts = svg.substr(pb + 8, svg.find('"', pb + 8) - pb - 8);
  EXPECT_EQ(Count(pts, ","), 2) << pts;
}

TEST(ReportTest, EmptyAndLogPlotsAreValid) {
  std::string svg = SvgLinePlot({}, {});
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  PlotOptions o;
  o.log_y = true;
  svg = SvgLinePlot({{"loss", {1, 2, 3}, {1.0, 0.1, 0.0}}}, o);  // y = 0 cannot be drawn on a log axis
  EXPECT_NE(svg.find("(log)"), std::string::npos);
}

TEST(ReportTest, HtmlReportEscapesAndWritesAtomically) {
  HtmlReport r("demo <1>");
  r.Heading("Scores").Paragraph("a < b").Table({"model", "PSNR"}, {{"AR", "21.3"}, {"<x>", "1"}});
  r.Image("frames/a.png", "truth vs AR").Code("make demo").Raw("<svg></svg>");
  std::string path = testing::TempDir() + "/r/report.html";
  WFM_ASSERT_OK(r.Write(path));
  WFM_ASSERT_OK_AND_ASSIGN(std::string html, ReadFile(path));
  EXPECT_NE(html.find("<title>demo &lt;1&gt;</title>"), std::string::npos);
  EXPECT_NE(html.find("<td>&lt;x&gt;</td>"), std::string::npos);
  EXPECT_NE(html.find("<img src=\"frames/a.png\""), std::string::npos);
  EXPECT_NE(html.find("<svg></svg>"), std::string::npos);
  EXPECT_EQ(Count(html, "<tr>"), 3);
}

}  // namespace
}  // namespace wfm
