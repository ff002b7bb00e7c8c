#pragma once
// vicreg_train's evaluation of its encoders: every feature set (the trained encoder, the same
// encoder at its initial weights, raw pixels, the supervised reference) through the same
// linear probe, k-NN and few-label protocol (eval.h), as the rows of the results (results.h).

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "data.h"
#include "eval.h"
#include "model.h"
#include "results.h"
#include "train_config.h"

namespace vicreg::apps {

/// Scores the features `encode` gives (and, when `project` is set, the spread of the
/// embeddings it makes of them) with the linear probe and k-NN: fitted on `train`, scored on
/// `test`; then, when `few` is set, the few-label evaluation on its draws (the same for every
/// row), and, when `pca` is set, the test set's projection on two principal components.
/// `label` ("1/3") numbers the row in the progress lines.
ResultRow evaluate(const std::string& name, const std::string& label, const Features& encode,
                   const Features& project, const ImageSet& train, const ImageSet& test,
                   const TrainConfig& c, const FewLabelPlan* few = nullptr, bool pca = false);

/// The rows of the results table: the trained encoder, the same encoder at its initial
/// weights, raw pixels, and (--supervised-steps) the supervised reference; every row with the
/// few-label evaluation on the same draws.
std::vector<ResultRow> evaluate_rows(Models& m, const ImageSet& train, const ImageSet& test,
                                     const TrainConfig& c);

/// The few-label settings; without --few-label-k, the default counts that the training images
/// cannot supply (a small --train-subset) are left out, in `dropped`.
FewLabelOptions few_label_options(const TrainConfig& c, const at::Tensor& train_labels,
                                  std::vector<int64_t>* dropped = nullptr);

/// The test features' projection on their first two principal components (standardized
/// features, PCA by the eigenvectors of their covariance; each component's sign fixed so that
/// its largest loading is positive).
Projection project_2d(const at::Tensor& features, const at::Tensor& labels);

}  // namespace vicreg::apps
