#pragma once
// Sizes as PyTorch 2 traces them. Under torch.compile and torch.export (AOTAutograd,
// FakeTensor) a size may be symbolic: size(i) and numel() throw there, and turning a size into
// a double would fix the traced graph to one batch size. So the code on the traced path (the
// fronts, the composite kernels, the math core, the autograd Functions) reads sizes through
// these helpers, keeps them symbolic in its arithmetic, and lets a comparison record a guard.
// LibTorch 1.13 has no usable symbolic arithmetic; there the same names are plain integers.
// This header is the only place where the two spellings differ.

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>
#include <c10/core/Scalar.h>
#include <torch/version.h>

#include <vector>

#include <initializer_list>

// From 2.4, the version that torch.library.opcheck (and so the tests of this path) starts at;
// 2.0-2.3 build with the plain integers.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#include <c10/core/SymInt.h>
#define VICREG_SYMBOLIC_SIZES 1
#else
#define VICREG_SYMBOLIC_SIZES 0
#endif

namespace vicreg::ops {

#if VICREG_SYMBOLIC_SIZES
/// A size: symbolic while PyTorch 2 traces, a plain integer otherwise. Comparisons give bool
/// and record a guard.
using Dim = c10::SymInt;
using Shape = std::vector<c10::SymInt>;

inline Dim size_of(const at::Tensor& t, int64_t i) { return t.sym_size(i); }
inline Dim numel_of(const at::Tensor& t) { return t.sym_numel(); }
inline Shape shape_of(const at::Tensor& t) { return t.sym_sizes().vec(); }
inline at::Tensor reshape_to(const at::Tensor& t, const Shape& s) { return t.reshape_symint(s); }
inline at::Tensor view_to(const at::Tensor& t, const Shape& s) { return t.view_symint(s); }
inline at::Tensor narrow_to(const at::Tensor& t, int64_t dim, const Dim& start, const Dim& length) {
  return t.narrow_symint(dim, start, length);
}
/// Whether a size is symbolic (a batch size that PyTorch 2 traces as a variable).
inline bool is_symbolic(const Dim& x) { return x.is_symbolic(); }
/// A size as a Scalar (a tensor divided by it), and c / x as a Scalar (a tensor multiplied by
/// it): plain numbers in eager mode, symbolic ones while tracing. (as_scalar is for sizes up to
/// numel(); ratio for products that may be larger.)
inline c10::Scalar as_scalar(const Dim& x) { return c10::Scalar(x); }
/// c / (x1 x2 ...), the product taken in floating point (a product of sizes such as
/// (n-1)^2 d (d-1) can pass the range of int64).
inline c10::Scalar ratio(double c, std::initializer_list<Dim> xs) {
  c10::SymFloat r(c);
  for (const auto& x : xs) r = r / c10::SymFloat(x);
  return r;
}
/// A shape kept between forward and backward (autograd's saved_data) and read back.
inline c10::IValue to_ivalue(const Shape& s) { return c10::IValue(c10::SymIntArrayRef(s)); }
inline Shape shape_from_ivalue(const c10::IValue& v) { return v.toSymIntVector(); }
/// The shape for an error message.
inline c10::SymIntArrayRef sizes_of(const at::Tensor& t) { return t.sym_sizes(); }
#else
using Dim = int64_t;
using Shape = std::vector<int64_t>;

inline Dim size_of(const at::Tensor& t, int64_t i) { return t.size(i); }
inline Dim numel_of(const at::Tensor& t) { return t.numel(); }
inline Shape shape_of(const at::Tensor& t) { return t.sizes().vec(); }
inline at::Tensor reshape_to(const at::Tensor& t, const Shape& s) { return t.reshape(s); }
inline at::Tensor view_to(const at::Tensor& t, const Shape& s) { return t.view(s); }
inline at::Tensor narrow_to(const at::Tensor& t, int64_t dim, const Dim& start, const Dim& length) {
  return t.narrow(dim, start, length);
}
inline bool is_symbolic(const Dim&) { return false; }
inline c10::Scalar as_scalar(const Dim& x) { return c10::Scalar(x); }
inline c10::Scalar ratio(double c, std::initializer_list<Dim> xs) {
  for (const auto& x : xs) c /= static_cast<double>(x);
  return c;
}
inline c10::IValue to_ivalue(const Shape& s) { return c10::IValue(s); }
inline Shape shape_from_ivalue(const c10::IValue& v) { return v.toIntVector(); }
inline at::IntArrayRef sizes_of(const at::Tensor& t) { return t.sizes(); }
#endif

/// Whether a tensor is a tracing stand-in (a FakeTensor, a functional wrapper of
/// torch.compile / torch.export, or C++ functionalization) rather than memory of its own.
inline bool is_traced(const at::Tensor& t) {
  return t.key_set().has_any(c10::DispatchKeySet(
      {c10::DispatchKey::Python, c10::DispatchKey::Functionalize}));
}

}  // namespace vicreg::ops
