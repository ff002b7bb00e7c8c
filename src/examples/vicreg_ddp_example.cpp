// Data-parallel VICReg in one file, to copy and change: a small MLP on synthetic two-view data.
// Run it as one process, or as N processes with RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT
// set (as torchrun sets them): each rank takes its shard of every batch, the loss sees the
// batch gathered from all ranks, and the parameter gradients are averaged over the ranks as DDP
// does. The ranks then train the same model as the one process on the whole batch, and each
// prints the same loss at every step. It needs LibTorch and vicreg, nothing else.
//
//   vicreg_ddp_example [--steps 30] [--batch-size 64] [--seed 0] [--lr 0.01]
//                      [--backward fused|autograd]
//
// On Debian's LibTorch, run it with OMP_WAIT_POLICY=PASSIVE OPENBLAS_THREAD_TIMEOUT=4: the
// OpenMP and OpenBLAS threads otherwise spin while idle, and ranks sharing cores slow down.

#include <torch/torch.h>
#include <vicreg/distributed.h>
#include <vicreg/vicreg.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

int main(int argc, char** argv) try {
  int64_t steps = 30, batch = 64, seed = 0;
  double lr = 0.01;
  std::string backward = "fused";
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    TORCH_CHECK(i + 1 < argc, flag, ": expected a value after it");
    const std::string value = argv[++i];
    if (flag == "--steps") steps = std::stoll(value);
    else if (flag == "--batch-size") batch = std::stoll(value);
    else if (flag == "--seed") seed = std::stoll(value);
    else if (flag == "--lr") lr = std::stod(value);
    else if (flag == "--backward") backward = value;
    else TORCH_CHECK(false, "unknown option ", flag,
                     " (--steps, --batch-size, --seed, --lr, --backward)");
  }
  TORCH_CHECK(steps > 0 && batch >= 2 && seed >= 0 && lr > 0, "expected --steps > 0, "
              "--batch-size >= 2, --seed >= 0 and --lr > 0");
  TORCH_CHECK(backward == "fused" || backward == "autograd",
              "--backward: expected fused or autograd, got ", backward);
  torch::set_num_threads(1);

  // A process group when torchrun's variables are set; one process otherwise.
  std::shared_ptr<vicreg::distributed::Group> group;
  int64_t rank = 0, world = 1;
  if (std::getenv("WORLD_SIZE") != nullptr) {
    group = vicreg::distributed::init_from_env(std::chrono::seconds(60));
    rank = group->rank();
    world = group->size();
  }
  TORCH_CHECK(batch >= 2 * world, "--batch-size ", batch, " is too small for ", world,
              " ranks: each needs at least 2 rows");
  // This rank's rows of every batch: the first `batch % world` ranks take one row more.
  const int64_t rows = batch / world + (rank < batch % world ? 1 : 0);
  const int64_t first = rank * (batch / world) + std::min(rank, batch % world);

  torch::manual_seed(seed);  // the same initial weights on every rank
  const int64_t in_dim = 32, out_dim = 64;
  torch::nn::Sequential model(torch::nn::Linear(in_dim, 128), torch::nn::ReLU(),
                              torch::nn::Linear(128, out_dim));
  model->to(torch::kFloat64);
  torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(lr).momentum(0.9));
  auto options = vicreg::VICRegLossOptions().backward(
      backward == "fused" ? vicreg::Backward::Fused : vicreg::Backward::Autograd);
  if (group) options.process_group(group);  // the loss of the batch gathered from every rank

  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed + 1);
  const auto mix = at::randn({8, in_dim}, gen, torch::kFloat64);
  for (int64_t step = 1; step <= steps; ++step) {
    // Two noisy views of the same latent rows; every rank draws the whole batch (the same
    // generator) and keeps its shard.
    const auto latent = at::randn({batch, 8}, gen, torch::kFloat64);
    const auto xa = at::mm(latent, mix) + 0.3 * at::randn({batch, in_dim}, gen, torch::kFloat64);
    const auto xb = at::mm(latent, mix) + 0.3 * at::randn({batch, in_dim}, gen, torch::kFloat64);
    const auto t = vicreg::functional::vicreg_terms(model->forward(xa.narrow(0, first, rows)),
                                                    model->forward(xb.narrow(0, first, rows)),
                                                    options);
    opt.zero_grad();
    t.loss.backward();
    if (group) {  // average the gradients over the ranks, as DDP does
      std::vector<torch::Tensor> grads;
      for (auto& p : model->parameters()) grads.push_back(p.grad());
      vicreg::distributed::all_reduce_mean_(grads, *group);
    }
    opt.step();
    std::printf("step %lld loss %.12g invariance %.12g variance %.12g covariance %.12g\n",
                static_cast<long long>(step), t.loss.item<double>(), t.invariance.item<double>(),
                t.variance.item<double>(), t.covariance.item<double>());
  }
  if (rank == 0) {
    std::fprintf(stderr, "rank %lld of %lld: %lld rows of each %lld-row batch\n",
                 static_cast<long long>(rank), static_cast<long long>(world),
                 static_cast<long long>(rows), static_cast<long long>(batch));
  }
  return 0;
} catch (const c10::Error& e) {
  std::fprintf(stderr, "vicreg_ddp_example: %s\n", e.what_without_backtrace());
  return 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "vicreg_ddp_example: %s\n", e.what());
  return 1;
}
