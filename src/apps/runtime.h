#pragma once
// Process-wide settings of the programs (README.md, "Threads and memory"):
//   - the OpenMP runtime: Debian's LibTorch calls GNU libgomp, whose idle threads spin after
//     every parallel region and take the cores from the threads that have work (OpenBLAS's,
//     the main thread's, other processes'); libgomp reads its wait policy only from
//     OMP_WAIT_POLICY at startup. The programs link LLVM's libomp (Debian's libomp5, which
//     implements libgomp's ABI) ahead of LibTorch, so LibTorch's parallel regions run on it, and
//     make its idle threads sleep at once with its documented kmp_set_blocktime(0);
//   - a note when OpenBLAS's worker threads will spin (openblas_note);
//   - the allocator tuning behind --keep-freed-memory;
//   - which BLAS threading libblas.so.3 resolved to, for the programs' headers.

#include <dlfcn.h>
#include <malloc.h>

#include <cstdlib>
#include <cstring>
#include <string>

// Weak, so that the programs also load without these runtimes.
// OpenBLAS's query (cblas.h): 0 sequential, 1 its own pthreads, 2 OpenMP.
extern "C" int openblas_get_parallel(void) __attribute__((weak));
// LLVM libomp: how long (ms) an idle thread spins before it sleeps (default 200).
extern "C" void kmp_set_blocktime(int msec) __attribute__((weak));

namespace vicreg::apps {

// glibc hands large freed blocks back to the kernel (munmap, heap trimming), so every training
// step page-faults its activations in again: half of vicreg_train's time was system time.
// Keeping freed memory in the process (blocks up to 32 MiB from the heap, no trimming below
// 1 GiB, 64 MiB of top padding) removes those faults (src/apps/README.md, "Threads and
// memory", has the measurement). The memory stays reusable by the process; it is only not
// returned to the system while the program runs.
inline void keep_freed_memory() {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 64 << 20);
}

/// The file that LibTorch's OpenMP parallel regions (GOMP_parallel) resolve to, e.g.
/// "libomp.so.5" (LLVM) or "libgomp.so.1" (GNU); "none" when no OpenMP runtime is loaded.
inline std::string openmp_runtime() {
  void* sym = dlsym(RTLD_DEFAULT, "GOMP_parallel");
  Dl_info info{};
  if (sym == nullptr || dladdr(sym, &info) == 0 || info.dli_fname == nullptr) return "none";
  const char* slash = std::strrchr(info.dli_fname, '/');
  return slash ? slash + 1 : info.dli_fname;
}

inline bool wait_policy_set_by_user() {
  return std::getenv("OMP_WAIT_POLICY") != nullptr || std::getenv("KMP_BLOCKTIME") != nullptr;
}

/// Makes idle OpenMP threads sleep at once (what OMP_WAIT_POLICY=PASSIVE does) when LibTorch
/// runs on LLVM's libomp; leaves a KMP_BLOCKTIME or OMP_WAIT_POLICY the user set alone. Call it
/// first in main(), before any parallel region.
inline void configure_openmp() {
  if (wait_policy_set_by_user() || kmp_set_blocktime == nullptr) return;
  if (openmp_runtime().rfind("libomp", 0) == 0) kmp_set_blocktime(0);
}

/// What every program sets up first: idle OpenMP threads sleep at once.
inline void configure_threads() { configure_openmp(); }

/// A one-line note for the user when idle OpenMP threads still spin (LibTorch on GNU libgomp
/// and no OMP_WAIT_POLICY), else "".
inline std::string openmp_note() {
  const auto rt = openmp_runtime();
  if (wait_policy_set_by_user() || rt == "none" || rt.rfind("libomp", 0) == 0) return "";
  return "note: LibTorch's OpenMP threads (" + rt +
         ") spin while idle, which slows training down on a busy machine: run with "
         "OMP_WAIT_POLICY=PASSIVE (src/apps/README.md, \"Threads and memory\")";
}

/// A one-line note for the user when OpenBLAS's worker threads will spin: its pthreads build
/// (Debian's default BLAS) keeps them spinning, calling sched_yield, for about 0.1 s after each
/// threaded BLAS call, which takes the cores from every other thread. OpenBLAS reads its
/// documented OPENBLAS_THREAD_TIMEOUT (4: spin 2^4 cycles, then sleep) when the library loads,
/// before main(), so only the user can set it. Else "".
inline std::string openblas_note() {
  if (std::getenv("OPENBLAS_THREAD_TIMEOUT") != nullptr || openblas_get_parallel == nullptr ||
      openblas_get_parallel() != 1) {
    return "";
  }
  return "note: OpenBLAS's idle threads spin for a while after each matrix product, which costs "
         "system time and slows other work on the machine: run with OPENBLAS_THREAD_TIMEOUT=4 "
         "(src/apps/README.md, \"Threads and memory\")";
}

/// The BLAS that libblas.so.3 resolved to: "OpenBLAS (OpenMP)", "OpenBLAS (pthreads)",
/// "OpenBLAS (serial)" or "not OpenBLAS".
inline std::string blas_threading() {
  if (openblas_get_parallel == nullptr) return "not OpenBLAS";
  switch (openblas_get_parallel()) {
    case 0: return "OpenBLAS (serial)";
    case 1: return "OpenBLAS (pthreads)";
    default: return "OpenBLAS (OpenMP)";
  }
}

}  // namespace vicreg::apps
