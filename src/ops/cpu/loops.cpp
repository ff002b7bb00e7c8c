// The CPU kernel's row loops (loops.h), compiled once per CPU capability: CMake builds this
// file with -DVICREG_CAPABILITY_NAMESPACE=<name> and that capability's instruction-set flags,
// so each copy lands in a namespace of its own. No memory that a call writes is reachable
// through two of its pointers (input rows may coincide, a stride-0 view or z_a that is z_b, and
// are only read), which is what the restrict parameters below promise.

#include "ops/cpu/loops.h"

#ifndef VICREG_CAPABILITY_NAMESPACE
#error "compile loops.cpp through CMake, which names the capability of each copy"
#endif

namespace vicreg::ops::cpu::VICREG_CAPABILITY_NAMESPACE {
namespace {

// A value's square in double (exact for a float).
template <typename T>
inline double square(T v) {
  return static_cast<double>(v) * v;
}

// One row each: the pointers are restrict parameters, which GCC reads as no-alias (restrict
// locals it may not), so that the loops vectorize without runtime alias checks.
template <typename T>
inline void accumulate_row(const T* __restrict ra, const T* __restrict rb,
                           const double* __restrict shift_a, const double* __restrict shift_b,
                           double* __restrict sum_a, double* __restrict sum_b,
                           double* __restrict sq_d, int64_t w) {
  for (int64_t j = 0; j < w; ++j) {
    const double x = ra[j], y = rb[j];
    sum_a[j] += x - shift_a[j];
    sum_b[j] += y - shift_b[j];
    sq_d[j] += square(x - y);
  }
}

// One centered value: the shift exactly, then the small rest, rounded once to T. (A double
// beyond float's range becomes +-Inf in the cast: IEEE rounding, defined since float has
// infinities; no select per value is needed.)
template <typename T>
inline T centered(T x, double shift, double rest) {
  return static_cast<T>((x - shift) - rest);
}

template <typename T>
inline void center_row(const T* __restrict ra, const T* __restrict rb,
                       const double* __restrict shift_a, const double* __restrict shift_b,
                       const double* __restrict rest_a, const double* __restrict rest_b,
                       T* __restrict oa, T* __restrict ob, double* __restrict sq_a,
                       double* __restrict sq_b, int64_t w) {
  for (int64_t j = 0; j < w; ++j) {
    const T ca = centered(ra[j], shift_a[j], rest_a[j]);
    const T cb = centered(rb[j], shift_b[j], rest_b[j]);
    oa[j] = ca;
    ob[j] = cb;
    sq_a[j] += square(ca);
    sq_b[j] += square(cb);
  }
}

template <typename T>
inline void gradient_row(const T* __restrict za, const T* __restrict zb, const T* __restrict qa,
                         const T* __restrict qb, const T* __restrict ca, const T* __restrict cb,
                         const T* __restrict md, T s, T w_inv, T* __restrict ga,
                         T* __restrict gb, int64_t d) {
  for (int64_t j = 0; j < d; ++j) {
    const T x = za[j], y = zb[j];
    const T inv = w_inv * (x - y + md[j]);
    ga[j] = s * qa[j] + x * ca[j] + inv;
    gb[j] = s * qb[j] + y * cb[j] - inv;
  }
}

// Several rows per pass over the columns, with each column's sums in locals across them: the
// row-at-a-time loops were bound by a load and a store of every column sum per row, more than by
// the arithmetic. Each column still adds its rows in order, so the results are those of one row
// at a time, bit for bit. The rows are separate restrict parameters, not an array of row
// pointers, because GCC ignores restrict on array elements and would not vectorize.
template <typename T>
inline void accumulate_4rows(const T* __restrict a0, const T* __restrict a1,
                             const T* __restrict a2, const T* __restrict a3,
                             const T* __restrict b0, const T* __restrict b1,
                             const T* __restrict b2, const T* __restrict b3,
                             const double* __restrict shift_a, const double* __restrict shift_b,
                             double* __restrict sum_a, double* __restrict sum_b,
                             double* __restrict sq_d, int64_t w) {
  for (int64_t j = 0; j < w; ++j) {
    const double x0 = a0[j], x1 = a1[j], x2 = a2[j], x3 = a3[j];
    const double y0 = b0[j], y1 = b1[j], y2 = b2[j], y3 = b3[j];
    const double shift_aj = shift_a[j], shift_bj = shift_b[j];
    double acc_a = sum_a[j], acc_b = sum_b[j], acc_d = sq_d[j];
    acc_a += x0 - shift_aj;
    acc_a += x1 - shift_aj;
    acc_a += x2 - shift_aj;
    acc_a += x3 - shift_aj;
    acc_b += y0 - shift_bj;
    acc_b += y1 - shift_bj;
    acc_b += y2 - shift_bj;
    acc_b += y3 - shift_bj;
    acc_d += square(x0 - y0);
    acc_d += square(x1 - y1);
    acc_d += square(x2 - y2);
    acc_d += square(x3 - y3);
    sum_a[j] = acc_a;
    sum_b[j] = acc_b;
    sq_d[j] = acc_d;
  }
}

// Two rows in the second pass: it also writes each value, and four rows measured no faster.
template <typename T>
inline void center_2rows(const T* __restrict a0, const T* __restrict a1, const T* __restrict b0,
                         const T* __restrict b1, const double* __restrict shift_a,
                         const double* __restrict shift_b, const double* __restrict rest_a,
                         const double* __restrict rest_b, T* __restrict oa0, T* __restrict oa1,
                         T* __restrict ob0, T* __restrict ob1, double* __restrict sq_a,
                         double* __restrict sq_b, int64_t w) {
  for (int64_t j = 0; j < w; ++j) {
    const double shift_aj = shift_a[j], shift_bj = shift_b[j];
    const double rest_aj = rest_a[j], rest_bj = rest_b[j];
    const T ca0 = centered(a0[j], shift_aj, rest_aj), ca1 = centered(a1[j], shift_aj, rest_aj);
    const T cb0 = centered(b0[j], shift_bj, rest_bj), cb1 = centered(b1[j], shift_bj, rest_bj);
    oa0[j] = ca0;
    oa1[j] = ca1;
    ob0[j] = cb0;
    ob1[j] = cb1;
    double acc_a = sq_a[j], acc_b = sq_b[j];
    acc_a += square(ca0);
    acc_a += square(ca1);
    acc_b += square(cb0);
    acc_b += square(cb1);
    sq_a[j] = acc_a;
    sq_b[j] = acc_b;
  }
}

template <typename T>
void accumulate(const T* a, const T* b, int64_t sa, int64_t sb, int64_t n,
                const double* shift_a, const double* shift_b, double* sum_a, double* sum_b,
                double* sq_d, int64_t w) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    accumulate_4rows(a + i * sa, a + (i + 1) * sa, a + (i + 2) * sa, a + (i + 3) * sa,
                     b + i * sb, b + (i + 1) * sb, b + (i + 2) * sb, b + (i + 3) * sb, shift_a,
                     shift_b, sum_a, sum_b, sq_d, w);
  }
  for (; i < n; ++i) {
    accumulate_row(a + i * sa, b + i * sb, shift_a, shift_b, sum_a, sum_b, sq_d, w);
  }
}

template <typename T>
void center(const T* a, const T* b, int64_t sa, int64_t sb, int64_t n, const double* shift_a,
            const double* shift_b, const double* rest_a, const double* rest_b, T* oa, T* ob,
            int64_t so, double* sq_a, double* sq_b, int64_t w) {
  int64_t i = 0;
  for (; i + 2 <= n; i += 2) {
    center_2rows(a + i * sa, a + (i + 1) * sa, b + i * sb, b + (i + 1) * sb, shift_a, shift_b,
                 rest_a, rest_b, oa + i * so, oa + (i + 1) * so, ob + i * so, ob + (i + 1) * so,
                 sq_a, sq_b, w);
  }
  for (; i < n; ++i) {
    center_row(a + i * sa, b + i * sb, shift_a, shift_b, rest_a, rest_b, oa + i * so,
               ob + i * so, sq_a, sq_b, w);
  }
}

template <typename T>
void gradient(const T* za, const T* zb, const T* qa, const T* qb, const T* ca, const T* cb,
              const T* md, T s, T w_inv, T* ga, T* gb, int64_t n, int64_t d) {
  for (int64_t i = 0; i < n; ++i) {
    gradient_row(za + i * d, zb + i * d, qa + i * d, qb + i * d, ca, cb, md, s, w_inv,
                 ga + i * d, gb + i * d, d);
  }
}

template <typename T>
constexpr RowLoops<T> row_loops() {
  return {&accumulate<T>, &center<T>, &gradient<T>};
}

}  // namespace

const Loops& loops() {
  static const Loops table{row_loops<float>(), row_loops<double>()};
  return table;
}

}  // namespace vicreg::ops::cpu::VICREG_CAPABILITY_NAMESPACE
