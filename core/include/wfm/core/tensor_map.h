// The name -> tensor map that every checkpoint reader returns and every writer takes.
#pragma once

#include <map>
#include <string>

#include <ATen/core/Tensor.h>

namespace wfm {

using TensorMap = std::map<std::string, at::Tensor>;

}  // namespace wfm
