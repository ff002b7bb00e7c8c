// VICReg loss: values against independent double-precision formulas, the hand-written backward
// against autograd and central differences, reduced precision, bad input.

#include "detail.h"
#include "helpers.h"

namespace vicreg::testing {
namespace {

const std::vector<std::string> kPresets = {"reference", "paper", "article"};

VICRegLossOptions with_backward(VICRegLossOptions o, Backward b) { return o.backward(b); }

class LossTest : public DeviceDtypeTest {};

// Shapes that take each code path: Gram (n <= d), covariance (n > d), local features.
const std::vector<std::vector<int64_t>> kShapes = {{8, 12}, {20, 6}, {10, 3, 7}, {9, 2, 2, 5}};

TEST_P(LossTest, EveryPresetAndBackwardMatchesIndependentFormula) {
  for (const auto& shape : kShapes) {
    const auto za = spread_embeddings(shape, opts(), 1);
    const auto zb = spread_embeddings(shape, opts(), 2);
    for (const auto& preset : kPresets) {
      for (auto cov_norm : {CovarianceNorm::Unbiased, CovarianceNorm::Biased}) {
        for (auto b : {Backward::Fused, Backward::Autograd}) {
          const auto o = VICRegLossOptions::preset(preset).covariance_norm(cov_norm).backward(b);
          const auto ref = reference_terms(za, zb, o);
          const auto t = functional::vicreg_terms(za, zb, o);
          SCOPED_TRACE(preset + " shape " + c10::str(c10::IntArrayRef(shape)) +
                       (b == Backward::Fused ? " fused" : " autograd"));
          EXPECT_LT(rel_error(t.loss.item<double>(), ref.loss), tol());
          EXPECT_LT(rel_error(t.invariance.item<double>(), ref.inv), tol());
          EXPECT_LT(rel_error(t.variance.item<double>(), ref.var), tol());
          EXPECT_LT(rel_error(t.covariance.item<double>(), ref.cov), tol());
          EXPECT_EQ(t.loss.dim(), 0);
          EXPECT_EQ(t.loss.scalar_type(), GetParam().dtype);
        }
      }
    }
  }
}

TEST_P(LossTest, SingleTermFunctionsMatchIndependentFormula) {
  const auto za = spread_embeddings({10, 3, 7}, opts(), 3);
  const auto zb = spread_embeddings({10, 3, 7}, opts(), 4);
  for (const auto& preset : kPresets) {
    const auto o = VICRegLossOptions::preset(preset).variance_views(ViewReduction::Sum);
    const auto ref_a = reference_terms(za, za, o);  // inv 0, var = v(a)+v(a), cov = 2 c(a)
    const auto ref = reference_terms(za, zb, o);
    EXPECT_LT(rel_error(functional::invariance_term(za, zb, o).item<double>(), ref.inv),
              tol());
    EXPECT_LT(rel_error(functional::variance_term(za, o).item<double>(), ref_a.var / 2),
              tol());
    EXPECT_LT(rel_error(functional::covariance_term(za, o).item<double>(), ref_a.cov / 2),
              tol());
  }
}

// The seed article's collapse example: identical rows.
TEST_P(LossTest, CollapsedBatchGivesHandCheckableTerms) {
  const int64_t n = 16, d = 6;
  const auto row = torch::randn({1, d}, opts());
  const auto z = row.expand({n, d}).contiguous();
  for (auto b : {Backward::Fused, Backward::Autograd}) {
    for (const auto& preset : kPresets) {
      const auto o = VICRegLossOptions::preset(preset).backward(b);
      const auto t = functional::vicreg_terms(z, z, o);
      const double per_view = o.variance_form() == VarianceForm::Std ? 1.0 - std::sqrt(1e-4) : 1.0;
      const double views = o.variance_views() == ViewReduction::Mean ? 1.0 : 2.0;
      EXPECT_NEAR(t.variance.item<double>(), per_view * views, tol()) << preset;
      // Exactly 0 up to the rounding of the column means (float32: ~1e-28).
      EXPECT_NEAR(t.covariance.item<double>(), 0.0, 1e-20) << preset;
      EXPECT_EQ(t.invariance.item<double>(), 0.0) << preset;
      EXPECT_NEAR(t.loss.item<double>(), 25.0 * per_view * views, 25 * tol()) << preset;
    }
  }
}

// loss + weighted terms, so the gradients of all four outputs are exercised.
at::Tensor objective(const VICRegTerms& t) {
  return t.loss + 0.3 * t.invariance + 0.7 * t.variance + 1.3 * t.covariance;
}

std::pair<at::Tensor, at::Tensor> gradients(const at::Tensor& za, const at::Tensor& zb,
                                            const VICRegLossOptions& o) {
  auto a = za.detach().clone().requires_grad_(true);
  auto b = zb.detach().clone().requires_grad_(true);
  auto g = torch::autograd::grad({objective(functional::vicreg_terms(a, b, o))}, {a, b});
  return {g[0], g[1]};
}

TEST_P(LossTest, HandWrittenBackwardMatchesAutograd) {
  for (const auto& shape : kShapes) {
    const auto za = spread_embeddings(shape, opts(), 5);
    const auto zb = spread_embeddings(shape, opts(), 6);
    for (const auto& preset : kPresets) {
      for (auto cov_norm : {CovarianceNorm::Unbiased, CovarianceNorm::Biased}) {
        const auto o = VICRegLossOptions::preset(preset).covariance_norm(cov_norm);
        auto [fa, fb] = gradients(za, zb, with_backward(o, Backward::Fused));
        auto [aa, ab] = gradients(za, zb, with_backward(o, Backward::Autograd));
        SCOPED_TRACE(preset + " shape " + c10::str(c10::IntArrayRef(shape)));
        EXPECT_EQ(fa.sizes(), za.sizes());
        EXPECT_EQ(fa.scalar_type(), za.scalar_type());
        EXPECT_LT(rel_error(fa, aa), tol());
        EXPECT_LT(rel_error(fb, ab), tol());
      }
    }
  }
}

TEST_P(LossTest, NonContiguousInputsMatchContiguousCopies) {
  const auto base = spread_embeddings({12, 16}, opts(), 7);
  const auto za = base.t().contiguous().t();        // column-major
  const auto zb = spread_embeddings({16, 12}, opts(), 8).t();  // transposed view
  for (auto b : {Backward::Fused, Backward::Autograd}) {
    const auto o = VICRegLossOptions().backward(b);
    auto [g1a, g1b] = gradients(za, zb, o);
    auto [g2a, g2b] = gradients(za.contiguous(), zb.contiguous(), o);
    EXPECT_LT(rel_error(functional::vicreg_loss(za, zb, o), functional::vicreg_loss(za.contiguous(), zb.contiguous(), o)), tol());
    EXPECT_LT(rel_error(g1a, g2a), tol());
    EXPECT_LT(rel_error(g1b, g2b), tol());
  }
}

TEST_P(LossTest, ModuleForwardEqualsFunctionalAndTerms) {
  const auto za = spread_embeddings({8, 5}, opts(), 9);
  const auto zb = spread_embeddings({8, 5}, opts(), 10);
  VICRegLoss loss(VICRegLossOptions::paper());
  const auto t = loss->terms(za, zb);
  EXPECT_EQ(loss(za, zb).item<double>(), t.loss.item<double>());
  EXPECT_LT(rel_error(t.loss.item<double>(),
                      25 * t.invariance.item<double>() + 25 * t.variance.item<double>() +
                          t.covariance.item<double>()),
            tol());
}

// The fused path has hand-written CPU kernels for its elementwise work and an ATen composition
// (what CUDA runs); both must match the independent formula and the autograd gradients.
TEST_P(LossTest, CpuKernelsAndAtenCompositionBothMatchReference) {
  if (GetParam().device != torch::kCPU) GTEST_SKIP() << "the CPU kernels exist on CPU only";
  struct Restore {
    ~Restore() { detail::set_cpu_kernels_enabled(true); }
  } restore;
  for (const auto& shape : kShapes) {
    const auto za = spread_embeddings(shape, opts(), 21);
    const auto zb =  // a strided (column-major) copy
        spread_embeddings(shape, opts(), 22).transpose(0, -1).contiguous().transpose(0, -1);
    const auto o = VICRegLossOptions::paper();
    auto [aa, ab] = gradients(za, zb, with_backward(o, Backward::Autograd));
    const auto ref = reference_terms(za, zb, o);
    for (bool kernels : {true, false}) {
      detail::set_cpu_kernels_enabled(kernels);
      const auto t = functional::vicreg_terms(za, zb, o);
      auto [fa, fb] = gradients(za, zb, o);
      SCOPED_TRACE(std::string(kernels ? "CPU kernels " : "ATen composition ") +
                   c10::str(c10::IntArrayRef(shape)));
      EXPECT_LT(rel_error(t.loss.item<double>(), ref.loss), tol());
      EXPECT_LT(rel_error(t.invariance.item<double>(), ref.inv), tol());
      EXPECT_LT(rel_error(t.covariance.item<double>(), ref.cov), tol());
      EXPECT_LT(rel_error(fa, aa), tol());
      EXPECT_LT(rel_error(fb, ab), tol());
    }
  }
}

INSTANTIATE_TEST_SUITE_P(DeviceDtype, LossTest, ::testing::ValuesIn(device_dtype_grid()),
                         device_dtype_name);

// ---- float64 only: central differences ---------------------------------------------------

class GradCheckTest : public ::testing::TestWithParam<torch::DeviceType> {
 protected:
  void SetUp() override { VICREG_SKIP_IF_NO_DEVICE(GetParam()); }
};

TEST_P(GradCheckTest, BothBackwardsMatchCentralDifferences) {
  const auto opts = torch::TensorOptions().dtype(torch::kFloat64).device(GetParam());
  for (const auto& shape : std::vector<std::vector<int64_t>>{{6, 8}, {9, 4}, {6, 2, 4}}) {
    const auto za = spread_embeddings(shape, opts, 11);
    const auto zb = spread_embeddings(shape, opts, 12);
    for (const auto& preset : kPresets) {
      for (auto b : {Backward::Fused, Backward::Autograd}) {
        const auto o = VICRegLossOptions::preset(preset).backward(b);
        auto [ga, gb] = gradients(za, zb, o);
        auto f_a = [&](const at::Tensor& x) {
          return objective(functional::vicreg_terms(x.to(GetParam()), zb, o)).item<double>();
        };
        auto f_b = [&](const at::Tensor& x) {
          return objective(functional::vicreg_terms(za, x.to(GetParam()), o)).item<double>();
        };
        SCOPED_TRACE(preset + (b == Backward::Fused ? " fused " : " autograd ") +
                     c10::str(c10::IntArrayRef(shape)));
        EXPECT_LT(rel_error(ga, central_difference(f_a, za.cpu())), 1e-6);
        EXPECT_LT(rel_error(gb, central_difference(f_b, zb.cpu())), 1e-6);
      }
    }
  }
}

TEST_P(GradCheckTest, DoubleBackwardAutogradPathIsCorrectFusedPathRefuses) {
  const auto opts = torch::TensorOptions().dtype(torch::kFloat64).device(GetParam());
  const auto za0 = spread_embeddings({7, 5}, opts, 13);
  const auto zb = spread_embeddings({7, 5}, opts, 14);
  const auto dir = torch::randn({7, 5}, opts);
  // Autograd path: the Hessian-vector product H v equals central differences of the gradient.
  auto o = VICRegLossOptions().backward(Backward::Autograd);
  auto za = za0.clone().requires_grad_(true);
  auto g = torch::autograd::grad({functional::vicreg_loss(za, zb, o)}, {za}, {}, true, true)[0];
  auto hv = torch::autograd::grad({(g * dir).sum()}, {za})[0];
  const double h = 1e-5;
  auto grad_at = [&](const at::Tensor& x) {
    auto xx = x.clone().requires_grad_(true);
    return torch::autograd::grad({functional::vicreg_loss(xx, zb, o)}, {xx})[0];
  };
  auto fd = (grad_at(za0 + h * dir) - grad_at(za0 - h * dir)) / (2 * h);
  EXPECT_LT(rel_error(hv, fd), 1e-6);
  // Fused path: a clear error, never a silent zero.
  auto za2 = za0.clone().requires_grad_(true);
  auto loss = functional::vicreg_loss(za2, zb, VICRegLossOptions());
  EXPECT_THROW_WITH(torch::autograd::grad({loss}, {za2}, {}, true, true),
                    "double backward through the hand-written (fused) backward is not supported");
}

INSTANTIATE_TEST_SUITE_P(Device, GradCheckTest, ::testing::Values(torch::kCPU, torch::kCUDA),
                         [](const auto& info) {
                           return std::string(info.param == torch::kCUDA ? "CUDA" : "CPU");
                         });

// ---- reduced precision ------------------------------------------------------------------

class HalfTest : public ::testing::TestWithParam<DeviceDtype> {
 protected:
  void SetUp() override { VICREG_SKIP_IF_NO_DEVICE(GetParam().device); }
};

TEST_P(HalfTest, LargeMagnitudesStayFiniteAndCloseToFloat32) {
  const auto dev = GetParam().device;
  const auto dtype = GetParam().dtype;
  torch::manual_seed(15);
  // Entries ~40: squares and the batch sums of the covariance (~1e5) overflow float16's 65504,
  // the covariance term (~1e7) too; the float32 results are finite.
  const auto za = (40 * torch::randn({64, 16}) + 5).to(dev, dtype);
  const auto zb = (za.to(torch::kFloat32) + torch::randn({64, 16}).to(dev)).to(dtype);
  for (auto b : {Backward::Fused, Backward::Autograd}) {
    const auto o = VICRegLossOptions().backward(b);
    auto [ha, hb] = gradients(za, zb, o);
    auto [fa, fb] = gradients(za.to(torch::kFloat32), zb.to(torch::kFloat32), o);
    const auto t = functional::vicreg_terms(za, zb, o);
    const auto t32 = functional::vicreg_terms(za.to(torch::kFloat32), zb.to(torch::kFloat32), o);
    ASSERT_GT(t32.covariance.item<double>(), 65504.0) << "test must exceed the float16 range";
    EXPECT_EQ(t.loss.scalar_type(), torch::kFloat32);
    EXPECT_TRUE(std::isfinite(t.loss.item<double>()));
    EXPECT_LT(rel_error(t.loss, t32.loss), 1e-5);
    EXPECT_EQ(ha.scalar_type(), dtype);
    EXPECT_TRUE(torch::isfinite(ha).all().item<bool>());
    EXPECT_TRUE(torch::isfinite(hb).all().item<bool>());
    const double tol = dtype == torch::kBFloat16 ? 1e-2 : 2e-3;  // one rounding to the dtype
    EXPECT_LT(rel_error(ha, fa), tol);
    EXPECT_LT(rel_error(hb, fb), tol);
  }
}

INSTANTIATE_TEST_SUITE_P(DeviceDtype, HalfTest,
                         ::testing::Values(DeviceDtype{torch::kCPU, torch::kHalf},
                                           DeviceDtype{torch::kCPU, torch::kBFloat16},
                                           DeviceDtype{torch::kCUDA, torch::kHalf},
                                           DeviceDtype{torch::kCUDA, torch::kBFloat16}),
                         device_dtype_name);

// ---- bad input ----------------------------------------------------------------------------

// Invalid inputs and their errors: test_catalogue.cpp.

TEST(BadInput, NonFiniteEmbeddingsPropagateOrRaiseWithCheckFinite) {
  auto z = torch::randn({8, 4});
  auto bad = z.clone();
  bad[3][2] = NAN;
  for (auto b : {Backward::Fused, Backward::Autograd}) {
    EXPECT_TRUE(std::isnan(
        functional::vicreg_loss(bad, z, VICRegLossOptions().backward(b)).item<double>()));
    EXPECT_THROW_WITH(
        functional::vicreg_loss(z, bad, VICRegLossOptions().backward(b).check_finite(true)),
        "z_b contains NaN or Inf");
    // Finite inputs whose covariance overflows float32: the result is Inf/NaN, and
    // check_finite turns it into an error.
    auto huge = torch::randn({8, 4}) * 1e18;
    EXPECT_FALSE(std::isfinite(
        functional::vicreg_loss(huge, huge, VICRegLossOptions().backward(b)).item<double>()));
    EXPECT_THROW_WITH(
        functional::vicreg_loss(huge, huge, VICRegLossOptions().backward(b).check_finite(true)),
        "the loss is not finite");
  }
}

TEST(Module, PrettyPrintNamesConventionAndClonesIndependently) {
  VICRegLoss loss(VICRegLossOptions::article().cov_coeff(2));
  std::ostringstream s;
  s << *loss;
  EXPECT_NE(s.str().find("vicreg::VICRegLoss(convention=article"), std::string::npos) << s.str();
  EXPECT_NE(s.str().find("cov_coeff=2"), std::string::npos) << s.str();
  EXPECT_EQ(convention_name(VICRegLossOptions::paper()), "paper");
  EXPECT_EQ(convention_name(VICRegLossOptions().variance_form(VarianceForm::Var)), "custom");
  auto copy = std::dynamic_pointer_cast<VICRegLossImpl>(loss->clone());
  copy->options.cov_coeff(5);
  EXPECT_EQ(loss->options.cov_coeff(), 2);
}

}  // namespace
}  // namespace vicreg::testing
