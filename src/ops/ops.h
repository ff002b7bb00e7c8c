#pragma once
// The library's operators as C++ calls through the dispatcher, for the fronts, the autograd
// kernels and the tests. Schemas: vicreg_loss.cpp (VICReg) and vcreg.cpp (VCReg).
//
//   vicreg_loss, vicreg_terms   public fronts (CompositeImplicitAutograd): convention + knobs
//   _vicreg_fused               forward: loss, terms, and `saved` (ops::Saved order)
//   _vicreg_fused_backward      the hand-written gradient, [P, n, d] per view, compute dtype
//   _vicreg_fused_backward_     the same, written over the saved list (the gradients replace
//                               zc_a and zc_b; the matrices are overwritten too): what the
//                               autograd kernel calls when the graph is not kept and nothing
//                               else holds the saved tensors, so the backward allocates no
//                               [n, d] buffer (cpu/kernels.cpp)
//   vcreg, _vcreg_backward      the VCReg layer and its injected gradient
//   _vicreg_fused_composite, _vicreg_fused_backward_composite, _vicreg_fused_backward_composite_
//                               test-only: the composite kernels of the fused ops under
//                               their own names, so that tests run them on CPU tensors too
//
// Kernels: CompositeExplicitAutograd (ATen ops: every backend, meta included) for the fused
// ops and VCReg; CPU (cpu/kernels.cpp, hand-written passes) for the fused ops; Autograd
// (autograd/kernels.cpp) for the fused ops and VCReg.

#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <tuple>
#include <vector>

namespace vicreg::ops {

using at::Tensor;

using FusedOutputs = std::tuple<Tensor, Tensor, Tensor, Tensor, std::vector<Tensor>>;
// (z_a, z_b, inv_coeff, var_coeff, cov_coeff, gamma, eps, invariance, variance_form,
//  variance_views, covariance_norm)
using FusedFn = FusedOutputs(const Tensor&, const Tensor&, double, double, double, double, double,
                             c10::string_view, c10::string_view, c10::string_view,
                             c10::string_view);
// (grad_loss, grad_invariance, grad_variance, grad_covariance, saved, then as FusedFn)
using FusedBackwardFn = std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&,
                                                   const Tensor&, at::TensorList, double, double,
                                                   double, double, double, c10::string_view,
                                                   c10::string_view, c10::string_view,
                                                   c10::string_view);
// The in-place backward: as FusedBackwardFn, the gradients left in saved[kZcA], saved[kZcB].
using FusedBackwardInplaceFn = void(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                    at::TensorList, double, double, double, double, double,
                                    c10::string_view, c10::string_view, c10::string_view,
                                    c10::string_view);
// (grad, x, var_coeff, cov_coeff, gamma, eps, channel_dim, variance_form)
using VCRegBackwardFn = Tensor(const Tensor&, const Tensor&, double, double, double, double,
                               int64_t, c10::string_view);

const c10::TypedOperatorHandle<FusedFn>& fused_op();
const c10::TypedOperatorHandle<FusedBackwardFn>& fused_backward_op();
const c10::TypedOperatorHandle<FusedBackwardInplaceFn>& fused_backward_inplace_op();
const c10::TypedOperatorHandle<VCRegBackwardFn>& vcreg_backward_op();

}  // namespace vicreg::ops
