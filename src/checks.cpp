#include "checks.h"

#include <ATen/ops/isfinite.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <limits>
#include <string>

#include "ops/core.h"
#include "ops/symint.h"

namespace vicreg::checks {

using ops::sizes_of;

void coefficients(const char* fn, std::initializer_list<std::pair<const char*, double>> coeffs) {
  for (const auto& [name, value] : coeffs) {
    TORCH_CHECK(std::isfinite(value) && value >= 0, fn, ": ", name,
                " must be a finite number >= 0, got ", value);
  }
}

void gamma_eps(const char* fn, double gamma, double eps) {
  TORCH_CHECK(std::isfinite(gamma) && gamma > 0, fn, ": gamma must be a finite number > 0, got ",
              gamma);
  TORCH_CHECK(std::isfinite(eps) && eps >= 0, fn, ": eps must be a finite number >= 0, got ",
              eps);
}

void loss_settings(const char* fn, const ops::Settings& s) {
  coefficients(fn, {{"inv_coeff", s.inv_coeff}, {"var_coeff", s.var_coeff},
                    {"cov_coeff", s.cov_coeff}});
  gamma_eps(fn, s.hinge.gamma, s.hinge.eps);
}

void settings_fit(const char* fn, at::ScalarType input_dtype,
                  std::initializer_list<std::pair<const char*, double>> values) {
  if (input_dtype == at::kDouble) return;
  for (const auto& [name, value] : values) {
    TORCH_CHECK(std::abs(value) <= std::numeric_limits<float>::max(), fn, ": ", name, " = ",
                value, " does not fit in float32, the dtype ", input_dtype,
                " inputs are computed in; expected at most ", std::numeric_limits<float>::max());
  }
}

void views(const char* fn, const at::Tensor& z_a, const at::Tensor& z_b, bool local_shard) {
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
              z_a.dim(), " dim(s) with shape ", sizes_of(z_a));
  TORCH_CHECK(ops::shape_of(z_a) == ops::shape_of(z_b), fn,
              ": z_a and z_b must have the same shape, got ", sizes_of(z_a), " and ", sizes_of(z_b));
  // A rank's shard may hold fewer than 2 rows (even none): the gathered batch is checked.
  if (local_shard) return;
  TORCH_CHECK(ops::size_of(z_a, 0) >= 2, fn,
              ": need at least 2 samples (n >= 2) to estimate a variance, got n = ",
              ops::size_of(z_a, 0), " (shape ", sizes_of(z_a), ")");
  TORCH_CHECK(ops::numel_of(z_a) > 0, fn, ": got an empty tensor of shape ", sizes_of(z_a));
}

void vcreg_input(const char* fn, const at::Tensor& x, int64_t channel_dim) {
  TORCH_CHECK(x.defined(), fn, ": expected a defined tensor");
  TORCH_CHECK(x.layout() == at::kStrided, fn, ": expected a dense (strided) tensor, got layout ",
              x.layout());
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), fn,
              ": expected a floating-point dtype (float32, float64, float16, bfloat16), got ",
              x.scalar_type());
  TORCH_CHECK(x.dim() >= 2, fn, ": expected at least 2 dims (samples and channels), got shape ",
              sizes_of(x));
  TORCH_CHECK(channel_dim >= -x.dim() && channel_dim < x.dim(), fn, ": channel_dim ",
              channel_dim, " is out of range for a tensor of ", x.dim(), " dims (shape ",
              sizes_of(x), ")");
  TORCH_CHECK(ops::numel_of(x) > 0, fn, ": got an empty tensor of shape ", sizes_of(x));
  const auto c = ops::size_of(x, channel_dim);
  TORCH_CHECK(ops::numel_of(x) >= c * 2, fn,
              ": need at least 2 samples (all dims but the channel dim) to estimate a variance, "
              "got shape ",
              sizes_of(x), " with channel_dim ", channel_dim);
}

void loss_call(const char* fn, const at::Tensor& z_a, const at::Tensor& z_b,
               const ops::Settings& s, bool local_shard) {
  views(fn, z_a, z_b, local_shard);
  loss_settings(fn, s);
  settings_fit(fn, z_a.scalar_type(),
               {{"inv_coeff", s.inv_coeff}, {"var_coeff", s.var_coeff},
                {"cov_coeff", s.cov_coeff}, {"gamma", s.hinge.gamma}, {"eps", s.hinge.eps}});
}

void vcreg_call(const char* fn, const at::Tensor& x, const ops::VCRegSettings& s) {
  vcreg_input(fn, x, s.channel_dim);
  coefficients(fn, {{"var_coeff", s.var_coeff}, {"cov_coeff", s.cov_coeff}});
  gamma_eps(fn, s.hinge.gamma, s.hinge.eps);
  settings_fit(fn, x.scalar_type(),
               {{"var_coeff", s.var_coeff}, {"cov_coeff", s.cov_coeff},
                {"gamma", s.hinge.gamma}, {"eps", s.hinge.eps}});
}

void fused_backward_args(const at::Tensor& g_loss, const at::Tensor& g_inv,
                         const at::Tensor& g_var, const at::Tensor& g_cov, at::TensorList saved) {
  constexpr const char* fn = "_vicreg_fused_backward";
  for (const auto* g : {&g_loss, &g_inv, &g_var, &g_cov}) {
    TORCH_CHECK(g->defined() && g->dim() == 0, fn,
                ": expected four 0-dim output gradients (loss, invariance, variance, covariance)"
                ", got one of shape ",
                g->defined() ? c10::str(sizes_of(*g)) : std::string("undefined"));
  }
  TORCH_CHECK(saved.size() == ops::kNumSaved, fn,
              ": expected the 7 saved tensors of _vicreg_fused (zc_a, zc_b, mean_diff, colsq_a, "
              "colsq_b, mat_a, mat_b), got ",
              saved.size());
  for (const auto& t : saved) TORCH_CHECK(t.defined(), fn, ": a saved tensor is undefined");
  const auto& zc = saved[ops::kZcA];
  TORCH_CHECK(zc.dim() == 3 && ops::shape_of(saved[ops::kZcB]) == ops::shape_of(zc), fn,
              ": expected two centered views [P, n, d] of one shape, got ", sizes_of(zc), " and ",
              sizes_of(saved[ops::kZcB]));
  const auto P = ops::size_of(zc, 0), n = ops::size_of(zc, 1), d = ops::size_of(zc, 2);
  const auto k = ops::use_gram(n, d) ? n : d;
  for (int i : {ops::kMeanDiff, ops::kColsqA, ops::kColsqB}) {
    TORCH_CHECK(ops::shape_of(saved[i]) == ops::Shape({P, d}), fn, ": saved tensor ", i,
                " must be [P, d] = [", P, ", ", d, "], got ", sizes_of(saved[i]));
  }
  for (int i : {ops::kMatA, ops::kMatB}) {
    TORCH_CHECK(ops::shape_of(saved[i]) == ops::Shape({P, k, k}), fn, ": saved tensor ", i,
                " must be [P, k, k] = [", P, ", ", k, ", ", k, "], got ", sizes_of(saved[i]));
  }
}

void finite_input(const char* fn, const char* name, const at::Tensor& t) {
  TORCH_CHECK(at::isfinite(t).all().item<bool>(), fn, ": ", name,
              " contains NaN or Inf (check_finite is on)");
}

void finite_result(const char* fn, const at::Tensor& loss) {
  TORCH_CHECK(at::isfinite(loss).all().item<bool>(), fn,
              ": the loss is not finite (NaN or Inf) although the inputs are; the embeddings' "
              "covariance overflows the compute dtype (check_finite is on)");
}

}  // namespace vicreg::checks
