#pragma once
// Internal helpers shared by the functional API, the operators and the modules.

#include <ATen/core/Tensor.h>

#include <string>
#include <tuple>

#include "vicreg/export.h"
#include "vicreg/functional.h"
#include "vicreg/options.h"

namespace vicreg::detail {

// --- names of the knobs as the operators spell them --------------------------------------
const char* to_string(InvarianceNorm v);
const char* to_string(VarianceForm v);
const char* to_string(ViewReduction v);
const char* to_string(CovarianceNorm v);
InvarianceNorm parse_invariance(const std::string& s);
VarianceForm parse_variance_form(const std::string& s);
ViewReduction parse_view_reduction(const std::string& s);
CovarianceNorm parse_covariance_norm(const std::string& s);
// The loss options from the internal operators' settings (every knob by name).
VICRegLossOptions options_from_knobs(double inv_coeff, double var_coeff, double cov_coeff,
                                     double gamma, double eps, c10::string_view invariance,
                                     c10::string_view variance_form,
                                     c10::string_view variance_views,
                                     c10::string_view covariance_norm);

// --- validation (TORCH_CHECK with what was expected and what came) -----------------------
void check_coefficients(const char* fn, double a, const char* a_name, double b,
                        const char* b_name, double c, const char* c_name);
void check_gamma_eps(const char* fn, double gamma, double eps);
void check_loss_options(const char* fn, const VICRegLossOptions& o);
void check_views(const char* fn, const at::Tensor& z_a, const at::Tensor& z_b);
// Options enter the computation as scalars of the compute dtype (float32 for float32, float16
// and bfloat16 inputs): a value beyond float32's range would make LibTorch throw a bare
// std::runtime_error mid-way (found by the fuzzer), so it is refused up front, by name.
void check_options_fit(const char* fn, at::ScalarType input_dtype,
                       std::initializer_list<std::pair<const char*, double>> options);
void check_vcreg_input(const char* fn, const at::Tensor& x, int64_t channel_dim);
// Everything a loss call checks: the views, the options, and that the options fit the views'
// compute dtype.
void check_loss_call(const char* fn, const at::Tensor& z_a, const at::Tensor& z_b,
                     const VICRegLossOptions& o);
// Everything a VCReg call checks: the input, channel_dim, the options and their dtype fit.
void check_vcreg_call(const char* fn, const at::Tensor& x, double var_coeff, double cov_coeff,
                      double gamma, double eps, int64_t channel_dim);
// The arguments of _vicreg_fused_backward: four 0-dim gradients and the saved list of the
// forward (ops::Saved order, two [P, n, d] views of one shape).
void check_fused_backward_args(const at::Tensor& g_loss, const at::Tensor& g_inv,
                               const at::Tensor& g_var, const at::Tensor& g_cov,
                               at::TensorList saved);
void check_finite_input(const char* fn, const char* name, const at::Tensor& t);
void check_finite_result(const char* fn, const at::Tensor& loss);

// float16/bfloat16 are computed in float32; other dtypes as they are.
at::Tensor to_compute_dtype(const at::Tensor& z);

// [n, P..., d] -> [P, n, d] (a view; P = 1 for [n, d]).
at::Tensor as_positions(const at::Tensor& z);
// [P, n, d] -> the layout [n, P..., d] of a view of shape `sizes`.
at::Tensor from_positions(const at::Tensor& g, at::IntArrayRef sizes);

// [.., c, ..] with channels at `channel_dim` -> [n_samples, c] (may copy).
at::Tensor as_samples_by_channels(const at::Tensor& x, int64_t channel_dim);

// The loss and its terms from tensor ops, differentiated by autograd (Backward::Autograd).
VICRegTerms vicreg_terms_tensor_ops(const at::Tensor& z_a, const at::Tensor& z_b,
                                    const VICRegLossOptions& o);

// What the public operators compute (the process group aside): validation, check_finite, and
// the fused operator or the tensor-op path as o.backward() says.
VICRegTerms single_process_terms(const at::Tensor& z_a, const at::Tensor& z_b,
                                 const VICRegLossOptions& o);

}  // namespace vicreg::detail
