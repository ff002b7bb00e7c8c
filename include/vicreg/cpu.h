#pragma once
// Which instruction set the CPU kernels run with. Their loops are compiled once per CPU
// capability, as ATen's CPU kernels are, and the widest one the CPU supports is used unless
// the environment variable VICREG_CPU_CAPABILITY (read at the first call) or
// set_cpu_capability names another. The capabilities give the same results to the last bit:
// they differ in speed only. (BLAS, which does the loss's matrix products, picks its own
// kernels.)

#include <string>
#include <vector>

#include "vicreg/export.h"

namespace vicreg {

/// The capability the CPU kernels run with now: "avx512", "avx2" or "default".
VICREG_EXPORT std::string cpu_capability();

/// The capabilities this CPU and this build can run, narrowest first ("default" always;
/// "avx2" needs AVX2 and FMA; "avx512" needs AVX-512 F, BW, VL and DQ and FMA; both on x86-64
/// with GCC or Clang only).
VICREG_EXPORT std::vector<std::string> supported_cpu_capabilities();

/// Runs the CPU kernels with `name` from now on, in every thread; a c10::Error names the
/// supported ones if this CPU or build cannot run it. For benchmarks and tests that compare
/// the capabilities in one process.
VICREG_EXPORT void set_cpu_capability(const std::string& name);

}  // namespace vicreg
