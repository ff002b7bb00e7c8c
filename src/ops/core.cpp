#include "ops/core.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

namespace vicreg::ops {
namespace {

// S_j from the column sums of squares: sqrt(Var_j + eps) or Var_j.
Tensor hinge_input(const Tensor& colsq, const Dim& n, const Hinge& h) {
  const auto var = colsq / as_scalar(n - 1);
  return h.form == VarianceForm::Std ? at::sqrt(var + h.eps) : var;
}

// The denominator m of C = Zc^T Zc / m.
Dim covariance_denominator(const Dim& n, const Settings& s) {
  return s.covariance_norm == CovarianceNorm::Unbiased ? n - 1 : n;
}

// What the invariance's sum of squares is divided by: all entries, or all samples (n * P).
Dim invariance_count(const Shape& shape, const Settings& s) {
  const auto samples = shape[0] * shape[1];
  return s.invariance == InvarianceNorm::ElementMean ? samples * shape[2] : samples;
}

// c(Z) = offdiag / (m^2 d P), times c.
c10::Scalar covariance_scale(double c, const Shape& shape, const Settings& s) {
  const auto m = covariance_denominator(shape[1], s);
  return ratio(c, {m, m, shape[2] * shape[0]});
}

double view_weight(const Settings& s) {
  return s.variance_views == ViewReduction::Mean ? 0.5 : 1.0;
}

}  // namespace

// ---- layout ------------------------------------------------------------------------------

Tensor to_compute_dtype(const Tensor& z) {
  const auto t = z.scalar_type();
  return (t == at::kHalf || t == at::kBFloat16) ? z.to(at::kFloat) : z;
}

Tensor as_positions(const Tensor& z) {
  if (z.dim() == 2) return z.unsqueeze(0);
  // (flatten, not a reshape to -1: a rank's shard of the sharded loss may hold no rows)
  return z.flatten(1, z.dim() - 2).transpose(0, 1);
}

Tensor from_positions(const Tensor& g, const Shape& sizes) {
  if (sizes.size() == 2) return g.squeeze(0);
  return reshape_to(g.transpose(0, 1), sizes);
}

Tensor as_samples_by_channels(const Tensor& x, int64_t channel_dim) {
  return reshape_to(x.movedim(channel_dim, -1), {-1, size_of(x, channel_dim)});
}

// ---- one view ------------------------------------------------------------------------------

Tensor batched_mm(const Tensor& x, const Tensor& y) {
  if (size_of(x, 0) == 1) return at::mm(x.select(0, 0), y.select(0, 0)).unsqueeze(0);
  return at::bmm(x, y);
}

// ATen's sum, whose CPU kernel adds in a cascade: a Gram matrix's diagonal outweighs its other
// entries by orders of magnitude, and a running float32 sum (BLAS dot, linalg_vector_norm)
// then drops the small ones (src/ops/README.md, "Numerics", has the errors of both).
// On a CPU, in slices of 2^20 values: t * t at once would be a temporary of t's size, and the
// fused forward sums the squares of both views' k x k matrices in one call.
// (Elsewhere one op: device allocators cache, and each op is a kernel launch.)
Tensor sum_of_squares(const Tensor& t) {
  constexpr int64_t kSlice = int64_t{1} << 20;
  if (!t.device().is_cpu() || is_traced(t) || t.numel() <= kSlice) return t.mul(t).sum();
  Tensor total;
  for (const auto& part : t.reshape(-1).split(kSlice)) {
    auto sum = part.mul(part).sum();
    total = total.defined() ? total + sum : sum;
  }
  return total;
}

// The Gram path computes offdiag = ||G||_F^2 - sum_j M_jj^2, a difference of two sums that are
// each rounded with a relative error delta; the result's relative error is then about
// delta * A, with A = ||M||_F^2 / offdiag = 1 / (1 - q) and q = sum_j M_jj^2 / ||M||_F^2 the
// diagonal's share. M has rank r <= n - 1, so ||M||_F^2 >= tr(M)^2 / r, and
// sum_j M_jj^2 <= max_j M_jj tr(M); hence q <= (n - 1) max_j Var_j / sum_j Var_j, which for
// columns of equal variance (where the variance term drives every view) is (n - 1) / d.
// Gram only when 2 (n - 1) <= d keeps q <= 1/2, A <= 2. At n == d, the state whitened views
// reach, A would be up to d (float32 at n = d = 1024 gave a negative covariance): the direct
// path zeroes the diagonal of M before summing and has no such difference.
// Both paths give the same terms and gradients, and every saved tensor of the fused ops has
// the same shape on both, so the rule is a choice of speed alone. While PyTorch 2 traces a
// symbolic size, the direct path is taken without reading the rule: accurate for every n, and
// no guard on the batch size, which may then cross the rule at run time. (The fused ops are
// nodes of their own in a traced graph: their kernels read the rule again on real sizes. The
// tensor-op path, fused_backward=False, is traced into the graph, direct path and all.)
bool use_gram(const Dim& n, const Dim& d) {
  if (is_symbolic(n) || is_symbolic(d)) return false;
  return (n - 1) * 2 <= d;
}

Tensor center(const Tensor& z3, const ColumnMean& column_mean, const Tensor& out) {
  const auto mean_of = [&](const Tensor& t) {
    return column_mean ? column_mean(t) : t.mean(1, /*keepdim=*/true);
  };
  auto first = out;  // (a handle: at::sub_out writes into out's storage)
  if (out.defined()) {
    TORCH_INTERNAL_ASSERT(out.sizes() == z3.sizes() && out.is_contiguous() &&
                          !c10::GradMode::is_enabled());
    at::sub_out(first, z3, mean_of(z3));
  } else {
    first = z3 - mean_of(z3);
  }
  // The rounded mean leaves a residual of n * (mean - rounded mean) in each column sum;
  // subtracting its mean makes the columns sum to zero to rounding of the spread. (In place
  // but where autograd differentiates this function, on the tensor-op path: a buffer of the
  // view's size less.)
  const auto residual = mean_of(first);
  auto zc = first.requires_grad() ? first - residual : first.sub_(residual);
  return zc.contiguous();
}

Tensor column_sums_of_squares(const Tensor& zc) { return zc.mul(zc).sum(1, /*keepdim=*/true); }

// max(0, gamma - S_j) as threshold(x, 0, 0), which is relu (gradient strictly where S_j < gamma,
// as the hand-written one) with meta kernels in LibTorch 1.13's C++, forward and backward;
// relu, clamp_min's backward and where have none there.
Tensor hinge_term(const Tensor& colsq, const Dim& n, const Hinge& h) {
  return at::threshold(at::rsub(hinge_input(colsq, n, h), h.gamma), 0, 0).mean();
}

Tensor offdiag_of_matrix_(Tensor& m) {
  m.diagonal(0, 1, 2).zero_();
  return sum_of_squares(m);
}

Tensor offdiag_of_gram(const Tensor& gram_sum_of_squares, const Tensor& colsq) {
  return gram_sum_of_squares - sum_of_squares(colsq);
}

ViewStats view_stats(const Tensor& zc, Tensor colsq, const Hinge& h, bool covariance,
                     Tensor mat) {
  const auto n = size_of(zc, 1), d = size_of(zc, 2);
  ViewStats s;
  s.colsq = colsq.defined() ? std::move(colsq) : column_sums_of_squares(zc);
  s.hinge = hinge_term(s.colsq, n, h);
  if (!covariance) return s;
  if (use_gram(n, d)) {
    s.mat = mat.defined() ? std::move(mat) : batched_mm(zc, zc.transpose(1, 2));
    s.offdiag = offdiag_of_gram(sum_of_squares(s.mat), s.colsq);
  } else {
    s.mat = mat.defined() ? std::move(mat) : batched_mm(zc.transpose(1, 2), zc);
    s.offdiag = offdiag_of_matrix_(s.mat);
  }
  return s;
}

Tensor column_coefficients(const Tensor& colsq, const Dim& n, bool gram, const Tensor& w_hinge,
                           const Tensor& w_offdiag, const Hinge& h) {
  const auto count = numel_of(colsq) * (n - 1);  // P * d * (n - 1)
  const auto s = hinge_input(colsq, n, h);
  const auto active = s < h.gamma;
  // -[S_j < gamma] w / (count S_j) (std) or -[Var_j < gamma] 2 w / count (var): a 0-dim weight
  // and one op over the columns each.
  auto coef = h.form == VarianceForm::Std
                  ? at::div(w_hinge * ratio(-1.0, {count}), s).mul_(active)
                  : active * (w_hinge * ratio(-2.0, {count}));
  if (gram) coef.addcmul_(colsq, w_offdiag, -4.0);  // the -Zc diag(colsq) part
  return coef;
}

void add_matrix_part(Tensor& grad, const Tensor& zc, const Tensor& mat, const Tensor& w_offdiag,
                     const Shard* shard) {
  const bool gram = use_gram(shard ? shard->rows : size_of(zc, 1), size_of(zc, 2));
  const auto scaled = mat * (w_offdiag * 4.0);
  const auto& x = gram ? scaled : zc;
  const auto& y = gram ? (shard ? shard->zc_all : zc) : scaled;
  if (size_of(x, 0) == 1) {  // out += x @ y without a temporary (BLAS beta = 1)
    auto out = grad.select(0, 0);
    out.addmm_(x.select(0, 0), y.select(0, 0));
  } else {
    grad.baddbmm_(x, y);
  }
}

Tensor matrix_product(const Tensor& zc, const Tensor& mat) {
  return use_gram(size_of(zc, 1), size_of(zc, 2)) ? batched_mm(mat, zc) : batched_mm(zc, mat);
}

Tensor view_gradient(const Tensor& zc, const ViewStats& s, const Tensor& w_hinge,
                     const Tensor& w_offdiag, const Hinge& h, const Shard* shard) {
  const auto n = shard ? shard->rows : size_of(zc, 1);
  const bool cov = s.mat.defined();
  const auto coef =
      column_coefficients(s.colsq, n, cov && use_gram(n, size_of(zc, 2)), w_hinge, w_offdiag, h);
  auto grad = zc * coef;
  if (cov) add_matrix_part(grad, zc, s.mat, w_offdiag, shard);
  return grad;
}

// ---- VICReg ------------------------------------------------------------------------------

Tensor invariance_of(const Tensor& sq_diff, const Shape& shape, const Settings& s) {
  return sq_diff / as_scalar(invariance_count(shape, s));
}

Tensor covariance_of(const Tensor& offdiag, const Shape& shape, const Settings& s) {
  return offdiag * covariance_scale(1.0, shape, s);
}

Tensor variance_of(const Tensor& hinge_a, const Tensor& hinge_b, const Settings& s) {
  return (hinge_a + hinge_b) * view_weight(s);
}

std::tuple<Tensor, Tensor, Tensor, Tensor> weighted(Tensor inv, Tensor var, Tensor cov,
                                                    const Settings& s) {
  auto loss = at::add(inv * s.inv_coeff, var, s.var_coeff).add_(cov, s.cov_coeff);
  return {std::move(loss), std::move(inv), std::move(var), std::move(cov)};
}

const char* const kSavedSchema = "Tensor zc, Tensor mean_diff, Tensor colsq, Tensor product";

Tensor pair_half(const Tensor& t, int v) {
  const auto P = size_of(t, 0) / 2;
  return narrow_to(t, 0, P * v, P);
}

std::vector<Tensor> saved_of(const FusedOutputs& out) {
  return {std::get<4>(out), std::get<5>(out), std::get<6>(out), std::get<7>(out)};
}

FusedOutputs vicreg_forward(CenteredPair p, const Settings& s) {
  // Both views' statistics at once: the hinge is the mean over both views' 2 P d columns, which
  // is the mean of the two views' hinges; offdiag is the two views' sum.
  auto both = view_stats(p.zc, std::move(p.colsq), s.hinge, /*covariance=*/true,
                         std::move(p.mat));
  const auto shape = Shape{size_of(p.zc, 0) / 2, size_of(p.zc, 1), size_of(p.zc, 2)};
  const double views = 2.0 * view_weight(s);  // 1 for the mean over the views: no op
  auto [loss, inv, var, cov] =
      weighted(invariance_of(p.sq_diff, shape, s), views == 1.0 ? both.hinge : both.hinge * views,
               covariance_of(both.offdiag, shape, s), s);
  // The matrix's product with Zc, the backward's one GEMM, is taken here: it is the same for
  // every output gradient, and it has Zc's shape on both paths, where the matrix has not.
  auto product = matrix_product(p.zc, both.mat);
  return {std::move(loss), std::move(inv),         std::move(var),        std::move(cov),
          std::move(p.zc), std::move(p.mean_diff), std::move(both.colsq), std::move(product)};
}

BackwardWeights vicreg_backward_weights(const c10::optional<Tensor>& g_loss,
                                        const c10::optional<Tensor>& g_inv,
                                        const c10::optional<Tensor>& g_var,
                                        const c10::optional<Tensor>& g_cov, const Shape& shape,
                                        const Settings& s, bool stacked) {
  const auto given = [](const c10::optional<Tensor>& g) { return g.has_value() && g->defined(); };
  // (g_loss coeff + g_term) scale, with one op for each gradient that was given: scale(c) is
  // c times the term's scale factor.
  const auto weight = [&](const c10::optional<Tensor>& g_term, double coeff,
                          const std::function<c10::Scalar(double)>& scale) -> Tensor {
    if (given(g_loss) && given(g_term)) return at::add(*g_term, *g_loss, coeff).mul_(scale(1.0));
    if (given(g_loss)) return g_loss->mul(scale(coeff));
    if (given(g_term)) return g_term->mul(scale(1.0));
    const auto& any = given(g_inv) ? *g_inv : given(g_var) ? *g_var : *g_cov;
    return at::zeros({}, any.options());
  };
  TORCH_INTERNAL_ASSERT(given(g_loss) || given(g_inv) || given(g_var) || given(g_cov));
  return {weight(g_inv, s.inv_coeff,
                 [&](double c) { return ratio(2.0 * c, {invariance_count(shape, s)}); }),
          weight(g_var, s.var_coeff,
                 [&](double c) { return c10::Scalar(c * view_weight(s) * (stacked ? 2 : 1)); }),
          weight(g_cov, s.cov_coeff,
                 [&](double c) { return covariance_scale(c, shape, s); })};
}

namespace {

// Zc of one view [n, d] or [n, P..., d] as [P, n, d], in the compute dtype.
Tensor centered_positions(const Tensor& z) {
  return center(as_positions(to_compute_dtype(z)));
}

}  // namespace

std::tuple<Tensor, Tensor, Tensor, Tensor> vicreg_terms_tensor_ops(const Tensor& z_a,
                                                                   const Tensor& z_b,
                                                                   const Settings& s) {
  const auto zc_a = centered_positions(z_a), zc_b = centered_positions(z_b);
  const auto a = view_stats(zc_a, {}, s.hinge), b = view_stats(zc_b, {}, s.hinge);
  const auto shape = ops::shape_of(zc_a);
  return weighted(invariance_term(z_a, z_b, s), variance_of(a.hinge, b.hinge, s),
                  covariance_of(a.offdiag + b.offdiag, shape, s), s);
}

Tensor invariance_term(const Tensor& z_a, const Tensor& z_b, const Settings& s) {
  const auto za = as_positions(to_compute_dtype(z_a)), zb = as_positions(to_compute_dtype(z_b));
  return invariance_of((za - zb).square().sum(), ops::shape_of(za), s);
}

Tensor variance_term(const Tensor& z, const Settings& s) {
  return view_stats(centered_positions(z), {}, s.hinge, /*covariance=*/false).hinge;
}

Tensor covariance_term(const Tensor& z, const Settings& s) {
  const auto zc = centered_positions(z);
  return covariance_of(view_stats(zc, {}, s.hinge).offdiag, ops::shape_of(zc), s);
}

// ---- VCReg -------------------------------------------------------------------------------

namespace {

struct VCRegView {
  Tensor zc;        // [1, N, d]
  bool channels;    // d >= 2: there is an off-diagonal covariance
  c10::Scalar cov;  // cov_coeff / ((N-1)^2 d (d-1)): the covariance part is offdiag * cov
};

VCRegView vcreg_view(const Tensor& x, const VCRegSettings& s) {
  const auto x2 = as_samples_by_channels(to_compute_dtype(x), s.channel_dim);
  const auto n = size_of(x2, 0), d = size_of(x2, 1);
  return {center(x2.unsqueeze(0)), d >= 2,
          ratio(s.cov_coeff, {n - 1, n - 1, d, d - 1})};
}

}  // namespace

Tensor vcreg_penalty(const Tensor& x, const VCRegSettings& s) {
  const auto v = vcreg_view(x, s);
  const auto st = view_stats(v.zc, {}, s.hinge, v.channels);
  auto penalty = st.hinge * s.var_coeff;
  return v.channels ? penalty + st.offdiag * v.cov : penalty;
}

Tensor vcreg_gradient(const Tensor& x, const VCRegSettings& s) {
  const auto v = vcreg_view(x, s);
  // (no covariance gradient to compute when its weight is 0)
  const bool covariance = v.channels && s.cov_coeff != 0;
  const auto st = view_stats(v.zc, {}, s.hinge, covariance);
  const auto opts = v.zc.options();  // (the weights live on the input's device)
  const auto w_offdiag =
      covariance ? at::scalar_tensor(1.0, opts) * v.cov : at::zeros({}, opts);
  const auto g = view_gradient(v.zc, st, at::scalar_tensor(s.var_coeff, opts), w_offdiag,
                               s.hinge);
  // [1, N, d] -> x's layout: undo the reshape, then move the channels back.
  return reshape_to(g, shape_of(x.movedim(s.channel_dim, -1))).movedim(-1, s.channel_dim);
}

}  // namespace vicreg::ops
