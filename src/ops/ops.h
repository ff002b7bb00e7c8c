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
//   _vicreg_check_settings,     the fronts' checks of their settings alone, without a tensor
//   _vcreg_check_settings       (for the Python modules' constructors)

#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <string>
#include <tuple>
#include <type_traits>

#include "ops/core.h"
#include "ops/settings.h"

namespace vicreg::ops {

// How a setting is passed to a front: numbers as they are, knobs as optional names.
template <typename T>
using FrontArgOf = std::conditional_t<std::is_enum_v<T>, c10::optional<c10::string_view>, T>;
#define VICREG_FRONT_SETTING_TYPE(name, member) , FrontArgOf<std::decay_t<decltype(settings.member)>>
#define VICREG_FRONT_SWITCH_TYPE(name) , decltype(name)

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

/// The public fronts' arguments after the two views (VICREG_LOSS_ARGUMENTS in order): the
/// settings of a convention, each number and each knob given overriding it (a knob is `str?`,
/// None keeping the convention's), and the fronts' own switches.
struct Front {
  Settings settings;
  c10::string_view convention = "reference";
  bool fused_backward = true;
  bool check_finite = false;

  using Args = TupleOf<void VICREG_LOSS_ARGUMENTS(VICREG_FRONT_SETTING_TYPE,
                                                  VICREG_FRONT_SWITCH_TYPE)>::type;
  /// The schema's text of the arguments, with their defaults (the "reference" convention's).
  static std::string schema();
  static Front parse(const Args& args);
  Args args() const;
  /// The options' settings, every knob given (so the convention is moot), and their switches.
  static Front of(const VICRegLossOptions& o);
};

/// The result of vicreg_terms and of the other terms fronts.
extern const char* const kTermsResult;

/// What the public operators compute (the process group aside): validation, check_finite, and
/// the fused operator or the tensor-op path.
std::tuple<Tensor, Tensor, Tensor, Tensor> vicreg_terms(const Tensor& z_a, const Tensor& z_b,
                                                        const Settings& s, bool fused_backward,
                                                        bool check_finite);

}  // namespace vicreg::ops
