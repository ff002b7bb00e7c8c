#pragma once
// The VICReg loss as a torch::nn module, shaped like LibTorch's own loss modules.

#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

#include <ostream>

#include "vicreg/export.h"
#include "vicreg/functional.h"
#include "vicreg/options.h"

namespace vicreg {

/// VICReg loss module (Bardes, Ponce & LeCun, ICLR 2022); the math is in functional.h.
/// Example:
///   vicreg::VICRegLoss criterion(vicreg::VICRegLossOptions::paper());
///   auto loss = criterion(projector(encoder(view_a)), projector(encoder(view_b)));
class VICREG_EXPORT VICRegLossImpl : public torch::nn::Cloneable<VICRegLossImpl> {
 public:
  explicit VICRegLossImpl(VICRegLossOptions options = {});

  /// Validates the options (c10::Error on NaN or negative coefficients, gamma <= 0, eps < 0).
  void reset() override;

  /// Prints e.g. `vicreg::VICRegLoss(convention=reference, inv_coeff=25, ...)`.
  void pretty_print(std::ostream& stream) const override;

  /// The scalar loss of two views [n, d] or [n, P..., d].
  at::Tensor forward(const at::Tensor& z_a, const at::Tensor& z_b);

  /// The loss and its unweighted terms, for logging; one computation.
  VICRegTerms terms(const at::Tensor& z_a, const at::Tensor& z_b);

  VICRegLossOptions options;
};

/// Module holder: `VICRegLoss loss;` or `VICRegLoss loss(options);`.
TORCH_MODULE(VICRegLoss);

}  // namespace vicreg
