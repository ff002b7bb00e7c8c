#pragma once
// The CPU kernel's own Gram-path kernels for float32 views of few rows (ops/cpu/gram.cpp says
// how they work): above kMaxGramRows rows, and for float64, the kernel calls BLAS instead.

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace vicreg::ops::cpu {

constexpr int64_t kMaxGramRows = 256;  // beyond, BLAS measured faster (src/ops/README.md)

/// Whether views [., n, d] of this dtype take these kernels: the Gram path, float32, at most
/// kMaxGramRows rows.
bool gram_kernels_apply(int64_t n, int64_t d, at::ScalarType dtype);

/// G = Zc Zc^T [B, n, n] of each of the B views of zc [B, n, d] (float32, contiguous,
/// n <= kMaxGramRows).
at::Tensor gram_matrices(const at::Tensor& zc);

/// The Gram-path gradient of both views written over zc [2P, n, d] (view a's P positions, then
/// view b's): 4 w G Zc (with 4 w G in mat [2P, n, n]) + Zc * coef [2P, 1, d] +- w_inv (Za - Zb),
/// Za - Zb = Zc_a - Zc_b + mean_diff [P, 1, d]. float32, contiguous, n <= kMaxGramRows.
void gram_backward_(const at::Tensor& zc, const at::Tensor& mat, const at::Tensor& coef,
                    const at::Tensor& mean_diff, float w_inv);

}  // namespace vicreg::ops::cpu
