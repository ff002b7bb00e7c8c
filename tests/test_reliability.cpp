// Concurrency and determinism of the loss (part of the reliability work).

#include <ATen/core/dispatch/Dispatcher.h>

#include <functional>
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

constexpr int kThreads = 8, kIterations = 25;

// fn(t) once per t sequentially, then kIterations times per t from kThreads threads at once:
// every concurrent result equals the sequential one.
void expect_concurrent_equals_sequential(const std::function<std::vector<at::Tensor>(int)>& fn) {
  std::vector<std::vector<at::Tensor>> expected;
  for (int t = 0; t < kThreads; ++t) expected.push_back(fn(t));
  std::vector<double> worst(kThreads, 0.0);
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      try {
        for (int i = 0; i < kIterations; ++i) {
          const auto r = fn(t);
          for (size_t k = 0; k < r.size(); ++k) {
            worst[t] = std::max(worst[t], rel_error(r[k], expected[t][k]));
          }
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

std::vector<int64_t> thread_shape(int t) {
  return t % 2 ? std::vector<int64_t>{24, 40} : std::vector<int64_t>{48, 3, 16};
}

// 8 threads share one module (and so one path through the operators) on different inputs.
TEST(Reliability, EightThreadsSharingOneModuleMatchTheSequentialRun) {
  for (auto backward : {Backward::Fused, Backward::Autograd}) {
    VICRegLoss module(VICRegLossOptions().backward(backward));
    // Inputs are made up front: spread_embeddings draws from the global generator.
    std::vector<at::Tensor> za, zb;
    for (int t = 0; t < kThreads; ++t) {
      za.push_back(spread_embeddings(thread_shape(t), torch::kFloat64, 100 + t));
      zb.push_back(spread_embeddings(thread_shape(t), torch::kFloat64, 200 + t));
    }
    expect_concurrent_equals_sequential([&](int t) {
      const auto r = run_once(module, za[t], zb[t]);
      return std::vector<at::Tensor>{r.loss, r.ga, r.gb};
    });
  }
}

// The same for one VCReg layer: its penalty and the gradient it injects.
TEST(Reliability, EightThreadsSharingOneVCRegLayerMatchTheSequentialRun) {
  VCReg layer(VCRegOptions().var_coeff(2).cov_coeff(3));
  std::vector<at::Tensor> inputs;
  for (int t = 0; t < kThreads; ++t) {
    inputs.push_back(spread_embeddings(thread_shape(t), torch::kFloat64, 300 + t));
  }
  expect_concurrent_equals_sequential([&](int t) {
    auto x = inputs[t].clone().requires_grad_(true);
    const auto y = layer(x);
    const auto g = torch::autograd::grad({(y * y).sum()}, {x})[0];
    return std::vector<at::Tensor>{layer->penalty(x.detach()), g};
  });
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
