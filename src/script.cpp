// TorchScript module built around the vicreg::vicreg_terms operator.

#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/frontend/sugared_value.h>

#include "ops/checks.h"
#include "ops/ops.h"
#include "vicreg/script.h"

namespace vicreg::script {
namespace {

using torch::jit::SugaredValue;

// `torch.ops`: `.<namespace>` gives the builtin module of that operator namespace.
struct OpsNamespaces : SugaredValue {
  std::string kind() const override { return "torch.ops"; }
  std::shared_ptr<SugaredValue> attr(const torch::jit::SourceRange&, torch::jit::GraphFunction&,
                                     const std::string& field) override {
    return std::make_shared<torch::jit::BuiltinModule>(field);
  }
};

// `torch`: the aten builtins as in LibTorch's native resolver, plus `ops`.
struct TorchWithOps : torch::jit::BuiltinModule {
  TorchWithOps() : BuiltinModule("aten") {}
  std::shared_ptr<SugaredValue> attr(const torch::jit::SourceRange& loc,
                                     torch::jit::GraphFunction& m,
                                     const std::string& field) override {
    if (field == "ops") return std::make_shared<OpsNamespaces>();
    return BuiltinModule::attr(loc, m, field);
  }
};

struct OpsResolver : torch::jit::Resolver {
  std::shared_ptr<SugaredValue> resolveValue(const std::string& name, torch::jit::GraphFunction&,
                                             const torch::jit::SourceRange&) override {
    if (name == "torch") return std::make_shared<TorchWithOps>();
    return nullptr;
  }
  c10::TypePtr resolveType(const std::string&, const torch::jit::SourceRange&) override {
    return nullptr;
  }
};

}  // namespace

torch::jit::ResolverPtr resolver() { return std::make_shared<OpsResolver>(); }

std::shared_ptr<torch::jit::CompilationUnit> compile(const std::string& source) {
  auto cu = std::make_shared<torch::jit::CompilationUnit>();
  cu->define(c10::nullopt, source, resolver(), nullptr);
  return cu;
}

namespace {

// A front's argument as a TorchScript attribute: numbers and switches as they are, a knob by its
// name.
c10::IValue attribute(double v) { return v; }
c10::IValue attribute(bool v) { return v; }
c10::IValue attribute(c10::string_view v) { return std::string(v); }
template <typename Knob>
c10::IValue attribute(Knob v) {
  return std::string(ops::to_string(v));
}

}  // namespace

torch::jit::Module make_loss_module(const VICRegLossOptions& o) {
  const auto front = ops::Front::of(o);
  checks::loss_settings("make_loss_module", front.settings);
  torch::jit::Module m(c10::QualifiedName("__torch__.vicreg.VICRegLossModule"));
  // One attribute per argument of the operator, passed by keyword.
  std::string arguments;
  const auto add = [&](const char* name, const c10::IValue& value) {
    m.register_attribute(name, value.type(), value);
    arguments += std::string(", ") + name + "=self." + name;
  };
#define VICREG_SETTING(name, member) add(#name, attribute(front.settings.member));
// (The convention is moot, every knob being given: the call names "reference", as 0.1 did.)
#define VICREG_SWITCH(name)                               \
  if (std::string(#name) == "convention") {               \
    arguments += ", convention=\"reference\"";            \
  } else {                                                \
    add(#name, attribute(front.name));                    \
  }
  VICREG_LOSS_ARGUMENTS(VICREG_SETTING, VICREG_SWITCH)
#undef VICREG_SETTING
#undef VICREG_SWITCH
  m.define(
      "def terms(self, z_a: Tensor, z_b: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:\n"
      "    return torch.ops.vicreg.vicreg_terms(z_a, z_b" + arguments + ")\n"
      "\n"
      "def forward(self, z_a: Tensor, z_b: Tensor) -> Tensor:\n"
      "    return self.terms(z_a, z_b)[0]\n",
      resolver());
  return m;
}

void save_loss_module(const VICRegLossOptions& options, const std::string& path) {
  make_loss_module(options).save(path);
}

}  // namespace vicreg::script
