// What trainers show humans: PNG grids of frames (truth vs reconstruction, samples) and SVG training curves from
// the JSONL metrics log. Used by every wfm trainer.
//
//   // Row per clip: truth, reconstruction, |error| x4.
//   WFM_RETURN_IF_ERROR(train::WriteReconstructionGrid(out + "/recon_001000.png", truth, recon));
//   WFM_RETURN_IF_ERROR(train::WriteTrainingCurves(out + "/metrics.jsonl", out + "/curves.svg", {"loss", "psnr"}));
#pragma once

#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace wfm::train {

struct GridOptions {
  int pad = 2;                   // pixels between cells
  int background = 255;          // grey level of the padding
  int64_t max_frames = 8;        // frames per row (evenly subsampled when a clip is longer)
};

// Brings a clip to uint8 frames [T, H, W, 3]: accepts uint8 [T, H, W, 3] / [H, W, 3], or floating model layout
// [3, T, H, W] / [3, H, W] in [-1, 1] (clamped and rounded).
at::Tensor ToDisplayFrames(const at::Tensor& clip);

// One image from rows of clips (each row a clip; frames side by side). Rows may differ in length; all frames
// must share H and W. Returns uint8 [H', W', 3].
absl::StatusOr<at::Tensor> MakeImageGrid(const std::vector<at::Tensor>& rows, const GridOptions& options = {});
absl::Status WriteImageGrid(const std::string& png_path, const std::vector<at::Tensor>& rows,
                            const GridOptions& options = {});

// For batches [B, 3, T, H, W] (or [B, 3, H, W]) in [-1, 1]: per item, a truth row, a reconstruction row and
// (with `error_row`) a row of |truth - reconstruction| amplified 4x; at most `max_items` items.
absl::Status WriteReconstructionGrid(const std::string& png_path, const at::Tensor& truth, const at::Tensor& recon,
                                     int64_t max_items = 4, bool error_row = true, const GridOptions& options = {});

// Reads a metrics.jsonl (records {"step", "split", ...}) and writes one SVG with a chart per key (train and val
// series where present), stacked vertically. Keys absent from the log are skipped; NotFound if none is present.
absl::Status WriteTrainingCurves(const std::string& jsonl_path, const std::string& svg_path,
                                 const std::vector<std::string>& keys);

}  // namespace wfm::train
