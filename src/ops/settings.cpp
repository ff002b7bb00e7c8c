#include "ops/settings.h"

#include <ATen/core/custom_class.h>
#include <c10/util/Exception.h>

namespace vicreg::ops {

const char* const Settings::kSchema =
    "float inv_coeff, float var_coeff, float cov_coeff, float gamma, float eps, str invariance, "
    "str variance_form, str variance_views, str covariance_norm";

const char* const VCRegSettings::kSchema =
    "float var_coeff=1.0, float cov_coeff=1.0, float gamma=1.0, float eps=0.0001, "
    "int channel_dim=-1, str variance_form=\"std\"";

namespace {

// Each knob's values and their names, in one table per knob.
template <typename Knob>
struct Names;
template <>
struct Names<InvarianceNorm> {
  static constexpr const char* knob = "invariance";
  static constexpr std::pair<InvarianceNorm, const char*> values[] = {
      {InvarianceNorm::ElementMean, "element_mean"}, {InvarianceNorm::SampleMean, "sample_mean"}};
};
template <>
struct Names<VarianceForm> {
  static constexpr const char* knob = "variance_form";
  static constexpr std::pair<VarianceForm, const char*> values[] = {{VarianceForm::Std, "std"},
                                                                     {VarianceForm::Var, "var"}};
};
template <>
struct Names<ViewReduction> {
  static constexpr const char* knob = "variance_views";
  static constexpr std::pair<ViewReduction, const char*> values[] = {
      {ViewReduction::Mean, "mean"}, {ViewReduction::Sum, "sum"}};
};
template <>
struct Names<CovarianceNorm> {
  static constexpr const char* knob = "covariance_norm";
  static constexpr std::pair<CovarianceNorm, const char*> values[] = {
      {CovarianceNorm::Unbiased, "unbiased"}, {CovarianceNorm::Biased, "biased"}};
};

template <typename Knob>
const char* name_of(Knob v) {
  for (const auto& [value, name] : Names<Knob>::values) {
    if (value == v) return name;
  }
  return "?";
}

// Keeps a settings value in an IValue (autograd's saved_data), as one entry.
template <typename S>
struct Capsule : torch::CustomClassHolder {
  explicit Capsule(S s) : settings(std::move(s)) {}
  S settings;
};

template <typename S>
c10::IValue capsule_of(const S& s) {
  return c10::IValue::make_capsule(c10::make_intrusive<Capsule<S>>(s));
}

template <typename S>
S from_capsule(const c10::IValue& v) {
  return c10::static_intrusive_pointer_cast<Capsule<S>>(v.toCapsule())->settings;
}

}  // namespace

const char* to_string(InvarianceNorm v) { return name_of(v); }
const char* to_string(VarianceForm v) { return name_of(v); }
const char* to_string(ViewReduction v) { return name_of(v); }
const char* to_string(CovarianceNorm v) { return name_of(v); }

template <typename Knob>
Knob parse_knob(c10::string_view s) {
  std::string expected;
  for (const auto& [value, name] : Names<Knob>::values) {
    if (s == name) return value;
    expected += (expected.empty() ? "\"" : " or \"") + std::string(name) + "\"";
  }
  TORCH_CHECK(false, "vicreg: unknown ", Names<Knob>::knob, " '", std::string(s),
              "'; expected ", expected);
}
template InvarianceNorm parse_knob<InvarianceNorm>(c10::string_view);
template VarianceForm parse_knob<VarianceForm>(c10::string_view);
template ViewReduction parse_knob<ViewReduction>(c10::string_view);
template CovarianceNorm parse_knob<CovarianceNorm>(c10::string_view);

Settings Settings::parse(const Args& args) {
  // (c1..c3 are the coefficients, target and offset the hinge's gamma and eps.) The knobs
  // are parsed in schema order, so that of two bad ones the first is reported.
  const auto& [c1, c2, c3, target, offset, invariance_name, form, views, norm] = args;
  const auto invariance_knob = parse_knob<InvarianceNorm>(invariance_name);
  const auto form_knob = parse_knob<VarianceForm>(form);
  const auto views_knob = parse_knob<ViewReduction>(views);
  const auto norm_knob = parse_knob<CovarianceNorm>(norm);
  return {c1, c2, c3, {form_knob, target, offset}, invariance_knob, views_knob, norm_knob};
}

Settings::Args Settings::args() const {
  return {inv_coeff,  var_coeff,          cov_coeff,
          hinge.gamma, hinge.eps,         to_string(invariance),
          to_string(hinge.form), to_string(variance_views), to_string(covariance_norm)};
}

c10::IValue Settings::to_ivalue() const { return capsule_of(*this); }
Settings Settings::from_ivalue(const c10::IValue& v) { return from_capsule<Settings>(v); }

VCRegSettings VCRegSettings::parse(const Args& args) {
  const auto& [c1, c2, target, offset, dim, form] = args;
  return {c1, c2, {parse_knob<VarianceForm>(form), target, offset}, dim};
}

VCRegSettings::Args VCRegSettings::args() const {
  return {var_coeff, cov_coeff, hinge.gamma, hinge.eps, channel_dim, to_string(hinge.form)};
}

c10::IValue VCRegSettings::to_ivalue() const { return capsule_of(*this); }
VCRegSettings VCRegSettings::from_ivalue(const c10::IValue& v) {
  return from_capsule<VCRegSettings>(v);
}

}  // namespace vicreg::ops
