// vicreg_train's report (report.h).

#include "report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <nlohmann/json.hpp>

#include "files.h"
#include "plots.h"

namespace fs = std::filesystem;

namespace vicreg::apps {

namespace {

// Percentages with 4 decimals: 87.68, not 87.680000000000007.
double round4(double v) { return std::round(v * 1e4) / 1e4; }

}  // namespace

// ---------------------------------------------------------------------------------------------
// Tables, warning, files

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

std::string few_label_table(const std::vector<ResultRow>& rows) {
  if (rows.empty() || rows[0].few_label.empty()) return "";
  std::string t =
      "| labels per class | features | linear probe acc. | 1-NN acc. | probe L2 (val. acc.) |\n"
      "|---|---|---|---|---|\n";
  for (size_t i = 0; i < rows[0].few_label.size(); ++i) {
    for (const auto& r : rows) {
      if (i >= r.few_label.size()) continue;
      const auto& s = r.few_label[i];
      t += fmt::format("| {} | {} | {:.2f} ± {:.2f}% | {:.2f} ± {:.2f}% | {:g} ({:.1f}%) |\n", s.k,
                       r.name, s.linear_mean, s.linear_std, s.knn_mean, s.knn_std, s.l2,
                       s.val_accuracy);
    }
  }
  const auto& s0 = rows[0].few_label[0];
  return t + fmt::format(
                 "\nFew labels: k labelled training images per class, {} draws (the same images "
                 "for every row), scored on the test set; mean ± std over the draws. Features "
                 "standardized with all training images' statistics. Linear probe: logistic "
                 "regression (L-BFGS), its L2 penalty chosen per row and k by mean accuracy on "
                 "validation images from the training set that no draw contains (val. acc.). "
                 "1-NN: cosine similarity, same draws.\n",
                 s0.linear.size());
}

namespace {

// "+4.5" / "-0.3": a margin in points.
std::string signed_points(double v) { return fmt::format("{:+.1f}", v); }

}  // namespace

namespace {

// The trained encoder's lead over another row, in points of linear-probe test accuracy: at
// each few-label count both rows have, and with all labels.
struct Margin {
  std::string versus;
  std::vector<std::pair<int64_t, double>> few;  ///< (labels per class, points)
  double all = 0;
};

std::vector<Margin> margins(const std::vector<ResultRow>& rows) {
  std::vector<Margin> m;
  if (rows.size() < 3) return m;
  const auto& t = rows[0];
  for (size_t r = 1; r < 3; ++r) {
    const auto& o = rows[r];
    Margin g{o.name, {}, t.probe_pct - o.probe_pct};
    for (size_t i = 0; i < t.few_label.size() && i < o.few_label.size(); ++i) {
      g.few.emplace_back(t.few_label[i].k, t.few_label[i].linear_mean - o.few_label[i].linear_mean);
    }
    m.push_back(g);
  }
  return m;
}

}  // namespace

std::string verdict_line(const std::vector<ResultRow>& rows) {
  const auto m = margins(rows);
  if (m.empty()) return "";
  auto versus = [](const Margin& g) {
    std::string s;
    for (size_t i = 0; i < g.few.size(); ++i) {
      s += fmt::format("{} at {}{}, ", signed_points(g.few[i].second), g.few[i].first,
                       i + 1 == g.few.size() ? " labels per class" : "");
    }
    return s + signed_points(g.all) + " with all labels";
  };
  const auto& t = rows[0];
  return fmt::format("verdict: {} vs {}: {}; vs {}: {} (linear probe, points of test accuracy{})\n",
                     t.name, m[0].versus, versus(m[0]), m[1].versus, versus(m[1]),
                     t.few_label.empty()
                         ? ""
                         : fmt::format("; few labels: mean of {} draws", t.few_label[0].linear.size()));
}

std::string seeds_summary(const std::vector<uint64_t>& seeds,
                          const std::vector<std::vector<ResultRow>>& runs) {
  if (runs.empty() || runs[0].size() < 3) return "";
  std::string seed_list;
  for (auto s : seeds) seed_list += fmt::format("{}{}", seed_list.empty() ? "" : ", ", s);
  // margins[i][r][o]: k index i (the last index: all labels), run r, other row o (1, 2).
  const size_t nk = runs[0][0].few_label.size();
  auto margin = [&](size_t i, const std::vector<ResultRow>& rows, size_t o) {
    if (i == nk) return rows[0].probe_pct - rows[o].probe_pct;
    return rows[0].few_label.at(i).linear_mean - rows[o].few_label.at(i).linear_mean;
  };
  struct Spread3 {
    std::vector<double> v;
    double mean = 0, min = 0, max = 0;
  };
  auto spread = [&](size_t i, size_t o) {
    Spread3 s;
    for (const auto& rows : runs) s.v.push_back(margin(i, rows, o));
    s.min = *std::min_element(s.v.begin(), s.v.end());
    s.max = *std::max_element(s.v.begin(), s.v.end());
    for (double x : s.v) s.mean += x / static_cast<double>(s.v.size());
    return s;
  };
  auto cell = [](const Spread3& s) {
    std::string per;
    for (double x : s.v) per += fmt::format("{}{:+.1f}", per.empty() ? "" : ", ", x);
    return fmt::format("{} | {:+.1f} | {:+.1f} | {:+.1f}", per, s.mean, s.min, s.max);
  };
  std::string t = fmt::format(
      "seeds {}: {} minus {} and minus {}, linear-probe test accuracy, points\n\n"
      "| labels per class | vs random init: each seed | mean | min | max | vs raw pixels: each "
      "seed | mean | min | max |\n|---|---|---|---|---|---|---|---|---|\n",
      seed_list, runs[0][0].name, runs[0][1].name, runs[0][2].name);
  for (size_t i = 0; i <= nk; ++i) {
    t += fmt::format("| {} | {} | {} |\n",
                     i == nk ? std::string("all") : std::to_string(runs[0][0].few_label[i].k),
                     cell(spread(i, 1)), cell(spread(i, 2)));
  }
  size_t i10 = 0;
  for (size_t i = 0; i < nk; ++i) {
    if (runs[0][0].few_label[i].k == 10) i10 = i;
  }
  if (nk > 0) {
    const auto a = spread(i10, 1), b = spread(i10, 2);
    t += fmt::format(
        "\n{} labels per class over seeds {}: margin over random init mean {:+.1f} (min {:+.1f}, "
        "max {:+.1f}); over raw pixels mean {:+.1f} (min {:+.1f}, max {:+.1f})\n",
        runs[0][0].few_label[i10].k, seed_list, a.mean, a.min, a.max, b.mean, b.min, b.max);
  }
  return t;
}

std::string loss_cost_line(const LossCost& l) {
  if (!l.measured) return "";
  return fmt::format(
      "loss cost: {:.1f} ms forward + backward (hand-written) of a {:.0f} ms training step "
      "({:.1f}%); autograd would take {:.1f} ms ({:.1f}x); on one real batch, 2 views of "
      "[{}, {}], medians\n",
      l.fused_ms, l.step_ms, 100 * l.fused_ms / l.step_ms, l.autograd_ms,
      l.autograd_ms / l.fused_ms, l.rows, l.dim);
}

void write_std_sorted_csv(const fs::path& file, const std::vector<ResultRow>& rows) {
  std::ostringstream csv;
  csv << "rank,trained_embedding,random_embedding,trained_repr,random_repr\n";
  const auto& trained = rows.at(0);
  const auto& random = rows.at(1);
  // Rows to the larger of the two widths; the narrower one's columns end in empty fields.
  auto at = [](const std::vector<double>& v, size_t i) {
    return i < v.size() ? fmt::format("{:.6g}", v[i]) : std::string();
  };
  const auto& te = trained.embed->std;
  const auto& re = random.embed->std;
  for (size_t i = 0; i < std::max(te.size(), trained.repr.std.size()); ++i) {
    csv << fmt::format("{},{},{},{},{}\n", i + 1, at(te, i), at(re, i), at(trained.repr.std, i),
                       at(random.repr.std, i));
  }
  write_file_atomically(file, csv.str());
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
          {"supervised_steps", c.supervised_steps}, {"few_label_k", c.few_label_k},
          {"few_label_draws", c.few_label_draws}, {"curve_every", c.curve_every},
          {"resume", c.resume}};
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
  j["few_label"] = nlohmann::ordered_json::array();
  for (const auto& r : rows) {
    for (const auto& s : r.few_label) {
      j["few_label"].push_back({{"features", r.name}, {"labels_per_class", s.k},
                                {"linear_mean", round4(s.linear_mean)},
                                {"linear_std", round4(s.linear_std)},
                                {"knn_mean", round4(s.knn_mean)}, {"knn_std", round4(s.knn_std)},
                                {"draws", s.linear.size()}, {"probe_l2", s.l2},
                                {"val_accuracy", round4(s.val_accuracy)}});
    }
  }
  if (f.curve.every > 0 && !f.curve.points.empty()) {
    nlohmann::ordered_json points = nlohmann::ordered_json::array();
    for (const auto& p : f.curve.points) points.push_back({{"step", p.step}, {"knn", round4(p.knn_pct)}});
    j["learning_curve"] = {{"every", f.curve.every}, {"memory_images", f.curve.memory},
                           {"test_images", f.curve.queries}, {"knn_k", f.curve.k},
                           {"points", points},
                           {"random_init_knn", round4(f.curve.random_init_pct)},
                           {"raw_pixels_knn", round4(f.curve.pixels_pct)}};
  }
  if (f.loss_cost.measured) {
    const auto& l = f.loss_cost;
    j["loss_cost"] = {{"rows", l.rows}, {"dim", l.dim},
                      {"fused_ms", std::round(l.fused_ms * 1000) / 1000},
                      {"autograd_ms", std::round(l.autograd_ms * 1000) / 1000},
                      {"step_ms", std::round(l.step_ms * 100) / 100}};
  }
  j["verdict"] = verdict_line(rows);
  // The verdict's margins as numbers: points of linear-probe accuracy over each baseline.
  for (const auto& g : margins(rows)) {
    nlohmann::ordered_json few = nlohmann::ordered_json::array();
    for (const auto& [k, points] : g.few) {
      few.push_back({{"labels_per_class", k}, {"points", round4(points)}});
    }
    j["margins"][g.versus] = {{"all_labels", round4(g.all)}, {"few_labels", few}};
  }
  if (!j["verdict"].get<std::string>().empty()) {
    auto v = j["verdict"].get<std::string>();
    j["verdict"] = v.substr(0, v.size() - 1);  // without the newline
  }
  nlohmann::ordered_json timing;
  for (const auto& [name, sec] : f.phases) timing[name] = std::round(sec * 10) / 10;
  j["timing"] = timing;
  j["train_seconds"] = std::round(f.train_seconds * 10) / 10;
  j["total_seconds"] = std::round(f.total_seconds * 10) / 10;
  write_file_atomically(file, j.dump(2) + "\n");
}

void report_results(const fs::path& out, const TrainConfig& c, const RunFacts& f,
                    const std::vector<ResultRow>& rows) {
  const auto table = results_table(rows, c.knn_k);
  const auto few = few_label_table(rows);
  fmt::print("\n{}\n", table);
  if (!few.empty()) fmt::print("{}\n", few);
  fmt::print("{}", loss_cost_line(f.loss_cost));
  std::string phases;
  for (const auto& [name, sec] : f.phases) {
    phases += fmt::format("{}{} {:.0f} s", phases.empty() ? "" : ", ", name, sec);
  }
  fmt::print("trained for {} steps ({:.0f} s); total run {:.0f} s ({})\n", f.steps,
             f.train_seconds, f.total_seconds, phases);
  fmt::print("{}", collapse_warning(rows.at(0), f));
  write_file_atomically(out / "table.md", table + (few.empty() ? "" : "\n" + few));
  write_std_sorted_csv(out / "std_sorted.csv", rows);
  write_results_json(out / "results.json", c, f, rows);
  std::string wrote = "metrics.csv, results.json, table.md, std_sorted.csv";
  for (const auto& name : write_plot_data(out, f, rows)) wrote += ", " + name;
  if (f.steps > 0) {
    for (const auto& name : write_plots(out, c.compare, f, rows)) wrote += ", " + name;
    wrote += ", encoder.pt, projector.pt (each with its .sha256)";
  }
  for (const char* name : {"checkpoint.pt", "checkpoint.prev.pt"}) {
    if (fs::exists(out / name)) wrote += fmt::format(", {}", name);
  }
  fmt::print("wrote {}: {}\n", out.string(), wrote);
  fmt::print("{}", verdict_line(rows));
}

}  // namespace vicreg::apps
