// VICReg loss: values against independent double-precision formulas, the hand-written backward
// against autograd and central differences, reduced precision, bad input.

#include <ATen/core/dispatch/Dispatcher.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <random>

#include "helpers.h"
#include "op_count.h"
#include "ops/cpu/loops.h"
#include "ops/ops.h"

namespace vicreg::testing {
namespace {

const std::vector<std::string> kPresets = {"reference", "paper", "article"};

// CTest runs the CPU kernels' tests once per CPU capability, with VICREG_CPU_CAPABILITY set
// (tests/CMakeLists.txt). A capability this CPU cannot run skips them all, saying so, instead
// of failing every test on the first call.
class ForcedCpuCapability : public ::testing::Environment {
 public:
  void SetUp() override {
    const char* forced = std::getenv("VICREG_CPU_CAPABILITY");
    if (forced == nullptr || *forced == '\0') return;
    // (an unknown name is not skipped: the tests then fail with the library's error)
    const std::string name = forced;
    const bool known = name == "avx512" || name == "avx2" || name == "default";
    const auto supported = supported_cpu_capabilities();
    if (known && std::find(supported.begin(), supported.end(), name) == supported.end()) {
      GTEST_SKIP() << "VICREG_CPU_CAPABILITY=" << forced << ": this CPU runs only "
                   << c10::Join(", ", supported);
    }
  }
};
const auto* const kForcedCpuCapability =
    ::testing::AddGlobalTestEnvironment(new ForcedCpuCapability);

VICRegLossOptions with_backward(VICRegLossOptions o, Backward b) { return o.backward(b); }

class LossTest : public DeviceDtypeTest {};

// Shapes that take each code path: Gram (2 (n-1) <= d), direct (n = 8 just above that, and
// n > d), local features.
const std::vector<std::vector<int64_t>> kShapes = {{6, 16}, {8, 12}, {20, 6}, {10, 3, 7},
                                                   {9, 2, 2, 5}};

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

// The fused ops have hand-written CPU kernels and composite kernels (ATen ops: what CUDA, meta
// and other backends run). The tests register the composite kernels as the test-only ops
// vicreg::_vicreg_fused_composite / _vicreg_fused_backward_composite (ops/test_only_ops.cpp),
// so both kernels run here on the same CPU tensors, through the dispatcher.
struct FusedRun {
  at::Tensor loss, inv, var, cov;
  std::vector<at::Tensor> saved;
  at::Tensor grad_a, grad_b;  // of objective(), in the views' layout
};

using FusedSig = ops::Signature<ops::FusedHead, ops::Settings>;
// The forward op's outputs: the loss and the terms, then the saved tensors.
std::pair<std::vector<at::Tensor>, std::vector<at::Tensor>> split(const ops::FusedOutputs& out) {
  const auto all =
      std::apply([](const auto&... t) { return std::vector<at::Tensor>{t...}; }, out);
  return {{all.begin(), all.begin() + 4}, {all.begin() + 4, all.end()}};
}
using FusedBackwardSig = ops::Signature<ops::FusedBackwardHead, ops::Settings>;

// `weights`: of the loss and the three terms in the objective differentiated (objective()'s).
FusedRun run_fused_ops(const at::Tensor& za, const at::Tensor& zb, const VICRegLossOptions& o,
                       bool composite, std::array<double, 4> weights = {1, 0.3, 0.7, 1.3}) {
  const std::string suffix = composite ? "_composite" : "";
  auto& dispatcher = c10::Dispatcher::singleton();
  const auto forward = dispatcher.findSchemaOrThrow(("vicreg::_vicreg_fused" + suffix).c_str(), "")
                           .typed<FusedSig>();
  const auto backward =
      dispatcher.findSchemaOrThrow(("vicreg::_vicreg_fused_backward" + suffix).c_str(), "")
          .typed<FusedBackwardSig>();
  const auto s = ops::Settings::of(o);
  // (the kernels themselves: the test-only ops have no autograd kernel, which meta tensors'
  // AutogradMeta key would look for)
  const at::AutoDispatchBelowADInplaceOrView below_autograd;
  FusedRun r;
  const auto [terms, saved] = split(ops::call_with(forward, s, za, zb));
  r.loss = terms[0], r.inv = terms[1], r.var = terms[2], r.cov = terms[3], r.saved = saved;
  auto w = [&](int i) { return at::scalar_tensor(weights[i], r.loss.options()); };
  const auto grad = ops::call_with(backward, s, w(0), w(1), w(2), w(3), r.saved);
  // [2P, n, d] -> per view [n, P..., d]
  const auto P = grad.size(0) / 2;
  r.grad_a = grad.narrow(0, 0, P).transpose(0, 1).reshape(za.sizes());
  r.grad_b = grad.narrow(0, P, P).transpose(0, 1).reshape(zb.sizes());
  return r;
}

TEST_P(LossTest, CpuKernelsAndCompositeKernelsBothMatchReference) {
  if (GetParam().device != torch::kCPU) GTEST_SKIP() << "the CPU kernels exist on CPU only";
  for (const auto& shape : kShapes) {
    const auto za = spread_embeddings(shape, opts(), 21);
    const auto zb =  // a strided (column-major) copy
        spread_embeddings(shape, opts(), 22).transpose(0, -1).contiguous().transpose(0, -1);
    const auto o = VICRegLossOptions::paper();
    auto [aa, ab] = gradients(za, zb, with_backward(o, Backward::Autograd));
    const auto ref = reference_terms(za, zb, o);
    const auto cpu = run_fused_ops(za, zb, o, false);
    const auto composite = run_fused_ops(za, zb, o, true);
    for (const auto* r : {&cpu, &composite}) {
      SCOPED_TRACE(std::string(r == &cpu ? "CPU kernels " : "composite kernels ") +
                   c10::str(c10::IntArrayRef(shape)));
      EXPECT_LT(rel_error(r->loss.item<double>(), ref.loss), tol());
      EXPECT_LT(rel_error(r->inv.item<double>(), ref.inv), tol());
      EXPECT_LT(rel_error(r->var.item<double>(), ref.var), tol());
      EXPECT_LT(rel_error(r->cov.item<double>(), ref.cov), tol());
      EXPECT_LT(rel_error(r->grad_a, aa), tol());
      EXPECT_LT(rel_error(r->grad_b, ab), tol());
    }
    // The same saved tensors (Zc of both views, mean_a - mean_b, column sums of squares,
    // matrices, each of both views as one batch), so either backward kernel can follow either
    // forward kernel.
    ASSERT_EQ(cpu.saved.size(), composite.saved.size());
    for (size_t i = 0; i < cpu.saved.size(); ++i) {
      EXPECT_EQ(cpu.saved[i].sizes(), composite.saved[i].sizes()) << "saved " << i;
      // (floor 1: the data's scale; the mean difference of standardized views is ~1e-17)
      EXPECT_LT(rel_error(cpu.saved[i], composite.saved[i], 1.0), tol()) << "saved " << i;
    }
  }
}

// The CPU kernels' loops go over blocks of 256 columns in the forward and over rows in tasks
// of about 32K values in the backward; on shapes of several blocks and tasks, ragged last
// ones, several positions (with [7, 3, 8192], tasks of 4 rows that start inside a position) and
// both sides of the Gram rule they agree with the composite
// kernel (ATen ops on whole tensors, checked against the reference above).
TEST(CpuKernels, LoopsMatchCompositeOnShapesOfSeveralBlocks) {
  const auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  for (const auto& shape : std::vector<std::vector<int64_t>>{
           {128, 5000}, {2000, 300}, {128, 2, 3000}, {3, 257}, {255, 513}, {7, 3, 8192}}) {
    SCOPED_TRACE(c10::str(c10::IntArrayRef(shape)));
    const auto za = spread_embeddings(shape, opts, 41), zb = spread_embeddings(shape, opts, 42);
    const auto o = VICRegLossOptions::paper();
    const auto cpu = run_fused_ops(za, zb, o, false);
    const auto composite = run_fused_ops(za, zb, o, true);
    EXPECT_LT(rel_error(cpu.loss, composite.loss), 1e-12);
    EXPECT_LT(rel_error(cpu.grad_a, composite.grad_a), 1e-12);
    EXPECT_LT(rel_error(cpu.grad_b, composite.grad_b), 1e-12);
  }
}

// float32 views on shapes ragged for vector code (d below 8 and 16, and not a multiple of
// them), on both sides of the Gram rule ([40, 30], [300, 100], [9, 3, 4]: direct) and at 255,
// 256 and 257 rows: the terms agree with the
// independent formula and the gradients with autograd's, both in float64, to float32's
// rounding, under whichever CPU capability this process runs (CTest runs it under each).
TEST(CpuKernels, Float32MatchesFloat64OnRaggedShapes) {
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  std::printf("CPU capability: %s\n", cpu_capability().c_str());
  for (const auto& shape : std::vector<std::vector<int64_t>>{
           {2, 3}, {3, 5}, {4, 9}, {5, 37}, {7, 100}, {13, 130}, {20, 128}, {62, 200},
           {33, 2, 81}, {255, 530}, {256, 530}, {257, 530}, {40, 30}, {300, 100}, {9, 3, 4}}) {
    SCOPED_TRACE(c10::str(c10::IntArrayRef(shape)));
    const auto za = spread_embeddings(shape, f32, 51), zb = spread_embeddings(shape, f32, 52);
    const auto za64 = za.to(torch::kFloat64), zb64 = zb.to(torch::kFloat64);
    const auto o = VICRegLossOptions::paper();
    const auto cpu = run_fused_ops(za, zb, o, false);
    const auto ref = reference_terms(za64, zb64, o);
    EXPECT_LT(rel_error(cpu.loss.item<double>(), ref.loss), 1e-5);
    EXPECT_LT(rel_error(cpu.cov.item<double>(), ref.cov), 1e-5);
    const auto [ga, gb] = gradients(za64, zb64, with_backward(o, Backward::Autograd));
    EXPECT_LT(rel_error(cpu.grad_a, ga), 1e-5);
    EXPECT_LT(rel_error(cpu.grad_b, gb), 1e-5);
  }
}

// Every CPU capability this machine runs gives the same terms and gradients to the last bit
// (the loops are compiled without FMA contraction, and each column sums in the same order),
// in float32 and float64, and an unknown or unsupported capability is a clear error.
TEST(CpuKernels, EveryCapabilityGivesTheSameBits) {
  const auto chosen = cpu_capability();
  const auto supported = supported_cpu_capabilities();
  ASSERT_FALSE(supported.empty());
  EXPECT_EQ(supported.front(), "default");
  std::printf("capabilities this CPU runs: %s\n", c10::Join(", ", supported).c_str());
  for (auto dtype : {torch::kFloat32, torch::kFloat64}) {
    for (const auto& shape : std::vector<std::vector<int64_t>>{{7, 300}, {300, 7}, {9, 3, 33}}) {
      SCOPED_TRACE(c10::str(dtype, " ", c10::IntArrayRef(shape)));
      const auto opts = torch::TensorOptions().dtype(dtype);
      const auto za = spread_embeddings(shape, opts, 61), zb = spread_embeddings(shape, opts, 62);
      std::vector<FusedRun> runs;
      for (const auto& c : supported) {
        set_cpu_capability(c);
        EXPECT_EQ(cpu_capability(), c);
        runs.push_back(run_fused_ops(za, zb, VICRegLossOptions(), false));
      }
      for (size_t i = 1; i < runs.size(); ++i) {
        SCOPED_TRACE(supported[i]);
        EXPECT_TRUE(runs[i].loss.equal(runs[0].loss));
        EXPECT_TRUE(runs[i].grad_a.equal(runs[0].grad_a));
        EXPECT_TRUE(runs[i].grad_b.equal(runs[0].grad_b));
        for (size_t k = 0; k < runs[0].saved.size(); ++k) {
          EXPECT_TRUE(runs[i].saved[k].equal(runs[0].saved[k])) << "saved " << k;
        }
      }
    }
  }
  EXPECT_THROW_WITH(set_cpu_capability("avx3"), "expected one of default, avx2, avx512, got 'avx3'");
  if (std::find(supported.begin(), supported.end(), "avx512") == supported.end()) {
    EXPECT_THROW_WITH(set_cpu_capability("avx512"), "cannot run the 'avx512' kernels");
  }
  set_cpu_capability(chosen);
}

// The centering loops of the capability in use (CTest runs this under each) against the
// contract written out plainly: each column adds its rows one at a time, in row order, in
// double; a centered value is (x - shift) - rest rounded once to T, and its square is added in
// double. Bit for bit, for every row count up to 9 (the loops take several rows per step and
// the rest one at a time), ragged widths, padded and stride-0 rows, float and double.
template <typename T>
void expect_centering_loops_match_row_by_row(const ops::cpu::RowLoops<T>& loops) {
  std::mt19937 gen(81);
  std::uniform_real_distribution<double> value(-3.0, 5.0);
  for (int64_t n = 1; n <= 9; ++n) {
    for (int64_t w : {1, 7, 33}) {
      for (int64_t pad : {int64_t{0}, int64_t{3}, -w}) {  // -w: stride 0, every row the same
        SCOPED_TRACE(c10::str(sizeof(T) == 4 ? "float" : "double", " n ", n, " w ", w, " pad ",
                              pad));
        const int64_t stride = w + pad;
        std::vector<T> a(static_cast<size_t>(std::max<int64_t>(stride, 0) * (n - 1) + w));
        std::vector<T> b(a.size());
        for (size_t i = 0; i < a.size(); ++i) {
          a[i] = static_cast<T>(100.0 + value(gen));
          b[i] = static_cast<T>(100.0 + value(gen));
        }
        std::vector<double> shift_a(w), shift_b(w), rest_a(w), rest_b(w);
        for (int64_t j = 0; j < w; ++j) {
          shift_a[j] = a[j];
          shift_b[j] = b[j];
          rest_a[j] = value(gen) * 1e-3;
          rest_b[j] = value(gen) * 1e-3;
        }
        // Pass 1 from nonzero starting sums, which the loops must add to.
        std::vector<double> sum_a(w, 0.25), sum_b(w, -0.5), sq_d(w, 1.0);
        std::vector<double> ref_a = sum_a, ref_b = sum_b, ref_d = sq_d;
        loops.accumulate(a.data(), b.data(), stride, stride, n, shift_a.data(), shift_b.data(),
                         sum_a.data(), sum_b.data(), sq_d.data(), w);
        for (int64_t j = 0; j < w; ++j) {
          for (int64_t i = 0; i < n; ++i) {
            const double x = a[i * stride + j], y = b[i * stride + j];
            ref_a[j] = ref_a[j] + (x - shift_a[j]);
            ref_b[j] = ref_b[j] + (y - shift_b[j]);
            const double diff = x - y;
            const double square = diff * diff;
            ref_d[j] = ref_d[j] + square;
          }
        }
        EXPECT_EQ(sum_a, ref_a);
        EXPECT_EQ(sum_b, ref_b);
        EXPECT_EQ(sq_d, ref_d);
        // Pass 2, into rows of stride w + 2 (the output's row stride differs from the input's).
        const int64_t so = w + 2;
        std::vector<T> oa(static_cast<size_t>(so * n), T(-7)), ob(oa.size(), T(-7));
        std::vector<T> ref_oa = oa, ref_ob = ob;
        std::vector<double> sq_a(w, 0.0), sq_b(w, 0.0), ref_sq_a(w, 0.0), ref_sq_b(w, 0.0);
        loops.center(a.data(), b.data(), stride, stride, n, shift_a.data(), shift_b.data(),
                     rest_a.data(), rest_b.data(), oa.data(), ob.data(), so, sq_a.data(),
                     sq_b.data(), w);
        for (int64_t j = 0; j < w; ++j) {
          for (int64_t i = 0; i < n; ++i) {
            const double xa = a[i * stride + j], xb = b[i * stride + j];
            const T ca = static_cast<T>((xa - shift_a[j]) - rest_a[j]);
            const T cb = static_cast<T>((xb - shift_b[j]) - rest_b[j]);
            ref_oa[i * so + j] = ca;
            ref_ob[i * so + j] = cb;
            const double square_a = static_cast<double>(ca) * static_cast<double>(ca);
            const double square_b = static_cast<double>(cb) * static_cast<double>(cb);
            ref_sq_a[j] = ref_sq_a[j] + square_a;
            ref_sq_b[j] = ref_sq_b[j] + square_b;
          }
        }
        EXPECT_EQ(oa, ref_oa);  // (and the padding between rows untouched)
        EXPECT_EQ(ob, ref_ob);
        EXPECT_EQ(sq_a, ref_sq_a);
        EXPECT_EQ(sq_b, ref_sq_b);
      }
    }
  }
}

TEST(CpuKernels, CenteringLoopsSumEachColumnRowByRow) {
  std::printf("CPU capability: %s\n", cpu_capability().c_str());
  expect_centering_loops_match_row_by_row(ops::cpu::loops().f32);
  expect_centering_loops_match_row_by_row(ops::cpu::loops().f64);
}

// The CPU kernel's loops run on LibTorch's intra-op threads (at::parallel_for, OpenMP) over
// tasks that do not depend on the thread count, and their partial sums are added in a fixed
// order: one, two and three threads give the same centered views, mean differences and column
// sums of squares to the last bit, on shapes of several column blocks and row tasks, several
// positions, and both sides of the Gram rule. What comes from BLAS or ATen's sums (the saved
// product, the gradient built on it, the terms) agrees to rounding: a BLAS whose thread count
// follows at::set_num_threads (MKL) or ATen's reductions may split their sums by thread count.
TEST(CpuKernels, ResultsDoNotDependOnTheThreadCount) {
  if (!VICREG_TEST_OPENMP) {
    // (and under ThreadSanitizer LibTorch's own OpenMP threads, uninstrumented, would be
    // reported as racing with the main thread: the sanitizer scripts run with one thread)
    GTEST_SKIP() << "this build has no OpenMP (clang or a sanitizer build, CMakeLists.txt): "
                    "the CPU kernel's loops run on the calling thread";
  }
  struct RestoreThreads {
    int threads = at::get_num_threads();
    ~RestoreThreads() { at::set_num_threads(threads); }
  } restore;
  for (auto dtype : {torch::kFloat32, torch::kFloat64}) {
    for (const auto& shape : std::vector<std::vector<int64_t>>{
             {64, 3000}, {7, 3, 8192}, {2000, 300}, {255, 530}}) {
      SCOPED_TRACE(c10::str(dtype, " ", c10::IntArrayRef(shape)));
      const auto opts = torch::TensorOptions().dtype(dtype);
      const auto za = spread_embeddings(shape, opts, 71), zb = spread_embeddings(shape, opts, 72);
      std::vector<FusedRun> runs;
      for (int t : {1, 2, 3}) {
        at::set_num_threads(t);
        ASSERT_EQ(at::get_num_threads(), t);
        runs.push_back(run_fused_ops(za, zb, VICRegLossOptions(), false));
      }
      for (size_t i = 1; i < runs.size(); ++i) {
        SCOPED_TRACE(c10::str(i + 1, " threads"));
        const double tol = dtype == torch::kFloat32 ? 1e-6 : 1e-13;
        EXPECT_LT(rel_error(runs[i].loss.item<double>(), runs[0].loss.item<double>()), tol);
        EXPECT_LT(rel_error(runs[i].grad_a, runs[0].grad_a), tol);
        EXPECT_LT(rel_error(runs[i].grad_b, runs[0].grad_b), tol);
        EXPECT_LT(rel_error(runs[i].saved[ops::kProduct], runs[0].saved[ops::kProduct]), tol);
        for (int k : {ops::kZc, ops::kMeanDiff, ops::kColsq}) {
          EXPECT_TRUE(runs[i].saved[k].equal(runs[0].saved[k])) << "saved " << k;
        }
      }
    }
  }
}

// The composite kernels are what CUDA runs, where each ATen op is at least one kernel launch, so
// at small per-GPU shapes the launches set the time. On meta tensors, the two kernels (forward,
// then backward with all four output gradients) dispatch at most 100 ATen ops for [n, d] views,
// both views going through each op as one batch (src/ops/README.md).
TEST(CompositeKernels, ForwardAndBackwardDispatchAtMostOneHundredAtenOps) {
  const auto meta = torch::TensorOptions().device(torch::kMeta);
  for (const auto& shape : std::vector<std::vector<int64_t>>{
           {512, 512}, {64, 8192}, {2048, 8192}, {16, 4, 64}}) {
    SCOPED_TRACE(c10::str(c10::IntArrayRef(shape)));
    for (const auto& preset : kPresets) {
      SCOPED_TRACE(preset);
      const auto o = VICRegLossOptions::preset(preset);
      const auto za = torch::randn(shape, meta).requires_grad_(true);
      const auto zb = torch::randn(shape, meta).requires_grad_(true);
      // The two kernels alone: the forward, then the backward with all four output gradients.
      const auto s = ops::Settings::of(o);
      auto& dispatcher = c10::Dispatcher::singleton();
      const auto forward =
          dispatcher.findSchemaOrThrow("vicreg::_vicreg_fused_composite", "").typed<FusedSig>();
      const auto backward =
          dispatcher.findSchemaOrThrow("vicreg::_vicreg_fused_backward_composite", "")
              .typed<FusedBackwardSig>();
      const auto g = torch::ones({}, meta);
      at::Tensor grad;
      const auto fused = count_aten_ops([&] {
        const at::AutoDispatchBelowADInplaceOrView below_autograd;  // (as in run_fused_ops)
        const auto out = ops::call_with(forward, s, za.detach(), zb.detach());
        grad = ops::call_with(backward, s, g, g, g, g, split(out).second);
      });
      // ([n, P, d] views pay for their layout: a transposed copy in)
      EXPECT_LE(fused, shape.size() == 2 ? 100 : 110);
      EXPECT_TRUE(grad.is_meta() && grad.numel() == 2 * za.numel());
      // (the counter sees the ops: the autograd path, the same math differentiated by
      // autograd, dispatches more)
      const auto autograd = count_aten_ops([&] {
        functional::vicreg_loss(za, zb, with_backward(o, Backward::Autograd)).backward();
      });
      EXPECT_GT(autograd, fused);
      std::printf("%s %s: %lld ATen ops fused, %lld autograd\n",
                  c10::str(c10::IntArrayRef(shape)).c_str(), preset.c_str(),
                  static_cast<long long>(fused), static_cast<long long>(autograd));
    }
  }
}

// The saved tensors are autograd's (save_for_backward): a retained graph gives the same
// gradient twice, a freed one refuses a second backward, a caller that kept the forward op's
// `saved` outputs finds them intact, and one that changed them in place gets autograd's error
// instead of a wrong gradient.
TEST(FusedBackward, RetainedGraphAndHeldSavedTensorsKeepTheirValues) {
  const auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  for (const auto& shape : kShapes) {
    SCOPED_TRACE(c10::str(c10::IntArrayRef(shape)));
    auto za = spread_embeddings(shape, opts, 51).requires_grad_(true);
    auto zb = spread_embeddings(shape, opts, 52).requires_grad_(true);
    const auto o = VICRegLossOptions();
    const auto ref = torch::autograd::grad(
        {functional::vicreg_loss(za, zb, with_backward(o, Backward::Autograd))}, {za, zb});
    const auto &ref_a = ref[0], &ref_b = ref[1];

    const auto loss = functional::vicreg_loss(za, zb, o);
    for (int round = 0; round < 2; ++round) {  // the second backward sees the same graph
      auto g = torch::autograd::grad({loss}, {za, zb}, {}, /*retain_graph=*/true);
      EXPECT_LT(rel_error(g[0], ref_a), 1e-10) << "round " << round;
      EXPECT_LT(rel_error(g[1], ref_b), 1e-10) << "round " << round;
    }
    auto g = torch::autograd::grad({loss}, {za, zb});
    EXPECT_LT(rel_error(g[0], ref_a), 1e-10);
    EXPECT_THROW(torch::autograd::grad({loss}, {za, zb}), c10::Error);  // graph freed

    const auto forward = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("vicreg::_vicreg_fused", "")
                             .typed<FusedSig>();
    const auto s = ops::Settings::of(o);
    auto [terms, saved] = split(ops::call_with(forward, s, za, zb));
    const auto l = terms[0];
    std::vector<at::Tensor> before;
    for (const auto& t : saved) before.push_back(t.clone());
    auto held = torch::autograd::grad({l}, {za, zb});
    EXPECT_LT(rel_error(held[0], ref_a), 1e-10);
    EXPECT_LT(rel_error(held[1], ref_b), 1e-10);
    for (size_t i = 0; i < saved.size(); ++i) EXPECT_TRUE(saved[i].equal(before[i])) << i;

    auto [terms2, saved2] = split(ops::call_with(forward, s, za, zb));
    const auto l2 = terms2[0];
    saved2[0].mul_(2);
    try {
      torch::autograd::grad({l2}, {za, zb});
      ADD_FAILURE() << "a saved tensor changed in place was not refused";
    } catch (const c10::Error& e) {
      EXPECT_NE(std::string(e.what()).find("modified by an inplace operation"), std::string::npos)
          << e.what();
    }
  }
}

// What the fused forward keeps for the backward: Zc of both views, small per-column vectors and
// the matrix part of the covariance gradient (Zc's shape), not the inputs as well.
TEST_P(LossTest, FusedForwardSavesCenteredViewsNotInputs) {
  const auto za = spread_embeddings({12, 40}, opts(), 23).requires_grad_(true);
  const auto zb = spread_embeddings({12, 40}, opts(), 24).requires_grad_(true);
  const auto loss = functional::vicreg_loss(za, zb);
  const auto saved = run_fused_ops(za.detach(), zb.detach(), VICRegLossOptions(), false).saved;
  ASSERT_EQ(saved.size(), 4u);
  int64_t saved_numel = 0;
  for (const auto& t : saved) saved_numel += t.numel();
  // Zc [2, 12, 40] + mean_diff [1, 1, 40] + colsq [2, 1, 40] + G Zc [2, 12, 40]
  EXPECT_EQ(saved_numel, 2 * 12 * 40 + 3 * 40 + 2 * 12 * 40);
  EXPECT_TRUE(loss.grad_fn());
}

INSTANTIATE_TEST_SUITE_P(DeviceDtype, LossTest, ::testing::ValuesIn(device_dtype_grid()),
                         device_dtype_name);

// ---- float64 only: central differences ---------------------------------------------------

class GradCheckTest : public ::testing::TestWithParam<torch::DeviceType> {
 protected:
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

INSTANTIATE_TEST_SUITE_P(Device, GradCheckTest, ::testing::ValuesIn(test_devices()), device_name);

// ---- devices without data: meta ----------------------------------------------------------

// Every registered operator, forward and backward, on meta tensors, which run the composite
// kernels (what CUDA runs, and FakeTensor under torch.compile and torch.export), on both sides
// of the Gram rule (2 (n - 1) <= d: [16, 30] and [4, 64] Gram, [16, 29] and [40, 16] direct),
// with local features, in all four dtypes. A CPU tensor that met a device tensor in a
// composite kernel would raise here. The fused ops run through the public ops, and directly.
TEST(Meta, EveryOperatorForwardAndBackwardOnBothSidesOfTheGramRuleInEveryDtype) {
  const std::vector<std::vector<int64_t>> shapes{{16, 30}, {4, 64}, {16, 29}, {40, 16}, {8, 3, 5}};
  for (auto dtype : {torch::kFloat32, torch::kFloat64, torch::kFloat16, torch::kBFloat16}) {
    const auto opts = torch::TensorOptions().device(torch::kMeta).dtype(dtype);
    const auto compute = dtype == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
    for (const auto& shape : shapes) {
      SCOPED_TRACE(c10::str(dtype, " ", c10::IntArrayRef(shape)));
      // vicreg_loss / vicreg_terms, both backwards
      for (auto b : {Backward::Fused, Backward::Autograd}) {
        auto za = torch::empty(shape, opts).requires_grad_(true);
        auto zb = torch::empty(shape, opts).requires_grad_(true);
        const auto t = functional::vicreg_terms(za, zb, VICRegLossOptions::paper().backward(b));
        for (const auto& x : {t.loss, t.invariance, t.variance, t.covariance}) {
          EXPECT_EQ(x.dim(), 0);
          EXPECT_TRUE(x.is_meta());
          EXPECT_EQ(x.scalar_type(), compute);
        }
        auto g = torch::autograd::grad({objective(t)}, {za, zb});
        for (int v = 0; v < 2; ++v) {
          EXPECT_EQ(g[v].sizes(), za.sizes());
          EXPECT_EQ(g[v].scalar_type(), dtype);
          EXPECT_TRUE(g[v].is_meta());
        }
        auto l = torch::empty(shape, opts).requires_grad_(true);
        auto g1 = torch::autograd::grad(
            {functional::vicreg_loss(l, zb.detach(), VICRegLossOptions().backward(b))}, {l});
        EXPECT_EQ(g1[0].sizes(), l.sizes());
      }
      // _vicreg_fused and _vicreg_fused_backward called directly: every saved tensor in the
      // compute dtype, of the same shape on both sides of the rule
      const auto za = torch::empty(shape, opts), zb = torch::empty(shape, opts);
      const auto run = run_fused_ops(za, zb, VICRegLossOptions(), /*composite=*/false);
      ASSERT_EQ(run.saved.size(), 4u);
      int64_t P = 1;
      for (size_t i = 1; i + 1 < shape.size(); ++i) P *= shape[i];
      const int64_t n = shape.front(), d = shape.back();
      const std::vector<std::vector<int64_t>> expected{
          {2 * P, n, d}, {P, 1, d}, {2 * P, 1, d}, {2 * P, n, d}};
      for (size_t i = 0; i < 4; ++i) {
        EXPECT_EQ(run.saved[i].sizes(), c10::IntArrayRef(expected[i])) << "saved " << i;
        EXPECT_EQ(run.saved[i].scalar_type(), compute) << "saved " << i;
      }
      EXPECT_EQ(run.grad_a.sizes(), za.sizes());
      EXPECT_EQ(run.grad_b.sizes(), zb.sizes());
      EXPECT_TRUE(run.grad_a.is_meta());
      // vcreg and _vcreg_backward (the layer's backward), channels last
      for (double cov : {1.0, 0.0}) {
        auto x = torch::empty(shape, opts).requires_grad_(true);
        VCReg layer(VCRegOptions().cov_coeff(cov));
        auto gx = torch::autograd::grad({layer->forward(x).sum()}, {x})[0];
        EXPECT_EQ(gx.sizes(), x.sizes());
        EXPECT_EQ(gx.scalar_type(), dtype);
        EXPECT_TRUE(gx.is_meta());
      }
    }
    // VCReg with channels first: N = 8 * 5 * 5 = 200 samples of 4 channels (direct) and
    // N = 2 * 1 * 1 of 64 channels (Gram)
    for (const auto& shape : std::vector<std::vector<int64_t>>{{8, 4, 5, 5}, {2, 64, 1, 1}}) {
      auto x = torch::empty(shape, opts).requires_grad_(true);
      VCReg layer(VCRegOptions().channel_dim(1));
      auto gx = torch::autograd::grad({layer->forward(x).sum()}, {x})[0];
      EXPECT_EQ(gx.sizes(), x.sizes());
      EXPECT_TRUE(gx.is_meta());
    }
  }
}

// ---- precision at the edges ---------------------------------------------------------------

class PrecisionTest : public ::testing::TestWithParam<torch::DeviceType> {
 protected:
};

// n x d rows whose covariance is the identity on their span (all nonzero singular values of the
// centered matrix equal sqrt(n-1)): the state VICReg's variance and covariance terms drive to.
at::Tensor whitened(int64_t n, int64_t d, uint64_t seed) {
  torch::manual_seed(seed);
  auto x = torch::randn({n, d}, torch::kFloat64);
  x = x - x.mean(0, true);
  auto [u, s, vh] = at::linalg_svd(x, false);
  const int64_t r = std::min(n - 1, d);
  return (u.slice(1, 0, r) * std::sqrt(n - 1.0)).mm(vh.slice(0, 0, r));
}

// float32 against float64 on the same (float32-representable) inputs: the covariance term within
// 1e-5 relative and the gradient within 1e-6 in relative norm, at n/d in {0.5, 0.9, 1, 2}. (The
// Gram path at n = d would cancel: -1.19e-3 for a true +2.04e-4 was seen at n = d = 1024.)
TEST_P(PrecisionTest, Float32CovarianceAndGradientOnWhitenedViews) {
  const int64_t d = 512;
  for (double ratio : {0.5, 0.9, 1.0, 2.0}) {
    const auto n = static_cast<int64_t>(ratio * d);
    auto a = whitened(n, d, 31);
    auto b = a + 0.1 * whitened(n, d, 32);
    a = a.to(torch::kFloat32).to(torch::kFloat64);
    b = b.to(torch::kFloat32).to(torch::kFloat64);
    for (auto path : {Backward::Fused, Backward::Autograd}) {
      const auto o = VICRegLossOptions().backward(path);
      auto run = [&](torch::ScalarType dtype) {
        auto x = a.to(GetParam(), dtype).requires_grad_(true);
        auto y = b.to(GetParam(), dtype).requires_grad_(true);
        const auto t = functional::vicreg_terms(x, y, o);
        auto g = torch::autograd::grad({t.loss}, {x, y});
        return std::tuple{t.covariance.item<double>(), torch::cat({g[0], g[1]}).to(torch::kCPU, torch::kFloat64)};
      };
      const auto [c64, g64] = run(torch::kFloat64);
      const auto [c32, g32] = run(torch::kFloat32);
      SCOPED_TRACE("n/d " + std::to_string(ratio) + (path == Backward::Fused ? " fused" : " autograd"));
      EXPECT_GT(c64, 0.0);
      EXPECT_LT(rel_error(c32, c64), 1e-5);
      EXPECT_LT(((g32 - g64).norm() / g64.norm()).item<double>(), 1e-6);
    }
  }
}

// A common offset far above the spread (float64): the fused gradient equals the autograd one to
// 1e-11, and with inv_coeff 0 its columns sum to zero to 1e-11 of its largest entry (the
// centering is exact: a compensated mean in the CPU kernel, a second pass in the composite).
TEST_P(PrecisionTest, Float64GradientUnderLargeCommonOffsets) {
  const auto opts = torch::TensorOptions().device(GetParam()).dtype(torch::kFloat64);
  auto loss_gradients = [](const at::Tensor& za, const at::Tensor& zb, const VICRegLossOptions& o) {
    auto a = za.detach().clone().requires_grad_(true);
    auto b = zb.detach().clone().requires_grad_(true);
    auto g = torch::autograd::grad({functional::vicreg_loss(a, b, o)}, {a, b});
    return std::pair{g[0], g[1]};
  };
  for (double offset : {1e4, 1e6, 1e8}) {
    const auto za = spread_embeddings({24, 16}, opts, 33) + offset;
    const auto zb = spread_embeddings({24, 16}, opts, 34) + offset;
    for (const auto& o : {VICRegLossOptions(), VICRegLossOptions().inv_coeff(0)}) {
      auto [fa, fb] = loss_gradients(za, zb, with_backward(o, Backward::Fused));
      auto [aa, ab] = loss_gradients(za, zb, with_backward(o, Backward::Autograd));
      SCOPED_TRACE("offset " + std::to_string(offset) + " inv_coeff " +
                   std::to_string(o.inv_coeff()));
      EXPECT_LT(rel_error(fa, aa), 1e-11);
      EXPECT_LT(rel_error(fb, ab), 1e-11);
      std::vector<at::Tensor> grads = {fa, fb};
      if (GetParam() == torch::kCPU) {  // the composite kernels too, on the same tensors
        const auto c = run_fused_ops(za, zb, o, true, {1, 0, 0, 0});
        EXPECT_LT(rel_error(c.grad_a, aa), 1e-11);
        EXPECT_LT(rel_error(c.grad_b, ab), 1e-11);
        grads.push_back(c.grad_a);
      }
      // Without the invariance, each column of the gradient sums to zero (the loss does not
      // change when a view moves as a whole); the invariance's gradient has column sums
      // 2 n (mean_a - mean_b) / count.
      if (o.inv_coeff() == 0) {
        for (const auto& g : grads) {
          EXPECT_LT((g.sum(0).abs().max() / g.abs().max()).item<double>(), 1e-11);
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Device, PrecisionTest, ::testing::ValuesIn(test_devices()), device_name);

// ---- reduced precision ------------------------------------------------------------------

class HalfTest : public ::testing::TestWithParam<DeviceDtype> {
 protected:
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
                         ::testing::ValuesIn(device_dtype_grid({torch::kHalf, torch::kBFloat16})),
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
  EXPECT_EQ(s.str(),
            "vicreg::VICRegLoss(convention=article, inv_coeff=25, var_coeff=25, cov_coeff=2, "
            "gamma=1, eps=0.0001, invariance=sample_mean, variance_form=var, variance_views=sum, "
            "covariance_norm=unbiased, backward=fused)");
  std::ostringstream v;
  v << *VCReg(VCRegOptions().var_coeff(0.16).channel_dim(1).active_in_eval(true));
  // (The schema's order: channel_dim before variance_form, as Python's repr prints them.)
  EXPECT_EQ(v.str(),
            "vicreg::VCReg(var_coeff=0.16, cov_coeff=1, gamma=1, eps=0.0001, channel_dim=1, "
            "variance_form=std, active_in_eval=true)");
  EXPECT_EQ(convention_name(VICRegLossOptions::paper()), "paper");
  EXPECT_EQ(convention_name(VICRegLossOptions().variance_form(VarianceForm::Var)), "custom");
  auto copy = std::dynamic_pointer_cast<VICRegLossImpl>(loss->clone());
  copy->options.cov_coeff(5);
  EXPECT_EQ(loss->options.cov_coeff(), 2);
}

}  // namespace
}  // namespace vicreg::testing
