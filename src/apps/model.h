#pragma once
// vicreg_train's model: the encoder and the projector (VICReg's expander), built from the
// options, and how the evaluation runs them.

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <vector>

#include "train_config.h"

namespace vicreg::apps {

/// 28x28x1 -> widths.back() * pool^2: conv blocks (Conv-BN-ReLU, max-pooled but the last), then
/// average pooling to pool x pool positions, flattened.
torch::nn::Sequential make_encoder(const std::vector<int64_t>& widths, int64_t pool);
/// The expander: Linear-BN-ReLU for every hidden size, then a plain Linear (VICReg's layout).
torch::nn::Sequential make_projector(int64_t in, const std::vector<int64_t>& dims);
/// A deep copy (same weights, own parameters).
torch::nn::Sequential clone_module(const torch::nn::Sequential& m);

/// The trained pair and copies of the weights it started from (the random-init baseline).
struct Models {
  torch::nn::Sequential encoder, projector;
  torch::nn::Sequential encoder_init, projector_init;
  int64_t repr_dim = 0;
  std::vector<torch::Tensor> parameters() const;
};

/// The models --encoder-widths, --pool and --proj-dims describe; with --eval-only, the
/// weights of the --resume run.
Models build_models(const TrainConfig& c);

/// Saves the module as torch::save does, whole or not at all, with its SHA-256 in FILE.sha256
/// (`sha256sum -c encoder.pt.sha256` verifies it).
void save_with_checksum(const torch::nn::Sequential& m, const std::filesystem::path& file);

/// Loads a module that save_with_checksum saved, after checking it against FILE.sha256: a
/// mismatch is a c10::Error; a file without FILE.sha256 (saved before checksums) is loaded
/// with a note that it was not verified.
void load_verified(torch::nn::Sequential& m, const std::filesystem::path& file);

/// Features of a batch of images.
using Features = std::function<at::Tensor(const at::Tensor&)>;
/// The module's forward.
Features forward_of(torch::nn::Sequential m);
/// An encoder's forward on images in channels_last, the layout training runs it on (oneDNN's
/// convolutions are fastest on it).
Features encoder_of(torch::nn::Sequential m);

/// FNV-1a of the tensors' bytes: equal digests mean bitwise equal tensors (in practice).
uint64_t digest(const std::vector<at::Tensor>& tensors);

}  // namespace vicreg::apps
