// vicreg_train's ranks (ranks.h).

#include "ranks.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>

#include "checkpoint.h"

namespace vicreg::apps {

Ranks init_ranks(const TrainConfig& c) {
  Ranks r;
#ifdef VICREG_WITH_DISTRIBUTED
  if (c.distributed) {
    r.group = vicreg::distributed::init_from_env(std::chrono::seconds(120));
    r.rank = r.group->rank();
    r.world = r.group->size();
  }
#else
  TORCH_CHECK(!c.distributed, "--distributed: this build of vicreg has no distributed support");
#endif
  return r;
}

void average_gradients(const std::vector<torch::Tensor>& params, const Ranks& ranks) {
#ifdef VICREG_WITH_DISTRIBUTED
  if (!ranks.group) return;
  std::vector<at::Tensor> grads;
  for (auto p : params) grads.push_back(p.mutable_grad());
  vicreg::distributed::all_reduce_mean_(grads, *ranks.group);
#endif
}

std::optional<std::filesystem::path> pick_checkpoint(const TrainConfig& c, const Ranks& ranks) {
  if (c.resume.empty() || c.eval_only) return std::nullopt;
  const auto found = checkpoints_in(c.resume);
  std::vector<int64_t> steps;
  for (const auto& [step, file] : found) steps.push_back(step);
  int64_t chosen = steps.empty() ? -1 : *std::max_element(steps.begin(), steps.end());
#ifdef VICREG_WITH_DISTRIBUTED
  if (ranks.group) {
    auto mine = at::full({1, 2}, -1.0, at::kDouble);
    for (size_t i = 0; i < steps.size() && i < 2; ++i) mine[0][i] = double(steps[i]);
    const auto all = vicreg::distributed::all_gather(mine, *ranks.group);
    std::string each;
    chosen = -1;
    for (int64_t step : steps) {
      if ((all == double(step)).any(1).all().item<bool>()) chosen = std::max(chosen, step);
    }
    for (int64_t r = 0; r < all.size(0); ++r) {
      each += fmt::format("; rank {}: {} and {}", r, all[r][0].item<double>(),
                          all[r][1].item<double>());
    }
    if (chosen < 0 && !steps.empty()) {
      fmt::print("--resume {}: no checkpoint step that every rank has (steps, -1 for none{})\n",
                 c.resume, each);
    }
  }
#endif
  // A run killed before its first checkpoint starts again from step 0, so that a restart
  // with the same command line (as torchrun's restarts do) always works.
  if (chosen < 0) {
    fmt::print("--resume {}: no checkpoint to continue from ({} is missing or damaged); "
               "training starts at step 0\n", c.resume, checkpoint_file(c.resume).string());
    return std::nullopt;
  }
  for (const auto& [step, file] : found) {
    if (step == chosen) return file;
  }
  return std::nullopt;
}

bool finish_rank(const Models& m, const Ranks& ranks, const LoopResult& trained) {
  std::vector<at::Tensor> buffers = m.encoder->buffers();
  for (const auto& b : m.projector->buffers()) buffers.push_back(b);
  fmt::print("rank {}: parameter digest {:016x}, buffer digest {:016x}\n", ranks.rank,
             digest(m.parameters()), digest(buffers));
  if (ranks.rank == 0) return false;
  fmt::print("rank {}: trained {} steps in {:.0f} s; rank 0 evaluates and writes the outputs\n",
             ranks.rank, trained.steps, trained.seconds);
  return true;
}

}  // namespace vicreg::apps
