// The VCReg operators: vicreg::vcreg (the layer: identity forward whose autograd kernel, in
// autograd/vcreg_kernel.cpp, injects the penalty's gradient) and vicreg::_vcreg_backward (that
// gradient added to the incoming one). Kernels: composite/vcreg_kernel.cpp.

#include <torch/library.h>

#include <string>

#include "ops/ops.h"

namespace vicreg {

namespace ops {

const c10::TypedOperatorHandle<Signature<VCRegBackwardHead, VCRegSettings>>& vcreg_backward_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("vicreg::_vcreg_backward", "")
                             .typed<Signature<VCRegBackwardHead, VCRegSettings>>();
  return op;
}

}  // namespace ops

TORCH_LIBRARY_FRAGMENT(vicreg, m) {
  const std::string settings = ops::VCRegSettings::schema();
  m.def(("vcreg(Tensor(a) x, " + settings + ") -> Tensor(a)").c_str());
  m.def(("_vcreg_backward(Tensor grad, Tensor x, " + settings + ") -> Tensor").c_str());
}

}  // namespace vicreg
