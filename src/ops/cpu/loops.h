#pragma once
// The CPU kernel's row loops (ops/cpu/loops.cpp), the one part of the CPU path that is not
// ATen ops or BLAS. As ATen does with its CPU kernels, loops.cpp is compiled once per CPU
// capability (AVX-512, AVX2 with FMA, the baseline of the architecture), each copy in a
// namespace of its own, and the copy to run is chosen at run time: the widest the CPU has, or
// the one that VICREG_CPU_CAPABILITY (or vicreg::set_cpu_capability) names. The loops are
// plain C++ that the compiler vectorizes for each copy's instruction set. (ATen's own
// at::vec::Vectorized needs SLEEF's header for its AVX2 and AVX-512 builds, which Debian's
// LibTorch does not ship.)
//
// The loops take raw pointers and sizes only, so that the copies include no LibTorch header
// and compile in seconds. Accumulation is in double, in a fixed order per column: what they
// compute does not depend on the number of threads.

#include <cstdint>
#include <limits>
#include <type_traits>

namespace vicreg::ops::cpu {

/// The instruction sets the loops are compiled for, narrowest first.
enum class Capability { Default = 0, AVX2 = 1, AVX512 = 2 };

/// One copy of the loops. Rows are `n` rows of `w` columns, `s*` their row strides.
template <typename T>
struct RowLoops {
  /// Centering, pass 1: sum_a += a - shift_a, sum_b += b - shift_b, sq_d += (a - b)^2.
  void (*accumulate)(const T* a, const T* b, int64_t sa, int64_t sb, int64_t n,
                     const double* shift_a, const double* shift_b, double* sum_a, double* sum_b,
                     double* sq_d, int64_t w);
  /// Centering, pass 2: o = (x - shift) - rest, rounded to T (saturating), and sq += o^2,
  /// for both views; `so` is the output's row stride.
  void (*center)(const T* a, const T* b, int64_t sa, int64_t sb, int64_t n,
                 const double* shift_a, const double* shift_b, const double* rest_a,
                 const double* rest_b, T* oa, T* ob, int64_t so, double* sq_a, double* sq_b,
                 int64_t w);
  /// The gradient of both views, row by row (all rows of stride `d`):
  ///   inv = w_inv (za - zb + md);  ga = s qa + za ca + inv;  gb = s qb + zb cb - inv
  /// with qa, qb the covariance directions and ca, cb, md per-column vectors.
  void (*gradient)(const T* za, const T* zb, const T* qa, const T* qb, const T* ca,
                   const T* cb, const T* md, T s, T w_inv, T* ga, T* gb, int64_t n, int64_t d);
};

struct Loops {
  RowLoops<float> f32;
  RowLoops<double> f64;
};

/// The copy compiled for one capability (each loops.cpp copy defines its own).
namespace default_capability {
const Loops& loops();
}
namespace avx2 {
const Loops& loops();
}
namespace avx512 {
const Loops& loops();
}

/// The capability in use (the first call reads VICREG_CPU_CAPABILITY), and its copy of the
/// loops (capability.cpp).
Capability capability();
const Loops& loops();

/// double -> T with a result in T's range or +-Inf, for a value that becomes a c10::Scalar of
/// dtype T (ATen refuses a Scalar that does not fit, with a bare runtime error). NaN passes.
/// (In the loops a plain cast rounds the same way: IEEE, as float has infinities.)
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

}  // namespace vicreg::ops::cpu
