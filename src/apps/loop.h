#pragma once
// vicreg_train's one training loop, which the VICReg run and the supervised reference
// (training.h) drive with their own step.

#include <torch/torch.h>

#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "checkpoint.h"

namespace vicreg::apps {

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

}  // namespace vicreg::apps
