#pragma once
// The settings of the operators, as one value each: `Settings` for VICReg (nine knobs) and
// `VCRegSettings` for the VCReg layer. An operator's schema lists the knobs by name; its
// kernels receive the parsed value, and the autograd Functions keep it as one entry of
// saved_data. Adding a knob touches the struct, `parse`/`args`, the schema string, and where
// it is read from the public options and the fronts' arguments (`of`, `Front::parse`).

#include <ATen/core/ivalue.h>
#include <c10/util/Optional.h>
#include <c10/util/string_view.h>

#include <string>
#include <tuple>

#include "vicreg/options.h"

namespace vicreg::ops {

/// The variance hinge: max(0, gamma - S_j), S_j = sqrt(Var_j + eps) (std) or Var_j (var).
struct Hinge {
  VarianceForm form = VarianceForm::Std;
  double gamma = 1.0;
  double eps = 1e-4;
};

/// The nine settings of the VICReg loss. (Exported for the tests, which call the internal
/// operators with it; this header is not installed.)
struct Settings {
  double inv_coeff = 25.0, var_coeff = 25.0, cov_coeff = 1.0;
  Hinge hinge;
  InvarianceNorm invariance = InvarianceNorm::ElementMean;
  ViewReduction variance_views = ViewReduction::Mean;
  CovarianceNorm covariance_norm = CovarianceNorm::Unbiased;

  /// The knobs as the internal operators' schemas spell them, in `Args` order.
  static const char* const kSchema;
  using Args = std::tuple<double, double, double, double, double, c10::string_view,
                          c10::string_view, c10::string_view, c10::string_view>;
  /// From the schema's arguments; an unknown knob value is a c10::Error that names it.
  static Settings parse(const Args& args);
  /// The schema's arguments (for calls through the dispatcher).
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

  /// The knobs as both VCReg schemas spell them (with the public defaults).
  static const char* const kSchema;
  using Args = std::tuple<double, double, double, double, int64_t, c10::string_view>;
  static VCRegSettings parse(const Args& args);
  Args args() const;
  static VCRegSettings of(const VCRegOptions& o);  // (options.cpp)

  c10::IValue to_ivalue() const;
  static VCRegSettings from_ivalue(const c10::IValue& v);
};

// The knobs' names as the operators spell them ("element_mean", "std", ...), and back.
const char* to_string(InvarianceNorm v);
const char* to_string(VarianceForm v);
const char* to_string(ViewReduction v);
const char* to_string(CovarianceNorm v);
template <typename Knob>
Knob parse_knob(c10::string_view s);

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
