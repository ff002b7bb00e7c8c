// The Autograd kernels of the fused VICReg operators: a torch::autograd::Function whose forward
// and backward re-dispatch below autograd to the library's operators, so the dispatcher picks
// the CPU or the composite kernel (CUDA, meta, ...) for both. The backward ops' own Autograd
// kernels refuse double backward with a clear error instead of returning a silent zero.

#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/csrc/autograd/graph_task.h>
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
// the forward op (not differentiable; autograd keeps them for the backward, not the inputs).
//
// The saved tensors are kept in ctx->saved_data, not as SavedVariables, so that the backward
// can take them over: in eager mode, when the graph is not kept (no retain_graph) and nothing
// else holds them (each is the only handle of its storage, but for the calling thread's kept
// workspace: ops::storage_holders), it calls the in-place backward op, which writes the
// gradients over Zc and allocates no [n, d] buffer. Otherwise (retain_graph, a
// caller of _vicreg_fused that kept `saved`, or tensors that PyTorch 2 is tracing, where the
// graph's compiler plans the memory and an in-place op would only be functionalized back into
// a copy) it calls the out-of-place op. In-place changes to a saved tensor between forward and
// backward are refused, as SavedVariable's version check would. (Saved-tensor hooks, e.g.
// torch.autograd.graph.saved_tensors_hooks for offloading, do not see these tensors.)
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
    std::vector<int64_t> versions;
    for (const auto& t : saved) versions.push_back(t._version());
    ctx->saved_data["saved"] = saved;
    ctx->saved_data["versions"] = versions;
    ctx->mark_non_differentiable(saved);
    ctx->set_materialize_grads(false);  // no zeros the size of the saved tensors
    return std::apply([](const auto&... t) { return variable_list{t...}; }, out);
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
      ours = ours && !is_traced(saved[i]) && saved[i].use_count() == 1 &&
             storage_holders(saved[i]) == 1;
    }
    // No output was used (autograd's gradient checks call it so): the gradient is zero.
    const auto used = [](const Tensor& g) { return g.defined(); };
    if (std::none_of(grads.begin(), grads.begin() + 4, used)) return {Tensor(), Tensor(), Tensor()};
    const auto s = Settings::from_ivalue(ctx->saved_data["settings"]);
    // (undefined: autograd's gradient of an output that was not used; the op takes none)
    auto g = [&](size_t i) { return grads[i].defined() ? OptionalTensor(grads[i]) : c10::nullopt; };
    Tensor grad;
    if (ours) {
      call_with(fused_backward_inplace_op(), s, g(0), g(1), g(2), g(3), saved);
      grad = saved[kZc];
    } else {
      grad = call_with(fused_backward_op(), s, g(0), g(1), g(2), g(3), saved);
    }
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
  return fused_outputs(VICRegFusedFunction::apply(z_a, z_b, s));
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

void fused_backward_inplace_autograd(const OptionalTensor& g_loss, const OptionalTensor& g_inv,
                                     const OptionalTensor& g_var, const OptionalTensor& g_cov,
                                     at::TensorList saved, const Settings& s) {
  refuse_double_backward({&g_loss, &g_inv, &g_var, &g_cov}, saved);
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    call_with(fused_backward_inplace_op(), s, g_loss, g_inv, g_var, g_cov, saved);
  }
  for (const auto& t : saved) torch::autograd::impl::bump_version(t);  // it wrote them all
}

}  // namespace

TORCH_LIBRARY_IMPL(vicreg, Autograd, m) {
  m.impl("_vicreg_fused", TORCH_FN((WithSettings<fused_autograd, FusedHead, Settings>::call)));
  m.impl("_vicreg_fused_backward", TORCH_FN((WithSettings<fused_backward_autograd,
                                                          FusedBackwardHead, Settings>::call)));
  m.impl("_vicreg_fused_backward_",
         TORCH_FN((WithSettings<fused_backward_inplace_autograd, FusedBackwardInplaceHead,
                                Settings>::call)));
}

}  // namespace vicreg::ops
