// vicreg_train's one training loop (loop.h), which the VICReg run and the supervised
// reference drive with their own step.

#include <fmt/format.h>

#include <chrono>
#include <cmath>

#include "loop.h"
#include "progress.h"

namespace vicreg::apps {
namespace {

// Sets the learning rate of every group to the cosine decay from base_lr at step 0 to 0 at
// step `total`, and returns it.
double set_cosine_lr(torch::optim::Optimizer& opt, double base_lr, int64_t step, int64_t total) {
  const double lr = base_lr * 0.5 * (1 + std::cos(M_PI * step / std::max<int64_t>(1, total)));
  for (auto& g : opt.param_groups()) g.options().set_lr(lr);
  return lr;
}

}  // namespace

LoopResult train_loop(torch::optim::Optimizer& opt, at::Generator& gen, const LoopSpec& s,
                      const TrainStep& step) {
  TORCH_CHECK(s.batch_size >= 1 && s.rows >= s.batch_size, "need at least one batch: ", s.rows,
              " training images, --batch-size ", s.batch_size);
  const int64_t per_epoch = s.rows / s.batch_size;
  ProgressBar bar(s.total_steps);
  const auto t0 = std::chrono::steady_clock::now();
  LoopResult r;
  double seconds_before = 0;
  if (s.start) {
    r.steps = s.start->steps;
    seconds_before = s.start->seconds;
    r.hook_seconds = s.start->hook_seconds;
  }
  for (int64_t epoch = r.steps / per_epoch; r.steps < s.total_steps; ++epoch) {
    // A resumed run goes on with the epoch's order and sums; a new epoch draws its order from
    // `gen`, whose state the checkpoint restored, so it is the uninterrupted run's order.
    int64_t b = r.steps - epoch * per_epoch;
    at::Tensor perm;
    std::vector<double> sums(s.names.size(), 0.0);
    int64_t count = 0;
    if (b > 0) {
      TORCH_CHECK(s.start && s.start->order.numel() == s.rows &&
                      s.start->sums.size() == sums.size(),
                  "resuming mid-epoch needs the epoch's order of ", s.rows, " rows");
      perm = s.start->order;
      sums = s.start->sums;
      count = s.start->count;
    } else {
      perm = torch::randperm(s.rows, gen);
    }
    const auto t_epoch = std::chrono::steady_clock::now();
    for (; b < per_epoch && r.steps < s.total_steps; ++b) {
      const auto t_step = std::chrono::steady_clock::now();
      const double lr = set_cosine_lr(opt, s.lr, r.steps, s.total_steps);
      opt.zero_grad();
      r.last = step(perm.narrow(0, b * s.batch_size, s.batch_size), gen);
      opt.step();
      TORCH_CHECK(std::isfinite(r.last.at(0)), s.epoch_prefix,
                  "the loss became non-finite at step ", r.steps + 1);
      for (size_t i = 0; i < sums.size(); ++i) sums[i] += r.last[i];
      ++count;
      const double ips = s.images_per_step / seconds_since(t_step);
      bar.update(r.steps, epoch, s.names, r.last, ips);
      std::string extra = s.extra_name.empty() ? "" : ",";
      if (s.after_step) {
        const auto t_hook = std::chrono::steady_clock::now();
        if (const auto v = s.after_step(r.steps + 1)) extra = fmt::format(",{:.4f}", *v);
        r.hook_seconds += seconds_since(t_hook);
      }
      if (s.csv) {
        *s.csv << metrics_csv_row(r.steps, epoch, r.last, ips, lr, extra) << std::flush;
        TORCH_CHECK(s.csv->good(), "writing step ", r.steps + 1,
                    " to metrics.csv failed (a full disk?); the last checkpoint is intact");
      }
      ++r.steps;
      if (s.checkpoint && (r.steps % s.checkpoint_every == 0 || r.steps == s.total_steps)) {
        s.checkpoint({r.steps, perm, sums, count, seconds_before + seconds_since(t0),
                      r.hook_seconds});
      }
    }
    bar.end_epoch();
    for (auto& v : sums) v /= static_cast<double>(count);
    fmt::print("{}\n", epoch_line(s.epoch_prefix, epoch, s.names, sums, seconds_since(t_epoch)));
  }
  r.seconds = seconds_before + seconds_since(t0);
  return r;
}

}  // namespace vicreg::apps
