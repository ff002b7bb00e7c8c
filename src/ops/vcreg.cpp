// The VCReg operators: vicreg::vcreg (the layer: identity forward whose autograd kernel, in
// autograd/vcreg_kernel.cpp, injects the penalty's gradient) and vicreg::_vcreg_backward (that
// gradient added to the incoming one). Kernels: composite/vcreg_kernel.cpp.

#include <torch/library.h>

#include <string>

#include "ops/checks.h"
#include "ops/ops.h"

namespace vicreg {

namespace ops {

const c10::TypedOperatorHandle<Signature<VCRegBackwardHead, VCRegSettings>>& vcreg_backward_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("vicreg::_vcreg_backward", "")
                             .typed<Signature<VCRegBackwardHead, VCRegSettings>>();
  return op;
}

namespace {

// The settings' checks of vicreg::vcreg alone, without an input: for the Python module's
// constructor, which refuses bad settings with the words of the call.
void check_vcreg_settings(const VCRegSettings& s) { checks::vcreg_settings("vcreg", s); }

}  // namespace
}  // namespace ops

TORCH_LIBRARY_FRAGMENT(vicreg, m) {
  const std::string settings = ops::VCRegSettings::schema();
  m.def(("vcreg(Tensor(a) x, " + settings + ") -> Tensor(a)").c_str());
  m.def(("_vcreg_backward(Tensor grad, Tensor x, " + settings + ") -> Tensor").c_str());
  m.def(("_vcreg_check_settings(" + settings + ") -> ()").c_str(),
        TORCH_FN((ops::WithSettings<ops::check_vcreg_settings, void(), ops::VCRegSettings>::call)));
}

}  // namespace vicreg
