// The VICReg operators: the library's TORCH_LIBRARY (every schema, defaults written once), the
// public fronts vicreg_loss / vicreg_terms, and the composite kernels of the fused forward and
// of its hand-written backward (ATen ops on ops/view_stats.h, so every backend has them).

#include <ATen/ATen.h>
#include <torch/library.h>

#include <string>

#include "detail.h"
#include "ops/ops.h"
#include "ops/view_stats.h"

namespace vicreg {
namespace {

using Tensor = at::Tensor;
using TermsTuple = std::tuple<Tensor, Tensor, Tensor, Tensor>;
using OptionalKnob = c10::optional<c10::string_view>;

constexpr const char* kLossName = "vicreg_loss";

// The arguments of both public fronts.
constexpr const char* kFrontArgs =
    "Tensor z_a, Tensor z_b, float inv_coeff=25.0, float var_coeff=25.0, float cov_coeff=1.0, "
    "float gamma=1.0, float eps=0.0001, str convention=\"reference\", str? invariance=None, "
    "str? variance_form=None, str? variance_views=None, str? covariance_norm=None, "
    "bool fused_backward=True, bool check_finite=False";
// The settings of the internal fused ops: every knob by name, no defaults.
constexpr const char* kFusedSettings =
    "float inv_coeff, float var_coeff, float cov_coeff, float gamma, float eps, str invariance, "
    "str variance_form, str variance_views, str covariance_norm";
constexpr const char* kTermsResult =
    "(Tensor loss, Tensor invariance, Tensor variance, Tensor covariance)";

// ---- public fronts -------------------------------------------------------------------------

TermsTuple vicreg_terms_front(const Tensor& z_a, const Tensor& z_b, double inv_coeff,
                              double var_coeff, double cov_coeff, double gamma, double eps,
                              c10::string_view convention, OptionalKnob invariance,
                              OptionalKnob variance_form, OptionalKnob variance_views,
                              OptionalKnob covariance_norm, bool fused_backward,
                              bool check_finite) {
  auto o = VICRegLossOptions::preset(std::string(convention))
               .inv_coeff(inv_coeff)
               .var_coeff(var_coeff)
               .cov_coeff(cov_coeff)
               .gamma(gamma)
               .eps(eps)
               .backward(fused_backward ? Backward::Fused : Backward::Autograd)
               .check_finite(check_finite);
  if (invariance) o.invariance(detail::parse_invariance(std::string(*invariance)));
  if (variance_form) o.variance_form(detail::parse_variance_form(std::string(*variance_form)));
  if (variance_views) o.variance_views(detail::parse_view_reduction(std::string(*variance_views)));
  if (covariance_norm) {
    o.covariance_norm(detail::parse_covariance_norm(std::string(*covariance_norm)));
  }
  const auto t = detail::single_process_terms(z_a, z_b, o);
  return {t.loss, t.invariance, t.variance, t.covariance};
}

Tensor vicreg_loss_front(const Tensor& z_a, const Tensor& z_b, double inv_coeff,
                         double var_coeff, double cov_coeff, double gamma, double eps,
                         c10::string_view convention, OptionalKnob invariance,
                         OptionalKnob variance_form, OptionalKnob variance_views,
                         OptionalKnob covariance_norm, bool fused_backward, bool check_finite) {
  return std::get<0>(vicreg_terms_front(z_a, z_b, inv_coeff, var_coeff, cov_coeff, gamma, eps,
                                        convention, invariance, variance_form, variance_views,
                                        covariance_norm, fused_backward, check_finite));
}

// ---- composite kernels (any backend) -------------------------------------------------------

ops::FusedOutputs fused_composite(const Tensor& z_a, const Tensor& z_b, double inv_coeff,
                                  double var_coeff, double cov_coeff, double gamma, double eps,
                                  c10::string_view invariance, c10::string_view variance_form,
                                  c10::string_view variance_views,
                                  c10::string_view covariance_norm) {
  const auto o = detail::options_from_knobs(inv_coeff, var_coeff, cov_coeff, gamma, eps,
                                            invariance, variance_form, variance_views,
                                            covariance_norm);
  detail::check_loss_call(kLossName, z_a, z_b, o);
  const auto za = detail::as_positions(detail::to_compute_dtype(z_a));
  const auto zb = detail::as_positions(detail::to_compute_dtype(z_b));
  auto a = ops::center(za), b = ops::center(zb);
  // (hi_a - hi_b) is exact when the means are close, so the difference keeps its digits.
  ops::CenteredPair pair{a.zc, b.zc, {}, {}, (a.mean_hi - b.mean_hi) + (a.mean_lo - b.mean_lo),
                         ops::sum_of_squares(za - zb)};
  auto r = ops::vicreg_forward(std::move(pair), o);
  return {r.loss, r.invariance, r.variance, r.covariance, r.saved};
}

std::tuple<Tensor, Tensor> fused_backward_composite(
    const Tensor& g_loss, const Tensor& g_inv, const Tensor& g_var, const Tensor& g_cov,
    at::TensorList saved, double inv_coeff, double var_coeff, double cov_coeff, double gamma,
    double eps, c10::string_view invariance, c10::string_view variance_form,
    c10::string_view variance_views, c10::string_view covariance_norm) {
  const auto o = detail::options_from_knobs(inv_coeff, var_coeff, cov_coeff, gamma, eps,
                                            invariance, variance_form, variance_views,
                                            covariance_norm);
  detail::check_fused_backward_args(g_loss, g_inv, g_var, g_cov, saved);
  const auto& zc_a = saved[ops::kZcA];
  const auto& zc_b = saved[ops::kZcB];
  const auto w = ops::vicreg_backward_weights(g_loss, g_inv, g_var, g_cov, zc_a.sizes(), o);
  const auto h = ops::hinge_of(o);
  const auto diff = (zc_a - zc_b).add_(saved[ops::kMeanDiff].unsqueeze(1));
  auto ga = ops::view_gradient(zc_a, {saved[ops::kColsqA], saved[ops::kMatA], {}, {}}, w.hinge,
                               w.offdiag, h);
  auto gb = ops::view_gradient(zc_b, {saved[ops::kColsqB], saved[ops::kMatB], {}, {}}, w.hinge,
                               w.offdiag, h);
  ga.addcmul_(diff, w.inv);
  gb.addcmul_(diff, w.inv.neg());
  return {ga, gb};
}

// In place, composite: the out-of-place kernel, then a copy into the saved views. (It saves no
// memory; the CPU kernel is the one that computes in place.)
void fused_backward_inplace_composite(
    const Tensor& g_loss, const Tensor& g_inv, const Tensor& g_var, const Tensor& g_cov,
    at::TensorList saved, double inv_coeff, double var_coeff, double cov_coeff, double gamma,
    double eps, c10::string_view invariance, c10::string_view variance_form,
    c10::string_view variance_views, c10::string_view covariance_norm) {
  const auto [ga, gb] = fused_backward_composite(
      g_loss, g_inv, g_var, g_cov, saved, inv_coeff, var_coeff, cov_coeff, gamma, eps,
      invariance, variance_form, variance_views, covariance_norm);
  saved[ops::kZcA].copy_(ga);
  saved[ops::kZcB].copy_(gb);
}

}  // namespace

namespace ops {

const c10::TypedOperatorHandle<FusedFn>& fused_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("vicreg::_vicreg_fused", "")
                             .typed<FusedFn>();
  return op;
}

const c10::TypedOperatorHandle<FusedBackwardFn>& fused_backward_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("vicreg::_vicreg_fused_backward", "")
                             .typed<FusedBackwardFn>();
  return op;
}

const c10::TypedOperatorHandle<FusedBackwardInplaceFn>& fused_backward_inplace_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("vicreg::_vicreg_fused_backward_", "")
                             .typed<FusedBackwardInplaceFn>();
  return op;
}

}  // namespace ops

TORCH_LIBRARY(vicreg, m) {
  const std::string front_args = kFrontArgs, settings = kFusedSettings;
  m.def(("vicreg_loss(" + front_args + ") -> Tensor").c_str(), TORCH_FN(vicreg_loss_front));
  m.def(("vicreg_terms(" + front_args + ") -> " + kTermsResult).c_str(),
        TORCH_FN(vicreg_terms_front));
  const std::string fused_result =
      "(Tensor loss, Tensor invariance, Tensor variance, Tensor covariance, Tensor[] saved)";
  const std::string grads =
      "Tensor grad_loss, Tensor grad_invariance, Tensor grad_variance, Tensor grad_covariance, ";
  for (const std::string suffix : {"", "_composite"}) {
    m.def(("_vicreg_fused" + suffix + "(Tensor z_a, Tensor z_b, " + settings + ") -> " +
           fused_result).c_str());
    m.def(("_vicreg_fused_backward" + suffix + "(" + grads + "Tensor[] saved, " + settings +
           ") -> (Tensor, Tensor)").c_str());
    m.def(("_vicreg_fused_backward" + suffix + "_(" + grads + "Tensor(a!)[] saved, " + settings +
           ") -> ()").c_str());
  }
}

TORCH_LIBRARY_IMPL(vicreg, CompositeExplicitAutograd, m) {
  m.impl("_vicreg_fused", TORCH_FN(fused_composite));
  m.impl("_vicreg_fused_backward", TORCH_FN(fused_backward_composite));
  m.impl("_vicreg_fused_composite", TORCH_FN(fused_composite));
  m.impl("_vicreg_fused_backward_composite", TORCH_FN(fused_backward_composite));
  m.impl("_vicreg_fused_backward_", TORCH_FN(fused_backward_inplace_composite));
  m.impl("_vicreg_fused_backward_composite_", TORCH_FN(fused_backward_inplace_composite));
}

}  // namespace vicreg
