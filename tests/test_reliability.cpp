// Concurrency and determinism of the loss (part of the reliability work).

#include <ATen/core/dispatch/Dispatcher.h>

#include <thread>

#include "helpers.h"

namespace vicreg::testing {
namespace {

struct Result {
  at::Tensor loss, ga, gb;
};

Result run_once(VICRegLoss& module, const at::Tensor& za, const at::Tensor& zb) {
  auto a = za.clone().requires_grad_(true), b = zb.clone().requires_grad_(true);
  auto loss = module(a, b);
  auto g = torch::autograd::grad({loss}, {a, b});
  return {loss.detach(), g[0], g[1]};
}

// 8 threads share one module (and so one path through the operators) on different inputs;
// each thread's results equal the sequential ones.
TEST(Reliability, EightThreadsSharingOneModuleMatchTheSequentialRun) {
  constexpr int kThreads = 8, kIterations = 25;
  for (auto backward : {Backward::Fused, Backward::Autograd}) {
    VICRegLoss module(VICRegLossOptions().backward(backward));
    std::vector<at::Tensor> za, zb;
    std::vector<Result> expected;
    for (int t = 0; t < kThreads; ++t) {
      const std::vector<int64_t> shape = t % 2 ? std::vector<int64_t>{24, 40}
                                               : std::vector<int64_t>{48, 3, 16};
      za.push_back(spread_embeddings(shape, torch::kFloat64, 100 + t));
      zb.push_back(spread_embeddings(shape, torch::kFloat64, 200 + t));
      expected.push_back(run_once(module, za[t], zb[t]));
    }
    std::vector<double> worst(kThreads, 0.0);
    std::vector<std::string> errors(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        try {
          for (int i = 0; i < kIterations; ++i) {
            const auto r = run_once(module, za[t], zb[t]);
            worst[t] = std::max({worst[t], rel_error(r.loss, expected[t].loss),
                                 rel_error(r.ga, expected[t].ga), rel_error(r.gb, expected[t].gb)});
          }
        } catch (const std::exception& e) {
          errors[t] = e.what();
        }
      });
    }
    for (auto& th : threads) th.join();
    for (int t = 0; t < kThreads; ++t) {
      EXPECT_EQ(errors[t], "") << "thread " << t;
      // Equal up to the summation order LibTorch's reductions may pick under contention.
      EXPECT_LT(worst[t], 1e-12) << "thread " << t;
    }
  }
}

// Same inputs, same thread count: bitwise identical loss and gradients, run after run.
TEST(Reliability, RepeatedRunsAreBitwiseIdenticalOnCpu) {
  for (auto backward : {Backward::Fused, Backward::Autograd}) {
    for (const auto& shape : std::vector<std::vector<int64_t>>{{64, 300}, {300, 64}, {32, 4, 50}}) {
      VICRegLoss module(VICRegLossOptions().backward(backward));
      const auto za = spread_embeddings(shape, torch::kFloat32, 7);
      const auto zb = spread_embeddings(shape, torch::kFloat32, 8);
      const auto first = run_once(module, za, zb);
      for (int i = 0; i < 5; ++i) {
        const auto again = run_once(module, za, zb);
        EXPECT_TRUE(torch::equal(first.loss, again.loss));
        EXPECT_TRUE(torch::equal(first.ga, again.ga));
        EXPECT_TRUE(torch::equal(first.gb, again.gb));
      }
    }
  }
}

}  // namespace
}  // namespace vicreg::testing
