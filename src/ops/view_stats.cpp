#include "ops/view_stats.h"

#include <ATen/ATen.h>

namespace vicreg::ops {
namespace {

// Column sums of squares of [P, n, d] over the samples, [P, d] (ATen's cascade sum).
Tensor column_sums_of_squares(const Tensor& zc) { return zc.square().sum(1); }

// Batched product of [P, a, b] x [P, b, c]; a plain GEMM when P == 1 (bmm is slower there).
Tensor batched_mm(const Tensor& x, const Tensor& y) {
  if (x.size(0) == 1) return at::mm(x.select(0, 0), y.select(0, 0)).unsqueeze(0);
  return at::bmm(x, y);
}

// S_j from the column sums of squares: sqrt(Var_j + eps) or Var_j.
Tensor hinge_input(const Tensor& colsq, int64_t n, const Hinge& h) {
  const auto var = colsq / static_cast<double>(n - 1);
  return h.form == VarianceForm::Std ? at::sqrt(var + h.eps) : var;
}

}  // namespace

// ATen's sum, whose CPU kernel adds in a cascade: a Gram matrix's diagonal outweighs its other
// entries by orders of magnitude, and a running float32 sum (BLAS dot, linalg_vector_norm)
// then drops the small ones: 2e-5 relative on whitened views at n = d/2, 4e-8 with the cascade.
Tensor sum_of_squares(const Tensor& t) { return t.mul(t).sum(); }

// The Gram path computes offdiag = ||G||_F^2 - sum_j M_jj^2, a difference of two sums that are
// each rounded with a relative error delta; the result's relative error is then about
// delta * A, with A = ||M||_F^2 / offdiag = 1 / (1 - q) and q = sum_j M_jj^2 / ||M||_F^2 the
// diagonal's share. M has rank r <= n - 1, so ||M||_F^2 >= tr(M)^2 / r, and
// sum_j M_jj^2 <= max_j M_jj tr(M); hence q <= (n - 1) max_j Var_j / sum_j Var_j, which for
// columns of equal variance (where the variance term drives every view) is (n - 1) / d.
// Gram only when 2 (n - 1) <= d keeps q <= 1/2, A <= 2. At n == d, the state whitened views
// reach, A would be up to d (float32 at n = d = 1024 gave a negative covariance): the direct
// path zeroes the diagonal of M before summing and has no such difference.
bool use_gram(int64_t n, int64_t d) { return 2 * (n - 1) <= d; }

Centered center(const Tensor& z3) {
  auto mean = z3.mean(1, /*keepdim=*/true);
  const auto first = z3 - mean;
  // The rounded mean leaves a residual of n * (mean - rounded mean) in each column sum;
  // subtracting its mean makes the columns sum to zero to rounding of the spread. (Out of
  // place: autograd differentiates this function on the tensor-op path.)
  const auto residual = first.mean(1, /*keepdim=*/true);
  return {(first - residual).contiguous(), mean.squeeze(1), residual.squeeze(1)};
}

ViewStats view_stats(const Tensor& zc, Tensor colsq, const Hinge& h, bool covariance) {
  const int64_t n = zc.size(1), d = zc.size(2);
  ViewStats s;
  s.colsq = colsq.defined() ? std::move(colsq) : column_sums_of_squares(zc);
  // max(0, gamma - S_j) as threshold(x, 0, 0), which is relu (gradient strictly where
  // S_j < gamma, as the hand-written one) with meta kernels in LibTorch 1.13's C++, forward
  // and backward; relu, clamp_min's backward and where have none there.
  s.hinge = at::threshold(h.gamma - hinge_input(s.colsq, n, h), 0, 0).mean();
  if (!covariance) return s;
  if (use_gram(n, d)) {
    s.mat = batched_mm(zc, zc.transpose(1, 2));
    s.offdiag = sum_of_squares(s.mat) - sum_of_squares(s.colsq);
  } else {
    s.mat = batched_mm(zc.transpose(1, 2), zc);
    s.mat.diagonal(0, 1, 2).zero_();
    s.offdiag = sum_of_squares(s.mat);
  }
  return s;
}

Tensor column_coefficients(const Tensor& colsq, int64_t n, bool gram, const Tensor& w_hinge,
                           const Tensor& w_offdiag, const Hinge& h) {
  const double pd = static_cast<double>(colsq.numel());  // P * d
  const auto s = hinge_input(colsq, n, h);
  const auto active = (s < h.gamma).to(colsq.scalar_type());
  auto coef = h.form == VarianceForm::Std
                  ? active / (s * (-pd * static_cast<double>(n - 1)))
                  : active * (-2.0 / (pd * static_cast<double>(n - 1)));
  coef = coef * w_hinge;
  if (gram) coef = coef - colsq * (w_offdiag * 4.0);  // the -Zc diag(colsq) part
  return coef;
}

void add_matrix_part(Tensor& grad, const Tensor& zc, const Tensor& mat, const Tensor& w_offdiag) {
  const bool gram = use_gram(zc.size(1), zc.size(2));
  const auto scaled = mat * (w_offdiag * 4.0);
  const auto& x = gram ? scaled : zc;
  const auto& y = gram ? zc : scaled;
  if (x.size(0) == 1) {  // out += x @ y without a temporary (BLAS beta = 1)
    auto out = grad.select(0, 0);
    out.addmm_(x.select(0, 0), y.select(0, 0));
  } else {
    grad.baddbmm_(x, y);
  }
}

Tensor view_gradient(const Tensor& zc, const ViewStats& s, const Tensor& w_hinge,
                     const Tensor& w_offdiag, const Hinge& h) {
  const int64_t n = zc.size(1);
  const bool cov = s.mat.defined();
  const auto coef =
      column_coefficients(s.colsq, n, cov && use_gram(n, zc.size(2)), w_hinge, w_offdiag, h);
  auto grad = zc * coef.unsqueeze(1);
  if (cov) add_matrix_part(grad, zc, s.mat, w_offdiag);
  return grad;
}

// ---- VICReg ------------------------------------------------------------------------------

namespace {

// What the invariance's sum of squares is divided by: all entries, or all samples (n * P).
double invariance_count(at::IntArrayRef view_shape, const VICRegLossOptions& o) {
  const double samples = static_cast<double>(view_shape[0] * view_shape[1]);
  return o.invariance() == InvarianceNorm::ElementMean ? samples * view_shape[2] : samples;
}

// c(Z) = offdiag / (m^2 d P), m = n-1 or n.
double covariance_scale(at::IntArrayRef view_shape, const VICRegLossOptions& o) {
  const int64_t P = view_shape[0], n = view_shape[1], d = view_shape[2];
  const double m = o.covariance_norm() == CovarianceNorm::Unbiased ? n - 1 : n;
  return 1.0 / (m * m * static_cast<double>(d * P));
}

double view_weight(const VICRegLossOptions& o) {
  return o.variance_views() == ViewReduction::Mean ? 0.5 : 1.0;
}

}  // namespace

Hinge hinge_of(const VICRegLossOptions& o) { return {o.variance_form(), o.gamma(), o.eps()}; }

FusedForward vicreg_forward(CenteredPair p, const VICRegLossOptions& o) {
  const auto shape = p.zc_a.sizes().vec();
  const auto h = hinge_of(o);
  auto a = view_stats(p.zc_a, std::move(p.colsq_a), h);
  auto b = view_stats(p.zc_b, std::move(p.colsq_b), h);
  FusedForward r;
  r.invariance = p.sq_diff / invariance_count(shape, o);
  r.variance = (a.hinge + b.hinge) * view_weight(o);
  r.covariance = (a.offdiag + b.offdiag) * covariance_scale(shape, o);
  r.loss = o.inv_coeff() * r.invariance + o.var_coeff() * r.variance +
           o.cov_coeff() * r.covariance;
  r.saved = {std::move(p.zc_a), std::move(p.zc_b), std::move(p.mean_diff), std::move(a.colsq),
             std::move(b.colsq), std::move(a.mat), std::move(b.mat)};
  return r;
}

BackwardWeights vicreg_backward_weights(const Tensor& g_loss, const Tensor& g_inv,
                                        const Tensor& g_var, const Tensor& g_cov,
                                        at::IntArrayRef view_shape, const VICRegLossOptions& o) {
  return {(g_loss * o.inv_coeff() + g_inv) * (2.0 / invariance_count(view_shape, o)),
          (g_loss * o.var_coeff() + g_var) * view_weight(o),
          (g_loss * o.cov_coeff() + g_cov) * covariance_scale(view_shape, o)};
}

}  // namespace vicreg::ops
