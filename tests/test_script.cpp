// Operators through the dispatcher and TorchScript from C++ (no Python): compile, save, load.

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/script.h>

#include <filesystem>

#include "helpers.h"
#include "vicreg/script.h"

namespace vicreg::testing {
namespace {

using Terms4 = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

using Knob = c10::optional<c10::string_view>;

// vicreg::vicreg_terms with the convention's knobs (no overrides).
Terms4 call_public_op(const at::Tensor& a, const at::Tensor& b, const std::string& convention,
                      bool fused) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("vicreg::vicreg_terms", "")
                             .typed<Terms4(const at::Tensor&, const at::Tensor&, double, double,
                                           double, double, double, c10::string_view, Knob, Knob,
                                           Knob, Knob, bool, bool)>();
  return op.call(a, b, 25.0, 25.0, 1.0, 1.0, 1e-4, convention, {}, {}, {}, {}, fused, false);
}

// The schemas as the last release registered them (they are generated from the settings'
// tables): scripted modules saved then call the public ones by position.
TEST(Operators, SchemasAreThoseOfTheLastRelease) {
  const std::string front =
      "Tensor z_a, Tensor z_b, float inv_coeff=25., float var_coeff=25., float cov_coeff=1., "
      "float gamma=1., float eps=0.0001, str convention=\"reference\", str? invariance=None, "
      "str? variance_form=None, str? variance_views=None, str? covariance_norm=None, "
      "bool fused_backward=True, bool check_finite=False";
  const std::string settings =
      "float inv_coeff, float var_coeff, float cov_coeff, float gamma, float eps, "
      "str invariance, str variance_form, str variance_views, str covariance_norm";
  const std::string vcreg =
      "float var_coeff=1., float cov_coeff=1., float gamma=1., float eps=0.0001, "
      "int channel_dim=-1, str variance_form=\"std\"";
  const std::pair<const char*, std::string> expected[] = {
      {"vicreg_loss", "vicreg::vicreg_loss(" + front + ") -> Tensor"},
      {"vicreg_terms", "vicreg::vicreg_terms(" + front +
                           ") -> (Tensor loss, Tensor invariance, Tensor variance, "
                           "Tensor covariance)"},
      {"_vicreg_fused",
       "vicreg::_vicreg_fused(Tensor z_a, Tensor z_b, " + settings +
           ") -> (Tensor loss, Tensor invariance, Tensor variance, Tensor covariance, "
           "Tensor zc, Tensor mean_diff, Tensor colsq, Tensor product)"},
      {"_vicreg_fused_backward",
       "vicreg::_vicreg_fused_backward(Tensor? grad_loss, Tensor? grad_invariance, "
       "Tensor? grad_variance, Tensor? grad_covariance, Tensor[] saved, " + settings +
           ") -> Tensor"},
      {"vcreg", "vicreg::vcreg(Tensor(a) x, " + vcreg + ") -> Tensor(a)"},
      {"_vcreg_backward", "vicreg::_vcreg_backward(Tensor grad, Tensor x, " + vcreg + ") -> Tensor"},
  };
  for (const auto& [name, schema] : expected) {
    const auto op = c10::Dispatcher::singleton().findSchemaOrThrow(
        (std::string("vicreg::") + name).c_str(), "");
    EXPECT_EQ(c10::toString(op.schema()), schema);
  }
}

TEST(Operators, PublicOpThroughDispatcherEqualsModule) {
  const auto za = spread_embeddings({12, 9}, torch::kFloat64, 1);
  const auto zb = spread_embeddings({12, 9}, torch::kFloat64, 2);
  for (const std::string convention : {"reference", "paper", "article"}) {
    for (bool fused : {true, false}) {
      VICRegLoss module(VICRegLossOptions::preset(convention).backward(
          fused ? Backward::Fused : Backward::Autograd));
      const auto t = module->terms(za, zb);
      const auto [loss, inv, var, cov] = call_public_op(za, zb, convention, fused);
      EXPECT_EQ(loss.item<double>(), t.loss.item<double>()) << convention;
      EXPECT_EQ(inv.item<double>(), t.invariance.item<double>());
      EXPECT_EQ(var.item<double>(), t.variance.item<double>());
      EXPECT_EQ(cov.item<double>(), t.covariance.item<double>());
    }
  }
  EXPECT_THROW_WITH(call_public_op(za, zb, "solo-learn", true), "unknown convention 'solo-learn'");
}

TEST(Operators, ProfilerAndGraphSeeTheBackwardOperator) {
  auto za = spread_embeddings({6, 4}, torch::kFloat64, 3).requires_grad_(true);
  const auto zb = spread_embeddings({6, 4}, torch::kFloat64, 4);
  const auto loss = functional::vicreg_loss(za, zb);
  ASSERT_TRUE(loss.grad_fn());
  EXPECT_NE(loss.grad_fn()->name().find("VICRegFusedFunction"), std::string::npos)
      << loss.grad_fn()->name();
  for (const char* name : {"vicreg::vicreg_loss", "vicreg::vicreg_terms", "vicreg::_vicreg_fused",
                           "vicreg::_vicreg_fused_backward", "vicreg::vcreg",
                           "vicreg::_vcreg_backward"}) {
    EXPECT_TRUE(c10::Dispatcher::singleton().findSchema({name, ""}).has_value()) << name;
  }
}

TEST(TorchScript, CompiledCodeCallsTheOperatorWithGradients) {
  // torch::jit::compile's native resolver cannot see torch.ops; vicreg::script::compile can.
  auto cu = script::compile(R"JIT(
def loss(a: Tensor, b: Tensor, fused: bool) -> Tensor:
    return torch.ops.vicreg.vicreg_loss(a, b, 25.0, 25.0, 1.0, 1.0, 0.0001, "paper",
                                        fused_backward=fused)
)JIT");
  const auto za = spread_embeddings({10, 7}, torch::kFloat64, 5);
  const auto zb = spread_embeddings({10, 7}, torch::kFloat64, 6);
  for (bool fused : {true, false}) {
    auto a1 = za.clone().requires_grad_(true);
    auto a2 = za.clone().requires_grad_(true);
    const auto scripted = cu->run_method("loss", a1, zb, fused).toTensor();
    const auto direct = functional::vicreg_loss(a2, zb, VICRegLossOptions::paper());
    EXPECT_EQ(scripted.item<double>(), direct.item<double>());
    scripted.backward();
    direct.backward();
    EXPECT_LT(rel_error(a1.grad(), a2.grad()), 1e-12);
  }
}

TEST(TorchScript, CppBuiltModuleSavesAndLoadsWithEqualLossAndGradients) {
  const auto path = (std::filesystem::temp_directory_path() /
                     ("vicreg_cpp_module_" + std::to_string(::getpid()) + ".pt"))
                        .string();
  const auto options = VICRegLossOptions::article().cov_coeff(2.5).backward(Backward::Fused);
  script::save_loss_module(options, path);
  auto loaded = torch::jit::load(path);
  std::filesystem::remove(path);
  EXPECT_EQ(loaded.attr("cov_coeff").toDouble(), 2.5);
  EXPECT_EQ(loaded.attr("variance_form").toStringRef(), "var");
  const auto za = spread_embeddings({10, 3, 4}, torch::kFloat64, 7);
  const auto zb = spread_embeddings({10, 3, 4}, torch::kFloat64, 8);
  auto a1 = za.clone().requires_grad_(true);
  auto a2 = za.clone().requires_grad_(true);
  auto l1 = loaded.forward({a1, zb}).toTensor();
  auto l2 = functional::vicreg_loss(a2, zb, options);
  EXPECT_EQ(l1.item<double>(), l2.item<double>());
  l1.backward();
  l2.backward();
  EXPECT_LT(rel_error(a1.grad(), a2.grad()), 1e-12);
  auto terms = loaded.get_method("terms")({za, zb}).toTuple();
  EXPECT_EQ(terms->elements().size(), 4u);
  const auto ref = reference_terms(za, zb, options);
  EXPECT_LT(rel_error(terms->elements()[3].toTensor().item<double>(), ref.cov), 1e-10);
}

// Modules saved by the last release (vicreg_script_tool save ... of 0.1; tests/script/README.md)
// load and give the loss and gradients of today's module, to the bit.
TEST(TorchScript, ModulesSavedByTheLastReleaseLoadAndEqualTodaysModule) {
  const auto za = spread_embeddings({10, 6}, torch::kFloat64, 3);
  const auto zb = spread_embeddings({10, 6}, torch::kFloat64, 4);
  for (const auto& [file, options] :
       {std::pair{"loss_paper_fused_0.1.pt", VICRegLossOptions::paper()},
        std::pair{"loss_reference_autograd_0.1.pt",
                  VICRegLossOptions::reference().backward(Backward::Autograd)}}) {
    auto saved = torch::jit::load(std::string(VICREG_TEST_SCRIPTS) + "/" + file);
    auto a1 = za.clone().requires_grad_(true);
    auto a2 = za.clone().requires_grad_(true);
    const auto l1 = saved.forward({a1, zb}).toTensor();
    const auto l2 = VICRegLoss(options)(a2, zb);
    EXPECT_TRUE(torch::equal(l1, l2)) << file;
    l1.backward();
    l2.backward();
    EXPECT_TRUE(torch::equal(a1.grad(), a2.grad())) << file;
    // Today's C++-built module of the same options: the same bits, and the same attributes.
    auto today = script::make_loss_module(options);
    EXPECT_TRUE(torch::equal(today.forward({za, zb}).toTensor(), l1)) << file;
    for (const auto& attribute : saved.named_attributes(/*recurse=*/false)) {
      EXPECT_TRUE(today.hasattr(attribute.name)) << attribute.name;
      EXPECT_EQ(today.attr(attribute.name), attribute.value) << attribute.name;
    }
    EXPECT_EQ(today.named_attributes(false).size(), saved.named_attributes(false).size());
  }
}

}  // namespace
}  // namespace vicreg::testing
