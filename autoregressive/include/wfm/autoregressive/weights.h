// Loading and saving AR network weights (reference state-dict names; strict by default).
//
//   ar::ArTransformer net(config);
//   WFM_RETURN_IF_ERROR(ar::LoadWeights(*net, "model.safetensors"));
#pragma once

#include <string>

#include "absl/status/status.h"
#include "wfm/autoregressive/transformer.h"

namespace wfm::ar {

struct WeightLoadOptions {
  bool allow_missing = false;
  bool allow_unexpected = false;
};

// Loads a checkpoint into `net`, converting dtypes; every missing / unexpected / wrong-shape tensor is reported
// in one error before anything is copied. A `tok_embeddings.weight` with fewer rows than the config needs is
// named explicitly (vocabulary mismatch).
absl::Status LoadWeights(ArTransformerImpl& net, const std::string& path, const WeightLoadOptions& options = {});

// Writes the state dict (reference names) atomically as safetensors.
absl::Status SaveWeights(const ArTransformerImpl& net, const std::string& path);

}  // namespace wfm::ar
