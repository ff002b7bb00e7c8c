// The VCReg operators: vicreg::vcreg (identity forward whose autograd kernel injects the
// penalty's gradient) and vicreg::_vcreg_backward (that gradient added to the incoming one).
//
// The gradient of var_coeff * v(X) + cov_coeff / (d (d-1)) * sum_{i != j} C_ij^2, with X the
// [N, d] samples-by-channels matrix, Xc = X centered over samples, C = Xc^T Xc / (N-1):
//   var part: -var_coeff [S_j < gamma] Xc_ij / (d (N-1) S_j)     (std form)
//             -var_coeff [Var_j < gamma] 2 Xc_ij / (d (N-1))       (var form)
//   cov part: cov_coeff * 4 / (d (d-1) (N-1)) * Xc (C - diag C), through the N x N Gram
//             matrix when N < d (Xc C = (Xc Xc^T) Xc / (N-1)).

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include "detail.h"

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
  const auto xc = x2 - x2.mean(0, /*keepdim=*/true);
  const auto colsq = xc.square().sum(0);
  const auto var = colsq / static_cast<double>(n - 1);
  const auto s = form == VarianceForm::Std ? at::sqrt(var + eps) : var;
  const auto active = (s < gamma).to(xc.scalar_type());
  auto coef = form == VarianceForm::Std ? active / (s * (-static_cast<double>(d * (n - 1))))
                                        : active * (-2.0 / static_cast<double>(d * (n - 1)));
  coef = coef * var_coeff;
  Tensor g;
  if (d < 2 || cov_coeff == 0) {
    g = xc * coef;
  } else {
    const double scale = cov_coeff * 4.0 / (static_cast<double>(d * (d - 1)) * (n - 1) * (n - 1));
    if (n < d) {
      // Xc (C - diag C) * (n-1) = (Xc Xc^T) Xc - Xc * colsq
      g = at::addmm(xc * (coef - colsq * scale), at::mm(xc, xc.t()), xc, 1.0, scale);
    } else {
      auto cov = at::mm(xc.t(), xc);
      cov.diagonal().zero_();
      g = at::addmm(xc * coef, xc, cov, 1.0, scale);
    }
  }
  // [N, d] -> x's layout: undo the reshape, then move the channels back.
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

const auto& backward_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("vicreg::_vcreg_backward", "")
                             .typed<decltype(vcreg_backward_kernel)>();
  return op;
}

class VCRegFunction : public torch::autograd::Function<VCRegFunction> {
 public:
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& x, double var_coeff,
                        double cov_coeff, double gamma, double eps, int64_t channel_dim,
                        c10::string_view variance_form) {
    check_args(x, var_coeff, cov_coeff, gamma, eps, channel_dim);
    ctx->saved_data["var_coeff"] = var_coeff;
    ctx->saved_data["cov_coeff"] = cov_coeff;
    ctx->saved_data["gamma"] = gamma;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["channel_dim"] = channel_dim;
    ctx->saved_data["variance_form"] = std::string(variance_form);
    detail::parse_variance_form(std::string(variance_form));
    ctx->save_for_backward({x});
    // Returning the input: autograd hands back a view of it (same storage, no copy).
    return x;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto x = ctx->get_saved_variables()[0];
    const auto form = ctx->saved_data["variance_form"].toStringRef();
    auto g = backward_op().call(grads[0], x, ctx->saved_data["var_coeff"].toDouble(),
                                ctx->saved_data["cov_coeff"].toDouble(),
                                ctx->saved_data["gamma"].toDouble(),
                                ctx->saved_data["eps"].toDouble(),
                                ctx->saved_data["channel_dim"].toInt(), form);
    return {g, Tensor(), Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

Tensor vcreg_autograd(const Tensor& x, double var_coeff, double cov_coeff, double gamma,
                      double eps, int64_t channel_dim, c10::string_view variance_form) {
  return VCRegFunction::apply(x, var_coeff, cov_coeff, gamma, eps, channel_dim, variance_form);
}

Tensor vcreg_backward_autograd(const Tensor& grad, const Tensor& x, double var_coeff,
                               double cov_coeff, double gamma, double eps, int64_t channel_dim,
                               c10::string_view variance_form) {
  TORCH_CHECK(!(at::GradMode::is_enabled() && (grad.requires_grad() || x.requires_grad())),
              "vcreg: double backward through the VCReg layer is not supported");
  at::AutoDispatchBelowADInplaceOrView guard;
  return backward_op().call(grad, x, var_coeff, cov_coeff, gamma, eps, channel_dim,
                            variance_form);
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

TORCH_LIBRARY_IMPL(vicreg, CPU, m) {
  m.impl("vcreg", TORCH_FN(vcreg_kernel));
  m.impl("_vcreg_backward", TORCH_FN(vcreg_backward_kernel));
}

TORCH_LIBRARY_IMPL(vicreg, CUDA, m) {
  m.impl("vcreg", TORCH_FN(vcreg_kernel));
  m.impl("_vcreg_backward", TORCH_FN(vcreg_backward_kernel));
}

TORCH_LIBRARY_IMPL(vicreg, Autograd, m) {
  m.impl("vcreg", TORCH_FN(vcreg_autograd));
  m.impl("_vcreg_backward", TORCH_FN(vcreg_backward_autograd));
}

}  // namespace vicreg
