#pragma once
// Counts the ATen operators a piece of code dispatches on the calling thread (RecordFunction
// events named "aten::...", nested calls included, as torch.profiler lists them). On meta
// tensors the VICReg ops run their composite kernels, which is what CUDA and the other
// backends run, one kernel launch or more per ATen op: the benchmark prints the count, and a
// test holds it down.

#include <cstdint>
#include <functional>

namespace vicreg::apps {

/// The number of "aten::" operator calls that `f` dispatches on this thread.
int64_t count_aten_ops(const std::function<void()>& f);

}  // namespace vicreg::apps
