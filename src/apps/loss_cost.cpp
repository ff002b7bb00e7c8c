// What the loss costs in a training step (training.h).

#include <algorithm>
#include <chrono>
#include <vector>

#include "progress.h"
#include "training.h"

namespace vicreg::apps {
namespace {

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t h = v.size() / 2;
  return v.size() % 2 ? v[h] : (v[h - 1] + v[h]) / 2;
}

}  // namespace

LossCost measure_loss_cost(const Models& m, const ImageSet& train, const TrainConfig& c,
                           vicreg::VICRegLossOptions o) {
  LossCost l;
  Models copy;
  copy.encoder = clone_module(m.encoder);
  copy.projector = clone_module(m.projector);
  auto &enc = copy.encoder, &proj = copy.projector;
  enc->train();
  proj->train();
  torch::optim::Adam opt(copy.parameters(),
                         torch::optim::AdamOptions(c.lr).weight_decay(c.weight_decay));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(c.seed + 3);
  const auto idx = at::randperm(train.images.size(0), gen).narrow(0, 0, c.batch_size);
  const auto x = train.images.index_select(0, idx);
  const auto cl = at::MemoryFormat::ChannelsLast;
  vicreg::VICRegLoss criterion(o);
  at::Tensor za, zb;
  std::vector<double> step_ms;
  for (int i = 0; i < 4; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    opt.zero_grad();
    za = proj->forward(enc->forward(augment(x, gen, c.augment).contiguous(cl)));
    zb = proj->forward(enc->forward(augment(x, gen, c.augment).contiguous(cl)));
    const auto loss = criterion(za, zb);
    loss.backward();
    opt.step();
    (void)loss.item<double>();
    if (i > 0) step_ms.push_back(1e3 * seconds_since(t0));
  }
  za = za.detach();
  zb = zb.detach();
  auto time_loss = [&](vicreg::Backward b) {
    vicreg::VICRegLoss crit(vicreg::VICRegLossOptions(o).backward(b));
    std::vector<double> ms;
    for (int i = 0; i < 18; ++i) {
      auto a = za.clone().requires_grad_(), bb = zb.clone().requires_grad_();
      const auto t0 = std::chrono::steady_clock::now();
      crit(a, bb).backward();
      if (i >= 3) ms.push_back(1e3 * seconds_since(t0));
    }
    return median(ms);
  };
  l.measured = true;
  l.rows = za.size(0);
  l.dim = za.size(1);
  l.step_ms = median(step_ms);
  l.fused_ms = time_loss(vicreg::Backward::Fused);
  l.autograd_ms = time_loss(vicreg::Backward::Autograd);
  return l;
}

}  // namespace vicreg::apps
