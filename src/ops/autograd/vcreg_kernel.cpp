// The Autograd kernels of the VCReg operators: the layer is a torch::autograd::Function whose
// forward returns its input and whose backward calls _vcreg_backward (the penalty's gradient
// added to the incoming one); that op's own kernel refuses double backward.

#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include "ops/checks.h"
#include "ops/ops.h"

namespace vicreg::ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class VCRegFunction : public torch::autograd::Function<VCRegFunction> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const VCRegSettings& s) {
    checks::vcreg_call("vcreg", x, s);
    ctx->saved_data["settings"] = s.to_ivalue();
    ctx->save_for_backward({x});
    // Returning the input: autograd hands back a view of it (same storage, no copy).
    return x;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto x = ctx->get_saved_variables()[0];
    const auto s = VCRegSettings::from_ivalue(ctx->saved_data["settings"]);
    return {call_with(vcreg_backward_op(), s, grads[0], x), Tensor()};
  }
};

Tensor vcreg_autograd(const Tensor& x, const VCRegSettings& s) {
  return VCRegFunction::apply(x, s);
}

Tensor vcreg_backward_autograd(const Tensor& grad, const Tensor& x, const VCRegSettings& s) {
  TORCH_CHECK(!(at::GradMode::is_enabled() && (grad.requires_grad() || x.requires_grad())),
              "vcreg: double backward through the VCReg layer is not supported");
  at::AutoDispatchBelowADInplaceOrView guard;
  return call_with(vcreg_backward_op(), s, grad, x);
}

}  // namespace

TORCH_LIBRARY_IMPL(vicreg, Autograd, m) {
  m.impl("vcreg", TORCH_FN((WithSettings<vcreg_autograd, VCRegHead, VCRegSettings>::call)));
  m.impl("_vcreg_backward", TORCH_FN((WithSettings<vcreg_backward_autograd, VCRegBackwardHead,
                                                   VCRegSettings>::call)));
}

}  // namespace vicreg::ops
