#pragma once
// VCReg (Zhu, Evtimova, Chen, Shwartz-Ziv, LeCun: "Variance-Covariance Regularization Improves
// Representation Learning") as a layer: the identity in the forward pass that, in the backward
// pass, adds the gradient of functional::vcreg_penalty to the incoming gradient. Put it after
// the blocks of a network trained with any loss.

#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

#include <ostream>

#include "vicreg/export.h"
#include "vicreg/functional.h"
#include "vicreg/options.h"

namespace vicreg {

/// The VCReg layer. Example:
///   torch::nn::Sequential net(torch::nn::Linear(784, 256), torch::nn::ReLU(),
///                             vicreg::VCReg(vicreg::VCRegOptions().var_coeff(0.5)), ...);
class VICREG_EXPORT VCRegImpl : public torch::nn::Cloneable<VCRegImpl> {
 public:
  explicit VCRegImpl(VCRegOptions options = {});

  /// Validates the options (c10::Error on NaN or negative coefficients, gamma <= 0, eps < 0).
  void reset() override;

  /// Prints e.g. `vicreg::VCReg(var_coeff=1, cov_coeff=1, gamma=1, ...)`.
  void pretty_print(std::ostream& stream) const override;

  /// Returns x itself (an alias: same storage, same values bit for bit). In training mode
  /// (or with active_in_eval) the backward adds d vcreg_penalty(x) / dx to the incoming gradient.
  at::Tensor forward(const at::Tensor& x);

  /// The penalty this layer's gradient belongs to, for logging (functional::vcreg_penalty).
  at::Tensor penalty(const at::Tensor& x) const;

  VCRegOptions options;
};

/// Module holder: `VCReg layer;` or `VCReg layer(options);`.
TORCH_MODULE(VCReg);

}  // namespace vicreg
