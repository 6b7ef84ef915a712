// Small value types shared by the nn building blocks.
#pragma once

#include <array>
#include <cstdint>

namespace wfm::nn {

// A latent grid shape (T, H, W); tokens are laid out in raster order t, h, w.
using GridShape = std::array<int64_t, 3>;

}  // namespace wfm::nn
