// vicreg_train's evaluation of its encoders (scores.h).

#include "scores.h"

#include <fmt/format.h>

#include <chrono>
#include <optional>

#include "int_list.h"
#include "progress.h"
#include "training.h"

namespace vicreg::apps {

FewLabelOptions few_label_options(const TrainConfig& c, const at::Tensor& train_labels,
                                  std::vector<int64_t>* dropped) {
  FewLabelOptions o;
  const auto ks = parse_int_list(c.few_label_k, kFewLabelK);
  TORCH_CHECK(ks, "--few-label-k: must be ", describe(kFewLabelK), ", got '", c.few_label_k, "'");
  o.ks = *ks;
  o.draws = c.few_label_draws;
  o.max_iter = c.probe_iters;
  o.seed = 0;  // the same draws in every run, whatever --seed: runs differ only by training
  if (!c.few_label_k_set) {
    std::vector<int64_t> kept;
    for (auto k : o.ks) {
      FewLabelOptions one = o;
      one.ks = {k};
      one.draws = 1;
      try {
        plan_few_label(train_labels, one);
        kept.push_back(k);
      } catch (const c10::Error&) {
        if (dropped) dropped->push_back(k);
      }
    }
    o.ks = kept;
  }
  return o;
}

Projection project_2d(const at::Tensor& features, const at::Tensor& labels) {
  auto x = features.to(at::kDouble);
  x = (x - x.mean(0, true)) / x.std(0, true, true).clamp_min(1e-12);
  const auto cov = x.t().mm(x) / std::max<int64_t>(1, x.size(0) - 1);
  const auto [evals, evecs] = at::linalg_eigh(cov);  // ascending
  const int64_t d = x.size(1);
  TORCH_CHECK(d >= 2, "project_2d: expected at least 2 feature dims, got ", d);
  auto v = evecs.narrow(1, d - 2, 2).flip({1}).clone();  // [d, 2], largest first
  for (int64_t j = 0; j < 2; ++j) {
    const auto col = v.select(1, j);
    if (col[col.abs().argmax().item<int64_t>()].item<double>() < 0) col.neg_();
  }
  const auto xy = x.mm(v).to(at::kFloat).contiguous();
  const double total = evals.sum().item<double>();
  Projection p;
  const auto* a = xy.data_ptr<float>();
  for (int64_t i = 0; i < xy.size(0); ++i) {
    p.pc1.push_back(a[2 * i]);
    p.pc2.push_back(a[2 * i + 1]);
  }
  const auto y = labels.to(at::kLong).contiguous();
  p.labels.assign(y.data_ptr<int64_t>(), y.data_ptr<int64_t>() + y.numel());
  p.explained1 = 100 * evals[d - 1].item<double>() / total;
  p.explained2 = 100 * evals[d - 2].item<double>() / total;
  return p;
}

ResultRow evaluate(const std::string& name, const std::string& label, const Features& encode,
                   const Features& project, const ImageSet& train, const ImageSet& test,
                   const TrainConfig& c, const FewLabelPlan* few, bool pca) {
  const auto t0 = std::chrono::steady_clock::now();
  StatusLine status;
  auto say = [&](const std::string& what) {
    status.show(fmt::format("evaluating {} ({}): {}", name, label, what));
  };
  say("features");
  const auto ftr = extract_features(encode, train.images);
  const auto fte = extract_features(encode, test.images);
  ProbeOptions po;
  po.max_iter = c.probe_iters;
  po.seed = c.seed;
  po.on_fit = [&](int64_t fit, int64_t fits) {
    say(fmt::format("linear probe, L-BFGS fit {}/{}", fit, fits));
  };
  const auto probe = linear_probe(ftr, train.labels, fte, test.labels, po);
  say("k-NN");
  ResultRow r;
  r.name = name;
  r.probe_pct = probe.accuracy;
  r.probe_l2 = probe.l2;
  r.knn_pct = knn_accuracy(ftr, train.labels, fte, test.labels, c.knn_k);
  r.repr = spread_stats(fte);
  if (project) r.embed = spread_stats(extract_features(project, fte));
  r.full_seconds = seconds_since(t0);
  std::string few_text;
  if (few && !few->ks.empty()) {
    const auto t1 = std::chrono::steady_clock::now();
    auto fo = few_label_options(c, train.labels);
    fo.on_fit = [&](int64_t fit, int64_t fits) {  // one line per 20 fits in a log
      if ((fit - 1) % 20 == 0 || fit == fits) {
        say(fmt::format("few labels, L-BFGS fit {}/{}", fit, fits));
      }
    };
    r.few_label = few_label_eval(ftr, train.labels, fte, test.labels, *few, fo);
    for (const auto& s : r.few_label) {
      few_text += fmt::format(" {}: {:.1f}/{:.1f}%", s.k, s.linear_mean, s.knn_mean);
    }
    r.few_label_seconds = seconds_since(t1);
    few_text = fmt::format("; per class, linear/1-NN{} ({:.0f} s)", few_text, r.few_label_seconds);
  }
  if (pca) r.pca = project_2d(fte, test.labels);
  status.clear();
  fmt::print("  evaluated {:<22} linear probe {:5.2f}% (L2 {:g})  k-NN {:5.2f}%  ({:.0f} s){}\n",
             name, r.probe_pct, r.probe_l2, r.knn_pct, r.full_seconds, few_text);
  return r;
}

std::vector<ResultRow> evaluate_rows(Models& m, const ImageSet& train, const ImageSet& test,
                                     const TrainConfig& c) {
  fmt::print("evaluating on {} test images (probe trained on {} train images)\n",
             test.images.size(0), train.images.size(0));
  for (auto* s : {&m.encoder, &m.projector, &m.encoder_init, &m.projector_init}) (*s)->eval();
  std::vector<int64_t> dropped;
  const auto fo = few_label_options(c, train.labels, &dropped);
  std::optional<FewLabelPlan> plan;
  auto list = [](const std::vector<int64_t>& v) {
    std::string s;
    for (auto k : v) s += fmt::format("{}{}", s.empty() ? "" : ", ", k);
    return s;
  };
  if (!fo.ks.empty()) {
    plan = plan_few_label(train.labels, fo);
    fmt::print("few labels: {} labelled images per class, {} draws, penalty chosen on {} "
               "validation images of the training set\n",
               list(fo.ks), fo.draws, plan->val_idx.size(0));
  }
  if (!dropped.empty()) {
    fmt::print("few labels: left out {} per class: too few training images of some class "
               "(--train-subset); --few-label-k sets the counts\n",
               list(dropped));
  }
  const FewLabelPlan* few = plan ? &*plan : nullptr;
  const int count = c.supervised_steps > 0 ? 4 : 3;
  auto label = [count](int i) { return fmt::format("{}/{}", i, count); };
  std::vector<ResultRow> rows;
  rows.push_back(evaluate("VICReg encoder", label(1), encoder_of(m.encoder),
                          forward_of(m.projector), train, test, c, few, true));
  rows.push_back(evaluate("random-init encoder", label(2), encoder_of(m.encoder_init),
                          forward_of(m.projector_init), train, test, c, few, true));
  rows.push_back(evaluate(
      "raw pixels", label(3), [](const at::Tensor& x) { return x; }, nullptr, train, test, c,
      few));
  if (c.supervised_steps > 0) {
    const auto sup = train_supervised(m.encoder_init, m.repr_dim, train, c);
    rows.push_back(evaluate("supervised encoder", label(4), encoder_of(sup), nullptr, train,
                            test, c, few));
  }
  return rows;
}

}  // namespace vicreg::apps
