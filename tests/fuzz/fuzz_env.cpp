// libFuzzer target for the distributed configuration that init_from_env reads from the
// environment (distributed::parse_env): the input, split at NUL bytes, gives RANK, WORLD_SIZE,
// MASTER_ADDR, MASTER_PORT and GLOO_SOCKET_IFNAME in that order (a missing field is an unset
// variable). Every input must end in a configuration that keeps the promises parse_env makes
// (0 <= rank < world size, a TCP port, an address, interface names without separators) or in
// a c10::Error; anything else is a finding. Nothing connects anywhere.
//
// Built as `vicreg_fuzz_env` with clang (-DVICREG_FUZZ=ON), and always as
// `vicreg_fuzz_env_replay`, which runs the stored corpus (tests/fuzz/corpus_env) under CTest.

#include <c10/util/Exception.h>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "vicreg/distributed.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) { return 0; }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static constexpr std::array<const char*, 5> kNames = {"RANK", "WORLD_SIZE", "MASTER_ADDR",
                                                        "MASTER_PORT", "GLOO_SOCKET_IFNAME"};
  std::array<std::string, kNames.size()> values;
  size_t given = 0;
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  for (size_t start = 0; given < kNames.size() && start <= bytes.size(); ++given) {
    const size_t end = std::min(bytes.find('\0', start), bytes.size());
    values[given] = bytes.substr(start, end - start);
    start = end + 1;
    if (end == bytes.size()) {
      ++given;
      break;
    }
  }
  auto getenv = [&](const char* name) -> const char* {
    for (size_t i = 0; i < given; ++i) {
      if (std::strcmp(name, kNames[i]) == 0) return values[i].c_str();
    }
    return nullptr;
  };
  try {
    const auto c = vicreg::distributed::parse_env(getenv);
    const bool ok = c.rank >= 0 && c.rank < c.world_size && c.master_port >= 1 &&
                    c.master_port <= 65535 && !c.master_addr.empty();
    if (!ok) std::abort();
    for (const auto& n : c.socket_ifnames) {
      if (n.empty() || n.find_first_of(", ") != std::string::npos) std::abort();
    }
  } catch (const c10::Error&) {
    // A clear error is an accepted outcome.
  }
  return 0;
}
