// The CPU kernels of the fused VICReg ops, registered for the CPU dispatch key (they win over
// the composite kernels for CPU tensors). What they do that the composite does not: the
// elementwise work in few passes over the data instead of several ATen ops and their
// temporaries (at n << d that work, not the GEMMs, bounds the fused path on a CPU),
// accumulation in double, and a fixed summation order, so what the passes compute does not
// depend on the number of threads (BLAS's products and ATen's sums may); and the
// symmetric k x k matrix from BLAS's syrk, half of a GEMM's work. The passes are the loops of
// ops/cpu/loops.h, in the copy for the CPU's capability; the statistics, the product with Zc
// (BLAS) and the weights come from the math core (ops/core.h), as in the composite kernels.
// float16/bfloat16 inputs are computed in float32.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>
#include <cmath>
#include <limits>
#include <vector>

#include "ops/checks.h"
#include "ops/cpu/loops.h"
#include "ops/ops.h"

// The standard BLAS syrk, declared as ATen's CPUBlas.cpp declares gemm: the BLAS that LibTorch
// links (Debian's: libblas.so.3, OpenBLAS) exports it. Weak, so that the library still loads
// with a LibTorch whose BLAS does not (then the matrix is ATen's product).
#if defined(__GNUC__)
extern "C" {
__attribute__((weak)) void ssyrk_(const char* uplo, const char* trans, const int* n, const int* k,
                                  const float* alpha, const float* a, const int* lda,
                                  const float* beta, float* c, const int* ldc);
__attribute__((weak)) void dsyrk_(const char* uplo, const char* trans, const int* n, const int* k,
                                  const double* alpha, const double* a, const int* lda,
                                  const double* beta, double* c, const int* ldc);
}
#endif

namespace vicreg::ops {
namespace {

using Tensor = at::Tensor;

// Whether LibTorch's BLAS has syrk for T (its weak symbol resolved); C = A^T A ('T') or A A^T
// ('N'), upper triangle, column-major.
template <typename T>
bool have_syrk() {
#if defined(__GNUC__)
  if constexpr (std::is_same_v<T, float>) {
    return ssyrk_ != nullptr;
  } else {
    return dsyrk_ != nullptr;
  }
#else
  return false;
#endif
}

template <typename T>
void syrk(char trans, int n, int k, const T* a, int lda, T* c) {
#if defined(__GNUC__)
  const char uplo = 'U';
  const T one = 1, zero = 0;
  if constexpr (std::is_same_v<T, float>) {
    ssyrk_(&uplo, &trans, &n, &k, &one, a, &lda, &zero, c, &n);
  } else {
    dsyrk_(&uplo, &trans, &n, &k, &one, a, &lda, &zero, c, &n);
  }
#else
  TORCH_INTERNAL_ASSERT(false, "syrk called without have_syrk()");
#endif
}

// Copies the lower triangle of the row-major k x k matrix c onto its upper one, in square tiles:
// a row of the upper triangle is a column of the lower one, and a whole column read with
// stride k leaves the cache before its neighbour is read (src/apps/README.md, bench). Tasks
// take tile rows in pairs from both ends, so that they hold about as many tiles each.
template <typename T>
void mirror_lower(T* c, int64_t k) {
  constexpr int64_t kTile = 64;
  const int64_t tiles = (k + kTile - 1) / kTile;
  const auto tile_row = [&](int64_t t) {
    const int64_t i0 = t * kTile, i1 = std::min(i0 + kTile, k);
    for (int64_t j0 = i0; j0 < k; j0 += kTile) {
      const int64_t j1 = std::min(j0 + kTile, k);
      for (int64_t i = i0; i < i1; ++i) {
        for (int64_t j = std::max(j0, i + 1); j < j1; ++j) c[i * k + j] = c[j * k + i];
      }
    }
  };
  at::parallel_for(0, (tiles + 1) / 2, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      tile_row(p);
      if (tiles - 1 - p != p) tile_row(tiles - 1 - p);
    }
  });
}

// Up to which k the 2P matrices are computed in parallel, one syrk per task, when there are at
// least as many matrices as intra-op threads: the sizes at which Debian 12's OpenBLAS (0.3.21)
// runs syrk on one thread, so that sequential calls leave the other cores idle (a smaller bound
// left a step in time between two neighbouring row counts). A BLAS that threads every syrk pays
// for the parallel calls there instead (OpenBLAS 0.3.29, at large d); MKL and an OpenMP
// OpenBLAS run one thread inside a parallel region, so with fewer matrices than threads the
// calls stay sequential and such a BLAS keeps every core (src/ops/README.md, "The k x k
// matrix", has the measurements).
template <typename T>
constexpr int64_t kMaxParallelSyrkK = std::is_same_v<T, float> ? 199 : 99;

// The k x k matrix of each position of Zc [B, n, d] that the Gram-or-direct rule picks, G = Zc
// Zc^T or M = Zc^T Zc, from BLAS's syrk: it is symmetric, so syrk computes one triangle, about
// half of a GEMM's work (src/apps/README.md, bench), and the other is copied. Undefined where
// LibTorch's BLAS has no syrk or a size does not fit BLAS's int: the core then takes ATen's mm.
Tensor symmetric_matrix(const Tensor& zc) {
  const int64_t B = zc.size(0), n = zc.size(1), d = zc.size(2);
  const bool gram = use_gram(n, d);
  const int64_t k = gram ? n : d;
  constexpr int64_t kMaxInt = std::numeric_limits<int>::max();
  if (n > kMaxInt || d > kMaxInt || n < 1 || d < 1) return {};
  Tensor mat;
  AT_DISPATCH_FLOATING_TYPES(zc.scalar_type(), "vicreg_symmetric_matrix", [&] {
    if (!have_syrk<scalar_t>()) return;
    mat = at::empty({B, k, k}, zc.options());
    const auto one = [&](int64_t b) {
      // Row-major Zc [n, d] is BLAS's column-major A [d, n] (lda = d): G = A^T A ('T'),
      // M = A A^T ('N'). syrk fills the upper triangle of its column-major C, which is the
      // lower one (j <= i) of the row-major matrix.
      scalar_t* c = mat.data_ptr<scalar_t>() + b * k * k;
      syrk<scalar_t>(gram ? 'T' : 'N', static_cast<int>(k), static_cast<int>(gram ? d : n),
                     zc.data_ptr<scalar_t>() + b * n * d, static_cast<int>(d), c);
      mirror_lower(c, k);
    };
    if (k <= kMaxParallelSyrkK<scalar_t> && B >= at::get_num_threads()) {
      at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
        for (int64_t b = begin; b < end; ++b) one(b);
      });
    } else {
      for (int64_t b = 0; b < B; ++b) one(b);
    }
  });
  return mat;
}

constexpr int64_t kBlock = 256;  // columns per task: accumulators stay in L1

template <typename T>
const cpu::RowLoops<T>& row_loops() {
  if constexpr (std::is_same_v<T, float>) {
    return cpu::loops().f32;
  } else {
    return cpu::loops().f64;
  }
}

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
  r.zc = at::empty({2 * P, n, d}, a3.options());
  r.colsq = at::empty({2 * P, 1, d}, a3.options());
  r.mean_diff = at::empty({P, 1, d}, a3.options());
  std::vector<double> partial(P * blocks, 0.0);
  AT_DISPATCH_FLOATING_TYPES(a3.scalar_type(), "vicreg_center_pair", [&] {
    const auto& loops = row_loops<scalar_t>();
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
        loops.accumulate(a_p, b_p, sa1, sb1, n, shift_a, shift_b, acc_a, acc_b, sq_d, w);
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
        loops.center(a_p, b_p, sa1, sb1, n, shift_a, shift_b, rest_a, rest_b,
                     za + p * n * d + j0, zb + p * n * d + j0, d, acc_a, acc_b, w);
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
  pair.mat = symmetric_matrix(pair.zc);
  return vicreg_forward(std::move(pair), s);
}

// grad = 4 w_offdiag product + Zc * coef +- w_inv (Za - Zb), Za - Zb = Zc_a - Zc_b + mean_diff,
// in one pass over the saved tensors: the backward's GEMM was taken in the forward (core.h,
// kProduct), so what is left reads two [2P, n, d] tensors (Zc, the product) and writes one.
Tensor fused_backward_cpu(const OptionalTensor& g_loss, const OptionalTensor& g_inv,
                          const OptionalTensor& g_var, const OptionalTensor& g_cov,
                          at::TensorList saved, const Settings& s) {
  checks::fused_backward_args(g_loss, g_inv, g_var, g_cov, saved);
  const auto& zc0 = saved[kZc];
  TORCH_CHECK(zc0.scalar_type() == at::kFloat || zc0.scalar_type() == at::kDouble,
              "_vicreg_fused_backward: expected float32 or float64 saved tensors, got ",
              zc0.scalar_type());
  for (const auto& t : saved) {
    TORCH_CHECK(t.scalar_type() == zc0.scalar_type(), "_vicreg_fused_backward: expected the "
                "saved tensors of _vicreg_fused, all of dtype ", zc0.scalar_type(),
                "; got one of dtype ", t.scalar_type());
  }
  const auto zc = zc0.contiguous(), product = saved[kProduct].contiguous();
  const auto mean_diff = saved[kMeanDiff].contiguous();
  const int64_t P = zc.size(0) / 2, n = zc.size(1), d = zc.size(2);
  const auto w = vicreg_backward_weights(g_loss, g_inv, g_var, g_cov, {P, n, d}, s,
                                         /*stacked=*/true);
  // (in Zc's dtype: output gradients of a wider dtype would otherwise widen it)
  const auto coef =
      column_coefficients(saved[kColsq], n, use_gram(n, d), w.hinge, w.offdiag, s.hinge)
          .to(zc.scalar_type())
          .contiguous();
  const double scale = 4.0 * w.offdiag.item<double>(), w_inv = w.inv.item<double>();
  auto grad = at::empty_like(zc, at::MemoryFormat::Contiguous);
  AT_DISPATCH_FLOATING_TYPES(zc.scalar_type(), "vicreg_fused_backward", [&] {
    const auto& loops = row_loops<scalar_t>();
    const int64_t half = P * n * d;
    const scalar_t* z = zc.data_ptr<scalar_t>();
    const scalar_t* q = product.data_ptr<scalar_t>();
    const scalar_t* c = coef.data_ptr<scalar_t>();
    const scalar_t* md = mean_diff.data_ptr<scalar_t>();
    scalar_t* g = grad.data_ptr<scalar_t>();
    const auto ws = cpu::saturate<scalar_t>(scale), wi = cpu::saturate<scalar_t>(w_inv);
    // Tasks of whole rows of one position, about 32K values each.
    const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(d, 1));
    at::parallel_for(0, P * n, grain, [&](int64_t begin, int64_t end) {
      while (begin < end) {
        const int64_t p = begin / n, rows = std::min(end, (p + 1) * n) - begin;
        const int64_t off = begin * d;
        loops.gradient(z + off, z + half + off, q + off, q + half + off, c + p * d, c + (P + p) * d,
                       md + p * d, ws, wi, g + off, g + half + off, rows, d);
        begin += rows;
      }
    });
  });
  return grad;
}

}  // namespace

TORCH_LIBRARY_IMPL(vicreg, CPU, m) {
  m.impl("_vicreg_fused", TORCH_FN((WithSettings<fused_cpu, FusedHead, Settings>::call)));
  m.impl("_vicreg_fused_backward",
         TORCH_FN((WithSettings<fused_backward_cpu, FusedBackwardHead, Settings>::call)));
}

}  // namespace vicreg::ops
