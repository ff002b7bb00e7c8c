#include "report.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

namespace fs = std::filesystem;

namespace vicreg::apps {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Percentages with 4 decimals: 87.68, not 87.680000000000007.
double round4(double v) { return std::round(v * 1e4) / 1e4; }

}  // namespace

// ---------------------------------------------------------------------------------------------
// Progress of the training loop and of the evaluation

std::string format_duration(double seconds) {
  const auto s = static_cast<int64_t>(std::max(0.0, seconds) + 0.5);
  if (s >= 3600) return fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
  return fmt::format("{}:{:02}", s / 60, s % 60);
}

ProgressBar::ProgressBar(int64_t total_steps, int64_t every)
    : total_(total_steps), every_(every), tty_(isatty(fileno(stderr)) != 0),
      start_(std::chrono::steady_clock::now()) {}

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
  if (tty_) {
    fmt::print(stderr, "\r{}\033[K", line);
  } else {
    fmt::print(stderr, "{}\n", line);
  }
}

void ProgressBar::end_epoch() {
  if (tty_) fmt::print(stderr, "\n");
}

StatusLine::StatusLine()
    : tty_(isatty(fileno(stderr)) != 0), start_(std::chrono::steady_clock::now()) {}

void StatusLine::show(const std::string& text) {
  const auto line = fmt::format("{} ({} elapsed)", text, format_duration(seconds_since(start_)));
  if (tty_) {
    fmt::print(stderr, "\r{}\033[K", line);
  } else {
    fmt::print(stderr, "{}\n", line);
  }
}

void StatusLine::clear() {
  if (tty_) fmt::print(stderr, "\r\033[K");
}

std::string metrics_csv_header(const std::vector<std::string>& names) {
  std::string h = "step,epoch";
  for (const auto& n : names) h += "," + n;
  return h + ",images_per_s,lr\n";
}

std::string metrics_csv_row(int64_t step, int64_t epoch, const std::vector<double>& values,
                            double images_per_s, double lr) {
  std::string row = fmt::format("{},{}", step + 1, epoch + 1);
  for (double v : values) row += fmt::format(",{:.6g}", v);
  return row + fmt::format(",{:.1f},{:.3g}\n", images_per_s, lr);
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

// ---------------------------------------------------------------------------------------------
// Results: table, warning, files

std::string results_table(const std::vector<ResultRow>& rows, int64_t knn_k) {
  std::string t = fmt::format(
      "| features | linear probe acc. | k-NN acc. (k={}) | repr. mean std | repr. dims < 1% RMS "
      "| embed. mean std | embed. dims < 1% RMS |\n|---|---|---|---|---|---|---|\n",
      knn_k);
  for (const auto& r : rows) {
    t += fmt::format("| {} | {:.2f}% | {:.2f}% | {:.3g} | {:.1f}% | {} | {} |\n", r.name,
                     r.probe_pct, r.knn_pct, r.repr.mean_std, r.repr.collapsed_pct,
                     r.embed ? fmt::format("{:.3g}", r.embed->mean_std) : "-",
                     r.embed ? fmt::format("{:.1f}%", r.embed->collapsed_pct) : "-");
  }
  return t + "\nrepr.: the representation (encoder output; the probes' input). embed.: the "
             "embedding (projector output; the loss's input). mean std: each dimension's std "
             "over the test images, averaged over dimensions. dims < 1% RMS: share of "
             "dimensions whose std is below 1% of the features' root mean square (collapsed). "
             "k-NN: cosine similarity of standardized features. -: no projector.\n";
}

std::string collapse_warning(const ResultRow& trained, const RunFacts& f) {
  // VICReg's variance hinge asks every embedding dim for std >= gamma; far below it the
  // embeddings have (nearly) collapsed onto a point. A few steps from the random init (whose
  // embeddings are small) cannot tell.
  if (!trained.embed || f.steps < kCollapseMinSteps) return "";
  const auto& e = *trained.embed;
  if (e.mean_std >= 0.1 * f.gamma && e.collapsed_pct <= 50) return "";
  return fmt::format(
      "COLLAPSE: the trained embeddings' mean per-dimension std is {:.3g}, below 10% of the "
      "variance target gamma = {} ({:.0f}% of dims under 1% of the RMS); the variance term "
      "(var_coeff = {}) is what prevents this.\n",
      e.mean_std, f.gamma, e.collapsed_pct, f.var_coeff);
}

void write_std_sorted_csv(const fs::path& file, const std::vector<ResultRow>& rows) {
  std::ofstream csv(file);
  csv << "rank,trained_embedding,random_embedding,trained_repr,random_repr\n";
  const auto& trained = rows.at(0);
  const auto& random = rows.at(1);
  const size_t repr_dim = trained.repr.std.size();
  for (size_t i = 0; i < trained.embed->std.size(); ++i) {
    csv << fmt::format("{},{:.6g},{:.6g},{},{}\n", i + 1, trained.embed->std[i],
                       random.embed->std[i],
                       i < repr_dim ? fmt::format("{:.6g}", trained.repr.std[i]) : "",
                       i < repr_dim ? fmt::format("{:.6g}", random.repr.std[i]) : "");
  }
}

namespace {

nlohmann::ordered_json config_json(const TrainConfig& c, const RunFacts& f) {
  return {{"epochs", c.epochs}, {"steps", f.steps}, {"batch_size", c.batch_size},
          {"encoder_widths", c.encoder_widths}, {"pool", c.pool},
          {"proj_dims", c.proj_dims}, {"lr", c.lr}, {"weight_decay", c.weight_decay},
          {"preset", c.preset}, {"inv_coeff", f.inv_coeff}, {"var_coeff", f.var_coeff},
          {"cov_coeff", f.cov_coeff}, {"backward", c.backward},
          {"augment", {{"min_scale", c.augment.min_scale}, {"crop_size", c.augment.size},
                       {"brightness", c.augment.brightness},
                       {"contrast", c.augment.contrast}, {"noise", c.augment.noise_std}}},
          {"threads", f.threads}, {"seed", c.seed}, {"train_images", f.train_images},
          {"test_images", f.test_images}, {"probe_iters", c.probe_iters}, {"knn_k", c.knn_k},
          {"supervised_steps", c.supervised_steps}, {"resume", c.resume}};
}

nlohmann::ordered_json row_json(const ResultRow& r) {
  nlohmann::ordered_json j = {{"features", r.name},          {"linear_probe", round4(r.probe_pct)},
                              {"probe_l2", r.probe_l2},      {"knn", round4(r.knn_pct)},
                              {"repr_mean_std", r.repr.mean_std},
                              {"repr_collapsed", round4(r.repr.collapsed_pct)}};
  if (r.embed) {
    j["embed_mean_std"] = r.embed->mean_std;
    j["embed_collapsed"] = round4(r.embed->collapsed_pct);
  }
  return j;
}

}  // namespace

void write_results_json(const fs::path& file, const TrainConfig& c, const RunFacts& f,
                        const std::vector<ResultRow>& rows) {
  nlohmann::ordered_json j;
  j["config"] = config_json(c, f);
  j["results"] = nlohmann::ordered_json::array();
  for (const auto& r : rows) j["results"].push_back(row_json(r));
  j["train_seconds"] = std::round(f.train_seconds * 10) / 10;
  j["total_seconds"] = std::round(f.total_seconds * 10) / 10;
  std::ofstream(file) << j.dump(2) << "\n";
}

void write_plots(const fs::path& out, const std::vector<std::string>& compare) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
    fmt::print(stderr, "gnuplot not found: skipping the PNG plots (install gnuplot-nox)\n");
    return;
  }
  const auto metrics = (out / "metrics.csv").string();
  std::ofstream gp(out / "plots.gp");
  gp << "set terminal pngcairo size 1100,420 font ',10'\nset datafile separator ','\n"
     << "set key autotitle columnhead\nset grid\n";
  gp << "set output '" << (out / "loss.png").string() << "'\n"
     << "set multiplot layout 1,3 title 'VICReg loss terms over training steps (unweighted)'\n"
     << "set xlabel 'step'\nset title 'invariance'\nplot '" << metrics
     << "' using 1:4 with lines lw 1.5 notitle\n"
     << "set title 'variance'\nplot '" << metrics << "' using 1:5 with lines lw 1.5 lc 2 notitle\n"
     << "set title 'covariance'\nset logscale y\nplot '" << metrics
     << "' using 1:6 with lines lw 1.5 lc 3 notitle\nunset logscale y\nunset multiplot\n";
  gp << "set output '" << (out / "std.png").string() << "'\nset size 1,1\n"
     << "set title 'per-dimension std of the test-set embeddings (projector output), sorted'\n"
     << "set xlabel 'dimension (sorted)'\nset ylabel 'std'\nset logscale y\nset key top right\n"
     << "plot '" << (out / "std_sorted.csv").string()
     << "' using 1:2 with lines lw 2 title 'trained (this run)', '' using 1:3 with lines lw 2 "
        "title 'random init'";
  for (const auto& dir : compare) {
    gp << ", '" << (fs::path(dir) / "std_sorted.csv").string()
       << "' using 1:2 with lines lw 2 title 'trained: " << fs::path(dir).filename().string()
       << "'";
  }
  gp << "\n";
  gp.close();
  const auto cmd = "gnuplot '" + (out / "plots.gp").string() + "'";
  if (std::system(cmd.c_str()) != 0) fmt::print(stderr, "gnuplot failed: {}\n", cmd);
}

void report_results(const fs::path& out, const TrainConfig& c, const RunFacts& f,
                    const std::vector<ResultRow>& rows) {
  const auto table = results_table(rows, c.knn_k);
  fmt::print("\n{}\n", table);
  fmt::print("trained for {} steps ({:.0f} s); total run {:.0f} s\n", f.steps, f.train_seconds,
             f.total_seconds);
  fmt::print("{}", collapse_warning(rows.at(0), f));
  std::ofstream(out / "table.md") << table;
  write_std_sorted_csv(out / "std_sorted.csv", rows);
  write_results_json(out / "results.json", c, f, rows);
  if (f.steps > 0) write_plots(out, c.compare);
  fmt::print("wrote {}: metrics.csv, results.json, table.md, std_sorted.csv{}\n", out.string(),
             f.steps > 0 ? ", loss.png, std.png, encoder.pt, projector.pt" : "");
}

}  // namespace vicreg::apps
