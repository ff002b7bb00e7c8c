#pragma once
// vicreg_train's settings, one field per command-line option (vicreg_train.cpp declares the
// options and their ranges; README.md documents them), and the entry point of a run.

#include <cstdint>
#include <string>
#include <vector>

#include "augment_options.h"

namespace vicreg::apps {

/// The augmentation of vicreg_train's default run: 20x20 views (see TrainConfig).
inline AugmentOptions training_views() {
  AugmentOptions a;
  a.size = 20;
  return a;
}

struct TrainConfig {
  // Data and outputs.
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  std::string out_dir = "runs/default";
  int64_t train_subset = 0, test_subset = 0;  ///< first N images (0: all)
  // Model.
  std::string encoder_widths = "16,32,96";  ///< channels of the conv blocks
  int64_t pool = 2;                         ///< representation: pool x pool positions
  std::string proj_dims = "1024,1024";      ///< projector (expander) sizes
  // Training.
  // The default recipe: src/apps/README.md ("the recipes tried") says why these values.
  int64_t epochs = 5;
  int64_t batch_size = 64;
  int64_t max_steps = 0;  ///< 0: no limit
  double lr = 2e-3;
  double weight_decay = 1e-6;
  uint64_t seed = 0;
  std::vector<uint64_t> seeds;  ///< --seeds: one run per seed (in out_dir/seed-N), then the spread
  AugmentOptions augment = training_views();
  // Loss.
  std::string preset = "reference";
  double inv_coeff = 25, var_coeff = 25, cov_coeff = 1;
  bool no_variance = false;
  std::string backward = "fused";
  // Evaluation.
  int64_t probe_iters = 200;
  int64_t knn_k = 10;
  int64_t supervised_steps = 0;  ///< the supervised reference (0: off)
  std::string few_label_k = "1,10,100";  ///< labelled images per class ("0": no few-label eval)
  /// Whether --few-label-k was given: if not, counts that a small --train-subset cannot supply
  /// are left out (with a note) instead of failing the run.
  bool few_label_k_set = false;
  int64_t few_label_draws = 5;           ///< draws of the labelled images per k
  int64_t curve_every = 500;  ///< steps between learning-curve points (0: no curve)
  // Checkpoints and comparisons.
  int64_t checkpoint_every = 0;  ///< steps between checkpoints (0: once per epoch)
  std::string resume;            ///< a run directory to continue (or, with eval_only, evaluate)
  bool eval_only = false;
  std::vector<std::string> compare;
  // Process.
  int threads = 0;  ///< 0: all cores
  bool distributed = false;
  bool keep_freed_memory = true;
};

/// Trains and evaluates as `c` says, writes the outputs; returns the exit code. Errors are
/// c10::Error with a one-line message.
int run_training(const TrainConfig& c);

}  // namespace vicreg::apps
