#pragma once
// Counts the ATen operators a piece of code dispatches on the calling thread (RecordFunction
// events named "aten::...", nested calls included, as torch.profiler lists them). The composite
// kernels, run on meta tensors, dispatch what CUDA and the other backends would run, one
// kernel launch or more per ATen op: a test holds that count down.

#include <cstdint>
#include <functional>

namespace vicreg::testing {

/// The number of "aten::" operator calls that `f` dispatches on this thread.
int64_t count_aten_ops(const std::function<void()>& f);

}  // namespace vicreg::testing
