// The VICReg operators: schemas (the one TORCH_LIBRARY of the library), the composite front
// ends, the fused forward/backward kernels (CPU and CUDA) and the autograd kernel that wraps
// the hand-written backward in a torch::autograd::Function.
//
// Operators:
//   vicreg_loss          public contract; maps `convention` to the knobs of vicreg_loss_custom
//   vicreg_loss_custom   every knob; validates, then the fused op or autograd over tensor ops
//   _vicreg_loss_fused            forward whose gradient is the hand-written backward
//   _vicreg_loss_fused_backward   that backward, an operator too (no double backward)
//
// The fused path works on [P, n, d] (P positions, P = 1 for [n, d]). Per view it saves Zc,
// the per-column sums of squares and one k x k matrix, k = min(n, d): the Gram matrix
// Zc Zc^T when n <= d, else Zc^T Zc with its diagonal zeroed. Then
//   ||C||_F^2 = ||Zc Zc^T||_F^2 / m^2,   Zc C = (Zc Zc^T) Zc / m,
// so the covariance term and its gradient need two k-sized GEMMs per view and no d x d matrix
// when n < d.

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include "detail.h"
#include "ops/cpu/elementwise.h"

namespace vicreg {
namespace {

using Tensor = at::Tensor;
using TermsTuple = std::tuple<Tensor, Tensor, Tensor, Tensor>;

constexpr const char* kLossName = "vicreg_loss";

struct ViewForward {
  Tensor zc;     // [P, n, d] centered, compute dtype
  Tensor colsq;  // [P, d] sum_i Zc_ij^2
  Tensor mat;    // [P, n, n] Gram (n <= d) or [P, d, d] Zc^T Zc with zero diagonal
  Tensor v;      // v(Z), 0-dim
  Tensor c;      // c(Z), 0-dim
};

// What the invariance's sum of squares is divided by: all entries (element mean) or all
// samples, n * P (sample mean).
double invariance_count(const Tensor& z, const VICRegLossOptions& o) {
  return o.invariance() == InvarianceNorm::ElementMean
             ? static_cast<double>(z.numel())
             : static_cast<double>(z.numel() / z.size(-1));
}

double cov_denominator(int64_t n, const VICRegLossOptions& o) {
  return o.covariance_norm() == CovarianceNorm::Unbiased ? n - 1 : n;
}

Tensor hinge_input(const Tensor& colsq, int64_t n, const VICRegLossOptions& o) {
  const auto var = colsq / static_cast<double>(n - 1);
  return o.variance_form() == VarianceForm::Std ? at::sqrt(var + o.eps()) : var;
}

// Batched product of [P, a, b] x [P, b, c]; a plain GEMM when P == 1 (bmm is slower here).
Tensor batched_mm(const Tensor& x, const Tensor& y) {
  if (x.size(0) == 1) return at::mm(x.select(0, 0), y.select(0, 0)).unsqueeze(0);
  return at::bmm(x, y);
}

// out += x @ y, batched as above, without a temporary (BLAS beta = 1).
void batched_addmm_(Tensor& out, const Tensor& x, const Tensor& y) {
  if (x.size(0) == 1) {
    auto o = out.select(0, 0);
    o.addmm_(x.select(0, 0), y.select(0, 0));
  } else {
    out.baddbmm_(x, y);
  }
}

// Sum of squares over `dims` in one pass and no temporary.
Tensor sum_of_squares(const Tensor& t, at::OptionalIntArrayRef dims) {
  return at::linalg_vector_norm(t, 2, dims, false, c10::nullopt).square();
}

// v(Z), the k x k matrix and c(Z) from the centered view and its column sums of squares.
ViewForward view_stats(Tensor zc, Tensor colsq, const VICRegLossOptions& o) {
  const int64_t P = zc.size(0), n = zc.size(1), d = zc.size(2);
  const double m = cov_denominator(n, o);
  ViewForward f;
  f.zc = std::move(zc);
  f.colsq = std::move(colsq);
  f.v = at::relu(o.gamma() - hinge_input(f.colsq, n, o)).mean();
  if (n <= d) {
    f.mat = batched_mm(f.zc, f.zc.transpose(1, 2));
    const auto fro2 = sum_of_squares(f.mat, c10::nullopt);
    const auto diag2 = sum_of_squares(f.colsq, c10::nullopt);
    f.c = (fro2 - diag2) / (m * m * static_cast<double>(d * P));
  } else {
    f.mat = batched_mm(f.zc.transpose(1, 2), f.zc);
    f.mat.diagonal(0, 1, 2).zero_();
    f.c = sum_of_squares(f.mat, c10::nullopt) / (m * m * static_cast<double>(d * P));
  }
  return f;
}

// The hand-written CPU kernels serve float/double CPU tensors; everything else (CUDA, and
// CPU when tests switch the kernels off) uses the same math as ATen ops.
bool use_cpu_kernels(const Tensor& t) {
  return detail::cpu_kernels_enabled() && t.device().is_cpu() &&
         (t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble);
}

struct FusedForward {
  Tensor loss, inv, var, cov;
  std::vector<Tensor> saved;  // zc_a, zc_b, colsq_a, colsq_b, mat_a, mat_b
};

FusedForward fused_forward(const Tensor& z_a, const Tensor& z_b, const VICRegLossOptions& o) {
  detail::check_loss_call(kLossName, z_a, z_b, o);
  const auto za = detail::to_compute_dtype(z_a), zb = detail::to_compute_dtype(z_b);
  const double inv_count = invariance_count(za, o);
  FusedForward r;
  const auto za3 = detail::as_positions(za), zb3 = detail::as_positions(zb);
  ViewForward fa, fb;
  if (use_cpu_kernels(za)) {
    auto c = cpu::center_pair(za3, zb3);
    r.inv = c.sq_diff / inv_count;
    fa = view_stats(std::move(c.zc_a), std::move(c.colsq_a), o);
    fb = view_stats(std::move(c.zc_b), std::move(c.colsq_b), o);
  } else {
    r.inv = sum_of_squares(za - zb, c10::nullopt) / inv_count;
    for (auto [z3, f] : {std::pair{&za3, &fa}, std::pair{&zb3, &fb}}) {
      auto zc = (*z3 - z3->mean(1, /*keepdim=*/true)).contiguous();
      auto colsq = sum_of_squares(zc, at::IntArrayRef{1});
      *f = view_stats(std::move(zc), std::move(colsq), o);
    }
  }
  r.var = o.variance_views() == ViewReduction::Mean ? (fa.v + fb.v) / 2 : fa.v + fb.v;
  r.cov = fa.c + fb.c;
  r.loss = o.inv_coeff() * r.inv + o.var_coeff() * r.var + o.cov_coeff() * r.cov;
  r.saved = {fa.zc, fb.zc, fa.colsq, fb.colsq, fa.mat, fb.mat};
  return r;
}

// Gradient of w_inv * s + w_var * V + w_cov * c with respect to one view (sign +1 for Za,
// -1 for Zb), as [P, n, d]; w_* are 0-dim tensors, so no host sync. One output allocation:
// the elementwise parts are accumulated in place and the GEMM adds into it (beta = 1).
Tensor view_backward(const Tensor& zc, const Tensor& colsq, const Tensor& mat, const Tensor& za3,
                     const Tensor& zb3, const Tensor& w_inv_scaled, const Tensor& w_var,
                     const Tensor& w_cov, double sign, const VICRegLossOptions& o) {
  const int64_t P = zc.size(0), n = zc.size(1), d = zc.size(2);
  const double m = cov_denominator(n, o);
  const double pd = static_cast<double>(P * d);
  const double views = o.variance_views() == ViewReduction::Mean ? 0.5 : 1.0;
  const auto s = hinge_input(colsq, n, o);
  const auto active = (s < o.gamma()).to(zc.scalar_type());
  // d v / d Z_ij = -[S_j < gamma] Zc_ij / (d (n-1) S_j)     (std form)
  //              = -[Var_j < gamma] 2 Zc_ij / (d (n-1))      (var form)
  auto coef = o.variance_form() == VarianceForm::Std
                  ? active / (s * (-pd * static_cast<double>(n - 1)))
                  : active * (-2.0 / (pd * static_cast<double>(n - 1)));
  coef = coef * (w_var * views);
  // d c / d Z = 4 / (d m) Zc (C - diag C), C = Zc^T Zc / m.
  const auto cov_scale = w_cov * (4.0 / (pd * m * m));
  if (n <= d) coef = coef - colsq * cov_scale;  // the -Zc diag(C) part; G Zc below
  // d s / d Za = 2 (Za - Zb) / count, d s / d Zb = -that.
  Tensor grad;
  if (use_cpu_kernels(zc)) {
    grad = cpu::combine_gradient(zc, coef, za3, zb3, sign * w_inv_scaled.item<double>());
  } else {
    grad = zc * coef.unsqueeze(1);
    const auto w = sign > 0 ? w_inv_scaled : w_inv_scaled.neg();
    grad.addcmul_(za3, w);
    grad.addcmul_(zb3, w.neg());
  }
  const auto scaled = mat * cov_scale;
  if (n <= d) {
    batched_addmm_(grad, scaled, zc);
  } else {
    batched_addmm_(grad, zc, scaled);
  }
  return grad;
}

std::tuple<Tensor, Tensor> fused_backward(const Tensor& g_loss, const Tensor& g_inv,
                                          const Tensor& g_var, const Tensor& g_cov,
                                          const Tensor& z_a, const Tensor& z_b,
                                          const std::vector<Tensor>& saved,
                                          const VICRegLossOptions& o) {
  TORCH_CHECK(saved.size() == 6, "_vicreg_loss_fused_backward: expected 6 saved tensors, got ",
              saved.size());
  const auto za = detail::to_compute_dtype(z_a), zb = detail::to_compute_dtype(z_b);
  const double inv_count = invariance_count(za, o);
  const auto w_inv = (g_loss * o.inv_coeff() + g_inv) * (2.0 / inv_count);
  const auto w_var = g_loss * o.var_coeff() + g_var;
  const auto w_cov = g_loss * o.cov_coeff() + g_cov;
  const auto za3 = detail::as_positions(za), zb3 = detail::as_positions(zb);
  const auto ga = view_backward(saved[0], saved[2], saved[4], za3, zb3, w_inv, w_var, w_cov, 1, o);
  const auto gb = view_backward(saved[1], saved[3], saved[5], za3, zb3, w_inv, w_var, w_cov, -1, o);
  return {detail::from_positions(ga, z_a).to(z_a.scalar_type()),
          detail::from_positions(gb, z_b).to(z_b.scalar_type())};
}

// ---- kernels (CPU and CUDA: the same ATen composition) ------------------------------------

TermsTuple fused_kernel(const Tensor& z_a, const Tensor& z_b, double inv_coeff,
                        double var_coeff, double cov_coeff, double gamma, double eps,
                        int64_t config) {
  auto r = fused_forward(z_a, z_b,
                         detail::unpack_config(config, inv_coeff, var_coeff, cov_coeff, gamma, eps));
  return {r.loss, r.inv, r.var, r.cov};
}

std::tuple<Tensor, Tensor> fused_backward_kernel(at::TensorList grads, const Tensor& z_a,
                                                 const Tensor& z_b, at::TensorList saved,
                                                 double inv_coeff, double var_coeff,
                                                 double cov_coeff, double gamma, double eps,
                                                 int64_t config) {
  TORCH_CHECK(grads.size() == 4, "_vicreg_loss_fused_backward: expected 4 output gradients, got ",
              grads.size());
  return fused_backward(
      grads[0], grads[1], grads[2], grads[3], z_a, z_b, saved.vec(),
      detail::unpack_config(config, inv_coeff, var_coeff, cov_coeff, gamma, eps));
}

// ---- autograd ------------------------------------------------------------------------------

const auto& fused_backward_op() {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("vicreg::_vicreg_loss_fused_backward", "")
          .typed<decltype(fused_backward_kernel)>();
  return op;
}

class VICRegFusedFunction : public torch::autograd::Function<VICRegFusedFunction> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                const Tensor& z_a, const Tensor& z_b,
                                                double inv_coeff, double var_coeff,
                                                double cov_coeff, double gamma, double eps,
                                                int64_t config) {
    ctx->saved_data["inv_coeff"] = inv_coeff;
    ctx->saved_data["var_coeff"] = var_coeff;
    ctx->saved_data["cov_coeff"] = cov_coeff;
    ctx->saved_data["gamma"] = gamma;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["config"] = config;
    at::AutoDispatchBelowADInplaceOrView guard;
    auto r = fused_forward(
        z_a, z_b, detail::unpack_config(config, inv_coeff, var_coeff, cov_coeff, gamma, eps));
    std::vector<Tensor> to_save = {z_a, z_b};
    to_save.insert(to_save.end(), r.saved.begin(), r.saved.end());
    ctx->save_for_backward(to_save);
    return {r.loss, r.inv, r.var, r.cov};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const std::vector<Tensor> rest(saved.begin() + 2, saved.end());
    auto [ga, gb] = fused_backward_op().call(
        grads, saved[0], saved[1], rest, ctx->saved_data["inv_coeff"].toDouble(),
        ctx->saved_data["var_coeff"].toDouble(), ctx->saved_data["cov_coeff"].toDouble(),
        ctx->saved_data["gamma"].toDouble(), ctx->saved_data["eps"].toDouble(),
        ctx->saved_data["config"].toInt());
    return {ga, gb, Tensor(), Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

TermsTuple fused_autograd(const Tensor& z_a, const Tensor& z_b, double inv_coeff,
                          double var_coeff, double cov_coeff, double gamma, double eps,
                          int64_t config) {
  auto out = VICRegFusedFunction::apply(z_a, z_b, inv_coeff, var_coeff, cov_coeff, gamma, eps,
                                        config);
  return {out[0], out[1], out[2], out[3]};
}

std::tuple<Tensor, Tensor> fused_backward_autograd(at::TensorList grads, const Tensor& z_a,
                                                   const Tensor& z_b, at::TensorList saved,
                                                   double inv_coeff, double var_coeff,
                                                   double cov_coeff, double gamma, double eps,
                                                   int64_t config) {
  bool needs_graph = false;
  for (const auto& t : grads) needs_graph |= t.defined() && t.requires_grad();
  needs_graph |= z_a.requires_grad() || z_b.requires_grad();
  TORCH_CHECK(!(at::GradMode::is_enabled() && needs_graph),
              "vicreg_loss: double backward through the hand-written (fused) backward is not "
              "supported; use fused_backward=False (Backward::Autograd) for higher-order "
              "gradients");
  at::AutoDispatchBelowADInplaceOrView guard;
  return fused_backward_op().call(grads, z_a, z_b, saved, inv_coeff, var_coeff, cov_coeff,
                                  gamma, eps, config);
}

// ---- composite front ends ------------------------------------------------------------------

TermsTuple vicreg_loss_custom(const Tensor& z_a, const Tensor& z_b, double inv_coeff,
                              double var_coeff, double cov_coeff, double gamma, double eps,
                              c10::string_view invariance, c10::string_view variance_form,
                              c10::string_view variance_views, c10::string_view covariance_norm,
                              bool fused_backward, bool check_finite) {
  const auto o = VICRegLossOptions()
                     .inv_coeff(inv_coeff)
                     .var_coeff(var_coeff)
                     .cov_coeff(cov_coeff)
                     .gamma(gamma)
                     .eps(eps)
                     .invariance(detail::parse_invariance(std::string(invariance)))
                     .variance_form(detail::parse_variance_form(std::string(variance_form)))
                     .variance_views(detail::parse_view_reduction(std::string(variance_views)))
                     .covariance_norm(detail::parse_covariance_norm(std::string(covariance_norm)));
  detail::check_loss_call(kLossName, z_a, z_b, o);
  if (check_finite) {
    detail::check_finite_input(kLossName, "z_a", z_a);
    detail::check_finite_input(kLossName, "z_b", z_b);
  }
  TermsTuple out;
  if (fused_backward) {
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("vicreg::_vicreg_loss_fused", "")
                               .typed<decltype(fused_kernel)>();
    out = op.call(z_a, z_b, inv_coeff, var_coeff, cov_coeff, gamma, eps, detail::pack_config(o));
  } else {
    auto t = detail::vicreg_terms_tensor_ops(z_a, z_b, o);
    out = {t.loss, t.invariance, t.variance, t.covariance};
  }
  if (check_finite) detail::check_finite_result(kLossName, std::get<0>(out));
  return out;
}

TermsTuple vicreg_loss(const Tensor& z_a, const Tensor& z_b, double inv_coeff, double var_coeff,
                       double cov_coeff, double gamma, double eps, c10::string_view convention,
                       bool fused_backward) {
  const auto o = VICRegLossOptions::preset(std::string(convention));
  return vicreg_loss_custom(z_a, z_b, inv_coeff, var_coeff, cov_coeff, gamma, eps,
                            detail::to_string(o.invariance()), detail::to_string(o.variance_form()),
                            detail::to_string(o.variance_views()),
                            detail::to_string(o.covariance_norm()), fused_backward, false);
}

}  // namespace

TORCH_LIBRARY(vicreg, m) {
  m.def(
      "vicreg_loss(Tensor z_a, Tensor z_b, float inv_coeff=25.0, float var_coeff=25.0, "
      "float cov_coeff=1.0, float gamma=1.0, float eps=0.0001, str convention=\"reference\", "
      "bool fused_backward=True) -> (Tensor, Tensor, Tensor, Tensor)",
      TORCH_FN(vicreg_loss));
  m.def(
      "vicreg_loss_custom(Tensor z_a, Tensor z_b, float inv_coeff=25.0, float var_coeff=25.0, "
      "float cov_coeff=1.0, float gamma=1.0, float eps=0.0001, str invariance=\"element_mean\", "
      "str variance_form=\"std\", str variance_views=\"mean\", str covariance_norm=\"unbiased\", "
      "bool fused_backward=True, bool check_finite=False) -> (Tensor, Tensor, Tensor, Tensor)",
      TORCH_FN(vicreg_loss_custom));
  m.def(
      "_vicreg_loss_fused(Tensor z_a, Tensor z_b, float inv_coeff, float var_coeff, "
      "float cov_coeff, float gamma, float eps, int config) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "_vicreg_loss_fused_backward(Tensor[] grads, Tensor z_a, Tensor z_b, Tensor[] saved, "
      "float inv_coeff, float var_coeff, float cov_coeff, float gamma, float eps, int config) "
      "-> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(vicreg, CPU, m) {
  m.impl("_vicreg_loss_fused", TORCH_FN(fused_kernel));
  m.impl("_vicreg_loss_fused_backward", TORCH_FN(fused_backward_kernel));
}

TORCH_LIBRARY_IMPL(vicreg, CUDA, m) {
  m.impl("_vicreg_loss_fused", TORCH_FN(fused_kernel));
  m.impl("_vicreg_loss_fused_backward", TORCH_FN(fused_backward_kernel));
}

TORCH_LIBRARY_IMPL(vicreg, Autograd, m) {
  m.impl("_vicreg_loss_fused", TORCH_FN(fused_autograd));
  m.impl("_vicreg_loss_fused_backward", TORCH_FN(fused_backward_autograd));
}

}  // namespace vicreg
