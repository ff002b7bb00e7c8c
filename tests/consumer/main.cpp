// Links vicreg::vicreg from an install tree and trains nothing: it checks that the module
// computes a finite loss with a gradient.
#include <torch/torch.h>
#include <vicreg/vicreg.h>

#include <iostream>

int main() {
  torch::manual_seed(0);
  vicreg::VICRegLoss loss;
  auto a = torch::randn({32, 16}, torch::requires_grad());
  auto b = a.detach() + 0.1 * torch::randn({32, 16});
  auto value = loss(a, b);
  value.backward();
  std::cout << "vicreg " << VICREG_VERSION << ": " << *loss << " loss " << value.item<double>()
            << "\n";
  return a.grad().defined() && std::isfinite(value.item<double>()) ? 0 : 1;
}
