// The VICReg operators: the library's TORCH_LIBRARY with their schemas (defaults written once),
// the public fronts vicreg_loss / vicreg_terms (CompositeImplicitAutograd: they parse the
// convention and call the fused operator or the tensor-op path), and the handles of the
// internal operators. VCReg's schemas are in vcreg.cpp.

#include <torch/library.h>

#include <string>

#include "ops/checks.h"
#include "ops/ops.h"

namespace vicreg {
namespace ops {
namespace {

using Terms = std::tuple<Tensor, Tensor, Tensor, Tensor>;
constexpr const char* kLossName = "vicreg_loss";

Terms vicreg_terms_front(const Tensor& z_a, const Tensor& z_b, const Front& f) {
  return vicreg_terms(z_a, z_b, f.settings, f.fused_backward, f.check_finite);
}

Tensor vicreg_loss_front(const Tensor& z_a, const Tensor& z_b, const Front& f) {
  return std::get<0>(vicreg_terms_front(z_a, z_b, f));
}

using FrontHead = Terms(const Tensor& z_a, const Tensor& z_b);
using LossFrontHead = Tensor(const Tensor& z_a, const Tensor& z_b);

}  // namespace

const char* const kFrontArgs =
    "float inv_coeff=25.0, float var_coeff=25.0, float cov_coeff=1.0, float gamma=1.0, "
    "float eps=0.0001, str convention=\"reference\", str? invariance=None, "
    "str? variance_form=None, str? variance_views=None, str? covariance_norm=None, "
    "bool fused_backward=True, bool check_finite=False";
const char* const kTermsResult =
    "(Tensor loss, Tensor invariance, Tensor variance, Tensor covariance)";

Front Front::parse(const Args& args) {
  const auto& [c1, c2, c3, target, offset, convention, k1, k2, k3, k4, fused, finite] = args;
  // The convention's knobs, as its preset sets them, unless given.
  const auto [p1, p2, p3, p4, p5, preset1, preset2, preset3, preset4] =
      Settings::of(VICRegLossOptions::preset(std::string(convention))).args();
  return {Settings::parse({c1, c2, c3, target, offset, k1.value_or(preset1),
                           k2.value_or(preset2), k3.value_or(preset3), k4.value_or(preset4)}),
          fused, finite};
}

Terms vicreg_terms(const Tensor& z_a, const Tensor& z_b, const Settings& s, bool fused_backward,
                   bool check_finite) {
  checks::loss_call(kLossName, z_a, z_b, s);
  if (check_finite) {
    checks::finite_input(kLossName, "z_a", z_a);
    checks::finite_input(kLossName, "z_b", z_b);
  }
  Terms t;
  if (fused_backward) {
    const auto out = call_with(fused_op(), s, z_a, z_b);
    t = {std::get<0>(out), std::get<1>(out), std::get<2>(out), std::get<3>(out)};
  } else {
    t = vicreg_terms_tensor_ops(z_a, z_b, s);
  }
  if (check_finite) checks::finite_result(kLossName, std::get<0>(t));
  return t;
}

const c10::TypedOperatorHandle<Signature<FusedHead, Settings>>& fused_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("vicreg::_vicreg_fused", "")
                             .typed<Signature<FusedHead, Settings>>();
  return op;
}

const c10::TypedOperatorHandle<Signature<FusedBackwardHead, Settings>>& fused_backward_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("vicreg::_vicreg_fused_backward", "")
                             .typed<Signature<FusedBackwardHead, Settings>>();
  return op;
}

}  // namespace ops

TORCH_LIBRARY(vicreg, m) {
  using ops::Front;
  using ops::WithSettings;
  const std::string front = std::string("Tensor z_a, Tensor z_b, ") + ops::kFrontArgs;
  const std::string settings = ops::Settings::kSchema;
  m.def(("vicreg_loss(" + front + ") -> Tensor").c_str(),
        TORCH_FN((WithSettings<ops::vicreg_loss_front, ops::LossFrontHead, Front>::call)));
  m.def(("vicreg_terms(" + front + ") -> " + ops::kTermsResult).c_str(),
        TORCH_FN((WithSettings<ops::vicreg_terms_front, ops::FrontHead, Front>::call)));
  const std::string grads =
      "Tensor? grad_loss, Tensor? grad_invariance, Tensor? grad_variance, "
      "Tensor? grad_covariance, ";
  m.def(("_vicreg_fused(Tensor z_a, Tensor z_b, " + settings +
         ") -> (Tensor loss, Tensor invariance, Tensor variance, Tensor covariance, " +
         ops::kSavedSchema + ")").c_str());
  m.def(("_vicreg_fused_backward(" + grads + "Tensor[] saved, " + settings + ") -> Tensor")
            .c_str());
}

}  // namespace vicreg
