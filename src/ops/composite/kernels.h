#pragma once
// The composite kernels of the fused VICReg operators (ATen ops on the math core, so every
// backend, meta included, has them). Exported only so that the tests can register them
// under test-only names and run them on CPU tensors beside the CPU kernels
// (tests/ops/test_only_ops.cpp); this header is not installed.

#include "ops/ops.h"
#include "vicreg/export.h"

namespace vicreg::ops::composite {

VICREG_EXPORT FusedOutputs vicreg_fused(const Tensor& z_a, const Tensor& z_b, const Settings& s);
VICREG_EXPORT Tensor vicreg_fused_backward(const OptionalTensor& g_loss,
                                           const OptionalTensor& g_inv,
                                           const OptionalTensor& g_var,
                                           const OptionalTensor& g_cov, at::TensorList saved,
                                           const Settings& s);
}  // namespace vicreg::ops::composite
