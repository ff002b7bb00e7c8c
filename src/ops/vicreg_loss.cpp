// The VICReg operators: the library's TORCH_LIBRARY with their schemas (defaults written once),
// the public fronts vicreg_loss / vicreg_terms (CompositeImplicitAutograd: they parse the
// convention and call the fused operator or the tensor-op path), and the handles of the
// internal operators. VCReg's schemas are in vcreg.cpp.

#include <torch/library.h>

#include <string>
#include <type_traits>

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

// The settings' checks of the fronts alone, without views: for the Python module's
// constructor, which refuses bad settings with the words of the call.
void check_loss_settings(const Front& f) { checks::loss_settings(kLossName, f.settings); }

using FrontHead = Terms(const Tensor& z_a, const Tensor& z_b);
using LossFrontHead = Tensor(const Tensor& z_a, const Tensor& z_b);

}  // namespace

const char* const kTermsResult =
    "(Tensor loss, Tensor invariance, Tensor variance, Tensor covariance)";

namespace {

// Where each argument sits in Front::Args.
#define VICREG_INDEX(name, member) k_##name,
#define VICREG_SWITCH_INDEX(name) k_##name,
enum FrontIndex { VICREG_LOSS_ARGUMENTS(VICREG_INDEX, VICREG_SWITCH_INDEX) };
#undef VICREG_INDEX
#undef VICREG_SWITCH_INDEX

// A given number replaces the convention's; a given knob replaces it, a None keeps it.
double given(const char*, double, double arg) { return arg; }
template <typename Knob>
Knob given(const char* name, Knob convention, const c10::optional<c10::string_view>& arg) {
  return arg ? parse_knob<Knob>(name, *arg) : convention;
}

double front_arg(double v) { return v; }
template <typename Knob>
c10::optional<c10::string_view> front_arg(Knob v) {
  return c10::string_view(to_string(v));
}

// The schema's text of a number (its default: the reference's) and of a knob (None).
void append(std::string& schema, const std::string& argument) {
  schema += (schema.empty() ? "" : ", ") + argument;
}
template <typename T>
std::string front_argument(const char* name, const T& reference) {
  if constexpr (std::is_enum_v<T>) {
    return std::string("str? ") + name + "=None";
  } else {
    return std::string(schema_type<T>()) + " " + name + "=" + schema_literal(reference);
  }
}

}  // namespace

std::string Front::schema() {
  std::string schema;
  const auto reference = Front::of(VICRegLossOptions());
#define VICREG_SETTING(name, member) append(schema, front_argument(#name, reference.settings.member));
#define VICREG_SWITCH(name)                                                               \
  append(schema, std::string(schema_type<std::decay_t<decltype(reference.name)>>()) + " " + \
                     #name + "=" + schema_literal(reference.name));
  VICREG_LOSS_ARGUMENTS(VICREG_SETTING, VICREG_SWITCH)
#undef VICREG_SETTING
#undef VICREG_SWITCH
  return schema;
}

Front Front::parse(const Args& args) {
  Front f;
  f.convention = std::get<k_convention>(args);
  f.settings = Settings::of(VICRegLossOptions::preset(std::string(f.convention)));
#define VICREG_SETTING(name, member) \
  f.settings.member = given(#name, f.settings.member, std::get<k_##name>(args));
#define VICREG_SWITCH(name) f.name = std::get<k_##name>(args);
  VICREG_LOSS_ARGUMENTS(VICREG_SETTING, VICREG_SWITCH)
#undef VICREG_SETTING
#undef VICREG_SWITCH
  return f;
}

Front::Args Front::args() const {
  Args args;
#define VICREG_SETTING(name, member) std::get<k_##name>(args) = front_arg(settings.member);
#define VICREG_SWITCH(name) std::get<k_##name>(args) = name;
  VICREG_LOSS_ARGUMENTS(VICREG_SETTING, VICREG_SWITCH)
#undef VICREG_SETTING
#undef VICREG_SWITCH
  return args;
}

Front Front::of(const VICRegLossOptions& o) {
  Front f;
  f.settings = Settings::of(o);
  f.fused_backward = o.backward() == Backward::Fused;
  f.check_finite = o.check_finite();
  return f;
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
  const std::string front = "Tensor z_a, Tensor z_b, " + Front::schema();
  const std::string settings = ops::Settings::schema();
  m.def(("vicreg_loss(" + front + ") -> Tensor").c_str(),
        TORCH_FN((WithSettings<ops::vicreg_loss_front, ops::LossFrontHead, Front>::call)));
  m.def(("vicreg_terms(" + front + ") -> " + ops::kTermsResult).c_str(),
        TORCH_FN((WithSettings<ops::vicreg_terms_front, ops::FrontHead, Front>::call)));
  m.def(("_vicreg_check_settings(" + Front::schema() + ") -> ()").c_str(),
        TORCH_FN((WithSettings<ops::check_loss_settings, void(), Front>::call)));
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
