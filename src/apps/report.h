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
#include <vector>

#include "train_config.h"

namespace vicreg::apps {

/// Spread of a feature set over the test images.
struct Spread {
  double mean_std = 0;       ///< per-dimension std, averaged over the dimensions
  double collapsed_pct = 0;  ///< percent of dimensions with std < 1% of the features' RMS
  std::vector<double> std;   ///< per-dimension std, sorted in descending order
};

/// One row of the results: a feature set and what the probes made of it.
struct ResultRow {
  std::string name;
  double probe_pct = 0;         ///< linear-probe test accuracy, percent
  double knn_pct = 0;           ///< k-NN test accuracy, percent
  double probe_l2 = 0;          ///< the L2 penalty the probe chose (rescaled to all rows)
  Spread repr;                  ///< the representation: encoder output (or the pixels)
  std::optional<Spread> embed;  ///< the embedding: projector output (trained/random encoders)
};

/// What the run did, next to its configuration.
struct RunFacts {
  int64_t steps = 0;  ///< VICReg steps trained in this run
  int64_t train_images = 0, test_images = 0;
  int threads = 0;
  double inv_coeff = 0, var_coeff = 0, cov_coeff = 0, gamma = 1;  ///< the loss as used
  double train_seconds = 0, total_seconds = 0;
};

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
std::string metrics_csv_header(const std::vector<std::string>& names);
std::string metrics_csv_row(int64_t step, int64_t epoch, const std::vector<double>& values,
                            double images_per_s, double lr);
/// "<prefix>epoch E: mean loss L (name v, ...) in S s".
std::string epoch_line(const std::string& prefix, int64_t epoch,
                       const std::vector<std::string>& names, const std::vector<double>& means,
                       double seconds);

/// The markdown results table, then the line that defines its abbreviations.
std::string results_table(const std::vector<ResultRow>& rows, int64_t knn_k);
/// The COLLAPSE: line for the trained encoder's row, or "" when its embeddings are spread or
/// the run trained too few steps to tell (fewer than kCollapseMinSteps).
constexpr int64_t kCollapseMinSteps = 100;
std::string collapse_warning(const ResultRow& trained, const RunFacts& f);

/// std_sorted.csv: sorted per-dimension std of rows[0] (trained) and rows[1] (random init).
void write_std_sorted_csv(const std::filesystem::path& file, const std::vector<ResultRow>& rows);
/// results.json (README.md lists its fields).
void write_results_json(const std::filesystem::path& file, const TrainConfig& c,
                        const RunFacts& f, const std::vector<ResultRow>& rows);
/// loss.png and std.png via gnuplot (skipped, with a note, when gnuplot is missing).
void write_plots(const std::filesystem::path& out, const std::vector<std::string>& compare);

/// Prints the table and summary, writes table.md, std_sorted.csv, results.json and (when the
/// run trained) the plots into `out`.
void report_results(const std::filesystem::path& out, const TrainConfig& c, const RunFacts& f,
                    const std::vector<ResultRow>& rows);

}  // namespace vicreg::apps
