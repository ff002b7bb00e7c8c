#include "eval.h"

#include <ATen/ATen.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/adam.h>

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

double linear_probe_accuracy(const at::Tensor& train_x, const at::Tensor& train_y,
                             const at::Tensor& test_x, const at::Tensor& test_y,
                             const ProbeOptions& o) {
  auto [xtr, xte] = standardize(train_x.to(at::kFloat), test_x.to(at::kFloat));
  const int64_t classes = train_y.max().item<int64_t>() + 1;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  torch::nn::Linear clf(xtr.size(1), classes);
  {
    at::NoGradGuard g;
    clf->weight.normal_(0, 0.01, gen);
    clf->bias.zero_();
  }
  torch::optim::Adam opt(clf->parameters(),
                         torch::optim::AdamOptions(o.lr).weight_decay(o.weight_decay));
  const int64_t n = xtr.size(0);
  for (int64_t epoch = 0; epoch < o.epochs; ++epoch) {
    const auto perm = at::randperm(n, gen);
    for (int64_t i = 0; i < n; i += o.batch) {
      const auto idx = perm.narrow(0, i, std::min(o.batch, n - i));
      opt.zero_grad();
      at::cross_entropy_loss(clf(xtr.index_select(0, idx)), train_y.index_select(0, idx))
          .backward();
      opt.step();
    }
  }
  at::NoGradGuard g;
  return accuracy(clf(xte).argmax(1), test_y);
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

SpreadStats spread_stats(const at::Tensor& features) {
  SpreadStats s;
  const auto f = features.to(at::kDouble);
  const auto std = f.std(0, true);
  s.std = std::get<0>(std.sort(0, /*descending=*/true));
  s.mean_std = std.mean().item<double>();
  // Relative to the features' overall scale, so that a small but healthy random-init output
  // is not called collapsed, while outputs that all sit on one point are.
  const double rms = f.square().mean().sqrt().item<double>();
  s.collapsed = std.lt(kCollapsedStd * rms).to(at::kDouble).mean().item<double>();
  return s;
}

}  // namespace vicreg::apps
