// The composite kernels of the fused VICReg operators, registered for
// CompositeExplicitAutograd: what CUDA, meta (and so FakeTensor, torch.compile and
// torch.export) and every other backend run. The CPU kernels (cpu/) win for CPU tensors.

#include <ATen/ATen.h>
#include <torch/library.h>

#include "ops/checks.h"
#include "ops/composite/kernels.h"

namespace vicreg::ops::composite {

// Both views as one [2P, n, d] batch, so that each step below is one op for both (on CUDA,
// one kernel launch). The mean difference of the views comes from Za - Zb, which the
// invariance needs anyway: exact where the views are close, whatever their common offset.
FusedOutputs vicreg_fused(const Tensor& z_a, const Tensor& z_b, const Settings& s) {
  checks::loss_call("vicreg_loss", z_a, z_b, s);
  const auto a = to_compute_dtype(z_a), b = to_compute_dtype(z_b);
  const auto n = size_of(a, 0), d = size_of(a, -1);
  Dim P = 1;
  for (int64_t i = 1; i + 1 < a.dim(); ++i) P = P * size_of(a, i);
  // [n, P..., d] -> [2P, n, d], contiguous: one copy of both views.
  const auto both = a.dim() == 2
                        ? view_to(at::cat({a, b}), {2, n, d})
                        : at::cat({as_positions(a), as_positions(b)});
  const auto diff = a - b;
  CenteredPair pair{center(both), {}, view_to(diff.mean(0, /*keepdim=*/true), {P, 1, d}),
                    sum_of_squares(diff), {}};
  return vicreg_forward(std::move(pair), s);
}

// grad = Zc diag(coef) + 4 w_offdiag product + the invariance's +-w_inv (Za - Zb), with
// Za - Zb = (Zc_a - Zc_b) + mean_diff taken once, exactly where the views are close, and the
// sum starting from [Za - Zb; Zb - Za] w_inv, so that no other op needs one view alone.
Tensor vicreg_fused_backward(const OptionalTensor& g_loss, const OptionalTensor& g_inv,
                             const OptionalTensor& g_var, const OptionalTensor& g_cov,
                             at::TensorList saved, const Settings& s) {
  checks::fused_backward_args(g_loss, g_inv, g_var, g_cov, saved);
  const auto& zc = saved[kZc];
  const auto n = size_of(zc, 1), d = size_of(zc, 2);
  const Shape shape{size_of(zc, 0) / 2, n, d};
  const auto w = vicreg_backward_weights(g_loss, g_inv, g_var, g_cov, shape, s, /*stacked=*/true);
  const auto coef =
      column_coefficients(saved[kColsq], n, use_gram(n, d), w.hinge, w.offdiag, s.hinge);
  const auto diff = at::sub(pair_half(zc, 0), pair_half(zc, 1)).add_(saved[kMeanDiff]);
  return at::cat({diff, diff.neg()})
      .mul_(w.inv)
      .addcmul_(zc, coef)
      .addcmul_(saved[kProduct], w.offdiag * 4.0);
}

TORCH_LIBRARY_IMPL(vicreg, CompositeExplicitAutograd, m) {
  m.impl("_vicreg_fused", TORCH_FN((WithSettings<vicreg_fused, FusedHead, Settings>::call)));
  m.impl("_vicreg_fused_backward",
         TORCH_FN((WithSettings<vicreg_fused_backward, FusedBackwardHead, Settings>::call)));
}

}  // namespace vicreg::ops::composite
