// The tensor-op formulation of the VICReg loss and of the VCReg penalty (differentiated by
// autograd), and the functional front ends that call the registered operators.

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include "detail.h"
#include "vicreg/functional.h"
#ifdef VICREG_WITH_DISTRIBUTED
#include "vicreg/distributed.h"
#endif

namespace vicreg {
namespace {

// v(Z) for Z3 = [P, n, d]: mean over positions and dims of the hinge.
at::Tensor variance_of_positions(const at::Tensor& z3, double gamma, double eps,
                                 VarianceForm form) {
  const int64_t n = z3.size(1);
  const auto zc = z3 - z3.mean(1, /*keepdim=*/true);
  const auto var = zc.square().sum(1) / static_cast<double>(n - 1);
  const auto s = form == VarianceForm::Std ? at::sqrt(var + eps) : var;
  return at::relu(gamma - s).mean();
}

// (1/d) sum_{i != j} C_ij^2 for Z3 = [P, n, d], averaged over positions; C = Zc^T Zc / m.
at::Tensor off_diagonal_sq_sum_of_positions(const at::Tensor& z3, double m) {
  const int64_t d = z3.size(2);
  const auto zc = z3 - z3.mean(1, /*keepdim=*/true);
  const auto cov = at::matmul(zc.transpose(1, 2), zc) / m;  // [P, d, d]
  const auto off = cov * (1 - at::eye(d, cov.options()));
  return off.square().sum() / static_cast<double>(z3.size(0));
}

}  // namespace

namespace detail {

VICRegTerms vicreg_terms_tensor_ops(const at::Tensor& z_a, const at::Tensor& z_b,
                                    const VICRegLossOptions& o) {
  const auto za = to_compute_dtype(z_a), zb = to_compute_dtype(z_b);
  VICRegTerms t;
  t.invariance = functional::invariance_term(za, zb, o);
  const auto va = functional::variance_term(za, o), vb = functional::variance_term(zb, o);
  t.variance = o.variance_views() == ViewReduction::Mean ? (va + vb) / 2 : va + vb;
  t.covariance = functional::covariance_term(za, o) + functional::covariance_term(zb, o);
  t.loss = o.inv_coeff() * t.invariance + o.var_coeff() * t.variance +
           o.cov_coeff() * t.covariance;
  return t;
}

}  // namespace detail

namespace functional {

at::Tensor invariance_term(const at::Tensor& z_a, const at::Tensor& z_b,
                           const VICRegLossOptions& o) {
  detail::check_views("invariance_term", z_a, z_b);
  const auto za = detail::to_compute_dtype(z_a), zb = detail::to_compute_dtype(z_b);
  const auto sq = (za - zb).square();
  if (o.invariance() == InvarianceNorm::ElementMean) return sq.mean();
  return sq.sum() / static_cast<double>(za.numel() / za.size(-1));  // samples: n * P
}

at::Tensor variance_term(const at::Tensor& z, const VICRegLossOptions& o) {
  detail::check_views("variance_term", z, z);
  detail::check_gamma_eps("variance_term", o.gamma(), o.eps());
  detail::check_options_fit("variance_term", z.scalar_type(),
                            {{"gamma", o.gamma()}, {"eps", o.eps()}});
  return variance_of_positions(detail::as_positions(detail::to_compute_dtype(z)), o.gamma(),
                               o.eps(), o.variance_form());
}

at::Tensor covariance_term(const at::Tensor& z, const VICRegLossOptions& o) {
  detail::check_views("covariance_term", z, z);
  const int64_t n = z.size(0), d = z.size(-1);
  const double m = o.covariance_norm() == CovarianceNorm::Unbiased ? n - 1 : n;
  return off_diagonal_sq_sum_of_positions(detail::as_positions(detail::to_compute_dtype(z)), m) /
         static_cast<double>(d);
}

at::Tensor vcreg_penalty(const at::Tensor& x, const VCRegOptions& o) {
  detail::check_vcreg_call("vcreg_penalty", x, o.var_coeff(), o.cov_coeff(), o.gamma(), o.eps(),
                           o.channel_dim());
  const auto x2 = detail::as_samples_by_channels(detail::to_compute_dtype(x), o.channel_dim());
  const int64_t n = x2.size(0), c = x2.size(1);
  const auto x3 = x2.unsqueeze(0);
  const auto v = variance_of_positions(x3, o.gamma(), o.eps(), o.variance_form());
  if (c < 2) return o.var_coeff() * v;
  const auto cov = off_diagonal_sq_sum_of_positions(x3, n - 1) / static_cast<double>(c * (c - 1));
  return o.var_coeff() * v + o.cov_coeff() * cov;
}

VICRegTerms vicreg_terms(const at::Tensor& z_a, const at::Tensor& z_b,
                         const VICRegLossOptions& o) {
  if (o.process_group()) {
#ifdef VICREG_WITH_DISTRIBUTED
    const auto& g = *o.process_group();
    detail::check_views("vicreg_loss", z_a, z_b);
    // Every term on the gathered batch, normalized by its true size, through the operator
    // (either backward). The invariance of the gathered pairs is the mean of the ranks' local
    // pair terms weighted by their rows; the gather's backward hands each rank the gradient
    // of its own rows summed over ranks, which DDP's averaging turns into the single-process
    // gradient.
    const auto ga = distributed::all_gather(z_a, g), gb = distributed::all_gather(z_b, g);
    auto local = o;
    local.process_group(nullptr);
    return vicreg_terms(ga, gb, local);
#else
    TORCH_CHECK(false, "vicreg_loss: a process_group was given, but this build of vicreg has no "
                "distributed support (configure with -DVICREG_DISTRIBUTED=ON)");
#endif
  }
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("vicreg::vicreg_loss_custom", "")
          .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
              const at::Tensor&, const at::Tensor&, double, double, double, double, double,
              c10::string_view, c10::string_view, c10::string_view, c10::string_view, bool,
              bool)>();
  auto [loss, inv, var, cov] =
      op.call(z_a, z_b, o.inv_coeff(), o.var_coeff(), o.cov_coeff(), o.gamma(), o.eps(),
              detail::to_string(o.invariance()), detail::to_string(o.variance_form()),
              detail::to_string(o.variance_views()), detail::to_string(o.covariance_norm()),
              o.backward() == Backward::Fused, o.check_finite());
  return {loss, inv, var, cov};
}

at::Tensor vicreg_loss(const at::Tensor& z_a, const at::Tensor& z_b,
                       const VICRegLossOptions& o) {
  return vicreg_terms(z_a, z_b, o).loss;
}

at::Tensor vcreg(const at::Tensor& x, const VCRegOptions& o) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("vicreg::vcreg", "")
                             .typed<at::Tensor(const at::Tensor&, double, double, double, double,
                                               int64_t, c10::string_view)>();
  return op.call(x, o.var_coeff(), o.cov_coeff(), o.gamma(), o.eps(), o.channel_dim(),
                 detail::to_string(o.variance_form()));
}

}  // namespace functional
}  // namespace vicreg
