#include "ops/checks.h"

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

void vcreg_settings(const char* fn, const ops::VCRegSettings& s) {
  coefficients(fn, {{"var_coeff", s.var_coeff}, {"cov_coeff", s.cov_coeff}});
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
  vcreg_settings(fn, s);
  settings_fit(fn, x.scalar_type(),
               {{"var_coeff", s.var_coeff}, {"cov_coeff", s.cov_coeff},
                {"gamma", s.hinge.gamma}, {"eps", s.hinge.eps}});
}

void fused_backward_args(const c10::optional<at::Tensor>& g_loss,
                         const c10::optional<at::Tensor>& g_inv,
                         const c10::optional<at::Tensor>& g_var,
                         const c10::optional<at::Tensor>& g_cov, at::TensorList saved) {
  constexpr const char* fn = "_vicreg_fused_backward";
  int given = 0;
  for (const auto* g : {&g_loss, &g_inv, &g_var, &g_cov}) {
    if (!g->has_value() || !(*g)->defined()) continue;
    ++given;
    TORCH_CHECK((*g)->dim() == 0, fn,
                ": expected 0-dim output gradients (loss, invariance, variance, covariance), got "
                "one of shape ", sizes_of(**g));
  }
  TORCH_CHECK(given > 0, fn, ": expected at least one output gradient, got none");
  TORCH_CHECK(saved.size() == ops::kNumSaved, fn,
              ": expected the 4 saved tensors of _vicreg_fused (zc, mean_diff, colsq, product), "
              "got ", saved.size());
  for (const auto& t : saved) TORCH_CHECK(t.defined(), fn, ": a saved tensor is undefined");
  const auto& zc = saved[ops::kZc];
  TORCH_CHECK(zc.dim() == 3 && ops::size_of(zc, 0) % 2 == 0 && ops::size_of(zc, 0) > 0, fn,
              ": expected both centered views as one batch [2P, n, d], got ", sizes_of(zc));
  TORCH_CHECK(ops::size_of(zc, 1) >= 2 && ops::size_of(zc, 2) >= 1, fn,
              ": expected centered views of n >= 2 samples and d >= 1 features, got Zc of ",
              sizes_of(zc));
  const auto P2 = ops::size_of(zc, 0), n = ops::size_of(zc, 1), d = ops::size_of(zc, 2);
  const std::pair<int, ops::Shape> expected[] = {{ops::kMeanDiff, {P2 / 2, 1, d}},
                                                 {ops::kColsq, {P2, 1, d}},
                                                 {ops::kProduct, {P2, n, d}}};
  for (const auto& [i, shape] : expected) {
    TORCH_CHECK(ops::shape_of(saved[i]) == shape, fn, ": saved tensor ", i, " must be ",
                c10::ArrayRef<ops::Dim>(shape), " for Zc of ", sizes_of(zc), ", got ",
                sizes_of(saved[i]));
  }
  // (a 0-dim CPU gradient would pass TensorIterator's CPU-scalar rule on CUDA, but not BLAS or
  // the meta device: one rule for every device)
  for (const auto& t : saved) {
    TORCH_CHECK(t.device() == zc.device(), fn, ": expected every saved tensor on ", zc.device(),
                " (Zc's device), got one on ", t.device());
  }
  for (const auto* g : {&g_loss, &g_inv, &g_var, &g_cov}) {
    if (!g->has_value() || !(*g)->defined()) continue;
    TORCH_CHECK((*g)->device() == zc.device(), fn, ": expected the output gradients on ",
                zc.device(), " (the saved tensors' device), got one on ", (*g)->device());
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
