// The CPU kernels of the fused VICReg ops, registered for the CPU dispatch key (they win over
// the composite kernels for CPU tensors). What they do that the composite does not: the
// elementwise work in one or two passes over the data instead of several ATen ops and their
// temporaries (at n << d that work, not the GEMMs, bounds the fused path on a CPU),
// accumulation in double, and a fixed summation order, so the results do not depend on the
// number of threads. The statistics, the matrices and the weights come from the math core
// (ops/core.h), as in the composite kernels, except that on the Gram path float32 views of few
// rows take the kernels of ops/cpu/gram.cpp (G's symmetric half, and G Zc fused with the
// gradient) instead of BLAS. float16/bfloat16 inputs are computed in float32.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "checks.h"
#include "ops/cpu/gram.h"
#include "ops/cpu/loops.h"
#include "ops/ops.h"

namespace vicreg::ops {
namespace {

using Tensor = at::Tensor;

constexpr int64_t kBlock = 256;  // columns per task: accumulators stay in L1

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
    const T ca = cpu::saturate<T>((ra[j] - shift_a[j]) - rest_a[j]);
    const T cb = cpu::saturate<T>((rb[j] - shift_b[j]) - rest_b[j]);
    oa[j] = ca;
    ob[j] = cb;
    sq_a[j] += static_cast<double>(ca) * ca;
    sq_b[j] += static_cast<double>(cb) * cb;
  }
}

template <typename T>
inline void accumulate_rows(const T* a, const T* b, int64_t sa, int64_t sb, int64_t n,
                            const double* shift_a, const double* shift_b, double* sum_a,
                            double* sum_b, double* sq_d, int64_t w) {
  for (int64_t i = 0; i < n; ++i) {
    accumulate_row(a + i * sa, b + i * sb, shift_a, shift_b, sum_a, sum_b, sq_d, w);
  }
}

template <typename T>
inline void center_rows(const T* a, const T* b, int64_t sa, int64_t sb, int64_t n,
                        const double* shift_a, const double* shift_b, const double* rest_a,
                        const double* rest_b, T* oa, T* ob, int64_t so, double* sq_a,
                        double* sq_b, int64_t w) {
  for (int64_t i = 0; i < n; ++i) {
    center_row(a + i * sa, b + i * sb, shift_a, shift_b, rest_a, rest_b, oa + i * so,
               ob + i * so, sq_a, sq_b, w);
  }
}

#define VICREG_ROW_LOOPS(T)                                                                      \
  VICREG_CPU_CLONES void pass1(const T* a, const T* b, int64_t sa, int64_t sb, int64_t n,       \
                               const double* shift_a, const double* shift_b, double* sum_a,    \
                               double* sum_b, double* sq_d, int64_t w) {                        \
    accumulate_rows(a, b, sa, sb, n, shift_a, shift_b, sum_a, sum_b, sq_d, w);                  \
  }                                                                                              \
  VICREG_CPU_CLONES void pass2(const T* a, const T* b, int64_t sa, int64_t sb, int64_t n,       \
                               const double* shift_a, const double* shift_b,                    \
                               const double* rest_a, const double* rest_b, T* oa, T* ob,        \
                               int64_t so, double* sq_a, double* sq_b, int64_t w) {            \
    center_rows(a, b, sa, sb, n, shift_a, shift_b, rest_a, rest_b, oa, ob, so, sq_a, sq_b, w);  \
  }
VICREG_ROW_LOOPS(float)
VICREG_ROW_LOOPS(double)
#undef VICREG_ROW_LOOPS

// Both views centered, for [P, n, d] inputs whose last dim has stride 1 (float or double).
// Pass 1: column sums of the deviations from a shift (the first row), and sum (a - b)^2.
// Pass 2: Zc written out, and the column sums of squares of the values written. The column
// mean is shift + s/n with s small, so a common offset far above the spread leaves the
// columns of Zc summing to zero to the rounding of Zc itself (the composite kernels get there
// with a second pass instead).
CenteredPair center_pair(const Tensor& a3_in, const Tensor& b3_in) {
  const auto a3 = a3_in.stride(2) == 1 ? a3_in : a3_in.contiguous();
  const auto b3 = b3_in.stride(2) == 1 ? b3_in : b3_in.contiguous();
  const int64_t P = a3.size(0), n = a3.size(1), d = a3.size(2);
  const int64_t blocks = (d + kBlock - 1) / kBlock;
  CenteredPair r;  // both views in one batch: a's P positions, then b's
  // (a kept buffer: Zc becomes the gradient, which the caller drops after the step, so the
  // next step writes the same pages instead of faulting in fresh ones)
  r.zc = workspace(2 * P * n * d, a3.options()).view({2 * P, n, d});
  r.colsq = at::empty({2 * P, 1, d}, a3.options());
  r.mean_diff = at::empty({P, 1, d}, a3.options());
  std::vector<double> partial(P * blocks, 0.0);
  AT_DISPATCH_FLOATING_TYPES(a3.scalar_type(), "vicreg_center_pair", [&] {
    const scalar_t* pa = a3.data_ptr<scalar_t>();
    const scalar_t* pb = b3.data_ptr<scalar_t>();
    scalar_t* za = r.zc.data_ptr<scalar_t>();
    scalar_t* zb = za + P * n * d;
    scalar_t* qa_out = r.colsq.data_ptr<scalar_t>();
    scalar_t* qb_out = qa_out + P * d;
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
        pass1(a_p, b_p, sa1, sb1, n, shift_a, shift_b, acc_a, acc_b, sq_d, w);
        double task_sq = 0;
        for (int64_t j = 0; j < w; ++j) {
          rest_a[j] = acc_a[j] / static_cast<double>(n);
          rest_b[j] = acc_b[j] / static_cast<double>(n);
          md_out[p * d + j0 + j] =
              cpu::saturate<scalar_t>((shift_a[j] - shift_b[j]) + (rest_a[j] - rest_b[j]));
          task_sq += sq_d[j];
          acc_a[j] = acc_b[j] = 0;  // reused for the column sums of squares
        }
        partial[task] = task_sq;
        pass2(a_p, b_p, sa1, sb1, n, shift_a, shift_b, rest_a, rest_b, za + p * n * d + j0,
              zb + p * n * d + j0, d, acc_a, acc_b, w);
        for (int64_t j = 0; j < w; ++j) {
          qa_out[p * d + j0 + j] = cpu::saturate<scalar_t>(acc_a[j]);
          qb_out[p * d + j0 + j] = cpu::saturate<scalar_t>(acc_b[j]);
        }
      }
    });
  });
  double total = 0;
  for (double v : partial) total += v;  // fixed order: deterministic
  r.sq_diff = at::scalar_tensor(
      a3.scalar_type() == at::kFloat ? static_cast<double>(cpu::saturate<float>(total)) : total,
      a3.options());
  return r;
}

FusedOutputs fused_cpu(const Tensor& z_a, const Tensor& z_b, const Settings& s) {
  checks::loss_call("vicreg_loss", z_a, z_b, s);
  const auto za = as_positions(to_compute_dtype(z_a));
  const auto zb = as_positions(to_compute_dtype(z_b));
  auto pair = center_pair(za, zb);
  if (cpu::gram_kernels_apply(za.size(1), za.size(2), za.scalar_type())) {
    pair.mat = cpu::gram_matrices(pair.zc);
  }
  return vicreg_forward(std::move(pair), s);
}

// The backward is computed in place, over the saved tensors, block by block: a block of the
// gradient is the product of the k x k matrix with a block of Zc (into a scratch buffer the size
// of a few cache lines' worth of rows), plus the elementwise part, and it is written over that
// block of Zc, which no later block reads. So the backward allocates no [n, d] buffer, and the
// elementwise work reads what the product just touched. Gram path (k = n): blocks of columns,
// grad[:, J] = 4w G Zc[:, J] + Zc[:, J] diag(coef_J) + inv. Direct path (k = d): blocks of rows,
// grad[I, :] = Zc[I, :] (4w M + diag(coef)) + inv: the per-column coefficient goes into the zero
// diagonal of M, so the elementwise part is the invariance term alone.
constexpr int64_t kScratchBytes = 1 << 21;  // per view: the product's block stays in L2/L3

// Rows [begin, end) of a block (row strides: d for Zc, ld for the products), in the clones of
// the passes of center_pair.
#define VICREG_GRADIENT_ROWS(T, kCoef, name)                                                     \
  VICREG_CPU_CLONES void name(T* za, T* zb, const T* pa, const T* pb, const T* ca, const T* cb, \
                              const T* md, T w, int64_t cols, int64_t d, int64_t ld,             \
                              int64_t begin, int64_t end) {                                      \
    for (int64_t i = begin; i < end; ++i) {                                                      \
      cpu::gradient_row<kCoef>(za + i * d, zb + i * d, pa + i * ld, pb + i * ld, ca, cb, md, w, \
                               cols);                                                            \
    }                                                                                            \
  }
VICREG_GRADIENT_ROWS(float, true, gradient_rows_coef)
VICREG_GRADIENT_ROWS(double, true, gradient_rows_coef)
VICREG_GRADIENT_ROWS(float, false, gradient_rows)
VICREG_GRADIENT_ROWS(double, false, gradient_rows)
#undef VICREG_GRADIENT_ROWS

// The elementwise part for one block: rows [r0, r0 + rows), columns [c0, c0 + cols) of position
// p; the products are in prod_a / prod_b ([rows, cols], row stride `ld`).
template <bool kCoef>
void gradient_block(const Tensor& zc_a, const Tensor& zc_b, const Tensor& prod_a,
                    const Tensor& prod_b, const Tensor& coef_a, const Tensor& coef_b,
                    const Tensor& mean_diff, double w, int64_t p, int64_t r0, int64_t rows,
                    int64_t c0, int64_t cols) {
  const int64_t n = zc_a.size(1), d = zc_a.size(2), ld = prod_a.stride(0);
  AT_DISPATCH_FLOATING_TYPES(zc_a.scalar_type(), "vicreg_gradient_block", [&] {
    scalar_t* za = zc_a.data_ptr<scalar_t>() + (p * n + r0) * d + c0;
    scalar_t* zb = zc_b.data_ptr<scalar_t>() + (p * n + r0) * d + c0;
    const scalar_t* pa = prod_a.data_ptr<scalar_t>();
    const scalar_t* pb = prod_b.data_ptr<scalar_t>();
    const scalar_t* ca = kCoef ? coef_a.data_ptr<scalar_t>() + p * d + c0 : nullptr;
    const scalar_t* cb = kCoef ? coef_b.data_ptr<scalar_t>() + p * d + c0 : nullptr;
    const scalar_t* md = mean_diff.data_ptr<scalar_t>() + p * d + c0;
    const scalar_t ws = cpu::saturate<scalar_t>(w);
    const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(cols, 1));
    at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
      if constexpr (kCoef) {
        gradient_rows_coef(za, zb, pa, pb, ca, cb, md, ws, cols, d, ld, begin, end);
      } else {
        gradient_rows(za, zb, pa, pb, ca, cb, md, ws, cols, d, ld, begin, end);
      }
    });
  });
}

void fused_backward_inplace_cpu(const OptionalTensor& g_loss, const OptionalTensor& g_inv,
                                const OptionalTensor& g_var, const OptionalTensor& g_cov,
                                at::TensorList saved, const Settings& s) {
  constexpr const char* fn = "_vicreg_fused_backward_";
  checks::fused_backward_args(g_loss, g_inv, g_var, g_cov, saved);
  const auto& zc = saved[kZc];
  TORCH_CHECK(zc.scalar_type() == at::kFloat || zc.scalar_type() == at::kDouble, fn,
              ": expected float32 or float64 saved tensors, got ", zc.scalar_type());
  for (const auto& t : saved) {
    TORCH_CHECK(t.scalar_type() == zc.scalar_type() && t.is_contiguous(), fn,
                ": expected the contiguous saved tensors of _vicreg_fused, all of dtype ",
                zc.scalar_type(), "; got one of dtype ", t.scalar_type(), " and strides ",
                t.strides());
  }
  for (int i = 0; i < kNumSaved; ++i) {  // it writes zc and mat, and reads the others after
    for (int written : {kZc, kMat}) {
      TORCH_CHECK(i == written || !saved[i].is_alias_of(saved[written]), fn, ": saved tensors ",
                  i, " and ", written, " share memory; the in-place backward writes ", written);
    }
  }
  const int64_t P = zc.size(0) / 2, n = zc.size(1), d = zc.size(2);
  const bool gram = use_gram(n, d);
  const auto w = vicreg_backward_weights(g_loss, g_inv, g_var, g_cov, {P, n, d}, s,
                                         /*stacked=*/true);
  const auto coef =
      column_coefficients(saved[kColsq], n, gram, w.hinge, w.offdiag, s.hinge).contiguous();
  const auto& mat = saved[kMat];
  mat.mul_(w.offdiag * 4.0);
  if (!gram) mat.diagonal(0, 1, 2).copy_(coef.squeeze(1));  // M's zero diagonal: the coefficients
  const double w_inv = w.inv.item<double>();
  if (cpu::gram_kernels_apply(n, d, zc.scalar_type())) {
    cpu::gram_backward_(zc, mat, coef, saved[kMeanDiff], cpu::saturate<float>(w_inv));
    return;
  }
  const int64_t per_view = std::max<int64_t>(kScratchBytes / zc.element_size(), 1);
  // (blocks of at least 16 columns or rows, or all there are)
  const int64_t cols = gram ? std::clamp<int64_t>(per_view / n, std::min<int64_t>(16, d), d) : d;
  const int64_t rows = gram ? n : std::clamp<int64_t>(per_view / d, std::min<int64_t>(16, n), n);
  const auto scratch = workspace(2 * rows * cols, zc.options()).view({2, rows, cols});
  const auto zc_a = pair_half(zc, 0), zc_b = pair_half(zc, 1);
  const auto coef_a = pair_half(coef, 0), coef_b = pair_half(coef, 1);
  for (int64_t p = 0; p < P; ++p) {
    const auto za = zc_a.select(0, p), zb = zc_b.select(0, p);
    const auto ma = mat.select(0, p), mb = mat.select(0, P + p);
    for (int64_t r0 = 0; r0 < n; r0 += rows) {
      for (int64_t c0 = 0; c0 < d; c0 += cols) {
        const int64_t h_rows = std::min(rows, n - r0), w_cols = std::min(cols, d - c0);
        auto prod_a = scratch.select(0, 0).narrow(0, 0, h_rows).narrow(1, 0, w_cols);
        auto prod_b = scratch.select(0, 1).narrow(0, 0, h_rows).narrow(1, 0, w_cols);
        if (gram) {
          at::mm_out(prod_a, ma, za.narrow(1, c0, w_cols));
          at::mm_out(prod_b, mb, zb.narrow(1, c0, w_cols));
          gradient_block<true>(zc_a, zc_b, prod_a, prod_b, coef_a, coef_b, saved[kMeanDiff],
                               w_inv, p, r0, h_rows, c0, w_cols);
        } else {
          at::mm_out(prod_a, za.narrow(0, r0, h_rows), ma);
          at::mm_out(prod_b, zb.narrow(0, r0, h_rows), mb);
          gradient_block<false>(zc_a, zc_b, prod_a, prod_b, coef_a, coef_b, saved[kMeanDiff],
                                w_inv, p, r0, h_rows, c0, w_cols);
        }
      }
    }
  }
}

// Out of place: the in-place kernel on copies of what it overwrites.
Tensor fused_backward_cpu(const OptionalTensor& g_loss, const OptionalTensor& g_inv,
                          const OptionalTensor& g_var, const OptionalTensor& g_cov,
                          at::TensorList saved, const Settings& s) {
  checks::fused_backward_args(g_loss, g_inv, g_var, g_cov, saved);
  std::vector<Tensor> own(saved.begin(), saved.end());
  for (int i : {kZc, kMat}) own[i] = own[i].clone(at::MemoryFormat::Contiguous);
  for (int i : {kMeanDiff, kColsq}) own[i] = own[i].contiguous();
  fused_backward_inplace_cpu(g_loss, g_inv, g_var, g_cov, own, s);
  return own[kZc];
}

}  // namespace

TORCH_LIBRARY_IMPL(vicreg, CPU, m) {
  m.impl("_vicreg_fused", TORCH_FN((WithSettings<fused_cpu, FusedHead, Settings>::call)));
  m.impl("_vicreg_fused_backward",
         TORCH_FN((WithSettings<fused_backward_cpu, FusedBackwardHead, Settings>::call)));
  m.impl("_vicreg_fused_backward_", TORCH_FN((WithSettings<fused_backward_inplace_cpu,
                                                           FusedBackwardInplaceHead,
                                                           Settings>::call)));
}

}  // namespace vicreg::ops
