#pragma once
// vicreg_train's two users of the training loop (loop.h): the VICReg run and the supervised
// reference; and what the loss costs in a step of the first (loss_cost.cpp).

#include <torch/torch.h>

#include <filesystem>

#include "data.h"
#include "loop.h"
#include "model.h"
#include "ranks.h"
#include "results.h"
#include "train_config.h"
#include "vicreg/vicreg.h"

namespace vicreg::apps {

/// Trains `m` with `criterion` as `c` says: metrics.csv and checkpoints into `out`, the
/// learning curve (k-NN on fixed subsets, rank 0 only) into `curve`; continues from the
/// checkpoint that pick_checkpoint chooses.
LoopResult train_vicreg(Models& m, vicreg::VICRegLoss& criterion, const ImageSet& train,
                        const ImageSet& test, const TrainConfig& c, const Ranks& ranks,
                        const std::filesystem::path& out, LearningCurve& curve);

/// The supervised reference: a copy of `init` trained with the labels (a linear head on the
/// representation, cross-entropy) on un-augmented images for c.supervised_steps steps, with
/// the VICReg run's batch size, Adam, learning rate and cosine schedule. It tells how far this
/// encoder rises above its random init in that many steps when the labels are known.
torch::nn::Sequential train_supervised(const torch::nn::Sequential& init, int64_t repr_dim,
                                       const ImageSet& train, const TrainConfig& c);

/// What the loss costs in a step, on copies of the models (training is not touched): a whole
/// training step (two augmentations, encoder and projector on both views, the loss, backward,
/// Adam) timed 3 times after a warm-up, then the loss's forward + backward on the embeddings of
/// that real batch, with the hand-written and with the autograd backward (15 times each after 3
/// warm-ups); medians.
LossCost measure_loss_cost(const Models& m, const ImageSet& train, const TrainConfig& c,
                           vicreg::VICRegLossOptions o);

}  // namespace vicreg::apps
