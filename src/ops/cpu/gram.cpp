// The CPU kernel's Gram-path work for float32 views of at most kMaxGramRows rows (gram.h):
// G = Zc Zc^T for the forward, and G Zc with the gradient's elementwise part for the backward,
// in tiles of vector accumulators that stay in registers.
//
// BLAS computes G as a general product of all n^2 entries; G is symmetric, so the forward
// computes the upper triangle alone, in 4 x 4 tiles of row dot products with one 16-float
// vector per entry, and writes each entry to both of its places. The backward computes G Zc in
// blocks of 64 columns (4 rows x 4 vectors of accumulators, each a broadcast of G times a row
// of the block) and writes the gradient over the block at once, with no product buffer the size
// of Zc to zero, fill and read again. The sums run in a fixed order, so the results do not
// depend on the number of threads. Written with GCC/Clang vector extensions: one 512-bit
// register per vector in the AVX-512 clone, two or four narrower ones in the others.

#include "ops/cpu/gram.h"

#include <ATen/Functions.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "ops/core.h"
#include "ops/cpu/loops.h"

// GCC notes, where it emits the clones, that returning a 64-byte vector changes the ABI without
// AVX-512; the functions that return one are always inlined, so no call passes one.
#pragma GCC diagnostic ignored "-Wpsabi"

// (__has_builtin is tested apart from its use: a compiler without it cannot parse the call.)
#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define VICREG_HAS_SHUFFLEVECTOR 1
#endif
#endif
#ifndef VICREG_HAS_SHUFFLEVECTOR
#define VICREG_HAS_SHUFFLEVECTOR 0
#endif

namespace vicreg::ops::cpu {
namespace {

using at::Tensor;

constexpr int64_t kGramChunk = 512;   // columns per pass: a tile's 4 rows i stay in L1
constexpr int64_t kProductCols = 64;   // columns per block of G Zc: four vectors

using F16 = float __attribute__((vector_size(64)));
// Inlined into the caller's clone, so that the vectors stay in its registers (out of line, they
// would pass through memory: the baseline x86-64 ABI has no 64-byte vector registers).
#define VICREG_GRAM_INLINE inline __attribute__((always_inline))

VICREG_GRAM_INLINE F16 load16(const float* p) {
  F16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

VICREG_GRAM_INLINE void store16(float* p, F16 v) { std::memcpy(p, &v, sizeof v); }

VICREG_GRAM_INLINE F16 splat(float x) { return F16{} + x; }  // (an add and a broadcast)

VICREG_GRAM_INLINE F16 load_first(const float* p, int64_t m) {  // m < 16 values, the rest zero
  F16 v = {};
  std::memcpy(&v, p, static_cast<size_t>(m) * sizeof(float));
  return v;
}

// Lane t of the result: the sum of the 16 lanes of v[t]. A transpose-and-add in four levels
// (15 adds, 30 shuffles for 16 sums; one horizontal sum each would take 64 adds and shuffles).
VICREG_GRAM_INLINE F16 lane_sums(const F16 (&v)[16]) {
#if VICREG_HAS_SHUFFLEVECTOR
  F16 a[8], b[4], c[2];
  for (int t = 0; t < 8; ++t) {  // lanes 0-7: v[2t]'s halves added; 8-15: v[2t+1]'s
    a[t] = __builtin_shufflevector(v[2 * t], v[2 * t + 1], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18,
                                   19, 20, 21, 22, 23) +
           __builtin_shufflevector(v[2 * t], v[2 * t + 1], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25,
                                   26, 27, 28, 29, 30, 31);
  }
  for (int t = 0; t < 4; ++t) {  // four lanes per vector of v
    b[t] = __builtin_shufflevector(a[2 * t], a[2 * t + 1], 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18,
                                   19, 24, 25, 26, 27) +
           __builtin_shufflevector(a[2 * t], a[2 * t + 1], 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22,
                                   23, 28, 29, 30, 31);
  }
  for (int t = 0; t < 2; ++t) {  // two
    c[t] = __builtin_shufflevector(b[2 * t], b[2 * t + 1], 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20,
                                   21, 24, 25, 28, 29) +
           __builtin_shufflevector(b[2 * t], b[2 * t + 1], 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22,
                                   23, 26, 27, 30, 31);
  }
  return __builtin_shufflevector(c[0], c[1], 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
                                 28, 30) +
         __builtin_shufflevector(c[0], c[1], 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27,
                                 29, 31);
#else
  F16 r = {};
  for (int t = 0; t < 16; ++t) {
    for (int l = 0; l < 16; ++l) r[t] += v[t][l];
  }
  return r;
#endif
}

// acc[4a + b] += the products of rows xa and yb over columns [c0, c1).
VICREG_GRAM_INLINE void tile_products(const float* const (&x)[4], const float* const (&y)[4],
                                      int64_t c0, int64_t c1, F16 (&acc)[16]) {
  int64_t c = c0;
  for (; c + 16 <= c1; c += 16) {
    const F16 x0 = load16(x[0] + c), x1 = load16(x[1] + c), x2 = load16(x[2] + c),
              x3 = load16(x[3] + c);
    const F16 y0 = load16(y[0] + c), y1 = load16(y[1] + c), y2 = load16(y[2] + c),
              y3 = load16(y[3] + c);
    acc[0] += x0 * y0, acc[1] += x0 * y1, acc[2] += x0 * y2, acc[3] += x0 * y3;
    acc[4] += x1 * y0, acc[5] += x1 * y1, acc[6] += x1 * y2, acc[7] += x1 * y3;
    acc[8] += x2 * y0, acc[9] += x2 * y1, acc[10] += x2 * y2, acc[11] += x2 * y3;
    acc[12] += x3 * y0, acc[13] += x3 * y1, acc[14] += x3 * y2, acc[15] += x3 * y3;
  }
  if (c < c1) {
    const int64_t m = c1 - c;
    F16 xs[4], ys[4];
    for (int a = 0; a < 4; ++a) xs[a] = load_first(x[a] + c, m), ys[a] = load_first(y[a] + c, m);
    for (int a = 0; a < 4; ++a) {
      for (int b = 0; b < 4; ++b) acc[4 * a + b] += xs[a] * ys[b];
    }
  }
}

// Rows i0 .. i0+3 of G against the rows j >= i0 (z: [n, d], contiguous), written to g [n, n] at
// (i, j) and (j, i). acc: scratch for ceil(n / 4) tiles of 16 accumulators.
VICREG_GRAM_INLINE void gram_tile_row(const float* z, int64_t n, int64_t d, int64_t i0, F16* acc,
                                      float* g) {
  const int64_t tiles = (n + 3) / 4, t0 = i0 / 4;
  const auto row = [&](int64_t i) { return z + std::min(i, n - 1) * d; };  // (past n: unused)
  const float* const x[4] = {row(i0), row(i0 + 1), row(i0 + 2), row(i0 + 3)};
  std::fill(acc + 16 * t0, acc + 16 * tiles, F16{});
  for (int64_t c0 = 0; c0 < d; c0 += kGramChunk) {
    const int64_t c1 = std::min(d, c0 + kGramChunk);
    for (int64_t t = t0; t < tiles; ++t) {
      const float* const y[4] = {row(4 * t), row(4 * t + 1), row(4 * t + 2), row(4 * t + 3)};
      F16 s[16];
      std::copy(acc + 16 * t, acc + 16 * t + 16, s);
      tile_products(x, y, c0, c1, s);
      std::copy(s, s + 16, acc + 16 * t);
    }
  }
  for (int64_t t = t0; t < tiles; ++t) {
    F16 s[16];
    std::copy(acc + 16 * t, acc + 16 * t + 16, s);
    const F16 r = lane_sums(s);
    for (int64_t a = 0; a < 4 && i0 + a < n; ++a) {
      for (int64_t b = 0; b < 4 && 4 * t + b < n; ++b) {
        const int64_t i = i0 + a, j = 4 * t + b;
        g[i * n + j] = g[j * n + i] = r[4 * a + b];
      }
    }
  }
}

// The 16 values at p, or (not kFull) the first `left` of them (none if left <= 0), the rest zero.
template <bool kFull>
VICREG_GRAM_INLINE F16 load_upto(const float* p, int64_t left) {
  if constexpr (kFull) {
    return load16(p);
  } else {
    return left >= 16 ? load16(p) : (left > 0 ? load_first(p, left) : F16{});
  }
}

// prod [n, kProductCols] = m [n, n] x the w <= kProductCols columns of z [n, .] (row stride
// ld) that start at z: rows of 4 x 4 vector accumulators, each a broadcast of m times a row
// of the block. Columns past w are zero (and unused).
template <bool kFull>
VICREG_GRAM_INLINE void gram_times_rows(const float* m, const float* z, int64_t n, int64_t ld,
                                        int64_t w, float* prod) {
  for (int64_t i0 = 0; i0 < n; i0 += 4) {
    const float* mr[4];
    for (int a = 0; a < 4; ++a) mr[a] = m + std::min(i0 + a, n - 1) * n;  // (past n: unused)
    F16 acc[16] = {};
    for (int64_t j = 0; j < n; ++j) {
      const float* zj = z + j * ld;
      const F16 y0 = load_upto<kFull>(zj, w), y1 = load_upto<kFull>(zj + 16, w - 16),
                y2 = load_upto<kFull>(zj + 32, w - 32), y3 = load_upto<kFull>(zj + 48, w - 48);
      const F16 s0 = splat(mr[0][j]), s1 = splat(mr[1][j]), s2 = splat(mr[2][j]),
                s3 = splat(mr[3][j]);
      acc[0] += s0 * y0, acc[1] += s0 * y1, acc[2] += s0 * y2, acc[3] += s0 * y3;
      acc[4] += s1 * y0, acc[5] += s1 * y1, acc[6] += s1 * y2, acc[7] += s1 * y3;
      acc[8] += s2 * y0, acc[9] += s2 * y1, acc[10] += s2 * y2, acc[11] += s2 * y3;
      acc[12] += s3 * y0, acc[13] += s3 * y1, acc[14] += s3 * y2, acc[15] += s3 * y3;
    }
    for (int a = 0; a < 4 && i0 + a < n; ++a) {
      for (int v = 0; v < 4; ++v) {
        store16(prod + (i0 + a) * kProductCols + 16 * v, acc[4 * a + v]);
      }
    }
  }
}

VICREG_GRAM_INLINE void gram_times_block(const float* m, const float* z, int64_t n, int64_t ld,
                                         int64_t w, float* prod) {
  if (w == kProductCols) {
    gram_times_rows<true>(m, z, n, ld, w, prod);
  } else {
    gram_times_rows<false>(m, z, n, ld, w, prod);
  }
}

VICREG_CPU_CLONES void gram_rows(const float* z, int64_t n, int64_t d, int64_t i0, F16* acc,
                                 float* g) {
  gram_tile_row(z, n, d, i0, acc, g);
}

}  // namespace

bool gram_kernels_apply(int64_t n, int64_t d, at::ScalarType dtype) {
  return use_gram(n, d) && n <= kMaxGramRows && dtype == at::kFloat;
}

// A task is one view's 4 rows of G against the rows below them; tasks are ordered long, short,
// long, ... so that each thread's contiguous share of them holds about as much work.
at::Tensor gram_matrices(const Tensor& zc) {
  TORCH_INTERNAL_ASSERT(zc.dim() == 3 && zc.scalar_type() == at::kFloat && zc.is_contiguous() &&
                        zc.size(1) <= kMaxGramRows);
  const int64_t B = zc.size(0), n = zc.size(1), d = zc.size(2), tiles = (n + 3) / 4;
  auto g = at::empty({B, n, n}, zc.options());
  const float* z = zc.data_ptr<float>();
  float* pg = g.data_ptr<float>();
  at::parallel_for(0, B * tiles, 1, [&](int64_t begin, int64_t end) {
    const std::unique_ptr<F16[]> acc(new F16[16 * tiles]);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / tiles, q = task % tiles;
      const int64_t t = q % 2 == 0 ? q / 2 : tiles - 1 - q / 2;
      gram_rows(z + b * n * d, n, d, 4 * t, acc.get(), pg + b * n * n);
    }
  });
  return g;
}

namespace {

VICREG_CPU_CLONES void gram_gradient_block(float* za, float* zb, const float* ma, const float* mb,
                                           const float* ca, const float* cb, const float* md,
                                           float w_inv, int64_t n, int64_t d, int64_t cols,
                                           float* prod) {
  float* pb = prod + n * kProductCols;
  gram_times_block(ma, za, n, d, cols, prod);
  gram_times_block(mb, zb, n, d, cols, pb);
  for (int64_t i = 0; i < n; ++i) {
    gradient_row<true>(za + i * d, zb + i * d, prod + i * kProductCols,
                       pb + i * kProductCols, ca, cb, md, w_inv, cols);
  }
}

}  // namespace

// A task is a block of kProductCols columns of one position: its G Zc comes from that block
// alone, into a buffer of the task's own, and the gradient is then written over the block.
void gram_backward_(const Tensor& zc, const Tensor& mat, const Tensor& coef,
                    const Tensor& mean_diff, float w) {
  for (const auto* t : {&zc, &mat, &coef, &mean_diff}) {
    TORCH_INTERNAL_ASSERT(t->dim() == 3 && t->scalar_type() == at::kFloat && t->is_contiguous());
  }
  TORCH_INTERNAL_ASSERT(zc.size(1) <= kMaxGramRows && mat.size(1) == zc.size(1));
  const int64_t P = zc.size(0) / 2, n = zc.size(1), d = zc.size(2);
  const int64_t blocks = (d + kProductCols - 1) / kProductCols;
  float* z = zc.data_ptr<float>();
  const float* m = mat.data_ptr<float>();
  const float* c = coef.data_ptr<float>();
  const float* md = mean_diff.data_ptr<float>();
  at::parallel_for(0, P * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> prod(static_cast<size_t>(2 * n * kProductCols));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t p = task / blocks, c0 = (task % blocks) * kProductCols;
      const int64_t a = p, b = P + p;  // positions of view a and view b in the batch
      gram_gradient_block(z + a * n * d + c0, z + b * n * d + c0, m + a * n * n, m + b * n * n,
                          c + a * d + c0, c + b * d + c0, md + p * d + c0, w, n, d,
                          std::min(kProductCols, d - c0), prod.data());
    }
  });
}

}  // namespace vicreg::ops::cpu
