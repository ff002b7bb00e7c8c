#pragma once
// The VICReg loss and the VCReg penalty as functions.
//
// Notation: a view Z is [n, d], n samples as rows; local features
// are [n, P..., d], and each position p has its own statistics over the n samples at p, the
// terms being averaged over positions. Zc = Z - mean over samples, Var_j = sum_i Zc_ij^2/(n-1),
// C = Zc^T Zc / m with m = n-1 (CovarianceNorm::Unbiased) or n (Biased).
//
//   invariance s = mean over n*d of (Za - Zb)^2             (ElementMean)
//                = (1/n) sum_i ||za_i - zb_i||^2             (SampleMean, = d x ElementMean)
//   variance   v(Z) = (1/d) sum_j max(0, gamma - S_j),  S_j = sqrt(Var_j + eps) (Std) | Var_j (Var)
//              V = (v(Za) + v(Zb)) / 2 (ViewReduction::Mean) | v(Za) + v(Zb) (Sum)
//   covariance c(Z) = (1/d) sum_{i != j} C_ij^2,  reported as c(Za) + c(Zb)
//   loss = inv_coeff * s + var_coeff * V + cov_coeff * (c(Za) + c(Zb))
//
// float16/bfloat16 inputs are computed in float32; the loss and terms are then float32
// (a half-precision loss would overflow where the float32 one is finite) and gradients
// come back in the input dtype. float32/float64 results keep the input dtype.

#include <ATen/core/Tensor.h>

#include "vicreg/export.h"
#include "vicreg/options.h"

namespace vicreg {

/// The loss and its three unweighted terms, so that
/// loss == inv_coeff * invariance + var_coeff * variance + cov_coeff * covariance.
struct VICRegTerms {
  at::Tensor loss;
  at::Tensor invariance;  ///< s(Za, Zb)
  at::Tensor variance;    ///< V, combined over the two views as the options say
  at::Tensor covariance;  ///< c(Za) + c(Zb)
};

namespace functional {

/// VICReg loss of two views [n, d] or [n, P..., d]; 0-dim tensor. Goes through the dispatcher
/// (operator vicreg::vicreg_terms), so C++, Python and TorchScript share one path.
VICREG_EXPORT at::Tensor vicreg_loss(const at::Tensor& z_a, const at::Tensor& z_b,
                                     const VICRegLossOptions& options = {});

/// The loss and its unweighted terms, for logging (same path as `vicreg_loss`).
VICREG_EXPORT VICRegTerms vicreg_terms(const at::Tensor& z_a, const at::Tensor& z_b,
                                       const VICRegLossOptions& options = {});

/// s(Za, Zb) as the options' `invariance` says (tensor ops, differentiable by autograd).
VICREG_EXPORT at::Tensor invariance_term(const at::Tensor& z_a, const at::Tensor& z_b,
                                         const VICRegLossOptions& options = {});

/// v(Z) of one view, averaged over positions for local features (tensor ops).
VICREG_EXPORT at::Tensor variance_term(const at::Tensor& z, const VICRegLossOptions& options = {});

/// c(Z) of one view, averaged over positions for local features (tensor ops).
VICREG_EXPORT at::Tensor covariance_term(const at::Tensor& z,
                                         const VICRegLossOptions& options = {});

/// The VCReg penalty of intermediate features x (any layout; `channel_dim` holds the d
/// channels, every other dim counts as a sample, X is centered over the samples):
///   var_coeff * v(X) + cov_coeff * (1 / (d (d-1))) sum_{i != j} C_ij^2,  C with n-1.
/// (For d == 1 the covariance part is 0.) Tensor ops, differentiable by autograd: this is
/// the definition whose gradient the `VCReg` layer injects.
VICREG_EXPORT at::Tensor vcreg_penalty(const at::Tensor& x, const VCRegOptions& options = {});

/// The VCReg layer as a function: returns x (an alias, no copy) and, in the backward pass,
/// adds the gradient of `vcreg_penalty(x, options)` to the incoming gradient.
/// Goes through the operator vicreg::vcreg.
VICREG_EXPORT at::Tensor vcreg(const at::Tensor& x, const VCRegOptions& options = {});

}  // namespace functional
}  // namespace vicreg
