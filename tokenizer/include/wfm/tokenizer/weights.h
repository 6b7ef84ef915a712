// Loading tokenizer checkpoints into a TokenizerNetwork, strictly: every tensor the network (or the requested
// half of it) has must be in the checkpoint with the same shape, and the checkpoint must hold nothing else;
// every problem (missing / unexpected / wrong shape / wrong dtype kind) is listed in one error.
//
// Accepted: a safetensors file with the reference names; a published `model.pt` (keys prefixed `network.`,
// EMA copies ignored unless asked for); TorchScript `autoencoder.jit`, `encoder.jit`, `decoder.jit` (their
// parameters/buffers under the nn.Sequential names of encoder_jit()/decoder_jit(): `encoder.*`,
// `quant_conv.*`, `quantizer.*` / `inv_quant.quantizer.*`, `post_quant_conv.*`, `decoder.*`); a directory
// holding such files; or several files joined with commas ("encoder.jit,decoder.jit").
//
//   TokenizerNetwork net(config);
//   WFM_ASSIGN_OR_RETURN(LoadSummary s, LoadTokenizerWeights(*net, "ckpt/", WeightsPart::kAll));
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <torch/nn/module.h>

#include "absl/status/statusor.h"
#include "wfm/core/tensor_map.h"
#include "wfm/tokenizer/config.h"
#include "wfm/tokenizer/network.h"

namespace wfm::tokenizer {

// Which half of the network must be covered.
enum class WeightsPart { kAll, kEncoder, kDecoder };

struct LoadSummary {
  std::vector<std::string> files;
  int64_t tensors = 0;    // tensors copied
  int64_t elements = 0;   // their total element count
  std::string part;       // "all" | "encoder" | "decoder"
};

// Does `name` (a reference state-dict key) belong to `part`? (the FSQ buffers belong to both halves)
bool InWeightsPart(const std::string& name, WeightsPart part);

// Maps the names of any accepted format onto the reference names (the one place where foreign spellings are
// translated): strips a common `network.` / `model.` prefix, drops `ema.`-prefixed copies (or uses them when
// `use_ema`), `inv_quant.quantizer.` -> `quantizer.`, and removes the TorchScript-only duplicates.
TensorMap MapTokenizerCheckpointNames(const TensorMap& raw, bool use_ema = false);

// Reads every tensor of one checkpoint file (safetensors, TorchScript; torch.save zip once the core reader is
// available). The error names the file.
absl::StatusOr<TensorMap> ReadTokenizerCheckpointFile(const std::string& path);

// Strict copy into `module` (names = `module`'s state-dict keys). `in_scope` limits which of the module's
// tensors must be present (default: all). Floating tensors are converted to the module's dtype; integer
// buffers must be integers.
absl::Status LoadStateDictStrict(torch::nn::Module& module, const TensorMap& tensors, const std::string& source,
                                 const std::function<bool(const std::string&)>& in_scope = nullptr,
                                 LoadSummary* summary = nullptr);

// Resolves `spec` (file, directory or comma list), reads, maps names and loads strictly.
absl::StatusOr<LoadSummary> LoadTokenizerWeights(TokenizerNetworkImpl& net, const std::string& spec,
                                                 WeightsPart part = WeightsPart::kAll, bool use_ema = false);

// Every state-dict key with its shape (parameters and buffers), in registration order.
std::vector<std::pair<std::string, std::vector<int64_t>>> StateDictShapes(torch::nn::Module& module);

// Saves the network's state dict (reference names) as safetensors, atomically.
absl::Status SaveTokenizerWeights(torch::nn::Module& module, const std::string& path,
                                  const TokenizerConfig* config = nullptr);

}  // namespace wfm::tokenizer
