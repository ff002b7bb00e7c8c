// The tensor-op formulation of the VICReg loss and of the VCReg penalty (the math core's
// forward, differentiated by autograd), and the functional front ends that call the registered
// operators.

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include "detail.h"
#include "ops/ops.h"
#include "ops/view_stats.h"
#include "vicreg/functional.h"
#ifdef VICREG_WITH_DISTRIBUTED
#include "vicreg/distributed.h"
#endif

namespace vicreg {
namespace {

// Zc of one view [n, d] or [n, P..., d] as [P, n, d], in the compute dtype.
at::Tensor centered_positions(const at::Tensor& z) {
  return ops::center(detail::as_positions(detail::to_compute_dtype(z))).zc;
}

double covariance_denominator(int64_t n, const VICRegLossOptions& o) {
  return o.covariance_norm() == CovarianceNorm::Unbiased ? n - 1 : n;
}

// c(Z) of one view from its statistics: offdiag / (m^2 d P).
at::Tensor covariance_of(const ops::ViewStats& s, const at::Tensor& zc,
                         const VICRegLossOptions& o) {
  const double m = covariance_denominator(zc.size(1), o);
  return s.offdiag / (m * m * static_cast<double>(zc.size(0) * zc.size(2)));
}

}  // namespace

namespace detail {

VICRegTerms vicreg_terms_tensor_ops(const at::Tensor& z_a, const at::Tensor& z_b,
                                    const VICRegLossOptions& o) {
  const auto h = ops::hinge_of(o);
  const auto zc_a = centered_positions(z_a), zc_b = centered_positions(z_b);
  const auto a = ops::view_stats(zc_a, {}, h), b = ops::view_stats(zc_b, {}, h);
  VICRegTerms t;
  t.invariance = functional::invariance_term(z_a, z_b, o);
  t.variance = o.variance_views() == ViewReduction::Mean ? (a.hinge + b.hinge) / 2
                                                         : a.hinge + b.hinge;
  t.covariance = covariance_of(a, zc_a, o) + covariance_of(b, zc_b, o);
  t.loss = o.inv_coeff() * t.invariance + o.var_coeff() * t.variance +
           o.cov_coeff() * t.covariance;
  return t;
}

VICRegTerms single_process_terms(const at::Tensor& z_a, const at::Tensor& z_b,
                                 const VICRegLossOptions& o) {
  constexpr const char* fn = "vicreg_loss";
  check_loss_call(fn, z_a, z_b, o);
  if (o.check_finite()) {
    check_finite_input(fn, "z_a", z_a);
    check_finite_input(fn, "z_b", z_b);
  }
  VICRegTerms t;
  if (o.backward() == Backward::Fused) {
    auto [loss, inv, var, cov, saved] = ops::fused_op().call(
        z_a, z_b, o.inv_coeff(), o.var_coeff(), o.cov_coeff(), o.gamma(), o.eps(),
        to_string(o.invariance()), to_string(o.variance_form()), to_string(o.variance_views()),
        to_string(o.covariance_norm()));
    t = {loss, inv, var, cov};
  } else {
    t = vicreg_terms_tensor_ops(z_a, z_b, o);
  }
  if (o.check_finite()) check_finite_result(fn, t.loss);
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
  return ops::view_stats(centered_positions(z), {}, ops::hinge_of(o), /*covariance=*/false).hinge;
}

at::Tensor covariance_term(const at::Tensor& z, const VICRegLossOptions& o) {
  detail::check_views("covariance_term", z, z);
  const auto zc = centered_positions(z);
  return covariance_of(ops::view_stats(zc, {}, ops::hinge_of(o)), zc, o);
}

at::Tensor vcreg_penalty(const at::Tensor& x, const VCRegOptions& o) {
  detail::check_vcreg_call("vcreg_penalty", x, o.var_coeff(), o.cov_coeff(), o.gamma(), o.eps(),
                           o.channel_dim());
  const auto x2 = detail::as_samples_by_channels(detail::to_compute_dtype(x), o.channel_dim());
  const int64_t n = x2.size(0), c = x2.size(1);
  const auto zc = ops::center(x2.unsqueeze(0)).zc;
  const auto s = ops::view_stats(zc, {}, {o.variance_form(), o.gamma(), o.eps()}, c > 1);
  if (c < 2) return o.var_coeff() * s.hinge;
  const double scale = 1.0 / (static_cast<double>(n - 1) * (n - 1) * c * (c - 1));
  return o.var_coeff() * s.hinge + o.cov_coeff() * scale * s.offdiag;
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
  // Through the public operator, so that C++, Python and TorchScript share one path.
  using Knob = c10::optional<c10::string_view>;
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("vicreg::vicreg_terms", "")
                             .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
                                 const at::Tensor&, const at::Tensor&, double, double, double,
                                 double, double, c10::string_view, Knob, Knob, Knob, Knob, bool,
                                 bool)>();
  auto [loss, inv, var, cov] =
      op.call(z_a, z_b, o.inv_coeff(), o.var_coeff(), o.cov_coeff(), o.gamma(), o.eps(),
              "reference", Knob(detail::to_string(o.invariance())),
              Knob(detail::to_string(o.variance_form())),
              Knob(detail::to_string(o.variance_views())),
              Knob(detail::to_string(o.covariance_norm())), o.backward() == Backward::Fused,
              o.check_finite());
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
