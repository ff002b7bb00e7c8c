#pragma once
// Options of the VICReg loss and of the VCReg layer. The math these knobs select is written
// once, in functional.h next to the functions that compute it.

#include <torch/arg.h>

#include <cstdint>
#include <memory>
#include <string>

#include "vicreg/export.h"

namespace vicreg {

namespace distributed {
class Group;  // vicreg/distributed.h
}

/// How the invariance term s(Za, Zb) is normalized.
enum class InvarianceNorm {
  ElementMean,  ///< mean over all n*d entries of (Za - Zb)^2 (reference code, lightly, solo-learn)
  SampleMean,   ///< (1/n) sum_i ||za_i - zb_i||^2, i.e. d x ElementMean (paper)
};

/// What the variance hinge acts on.
enum class VarianceForm {
  Std,  ///< S_j = sqrt(Var_j + eps) (paper and every public code)
  Var,  ///< S_j = Var_j (seed article; same active set when gamma = 1, another gradient)
};

/// How the variance terms of the two views are combined into V.
enum class ViewReduction {
  Mean,  ///< V = (v(Za) + v(Zb)) / 2 (reference code, lightly)
  Sum,   ///< V = v(Za) + v(Zb) (paper, solo-learn)
};

/// The denominator of the covariance matrix C used by the covariance term.
/// (The variance term always uses the unbiased n-1, as torch.var does in every public code.)
enum class CovarianceNorm {
  Unbiased,  ///< C = Zc^T Zc / (n - 1)
  Biased,    ///< C = Zc^T Zc / n
};

/// Which backward computes the gradients.
enum class Backward {
  Fused,     ///< hand-written torch::autograd::Function (Gram path when n < d); the default
  Autograd,  ///< autograd over the tensor-op forward (the reference formulation)
};

/// Options of `VICRegLoss` and `functional::vicreg_loss`.
/// Example: `VICRegLoss loss(VICRegLossOptions::paper().cov_coeff(2.0));`
struct VICREG_EXPORT VICRegLossOptions {
  /// facebookresearch/vicreg main_vicreg.py and lightly's VICRegLoss (the default).
  static VICRegLossOptions reference();
  /// The VICReg paper, eqs. 1-6: sample-mean invariance, V summed over views.
  static VICRegLossOptions paper();
  /// The seed article: sample-mean invariance, variance hinge on Var_j, V summed.
  static VICRegLossOptions article();
  /// One of "reference", "paper", "article"; anything else is a c10::Error.
  static VICRegLossOptions preset(const std::string& convention);

  /// Weight of the invariance term (lambda).
  TORCH_ARG(double, inv_coeff) = 25.0;
  /// Weight of the variance term (mu).
  TORCH_ARG(double, var_coeff) = 25.0;
  /// Weight of the covariance term (nu).
  TORCH_ARG(double, cov_coeff) = 1.0;
  /// Target of the variance hinge; must be > 0.
  TORCH_ARG(double, gamma) = 1.0;
  /// Added to Var_j under the square root in the std form; must be >= 0.
  TORCH_ARG(double, eps) = 1e-4;
  TORCH_ARG(InvarianceNorm, invariance) = InvarianceNorm::ElementMean;
  TORCH_ARG(VarianceForm, variance_form) = VarianceForm::Std;
  TORCH_ARG(ViewReduction, variance_views) = ViewReduction::Mean;
  TORCH_ARG(CovarianceNorm, covariance_norm) = CovarianceNorm::Unbiased;
  TORCH_ARG(Backward, backward) = Backward::Fused;
  /// Raise a c10::Error when an input or the result is NaN/Inf (one host sync per call).
  /// Off by default: NaN/Inf then propagate into the loss without a sync.
  TORCH_ARG(bool, check_finite) = false;
  /// Optional process group (vicreg/distributed.h): the terms are computed on the rows gathered
  /// from every rank (ranks may hold different n, even 0; the gathered batch needs n >= 2),
  /// normalized by the gathered size, so every rank's loss equals the single-process loss on
  /// the whole batch, and the gradients of a rank's rows, averaged over ranks as DDP does,
  /// equal the single-process gradients.
  /// (The invariance of the gathered pairs is the row-weighted mean of the ranks' local pair
  /// terms.) Null: single process.
  TORCH_ARG(std::shared_ptr<distributed::Group>, process_group) = nullptr;
  /// With a process_group and the fused backward: each rank computes only its own rows' share
  /// of the gathered loss (true), from statistics summed over the ranks, and its backward sends
  /// four numbers; or every rank computes the whole gathered batch (false, as
  /// facebookresearch/vicreg), and the gather's backward all-reduces the [N, d] gradient. The
  /// same loss and gradients either way. (Backward::Autograd always differentiates the gathered
  /// batch.)
  TORCH_ARG(bool, sharded) = true;
};

/// Options of the `VCReg` layer and of `functional::vcreg_penalty`.
/// Example: `VCReg layer(VCRegOptions().var_coeff(0.16).cov_coeff(0.01).channel_dim(1));`
struct VICREG_EXPORT VCRegOptions {
  /// alpha, the weight of v(X). Default 1 (see README: the VCReg paper tunes it per setting).
  TORCH_ARG(double, var_coeff) = 1.0;
  /// beta, the weight of the normalized off-diagonal covariance. Default 1.
  TORCH_ARG(double, cov_coeff) = 1.0;
  /// Target of the variance hinge; must be > 0.
  TORCH_ARG(double, gamma) = 1.0;
  /// Added to Var_j under the square root in the std form; must be >= 0.
  TORCH_ARG(double, eps) = 1e-4;
  TORCH_ARG(VarianceForm, variance_form) = VarianceForm::Std;
  /// The dim that holds the channels (features); every other dim counts as samples.
  /// -1 (last) by default; 1 for NCHW convolution maps.
  TORCH_ARG(int64_t, channel_dim) = -1;
  /// Also inject the gradient when the module is in eval mode (by default eval is a pure identity).
  TORCH_ARG(bool, active_in_eval) = false;
};

/// The preset name of a convention, for printing ("reference", "paper", "article" or "custom").
VICREG_EXPORT std::string convention_name(const VICRegLossOptions& options);

}  // namespace vicreg
