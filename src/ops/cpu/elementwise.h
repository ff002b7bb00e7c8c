#pragma once
// CPU kernels for the elementwise work of the fused VICReg path: each makes one or two passes
// over the data where the ATen composition makes several and allocates temporaries (on a
// 2-core machine at n << d that work, not the GEMMs, bounds the fused path).

#include <ATen/core/Tensor.h>

namespace vicreg::cpu {

/// Both views centered, for [P, n, d] inputs whose last dim has stride 1 (float or double).
struct CenteredPair {
  at::Tensor zc_a, zc_b;        ///< [P, n, d] contiguous, Z - column means over n
  at::Tensor colsq_a, colsq_b;  ///< [P, d] sum_i Zc_ij^2
  at::Tensor sq_diff;           ///< 0-dim, sum (a - b)^2 over all entries
};

/// Two passes over a and b (column sums, then centering), accumulating in double; the result
/// does not depend on the number of threads.
CenteredPair center_pair(const at::Tensor& a3, const at::Tensor& b3);

/// out[p, i, j] = zc[p, i, j] * coef[p, j] + w * (a[p, i, j] - b[p, i, j]), one pass.
/// zc contiguous [P, n, d]; coef [P, d]; a3, b3 [P, n, d] with last-dim stride 1.
at::Tensor combine_gradient(const at::Tensor& zc, const at::Tensor& coef, const at::Tensor& a3,
                            const at::Tensor& b3, double w);

}  // namespace vicreg::cpu
