#pragma once
// Evaluation of frozen representations: linear probe, k-NN, per-dimension statistics.

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>

namespace vicreg::apps {

/// Applies `fn` to `images` in chunks of `batch` without gradients; returns [N, D] features.
at::Tensor extract_features(const std::function<at::Tensor(const at::Tensor&)>& fn,
                            const at::Tensor& images, int64_t batch = 1024);

struct ProbeOptions {
  int64_t epochs = 30;        ///< passes over the training features
  int64_t batch = 512;
  double lr = 1e-3;           ///< Adam
  double weight_decay = 1e-4;
  uint64_t seed = 0;
};

/// Test accuracy (%) of multinomial logistic regression trained with Adam on the training
/// features, both standardized with the training mean and std.
double linear_probe_accuracy(const at::Tensor& train_x, const at::Tensor& train_y,
                             const at::Tensor& test_x, const at::Tensor& test_y,
                             const ProbeOptions& o = {});

/// Test accuracy (%) of a k-nearest-neighbour majority vote by cosine similarity of the
/// standardized features.
double knn_accuracy(const at::Tensor& train_x, const at::Tensor& train_y,
                    const at::Tensor& test_x, const at::Tensor& test_y, int64_t k = 10);

/// Per-dimension spread of features [N, D].
struct SpreadStats {
  at::Tensor std;            ///< [D] per-dimension std, sorted in descending order
  double mean_std = 0;       ///< mean over dimensions
  double collapsed = 0;      ///< fraction of dimensions with std < kCollapsedStd * RMS
};
/// A dimension is collapsed when its std is below this fraction of the root mean square of
/// all feature entries (scale-free: outputs that all sit near one point have std << RMS).
constexpr double kCollapsedStd = 0.01;
SpreadStats spread_stats(const at::Tensor& features);

}  // namespace vicreg::apps
