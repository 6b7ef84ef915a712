// AR weight IO (see wfm/autoregressive/weights.h) through the core checkpoint loader, which maps foreign
// spellings ("model." / "module." prefixes, TransformerEngine _extra_state) and reports every mismatch at once.
#include "wfm/autoregressive/weights.h"

#include "absl/strings/str_cat.h"
#include "wfm/core/checkpoint.h"
#include "wfm/core/logging.h"
#include "wfm/core/status.h"

namespace wfm::ar {

absl::Status LoadWeights(ArTransformerImpl& net, const std::string& path, const WeightLoadOptions& options) {
  LoadOptions o;
  o.allow_missing = options.allow_missing;
  o.allow_unexpected = options.allow_unexpected;
  absl::StatusOr<LoadReport> r = LoadCheckpoint(net, path, o);
  if (!r.ok()) {
    const absl::string_view m = r.status().message();
    if (m.find("tok_embeddings.weight") != m.npos || m.find("output.weight") != m.npos)
      return absl::Status(
          r.status().code(),
          absl::StrCat(m, " - vocabulary mismatch? the config has vocab_size ", net.config.vocab_size,
                       net.config.HasBov() ? absl::StrCat(" (text_to_video: ", net.config.EmbeddingVocab(),
                                                          " embedding rows incl. <bov>)")
                                           : std::string()));
    return r.status();
  }
  WFM_LOG(INFO) << "AR weights: " << r->Summary();
  return absl::OkStatus();
}

absl::Status SaveWeights(const ArTransformerImpl& net, const std::string& path) {
  return SaveModule(net, path, {{"format", "pt"}, {"model", "wfm autoregressive"}});
}

}  // namespace wfm::ar
