// vicreg_ddp_example: data-parallel VICReg on synthetic two-view data. Run it once as a single
// process, or as N processes with RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set (as torchrun
// does): each rank takes its shard of every batch, the loss sees the batch gathered from all
// ranks, and parameter gradients are averaged over ranks as DDP does. The ranks then train the
// same model as the single process on the whole batch; each prints the loss per step.

#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cstdlib>

#include "data.h"
#include "runtime.h"
#include "vicreg/distributed.h"
#include "vicreg/vicreg.h"

int main(int argc, char** argv) {
  vicreg::apps::configure_threads();
  CLI::App app{"Data-parallel VICReg on synthetic two-view data (single or multi-process)"};
  int64_t steps = 30, batch = 64, in_dim = 32, out_dim = 64;
  uint64_t seed = 0;
  double lr = 0.01;
  std::string backward = "fused";
  app.add_option("--steps", steps)->capture_default_str();
  app.add_option("--batch-size", batch, "global batch, split over the ranks")->capture_default_str();
  app.add_option("--seed", seed)->capture_default_str();
  app.add_option("--lr", lr, "SGD learning rate (momentum 0.9)")->capture_default_str();
  app.add_option("--backward", backward)->capture_default_str()->check(
      CLI::IsMember({"fused", "autograd"}));
  CLI11_PARSE(app, argc, argv);
  try {
    torch::set_num_threads(1);
    std::shared_ptr<vicreg::distributed::Group> group;
    int rank = 0, world = 1;
    if (std::getenv("WORLD_SIZE") != nullptr) {
      group = vicreg::distributed::init_from_env(std::chrono::seconds(60));
      rank = group->rank();
      world = group->size();
    }
    // Unequal shards when world does not divide the batch.
    const auto shard = vicreg::apps::shard_of(batch, rank, world);

    torch::manual_seed(seed);  // same initial weights on every rank
    torch::nn::Sequential model(torch::nn::Linear(in_dim, 128), torch::nn::ReLU(),
                                torch::nn::Linear(128, out_dim));
    model->to(torch::kFloat64);
    torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(lr).momentum(0.9));
    auto opts = vicreg::VICRegLossOptions().backward(
        backward == "fused" ? vicreg::Backward::Fused : vicreg::Backward::Autograd);
    if (group) opts.process_group(group);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed + 1);
    const auto mix = at::randn({8, in_dim}, gen, torch::kFloat64);
    for (int64_t step = 0; step < steps; ++step) {
      // Every rank draws the whole batch (same generator) and keeps its shard.
      const auto latent = at::randn({batch, 8}, gen, torch::kFloat64);
      const auto xa = at::mm(latent, mix) + 0.3 * at::randn({batch, in_dim}, gen, torch::kFloat64);
      const auto xb = at::mm(latent, mix) + 0.3 * at::randn({batch, in_dim}, gen, torch::kFloat64);
      const auto terms = vicreg::functional::vicreg_terms(
          model->forward(xa.narrow(0, shard.begin, shard.size)), model->forward(xb.narrow(0, shard.begin, shard.size)),
          opts);
      opt.zero_grad();
      terms.loss.backward();
      if (group) {
        std::vector<at::Tensor> grads;
        for (auto& p : model->parameters()) grads.push_back(p.grad());
        vicreg::distributed::all_reduce_mean_(grads, *group);
      }
      opt.step();
      fmt::print("step {} loss {:.12g} invariance {:.12g} variance {:.12g} covariance {:.12g}\n",
                 step + 1, terms.loss.item<double>(), terms.invariance.item<double>(),
                 terms.variance.item<double>(), terms.covariance.item<double>());
    }
    if (rank == 0) {
      fmt::print(stderr, "rank {} of {}: {} rows of each {}-row batch\n", rank, world, shard.size,
                 batch);
    }
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "vicreg_ddp_example: {}\n", e.what());
    return 1;
  }
}
