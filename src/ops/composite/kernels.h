#pragma once
// The composite kernels of the fused VICReg operators (ATen ops on the math core, so every
// backend, meta included, has them). Declared here so that the tests, which link the
// library's objects (vicreg_internal), can register them under test-only names and run them on
// CPU tensors beside the CPU kernels (tests/ops/test_only_ops.cpp); not installed.

#include "ops/ops.h"

namespace vicreg::ops::composite {

FusedOutputs vicreg_fused(const Tensor& z_a, const Tensor& z_b, const Settings& s);
Tensor vicreg_fused_backward(const OptionalTensor& g_loss,
                                           const OptionalTensor& g_inv,
                                           const OptionalTensor& g_var,
                                           const OptionalTensor& g_cov, at::TensorList saved,
                                           const Settings& s);
}  // namespace vicreg::ops::composite
