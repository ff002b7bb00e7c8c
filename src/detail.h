#pragma once
// Internal helpers shared by the functional API, the operators and the modules.

#include <ATen/core/Tensor.h>

#include <string>
#include <tuple>

#include "vicreg/export.h"
#include "vicreg/functional.h"
#include "vicreg/options.h"

namespace vicreg::detail {

// --- the hand-written CPU kernels of the fused path (on by default). Tests switch them off
// to run the ATen composition that CUDA uses on CPU too. Not thread-safe to toggle.
VICREG_EXPORT bool cpu_kernels_enabled();
VICREG_EXPORT void set_cpu_kernels_enabled(bool enabled);

// --- names of the knobs as the operators spell them --------------------------------------
const char* to_string(InvarianceNorm v);
const char* to_string(VarianceForm v);
const char* to_string(ViewReduction v);
const char* to_string(CovarianceNorm v);
InvarianceNorm parse_invariance(const std::string& s);
VarianceForm parse_variance_form(const std::string& s);
ViewReduction parse_view_reduction(const std::string& s);
CovarianceNorm parse_covariance_norm(const std::string& s);

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
void check_finite_input(const char* fn, const char* name, const at::Tensor& t);
void check_finite_result(const char* fn, const at::Tensor& loss);

// float16/bfloat16 are computed in float32; other dtypes as they are.
at::Tensor to_compute_dtype(const at::Tensor& z);

// [n, P..., d] -> [P, n, d] (a view; P = 1 for [n, d]).
at::Tensor as_positions(const at::Tensor& z);
// [P, n, d] -> the layout and shape of `like` ([n, P..., d]).
at::Tensor from_positions(const at::Tensor& g, const at::Tensor& like);

// [.., c, ..] with channels at `channel_dim` -> [n_samples, c] (may copy).
at::Tensor as_samples_by_channels(const at::Tensor& x, int64_t channel_dim);

// The loss and its terms from tensor ops, differentiated by autograd (the reference path).
VICRegTerms vicreg_terms_tensor_ops(const at::Tensor& z_a, const at::Tensor& z_b,
                                    const VICRegLossOptions& o);

// The knobs of the internal fused operators packed into one int: 1 sample-mean invariance,
// 2 var form, 4 views summed, 8 biased covariance. (check_finite is handled above them.)
int64_t pack_config(const VICRegLossOptions& o);
VICRegLossOptions unpack_config(int64_t config, double inv_coeff, double var_coeff,
                                double cov_coeff, double gamma, double eps);

}  // namespace vicreg::detail
