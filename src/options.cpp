// The presets of the loss options, and the operators' settings from the options.

#include <c10/util/Exception.h>

#include "ops/settings.h"
#include "vicreg/options.h"

namespace vicreg {

VICRegLossOptions VICRegLossOptions::reference() { return VICRegLossOptions(); }

VICRegLossOptions VICRegLossOptions::paper() {
  return VICRegLossOptions()
      .invariance(InvarianceNorm::SampleMean)
      .variance_views(ViewReduction::Sum);
}

VICRegLossOptions VICRegLossOptions::article() {
  return VICRegLossOptions()
      .invariance(InvarianceNorm::SampleMean)
      .variance_form(VarianceForm::Var)
      .variance_views(ViewReduction::Sum);
}

VICRegLossOptions VICRegLossOptions::preset(const std::string& convention) {
  if (convention == "reference") return reference();
  if (convention == "paper") return paper();
  if (convention == "article") return article();
  TORCH_CHECK(false, "vicreg: unknown convention '", convention,
              "'; expected one of \"reference\", \"paper\", \"article\"");
}

static bool same_knobs(const VICRegLossOptions& a, const VICRegLossOptions& b) {
  return a.invariance() == b.invariance() && a.variance_form() == b.variance_form() &&
         a.variance_views() == b.variance_views() && a.covariance_norm() == b.covariance_norm();
}

std::string convention_name(const VICRegLossOptions& o) {
  for (const char* name : {"reference", "paper", "article"}) {
    if (same_knobs(o, VICRegLossOptions::preset(name))) return name;
  }
  return "custom";
}

namespace ops {

Settings Settings::of(const VICRegLossOptions& o) {
  return {o.inv_coeff(),   o.var_coeff(),      o.cov_coeff(),
          {o.variance_form(), o.gamma(), o.eps()},
          o.invariance(),  o.variance_views(), o.covariance_norm()};
}

VCRegSettings VCRegSettings::of(const VCRegOptions& o) {
  return {o.var_coeff(), o.cov_coeff(), {o.variance_form(), o.gamma(), o.eps()},
          o.channel_dim()};
}

}  // namespace ops
}  // namespace vicreg
