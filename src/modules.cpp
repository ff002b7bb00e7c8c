// VICRegLoss and VCReg modules: thin torch::nn wrappers over the functional API.

#include <torch/nn/module.h>

#include <fmt/format.h>

#include "ops/checks.h"
#include "ops/settings.h"
#include "vicreg/loss.h"
#include "vicreg/vcreg.h"

namespace vicreg {

VICRegLossImpl::VICRegLossImpl(VICRegLossOptions options_) : options(std::move(options_)) {
  reset();
}

void VICRegLossImpl::reset() { checks::loss_settings("VICRegLoss", ops::Settings::of(options)); }

void VICRegLossImpl::pretty_print(std::ostream& stream) const {
  stream << fmt::format(
      "vicreg::VICRegLoss(convention={}, inv_coeff={}, var_coeff={}, cov_coeff={}, gamma={}, "
      "eps={}, invariance={}, variance_form={}, variance_views={}, covariance_norm={}, "
      "backward={}{})",
      convention_name(options), options.inv_coeff(), options.var_coeff(), options.cov_coeff(),
      options.gamma(), options.eps(), ops::to_string(options.invariance()),
      ops::to_string(options.variance_form()), ops::to_string(options.variance_views()),
      ops::to_string(options.covariance_norm()),
      options.backward() == Backward::Fused ? "fused" : "autograd",
      options.check_finite() ? ", check_finite=true" : "");
}

at::Tensor VICRegLossImpl::forward(const at::Tensor& z_a, const at::Tensor& z_b) {
  return functional::vicreg_loss(z_a, z_b, options);
}

VICRegTerms VICRegLossImpl::terms(const at::Tensor& z_a, const at::Tensor& z_b) {
  return functional::vicreg_terms(z_a, z_b, options);
}

VCRegImpl::VCRegImpl(VCRegOptions options_) : options(std::move(options_)) { reset(); }

void VCRegImpl::reset() {
  checks::coefficients("VCReg",
                       {{"var_coeff", options.var_coeff()}, {"cov_coeff", options.cov_coeff()}});
  checks::gamma_eps("VCReg", options.gamma(), options.eps());
}

void VCRegImpl::pretty_print(std::ostream& stream) const {
  stream << fmt::format(
      "vicreg::VCReg(var_coeff={}, cov_coeff={}, gamma={}, eps={}, variance_form={}, "
      "channel_dim={}{})",
      options.var_coeff(), options.cov_coeff(), options.gamma(), options.eps(),
      ops::to_string(options.variance_form()), options.channel_dim(),
      options.active_in_eval() ? ", active_in_eval=true" : "");
}

at::Tensor VCRegImpl::forward(const at::Tensor& x) {
  if (!is_training() && !options.active_in_eval()) return x;
  return functional::vcreg(x, options);
}

at::Tensor VCRegImpl::penalty(const at::Tensor& x) const {
  return functional::vcreg_penalty(x, options);
}

}  // namespace vicreg
