#pragma once
// Evaluation of frozen representations: linear probe, k-NN, per-dimension statistics.

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

namespace vicreg::apps {

/// Applies `fn` to `images` in chunks of `batch` without gradients; returns [N, D] features.
at::Tensor extract_features(const std::function<at::Tensor(const at::Tensor&)>& fn,
                            const at::Tensor& images, int64_t batch = 1024);

/// The linear probe: multinomial logistic regression with an L2 penalty on the weights,
/// fitted by full-batch L-BFGS (strong Wolfe line search, up to max_iter iterations) on features
/// standardized with the training mean and std. The penalty is chosen per feature set from
/// `l2_grid` by accuracy on held-out training rows (fitted on others, a random subset of
/// `select_rows` in all to keep it quick), then the probe is refitted on all training rows, so
/// every feature set gets its own best penalty from the same search (rescaled to the number of
/// rows: l2 * n_fit / N, i.e. the same sklearn C). The test set is only scored.
struct ProbeOptions {
  std::vector<double> l2_grid = {1e-5, 1e-4, 1e-3, 1e-2};  ///< candidate penalties
  int64_t select_rows = 20000;  ///< training rows used to choose the penalty (0: all)
  double holdout = 1.0 / 6;  ///< fraction of those rows held out to score each penalty
  int64_t max_iter = 200;    ///< L-BFGS iterations per fit (it stops earlier once converged)
  uint64_t seed = 0;         ///< draws the held-out rows
  /// Called before each L-BFGS fit with its number (from 1) and the number of fits, for
  /// progress reports (one fit per penalty of the grid, then the final fit).
  std::function<void(int64_t fit, int64_t fits)> on_fit;
};

/// What the probe found.
struct ProbeResult {
  double accuracy = 0;      ///< test accuracy (%) of the refitted probe
  double l2 = 0;            ///< the penalty of the final fit (chosen, rescaled)
  double val_accuracy = 0;  ///< its accuracy (%) on the held-out rows (-1: grid of one)
  int64_t evaluations = 0;  ///< loss evaluations of the final fit
};

/// Weights [D, C] and bias [C] of a logistic regression fitted to (x [N, D], y [N] in [0, C)):
/// minimizes mean cross-entropy + l2 / 2 * ||W||^2 with L-BFGS. x is used as given (no
/// standardization). `evaluations`, when set, receives the number of loss evaluations.
std::pair<at::Tensor, at::Tensor> fit_logistic(const at::Tensor& x, const at::Tensor& y,
                                               int64_t classes, double l2, int64_t max_iter,
                                               int64_t* evaluations = nullptr);

/// Fits the linear probe on (train_x, train_y) and scores it on (test_x, test_y).
ProbeResult linear_probe(const at::Tensor& train_x, const at::Tensor& train_y,
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
