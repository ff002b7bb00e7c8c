// The CPU kernels of the fused VICReg ops, registered for the CPU dispatch key (they win over
// the composite kernels for CPU tensors). What they do that the composite does not: the
// elementwise work in one or two passes over the data instead of several ATen ops and their
// temporaries (on a 2-core machine at n << d that work, not the GEMMs, bounds the fused path),
// accumulation in double, and a fixed summation order, so the results do not depend on the
// number of threads. The statistics, the matrices and the weights come from ops/view_stats.h,
// as in the composite kernels. float16/bfloat16 inputs are computed in float32.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "detail.h"
#include "ops/ops.h"
#include "ops/view_stats.h"

namespace vicreg {
namespace {

using Tensor = at::Tensor;

constexpr int64_t kBlock = 256;  // columns per task: accumulators stay in L1

// double -> scalar_t as float arithmetic would round it: beyond the range, +-Inf. (A plain
// static_cast of an out-of-range double to float is undefined behaviour; huge but finite
// inputs, e.g. 1e30 squared, reach it. Found by the fuzzer.)
template <typename T>
T saturate(double v) {
  if constexpr (std::is_same_v<T, double>) {
    return v;
  } else {
    constexpr double kMax = std::numeric_limits<T>::max();
    if (v > kMax) return std::numeric_limits<T>::infinity();
    if (v < -kMax) return -std::numeric_limits<T>::infinity();
    return static_cast<T>(v);
  }
}

// The column loops of center_pair, over `w` columns of one row; pointers do not alias.
// Pass 1 accumulates deviations from the block's first row (the shift): when the offset dwarfs
// the spread, x - shift is exact, so the mean shift + s/n is kept to far beyond double precision.
template <typename T>
inline void accumulate_row(const T* __restrict ra, const T* __restrict rb,
                           const double* __restrict shift_a, const double* __restrict shift_b,
                           double* __restrict sum_a, double* __restrict sum_b,
                           double* __restrict sq_d, int64_t w) {
  for (int64_t j = 0; j < w; ++j) {
    const double x = ra[j], y = rb[j];
    sum_a[j] += x - shift_a[j];
    sum_b[j] += y - shift_b[j];
    sq_d[j] += (x - y) * (x - y);
  }
}

// Pass 2: Zc = (x - shift) - s/n, written out, and its column sums of squares.
template <typename T>
inline void center_row(const T* __restrict ra, const T* __restrict rb,
                       const double* __restrict shift_a, const double* __restrict shift_b,
                       const double* __restrict rest_a, const double* __restrict rest_b,
                       T* __restrict oa, T* __restrict ob, double* __restrict sq_a,
                       double* __restrict sq_b, int64_t w) {
  for (int64_t j = 0; j < w; ++j) {
    const T ca = saturate<T>((ra[j] - shift_a[j]) - rest_a[j]);
    const T cb = saturate<T>((rb[j] - shift_b[j]) - rest_b[j]);
    oa[j] = ca;
    ob[j] = cb;
    sq_a[j] += static_cast<double>(ca) * ca;
    sq_b[j] += static_cast<double>(cb) * cb;
  }
}

// Both views centered, for [P, n, d] inputs whose last dim has stride 1 (float or double).
// Pass 1: column sums of the deviations from a shift (the first row), and sum (a - b)^2.
// Pass 2: Zc written out, and the column sums of squares of the values written. The column
// mean is shift + s/n with s small, so a common offset far above the spread leaves the
// columns of Zc summing to zero to the rounding of Zc itself (the composite kernels get there
// with a second pass instead).
ops::CenteredPair center_pair(const Tensor& a3_in, const Tensor& b3_in) {
  const auto a3 = a3_in.stride(2) == 1 ? a3_in : a3_in.contiguous();
  const auto b3 = b3_in.stride(2) == 1 ? b3_in : b3_in.contiguous();
  const int64_t P = a3.size(0), n = a3.size(1), d = a3.size(2);
  const int64_t blocks = (d + kBlock - 1) / kBlock;
  ops::CenteredPair r;
  r.zc_a = at::empty({P, n, d}, a3.options());
  r.zc_b = at::empty({P, n, d}, a3.options());
  r.colsq_a = at::empty({P, d}, a3.options());
  r.colsq_b = at::empty({P, d}, a3.options());
  r.mean_diff = at::empty({P, d}, a3.options());
  std::vector<double> partial(P * blocks, 0.0);
  AT_DISPATCH_FLOATING_TYPES(a3.scalar_type(), "vicreg_center_pair", [&] {
    const scalar_t* pa = a3.data_ptr<scalar_t>();
    const scalar_t* pb = b3.data_ptr<scalar_t>();
    scalar_t* za = r.zc_a.data_ptr<scalar_t>();
    scalar_t* zb = r.zc_b.data_ptr<scalar_t>();
    scalar_t* qa_out = r.colsq_a.data_ptr<scalar_t>();
    scalar_t* qb_out = r.colsq_b.data_ptr<scalar_t>();
    scalar_t* md_out = r.mean_diff.data_ptr<scalar_t>();
    const int64_t sa0 = a3.stride(0), sa1 = a3.stride(1), sb0 = b3.stride(0), sb1 = b3.stride(1);
    at::parallel_for(0, P * blocks, 1, [&](int64_t begin, int64_t end) {
      double shift_a[kBlock], shift_b[kBlock], rest_a[kBlock], rest_b[kBlock];
      double acc_a[kBlock], acc_b[kBlock], sq_d[kBlock];
      for (int64_t task = begin; task < end; ++task) {
        const int64_t p = task / blocks, j0 = (task % blocks) * kBlock;
        const int64_t w = std::min(kBlock, d - j0);
        const scalar_t* a_p = pa + p * sa0 + j0;
        const scalar_t* b_p = pb + p * sb0 + j0;
        for (int64_t j = 0; j < w; ++j) {
          shift_a[j] = a_p[j];
          shift_b[j] = b_p[j];
        }
        for (auto* acc : {acc_a, acc_b, sq_d}) std::fill(acc, acc + w, 0.0);
        for (int64_t i = 0; i < n; ++i) {
          accumulate_row(a_p + i * sa1, b_p + i * sb1, shift_a, shift_b, acc_a, acc_b, sq_d, w);
        }
        double task_sq = 0;
        for (int64_t j = 0; j < w; ++j) {
          rest_a[j] = acc_a[j] / static_cast<double>(n);
          rest_b[j] = acc_b[j] / static_cast<double>(n);
          md_out[p * d + j0 + j] =
              saturate<scalar_t>((shift_a[j] - shift_b[j]) + (rest_a[j] - rest_b[j]));
          task_sq += sq_d[j];
          acc_a[j] = acc_b[j] = 0;  // reused for the column sums of squares
        }
        partial[task] = task_sq;
        for (int64_t i = 0; i < n; ++i) {
          center_row(a_p + i * sa1, b_p + i * sb1, shift_a, shift_b, rest_a, rest_b,
                     za + (p * n + i) * d + j0, zb + (p * n + i) * d + j0, acc_a, acc_b, w);
        }
        for (int64_t j = 0; j < w; ++j) {
          qa_out[p * d + j0 + j] = saturate<scalar_t>(acc_a[j]);
          qb_out[p * d + j0 + j] = saturate<scalar_t>(acc_b[j]);
        }
      }
    });
  });
  double total = 0;
  for (double v : partial) total += v;  // fixed order: deterministic
  r.sq_diff = at::scalar_tensor(
      a3.scalar_type() == at::kFloat ? static_cast<double>(saturate<float>(total)) : total,
      a3.options());
  return r;
}

// One row of combine_gradients; pointers do not alias.
template <typename T>
inline void combine_row(const T* __restrict ra, const T* __restrict rb, const T* __restrict ca,
                        const T* __restrict cb, const T* __restrict md, T* __restrict oa,
                        T* __restrict ob, T w, int64_t d) {
  for (int64_t j = 0; j < d; ++j) {
    const T inv = w * (ra[j] - rb[j] + md[j]);
    oa[j] = ra[j] * ca[j] + inv;
    ob[j] = rb[j] * cb[j] - inv;
  }
}

// The elementwise part of both gradients in one pass over Zc_a and Zc_b:
//   ga = zc_a * coef_a + w (zc_a - zc_b + mean_diff),  gb = zc_b * coef_b - w (...)
// zc_* [P, n, d]; coef_*, mean_diff [P, d].
std::pair<Tensor, Tensor> combine_gradients(const Tensor& zc_a, const Tensor& zc_b,
                                            const Tensor& coef_a_in, const Tensor& coef_b_in,
                                            const Tensor& mean_diff_in, double w) {
  const auto coef_a = coef_a_in.contiguous(), coef_b = coef_b_in.contiguous();
  const auto mean_diff = mean_diff_in.contiguous();
  const auto za_c = zc_a.contiguous(), zb_c = zc_b.contiguous();
  const int64_t P = za_c.size(0), n = za_c.size(1), d = za_c.size(2);
  auto ga = at::empty_like(za_c), gb = at::empty_like(zb_c);
  AT_DISPATCH_FLOATING_TYPES(za_c.scalar_type(), "vicreg_combine_gradients", [&] {
    const scalar_t* pza = za_c.data_ptr<scalar_t>();
    const scalar_t* pzb = zb_c.data_ptr<scalar_t>();
    const scalar_t* pca = coef_a.data_ptr<scalar_t>();
    const scalar_t* pcb = coef_b.data_ptr<scalar_t>();
    const scalar_t* pmd = mean_diff.data_ptr<scalar_t>();
    scalar_t* pga = ga.data_ptr<scalar_t>();
    scalar_t* pgb = gb.data_ptr<scalar_t>();
    const scalar_t ws = saturate<scalar_t>(w);
    const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(d, 1));
    at::parallel_for(0, P * n, grain, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t p = row / n;
        combine_row(pza + row * d, pzb + row * d, pca + p * d, pcb + p * d, pmd + p * d,
                    pga + row * d, pgb + row * d, ws, d);
      }
    });
  });
  return {ga, gb};
}

ops::FusedOutputs fused_cpu(const Tensor& z_a, const Tensor& z_b, double inv_coeff,
                            double var_coeff, double cov_coeff, double gamma, double eps,
                            c10::string_view invariance, c10::string_view variance_form,
                            c10::string_view variance_views, c10::string_view covariance_norm) {
  const auto o = detail::options_from_knobs(inv_coeff, var_coeff, cov_coeff, gamma, eps,
                                            invariance, variance_form, variance_views,
                                            covariance_norm);
  detail::check_loss_call("vicreg_loss", z_a, z_b, o);
  const auto za = detail::as_positions(detail::to_compute_dtype(z_a));
  const auto zb = detail::as_positions(detail::to_compute_dtype(z_b));
  auto r = ops::vicreg_forward(center_pair(za, zb), o);
  return {r.loss, r.invariance, r.variance, r.covariance, r.saved};
}

std::tuple<Tensor, Tensor> fused_backward_cpu(
    const Tensor& g_loss, const Tensor& g_inv, const Tensor& g_var, const Tensor& g_cov,
    at::TensorList saved, double inv_coeff, double var_coeff, double cov_coeff, double gamma,
    double eps, c10::string_view invariance, c10::string_view variance_form,
    c10::string_view variance_views, c10::string_view covariance_norm) {
  const auto o = detail::options_from_knobs(inv_coeff, var_coeff, cov_coeff, gamma, eps,
                                            invariance, variance_form, variance_views,
                                            covariance_norm);
  detail::check_fused_backward_args(g_loss, g_inv, g_var, g_cov, saved);
  const auto& zc_a = saved[ops::kZcA];
  const auto& zc_b = saved[ops::kZcB];
  TORCH_CHECK(zc_a.scalar_type() == at::kFloat || zc_a.scalar_type() == at::kDouble,
              "_vicreg_fused_backward: expected float32 or float64 saved tensors, got ",
              zc_a.scalar_type());
  const int64_t n = zc_a.size(1);
  const bool gram = ops::use_gram(n, zc_a.size(2));
  const auto w = ops::vicreg_backward_weights(g_loss, g_inv, g_var, g_cov, zc_a.sizes(), o);
  const auto h = ops::hinge_of(o);
  const auto coef_a =
      ops::column_coefficients(saved[ops::kColsqA], n, gram, w.hinge, w.offdiag, h);
  const auto coef_b =
      ops::column_coefficients(saved[ops::kColsqB], n, gram, w.hinge, w.offdiag, h);
  auto [ga, gb] = combine_gradients(zc_a, zc_b, coef_a, coef_b, saved[ops::kMeanDiff],
                                    w.inv.item<double>());
  ops::add_matrix_part(ga, zc_a, saved[ops::kMatA], w.offdiag);
  ops::add_matrix_part(gb, zc_b, saved[ops::kMatB], w.offdiag);
  return {ga, gb};
}

}  // namespace

TORCH_LIBRARY_IMPL(vicreg, CPU, m) {
  m.impl("_vicreg_fused", TORCH_FN(fused_cpu));
  m.impl("_vicreg_fused_backward", TORCH_FN(fused_backward_cpu));
}

}  // namespace vicreg
