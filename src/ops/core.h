#pragma once
// The math core of both losses, in ATen ops on a view Z as [P, n, d] (P positions, n samples,
// d features): centering, the column sums of squares, the variance hinge, the k x k matrix of
// the covariance term, the per-view gradient, and the scale factors of the terms. VICReg calls
// it for two views, VCReg for one (P = 1); the tensor-op path (differentiated by autograd), the
// composite kernels (every backend, meta included), the CPU kernels and the functional API all
// go through it, so each formula and the Gram-or-direct rule exist once, here. Sizes are read
// through ops/symint.h, so all of it can be traced by PyTorch 2 with symbolic shapes.
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

#include <functional>
#include <tuple>
#include <utility>
#include <vector>

#include <c10/util/Optional.h>

#include "ops/settings.h"
#include "ops/symint.h"

namespace vicreg::ops {

using at::Tensor;

// ---- layout ------------------------------------------------------------------------------

/// float16/bfloat16 are computed in float32; other dtypes as they are.
Tensor to_compute_dtype(const Tensor& z);
/// [n, P..., d] -> [P, n, d] (a view; P = 1 for [n, d]).
Tensor as_positions(const Tensor& z);
/// [P, n, d] -> the layout [n, P..., d] of a view of shape `sizes`.
Tensor from_positions(const Tensor& g, const Shape& sizes);
/// [.., c, ..] with channels at `channel_dim` -> [n_samples, c] (may copy).
Tensor as_samples_by_channels(const Tensor& x, int64_t channel_dim);

// ---- one view ------------------------------------------------------------------------------

/// [P, a, b] x [P, b, c]; a plain GEMM when P == 1 (bmm is slower there).
Tensor batched_mm(const Tensor& x, const Tensor& y);

/// The sum of all squares of t, 0-dim (ATen's cascade sum: accurate in float32).
Tensor sum_of_squares(const Tensor& t);

/// Whether the covariance term of an [n, d] view goes through the n x n Gram matrix G = Zc Zc^T
/// (true) or the d x d matrix M = Zc^T Zc with its diagonal zeroed (false). See core.cpp for
/// the error bound that sets the rule 2 (n - 1) <= d. While PyTorch 2 traces a symbolic size it
/// is false, without a guard (core.cpp says why). The backward reads the rule again from the
/// saved tensors' sizes, so it must stay a function of n and d alone.
bool use_gram(const Dim& n, const Dim& d);

/// Z [P, n, d] centered over the samples, contiguous. The mean is corrected by a second pass
/// (the mean of the first residuals), so the columns of Zc sum to zero to rounding even under a
/// common offset far larger than the spread.
/// `column_mean` ([P, n, d] -> [P, 1, d]) replaces the mean over the rows for a batch spread
/// over ranks (the sharded loss: this rank's column sums, summed over the ranks, over N).
/// `out`, a contiguous [P, n, d] outside autograd, receives Zc (the sharded loss centers
/// straight into its slot of the buffer that the ranks fill).
using ColumnMean = std::function<Tensor(const Tensor&)>;
Tensor center(const Tensor& z3, const ColumnMean& column_mean = {}, const Tensor& out = {});

/// sum_i Zc_ij^2 of [P, n, d] over the samples, [P, 1, d] (ATen's cascade sum; the kept dim
/// lets the per-column vectors multiply Zc without a reshape).
Tensor column_sums_of_squares(const Tensor& zc);
/// The variance hinge mean over P*d of max(0, gamma - S_j), from the column sums of squares of
/// n samples.
Tensor hinge_term(const Tensor& colsq, const Dim& n, const Hinge& hinge);
/// offdiag on the direct path: zeroes the diagonal of M [P, d, d] in place, then its sum of
/// squares.
Tensor offdiag_of_matrix_(Tensor& m);
/// offdiag on the Gram path from ||G||_F^2 (= ||M||_F^2) and the column sums of squares (the
/// diagonal of M).
Tensor offdiag_of_gram(const Tensor& gram_sum_of_squares, const Tensor& colsq);

/// What one view contributes, from its centered rows.
struct ViewStats {
  Tensor colsq;    ///< [P, 1, d] sum_i Zc_ij^2
  Tensor mat;      ///< [P, n, n] G (Gram) or [P, d, d] M with zero diagonal; undefined if !cov
  Tensor hinge;    ///< 0-dim
  Tensor offdiag;  ///< 0-dim sum_p sum_{i != j} M_ij^2 (unnormalized); undefined if !cov
};
/// `colsq` may be undefined (then it is computed here). With `covariance` false the matrix and
/// offdiag are skipped. `mat`, when defined, is the k x k matrix that the rule picks (G or M,
/// [P, k, k], diagonal kept), taken by the caller (the CPU kernel's BLAS syrk); otherwise it is
/// an ATen product here.
ViewStats view_stats(const Tensor& zc, Tensor colsq, const Hinge& hinge, bool covariance = true,
                     Tensor mat = {});

/// One rank's share of a view whose N rows are spread over ranks (the sharded loss): the
/// view's zc holds this rank's rows, and its ViewStats hold the statistics of all N rows
/// (colsq and M summed over the ranks), except that on the Gram path `mat` is this rank's Gram
/// rows [P, n_local, N] against `zc_all`, every rank's centered rows [P, N, d].
struct Shard {
  Dim rows;       ///< N
  Tensor zc_all;  ///< [P, N, d] on the Gram path; undefined on the direct path
};

/// The gradient of w_hinge * hinge + w_offdiag * offdiag with respect to the view, [P, n, d]
/// (the weights are 0-dim tensors, so no host sync). `column_coefficients` gives just the
/// per-column multiplier of Zc ([P, 1, d]; the variance part and, on the Gram path, the -diag
/// part), for kernels that fuse the elementwise work; `add_matrix_part` then adds
/// 4 w (G Zc | Zc M). With a `shard`, the gradient of this rank's rows of the N: the columns
/// of all N centered rows sum to zero, so no other row enters but through the statistics.
Tensor column_coefficients(const Tensor& colsq, const Dim& n, bool gram, const Tensor& w_hinge,
                           const Tensor& w_offdiag, const Hinge& hinge);
void add_matrix_part(Tensor& grad, const Tensor& zc, const Tensor& mat, const Tensor& w_offdiag,
                     const Shard* shard = nullptr);
/// The matrix part of d offdiag / d Zc up to its factor 4: G Zc on the Gram path, Zc M (M's
/// diagonal zeroed) on the direct path; [P, n, d] either way. (On the Gram path the rest,
/// -Zc diag(colsq), is in column_coefficients.)
Tensor matrix_product(const Tensor& zc, const Tensor& mat);
Tensor view_gradient(const Tensor& zc, const ViewStats& s, const Tensor& w_hinge,
                     const Tensor& w_offdiag, const Hinge& hinge, const Shard* shard = nullptr);

// ---- VICReg ------------------------------------------------------------------------------

/// The terms from their sums (the scale factors of the terms, written once):
///   invariance = sq_diff / (n P d) | (n P),   c(Z) = offdiag / (m^2 d P),  m = n-1 | n,
///   V = (hinge_a + hinge_b) / 2 | sum.  `shape` is [P, n, d].
Tensor invariance_of(const Tensor& sq_diff, const Shape& shape, const Settings& s);
Tensor covariance_of(const Tensor& offdiag, const Shape& shape, const Settings& s);
Tensor variance_of(const Tensor& hinge_a, const Tensor& hinge_b, const Settings& s);
/// (loss, invariance, variance, covariance): the terms and their weighted sum.
std::tuple<Tensor, Tensor, Tensor, Tensor> weighted(Tensor inv, Tensor var, Tensor cov,
                                                    const Settings& s);

/// The fused operators hold both views as one batch of 2P positions, [2P, n, d]: view a's P
/// positions, then view b's. So every per-column statistic, every matrix and every elementwise
/// pass of the math core runs once for both views, as one op (the composite kernels are what
/// CUDA runs, where each op is a kernel launch), and the saved tensors are four, not seven.
/// `pair_half(t, v)` is view v's half of such a batch (a view of it, v = 0 or 1).
Tensor pair_half(const Tensor& t, int v);

/// The centered pair from which the fused forward is assembled (by the composite or the CPU
/// kernel): Zc of both views [2P, n, d], their column sums of squares [2P, 1, d], mean_a -
/// mean_b [P, 1, d] and sum (Za - Zb)^2 (0-dim); colsq and mat (the k x k matrix of each of
/// the 2P positions, as view_stats takes it) may be undefined (then the core computes them).
struct CenteredPair {
  Tensor zc, colsq, mean_diff, sq_diff, mat;
};

/// The saved tensors of the fused forward, in this order (what _vicreg_fused returns after the
/// loss and the terms): Zc [2P, n, d], mean_diff [P, 1, d], colsq [2P, 1, d], and the matrix
/// part of the covariance gradient [2P, n, d] (matrix_product: G Zc or Zc M). Their shapes do
/// not depend on the Gram-or-direct rule, which is a choice of the kernels alone: so the rule
/// is no guard on the batch size under torch.compile and torch.export.
enum Saved { kZc, kMeanDiff, kColsq, kProduct, kNumSaved };

/// What _vicreg_fused returns: the loss, the three terms, then the kNumSaved saved tensors as
/// outputs of their own. (Not one Tensor[]: AOTAutograd's default partitioner would save that
/// list as one value, which PyTorch 2 cannot take.)
using FusedOutputs = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>;
/// The saved tensors of a FusedOutputs, in Saved order.
std::vector<Tensor> saved_of(const FusedOutputs& out);
/// The schema's names of the saved outputs, after the loss and the terms.
extern const char* const kSavedSchema;

FusedOutputs vicreg_forward(CenteredPair pair, const Settings& s);

/// The 0-dim weights of the backward: w_inv on (Za - Zb), w_hinge and w_offdiag per view, or
/// with `stacked`, w_hinge on the hinge of both views as one [2P, n, d] batch (whose mean over
/// 2 P d columns is half the sum of the views' hinges). The output gradients may be undefined
/// (autograd's for outputs that were not used): they count as zero, and cost no op.
struct BackwardWeights {
  Tensor inv, hinge, offdiag;
};
BackwardWeights vicreg_backward_weights(const c10::optional<Tensor>& g_loss,
                                        const c10::optional<Tensor>& g_inv,
                                        const c10::optional<Tensor>& g_var,
                                        const c10::optional<Tensor>& g_cov, const Shape& shape,
                                        const Settings& s, bool stacked = false);

/// (loss, invariance, variance, covariance) from tensor ops on the views, for autograd to
/// differentiate (the fused_backward=False path).
std::tuple<Tensor, Tensor, Tensor, Tensor> vicreg_terms_tensor_ops(const Tensor& z_a,
                                                                   const Tensor& z_b,
                                                                   const Settings& s);
/// Each term of one view or pair alone, from tensor ops (the functional API).
Tensor invariance_term(const Tensor& z_a, const Tensor& z_b, const Settings& s);
Tensor variance_term(const Tensor& z, const Settings& s);
Tensor covariance_term(const Tensor& z, const Settings& s);

// ---- VCReg -------------------------------------------------------------------------------

/// var_coeff * v(X) + cov_coeff / ((N-1)^2 d (d-1)) * offdiag, X the [N, d] samples-by-channels
/// matrix: the penalty from tensor ops (differentiable by autograd), and its gradient in x's
/// layout (compute dtype) as the layer injects it.
Tensor vcreg_penalty(const Tensor& x, const VCRegSettings& s);
Tensor vcreg_gradient(const Tensor& x, const VCRegSettings& s);

}  // namespace vicreg::ops
