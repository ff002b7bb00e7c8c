// vicreg::distributed's setup: the Gloo process group, where its transport binds (an endpoint,
// GLOO_SOCKET_IFNAME, or the address that routes to the master), and torchrun's environment.

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <torch/version.h>

#include "distributed/common.h"
#include "vicreg/distributed.h"

namespace vicreg::distributed {
namespace {

using detail::message_of;


// Gloo writes to its peers' sockets; a peer that died turns the next write into SIGPIPE, whose
// default action kills the whole process before Gloo can report the error (seen in the
// early-exit test). Python ignores SIGPIPE at startup, C++ programs do not: ignore it here,
// once, unless the program installed its own handler.
void ignore_sigpipe() {
  static const bool done = [] {
    struct sigaction current {};
    if (sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
      std::signal(SIGPIPE, SIG_IGN);
    }
    return true;
  }();
  (void)done;
}


// A variable of the environment as a decimal integer in [lo, hi].
int env_int(const char* name, const char* v, long lo, long hi) {
  TORCH_CHECK(v != nullptr && *v != 0, "vicreg::distributed::init_from_env: environment variable ",
              name, " is not set (torchrun sets RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)");
  char* end = nullptr;
  errno = 0;
  const long x = std::strtol(v, &end, 10);
  TORCH_CHECK(end != v && *end == 0 && errno == 0 && x >= lo && x <= hi,
              "vicreg::distributed::init_from_env: ", name, " must be an integer in [", lo, ", ",
              hi, "], got '", v, "'");
  return static_cast<int>(x);
}

// "eth0, eth1" -> {eth0, eth1}; a list that names nothing is an error.
std::vector<std::string> socket_ifnames(const char* env) {
  std::vector<std::string> names;
  std::string name;
  for (const char* c = env;; ++c) {
    if (*c == ',' || *c == 0) {
      if (!name.empty()) names.push_back(name);
      name.clear();
      if (*c == 0) break;
    } else if (*c != ' ') {
      name += *c;
    }
  }
  TORCH_CHECK(!names.empty(), "vicreg::distributed: GLOO_SOCKET_IFNAME='", env,
              "' names no interface; expected e.g. eth0 or eth0,eth1");
  return names;
}

// ---- where the Gloo transport binds ----------------------------------------------------------

socklen_t length_of(const sockaddr_storage& a) {
  return a.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
}

void set_port(sockaddr_storage& a, uint16_t port) {
  if (a.ss_family == AF_INET6) {
    reinterpret_cast<sockaddr_in6&>(a).sin6_port = htons(port);
  } else {
    reinterpret_cast<sockaddr_in&>(a).sin_port = htons(port);
  }
}

// The first address `host` resolves to (IPv4 or IPv6), if any.
c10::optional<sockaddr_storage> resolve(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), nullptr, &hints, &found) != 0 || found == nullptr) {
    return c10::nullopt;
  }
  sockaddr_storage a{};
  std::memcpy(&a, found->ai_addr, found->ai_addrlen);
  ::freeaddrinfo(found);
  return a;
}

bool is_loopback(const sockaddr_storage& a) {
  if (a.ss_family == AF_INET) {
    return (ntohl(reinterpret_cast<const sockaddr_in&>(a).sin_addr.s_addr) >> 24) == 127;
  }
  return a.ss_family == AF_INET6 &&
         IN6_IS_ADDR_LOOPBACK(&reinterpret_cast<const sockaddr_in6&>(a).sin6_addr);
}

std::string numeric(const sockaddr_storage& a) {
  char text[INET6_ADDRSTRLEN] = {};
  ::getnameinfo(reinterpret_cast<const sockaddr*>(&a), length_of(a), text, sizeof(text), nullptr,
                0, NI_NUMERICHOST);
  return text;
}

// Whether `a` is an address of this host (of this network namespace): a socket binds to it.
bool is_local(sockaddr_storage a) {
  const int fd = ::socket(a.ss_family, SOCK_DGRAM, 0);
  if (fd < 0) return false;
  set_port(a, 0);
  const bool ok = ::bind(fd, reinterpret_cast<const sockaddr*>(&a), length_of(a)) == 0;
  ::close(fd);
  return ok;
}

// The local address the kernel sends from to reach `a` (connecting a UDP socket sends nothing).
c10::optional<sockaddr_storage> source_address_towards(sockaddr_storage a) {
  const int fd = ::socket(a.ss_family, SOCK_DGRAM, 0);
  if (fd < 0) return c10::nullopt;
  set_port(a, 9);
  sockaddr_storage local{};
  socklen_t length = sizeof(local);
  const bool ok = ::connect(fd, reinterpret_cast<const sockaddr*>(&a), length_of(a)) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) == 0;
  ::close(fd);
  if (!ok) return c10::nullopt;
  return local;
}

// The Gloo devices of a rank and, for messages, what they are bound to and why.
struct Transport {
  std::vector<std::shared_ptr<::gloo::transport::Device>> devices;
  std::string description;
};

constexpr const char* kInterfaceHint =
    "set GLOO_SOCKET_IFNAME to the network interface that connects the hosts (e.g. eth0)";

Transport address_transport(const std::string& host, const std::string& why) {
  try {
    return {{c10d::ProcessGroupGloo::createDeviceForHostname(host)}, host + " (" + why + ")"};
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "vicreg::distributed: cannot bind the Gloo transport to ", host, " (",
                why, "): ", message_of(e), "; ", kInterfaceHint);
  }
}

Transport interfaces_transport(const std::vector<std::string>& names, const std::string& why) {
  Transport t;
  for (const auto& name : names) {
    try {
      t.devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(name));
    } catch (const std::exception& e) {
      TORCH_CHECK(false, "vicreg::distributed: cannot bind the Gloo transport to network "
                  "interface '", name, "' (", why, "): ", message_of(e));
    }
    t.description += (t.description.empty() ? "interface " : ", ") + name;
  }
  t.description += " (" + why + ")";
  return t;
}

// The endpoint's interfaces or address, else GLOO_SOCKET_IFNAME; nothing when neither is set.
c10::optional<Transport> configured_transport(const GlooEndpoint& e) {
  TORCH_CHECK(e.interfaces.empty() || e.address.empty(),
              "vicreg::distributed: a GlooEndpoint takes interfaces or an address, not both");
  if (!e.interfaces.empty()) return interfaces_transport(e.interfaces, "GlooEndpoint");
  if (!e.address.empty()) return address_transport(e.address, "GlooEndpoint");
  const char* env = std::getenv("GLOO_SOCKET_IFNAME");
  if (env == nullptr || *env == 0) return c10::nullopt;
  return interfaces_transport(socket_ifnames(env), std::string("GLOO_SOCKET_IFNAME=") + env);
}

// The address this host's name resolves to, unless that is a loopback address while the master
// is not (Debian maps the hostname to 127.0.1.1): then the local address that routes to it.
Transport host_transport(int rank, const std::string& master) {
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  const auto master_address = resolve(master);
  TORCH_CHECK(master_address, "vicreg::distributed::init_from_env: MASTER_ADDR '", master,
              "' does not resolve to an address");
  const auto own = resolve(host);
  if (own && is_local(*own) && (!is_loopback(*own) || is_loopback(*master_address))) {
    return address_transport(numeric(*own), std::string("the address of this host's name '") +
                                                host + "'");
  }
  const auto source = source_address_towards(*master_address);
  TORCH_CHECK(source, "vicreg::distributed: rank ", rank, " has no route to MASTER_ADDR ",
              master, "; ", kInterfaceHint);
  const auto chosen = numeric(*source);
  const std::string own_is =
      !own ? "does not resolve"
      : is_loopback(*own) ? "resolves to the loopback address " + numeric(*own)
                          : "resolves to " + numeric(*own) + ", not an address of this host";
  std::fprintf(stderr,
               "vicreg::distributed: rank %d: this host's name '%s' %s; binding Gloo to %s, the "
               "local address that routes to MASTER_ADDR %s (GLOO_SOCKET_IFNAME chooses an "
               "interface instead)\n",
               rank, host, own_is.c_str(), chosen.c_str(), master.c_str());
  return address_transport(chosen, "the local address that routes to MASTER_ADDR " + master);
}

// A ProcessGroup whose collectives run on Gloo. LibTorch 1.x: ProcessGroupGloo is a
// ProcessGroup. LibTorch 2.x split them: ProcessGroupGloo is a Backend, registered on a
// ProcessGroup for CPU tensors.
c10::intrusive_ptr<c10d::ProcessGroup> gloo_process_group(
    const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
    const c10::intrusive_ptr<c10d::ProcessGroupGloo::Options>& options) {
  auto gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, options);
#if TORCH_VERSION_MAJOR >= 2
  auto pg = c10::make_intrusive<c10d::ProcessGroup>(store, rank, size);
  pg->setDefaultBackend(c10d::ProcessGroup::BackendType::GLOO);
  pg->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, gloo);
  return pg;
#else
  return gloo;
#endif
}

// The process group on `transport`; any failure while the ranks connect is a named error.
std::shared_ptr<Group> make_group(const c10::intrusive_ptr<c10d::Store>& store, int rank,
                                  int size, std::chrono::milliseconds timeout,
                                  const Transport& transport) {
  ignore_sigpipe();
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  options->devices = transport.devices;
  try {
    return std::make_shared<Group>(gloo_process_group(store, rank, size, options), timeout,
                                   store);
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "vicreg::distributed: setting up the Gloo process group failed on rank ",
                rank, " of ", size, " (timeout ", timeout.count(), " ms; this rank's transport: ",
                transport.description, "): ", message_of(e),
                ". A peer that exited or hung during setup fails it too; if the hosts cannot "
                "reach each other at that address, ", kInterfaceHint);
  }
}

}  // namespace

std::shared_ptr<Group> make_gloo_group(const c10::intrusive_ptr<c10d::Store>& store, int rank,
                                       int size, std::chrono::milliseconds timeout,
                                       const GlooEndpoint& endpoint) {
  TORCH_CHECK(size >= 1 && rank >= 0 && rank < size,
              "vicreg::distributed::make_gloo_group: need 0 <= rank < size, got rank ", rank,
              " and size ", size);
  auto transport = configured_transport(endpoint);
  return make_group(store, rank, size, timeout,
                    transport ? *transport
                              : address_transport("127.0.0.1", "make_gloo_group's default: "
                                                               "every rank on this host"));
}

EnvConfig parse_env(const std::function<const char*(const char*)>& getenv_fn) {
  auto get = [&](const char* name) { return getenv_fn ? getenv_fn(name) : std::getenv(name); };
  constexpr long kMaxRanks = 1 << 24;
  EnvConfig c;
  c.world_size = env_int("WORLD_SIZE", get("WORLD_SIZE"), 1, kMaxRanks);
  c.rank = env_int("RANK", get("RANK"), 0, kMaxRanks - 1);
  TORCH_CHECK(c.rank < c.world_size, "vicreg::distributed::init_from_env: RANK ", c.rank,
              " must be below WORLD_SIZE ", c.world_size);
  c.master_port = env_int("MASTER_PORT", get("MASTER_PORT"), 1, 65535);
  const char* addr = get("MASTER_ADDR");
  TORCH_CHECK(addr != nullptr && *addr != 0,
              "vicreg::distributed::init_from_env: environment variable MASTER_ADDR is not set");
  c.master_addr = addr;
  const char* ifnames = get("GLOO_SOCKET_IFNAME");
  if (ifnames != nullptr && *ifnames != 0) c.socket_ifnames = socket_ifnames(ifnames);
  return c;
}

std::shared_ptr<Group> init_from_env(std::chrono::milliseconds timeout,
                                     const GlooEndpoint& endpoint) {
  const auto env = parse_env();
  const int rank = env.rank, size = env.world_size, port = env.master_port;
  const char* addr = env.master_addr.c_str();
  auto transport = configured_transport(endpoint);
  if (!transport) transport = host_transport(rank, addr);
  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(port);
  so.isServer = rank == 0;
  so.numWorkers = size;
  so.timeout = timeout;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  // 2.4 made the libuv server the default; builds without libuv (Debian's) refuse it.
  so.useLibUV = false;
#endif
  ignore_sigpipe();
  c10::intrusive_ptr<c10d::Store> store;
  try {
    store = c10::make_intrusive<c10d::TCPStore>(addr, so);
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "vicreg::distributed: rank ", rank, " of ", size,
                rank == 0 ? " could not serve" : " could not reach", " the TCPStore at ", addr,
                ":", port, " (MASTER_ADDR:MASTER_PORT; rank 0 serves it) within the ",
                timeout.count(), " ms timeout: ", message_of(e));
  }
  return make_group(store, rank, size, timeout, *transport);
}

}  // namespace vicreg::distributed
