// vicreg_train's pictures (plots.h).

#include "plots.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <sstream>
#include <map>
#include <stdexcept>

#include "files.h"
#include "plots_gp.h"  // kPlotsTemplate: src/apps/plots.gp, carried by the program

namespace fs = std::filesystem;

namespace vicreg::apps {
namespace {

using Fields = std::map<std::string, std::string>;

// The template's section `name` with its {{fields}} filled in; a field without a value is a
// bug of this file, not of the run.
std::string section(const std::string& name, const Fields& fields) {
  const std::string text = kPlotsTemplate, head = "### section " + name + "\n";
  size_t begin = text.find(head);
  if (begin == std::string::npos) throw std::logic_error("plots.gp: no section " + name);
  begin += head.size();
  const size_t end = text.find("### section ", begin);
  std::string s = text.substr(begin, end == std::string::npos ? end : end - begin);
  for (size_t p = s.find("{{"); p != std::string::npos; p = s.find("{{", p)) {
    const size_t q = s.find("}}", p);
    const auto it = fields.find(s.substr(p + 2, q - p - 2));
    if (q == std::string::npos || it == fields.end()) {
      throw std::logic_error("plots.gp, section " + name + ": no value for " + s.substr(p, 40));
    }
    s.replace(p, q + 2 - p, it->second);
    p += it->second.size();
  }
  return s;
}

// Tick spacing for an axis of `range` units: 1, 2 or 5 times a power of ten, at most 5 ticks,
// so that four-digit step numbers do not run together.
double tick_spacing(double range) {
  const double raw = std::max(range, 1.0) / 5;
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0}) {
    if (m * p >= raw) return m * p;
  }
  return 10 * p;
}

bool has_curve(const RunFacts& f) { return f.curve.every > 0 && !f.curve.points.empty(); }
bool has_pca(const std::vector<ResultRow>& rows) {
  return rows.size() >= 2 && rows[0].pca && rows[1].pca;
}
// The trained encoder and both baselines, scored at the same counts.
bool has_few_label(const std::vector<ResultRow>& rows) {
  return rows.size() >= 3 && !rows[0].few_label.empty() &&
         rows[1].few_label.size() == rows[0].few_label.size() &&
         rows[2].few_label.size() == rows[0].few_label.size();
}

}  // namespace

std::vector<std::string> write_plot_data(const fs::path& out, const RunFacts& f,
                                         const std::vector<ResultRow>& rows) {
  std::vector<std::string> wrote;
  if (has_curve(f)) {
    std::ostringstream csv;
    csv << "step,knn,random_init_knn,raw_pixels_knn\n";
    for (const auto& p : f.curve.points) {
      csv << fmt::format("{},{:.4f},{:.4f},{:.4f}\n", p.step, p.knn_pct, f.curve.random_init_pct,
                         f.curve.pixels_pct);
    }
    write_file_atomically(out / "curve.csv", csv.str());
    wrote.push_back("curve.csv");
  }
  if (has_pca(rows)) {
    const auto &a = *rows[0].pca, &b = *rows[1].pca;
    std::ostringstream csv;
    csv << "label,trained_pc1,trained_pc2,random_pc1,random_pc2\n";
    for (size_t i = 0; i < a.labels.size(); ++i) {
      csv << fmt::format("{},{:.5g},{:.5g},{:.5g},{:.5g}\n", a.labels[i], a.pc1[i], a.pc2[i],
                         b.pc1[i], b.pc2[i]);
    }
    write_file_atomically(out / "pca.csv", csv.str());
    wrote.push_back("pca.csv");
  }
  if (has_few_label(rows)) {
    std::ostringstream csv;
    csv << "labels_per_class,vicreg,vicreg_std,random_init,random_init_std,raw_pixels,"
           "raw_pixels_std\n";
    for (size_t i = 0; i < rows[0].few_label.size(); ++i) {
      csv << rows[0].few_label[i].k;
      for (int r = 0; r < 3; ++r) {
        const auto& s = rows[r].few_label[i];
        csv << fmt::format(",{:.4f},{:.4f}", s.linear_mean, s.linear_std);
      }
      csv << "\n";
    }
    write_file_atomically(out / "few_label.csv", csv.str());
    wrote.push_back("few_label.csv");
  }
  return wrote;
}

std::vector<std::string> write_plots(const fs::path& out, const std::vector<std::string>& compare,
                                     const RunFacts& f, const std::vector<ResultRow>& rows) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
    fmt::print(stderr, "gnuplot not found: skipping the PNG plots (install gnuplot-nox)\n");
    return {};
  }
  const auto& t = rows.at(0);
  Fields v = {{"out", fs::absolute(out).string()},
              {"steps", std::to_string(f.steps)},
              {"xtics", fmt::format("{:g}", tick_spacing(static_cast<double>(f.steps)))},
              {"inv", fmt::format("{:g}", f.inv_coeff)},
              {"var", fmt::format("{:g}", f.var_coeff)},
              {"cov", fmt::format("{:g}", f.cov_coeff)},
              {"gamma", fmt::format("{:g}", f.gamma)},
              {"std_top", fmt::format("{:g}", 30 * f.gamma)},
              {"embed_dims", std::to_string(t.embed ? t.embed->std.size() : 0)},
              {"repr_dims", std::to_string(t.repr.std.size())}};
  std::string others;
  for (const auto& dir : compare) {
    others += fmt::format(", \\\n     '{}' using 1:2 with lines lw 2 title 'trained: {}'",
                          fs::absolute(fs::path(dir) / "std_sorted.csv").string(),
                          fs::path(dir).filename().string());
  }
  v["compare"] = others;
  std::string script = section("common", v) + section("loss", v) + section("std", v);
  std::vector<std::string> pictures = {"loss.png", "std.png"};
  if (has_curve(f)) {
    v["k"] = std::to_string(f.curve.k);
    v["memory"] = std::to_string(f.curve.memory);
    v["queries"] = std::to_string(f.curve.queries);
    script += section("curve", v);
    pictures.push_back("learning_curve.png");
  }
  if (has_few_label(rows)) {
    std::string ks;
    for (const auto& s : t.few_label) ks += fmt::format("{}{}", ks.empty() ? "" : ", ", s.k);
    v["ks"] = ks;
    const auto [lo, hi] = std::minmax_element(
        t.few_label.begin(), t.few_label.end(),
        [](const FewLabelScore& a, const FewLabelScore& b) { return a.k < b.k; });
    v["k_low"] = fmt::format("{:g}", 0.7 * static_cast<double>(lo->k));
    v["k_high"] = fmt::format("{:g}", 1.4 * static_cast<double>(hi->k));
    v["draws"] = std::to_string(t.few_label[0].linear.size());
    script += section("few_label", v);
    pictures.push_back("few_label.png");
  }
  if (has_pca(rows)) {
    v["trained_pc1"] = fmt::format("{:.0f}", t.pca->explained1);
    v["trained_pc2"] = fmt::format("{:.0f}", t.pca->explained2);
    v["random_pc1"] = fmt::format("{:.0f}", rows[1].pca->explained1);
    v["random_pc2"] = fmt::format("{:.0f}", rows[1].pca->explained2);
    script += section("pca", v);
    pictures.push_back("pca.png");
  }
  write_file_atomically(out / "plots.gp", script);
  // gnuplot draws into a scratch folder; the pictures replace the old ones only when all are
  // drawn, so a failure (a full disk) leaves no half-written PNG.
  const auto scratch = out / "plots.tmp";
  fs::create_directories(scratch);
  const auto run_script = scratch / "plots.gp";
  std::string redirected = script;
  const std::string from = "set output '" + v["out"] + "/";
  const std::string to = "set output '" + fs::absolute(scratch).string() + "/";
  for (size_t at = 0; (at = redirected.find(from, at)) != std::string::npos; at += to.size()) {
    redirected.replace(at, from.size(), to);
  }
  // File by file, not fs::remove_all: PyTorch 2.11's CUDA wheel exports a remove_all of its
  // own that crashes (tests/idx_files.h).
  const auto clean = [&scratch, &run_script, &pictures] {
    std::error_code ec;
    for (const auto& name : pictures) fs::remove(scratch / name, ec);
    fs::remove(run_script, ec);
    fs::remove(scratch, ec);
  };
  bool drawn = false;
  try {
    write_file_atomically(run_script, redirected);
    const auto cmd = "gnuplot '" + run_script.string() + "'";
    drawn = std::system(cmd.c_str()) == 0;
    if (!drawn) fmt::print(stderr, "gnuplot failed: {}\n", cmd);
    for (const auto& name : pictures) {
      if (!drawn) break;
      fs::rename(scratch / name, out / name);
    }
  } catch (...) {
    clean();
    throw;
  }
  clean();
  return drawn ? pictures : std::vector<std::string>{};
}

}  // namespace vicreg::apps
