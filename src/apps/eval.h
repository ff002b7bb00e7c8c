#pragma once
// Evaluation of frozen representations: linear probe, k-NN, per-dimension statistics.

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "results.h"

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

/// Test accuracy (%) of the 1-nearest-neighbour rule by cosine similarity of the features as
/// given (no standardization: the caller standardizes). Ties go to the lowest training row.
double nearest_neighbour_accuracy(const at::Tensor& train_x, const at::Tensor& train_y,
                                  const at::Tensor& test_x, const at::Tensor& test_y);

// ---- Few labels -----------------------------------------------------------------------------
//
// The semi-supervised protocol of the VICReg paper, small: a linear probe (and a 1-NN) trained
// on k labelled training images per class, scored on the test set, over several draws of the
// labelled images. The features are standardized with the mean and std of all training rows
// (unlabelled data is what self-supervised learning assumes). The probe's L2 penalty is chosen
// without the test set: for each k, every penalty of the grid is fitted on every draw and scored
// on validation rows, training rows that no draw contains; the penalty with the best mean
// validation accuracy is the one whose test accuracies are reported.

struct FewLabelOptions {
  std::vector<int64_t> ks = {1, 10, 100};  ///< labelled images per class
  int64_t draws = 5;                       ///< draws of the labelled images per k
  int64_t val_rows = 10000;  ///< validation rows (at most a sixth of the training rows)
  uint64_t seed = 0;         ///< draws the validation rows and the labelled images
  std::vector<double> l2_grid = {1e-3, 1e-2, 1e-1, 1};  ///< candidate penalties
  int64_t max_iter = 200;  ///< L-BFGS iterations per fit
  /// Called before each fit with its number (from 1) and the number of fits.
  std::function<void(int64_t fit, int64_t fits)> on_fit;
};

/// The training rows a few-label evaluation uses; one plan serves every feature set, so all of
/// them see the same labelled images. Draw j takes, for each class, the first k rows of one
/// seeded permutation of that class's non-validation rows, so the draws are nested: draw j at
/// k = 1 is part of draw j at k = 10.
struct FewLabelPlan {
  std::vector<int64_t> ks;
  int64_t classes = 0;
  at::Tensor val_idx;                          ///< [V] validation rows (int64)
  std::vector<std::vector<at::Tensor>> draws;  ///< draws[i][j]: rows of draw j at ks[i]
};

/// Fails with a one-line c10::Error when a class has fewer than max(ks) rows outside the
/// validation rows.
FewLabelPlan plan_few_label(const at::Tensor& train_y, const FewLabelOptions& o);

/// Evaluates features [N_train, D] / [N_test, D] as `plan` says (one score per plan.ks).
std::vector<FewLabelScore> few_label_eval(const at::Tensor& train_x, const at::Tensor& train_y,
                                          const at::Tensor& test_x, const at::Tensor& test_y,
                                          const FewLabelPlan& plan, const FewLabelOptions& o);

/// Mean and sample std (n-1; 0 for one value) of `v`.
std::pair<double, double> mean_std(const std::vector<double>& v);

/// Per-dimension spread of features [N, D] (results.h).
Spread spread_stats(const at::Tensor& features);

}  // namespace vicreg::apps
