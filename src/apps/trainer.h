#pragma once
// vicreg_train's parts, each replaceable on its own:
//   - the model: encoder and projector (make_encoder, make_projector);
//   - the one training loop (train_loop) that both the VICReg run (train_vicreg) and the
//     supervised reference (train_supervised) drive with their own step;
//   - the evaluation of frozen features (evaluate): linear probe, k-NN, spread.
// run_training (train_config.h) wires them together and hands the results to report.h.

#include <torch/torch.h>

#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "checkpoint.h"
#include "data.h"
#include "eval.h"
#include "report.h"
#include "train_config.h"

namespace vicreg::apps {

// ---- The model ------------------------------------------------------------------------------

/// Comma-separated positive sizes ("1024,1024"); `flag` names the option in errors.
std::vector<int64_t> parse_dims(const std::string& s, const char* flag);
/// 28x28x1 -> widths.back() * pool^2: conv blocks (Conv-BN-ReLU, max-pooled but the last), then
/// average pooling to pool x pool positions, flattened.
torch::nn::Sequential make_encoder(const std::vector<int64_t>& widths, int64_t pool);
/// The expander: Linear-BN-ReLU for every hidden size, then a plain Linear (VICReg's layout).
torch::nn::Sequential make_projector(int64_t in, const std::vector<int64_t>& dims);
/// A deep copy (same weights, own parameters).
torch::nn::Sequential clone_module(const torch::nn::Sequential& m);

// ---- The training loop ----------------------------------------------------------------------

/// One step's work on the training rows `idx`: forward, backward (gradients into the
/// parameters, already zeroed), and the values to log, the loss first. May draw from `gen`.
using TrainStep = std::function<std::vector<double>(const at::Tensor& idx, at::Generator& gen)>;

struct LoopSpec {
  std::vector<std::string> names;  ///< the values a step returns, the loss first
  int64_t rows = 0;                ///< training rows: each epoch visits them in a new order
  int64_t batch_size = 0;
  int64_t total_steps = 0;         ///< over all epochs (the last one may stop early)
  double lr = 0;                   ///< base learning rate, cosine-decayed to 0 over the steps
  int64_t images_per_step = 0;     ///< for the images/s figure
  std::string epoch_prefix;        ///< prefix of the per-epoch lines on stdout
  std::ostream* csv = nullptr;     ///< per-step rows (metrics.csv), or none
  /// Called after each step with the number of steps done; a value it returns goes into the
  /// CSV column `extra_name` of that step's row. Its time is not the steps' (images/s).
  std::function<std::optional<double>(int64_t steps_done)> after_step;
  std::string extra_name;
  /// Where a resumed run starts (a checkpoint's progress), or none.
  const LoopProgress* start = nullptr;
  /// Called after every `checkpoint_every` steps and after the last one, when set.
  std::function<void(const LoopProgress&)> checkpoint;
  int64_t checkpoint_every = 1;
};

struct LoopResult {
  int64_t steps = 0;
  double seconds = 0;
  std::vector<double> last;  ///< the last step's values
  double hook_seconds = 0;   ///< of `seconds`, the time spent in after_step
};

/// Shuffles the rows each epoch with `gen`, sets the cosine learning rate, zeroes the
/// gradients, runs `step` on each batch and then `opt.step()`; logs and checkpoints as `spec`
/// says, and starts where `spec.start` says. Fails when the loss is not finite.
LoopResult train_loop(torch::optim::Optimizer& opt, at::Generator& gen, const LoopSpec& spec,
                      const TrainStep& step);

/// The supervised reference: a copy of `init` trained with the labels (a linear head on the
/// representation, cross-entropy) on un-augmented images for c.supervised_steps steps, with
/// the VICReg run's batch size, Adam, learning rate and cosine schedule. It tells how far this
/// encoder rises above its random init in that many steps when the labels are known.
torch::nn::Sequential train_supervised(const torch::nn::Sequential& init, int64_t repr_dim,
                                       const ImageSet& train, const TrainConfig& c);

// ---- Evaluation -----------------------------------------------------------------------------

using Features = std::function<at::Tensor(const at::Tensor&)>;

/// Scores the features `encode` gives (and, when `project` is set, the spread of the
/// embeddings it makes of them) with the linear probe and k-NN: fitted on `train`, scored on
/// `test`; then, when `few` is set, the few-label evaluation on its draws (the same for every
/// row), and, when `pca` is set, the test set's projection on two principal components.
/// `label` ("1/3") numbers the row in the progress lines.
ResultRow evaluate(const std::string& name, const std::string& label, const Features& encode,
                   const Features& project, const ImageSet& train, const ImageSet& test,
                   const TrainConfig& c, const FewLabelPlan* few = nullptr, bool pca = false);

/// The labelled-images-per-class list of --few-label-k ("1,10,100"; "0": none).
std::vector<int64_t> parse_few_label_k(const std::string& s);

/// The test features' projection on their first two principal components (standardized
/// features, PCA by the eigenvectors of their covariance; each component's sign fixed so that
/// its largest loading is positive).
Projection project_2d(const at::Tensor& features, const at::Tensor& labels);

}  // namespace vicreg::apps
