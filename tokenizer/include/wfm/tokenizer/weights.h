// Loading tokenizer checkpoints into a TokenizerNetwork through the core checkpoint loader
// (wfm/core/checkpoint.h: the one place where foreign names are mapped), strictly: every tensor the network
// (or the requested half of it) has must be in the checkpoint with the same shape, and the checkpoint must hold
// nothing else; every problem is listed in one error.
//
// Accepted: safetensors with the reference names; the published `model.pt` (`network.` prefix, EMA copies
// `ema.network-...` used with use_ema); TorchScript `autoencoder.jit`, `encoder.jit`, `decoder.jit` (the
// nn.Sequential names of encoder_jit()/decoder_jit() equal the reference names; the decoder's private FSQ
// copy `inv_quant.*` is dropped); a directory holding such files; several files joined with commas
// ("encoder.jit,decoder.jit").
// Architecture constants (Haar patcher buffers, FSQ levels/basis/codebook) follow from the config: a file may
// omit them (model.pt leaves the patcher buffers out), and when present they must equal the config's values.
//
//   TokenizerNetwork net(config);
//   WFM_ASSIGN_OR_RETURN(LoadReport r, LoadTokenizerWeights(*net, "ckpt/", WeightsPart::kAll));
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <torch/nn/module.h>

#include "absl/status/statusor.h"
#include "wfm/core/checkpoint.h"
#include "wfm/core/tensor_map.h"
#include "wfm/tokenizer/config.h"
#include "wfm/tokenizer/network.h"

namespace wfm::tokenizer {

// Which half of the network must be covered.
enum class WeightsPart { kAll, kEncoder, kDecoder };

// Does `name` (a reference state-dict key) belong to `part`? (the FSQ buffers belong to both halves)
bool InWeightsPart(const std::string& name, WeightsPart part);

// The checkpoint file(s) of `spec`: a file, a directory (model.safetensors, autoencoder.jit, model.pt, a single
// *.safetensors, else encoder.jit and/or decoder.jit), or a comma-separated list.
absl::StatusOr<std::vector<std::string>> ResolveTokenizerWeights(const std::string& spec);

// Resolves `spec`, maps names (core DefaultNameRules / EmaNameRules + the TorchScript FSQ copy dropped) and
// loads strictly.
absl::StatusOr<LoadReport> LoadTokenizerWeights(TokenizerNetworkImpl& net, const std::string& spec,
                                                WeightsPart part = WeightsPart::kAll, bool use_ema = false);
// The same for tensors already in memory (reference names or any spelling the rules map).
absl::StatusOr<LoadReport> LoadTokenizerStateDict(TokenizerNetworkImpl& net, const TensorMap& tensors,
                                                  WeightsPart part = WeightsPart::kAll,
                                                  const std::string& source = "state dict");

// Every state-dict key with its shape (parameters and buffers), in registration order.
std::vector<std::pair<std::string, std::vector<int64_t>>> StateDictShapes(torch::nn::Module& module);

// Saves the network's state dict (reference names) as safetensors, atomically, with the config as metadata
// ("config": reference-key JSON).
absl::Status SaveTokenizerWeights(TokenizerNetworkImpl& net, const std::string& path);

}  // namespace wfm::tokenizer
