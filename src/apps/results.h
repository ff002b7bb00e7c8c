#pragma once
// What a vicreg_train run measures, as plain values: the evaluation (eval.h, scores.cpp) fills
// them and the report (report.h) prints and writes them. No LibTorch here, so that the report
// compiles without its headers.

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace vicreg::apps {

/// Spread of a feature set over the test images.
struct Spread {
  double mean_std = 0;       ///< per-dimension std, averaged over the dimensions
  double collapsed_pct = 0;  ///< percent of dimensions with std < kCollapsedStd of the RMS
  std::vector<double> std;   ///< per-dimension std, sorted in descending order
};
/// A dimension is collapsed when its std is below this fraction of the root mean square of
/// all feature entries (scale-free: outputs that all sit near one point have std << RMS).
constexpr double kCollapsedStd = 0.01;

/// The few-label evaluation of a feature set at k labelled images per class (eval.h says how).
struct FewLabelScore {
  int64_t k = 0;
  std::vector<double> linear, knn;  ///< test accuracy (%) per draw: linear probe, 1-NN
  double linear_mean = 0, linear_std = 0, knn_mean = 0, knn_std = 0;  ///< std over draws (n-1)
  double l2 = 0;            ///< the chosen penalty
  double val_accuracy = 0;  ///< its mean accuracy (%) on the validation rows
};

/// The test set's representation on its first two principal components (of the standardized
/// features).
struct Projection {
  std::vector<float> pc1, pc2;
  std::vector<int64_t> labels;
  double explained1 = 0, explained2 = 0;  ///< share of the variance, percent
};

/// One row of the results: a feature set and what the probes made of it.
struct ResultRow {
  std::string name;
  double probe_pct = 0;         ///< linear-probe test accuracy, percent
  double knn_pct = 0;           ///< k-NN test accuracy, percent
  double probe_l2 = 0;          ///< the L2 penalty the probe chose (rescaled to all rows)
  Spread repr;                  ///< the representation: encoder output (or the pixels)
  std::optional<Spread> embed;  ///< the embedding: projector output (trained/random encoders)
  std::vector<FewLabelScore> few_label;  ///< one per labels-per-class value (empty: off)
  std::optional<Projection> pca;        ///< the trained and random-init encoders
  double full_seconds = 0;       ///< features, full-label probe, k-NN, spread
  double few_label_seconds = 0;  ///< the few-label evaluation
};

/// The k-NN accuracy of the encoder during training, on fixed subsets.
struct CurvePoint {
  int64_t step = 0;
  double knn_pct = 0;
};
struct LearningCurve {
  int64_t every = 0;                  ///< steps between points (0: off)
  int64_t memory = 0, queries = 0;    ///< training images (the memory), test images
  int64_t k = 0;                      ///< neighbours
  std::vector<CurvePoint> points;     ///< step 0 (the start) first
  double random_init_pct = 0, pixels_pct = 0;  ///< the same k-NN, same subsets
  double seconds = 0;                 ///< time spent on it (not counted as training)
};

/// What the loss costs in a training step, measured before training on one real batch.
struct LossCost {
  bool measured = false;
  int64_t rows = 0, dim = 0;   ///< each view's embeddings: [rows, dim]
  double fused_ms = 0;         ///< forward + hand-written backward, median
  double autograd_ms = 0;      ///< forward + autograd backward, median
  double step_ms = 0;          ///< a whole training step (augmentation, both views, Adam), median
};

/// What the run did, next to its configuration.
struct RunFacts {
  int64_t steps = 0;  ///< VICReg steps trained in this run
  int64_t train_images = 0, test_images = 0;
  int threads = 0;
  double inv_coeff = 0, var_coeff = 0, cov_coeff = 0, gamma = 1;  ///< the loss as used
  double train_seconds = 0, total_seconds = 0;
  LearningCurve curve;
  LossCost loss_cost;
  std::vector<std::pair<std::string, double>> phases;  ///< the time breakdown, seconds
};

}  // namespace vicreg::apps
