// The Autograd kernels: torch::autograd::Functions whose forward and backward re-dispatch below
// autograd to the library's operators, so the dispatcher picks the CPU or the composite kernel
// (CUDA, meta, ...) for both. The backward ops' own Autograd kernels refuse double backward
// with a clear error instead of returning a silent zero.

#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/csrc/autograd/graph_task.h>
#include <torch/library.h>

#include <string>

#include "detail.h"
#include "ops/ops.h"
#include "ops/view_stats.h"

namespace vicreg {
namespace {

using Tensor = at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr const char* kNoDoubleBackward =
    "vicreg_loss: double backward through the hand-written (fused) backward is not supported; "
    "use fused_backward=False (Backward::Autograd) for higher-order gradients";

// The scalar settings of the fused ops, kept in ctx->saved_data between forward and backward.
struct FusedSettings {
  double inv_coeff, var_coeff, cov_coeff, gamma, eps;
  std::string invariance, variance_form, variance_views, covariance_norm;

  void save(AutogradContext* ctx) const {
    for (const auto& [key, value] : {std::pair{"inv_coeff", inv_coeff}, {"var_coeff", var_coeff},
                                     {"cov_coeff", cov_coeff}, {"gamma", gamma}, {"eps", eps}}) {
      ctx->saved_data[key] = value;
    }
    for (const auto& [key, value] :
         {std::pair{"invariance", &invariance}, {"variance_form", &variance_form},
          {"variance_views", &variance_views}, {"covariance_norm", &covariance_norm}}) {
      ctx->saved_data[key] = *value;
    }
  }
  static FusedSettings load(AutogradContext* ctx) {
    auto num = [&](const char* key) { return ctx->saved_data[key].toDouble(); };
    auto str = [&](const char* key) { return ctx->saved_data[key].toStringRef(); };
    return {num("inv_coeff"),  num("var_coeff"),     num("cov_coeff"),
            num("gamma"),      num("eps"),           str("invariance"),
            str("variance_form"), str("variance_views"), str("covariance_norm")};
  }
};

// Outputs: loss, invariance, variance, covariance (differentiable), then the saved tensors of
// the forward op (not differentiable; autograd keeps them for the backward, not the inputs).
//
// The saved tensors are kept in ctx->saved_data, not as SavedVariables, so that the backward
// can take them over: when the graph is not kept (no retain_graph) and nothing else holds them
// (each is the only handle of its storage), it calls the in-place backward op, which writes
// the gradients over Zc and allocates no [n, d] buffer. Otherwise (retain_graph, or a caller of
// _vicreg_fused that kept `saved`) it calls the out-of-place op. In-place changes to a saved
// tensor between forward and backward are refused, as SavedVariable's version check would.
// (Saved-tensor hooks, e.g. torch.autograd.graph.saved_tensors_hooks for offloading, do not
// see these tensors.)
class VICRegFusedFunction : public torch::autograd::Function<VICRegFusedFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& z_a, const Tensor& z_b,
                               const FusedSettings& s) {
    s.save(ctx);
    ctx->saved_data["shape_a"] = z_a.sizes().vec();
    ctx->saved_data["shape_b"] = z_b.sizes().vec();
    ctx->saved_data["dtype_a"] = static_cast<int64_t>(z_a.scalar_type());
    ctx->saved_data["dtype_b"] = static_cast<int64_t>(z_b.scalar_type());
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [loss, inv, var, cov, saved] = ops::fused_op().call(
        z_a, z_b, s.inv_coeff, s.var_coeff, s.cov_coeff, s.gamma, s.eps, s.invariance,
        s.variance_form, s.variance_views, s.covariance_norm);
    std::vector<int64_t> versions;
    for (const auto& t : saved) versions.push_back(t._version());
    ctx->saved_data["saved"] = saved;
    ctx->saved_data["versions"] = versions;
    ctx->mark_non_differentiable(saved);
    ctx->set_materialize_grads(false);  // no zeros the size of the saved tensors
    variable_list out = {loss, inv, var, cov};
    out.insert(out.end(), saved.begin(), saved.end());
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    // create_graph: the gradient would have to be differentiable, and the hand-written one is
    // not (it does not even keep the inputs); say so rather than return a graph-less gradient.
    TORCH_CHECK(!at::GradMode::is_enabled(), kNoDoubleBackward);
    ctx->get_saved_variables();  // LibTorch's error for a second backward through a freed graph
    const bool keep_graph = torch::autograd::get_current_graph_task_keep_graph();
    std::vector<Tensor> saved;
    {
      auto& slot = ctx->saved_data["saved"];
      saved = slot.toTensorVector();
      if (!keep_graph) slot = c10::IValue();  // the graph is freed after this call: take them
    }
    const auto versions = ctx->saved_data["versions"].toIntVector();
    bool ours = !keep_graph;
    for (size_t i = 0; i < saved.size(); ++i) {
      TORCH_CHECK(saved[i]._version() == versions[i],
                  "vicreg_loss: a tensor saved by the fused forward (an output of "
                  "_vicreg_fused) was modified in place before the backward");
      ours = ours && saved[i].use_count() == 1 && saved[i].storage().use_count() == 1;
    }
    const auto s = FusedSettings::load(ctx);
    const auto zero = at::zeros({}, saved[0].options());
    auto g = [&](size_t i) { return grads[i].defined() ? grads[i] : zero; };
    Tensor ga, gb;
    if (ours) {
      ops::fused_backward_inplace_op().call(
          g(0), g(1), g(2), g(3), saved, s.inv_coeff, s.var_coeff, s.cov_coeff, s.gamma, s.eps,
          s.invariance, s.variance_form, s.variance_views, s.covariance_norm);
      ga = saved[ops::kZcA];
      gb = saved[ops::kZcB];
    } else {
      std::tie(ga, gb) = ops::fused_backward_op().call(
          g(0), g(1), g(2), g(3), saved, s.inv_coeff, s.var_coeff, s.cov_coeff, s.gamma, s.eps,
          s.invariance, s.variance_form, s.variance_views, s.covariance_norm);
    }
    auto as_input = [&](const Tensor& grad, const char* shape, const char* dtype) {
      return detail::from_positions(grad, ctx->saved_data[shape].toIntVector())
          .to(static_cast<at::ScalarType>(ctx->saved_data[dtype].toInt()));
    };
    return {as_input(ga, "shape_a", "dtype_a"), as_input(gb, "shape_b", "dtype_b"), Tensor()};
  }
};

ops::FusedOutputs fused_autograd(const Tensor& z_a, const Tensor& z_b, double inv_coeff,
                                 double var_coeff, double cov_coeff, double gamma, double eps,
                                 c10::string_view invariance, c10::string_view variance_form,
                                 c10::string_view variance_views,
                                 c10::string_view covariance_norm) {
  const FusedSettings s{inv_coeff,
                        var_coeff,
                        cov_coeff,
                        gamma,
                        eps,
                        std::string(invariance),
                        std::string(variance_form),
                        std::string(variance_views),
                        std::string(covariance_norm)};
  auto out = VICRegFusedFunction::apply(z_a, z_b, s);
  return {out[0], out[1], out[2], out[3], std::vector<Tensor>(out.begin() + 4, out.end())};
}

// The backward ops' gradient is not differentiable: refuse to build a graph through it.
void refuse_double_backward(std::initializer_list<const Tensor*> grads, at::TensorList saved) {
  bool needs_graph = false;
  for (const auto* t : grads) needs_graph |= t->requires_grad();
  for (const auto& t : saved) needs_graph |= t.requires_grad();
  TORCH_CHECK(!(at::GradMode::is_enabled() && needs_graph), kNoDoubleBackward);
}

std::tuple<Tensor, Tensor> fused_backward_autograd(
    const Tensor& g_loss, const Tensor& g_inv, const Tensor& g_var, const Tensor& g_cov,
    at::TensorList saved, double inv_coeff, double var_coeff, double cov_coeff, double gamma,
    double eps, c10::string_view invariance, c10::string_view variance_form,
    c10::string_view variance_views, c10::string_view covariance_norm) {
  refuse_double_backward({&g_loss, &g_inv, &g_var, &g_cov}, saved);
  at::AutoDispatchBelowADInplaceOrView guard;
  return ops::fused_backward_op().call(g_loss, g_inv, g_var, g_cov, saved, inv_coeff, var_coeff,
                                       cov_coeff, gamma, eps, invariance, variance_form,
                                       variance_views, covariance_norm);
}

void fused_backward_inplace_autograd(
    const Tensor& g_loss, const Tensor& g_inv, const Tensor& g_var, const Tensor& g_cov,
    at::TensorList saved, double inv_coeff, double var_coeff, double cov_coeff, double gamma,
    double eps, c10::string_view invariance, c10::string_view variance_form,
    c10::string_view variance_views, c10::string_view covariance_norm) {
  refuse_double_backward({&g_loss, &g_inv, &g_var, &g_cov}, saved);
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    ops::fused_backward_inplace_op().call(g_loss, g_inv, g_var, g_cov, saved, inv_coeff,
                                          var_coeff, cov_coeff, gamma, eps, invariance,
                                          variance_form, variance_views, covariance_norm);
  }
  for (const auto& t : saved) torch::autograd::impl::bump_version(t);  // it wrote them all
}

// ---- VCReg ---------------------------------------------------------------------------------

class VCRegFunction : public torch::autograd::Function<VCRegFunction> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& x, double var_coeff, double cov_coeff,
                        double gamma, double eps, int64_t channel_dim,
                        c10::string_view variance_form) {
    detail::check_vcreg_call("vcreg", x, var_coeff, cov_coeff, gamma, eps, channel_dim);
    detail::parse_variance_form(std::string(variance_form));
    ctx->saved_data["var_coeff"] = var_coeff;
    ctx->saved_data["cov_coeff"] = cov_coeff;
    ctx->saved_data["gamma"] = gamma;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["channel_dim"] = channel_dim;
    ctx->saved_data["variance_form"] = std::string(variance_form);
    ctx->save_for_backward({x});
    // Returning the input: autograd hands back a view of it (same storage, no copy).
    return x;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto x = ctx->get_saved_variables()[0];
    auto g = ops::vcreg_backward_op().call(
        grads[0], x, ctx->saved_data["var_coeff"].toDouble(),
        ctx->saved_data["cov_coeff"].toDouble(), ctx->saved_data["gamma"].toDouble(),
        ctx->saved_data["eps"].toDouble(), ctx->saved_data["channel_dim"].toInt(),
        ctx->saved_data["variance_form"].toStringRef());
    return {g, Tensor(), Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

Tensor vcreg_autograd(const Tensor& x, double var_coeff, double cov_coeff, double gamma,
                      double eps, int64_t channel_dim, c10::string_view variance_form) {
  return VCRegFunction::apply(x, var_coeff, cov_coeff, gamma, eps, channel_dim, variance_form);
}

Tensor vcreg_backward_autograd(const Tensor& grad, const Tensor& x, double var_coeff,
                               double cov_coeff, double gamma, double eps, int64_t channel_dim,
                               c10::string_view variance_form) {
  TORCH_CHECK(!(at::GradMode::is_enabled() && (grad.requires_grad() || x.requires_grad())),
              "vcreg: double backward through the VCReg layer is not supported");
  at::AutoDispatchBelowADInplaceOrView guard;
  return ops::vcreg_backward_op().call(grad, x, var_coeff, cov_coeff, gamma, eps, channel_dim,
                                       variance_form);
}

}  // namespace

TORCH_LIBRARY_IMPL(vicreg, Autograd, m) {
  m.impl("_vicreg_fused", TORCH_FN(fused_autograd));
  m.impl("_vicreg_fused_backward", TORCH_FN(fused_backward_autograd));
  m.impl("_vicreg_fused_backward_", TORCH_FN(fused_backward_inplace_autograd));
  m.impl("vcreg", TORCH_FN(vcreg_autograd));
  m.impl("_vcreg_backward", TORCH_FN(vcreg_backward_autograd));
}

}  // namespace vicreg
