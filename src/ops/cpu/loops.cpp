// The CPU kernel's row loops (loops.h), compiled once per CPU capability: CMake builds this
// file with -DVICREG_CAPABILITY_NAMESPACE=<name> and that capability's instruction-set flags,
// so each copy lands in a namespace of its own. Pointers of one call do not alias.

#include "ops/cpu/loops.h"

#ifndef VICREG_CAPABILITY_NAMESPACE
#error "compile loops.cpp through CMake, which names the capability of each copy"
#endif

namespace vicreg::ops::cpu::VICREG_CAPABILITY_NAMESPACE {
namespace {

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
    sq_d[j] += (x - y) * (x - y);
  }
}

// (A double beyond float's range becomes +-Inf in the cast: IEEE rounding, defined since float
// has infinities; no select per value is needed.)
template <typename T>
inline void center_row(const T* __restrict ra, const T* __restrict rb,
                       const double* __restrict shift_a, const double* __restrict shift_b,
                       const double* __restrict rest_a, const double* __restrict rest_b,
                       T* __restrict oa, T* __restrict ob, double* __restrict sq_a,
                       double* __restrict sq_b, int64_t w) {
  for (int64_t j = 0; j < w; ++j) {
    const T ca = static_cast<T>((ra[j] - shift_a[j]) - rest_a[j]);
    const T cb = static_cast<T>((rb[j] - shift_b[j]) - rest_b[j]);
    oa[j] = ca;
    ob[j] = cb;
    sq_a[j] += static_cast<double>(ca) * ca;
    sq_b[j] += static_cast<double>(cb) * cb;
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

template <typename T>
void accumulate(const T* a, const T* b, int64_t sa, int64_t sb, int64_t n,
                const double* shift_a, const double* shift_b, double* sum_a, double* sum_b,
                double* sq_d, int64_t w) {
  for (int64_t i = 0; i < n; ++i) {
    accumulate_row(a + i * sa, b + i * sb, shift_a, shift_b, sum_a, sum_b, sq_d, w);
  }
}

template <typename T>
void center(const T* a, const T* b, int64_t sa, int64_t sb, int64_t n, const double* shift_a,
            const double* shift_b, const double* rest_a, const double* rest_b, T* oa, T* ob,
            int64_t so, double* sq_a, double* sq_b, int64_t w) {
  for (int64_t i = 0; i < n; ++i) {
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
