#pragma once
// Debian's LibTorch runs its elementwise kernels on OpenMP threads and its GEMMs on OpenBLAS's
// own pthreads (libopenblas0-pthread). OpenMP's idle threads spin for a while after each
// parallel region and take the cores from OpenBLAS's threads: on 2 cores the fused loss ran
// ~2x slower at n=256, d=2048 (vicreg_bench with and without OMP_WAIT_POLICY=PASSIVE).
// The OpenMP runtime reads OMP_WAIT_POLICY when it loads, before main(), so the programs set
// it and re-execute themselves once. A value the user set is kept.

#include <malloc.h>
#include <unistd.h>

#include <cstdlib>

namespace vicreg::apps {

inline void ensure_passive_openmp(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  execv("/proc/self/exe", argv);  // returns only on failure: then go on as we are
}

// glibc hands large freed blocks back to the kernel (munmap, heap trimming), so every training
// step page-faults its activations in again: half of vicreg_train's time was system time.
// Keeping freed memory in the process (blocks up to 32 MiB from the heap, no trimming below
// 1 GiB, 64 MiB of top padding) cut an epoch's time by 20-30% here (measured with the
// MALLOC_*_ environment variables, 200 steps, A/B twice). The memory stays reusable by the
// process; it is only not returned to the system while the program runs.
inline void keep_freed_memory() {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 64 << 20);
}

}  // namespace vicreg::apps
