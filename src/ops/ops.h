#pragma once
// The library's operators as C++ calls through the dispatcher, for the fronts, the autograd
// kernels and the tests. Schemas and fronts: vicreg_loss.cpp (VICReg), vcreg.cpp (VCReg);
// kernels: composite/ (ATen ops: every backend, meta included), cpu/ (hand-written passes,
// registered for CPU, where they win over the composite), autograd/ (the Functions).
//
//   vicreg_loss, vicreg_terms   public fronts (CompositeImplicitAutograd): convention + knobs
//   _vicreg_fused               forward: loss, terms, then the saved tensors (ops::Saved order,
//                               both views as one [2P, n, d] batch)
//   _vicreg_fused_backward      the hand-written gradient of both views, [2P, n, d] (view a's
//                               P positions, then b's), compute dtype
//   vcreg, _vcreg_backward      the VCReg layer and its injected gradient

#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <tuple>

#include "ops/core.h"
#include "ops/settings.h"

namespace vicreg::ops {

// The operators' signatures before their settings (ops::Signature<Head, Settings> is the full
// one).
using FusedHead = FusedOutputs(const Tensor& z_a, const Tensor& z_b);
// The output gradients are optional: autograd gives none for an output that was not used.
using OptionalTensor = c10::optional<Tensor>;
using FusedBackwardHead = Tensor(const OptionalTensor& grad_loss,
                                 const OptionalTensor& grad_invariance,
                                 const OptionalTensor& grad_variance,
                                 const OptionalTensor& grad_covariance, at::TensorList saved);
using VCRegHead = Tensor(const Tensor& x);
using VCRegBackwardHead = Tensor(const Tensor& grad, const Tensor& x);

const c10::TypedOperatorHandle<Signature<FusedHead, Settings>>& fused_op();
const c10::TypedOperatorHandle<Signature<FusedBackwardHead, Settings>>& fused_backward_op();
const c10::TypedOperatorHandle<Signature<VCRegBackwardHead, VCRegSettings>>& vcreg_backward_op();

/// The arguments of the public fronts after the two views (the schema's text, defaults written
/// once), and their result.
extern const char* const kFrontArgs;
extern const char* const kTermsResult;

/// What the fronts' arguments say: a convention's settings with the coefficients and any knob
/// given overriding it, and the two switches (a settings type for WithSettings).
struct Front {
  using Knob = c10::optional<c10::string_view>;
  using Args = std::tuple<double, double, double, double, double, c10::string_view, Knob, Knob,
                          Knob, Knob, bool, bool>;
  Settings settings;
  bool fused_backward, check_finite;
  static Front parse(const Args& args);
};

/// What the public operators compute (the process group aside): validation, check_finite, and
/// the fused operator or the tensor-op path.
std::tuple<Tensor, Tensor, Tensor, Tensor> vicreg_terms(const Tensor& z_a, const Tensor& z_b,
                                                        const Settings& s, bool fused_backward,
                                                        bool check_finite);

}  // namespace vicreg::ops
