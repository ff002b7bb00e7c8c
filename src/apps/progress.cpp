// Progress lines of vicreg_train's training loop and evaluation (progress.h).

#include "progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace vicreg::apps {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string format_duration(double seconds) {
  const auto s = static_cast<int64_t>(std::max(0.0, seconds) + 0.5);
  if (s >= 3600) return fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
  return fmt::format("{}:{:02}", s / 60, s % 60);
}

ProgressBar::ProgressBar(int64_t total_steps, int64_t every)
    : total_(total_steps), every_(every), tty_(isatty(fileno(stderr)) != 0),
      start_(std::chrono::steady_clock::now()) {}

// A progress line on stderr: rewritten in place on a terminal, one line each otherwise.
static void print_status(bool tty, const std::string& line) {
  if (tty) {
    fmt::print(stderr, "\r{}\033[K", line);
  } else {
    fmt::print(stderr, "{}\n", line);
  }
}

void ProgressBar::update(int64_t step, int64_t epoch, const std::vector<std::string>& names,
                         const std::vector<double>& values, double images_per_s) {
  const int64_t done = step + 1;
  if (!tty_ && done % every_ != 0 && done != total_) return;
  const int width = 24;
  const auto filled = static_cast<int>(width * done / std::max<int64_t>(1, total_));
  std::string terms = fmt::format("{} {:.3f}", names[0], values[0]);
  for (size_t i = 1; i < values.size(); ++i) {
    terms += fmt::format(" {} {:.4f}", names[i].substr(0, 3), values[i]);
  }
  const double elapsed = seconds_since(start_);
  const auto line = fmt::format(
      "[{}{}] step {}/{} epoch {} | {} | {:.0f} img/s | {} elapsed, ETA {}",
      std::string(filled, '#'), std::string(width - filled, '.'), done, total_, epoch + 1,
      terms, images_per_s, format_duration(elapsed),
      format_duration(elapsed / done * static_cast<double>(total_ - done)));
  print_status(tty_, line);
}

void ProgressBar::end_epoch() {
  if (tty_) fmt::print(stderr, "\n");
}

StatusLine::StatusLine()
    : tty_(isatty(fileno(stderr)) != 0), start_(std::chrono::steady_clock::now()) {}

void StatusLine::show(const std::string& text) {
  const auto line = fmt::format("{} ({} elapsed)", text, format_duration(seconds_since(start_)));
  print_status(tty_, line);
}

void StatusLine::clear() {
  if (tty_) fmt::print(stderr, "\r\033[K");
}

std::string metrics_csv_header(const std::vector<std::string>& names, const std::string& extra) {
  std::string h = "step,epoch";
  for (const auto& n : names) h += "," + n;
  return h + ",images_per_s,lr" + (extra.empty() ? "" : "," + extra) + "\n";
}

std::string metrics_csv_row(int64_t step, int64_t epoch, const std::vector<double>& values,
                            double images_per_s, double lr, const std::string& extra) {
  std::string row = fmt::format("{},{}", step + 1, epoch + 1);
  for (double v : values) row += fmt::format(",{:.6g}", v);
  return row + fmt::format(",{:.1f},{:.3g}", images_per_s, lr) + extra + "\n";
}

std::string epoch_line(const std::string& prefix, int64_t epoch,
                       const std::vector<std::string>& names, const std::vector<double>& means,
                       double seconds) {
  std::string line = fmt::format("{}epoch {}: mean {} {:.4f}", prefix, epoch + 1, names[0],
                                 means[0]);
  for (size_t i = 1; i < means.size(); ++i) {
    line += fmt::format("{}{} {:.4f}", i == 1 ? " (" : ", ", names[i], means[i]);
  }
  if (means.size() > 1) line += ")";
  return line + fmt::format(" in {:.0f} s", seconds);
}

}  // namespace vicreg::apps
