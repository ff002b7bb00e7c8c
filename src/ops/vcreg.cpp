// The VCReg operators: vicreg::vcreg (identity forward whose autograd kernel, in
// autograd/kernels.cpp, injects the penalty's gradient) and vicreg::_vcreg_backward (that
// gradient added to the incoming one), both composite: ATen ops on ops/view_stats.h, so every
// backend, meta included, has them.
//
// The penalty var_coeff * v(X) + cov_coeff / (d (d-1)) * sum_{i != j} C_ij^2, X the [N, d]
// samples-by-channels matrix, C = Xc^T Xc / (N-1), is the core's
//   var_coeff * hinge + cov_coeff / ((N-1)^2 d (d-1)) * offdiag
// on X as one position, so its gradient is the core's view_gradient with those weights.

#include <ATen/ATen.h>
#include <torch/library.h>

#include "detail.h"
#include "ops/ops.h"
#include "ops/view_stats.h"

namespace vicreg {
namespace {

using Tensor = at::Tensor;
constexpr const char* kName = "vcreg";

void check_args(const Tensor& x, double var_coeff, double cov_coeff, double gamma, double eps,
                int64_t channel_dim) {
  detail::check_vcreg_call(kName, x, var_coeff, cov_coeff, gamma, eps, channel_dim);
}

// d penalty / d x in x's layout, in the compute dtype.
Tensor penalty_gradient(const Tensor& x, double var_coeff, double cov_coeff, double gamma,
                        double eps, int64_t channel_dim, VarianceForm form) {
  const auto x2 = detail::as_samples_by_channels(detail::to_compute_dtype(x), channel_dim);
  const int64_t n = x2.size(0), d = x2.size(1);
  const bool covariance = d >= 2 && cov_coeff != 0;
  const auto zc = ops::center(x2.unsqueeze(0)).zc;
  const auto s = ops::view_stats(zc, {}, {form, gamma, eps}, covariance);
  const auto opts = zc.options().device(at::kCPU);
  const double cov_scale = covariance ? 1.0 / (static_cast<double>(n - 1) * (n - 1) * d * (d - 1)) : 0;
  const auto g = ops::view_gradient(zc, s, at::scalar_tensor(var_coeff, opts),
                                    at::scalar_tensor(cov_coeff * cov_scale, opts),
                                    {form, gamma, eps});
  // [1, N, d] -> x's layout: undo the reshape, then move the channels back.
  // (The shape is copied: sizes() of the temporary movedim view would dangle.)
  const auto moved_shape = x.movedim(channel_dim, -1).sizes().vec();
  return g.reshape(moved_shape).movedim(-1, channel_dim);
}

Tensor vcreg_backward_kernel(const Tensor& grad, const Tensor& x, double var_coeff,
                             double cov_coeff, double gamma, double eps, int64_t channel_dim,
                             c10::string_view variance_form) {
  check_args(x, var_coeff, cov_coeff, gamma, eps, channel_dim);
  TORCH_CHECK(grad.sizes() == x.sizes(), "_vcreg_backward: grad must have the shape of x ",
              x.sizes(), ", got ", grad.sizes());
  const auto form = detail::parse_variance_form(std::string(variance_form));
  const auto g = penalty_gradient(x, var_coeff, cov_coeff, gamma, eps, channel_dim, form);
  return (detail::to_compute_dtype(grad) + g).to(grad.scalar_type());
}

Tensor vcreg_kernel(const Tensor& x, double var_coeff, double cov_coeff, double gamma,
                    double eps, int64_t channel_dim, c10::string_view variance_form) {
  check_args(x, var_coeff, cov_coeff, gamma, eps, channel_dim);
  detail::parse_variance_form(std::string(variance_form));
  return x.alias();
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(vicreg, m) {
  m.def(
      "vcreg(Tensor(a) x, float var_coeff=1.0, float cov_coeff=1.0, float gamma=1.0, "
      "float eps=0.0001, int channel_dim=-1, str variance_form=\"std\") -> Tensor(a)");
  m.def(
      "_vcreg_backward(Tensor grad, Tensor x, float var_coeff, float cov_coeff, float gamma, "
      "float eps, int channel_dim, str variance_form) -> Tensor");
}

namespace ops {

const c10::TypedOperatorHandle<VCRegBackwardFn>& vcreg_backward_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("vicreg::_vcreg_backward", "")
                             .typed<VCRegBackwardFn>();
  return op;
}

}  // namespace ops

TORCH_LIBRARY_IMPL(vicreg, CompositeExplicitAutograd, m) {
  m.impl("vcreg", TORCH_FN(vcreg_kernel));
  m.impl("_vcreg_backward", TORCH_FN(vcreg_backward_kernel));
}

}  // namespace vicreg
