#pragma once
// Test helpers: independent double-precision formulas written from the conventions in
// README.md with plain loops (no code under test), central differences, and the (device, dtype)
// grid.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "vicreg/vicreg.h"

namespace vicreg::testing {

struct RefTerms {
  double loss, inv, var, cov;
};

// One view, [n, P, d] as nested loops: returns {v(Z), c(Z)} averaged over positions.
inline std::pair<double, double> reference_view(const at::Tensor& z3, double gamma, double eps,
                                                bool var_form, double cov_m) {
  auto a = z3.accessor<double, 3>();
  const int64_t n = z3.size(0), P = z3.size(1), d = z3.size(2);
  double v_sum = 0, c_sum = 0;
  for (int64_t p = 0; p < P; ++p) {
    std::vector<double> mean(d, 0.0);
    for (int64_t j = 0; j < d; ++j) {
      for (int64_t i = 0; i < n; ++i) mean[j] += a[i][p][j];
      mean[j] /= n;
    }
    double v = 0;
    for (int64_t j = 0; j < d; ++j) {
      double var = 0;
      for (int64_t i = 0; i < n; ++i) var += (a[i][p][j] - mean[j]) * (a[i][p][j] - mean[j]);
      var /= (n - 1);
      const double s = var_form ? var : std::sqrt(var + eps);
      v += std::max(0.0, gamma - s);
    }
    v_sum += v / d;
    double c = 0;
    for (int64_t j = 0; j < d; ++j) {
      for (int64_t k = 0; k < d; ++k) {
        if (j == k) continue;
        double cjk = 0;
        for (int64_t i = 0; i < n; ++i) cjk += (a[i][p][j] - mean[j]) * (a[i][p][k] - mean[k]);
        cjk /= cov_m;
        c += cjk * cjk;
      }
    }
    c_sum += c / d;
  }
  return {v_sum / P, c_sum / P};
}

// The VICReg loss and terms of the conventions for views [n, d] or [n, P..., d].
inline RefTerms reference_terms(const at::Tensor& za_in, const at::Tensor& zb_in,
                                const VICRegLossOptions& o) {
  const int64_t n = za_in.size(0), d = za_in.size(-1);
  const auto za = za_in.detach().to(torch::kCPU, torch::kFloat64).reshape({n, -1, d}).contiguous();
  const auto zb = zb_in.detach().to(torch::kCPU, torch::kFloat64).reshape({n, -1, d}).contiguous();
  const int64_t P = za.size(1);
  auto a = za.accessor<double, 3>(), b = zb.accessor<double, 3>();
  double sq = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t p = 0; p < P; ++p)
      for (int64_t j = 0; j < d; ++j) sq += (a[i][p][j] - b[i][p][j]) * (a[i][p][j] - b[i][p][j]);
  RefTerms r{};
  r.inv = o.invariance() == InvarianceNorm::ElementMean ? sq / (n * P * d) : sq / (n * P);
  const bool var_form = o.variance_form() == VarianceForm::Var;
  const double m = o.covariance_norm() == CovarianceNorm::Unbiased ? n - 1 : n;
  auto [va, ca] = reference_view(za, o.gamma(), o.eps(), var_form, m);
  auto [vb, cb] = reference_view(zb, o.gamma(), o.eps(), var_form, m);
  r.var = o.variance_views() == ViewReduction::Mean ? (va + vb) / 2 : va + vb;
  r.cov = ca + cb;
  r.loss = o.inv_coeff() * r.inv + o.var_coeff() * r.var + o.cov_coeff() * r.cov;
  return r;
}

// The VCReg penalty: samples-by-channels, C with n-1, cov / (d (d-1)).
inline double reference_vcreg_penalty(const at::Tensor& x, const VCRegOptions& o) {
  const int64_t c = x.size(o.channel_dim());
  const auto x2 = x.detach().to(torch::kCPU, torch::kFloat64).movedim(o.channel_dim(), -1)
                      .reshape({-1, 1, c}).contiguous();
  const int64_t n = x2.size(0);
  auto [v, cov_sum_over_d] =
      reference_view(x2, o.gamma(), o.eps(), o.variance_form() == VarianceForm::Var, n - 1);
  const double cov = c > 1 ? cov_sum_over_d * c / (c * (c - 1.0)) : 0.0;
  return o.var_coeff() * v + o.cov_coeff() * cov;
}

// Central differences of a scalar function of one float64 tensor.
inline at::Tensor central_difference(const std::function<double(const at::Tensor&)>& f,
                                     const at::Tensor& x, double h = 1e-6) {
  auto xd = x.detach().to(torch::kFloat64).clone().contiguous();
  auto g = torch::zeros_like(xd);
  auto flat = xd.view({-1});
  auto gflat = g.view({-1});
  for (int64_t i = 0; i < flat.numel(); ++i) {
    const double orig = flat[i].item<double>();
    flat[i] = orig + h;
    const double fp = f(xd);
    flat[i] = orig - h;
    const double fm = f(xd);
    flat[i] = orig;
    gflat[i] = (fp - fm) / (2 * h);
  }
  return g;
}

// max |a - b| / max(max |b|, floor): one relative error for a whole tensor.
inline double rel_error(const at::Tensor& a, const at::Tensor& b, double floor = 1e-12) {
  const auto ad = a.detach().to(torch::kCPU, torch::kFloat64);
  const auto bd = b.detach().to(torch::kCPU, torch::kFloat64);
  const double scale = std::max(bd.abs().max().item<double>(), floor);
  return (ad - bd).abs().max().item<double>() / scale;
}

inline double rel_error(double a, double b) {
  return std::abs(a - b) / std::max(std::abs(b), 1e-300);
}

// Embeddings whose column stds sit far from gamma = 1 (alternately ~0.3 and ~3), so the
// variance hinge has active and inactive dims and no kink within a finite difference.
inline at::Tensor spread_embeddings(std::vector<int64_t> shape, torch::TensorOptions opts,
                                    uint64_t seed) {
  torch::manual_seed(seed);
  auto z = torch::randn(shape, torch::kFloat64);
  const int64_t d = shape.back();
  auto scale = torch::ones({d}, torch::kFloat64);
  for (int64_t j = 0; j < d; ++j) scale[j] = (j % 2 == 0) ? 0.3 : 3.0;
  // Give some rows a shared direction so covariance terms are not negligible.
  auto common = torch::randn({shape[0]}, torch::kFloat64);
  for (size_t k = 1; k + 1 < shape.size(); ++k) common = common.unsqueeze(-1);
  z = z + 0.5 * common.unsqueeze(-1);
  // Re-standardize each column to its target std so no column drifts onto the hinge.
  const int64_t n = shape[0];
  auto z3 = z.reshape({n, -1, d});
  z3 = (z3 - z3.mean(0, true)) / z3.std(0, true, true) * scale;
  return z3.reshape(shape).to(opts);
}

struct DeviceDtype {
  torch::DeviceType device;
  torch::ScalarType dtype;
};

inline std::string device_dtype_name(const ::testing::TestParamInfo<DeviceDtype>& info) {
  return std::string(info.param.device == torch::kCUDA ? "CUDA" : "CPU") + "_" +
         std::string(c10::toString(info.param.dtype));
}

// The devices the suites are instantiated for: CPU, and CUDA where a GPU is found (a machine
// without one lists no CUDA cases).
inline std::vector<torch::DeviceType> test_devices() {
  if (torch::cuda::is_available()) return {torch::kCPU, torch::kCUDA};
  return {torch::kCPU};
}

// Every test device with each of `dtypes`.
inline std::vector<DeviceDtype> device_dtype_grid(
    std::vector<torch::ScalarType> dtypes = {torch::kFloat64, torch::kFloat32}) {
  std::vector<DeviceDtype> grid;
  for (auto device : test_devices()) {
    for (auto dtype : dtypes) grid.push_back({device, dtype});
  }
  return grid;
}

inline std::string device_name(const ::testing::TestParamInfo<torch::DeviceType>& info) {
  return info.param == torch::kCUDA ? "CUDA" : "CPU";
}

// Base of the (device, dtype)-parameterized suites: skips CUDA without a GPU, gives the tensor
// options and the comparison tolerance (1e-10 relative in float64, 1e-5 in float32).
class DeviceDtypeTest : public ::testing::TestWithParam<DeviceDtype> {
 protected:
  torch::TensorOptions opts() const {
    return torch::TensorOptions().device(GetParam().device).dtype(GetParam().dtype);
  }
  double tol() const { return GetParam().dtype == torch::kFloat64 ? 1e-10 : 1e-5; }
};

// Asserts that `stmt` throws a c10::Error whose message contains `needle`.
#define EXPECT_THROW_WITH(stmt, needle)                                                   \
  do {                                                                                    \
    try {                                                                                 \
      (void)(stmt);                                                                       \
      ADD_FAILURE() << "expected a c10::Error mentioning '" << (needle) << "' from " #stmt; \
    } catch (const c10::Error& e) {                                                       \
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)                   \
          << "error message was: " << e.what();                                           \
    }                                                                                     \
  } while (0)

}  // namespace vicreg::testing
