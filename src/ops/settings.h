#pragma once
// The settings of the operators, as one value each: `Settings` for the VICReg loss and
// `VCRegSettings` for the VCReg layer. Their tables below are the one list of the settings:
// the operators' schemas, the parsing of their arguments, the public options' reading, the
// printing and the scripted module's attributes all iterate over them. A new setting is a field
// here and a row in its table (an enum also a `Names` row); the public option that feeds it
// is a TORCH_ARG of the same name in vicreg/options.h. What else it touches: src/ops/README.md.

#include <ATen/core/ivalue.h>
#include <c10/util/Exception.h>
#include <c10/util/Optional.h>
#include <c10/util/string_view.h>

#include <cstdint>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "vicreg/options.h"

namespace vicreg::ops {

/// The variance hinge: max(0, gamma - S_j), S_j = sqrt(Var_j + eps) (std) or Var_j (var).
struct Hinge {
  VarianceForm form = VarianceForm::Std;
  double gamma = 1.0;
  double eps = 1e-4;
};

// The tables: X(name, member) per setting, in the order of the operators' arguments. `name` is
// the schema's argument and the public option (VICRegLossOptions::name()), `member` where the
// settings value keeps it. The public operators take the loss's settings in this order too,
// with their own arguments (SWITCH rows) in between: a new setting goes last, because scripted
// modules saved by earlier releases pass those arguments by position.
#define VICREG_LOSS_ARGUMENTS(X, SWITCH)          \
  X(inv_coeff, inv_coeff)                         \
  X(var_coeff, var_coeff)                         \
  X(cov_coeff, cov_coeff)                         \
  X(gamma, hinge.gamma)                           \
  X(eps, hinge.eps)                               \
  SWITCH(convention)                              \
  X(invariance, invariance)                       \
  X(variance_form, hinge.form)                    \
  X(variance_views, variance_views)               \
  X(covariance_norm, covariance_norm)             \
  SWITCH(fused_backward)                          \
  SWITCH(check_finite)
#define VICREG_NO_SWITCH(name)
#define VICREG_LOSS_SETTINGS(X) VICREG_LOSS_ARGUMENTS(X, VICREG_NO_SWITCH)

#define VCREG_SETTINGS(X)      \
  X(var_coeff, var_coeff)      \
  X(cov_coeff, cov_coeff)      \
  X(gamma, hinge.gamma)        \
  X(eps, hinge.eps)            \
  X(channel_dim, channel_dim)  \
  X(variance_form, hinge.form)

/// Each enum setting's values as the operators spell them.
template <typename Knob>
struct Names;
template <>
struct Names<InvarianceNorm> {
  static constexpr std::pair<InvarianceNorm, const char*> values[] = {
      {InvarianceNorm::ElementMean, "element_mean"}, {InvarianceNorm::SampleMean, "sample_mean"}};
};
template <>
struct Names<VarianceForm> {
  static constexpr std::pair<VarianceForm, const char*> values[] = {{VarianceForm::Std, "std"},
                                                                     {VarianceForm::Var, "var"}};
};
template <>
struct Names<ViewReduction> {
  static constexpr std::pair<ViewReduction, const char*> values[] = {
      {ViewReduction::Mean, "mean"}, {ViewReduction::Sum, "sum"}};
};
template <>
struct Names<CovarianceNorm> {
  static constexpr std::pair<CovarianceNorm, const char*> values[] = {
      {CovarianceNorm::Unbiased, "unbiased"}, {CovarianceNorm::Biased, "biased"}};
};

/// An enum setting's name ("element_mean", "std", ...).
template <typename Knob>
const char* to_string(Knob v) {
  for (const auto& [value, name] : Names<Knob>::values) {
    if (value == v) return name;
  }
  return "?";
}
/// The value of that name; anything else is a c10::Error naming the setting and the choices.
template <typename Knob>
Knob parse_knob(const char* setting, c10::string_view s) {
  std::string expected;
  for (const auto& [value, name] : Names<Knob>::values) {
    if (s == name) return value;
    expected += (expected.empty() ? "\"" : " or \"") + std::string(name) + "\"";
  }
  TORCH_CHECK(false, "vicreg: unknown ", setting, " '", std::string(s), "'; expected ", expected);
}

/// How a setting of type T is passed to an operator: numbers as they are, enums by name.
template <typename T>
using ArgOf = std::conditional_t<std::is_enum_v<T>, c10::string_view, T>;
template <typename T>
ArgOf<T> to_arg(const T& v) {
  if constexpr (std::is_enum_v<T>) {
    return to_string(v);
  } else {
    return v;
  }
}
template <typename T>
T from_arg(const char* setting, const ArgOf<T>& a) {
  if constexpr (std::is_enum_v<T>) {
    return parse_knob<T>(setting, a);
  } else {
    return a;
  }
}

/// The schema's type of a setting or argument of type T ("float", "int", "bool", "str").
template <typename T>
const char* schema_type() {
  if constexpr (std::is_same_v<T, double>) {
    return "float";
  } else if constexpr (std::is_same_v<T, int64_t>) {
    return "int";
  } else if constexpr (std::is_same_v<T, bool>) {
    return "bool";
  } else {
    static_assert(std::is_enum_v<T> || std::is_same_v<T, c10::string_view>);
    return "str";
  }
}
/// A value as a schema writes it as a default ("25.0", "-1", "True", "\"std\"").
std::string schema_literal(double v);
std::string schema_literal(int64_t v);
std::string schema_literal(bool v);
std::string schema_literal(c10::string_view v);
template <typename Knob, typename = std::enable_if_t<std::is_enum_v<Knob>>>
std::string schema_literal(Knob v) {
  return schema_literal(c10::string_view(to_string(v)));
}

// The settings as an operator's arguments: Args is the tuple of ArgOf<T> over a table's rows,
// parse reads it (row by row, so that of two bad values the first is reported) and args()
// writes it; schema() is the schema's text of those arguments.
template <typename... T>
struct TupleOf;
template <typename... T>
struct TupleOf<void, T...> {  // (void: the first of the rows' ", T"s)
  using type = std::tuple<T...>;
};
#define VICREG_MEMBER_TYPE(name, member) , ArgOf<std::decay_t<decltype(member)>>

/// The settings of the VICReg loss.
struct Settings {
  double inv_coeff = 25.0, var_coeff = 25.0, cov_coeff = 1.0;
  Hinge hinge;
  InvarianceNorm invariance = InvarianceNorm::ElementMean;
  ViewReduction variance_views = ViewReduction::Mean;
  CovarianceNorm covariance_norm = CovarianceNorm::Unbiased;

  using Args = TupleOf<void VICREG_LOSS_SETTINGS(VICREG_MEMBER_TYPE)>::type;
  /// The internal operators' settings arguments (no defaults: the fronts hold those).
  static std::string schema();
  static Settings parse(const Args& args);
  Args args() const;
  static Settings of(const VICRegLossOptions& o);  // (options.cpp)

  /// One saved_data entry (a capsule), and back.
  c10::IValue to_ivalue() const;
  static Settings from_ivalue(const c10::IValue& v);
};

/// The settings of the VCReg layer.
struct VCRegSettings {
  double var_coeff = 1.0, cov_coeff = 1.0;
  Hinge hinge;
  int64_t channel_dim = -1;

  using Args = TupleOf<void VCREG_SETTINGS(VICREG_MEMBER_TYPE)>::type;
  /// Both VCReg operators' settings arguments, with the public defaults (VCRegOptions()).
  static std::string schema();
  static VCRegSettings parse(const Args& args);
  Args args() const;
  static VCRegSettings of(const VCRegOptions& o);  // (options.cpp)

  c10::IValue to_ivalue() const;
  static VCRegSettings from_ivalue(const c10::IValue& v);
};

// An operator's C++ signature: its leading arguments `Head`, then the settings S as the
// schema spells them (S::Args).
template <typename Head, typename Tuple>
struct AppendArgs;
template <typename R, typename... Head, typename... Knobs>
struct AppendArgs<R(Head...), std::tuple<Knobs...>> {
  using type = R(Head..., Knobs...);
};
template <typename Head, typename S>
using Signature = typename AppendArgs<Head, typename S::Args>::type;

// A kernel `R kernel(Head..., const S&)` as the dispatcher calls it (Signature<Head, S>):
// register `WithSettings<kernel, Head, S>::call`.
template <auto Kernel, typename Head, typename S, typename Tuple = typename S::Args>
struct WithSettings;
template <auto Kernel, typename R, typename... Head, typename S, typename... Knobs>
struct WithSettings<Kernel, R(Head...), S, std::tuple<Knobs...>> {
  static R call(Head... head, Knobs... knobs) {
    return Kernel(head..., S::parse(typename S::Args(knobs...)));
  }
};

// Calls a typed operator handle with the leading arguments and then the settings.
template <typename Op, typename S, typename... Head>
decltype(auto) call_with(const Op& op, const S& s, Head&&... head) {
  return std::apply([&](auto... knobs) { return op.call(head..., knobs...); }, s.args());
}

}  // namespace vicreg::ops
