#pragma once
// The validation of every entry point: a TORCH_CHECK that says what was expected and what
// came. The checks on tensors read sizes symbolically (ops/symint.h), so they also run while
// PyTorch 2 traces the operators.

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

#include <initializer_list>
#include <utility>

#include "ops/settings.h"

namespace vicreg::checks {

void coefficients(const char* fn, std::initializer_list<std::pair<const char*, double>> coeffs);
void gamma_eps(const char* fn, double gamma, double eps);
void loss_settings(const char* fn, const ops::Settings& s);
void vcreg_settings(const char* fn, const ops::VCRegSettings& s);
// Settings enter the computation as scalars of the compute dtype (float32 for float32, float16
// and bfloat16 inputs): a value beyond float32's range would make LibTorch throw a bare
// std::runtime_error mid-way, so it is refused up front, by name.
void settings_fit(const char* fn, at::ScalarType input_dtype,
                  std::initializer_list<std::pair<const char*, double>> values);
void views(const char* fn, const at::Tensor& z_a, const at::Tensor& z_b,
           bool local_shard = false);
void vcreg_input(const char* fn, const at::Tensor& x, int64_t channel_dim);
// Everything a loss call checks: the views, the settings, and that they fit the compute dtype.
// (local_shard: one rank's rows of the sharded loss, as in views.)
void loss_call(const char* fn, const at::Tensor& z_a, const at::Tensor& z_b,
               const ops::Settings& s, bool local_shard = false);
// Everything a VCReg call checks: the input, channel_dim, the settings and their dtype fit.
void vcreg_call(const char* fn, const at::Tensor& x, const ops::VCRegSettings& s);
// The arguments of _vicreg_fused_backward: up to four 0-dim gradients (at least one given)
// and the saved list of the forward (ops::Saved order, both views as one [2P, n, d] batch).
void fused_backward_args(const c10::optional<at::Tensor>& g_loss,
                         const c10::optional<at::Tensor>& g_inv,
                         const c10::optional<at::Tensor>& g_var,
                         const c10::optional<at::Tensor>& g_cov, at::TensorList saved);
// NaN/Inf checks (check_finite): each reads the data, one host sync.
void finite_input(const char* fn, const char* name, const at::Tensor& t);
void finite_result(const char* fn, const at::Tensor& loss);

}  // namespace vicreg::checks
