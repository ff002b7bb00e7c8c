// The composite kernels of the VCReg operators (every backend, meta included): the layer is the
// identity (an alias of its input) and the backward adds the penalty's gradient, computed by the
// math core, to the incoming one.

#include <ATen/ATen.h>
#include <torch/library.h>

#include "ops/checks.h"
#include "ops/ops.h"

namespace vicreg::ops {
namespace {

constexpr const char* kName = "vcreg";

Tensor vcreg_kernel(const Tensor& x, const VCRegSettings& s) {
  checks::vcreg_call(kName, x, s);
  return x.alias();
}

Tensor vcreg_backward_kernel(const Tensor& grad, const Tensor& x, const VCRegSettings& s) {
  checks::vcreg_call(kName, x, s);
  TORCH_CHECK(shape_of(grad) == shape_of(x), "_vcreg_backward: grad must have the shape of x ",
              sizes_of(x), ", got ", sizes_of(grad));
  return (to_compute_dtype(grad) + vcreg_gradient(x, s)).to(grad.scalar_type());
}

}  // namespace

TORCH_LIBRARY_IMPL(vicreg, CompositeExplicitAutograd, m) {
  m.impl("vcreg", TORCH_FN((WithSettings<vcreg_kernel, VCRegHead, VCRegSettings>::call)));
  m.impl("_vcreg_backward", TORCH_FN((WithSettings<vcreg_backward_kernel, VCRegBackwardHead,
                                                   VCRegSettings>::call)));
}

}  // namespace vicreg::ops
