#pragma once
// Debian's LibTorch runs its elementwise kernels on OpenMP threads and its GEMMs on OpenBLAS's
// own pthreads (libopenblas0-pthread). OpenMP's idle threads spin for a while after each
// parallel region and take the cores from OpenBLAS's threads: on 2 cores the fused loss ran
// ~2x slower at n=256, d=2048 (vicreg_bench with and without OMP_WAIT_POLICY=PASSIVE).
// The OpenMP runtime reads OMP_WAIT_POLICY when it loads, before main(), so the programs set
// it and re-execute themselves once. A value the user set is kept.

#include <unistd.h>

#include <cstdlib>

namespace vicreg::apps {

inline void ensure_passive_openmp(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  execv("/proc/self/exe", argv);  // returns only on failure: then go on as we are
}

}  // namespace vicreg::apps
