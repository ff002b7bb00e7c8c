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
  const auto scan = checkpoints_in(c.resume);
  std::vector<int64_t> steps;
  for (const auto& [step, file] : scan.intact) steps.push_back(step);
  // Checkpoints that exist but none intact: starting over would write over the evidence.
  const bool broken = steps.empty() && !scan.damaged.empty();
  std::string damaged;
  for (const auto& d : scan.damaged) damaged += "; " + d;
  int64_t chosen = steps.empty() ? -1 : *std::max_element(steps.begin(), steps.end());
#ifdef VICREG_WITH_DISTRIBUTED
  if (ranks.group) {
    // Each rank's two steps (-1: none), and whether its checkpoints are all damaged.
    auto mine = at::full({1, 3}, -1.0, at::kDouble);
    for (size_t i = 0; i < steps.size() && i < 2; ++i) mine[0][i] = double(steps[i]);
    mine[0][2] = broken ? 1.0 : 0.0;
    const auto all = vicreg::distributed::all_gather(mine, *ranks.group);
    for (int64_t r = 0; r < all.size(0); ++r) {
      TORCH_CHECK(all[r][2].item<double>() == 0.0, "--resume ", c.resume, ": rank ", r,
                  " has no intact checkpoint", r == ranks.rank ? damaged : "",
                  ". Refused, and nothing written: restore its checkpoint, or move every "
                  "rank's checkpoints away to start at step 0");
    }
    const auto both = all.narrow(1, 0, 2);
    std::string each;
    chosen = -1;
    for (int64_t step : steps) {
      if ((both == double(step)).any(1).all().item<bool>()) chosen = std::max(chosen, step);
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
  TORCH_CHECK(!broken, "--resume ", c.resume, ": no intact checkpoint", damaged,
              ". Refused, and nothing written: restore a checkpoint, or move the damaged ones "
              "away to start at step 0");
  // A run killed before its first checkpoint (or a first launch under a script that always
  // passes --resume) starts at step 0, so that a restart with the same command line works.
  if (chosen < 0) {
    fmt::print("--resume {}: no checkpoint to continue from; training starts at step 0\n",
               c.resume);
    return std::nullopt;
  }
  for (const auto& [step, file] : scan.intact) {
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
