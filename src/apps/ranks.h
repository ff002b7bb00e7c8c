#pragma once
// vicreg_train's ranks (--distributed): every rank sees the same batches and augmentations
// (same seeds), trains on its shard of each batch with the loss gathered over all ranks, and
// averages gradients over the group, so the ranks stay in sync. Rank 0 evaluates and writes
// the outputs; BatchNorm statistics are per rank (no SyncBatchNorm), so the run is close to,
// not equal to, the single process on the whole batch.

#include <ATen/ATen.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <vector>

#include "loop.h"
#include "model.h"
#include "train_config.h"
#ifdef VICREG_WITH_DISTRIBUTED
#include "vicreg/distributed.h"
#endif

namespace vicreg::apps {

struct Ranks {
  int rank = 0, world = 1;
#ifdef VICREG_WITH_DISTRIBUTED
  std::shared_ptr<vicreg::distributed::Group> group;
#endif
};

/// The ranks of torchrun's environment with --distributed, else a world of one.
Ranks init_ranks(const TrainConfig& c);

/// Averages the parameters' gradients over the ranks.
void average_gradients(const std::vector<at::Tensor>& params, const Ranks& ranks);

/// The checkpoint a resumed run starts from: the newest one in --resume's directory, or with
/// several ranks the newest step that every rank has (a kill may land between two ranks'
/// writes of the same step); none when there is none.
std::optional<std::filesystem::path> pick_checkpoint(const TrainConfig& c, const Ranks& ranks);

/// Every rank prints the digests of its parameters (equal on every rank when the gradient
/// averaging kept the replicas in sync) and of its BatchNorm statistics (per rank); the tests
/// compare them with an uninterrupted run's. Returns true on ranks other than 0, which then
/// stop and leave the outputs to rank 0.
bool finish_rank(const Models& m, const Ranks& ranks, const LoopResult& trained);

}  // namespace vicreg::apps
