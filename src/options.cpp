// The presets of the loss options, and the operators' settings from the options.

#include <c10/util/Exception.h>

#include <type_traits>

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

// A convention is the choice of every enum setting; the numbers are the user's.
static bool same_knobs(const VICRegLossOptions& a, const VICRegLossOptions& b) {
  bool same = true;
#define VICREG_SAME_KNOB(name, member) \
  if constexpr (std::is_enum_v<std::decay_t<decltype(a.name())>>) same = same && a.name() == b.name();
  VICREG_LOSS_SETTINGS(VICREG_SAME_KNOB)
#undef VICREG_SAME_KNOB
  return same;
}

std::string convention_name(const VICRegLossOptions& o) {
  for (const char* name : {"reference", "paper", "article"}) {
    if (same_knobs(o, VICRegLossOptions::preset(name))) return name;
  }
  return "custom";
}

namespace ops {

// Each setting is the public option of the same name.
#define VICREG_FROM_OPTION(name, member) s.member = o.name();

Settings Settings::of(const VICRegLossOptions& o) {
  Settings s;
  VICREG_LOSS_SETTINGS(VICREG_FROM_OPTION)
  return s;
}

VCRegSettings VCRegSettings::of(const VCRegOptions& o) {
  VCRegSettings s;
  VCREG_SETTINGS(VICREG_FROM_OPTION)
  return s;
}
#undef VICREG_FROM_OPTION

}  // namespace ops
}  // namespace vicreg
