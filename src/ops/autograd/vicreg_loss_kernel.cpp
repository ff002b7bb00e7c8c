// The Autograd kernels of the fused VICReg operators: a torch::autograd::Function whose forward
// and backward re-dispatch below autograd to the library's operators, so the dispatcher picks
// the CPU or the composite kernel (CUDA, meta, ...) for both. The backward ops' own Autograd
// kernels refuse double backward with a clear error instead of returning a silent zero.

#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <algorithm>

#include "ops/ops.h"

namespace vicreg::ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr const char* kNoDoubleBackward =
    "vicreg_loss: double backward through the hand-written (fused) backward is not supported; "
    "use fused_backward=False (Backward::Autograd) for higher-order gradients";

// Outputs: loss, invariance, variance, covariance (differentiable), then the saved tensors of
// the forward op (not differentiable; autograd keeps them for the backward, not the inputs),
// saved with save_for_backward: autograd checks their versions, frees them with the graph, and
// saved-tensor hooks (offloading, say) see them.
class VICRegFusedFunction : public torch::autograd::Function<VICRegFusedFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& z_a, const Tensor& z_b,
                               const Settings& s) {
    ctx->saved_data["settings"] = s.to_ivalue();
    ctx->saved_data["shape_a"] = to_ivalue(shape_of(z_a));  // (z_b's is the same)
    ctx->saved_data["dtype_a"] = static_cast<int64_t>(z_a.scalar_type());
    ctx->saved_data["dtype_b"] = static_cast<int64_t>(z_b.scalar_type());
    at::AutoDispatchBelowADInplaceOrView guard;
    const auto out = call_with(fused_op(), s, z_a, z_b);
    const auto saved = saved_of(out);
    ctx->save_for_backward(saved);
    ctx->mark_non_differentiable(saved);
    ctx->set_materialize_grads(false);  // no zeros the size of the saved tensors
    return std::apply([](const auto&... t) { return variable_list{t...}; }, out);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    // create_graph: the gradient would have to be differentiable, and the hand-written one is
    // not (it does not even keep the inputs); say so rather than return a graph-less gradient.
    TORCH_CHECK(!at::GradMode::is_enabled(), kNoDoubleBackward);
    const auto saved = ctx->get_saved_variables();
    // No output was used (autograd's gradient checks call it so): the gradient is zero.
    const auto used = [](const Tensor& g) { return g.defined(); };
    if (std::none_of(grads.begin(), grads.begin() + 4, used)) return {Tensor(), Tensor(), Tensor()};
    const auto s = Settings::from_ivalue(ctx->saved_data["settings"]);
    // (undefined: autograd's gradient of an output that was not used; the op takes none)
    auto g = [&](size_t i) { return grads[i].defined() ? OptionalTensor(grads[i]) : c10::nullopt; };
    const auto grad = call_with(fused_backward_op(), s, g(0), g(1), g(2), g(3), saved);
    // The [2P, n, d] gradient in the views' layout [2, n, P..., d], then view v's in its
    // input's dtype. (Views only: for [n, d] inputs one select each.)
    const auto sizes = shape_from_ivalue(ctx->saved_data["shape_a"]);
    const auto layout =
        sizes.size() == 2 ? grad
                          : view_to(grad, {2, size_of(grad, 0) / 2, size_of(grad, 1),
                                           size_of(grad, 2)}).transpose(1, 2);
    auto as_input = [&](int v, const char* dtype) {
      auto g = layout.select(0, v);
      if (sizes.size() > 3) g = reshape_to(g, sizes);
      const auto type = static_cast<at::ScalarType>(ctx->saved_data[dtype].toInt());
      return g.scalar_type() == type ? g : g.to(type);
    };
    return {as_input(0, "dtype_a"), as_input(1, "dtype_b"), Tensor()};
  }
};

FusedOutputs fused_autograd(const Tensor& z_a, const Tensor& z_b, const Settings& s) {
  const auto v = VICRegFusedFunction::apply(z_a, z_b, s);
  return {v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]};
}

// The backward ops' gradient is not differentiable: refuse to build a graph through it.
void refuse_double_backward(std::initializer_list<const OptionalTensor*> grads,
                            at::TensorList saved) {
  bool needs_graph = false;
  for (const auto* t : grads) needs_graph |= t->has_value() && (*t)->requires_grad();
  for (const auto& t : saved) needs_graph |= t.requires_grad();
  TORCH_CHECK(!(at::GradMode::is_enabled() && needs_graph), kNoDoubleBackward);
}

Tensor fused_backward_autograd(const OptionalTensor& g_loss, const OptionalTensor& g_inv,
                               const OptionalTensor& g_var, const OptionalTensor& g_cov,
                               at::TensorList saved, const Settings& s) {
  refuse_double_backward({&g_loss, &g_inv, &g_var, &g_cov}, saved);
  at::AutoDispatchBelowADInplaceOrView guard;
  return call_with(fused_backward_op(), s, g_loss, g_inv, g_var, g_cov, saved);
}

}  // namespace

TORCH_LIBRARY_IMPL(vicreg, Autograd, m) {
  m.impl("_vicreg_fused", TORCH_FN((WithSettings<fused_autograd, FusedHead, Settings>::call)));
  m.impl("_vicreg_fused_backward", TORCH_FN((WithSettings<fused_backward_autograd,
                                                          FusedBackwardHead, Settings>::call)));
}

}  // namespace vicreg::ops
