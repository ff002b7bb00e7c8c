#pragma once
// The math core of both losses, in ATen ops on a view Z as [P, n, d] (P positions, n samples,
// d features): centering, the column sums of squares, the variance hinge, the k x k matrix of
// the covariance term, and the per-view gradient. VICReg calls it for two views, VCReg for one
// (P = 1); the tensor-op path (differentiated by autograd), the composite kernels (every
// backend, meta included) and the CPU kernels all go through it, so the formulas and the
// Gram-or-direct rule exist once, here.
//
// Per view, with Zc = Z - column means, M = Zc^T Zc (d x d, per position):
//   hinge   = mean over P*d of max(0, gamma - S_j),  S_j = sqrt(Var_j + eps) | Var_j,
//             Var_j = colsq_j / (n-1), colsq_j = sum_i Zc_ij^2
//   offdiag = sum over positions of sum_{i != j} M_ij^2      (callers divide by m^2 d ...)
// and their gradients
//   d hinge / d Z_ij   = -[S_j < gamma] Zc_ij / ((n-1) S_j P d)     (std form)
//                      = -[Var_j < gamma] 2 Zc_ij / ((n-1) P d)     (var form)
//   d offdiag / d Z    = 4 Zc (M - diag M) = 4 (G Zc - Zc diag(colsq)),  G = Zc Zc^T (n x n)
// (no centering term: the columns of Zc sum to zero).

#include <ATen/core/Tensor.h>

#include "vicreg/options.h"

namespace vicreg::ops {

using at::Tensor;

/// The variance hinge's settings.
struct Hinge {
  VarianceForm form = VarianceForm::Std;
  double gamma = 1.0;
  double eps = 1e-4;
};

/// The sum of all squares of t, 0-dim (a dot product: blocked, so accurate in float32).
Tensor sum_of_squares(const Tensor& t);

/// Whether the covariance term of an [n, d] view goes through the n x n Gram matrix G = Zc Zc^T
/// (true) or the d x d matrix M = Zc^T Zc with its diagonal zeroed (false). See view_stats.cpp
/// for the error bound that sets the rule 2 (n - 1) <= d.
bool use_gram(int64_t n, int64_t d);

/// Z [P, n, d] centered over the samples, contiguous, and the column means [P, d] as the
/// unevaluated sum mean_hi + mean_lo. The mean is corrected by a second pass (mean_lo, the mean
/// of the first residuals), so the columns of Zc sum to zero to rounding even under a common
/// offset far larger than the spread, and the difference of two views' means keeps its digits.
struct Centered {
  Tensor zc;
  Tensor mean_hi, mean_lo;
};
Centered center(const Tensor& z3);

/// What one view contributes, from its centered rows.
struct ViewStats {
  Tensor colsq;    ///< [P, d] sum_i Zc_ij^2
  Tensor mat;      ///< [P, n, n] G (Gram) or [P, d, d] M with zero diagonal; undefined if !cov
  Tensor hinge;    ///< 0-dim
  Tensor offdiag;  ///< 0-dim sum_p sum_{i != j} M_ij^2 (unnormalized); undefined if !cov
};
/// `colsq` may be undefined (then it is computed here). With `covariance` false the matrix and
/// offdiag are skipped.
ViewStats view_stats(const Tensor& zc, Tensor colsq, const Hinge& hinge, bool covariance = true);

/// The gradient of w_hinge * hinge + w_offdiag * offdiag with respect to the view, [P, n, d]
/// (the weights are 0-dim tensors, so no host sync). `coef_only` gives just the per-column
/// multiplier of Zc ([P, d]; the variance part and, on the Gram path, the -diag part), for
/// kernels that fuse the elementwise work; `add_matrix_part` then adds 4 w (G Zc | Zc M).
Tensor column_coefficients(const Tensor& colsq, int64_t n, bool gram, const Tensor& w_hinge,
                           const Tensor& w_offdiag, const Hinge& hinge);
void add_matrix_part(Tensor& grad, const Tensor& zc, const Tensor& mat, const Tensor& w_offdiag);
Tensor view_gradient(const Tensor& zc, const ViewStats& s, const Tensor& w_hinge,
                     const Tensor& w_offdiag, const Hinge& hinge);

// ---- VICReg on the core: the fused forward and the hand-written backward ---------------------

/// The centered pair from which the fused forward is assembled (by the composite or the CPU
/// kernel): Zc of both views, their column sums of squares (undefined: computed by the core),
/// mean_a - mean_b [P, d], and sum (Za - Zb)^2 (0-dim).
struct CenteredPair {
  Tensor zc_a, zc_b, colsq_a, colsq_b, mean_diff, sq_diff;
};

/// The saved tensors of the fused forward, in this order (what _vicreg_fused returns as `saved`).
enum Saved { kZcA, kZcB, kMeanDiff, kColsqA, kColsqB, kMatA, kMatB, kNumSaved };

struct FusedForward {
  Tensor loss, invariance, variance, covariance;
  std::vector<Tensor> saved;
};
FusedForward vicreg_forward(CenteredPair pair, const VICRegLossOptions& o);

/// The 0-dim weights of the backward: w_inv on (Za - Zb), w_hinge and w_offdiag per view.
struct BackwardWeights {
  Tensor inv, hinge, offdiag;
};
BackwardWeights vicreg_backward_weights(const Tensor& g_loss, const Tensor& g_inv,
                                        const Tensor& g_var, const Tensor& g_cov,
                                        at::IntArrayRef view_shape, const VICRegLossOptions& o);

/// The settings that the variance hinge takes from the loss options.
Hinge hinge_of(const VICRegLossOptions& o);

}  // namespace vicreg::ops
