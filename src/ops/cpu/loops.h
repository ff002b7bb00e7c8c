#pragma once
// What the CPU kernels' loops share (ops/cpu/vicreg_loss_kernel.cpp, ops/cpu/gram.cpp): the
// clones macro, the rounding of double results, and the elementwise part of the gradient.

#include <cstdint>
#include <limits>
#include <type_traits>

// VICREG_CPU_CLONES on a CPU kernel's loop function: compiled for AVX-512, AVX2 and the
// baseline x86-64, and picked at load time by the CPU (GCC's target_clones), since each width
// doubles the values per instruction over the one below. Not under ThreadSanitizer: the clones'
// resolvers (IFUNCs) run while the dynamic loader relocates the library, before the TSan
// runtime is up, and their instrumented entry crashes the program before main.
#if defined(__SANITIZE_THREAD__)
#define VICREG_THREAD_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define VICREG_THREAD_SANITIZER 1
#endif
#endif
#if defined(__x86_64__) && !defined(VICREG_THREAD_SANITIZER) && \
    (defined(__clang__) ? __clang_major__ >= 14 : defined(__GNUC__))
#define VICREG_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VICREG_CPU_CLONES
#endif

namespace vicreg::ops::cpu {

// double -> scalar_t as float arithmetic would round it: beyond the range, +-Inf. (A plain
// static_cast of an out-of-range double to float is undefined behaviour; huge but finite
// inputs, e.g. 1e30 squared, reach it. Found by the fuzzer.)
// Written as selects without branches, so that the loops that call it vectorize; NaN passes.
template <typename T>
inline T saturate(double v) {
  if constexpr (std::is_same_v<T, double>) {
    return v;
  } else {
    constexpr double kMax = std::numeric_limits<T>::max();
    constexpr T kInf = std::numeric_limits<T>::infinity();
    const T in_range = static_cast<T>(v > kMax ? kMax : (v < -kMax ? -kMax : v));
    return v > kMax ? kInf : (v < -kMax ? -kInf : in_range);
  }
}

// One row of a block: ga = pa + za * ca + inv, gb = pb + zb * cb - inv, inv = w (za - zb + md),
// written over za and zb (ca, cb unused without kCoef). Pointers do not alias.
template <bool kCoef, typename T>
inline void gradient_row(T* __restrict za, T* __restrict zb, const T* __restrict pa,
                         const T* __restrict pb, const T* __restrict ca, const T* __restrict cb,
                         const T* __restrict md, T w, int64_t width) {
  for (int64_t j = 0; j < width; ++j) {
    const T a = za[j], b = zb[j];
    const T inv = w * (a - b + md[j]);
    if constexpr (kCoef) {
      za[j] = pa[j] + a * ca[j] + inv;
      zb[j] = pb[j] + b * cb[j] - inv;
    } else {
      za[j] = pa[j] + inv;
      zb[j] = pb[j] - inv;
    }
  }
}

}  // namespace vicreg::ops::cpu
