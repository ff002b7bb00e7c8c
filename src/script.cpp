// TorchScript module built around the vicreg::vicreg_terms operator.

#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/frontend/sugared_value.h>

#include "ops/checks.h"
#include "ops/settings.h"
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

torch::jit::Module make_loss_module(const VICRegLossOptions& o) {
  checks::loss_settings("make_loss_module", ops::Settings::of(o));
  torch::jit::Module m(c10::QualifiedName("__torch__.vicreg.VICRegLossModule"));
  m.register_attribute("inv_coeff", c10::FloatType::get(), o.inv_coeff());
  m.register_attribute("var_coeff", c10::FloatType::get(), o.var_coeff());
  m.register_attribute("cov_coeff", c10::FloatType::get(), o.cov_coeff());
  m.register_attribute("gamma", c10::FloatType::get(), o.gamma());
  m.register_attribute("eps", c10::FloatType::get(), o.eps());
  m.register_attribute("invariance", c10::StringType::get(),
                       std::string(ops::to_string(o.invariance())));
  m.register_attribute("variance_form", c10::StringType::get(),
                       std::string(ops::to_string(o.variance_form())));
  m.register_attribute("variance_views", c10::StringType::get(),
                       std::string(ops::to_string(o.variance_views())));
  m.register_attribute("covariance_norm", c10::StringType::get(),
                       std::string(ops::to_string(o.covariance_norm())));
  m.register_attribute("fused_backward", c10::BoolType::get(), o.backward() == Backward::Fused);
  m.register_attribute("check_finite", c10::BoolType::get(), o.check_finite());
  m.define(R"JIT(
def terms(self, z_a: Tensor, z_b: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    return torch.ops.vicreg.vicreg_terms(
        z_a, z_b, self.inv_coeff, self.var_coeff, self.cov_coeff, self.gamma, self.eps,
        "reference", self.invariance, self.variance_form, self.variance_views,
        self.covariance_norm, self.fused_backward, self.check_finite)

def forward(self, z_a: Tensor, z_b: Tensor) -> Tensor:
    return self.terms(z_a, z_b)[0]
)JIT",
           resolver());
  return m;
}

void save_loss_module(const VICRegLossOptions& options, const std::string& path) {
  make_loss_module(options).save(path);
}

}  // namespace vicreg::script
