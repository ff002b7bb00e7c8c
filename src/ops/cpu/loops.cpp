// The CPU kernel's row loops (loops.h), compiled once per CPU capability: CMake builds this
// file with -DVICREG_CAPABILITY_NAMESPACE=<name> and that capability's instruction-set flags,
// so each copy lands in a namespace of its own. Pointers of one call do not alias.

#include "ops/cpu/loops.h"

#ifndef VICREG_CAPABILITY_NAMESPACE
#error "compile loops.cpp through CMake, which names the capability of each copy"
#endif

namespace vicreg::ops::cpu::VICREG_CAPABILITY_NAMESPACE {
namespace {

template <typename T>
void accumulate(const T* a, const T* b, int64_t sa, int64_t sb, int64_t n,
                const double* __restrict shift_a, const double* __restrict shift_b,
                double* __restrict sum_a, double* __restrict sum_b, double* __restrict sq_d,
                int64_t w) {
  for (int64_t i = 0; i < n; ++i) {
    const T* __restrict ra = a + i * sa;
    const T* __restrict rb = b + i * sb;
    for (int64_t j = 0; j < w; ++j) {
      const double x = ra[j], y = rb[j];
      sum_a[j] += x - shift_a[j];
      sum_b[j] += y - shift_b[j];
      sq_d[j] += (x - y) * (x - y);
    }
  }
}

// (A double beyond float's range becomes +-Inf in the cast: IEEE rounding, defined since float
// has infinities; no select per value is needed.)
template <typename T>
void center(const T* a, const T* b, int64_t sa, int64_t sb, int64_t n,
            const double* __restrict shift_a, const double* __restrict shift_b,
            const double* __restrict rest_a, const double* __restrict rest_b, T* oa, T* ob,
            int64_t so, double* __restrict sq_a, double* __restrict sq_b, int64_t w) {
  for (int64_t i = 0; i < n; ++i) {
    const T* __restrict ra = a + i * sa;
    const T* __restrict rb = b + i * sb;
    T* __restrict wa = oa + i * so;
    T* __restrict wb = ob + i * so;
    for (int64_t j = 0; j < w; ++j) {
      const T ca = static_cast<T>((ra[j] - shift_a[j]) - rest_a[j]);
      const T cb = static_cast<T>((rb[j] - shift_b[j]) - rest_b[j]);
      wa[j] = ca;
      wb[j] = cb;
      sq_a[j] += static_cast<double>(ca) * ca;
      sq_b[j] += static_cast<double>(cb) * cb;
    }
  }
}

template <typename T>
void gradient(const T* za, const T* zb, const T* qa, const T* qb, const T* ca, const T* cb,
              const T* md, T s, T w_inv, T* ga, T* gb, int64_t n, int64_t d) {
  for (int64_t i = 0; i < n; ++i) {
    const T* __restrict ra = za + i * d;
    const T* __restrict rb = zb + i * d;
    const T* __restrict pa = qa + i * d;
    const T* __restrict pb = qb + i * d;
    const T* __restrict col_a = ca;
    const T* __restrict col_b = cb;
    const T* __restrict diff = md;
    T* __restrict oa = ga + i * d;
    T* __restrict ob = gb + i * d;
    for (int64_t j = 0; j < d; ++j) {
      const T x = ra[j], y = rb[j];
      const T inv = w_inv * (x - y + diff[j]);
      oa[j] = s * pa[j] + x * col_a[j] + inv;
      ob[j] = s * pb[j] + y * col_b[j] - inv;
    }
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
