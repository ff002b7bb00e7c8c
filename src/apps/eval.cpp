#include "eval.h"

#include <ATen/ATen.h>
#include <torch/optim/lbfgs.h>

#include <algorithm>
#include <cmath>
#include <tuple>

namespace vicreg::apps {

at::Tensor extract_features(const std::function<at::Tensor(const at::Tensor&)>& fn,
                            const at::Tensor& images, int64_t batch) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> parts;
  for (int64_t i = 0; i < images.size(0); i += batch) {
    parts.push_back(fn(images.narrow(0, i, std::min(batch, images.size(0) - i))).flatten(1));
  }
  return at::cat(parts);
}

namespace {

std::pair<at::Tensor, at::Tensor> standardize(const at::Tensor& train, const at::Tensor& test) {
  const auto mean = train.mean(0, true);
  const auto std = train.std(0, true, true).clamp_min(1e-6);
  return {(train - mean) / std, (test - mean) / std};
}

double accuracy(const at::Tensor& pred, const at::Tensor& y) {
  return 100.0 * pred.eq(y).to(at::kDouble).mean().item<double>();
}

}  // namespace

std::pair<at::Tensor, at::Tensor> fit_logistic(const at::Tensor& x, const at::Tensor& y,
                                               int64_t classes, double l2, int64_t max_iter,
                                               int64_t* evaluations) {
  TORCH_CHECK(x.dim() == 2 && y.dim() == 1 && x.size(0) == y.size(0) && x.size(0) > 0,
              "fit_logistic: expected features [N, D] and labels [N] with N > 0, got ",
              x.sizes(), " and ", y.sizes());
  TORCH_CHECK(classes >= 2, "fit_logistic: expected at least 2 classes, got ", classes);
  TORCH_CHECK(l2 >= 0 && std::isfinite(l2), "fit_logistic: expected an L2 penalty >= 0, got ",
              l2);
  TORCH_CHECK(max_iter >= 1, "fit_logistic: expected max_iter >= 1, got ", max_iter);
  const auto xf = x.to(at::kFloat).contiguous();
  const auto yl = y.to(at::kLong);
  auto w = at::zeros({x.size(1), classes}, xf.options()).requires_grad_();
  auto b = at::zeros({classes}, xf.options()).requires_grad_();
  // Full batch: one L-BFGS step runs up to max_iter iterations until the gradient or the
  // change in loss is below tolerance.
  torch::optim::LBFGS opt({w, b}, torch::optim::LBFGSOptions(1.0)
                                      .max_iter(max_iter)
                                      .history_size(20)
                                      .tolerance_grad(1e-6)
                                      .tolerance_change(1e-10)
                                      .line_search_fn(std::string("strong_wolfe")));
  int64_t count = 0;
  auto closure = [&]() -> at::Tensor {
    ++count;
    opt.zero_grad();
    auto loss = at::cross_entropy_loss(at::addmm(b, xf, w), yl) + 0.5 * l2 * w.square().sum();
    loss.backward();
    return loss;
  };
  opt.step(closure);
  if (evaluations) *evaluations = count;
  return {w.detach(), b.detach()};
}

ProbeResult linear_probe(const at::Tensor& train_x, const at::Tensor& train_y,
                         const at::Tensor& test_x, const at::Tensor& test_y,
                         const ProbeOptions& o) {
  TORCH_CHECK(train_x.dim() == 2 && test_x.dim() == 2 && train_x.size(1) == test_x.size(1),
              "linear_probe: expected train and test features [N, D] with the same D, got ",
              train_x.sizes(), " and ", test_x.sizes());
  TORCH_CHECK(train_y.dim() == 1 && train_y.size(0) == train_x.size(0) && test_y.dim() == 1 &&
                  test_y.size(0) == test_x.size(0),
              "linear_probe: expected one label per row, got ", train_y.sizes(), " labels for ",
              train_x.size(0), " train rows and ", test_y.sizes(), " for ", test_x.size(0),
              " test rows");
  TORCH_CHECK(!o.l2_grid.empty(), "linear_probe: expected at least one L2 penalty in l2_grid");
  TORCH_CHECK(o.l2_grid.size() == 1 || (o.holdout > 0 && o.holdout < 1),
              "linear_probe: expected holdout in (0, 1), got ", o.holdout);
  TORCH_CHECK(o.select_rows >= 0, "linear_probe: expected select_rows >= 0, got ",
              o.select_rows);
  TORCH_CHECK(train_y.min().item<int64_t>() >= 0 && test_y.min().item<int64_t>() >= 0,
              "linear_probe: expected labels >= 0");
  const int64_t classes =
      std::max(train_y.max().item<int64_t>(), test_y.max().item<int64_t>()) + 1;
  const auto xtr_raw = train_x.to(at::kFloat);
  ProbeResult r;
  r.l2 = o.l2_grid.front();
  r.val_accuracy = -1;
  const auto fits = static_cast<int64_t>(o.l2_grid.size() > 1 ? o.l2_grid.size() + 1 : 1);
  int64_t fit = 0;
  if (o.l2_grid.size() > 1) {
    // Choose the penalty on held-out training rows (standardized with the rest's statistics).
    auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
    const int64_t n = o.select_rows > 0 ? std::min(o.select_rows, xtr_raw.size(0))
                                        : xtr_raw.size(0);
    const int64_t n_val = static_cast<int64_t>(n * o.holdout);
    TORCH_CHECK(n_val >= 1 && n - n_val >= 2, "linear_probe: ", n,
                " training rows are too few to hold out a fraction of ", o.holdout);
    const auto perm = at::randperm(xtr_raw.size(0), gen).narrow(0, 0, n);
    const auto fit_idx = perm.narrow(0, n_val, n - n_val), val_idx = perm.narrow(0, 0, n_val);
    auto [xfit, xval] = standardize(xtr_raw.index_select(0, fit_idx),
                                    xtr_raw.index_select(0, val_idx));
    const auto yfit = train_y.index_select(0, fit_idx), yval = train_y.index_select(0, val_idx);
    for (double l2 : o.l2_grid) {
      if (o.on_fit) o.on_fit(++fit, fits);
      const auto [w, b] = fit_logistic(xfit, yfit, classes, l2, o.max_iter);
      const double acc = accuracy(at::addmm(b, xval, w).argmax(1), yval);
      if (acc > r.val_accuracy) {
        r.val_accuracy = acc;
        r.l2 = l2;
      }
    }
    // The penalty is on the mean loss, so the same balance of data and penalty on all rows
    // (sklearn's C = 1 / (l2 n), held fixed) is l2 * n_fit / N.
    r.l2 *= static_cast<double>(n - n_val) / xtr_raw.size(0);
  }
  auto [xtr, xte] = standardize(xtr_raw, test_x.to(at::kFloat));
  if (o.on_fit) o.on_fit(++fit, fits);
  const auto [w, b] = fit_logistic(xtr, train_y, classes, r.l2, o.max_iter, &r.evaluations);
  r.accuracy = accuracy(at::addmm(b, xte, w).argmax(1), test_y);
  return r;
}

double knn_accuracy(const at::Tensor& train_x, const at::Tensor& train_y,
                    const at::Tensor& test_x, const at::Tensor& test_y, int64_t k) {
  auto [xtr, xte] = standardize(train_x.to(at::kFloat), test_x.to(at::kFloat));
  xtr = xtr / xtr.norm(2, 1, true).clamp_min(1e-12);
  xte = xte / xte.norm(2, 1, true).clamp_min(1e-12);
  const int64_t classes = train_y.max().item<int64_t>() + 1;
  std::vector<at::Tensor> preds;
  for (int64_t i = 0; i < xte.size(0); i += 1000) {
    const auto q = xte.narrow(0, i, std::min<int64_t>(1000, xte.size(0) - i));
    const auto nn = std::get<1>(at::topk(at::mm(q, xtr.t()), k, 1));  // [b, k]
    const auto votes = at::zeros({q.size(0), classes}, at::kFloat)
                           .scatter_add_(1, train_y.index_select(0, nn.flatten()).view_as(nn),
                                         at::ones(nn.sizes(), at::kFloat));
    preds.push_back(votes.argmax(1));
  }
  return accuracy(at::cat(preds), test_y);
}

double nearest_neighbour_accuracy(const at::Tensor& train_x, const at::Tensor& train_y,
                                  const at::Tensor& test_x, const at::Tensor& test_y) {
  TORCH_CHECK(train_x.dim() == 2 && test_x.dim() == 2 && train_x.size(1) == test_x.size(1) &&
                  train_x.size(0) == train_y.size(0) && train_x.size(0) > 0 &&
                  test_x.size(0) == test_y.size(0),
              "nearest_neighbour_accuracy: expected features [N, D] with one label per row, got ",
              train_x.sizes(), " / ", train_y.sizes(), " and ", test_x.sizes(), " / ",
              test_y.sizes());
  auto xtr = train_x.to(at::kFloat);
  xtr = xtr / xtr.norm(2, 1, true).clamp_min(1e-12);
  std::vector<at::Tensor> preds;
  for (int64_t i = 0; i < test_x.size(0); i += 1000) {
    auto q = test_x.narrow(0, i, std::min<int64_t>(1000, test_x.size(0) - i)).to(at::kFloat);
    q = q / q.norm(2, 1, true).clamp_min(1e-12);
    preds.push_back(train_y.index_select(0, at::mm(q, xtr.t()).argmax(1)));
  }
  return accuracy(at::cat(preds), test_y);
}

std::pair<double, double> mean_std(const std::vector<double>& v) {
  if (v.empty()) return {0.0, 0.0};
  double mean = 0;
  for (double x : v) mean += x;
  mean /= static_cast<double>(v.size());
  double ss = 0;
  for (double x : v) ss += (x - mean) * (x - mean);
  return {mean, v.size() > 1 ? std::sqrt(ss / static_cast<double>(v.size() - 1)) : 0.0};
}

FewLabelPlan plan_few_label(const at::Tensor& train_y, const FewLabelOptions& o) {
  TORCH_CHECK(train_y.dim() == 1 && train_y.size(0) > 0,
              "few-label evaluation: expected training labels [N], got ", train_y.sizes());
  TORCH_CHECK(!o.ks.empty() && o.draws >= 1 && o.val_rows >= 1 && !o.l2_grid.empty(),
              "few-label evaluation: expected labels per class, draws >= 1, validation rows "
              ">= 1 and at least one L2 penalty");
  FewLabelPlan p;
  p.ks = o.ks;
  const auto y = train_y.to(at::kLong).contiguous();
  const int64_t n = y.size(0);
  p.classes = y.max().item<int64_t>() + 1;
  // The validation rows: a seeded random sixth of the rows at most.
  const int64_t n_val = std::max<int64_t>(1, std::min(o.val_rows, n / 6));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed * 7919 + 17);
  const auto perm = at::randperm(n, gen);
  p.val_idx = std::get<0>(perm.narrow(0, 0, n_val).sort());
  auto in_val = at::zeros({n}, at::kBool);
  in_val.index_fill_(0, p.val_idx, true);
  // Per class, its rows outside the validation rows.
  std::vector<at::Tensor> rows_of(p.classes);
  int64_t k_max = 0;
  for (auto k : o.ks) {
    TORCH_CHECK(k >= 1, "few-label evaluation: labels per class must be >= 1, got ", k);
    k_max = std::max(k_max, k);
  }
  for (int64_t c = 0; c < p.classes; ++c) {
    rows_of[c] = at::nonzero(y.eq(c).logical_and(in_val.logical_not())).flatten();
    TORCH_CHECK(rows_of[c].size(0) >= k_max, "few-label evaluation: ", k_max,
                " labelled images per class need ", k_max, " training images of each class "
                "outside the ", n_val, " validation rows; class ", c, " has ",
                rows_of[c].size(0), " (more training images, or smaller k)");
  }
  p.draws.assign(o.ks.size(), std::vector<at::Tensor>(o.draws));
  for (int64_t j = 0; j < o.draws; ++j) {
    auto g = at::make_generator<at::CPUGeneratorImpl>(o.seed * 7919 + 1000 + j);
    std::vector<at::Tensor> order(p.classes);
    for (int64_t c = 0; c < p.classes; ++c) {
      order[c] = rows_of[c].index_select(0, at::randperm(rows_of[c].size(0), g));
    }
    for (size_t i = 0; i < o.ks.size(); ++i) {
      std::vector<at::Tensor> parts;
      for (int64_t c = 0; c < p.classes; ++c) parts.push_back(order[c].narrow(0, 0, o.ks[i]));
      p.draws[i][j] = at::cat(parts);
    }
  }
  return p;
}

std::vector<FewLabelScore> few_label_eval(const at::Tensor& train_x, const at::Tensor& train_y,
                                          const at::Tensor& test_x, const at::Tensor& test_y,
                                          const FewLabelPlan& plan, const FewLabelOptions& o) {
  TORCH_CHECK(train_x.dim() == 2 && test_x.dim() == 2 && train_x.size(1) == test_x.size(1) &&
                  train_x.size(0) == train_y.size(0) && test_x.size(0) == test_y.size(0),
              "few_label_eval: expected train and test features [N, D] with the same D and one "
              "label per row, got ", train_x.sizes(), " and ", test_x.sizes());
  TORCH_CHECK(plan.draws.size() == plan.ks.size() && plan.val_idx.defined(),
              "few_label_eval: the plan does not match its ks (use plan_few_label)");
  auto [xtr, xte] = standardize(train_x.to(at::kFloat), test_x.to(at::kFloat));
  const auto ytr = train_y.to(at::kLong), yte = test_y.to(at::kLong);
  const auto xval = xtr.index_select(0, plan.val_idx);
  const auto yval = ytr.index_select(0, plan.val_idx);
  const int64_t classes =
      std::max(plan.classes, std::max(ytr.max().item<int64_t>(), yte.max().item<int64_t>()) + 1);
  int64_t fits = 0, fit = 0;
  for (const auto& d : plan.draws) fits += static_cast<int64_t>(d.size() * o.l2_grid.size());
  std::vector<FewLabelScore> out;
  for (size_t i = 0; i < plan.ks.size(); ++i) {
    FewLabelScore s;
    s.k = plan.ks[i];
    const auto& draws = plan.draws[i];
    // val[g][j], test[g][j]: accuracy of penalty g on draw j.
    std::vector<std::vector<double>> val(o.l2_grid.size()), test(o.l2_grid.size());
    for (const auto& idx : draws) {
      const auto x = xtr.index_select(0, idx), y = ytr.index_select(0, idx);
      for (size_t g = 0; g < o.l2_grid.size(); ++g) {
        if (o.on_fit) o.on_fit(++fit, fits);
        const auto [w, b] = fit_logistic(x, y, classes, o.l2_grid[g], o.max_iter);
        val[g].push_back(accuracy(at::addmm(b, xval, w).argmax(1), yval));
        test[g].push_back(accuracy(at::addmm(b, xte, w).argmax(1), yte));
      }
      s.knn.push_back(nearest_neighbour_accuracy(x, y, xte, yte));
    }
    size_t best = 0;
    for (size_t g = 1; g < o.l2_grid.size(); ++g) {
      if (mean_std(val[g]).first > mean_std(val[best]).first) best = g;
    }
    s.l2 = o.l2_grid[best];
    s.val_accuracy = mean_std(val[best]).first;
    s.linear = test[best];
    std::tie(s.linear_mean, s.linear_std) = mean_std(s.linear);
    std::tie(s.knn_mean, s.knn_std) = mean_std(s.knn);
    out.push_back(std::move(s));
  }
  return out;
}

Spread spread_stats(const at::Tensor& features) {
  Spread s;
  const auto f = features.to(at::kDouble);
  const auto std = f.std(0, true);
  const auto sorted = std::get<0>(std.sort(0, /*descending=*/true)).contiguous();
  s.std.assign(sorted.data_ptr<double>(), sorted.data_ptr<double>() + sorted.numel());
  s.mean_std = std.mean().item<double>();
  // Relative to the features' overall scale, so that a small but healthy random-init output
  // is not called collapsed, while outputs that all sit on one point are.
  const double rms = f.square().mean().sqrt().item<double>();
  s.collapsed_pct = 100 * std.lt(kCollapsedStd * rms).to(at::kDouble).mean().item<double>();
  return s;
}

}  // namespace vicreg::apps
