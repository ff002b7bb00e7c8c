// Presets, knob names and the validation shared by every entry point.

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <limits>

#include "detail.h"
#include "ops/view_stats.h"
#include "vicreg/options.h"

namespace vicreg {

VICRegLossOptions VICRegLossOptions::reference() { return VICRegLossOptions(); }

VICRegLossOptions VICRegLossOptions::paper() {
  return VICRegLossOptions()
      .invariance(InvarianceNorm::SampleMean)
      .variance_views(ViewReduction::Sum);
}

VICRegLossOptions VICRegLossOptions::article() {
  return VICRegLossOptions()
      .invariance(InvarianceNorm::SampleMean)
      .variance_form(VarianceForm::Var)
      .variance_views(ViewReduction::Sum);
}

VICRegLossOptions VICRegLossOptions::preset(const std::string& convention) {
  if (convention == "reference") return reference();
  if (convention == "paper") return paper();
  if (convention == "article") return article();
  TORCH_CHECK(false, "vicreg: unknown convention '", convention,
              "'; expected one of \"reference\", \"paper\", \"article\"");
}

static bool same_knobs(const VICRegLossOptions& a, const VICRegLossOptions& b) {
  return a.invariance() == b.invariance() && a.variance_form() == b.variance_form() &&
         a.variance_views() == b.variance_views() && a.covariance_norm() == b.covariance_norm();
}

std::string convention_name(const VICRegLossOptions& o) {
  for (const char* name : {"reference", "paper", "article"}) {
    if (same_knobs(o, VICRegLossOptions::preset(name))) return name;
  }
  return "custom";
}

namespace detail {

const char* to_string(InvarianceNorm v) {
  return v == InvarianceNorm::ElementMean ? "element_mean" : "sample_mean";
}
const char* to_string(VarianceForm v) { return v == VarianceForm::Std ? "std" : "var"; }
const char* to_string(ViewReduction v) { return v == ViewReduction::Mean ? "mean" : "sum"; }
const char* to_string(CovarianceNorm v) {
  return v == CovarianceNorm::Unbiased ? "unbiased" : "biased";
}

InvarianceNorm parse_invariance(const std::string& s) {
  if (s == "element_mean") return InvarianceNorm::ElementMean;
  if (s == "sample_mean") return InvarianceNorm::SampleMean;
  TORCH_CHECK(false, "vicreg: unknown invariance '", s,
              "'; expected \"element_mean\" or \"sample_mean\"");
}
VarianceForm parse_variance_form(const std::string& s) {
  if (s == "std") return VarianceForm::Std;
  if (s == "var") return VarianceForm::Var;
  TORCH_CHECK(false, "vicreg: unknown variance_form '", s, "'; expected \"std\" or \"var\"");
}
ViewReduction parse_view_reduction(const std::string& s) {
  if (s == "mean") return ViewReduction::Mean;
  if (s == "sum") return ViewReduction::Sum;
  TORCH_CHECK(false, "vicreg: unknown variance_views '", s, "'; expected \"mean\" or \"sum\"");
}
CovarianceNorm parse_covariance_norm(const std::string& s) {
  if (s == "unbiased") return CovarianceNorm::Unbiased;
  if (s == "biased") return CovarianceNorm::Biased;
  TORCH_CHECK(false, "vicreg: unknown covariance_norm '", s,
              "'; expected \"unbiased\" or \"biased\"");
}

VICRegLossOptions options_from_knobs(double inv_coeff, double var_coeff, double cov_coeff,
                                     double gamma, double eps, c10::string_view invariance,
                                     c10::string_view variance_form,
                                     c10::string_view variance_views,
                                     c10::string_view covariance_norm) {
  return VICRegLossOptions()
      .inv_coeff(inv_coeff)
      .var_coeff(var_coeff)
      .cov_coeff(cov_coeff)
      .gamma(gamma)
      .eps(eps)
      .invariance(parse_invariance(std::string(invariance)))
      .variance_form(parse_variance_form(std::string(variance_form)))
      .variance_views(parse_view_reduction(std::string(variance_views)))
      .covariance_norm(parse_covariance_norm(std::string(covariance_norm)));
}

void check_coefficients(const char* fn, double a, const char* a_name, double b,
                        const char* b_name, double c, const char* c_name) {
  const std::pair<double, const char*> coeffs[] = {{a, a_name}, {b, b_name}, {c, c_name}};
  for (const auto& [value, name] : coeffs) {
    if (name == nullptr) continue;
    TORCH_CHECK(std::isfinite(value) && value >= 0, fn, ": ", name,
                " must be a finite number >= 0, got ", value);
  }
}

void check_gamma_eps(const char* fn, double gamma, double eps) {
  TORCH_CHECK(std::isfinite(gamma) && gamma > 0, fn, ": gamma must be a finite number > 0, got ",
              gamma);
  TORCH_CHECK(std::isfinite(eps) && eps >= 0, fn, ": eps must be a finite number >= 0, got ",
              eps);
}

void check_loss_options(const char* fn, const VICRegLossOptions& o) {
  check_coefficients(fn, o.inv_coeff(), "inv_coeff", o.var_coeff(), "var_coeff", o.cov_coeff(),
                     "cov_coeff");
  check_gamma_eps(fn, o.gamma(), o.eps());
}

void check_options_fit(const char* fn, at::ScalarType input_dtype,
                       std::initializer_list<std::pair<const char*, double>> options) {
  if (input_dtype == at::kDouble) return;
  for (const auto& [name, value] : options) {
    TORCH_CHECK(std::abs(value) <= std::numeric_limits<float>::max(), fn, ": ", name, " = ",
                value, " does not fit in float32, the dtype ", input_dtype,
                " inputs are computed in; expected at most ", std::numeric_limits<float>::max());
  }
}

void check_views(const char* fn, const at::Tensor& z_a, const at::Tensor& z_b) {
  TORCH_CHECK(z_a.defined() && z_b.defined(), fn, ": expected two defined tensors");
  TORCH_CHECK(z_a.device() == z_b.device(), fn,
              ": z_a and z_b must be on the same device, got ", z_a.device(), " and ",
              z_b.device());
  TORCH_CHECK(z_a.layout() == at::kStrided && z_b.layout() == at::kStrided, fn,
              ": expected dense (strided) tensors, got layouts ", z_a.layout(), " and ",
              z_b.layout());
  TORCH_CHECK(at::isFloatingType(z_a.scalar_type()), fn,
              ": expected a floating-point dtype (float32, float64, float16, bfloat16), got ",
              z_a.scalar_type());
  TORCH_CHECK(z_a.scalar_type() == z_b.scalar_type(), fn,
              ": z_a and z_b must have the same dtype, got ", z_a.scalar_type(), " and ",
              z_b.scalar_type());
  TORCH_CHECK(z_a.dim() >= 2, fn,
              ": expected embeddings of shape [n, d] or [n, P..., d] (at least 2 dims), got ",
              z_a.dim(), " dim(s) with shape ", z_a.sizes());
  TORCH_CHECK(z_a.sizes() == z_b.sizes(), fn,
              ": z_a and z_b must have the same shape, got ", z_a.sizes(), " and ", z_b.sizes());
  TORCH_CHECK(z_a.size(0) >= 2, fn,
              ": need at least 2 samples (n >= 2) to estimate a variance, got n = ", z_a.size(0),
              " (shape ", z_a.sizes(), ")");
  TORCH_CHECK(z_a.numel() > 0, fn, ": got an empty tensor of shape ", z_a.sizes());
}

void check_vcreg_input(const char* fn, const at::Tensor& x, int64_t channel_dim) {
  TORCH_CHECK(x.defined(), fn, ": expected a defined tensor");
  TORCH_CHECK(x.layout() == at::kStrided, fn, ": expected a dense (strided) tensor, got layout ",
              x.layout());
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), fn,
              ": expected a floating-point dtype (float32, float64, float16, bfloat16), got ",
              x.scalar_type());
  TORCH_CHECK(x.dim() >= 2, fn, ": expected at least 2 dims (samples and channels), got shape ",
              x.sizes());
  TORCH_CHECK(channel_dim >= -x.dim() && channel_dim < x.dim(), fn, ": channel_dim ",
              channel_dim, " is out of range for a tensor of ", x.dim(), " dims (shape ",
              x.sizes(), ")");
  TORCH_CHECK(x.numel() > 0, fn, ": got an empty tensor of shape ", x.sizes());
  const int64_t c = x.size(channel_dim);
  TORCH_CHECK(x.numel() / c >= 2, fn,
              ": need at least 2 samples (all dims but the channel dim) to estimate a variance, "
              "got shape ",
              x.sizes(), " with channel_dim ", channel_dim);
}

void check_loss_call(const char* fn, const at::Tensor& z_a, const at::Tensor& z_b,
                     const VICRegLossOptions& o) {
  check_views(fn, z_a, z_b);
  check_loss_options(fn, o);
  check_options_fit(fn, z_a.scalar_type(),
                    {{"inv_coeff", o.inv_coeff()}, {"var_coeff", o.var_coeff()},
                     {"cov_coeff", o.cov_coeff()}, {"gamma", o.gamma()}, {"eps", o.eps()}});
}

void check_vcreg_call(const char* fn, const at::Tensor& x, double var_coeff, double cov_coeff,
                      double gamma, double eps, int64_t channel_dim) {
  check_vcreg_input(fn, x, channel_dim);
  check_coefficients(fn, var_coeff, "var_coeff", cov_coeff, "cov_coeff", 0, nullptr);
  check_gamma_eps(fn, gamma, eps);
  check_options_fit(fn, x.scalar_type(),
                    {{"var_coeff", var_coeff}, {"cov_coeff", cov_coeff}, {"gamma", gamma},
                     {"eps", eps}});
}

void check_fused_backward_args(const at::Tensor& g_loss, const at::Tensor& g_inv,
                               const at::Tensor& g_var, const at::Tensor& g_cov,
                               at::TensorList saved) {
  constexpr const char* fn = "_vicreg_fused_backward";
  for (const auto* g : {&g_loss, &g_inv, &g_var, &g_cov}) {
    TORCH_CHECK(g->defined() && g->dim() == 0, fn,
                ": expected four 0-dim output gradients (loss, invariance, variance, covariance)"
                ", got one of shape ",
                g->defined() ? c10::str(g->sizes()) : std::string("undefined"));
  }
  TORCH_CHECK(saved.size() == 7, fn,
              ": expected the 7 saved tensors of _vicreg_fused (zc_a, zc_b, mean_diff, colsq_a, "
              "colsq_b, mat_a, mat_b), got ",
              saved.size());
  for (const auto& t : saved) TORCH_CHECK(t.defined(), fn, ": a saved tensor is undefined");
  const auto& zc = saved[0];
  TORCH_CHECK(zc.dim() == 3 && saved[1].sizes() == zc.sizes(), fn,
              ": expected two centered views [P, n, d] of one shape, got ", zc.sizes(), " and ",
              saved[1].sizes());
  const int64_t P = zc.size(0), n = zc.size(1), d = zc.size(2);
  const int64_t k = ops::use_gram(n, d) ? n : d;
  for (int i : {2, 3, 4}) {
    TORCH_CHECK(saved[i].sizes() == at::IntArrayRef({P, d}), fn, ": saved tensor ", i,
                " must be [P, d] = [", P, ", ", d, "], got ", saved[i].sizes());
  }
  for (int i : {5, 6}) {
    TORCH_CHECK(saved[i].sizes() == at::IntArrayRef({P, k, k}), fn, ": saved tensor ", i,
                " must be [P, k, k] = [", P, ", ", k, ", ", k, "], got ", saved[i].sizes());
  }
}

void check_finite_input(const char* fn, const char* name, const at::Tensor& t) {
  TORCH_CHECK(at::isfinite(t).all().item<bool>(), fn, ": ", name,
              " contains NaN or Inf (check_finite is on)");
}

void check_finite_result(const char* fn, const at::Tensor& loss) {
  TORCH_CHECK(at::isfinite(loss).all().item<bool>(), fn,
              ": the loss is not finite (NaN or Inf) although the inputs are; the embeddings' "
              "covariance overflows the compute dtype (check_finite is on)");
}

at::Tensor to_compute_dtype(const at::Tensor& z) {
  const auto t = z.scalar_type();
  return (t == at::kHalf || t == at::kBFloat16) ? z.to(at::kFloat) : z;
}

at::Tensor as_positions(const at::Tensor& z) {
  const int64_t n = z.size(0), d = z.size(-1);
  if (z.dim() == 2) return z.unsqueeze(0);
  return z.reshape({n, -1, d}).transpose(0, 1);
}

at::Tensor from_positions(const at::Tensor& g, at::IntArrayRef sizes) {
  if (sizes.size() == 2) return g.squeeze(0);
  return g.transpose(0, 1).reshape(sizes);
}

at::Tensor as_samples_by_channels(const at::Tensor& x, int64_t channel_dim) {
  const int64_t c = x.size(channel_dim);
  return x.movedim(channel_dim, -1).reshape({-1, c});
}

}  // namespace detail
}  // namespace vicreg
