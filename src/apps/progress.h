#pragma once
// The progress lines of vicreg_train's training loop and evaluation, and its per-step CSV.
// Compiles without the LibTorch headers.

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace vicreg::apps {

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

}  // namespace vicreg::apps
