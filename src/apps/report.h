#pragma once
// vicreg_train's reporting, apart from the training and the evaluation so that it can be
// changed on its own (and compiles without the LibTorch headers): the progress lines of the
// training loop and of the evaluation, the per-step CSV, the results table, std_sorted.csv,
// results.json and the gnuplot plots. README.md describes every output.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "train_config.h"

namespace vicreg::apps {

/// Spread of a feature set over the test images.
struct Spread {
  double mean_std = 0;       ///< per-dimension std, averaged over the dimensions
  double collapsed_pct = 0;  ///< percent of dimensions with std < 1% of the features' RMS
  std::vector<double> std;   ///< per-dimension std, sorted in descending order
};

/// The few-label evaluation of a feature set at k labelled images per class (eval.h says how):
/// test accuracies over the draws.
struct FewLabelStat {
  int64_t k = 0;
  double linear_mean = 0, linear_std = 0;  ///< linear probe, percent; std over draws (n-1)
  double knn_mean = 0, knn_std = 0;        ///< 1-NN on the same draws
  int64_t draws = 0;
  double l2 = 0;       ///< the penalty chosen on the validation rows
  double val_pct = 0;  ///< its mean validation accuracy
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
  std::vector<FewLabelStat> few_label;  ///< one per labels-per-class value (empty: off)
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

/// Seconds from t0 to now.
double seconds_since(std::chrono::steady_clock::time_point t0);

/// "m:ss" or "h:mm:ss".
std::string format_duration(double seconds);

/// The training loop's progress on stderr: a bar redrawn in place on a terminal, else one line
/// every `every` steps and at the end; each with elapsed time and ETA.
class ProgressBar {
 public:
  explicit ProgressBar(int64_t total_steps, int64_t every = 50);
  /// After step `step` (0-based) of epoch `epoch` (0-based): the step's logged values.
  void update(int64_t step, int64_t epoch, const std::vector<std::string>& names,
              const std::vector<double>& values, double images_per_s);
  void end_epoch();  ///< ends the in-place line on a terminal

 private:
  int64_t total_, every_;
  bool tty_;
  std::chrono::steady_clock::time_point start_;
};

/// A status line on stderr (redrawn in place on a terminal, else one line per call).
class StatusLine {
 public:
  StatusLine();
  void show(const std::string& text);
  void clear();  ///< erases the in-place line before other output

 private:
  bool tty_;
  std::chrono::steady_clock::time_point start_;
};

/// metrics.csv: the header for the logged values `names`, and one row per step.
/// `extra` names one more column (empty: none), filled on the rows that have a value.
std::string metrics_csv_header(const std::vector<std::string>& names,
                               const std::string& extra = "");
std::string metrics_csv_row(int64_t step, int64_t epoch, const std::vector<double>& values,
                            double images_per_s, double lr, const std::string& extra = "");
/// "<prefix>epoch E: mean loss L (name v, ...) in S s".
std::string epoch_line(const std::string& prefix, int64_t epoch,
                       const std::vector<std::string>& names, const std::vector<double>& means,
                       double seconds);

/// The markdown results table, then the line that defines its abbreviations.
std::string results_table(const std::vector<ResultRow>& rows, int64_t knn_k);
/// The few-label table (mean ± std over the draws), then its legend; "" when there is none.
std::string few_label_table(const std::vector<ResultRow>& rows);
/// The one-line verdict: the trained encoder's margins over the random init and the pixels at
/// each k (few-label linear probe means) and with all labels.
std::string verdict_line(const std::vector<ResultRow>& rows);
/// The spread over the runs of --seeds (runs[i]: the rows of seeds[i]): per k (and all labels),
/// the trained encoder's linear-probe margin over the random init and over the pixels in each
/// run, with mean, min and max; then one line for 10 labels per class (or the first k).
std::string seeds_summary(const std::vector<uint64_t>& seeds,
                          const std::vector<std::vector<ResultRow>>& runs);
/// "loss: 0.9 ms (fused forward + backward) of a 95 ms training step; autograd: 2.1 ms".
std::string loss_cost_line(const LossCost& l);
/// The COLLAPSE: line for the trained encoder's row, or "" when its embeddings are spread or
/// the run trained too few steps to tell (fewer than kCollapseMinSteps).
constexpr int64_t kCollapseMinSteps = 100;
std::string collapse_warning(const ResultRow& trained, const RunFacts& f);

/// std_sorted.csv: sorted per-dimension std of rows[0] (trained) and rows[1] (random init).
void write_std_sorted_csv(const std::filesystem::path& file, const std::vector<ResultRow>& rows);
/// results.json (README.md lists its fields).
void write_results_json(const std::filesystem::path& file, const TrainConfig& c,
                        const RunFacts& f, const std::vector<ResultRow>& rows);
/// loss.png, std.png, learning_curve.png and pca.png via gnuplot (skipped, with a note, when
/// gnuplot is missing), from metrics.csv, std_sorted.csv, curve.csv and pca.csv.
void write_plots(const std::filesystem::path& out, const std::vector<std::string>& compare,
                 const RunFacts& f, const std::vector<ResultRow>& rows);

/// Prints the table and summary, writes table.md, std_sorted.csv, results.json and (when the
/// run trained) the plots into `out`.
void report_results(const std::filesystem::path& out, const TrainConfig& c, const RunFacts& f,
                    const std::vector<ResultRow>& rows);

}  // namespace vicreg::apps
