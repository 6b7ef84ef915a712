// PNG grids and SVG training curves (see train/visualize.h).
#include "wfm/core/train/visualize.h"

#include <ATen/ATen.h>

#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "wfm/core/file_util.h"
#include "wfm/core/report.h"
#include "wfm/core/status.h"
#include "wfm/core/train/jsonl_log.h"
#include "wfm/core/video_io.h"

namespace wfm::train {

at::Tensor ToDisplayFrames(const at::Tensor& clip) {
  at::Tensor c = clip.detach().to(at::kCPU);
  if (c.scalar_type() == at::kByte) return c.dim() == 3 ? c.unsqueeze(0) : c;
  if (c.dim() == 3) c = c.unsqueeze(1);  // [3, 1, H, W]
  TORCH_CHECK(c.dim() == 4 && c.size(0) == 3, "ToDisplayFrames: expected [3, T, H, W] or [3, H, W] in [-1, 1]");
  return ((c.to(at::kFloat).clamp(-1, 1) + 1) * 127.5).round().to(at::kByte).permute({1, 2, 3, 0}).contiguous();
}

absl::StatusOr<at::Tensor> MakeImageGrid(const std::vector<at::Tensor>& rows, const GridOptions& options) {
  return CatchToStatus("image grid", [&]() -> absl::StatusOr<at::Tensor> {
    if (rows.empty()) return absl::InvalidArgumentError("image grid: no rows");
    std::vector<at::Tensor> frames;
    int64_t h = -1, w = -1, cols = 0;
    for (const auto& r : rows) {
      at::Tensor f = ToDisplayFrames(r);  // [T, H, W, 3]
      if (f.size(0) > options.max_frames) {
        at::Tensor idx = at::linspace(0, f.size(0) - 1, options.max_frames).round().to(at::kLong);
        f = f.index_select(0, idx);
      }
      if (h < 0) {
        h = f.size(1);
        w = f.size(2);
      }
      if (f.size(1) != h || f.size(2) != w)
        return absl::InvalidArgumentError(absl::StrCat("image grid: frames of ", f.size(1), "x", f.size(2),
                                                       " and ", h, "x", w, " cannot share a grid"));
      cols = std::max(cols, f.size(0));
      frames.push_back(f);
    }
    const int64_t p = options.pad, n = static_cast<int64_t>(frames.size());
    at::Tensor grid = at::full({n * h + (n + 1) * p, cols * w + (cols + 1) * p, 3}, options.background, at::kByte);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t c = 0; c < frames[r].size(0); ++c)
        grid.narrow(0, p + r * (h + p), h).narrow(1, p + c * (w + p), w).copy_(frames[r][c]);
    return grid;
  });
}

absl::Status WriteImageGrid(const std::string& png_path, const std::vector<at::Tensor>& rows,
                            const GridOptions& options) {
  WFM_ASSIGN_OR_RETURN(at::Tensor grid, MakeImageGrid(rows, options));
  return WritePng(png_path, grid);
}

absl::Status WriteReconstructionGrid(const std::string& png_path, const at::Tensor& truth, const at::Tensor& recon,
                                     int64_t max_items, bool error_row, const GridOptions& options) {
  if (truth.sizes() != recon.sizes() || (truth.dim() != 4 && truth.dim() != 5))
    return absl::InvalidArgumentError(absl::StrCat("reconstruction grid: truth [", absl::StrJoin(truth.sizes(), ","),
                                                   "] and reconstruction [", absl::StrJoin(recon.sizes(), ","),
                                                   "] must be equal [B, 3, (T,) H, W]"));
  std::vector<at::Tensor> rows;
  for (int64_t b = 0; b < std::min(max_items, truth.size(0)); ++b) {
    at::Tensor t = truth[b].detach().to(at::kCPU, at::kFloat), r = recon[b].detach().to(at::kCPU, at::kFloat);
    rows.push_back(t);
    rows.push_back(r);
    if (error_row) rows.push_back(((t - r).abs() * 4.0 - 1.0).clamp(-1, 1));  // 0 error -> black
  }
  return WriteImageGrid(png_path, rows, options);
}

absl::Status WriteTrainingCurves(const std::string& jsonl_path, const std::string& svg_path,
                                 const std::vector<std::string>& keys) {
  WFM_ASSIGN_OR_RETURN(auto records, JsonlLog::ReadAll(jsonl_path));
  std::vector<std::string> charts;
  int height = 0;
  for (const auto& key : keys) {
    std::map<std::string, PlotSeries> by_split;
    for (const auto& r : records) {
      if (!r.contains(key) || !r[key].is_number() || !r.contains("step")) continue;
      const std::string split = r.value("split", "train");
      PlotSeries& s = by_split[split];
      s.name = split;
      s.dashed = split != "train";
      s.x.push_back(r["step"].get<double>());
      s.y.push_back(r[key].get<double>());
    }
    if (by_split.empty()) continue;
    std::vector<PlotSeries> series;
    for (auto& [split, s] : by_split) series.push_back(std::move(s));
    PlotOptions o;
    o.title = key;
    o.x_label = "step";
    o.y_label = key;
    o.log_y = key == "loss" || key.find("loss") != std::string::npos;
    for (const auto& s : series)
      for (double y : s.y)
        if (y <= 0) o.log_y = false;
    std::string svg = SvgLinePlot(series, o);
    // Stack the charts: each becomes a nested <svg> at its own vertical offset.
    const std::string open = "<svg ";
    if (svg.rfind(open, 0) == 0) svg = absl::StrCat("<svg y=\"", height, "\" ", svg.substr(open.size()));
    height += o.height;
    charts.push_back(svg);
  }
  if (charts.empty())
    return absl::NotFoundError(absl::StrCat(jsonl_path, " has none of the keys ", absl::StrJoin(keys, ", ")));
  std::string doc = absl::StrCat("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"640\" height=\"", height,
                                 "\" viewBox=\"0 0 640 ", height, "\">\n", absl::StrJoin(charts, "\n"), "\n</svg>\n");
  return WriteFileAtomically(svg_path, doc);
}

}  // namespace wfm::train
