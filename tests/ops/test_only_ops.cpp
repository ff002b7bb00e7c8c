// Test-only operators: the composite kernels of the fused VICReg ops (what CUDA, meta and the
// other backends run) under their own names, so that the tests run them on CPU tensors beside
// the CPU kernels, through the dispatcher. Linked into the test programs only: the installed
// library registers none of these.

#include <torch/library.h>

#include <string>

#include "ops/composite/kernels.h"

namespace vicreg::ops {

TORCH_LIBRARY_FRAGMENT(vicreg, m) {
  const std::string settings = Settings::schema();
  const std::string grads =
      "Tensor? grad_loss, Tensor? grad_invariance, Tensor? grad_variance, "
      "Tensor? grad_covariance, ";
  m.def(("_vicreg_fused_composite(Tensor z_a, Tensor z_b, " + settings +
         ") -> (Tensor loss, Tensor invariance, Tensor variance, Tensor covariance, " +
         kSavedSchema + ")").c_str());
  m.def(("_vicreg_fused_backward_composite(" + grads + "Tensor[] saved, " + settings +
         ") -> Tensor").c_str());
}

// For CompositeExplicitAutograd, as the real ops' composite kernels are.
TORCH_LIBRARY_IMPL(vicreg, CompositeExplicitAutograd, m) {
  m.impl("_vicreg_fused_composite",
         TORCH_FN((WithSettings<composite::vicreg_fused, FusedHead, Settings>::call)));
  m.impl("_vicreg_fused_backward_composite",
         TORCH_FN((WithSettings<composite::vicreg_fused_backward, FusedBackwardHead,
                                Settings>::call)));
}

}  // namespace vicreg::ops
