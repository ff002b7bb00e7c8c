// VCReg: the penalty against an independent formula, the injected gradient against autograd
// of the penalty and central differences, identity forward, inside a network, bad input.

#include <ATen/core/dispatch/Dispatcher.h>

#include "helpers.h"
#include "vicreg/script.h"

namespace vicreg::testing {
namespace {

struct Layout {
  std::vector<int64_t> shape;
  int64_t channel_dim;
};

// [n, d] with n < d (Gram path) and n > d, channels last with positions, NCHW maps.
const std::vector<Layout> kLayouts = {
    {{6, 10}, -1}, {{16, 5}, 1}, {{5, 3, 4}, -1}, {{3, 4, 3, 2}, 1}};

class VCRegTest : public DeviceDtypeTest {};

// Features whose per-channel std sits far from gamma = 1, with correlated channels.
at::Tensor features(const Layout& l, torch::TensorOptions opts, uint64_t seed) {
  torch::manual_seed(seed);
  auto x = torch::randn(l.shape, torch::kFloat64);
  const int64_t c = l.shape[l.channel_dim < 0 ? l.shape.size() - 1 : l.channel_dim];
  std::vector<int64_t> bshape(l.shape.size(), 1);
  bshape[l.channel_dim < 0 ? l.shape.size() - 1 : l.channel_dim] = c;
  auto scale = torch::ones({c}, torch::kFloat64);
  for (int64_t j = 0; j < c; ++j) scale[j] = j % 2 ? 3.0 : 0.3;
  auto mixed = x + 0.5 * x.sum(l.channel_dim, true);
  auto moved = mixed.movedim(l.channel_dim, -1).reshape({-1, c});
  moved = (moved - moved.mean(0, true)) / moved.std(0, true, true) * scale;
  auto shape_moved = mixed.movedim(l.channel_dim, -1).sizes().vec();
  return moved.reshape(shape_moved).movedim(-1, l.channel_dim).contiguous().to(opts);
}

VCRegOptions options_for(const Layout& l, VarianceForm form) {
  return VCRegOptions().var_coeff(0.7).cov_coeff(1.9).channel_dim(l.channel_dim).variance_form(
      form);
}

TEST_P(VCRegTest, PenaltyMatchesIndependentFormula) {
  for (const auto& l : kLayouts) {
    for (auto form : {VarianceForm::Std, VarianceForm::Var}) {
      const auto x = features(l, opts(), 1);
      const auto o = options_for(l, form);
      EXPECT_LT(rel_error(functional::vcreg_penalty(x, o).item<double>(),
                          reference_vcreg_penalty(x, o)),
                tol())
          << c10::IntArrayRef(l.shape);
    }
  }
}

TEST_P(VCRegTest, InjectedGradientEqualsAutogradOfPenalty) {
  for (const auto& l : kLayouts) {
    for (auto form : {VarianceForm::Std, VarianceForm::Var}) {
      const auto x0 = features(l, opts(), 2);
      const auto w = torch::randn(l.shape, opts());
      const auto o = options_for(l, form);
      VCReg layer(o);
      auto x1 = x0.clone().requires_grad_(true);
      (layer(x1) * w).sum().backward();
      auto x2 = x0.clone().requires_grad_(true);
      ((x2 * w).sum() + functional::vcreg_penalty(x2, o).to(x2.scalar_type())).backward();
      SCOPED_TRACE(c10::str(c10::IntArrayRef(l.shape)));
      EXPECT_LT(rel_error(x1.grad(), x2.grad()), tol());
    }
  }
}

TEST_P(VCRegTest, ForwardIsTheIdentityWithoutCopy) {
  const auto x = features(kLayouts[3], opts(), 3).requires_grad_(true);
  VCReg layer(VCRegOptions().channel_dim(1));
  const auto y = layer(x);
  EXPECT_EQ(y.data_ptr(), x.data_ptr());
  EXPECT_TRUE(torch::equal(y, x));
  EXPECT_TRUE(y.requires_grad());
}

TEST_P(VCRegTest, ZeroCoefficientsPassTheGradientThroughUnchanged) {
  const auto x = features(kLayouts[0], opts(), 4).requires_grad_(true);
  const auto w = torch::randn_like(x);
  VCReg layer(VCRegOptions().var_coeff(0).cov_coeff(0));
  (layer(x) * w).sum().backward();
  EXPECT_TRUE(torch::equal(x.grad(), w));
}

TEST_P(VCRegTest, EvalModeIsAPureIdentityUnlessActiveInEval) {
  const auto x0 = features(kLayouts[1], opts(), 5);
  const auto w = torch::randn_like(x0);
  VCReg layer(VCRegOptions().channel_dim(1));
  layer->eval();
  auto x = x0.clone().requires_grad_(true);
  (layer(x) * w).sum().backward();
  EXPECT_TRUE(torch::equal(x.grad(), w));
  VCReg active(VCRegOptions().channel_dim(1).active_in_eval(true));
  active->eval();
  auto x2 = x0.clone().requires_grad_(true);
  (active(x2) * w).sum().backward();
  EXPECT_FALSE(torch::equal(x2.grad(), w));
}

TEST_P(VCRegTest, OperatorEqualsModuleAndRunsFromTorchScript) {
  const auto x0 = features(kLayouts[2], opts(), 6);
  const auto w = torch::randn_like(x0);
  auto cu = script::compile(R"JIT(
def f(x: Tensor, w: Tensor) -> Tensor:
    return (torch.ops.vicreg.vcreg(x, 0.5, 2.0, 1.0, 0.0001, -1, "std") * w).sum()
)JIT");
  auto x1 = x0.clone().requires_grad_(true);
  cu->run_method("f", x1, w).toTensor().backward();
  auto x2 = x0.clone().requires_grad_(true);
  VCReg layer(VCRegOptions().var_coeff(0.5).cov_coeff(2.0));
  (layer(x2) * w).sum().backward();
  EXPECT_TRUE(torch::equal(x1.grad(), x2.grad()));
}

INSTANTIATE_TEST_SUITE_P(DeviceDtype, VCRegTest, ::testing::ValuesIn(device_dtype_grid()),
                         device_dtype_name);

TEST(VCRegGradCheck, InjectedGradientMatchesCentralDifferences) {
  for (const auto& l : kLayouts) {
    for (auto form : {VarianceForm::Std, VarianceForm::Var}) {
      const auto x0 = features(l, torch::kFloat64, 7);
      const auto o = options_for(l, form);
      auto x = x0.clone().requires_grad_(true);
      VCReg layer(o);
      layer(x).sum().backward();
      const auto injected = x.grad() - 1;  // d sum(x) / dx = 1
      auto f = [&](const at::Tensor& xx) { return functional::vcreg_penalty(xx, o).item<double>(); };
      EXPECT_LT(rel_error(injected, central_difference(f, x0)), 1e-6)
          << c10::IntArrayRef(l.shape);
    }
  }
}

TEST(VCRegNetwork, OneStepGradientsEqualExplicitPenalty) {
  torch::manual_seed(8);
  const VCRegOptions o = VCRegOptions().var_coeff(0.4).cov_coeff(0.9);
  torch::nn::Sequential with(torch::nn::Linear(10, 12), torch::nn::ReLU(), VCReg(o),
                             torch::nn::Linear(12, 3));
  with->to(torch::kFloat64);
  torch::nn::Sequential without(torch::nn::Linear(10, 12), torch::nn::ReLU(),
                                torch::nn::Linear(12, 3));
  without->to(torch::kFloat64);
  // Same weights in both networks.
  auto wp = with->parameters(), np = without->parameters();
  ASSERT_EQ(wp.size(), np.size());
  {
    torch::NoGradGuard g;
    for (size_t i = 0; i < wp.size(); ++i) np[i].copy_(wp[i]);
  }
  const auto x = torch::randn({32, 10}, torch::kFloat64);
  const auto y = torch::randint(0, 3, {32});
  torch::nn::functional::cross_entropy(with->forward(x), y).backward();
  auto hidden = without[1]->as<torch::nn::ReLU>()->forward(
      without[0]->as<torch::nn::Linear>()->forward(x));
  auto logits = without[2]->as<torch::nn::Linear>()->forward(hidden);
  (torch::nn::functional::cross_entropy(logits, y) + functional::vcreg_penalty(hidden, o))
      .backward();
  for (size_t i = 0; i < wp.size(); ++i) {
    EXPECT_LT(rel_error(wp[i].grad(), np[i].grad()), 1e-10) << "parameter " << i;
  }
}

TEST(VCRegHalf, Float16AndBFloat16GradientsAreFiniteAndCloseToFloat32) {
  torch::manual_seed(9);
  const auto x32 = torch::randn({64, 8, 4, 4}) * 30;  // squares and sums overflow float16
  const auto w = torch::randn_like(x32);
  const VCRegOptions o = VCRegOptions().channel_dim(1).cov_coeff(0.01);
  auto ref = x32.clone().requires_grad_(true);
  (VCReg(o)(ref) * w).sum().backward();
  for (auto dtype : {torch::kHalf, torch::kBFloat16}) {
    auto x = x32.to(dtype).requires_grad_(true);
    (VCReg(o)(x) * w.to(dtype)).sum().backward();
    EXPECT_EQ(x.grad().scalar_type(), dtype);
    EXPECT_TRUE(torch::isfinite(x.grad()).all().item<bool>());
    EXPECT_LT(rel_error(x.grad(), ref.grad()), dtype == torch::kHalf ? 5e-3 : 3e-2);
    EXPECT_TRUE(std::isfinite(functional::vcreg_penalty(x.detach(), o).item<double>()));
  }
}

// Invalid inputs and their errors: test_catalogue.cpp.

}  // namespace
}  // namespace vicreg::testing
