// Helper for the Python tests: saves a C++-built TorchScript loss module, or loads a .pt
// (saved by Python) and prints its loss and gradients on fixed inputs as JSON.
//   vicreg_script_tool save PATH CONVENTION fused|autograd
//   vicreg_script_tool run PATH
// Inputs: z_k = sin(0.37 * arange(16 * 24) + k).reshape(16, 24) in float64, k = 0 (a), 1 (b);
// the Python side builds the same tensors.

#include <torch/script.h>

#include <cstdio>
#include <iostream>
#include <string>

#include "vicreg/script.h"
#include "vicreg/vicreg.h"

namespace {

at::Tensor fixed_input(double k) {
  return torch::sin(torch::arange(16 * 24, torch::kFloat64) * 0.37 + k).reshape({16, 24});
}

void print_list(const char* name, const at::Tensor& t) {
  auto flat = t.contiguous().view({-1});
  std::printf("\"%s\": [", name);
  for (int64_t i = 0; i < flat.numel(); ++i) {
    std::printf("%s%.17g", i ? ", " : "", flat[i].item<double>());
  }
  std::printf("]");
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "save" && argc == 5) {
      auto o = vicreg::VICRegLossOptions::preset(argv[3]).backward(
          std::string(argv[4]) == "fused" ? vicreg::Backward::Fused : vicreg::Backward::Autograd);
      vicreg::script::save_loss_module(o, argv[2]);
      return 0;
    }
    if (cmd == "run" && argc == 3) {
      auto module = torch::jit::load(argv[2]);
      auto a = fixed_input(0).requires_grad_(true);
      auto b = fixed_input(1).requires_grad_(true);
      auto loss = module.forward({a, b}).toTensor();
      loss.backward();
      std::printf("{\"loss\": %.17g, ", loss.item<double>());
      print_list("grad_a", a.grad());
      std::printf(", ");
      print_list("grad_b", b.grad());
      std::printf("}\n");
      return 0;
    }
    std::cerr << "usage: vicreg_script_tool save PATH CONVENTION fused|autograd\n"
                 "       vicreg_script_tool run PATH\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "vicreg_script_tool: " << e.what() << "\n";
    return 1;
  }
}
