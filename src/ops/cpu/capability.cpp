// The choice of the CPU kernels' loops (loops.h) at run time, and the public face of it
// (vicreg/cpu.h). As ATen's ATEN_CPU_CAPABILITY does for ATen, VICREG_CPU_CAPABILITY forces a
// capability, so that every copy of the loops can be tested and measured on one machine.

#include <c10/util/Exception.h>

#include <atomic>
#include <cstdlib>
#include <string>
#include <vector>

#include "ops/cpu/loops.h"
#include "vicreg/cpu.h"

namespace vicreg::ops::cpu {
namespace {

constexpr const char* kNames[] = {"default", "avx2", "avx512"};

bool cpu_has(Capability c) {
#if VICREG_CPU_X86_COPIES
  __builtin_cpu_init();
  switch (c) {
    case Capability::Default:
      return true;
    case Capability::AVX2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Capability::AVX512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("fma");
  }
  return false;
#else
  return c == Capability::Default;
#endif
}

std::string supported_list() {
  std::string s;
  for (int c = 0; c < 3; ++c) {
    if (!cpu_has(static_cast<Capability>(c))) continue;
    s += s.empty() ? "" : ", ";
    s += kNames[c];
  }
  return s;
}

Capability parse(const std::string& name, const char* source) {
  for (int c = 0; c < 3; ++c) {
    if (name != kNames[c]) continue;
    const auto cap = static_cast<Capability>(c);
    TORCH_CHECK(cpu_has(cap), source, ": this CPU (or a build for another architecture) cannot "
                "run the '", name, "' kernels; expected one of: ", supported_list());
    return cap;
  }
  TORCH_CHECK(false, source, ": expected one of default, avx2, avx512, got '", name, "'");
}

Capability widest() {
  for (int c = 2; c > 0; --c) {
    if (cpu_has(static_cast<Capability>(c))) return static_cast<Capability>(c);
  }
  return Capability::Default;
}

// -1 until the first call reads the environment.
std::atomic<int> chosen{-1};

}  // namespace

Capability capability() {
  int c = chosen.load(std::memory_order_acquire);
  if (c >= 0) return static_cast<Capability>(c);
  const char* env = std::getenv("VICREG_CPU_CAPABILITY");
  // A bad value raises at every call until it is fixed, rather than running another copy.
  const auto cap = env != nullptr && *env != '\0'
                       ? parse(env, "VICREG_CPU_CAPABILITY")
                       : widest();
  int expected = -1;
  chosen.compare_exchange_strong(expected, static_cast<int>(cap));
  return static_cast<Capability>(chosen.load(std::memory_order_acquire));
}

const Loops& loops() {
  switch (capability()) {
#if VICREG_CPU_X86_COPIES
    case Capability::AVX512:
      return avx512::loops();
    case Capability::AVX2:
      return avx2::loops();
#endif
    default:
      return default_capability::loops();
  }
}

}  // namespace vicreg::ops::cpu

namespace vicreg {

std::string cpu_capability() {
  return ops::cpu::kNames[static_cast<int>(ops::cpu::capability())];
}

std::vector<std::string> supported_cpu_capabilities() {
  std::vector<std::string> out;
  for (int c = 0; c < 3; ++c) {
    if (ops::cpu::cpu_has(static_cast<ops::cpu::Capability>(c))) {
      out.emplace_back(ops::cpu::kNames[c]);
    }
  }
  return out;
}

void set_cpu_capability(const std::string& name) {
  ops::cpu::chosen.store(static_cast<int>(ops::cpu::parse(name, "set_cpu_capability")),
                         std::memory_order_release);
}

}  // namespace vicreg
