// The composite kernels of the fused VICReg operators, registered for
// CompositeExplicitAutograd: what CUDA, meta (and so FakeTensor, torch.compile and
// torch.export) and every other backend run. The CPU kernels (cpu/) win for CPU tensors.

#include <ATen/ATen.h>
#include <torch/library.h>

#include "checks.h"
#include "ops/composite/kernels.h"

namespace vicreg::ops::composite {

FusedOutputs vicreg_fused(const Tensor& z_a, const Tensor& z_b, const Settings& s) {
  checks::loss_call("vicreg_loss", z_a, z_b, s);
  const auto za = as_positions(to_compute_dtype(z_a));
  const auto zb = as_positions(to_compute_dtype(z_b));
  auto a = center(za), b = center(zb);
  // (hi_a - hi_b) is exact when the means are close, so the difference keeps its digits.
  CenteredPair pair{a.zc, b.zc, {}, {}, (a.mean_hi - b.mean_hi) + (a.mean_lo - b.mean_lo),
                    sum_of_squares(za - zb)};
  return vicreg_forward(std::move(pair), s);
}

std::tuple<Tensor, Tensor> vicreg_fused_backward(const Tensor& g_loss, const Tensor& g_inv,
                                                 const Tensor& g_var, const Tensor& g_cov,
                                                 at::TensorList saved, const Settings& s) {
  checks::fused_backward_args(g_loss, g_inv, g_var, g_cov, saved);
  const auto& zc_a = saved[kZcA];
  const auto& zc_b = saved[kZcB];
  const auto w = vicreg_backward_weights(g_loss, g_inv, g_var, g_cov, shape_of(zc_a), s);
  const auto diff = (zc_a - zc_b).add_(saved[kMeanDiff].unsqueeze(1));
  auto ga = view_gradient(zc_a, {saved[kColsqA], saved[kMatA], {}, {}}, w.hinge, w.offdiag,
                          s.hinge);
  auto gb = view_gradient(zc_b, {saved[kColsqB], saved[kMatB], {}, {}}, w.hinge, w.offdiag,
                          s.hinge);
  ga.addcmul_(diff, w.inv);
  gb.addcmul_(diff, w.inv.neg());
  return {ga, gb};
}

// In place, composite: the out-of-place kernel, then a copy into the saved views. (It saves no
// memory; the CPU kernel is the one that computes in place.)
void vicreg_fused_backward_(const Tensor& g_loss, const Tensor& g_inv, const Tensor& g_var,
                            const Tensor& g_cov, at::TensorList saved, const Settings& s) {
  const auto [ga, gb] = vicreg_fused_backward(g_loss, g_inv, g_var, g_cov, saved, s);
  saved[kZcA].copy_(ga);
  saved[kZcB].copy_(gb);
}

TORCH_LIBRARY_IMPL(vicreg, CompositeExplicitAutograd, m) {
  m.impl("_vicreg_fused", TORCH_FN((WithSettings<vicreg_fused, FusedHead, Settings>::call)));
  m.impl("_vicreg_fused_backward",
         TORCH_FN((WithSettings<vicreg_fused_backward, FusedBackwardHead, Settings>::call)));
  m.impl("_vicreg_fused_backward_", TORCH_FN((WithSettings<vicreg_fused_backward_,
                                                           FusedBackwardInplaceHead,
                                                           Settings>::call)));
}

}  // namespace vicreg::ops::composite
