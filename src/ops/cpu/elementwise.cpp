#include "ops/cpu/elementwise.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <limits>
#include <type_traits>
#include <vector>

namespace vicreg::cpu {
namespace {

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

}  // namespace

CenteredPair center_pair(const at::Tensor& a3_in, const at::Tensor& b3_in) {
  TORCH_CHECK(a3_in.dim() == 3 && a3_in.sizes() == b3_in.sizes(),
              "center_pair: expected two [P, n, d] tensors");
  const auto a3 = a3_in.stride(2) == 1 ? a3_in : a3_in.contiguous();
  const auto b3 = b3_in.stride(2) == 1 ? b3_in : b3_in.contiguous();
  const int64_t P = a3.size(0), n = a3.size(1), d = a3.size(2);
  const int64_t blocks = (d + kBlock - 1) / kBlock;
  CenteredPair r;
  r.zc_a = at::empty({P, n, d}, a3.options());
  r.zc_b = at::empty({P, n, d}, a3.options());
  r.colsq_a = at::empty({P, d}, a3.options());
  r.colsq_b = at::empty({P, d}, a3.options());
  std::vector<double> partial(P * blocks, 0.0);
  AT_DISPATCH_FLOATING_TYPES(a3.scalar_type(), "vicreg_center_pair", [&] {
    const scalar_t* pa = a3.data_ptr<scalar_t>();
    const scalar_t* pb = b3.data_ptr<scalar_t>();
    scalar_t* za = r.zc_a.data_ptr<scalar_t>();
    scalar_t* zb = r.zc_b.data_ptr<scalar_t>();
    scalar_t* qa_out = r.colsq_a.data_ptr<scalar_t>();
    scalar_t* qb_out = r.colsq_b.data_ptr<scalar_t>();
    const int64_t sa0 = a3.stride(0), sa1 = a3.stride(1), sb0 = b3.stride(0), sb1 = b3.stride(1);
    at::parallel_for(0, P * blocks, 1, [&](int64_t begin, int64_t end) {
      double sum_a[kBlock], sum_b[kBlock], sq_d[kBlock], mean_a[kBlock], mean_b[kBlock];
      for (int64_t task = begin; task < end; ++task) {
        const int64_t p = task / blocks, j0 = (task % blocks) * kBlock;
        const int64_t w = std::min(kBlock, d - j0);
        std::fill(sum_a, sum_a + w, 0.0);
        std::fill(sum_b, sum_b + w, 0.0);
        std::fill(sq_d, sq_d + w, 0.0);
        for (int64_t i = 0; i < n; ++i) {
          const scalar_t* ra = pa + p * sa0 + i * sa1 + j0;
          const scalar_t* rb = pb + p * sb0 + i * sb1 + j0;
          for (int64_t j = 0; j < w; ++j) {
            const double x = ra[j], y = rb[j];
            sum_a[j] += x;
            sum_b[j] += y;
            sq_d[j] += (x - y) * (x - y);
          }
        }
        double task_sq = 0;
        for (int64_t j = 0; j < w; ++j) {
          mean_a[j] = sum_a[j] / n;
          mean_b[j] = sum_b[j] / n;
          task_sq += sq_d[j];
          sum_a[j] = 0;  // reused for the column sums of squares
          sum_b[j] = 0;
        }
        partial[task] = task_sq;
        for (int64_t i = 0; i < n; ++i) {
          const scalar_t* ra = pa + p * sa0 + i * sa1 + j0;
          const scalar_t* rb = pb + p * sb0 + i * sb1 + j0;
          scalar_t* oa = za + (p * n + i) * d + j0;
          scalar_t* ob = zb + (p * n + i) * d + j0;
          for (int64_t j = 0; j < w; ++j) {
            const scalar_t ca = saturate<scalar_t>(ra[j] - mean_a[j]);
            const scalar_t cb = saturate<scalar_t>(rb[j] - mean_b[j]);
            oa[j] = ca;
            ob[j] = cb;
            sum_a[j] += static_cast<double>(ca) * ca;
            sum_b[j] += static_cast<double>(cb) * cb;
          }
        }
        for (int64_t j = 0; j < w; ++j) {
          qa_out[p * d + j0 + j] = saturate<scalar_t>(sum_a[j]);
          qb_out[p * d + j0 + j] = saturate<scalar_t>(sum_b[j]);
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

at::Tensor combine_gradient(const at::Tensor& zc, const at::Tensor& coef, const at::Tensor& a3_in,
                            const at::Tensor& b3_in, double w) {
  TORCH_CHECK(zc.is_contiguous() && zc.dim() == 3, "combine_gradient: zc must be [P, n, d]");
  const auto a3 = a3_in.stride(2) == 1 ? a3_in : a3_in.contiguous();
  const auto b3 = b3_in.stride(2) == 1 ? b3_in : b3_in.contiguous();
  const auto c = coef.contiguous();
  const int64_t P = zc.size(0), n = zc.size(1), d = zc.size(2);
  auto out = at::empty_like(zc);
  AT_DISPATCH_FLOATING_TYPES(zc.scalar_type(), "vicreg_combine_gradient", [&] {
    const scalar_t* pz = zc.data_ptr<scalar_t>();
    const scalar_t* pc = c.data_ptr<scalar_t>();
    const scalar_t* pa = a3.data_ptr<scalar_t>();
    const scalar_t* pb = b3.data_ptr<scalar_t>();
    scalar_t* po = out.data_ptr<scalar_t>();
    const scalar_t ws = saturate<scalar_t>(w);
    const int64_t sa0 = a3.stride(0), sa1 = a3.stride(1), sb0 = b3.stride(0), sb1 = b3.stride(1);
    const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(d, 1));
    at::parallel_for(0, P * n, grain, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t p = row / n, i = row % n;
        const scalar_t* rz = pz + row * d;
        const scalar_t* rc = pc + p * d;
        const scalar_t* ra = pa + p * sa0 + i * sa1;
        const scalar_t* rb = pb + p * sb0 + i * sb1;
        scalar_t* ro = po + row * d;
        for (int64_t j = 0; j < d; ++j) ro[j] = rz[j] * rc[j] + ws * (ra[j] - rb[j]);
      }
    });
  });
  return out;
}

}  // namespace vicreg::cpu
