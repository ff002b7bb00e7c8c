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

namespace {

std::string printed(double v) { return fmt::format("{}", v); }
std::string printed(int64_t v) { return fmt::format("{}", v); }
template <typename Knob>
std::string printed(Knob v) {
  return ops::to_string(v);
}

// "name=value" per setting, after `separator`.
#define VICREG_PRINT(name, member)                                \
  stream << separator << #name "=" << printed(s.member); \
  separator = ", ";

}  // namespace

void VICRegLossImpl::pretty_print(std::ostream& stream) const {
  const auto s = ops::Settings::of(options);
  stream << "vicreg::VICRegLoss(convention=" << convention_name(options);
  const char* separator = ", ";
  VICREG_LOSS_SETTINGS(VICREG_PRINT)
  stream << ", backward=" << (options.backward() == Backward::Fused ? "fused" : "autograd")
         << (options.check_finite() ? ", check_finite=true" : "") << ")";
}

at::Tensor VICRegLossImpl::forward(const at::Tensor& z_a, const at::Tensor& z_b) {
  return functional::vicreg_loss(z_a, z_b, options);
}

VICRegTerms VICRegLossImpl::terms(const at::Tensor& z_a, const at::Tensor& z_b) {
  return functional::vicreg_terms(z_a, z_b, options);
}

VCRegImpl::VCRegImpl(VCRegOptions options_) : options(std::move(options_)) { reset(); }

void VCRegImpl::reset() {
  checks::vcreg_settings("VCReg", ops::VCRegSettings::of(options));
}

void VCRegImpl::pretty_print(std::ostream& stream) const {
  const auto s = ops::VCRegSettings::of(options);
  stream << "vicreg::VCReg(";
  const char* separator = "";
  VCREG_SETTINGS(VICREG_PRINT)
  stream << (options.active_in_eval() ? ", active_in_eval=true" : "") << ")";
}

at::Tensor VCRegImpl::forward(const at::Tensor& x) {
  if (!is_training() && !options.active_in_eval()) return x;
  return functional::vcreg(x, options);
}

#undef VICREG_PRINT

at::Tensor VCRegImpl::penalty(const at::Tensor& x) const {
  return functional::vcreg_penalty(x, options);
}

}  // namespace vicreg
