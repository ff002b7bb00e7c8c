// Differentiable all-gather over c10d, and process-group setup.

#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <csignal>
#include <cstdlib>
#include <string>

#include <torch/version.h>

#include "detail.h"
#include "vicreg/distributed.h"

namespace vicreg::distributed {
namespace {

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

void wait(const c10::intrusive_ptr<c10d::Work>& work, const Group& g, const char* what) {
  try {
    work->wait(g.timeout());
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "vicreg::distributed: ", what, " failed on rank ", g.rank(), " of ",
                g.size(), " (a rank that exited or hung makes its peers fail within the ",
                g.timeout().count(), " ms timeout): ", e.what());
  }
}

// Every rank's shape signature: rows, elements per row, dims, dtype.
std::vector<at::Tensor> exchange_signatures(const at::Tensor& z, const Group& g) {
  const int64_t n = z.size(0);
  auto mine = at::tensor({n, n > 0 ? z.numel() / n : 0, z.dim(),
                          static_cast<int64_t>(z.scalar_type())},
                         at::kLong);
  std::vector<at::Tensor> in{mine};
  std::vector<std::vector<at::Tensor>> out(1);
  for (int r = 0; r < g.size(); ++r) out[0].push_back(at::empty_like(mine));
  wait(g.process_group()->allgather(out, in), g, "exchanging embedding sizes");
  return out[0];
}

class GatherFunction : public torch::autograd::Function<GatherFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& z,
                            const Group* g) {
    const auto sigs = exchange_signatures(z, *g);
    std::vector<int64_t> rows;
    for (int r = 0; r < g->size(); ++r) {
      const auto s = sigs[r];
      rows.push_back(s[0].item<int64_t>());
      TORCH_CHECK(s[1].item<int64_t>() == sigs[0][1].item<int64_t>() &&
                      s[2].item<int64_t>() == sigs[0][2].item<int64_t>(),
                  "vicreg::distributed::all_gather: ranks hold embeddings of different feature "
                  "shapes: rank 0 has ", sigs[0][1].item<int64_t>(), " elements per row in ",
                  sigs[0][2].item<int64_t>(), " dims, rank ", r, " has ", s[1].item<int64_t>(),
                  " in ", s[2].item<int64_t>(), " (this rank ", g->rank(), ": shape ",
                  z.sizes(), ")");
      TORCH_CHECK(s[3].item<int64_t>() == sigs[0][3].item<int64_t>(),
                  "vicreg::distributed::all_gather: ranks hold embeddings of different dtypes "
                  "(rank ", r, " differs from rank 0)");
    }
    const int64_t max_rows = *std::max_element(rows.begin(), rows.end());
    auto shape = z.sizes().vec();
    shape[0] = max_rows;
    auto padded = at::zeros(shape, z.options());
    padded.narrow(0, 0, z.size(0)).copy_(z);
    std::vector<at::Tensor> in{padded};
    std::vector<std::vector<at::Tensor>> out(1);
    for (int r = 0; r < g->size(); ++r) out[0].push_back(at::empty_like(padded));
    wait(g->process_group()->allgather(out, in), *g, "all_gather");
    std::vector<at::Tensor> parts;
    int64_t offset = 0;
    for (int r = 0; r < g->size(); ++r) {
      parts.push_back(out[0][r].narrow(0, 0, rows[r]));
      if (r < g->rank()) offset += rows[r];
    }
    ctx->saved_data["offset"] = offset;
    ctx->saved_data["rows"] = z.size(0);
    // The process group itself (ref-counted), so the graph never outlives it.
    ctx->saved_data["group"] = c10::IValue::make_capsule(g->process_group());
    ctx->saved_data["timeout_ms"] = static_cast<int64_t>(g->timeout().count());
    return at::cat(parts);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const Group g(c10::static_intrusive_pointer_cast<c10d::ProcessGroup>(
                      ctx->saved_data["group"].toCapsule()),
                  std::chrono::milliseconds(ctx->saved_data["timeout_ms"].toInt()));
    std::vector<at::Tensor> t{grads[0].contiguous().clone()};
    wait(g.process_group()->allreduce(t), g, "all_gather backward (all-reduce)");
    return {t[0].narrow(0, ctx->saved_data["offset"].toInt(), ctx->saved_data["rows"].toInt()),
            at::Tensor()};
  }
};

int env_int(const char* name) {
  const char* v = std::getenv(name);
  TORCH_CHECK(v != nullptr && *v != 0, "vicreg::distributed::init_from_env: environment variable ",
              name, " is not set (torchrun sets RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)");
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  TORCH_CHECK(end != v && *end == 0 && x >= 0, "vicreg::distributed::init_from_env: ", name,
              " must be a non-negative integer, got '", v, "'");
  return static_cast<int>(x);
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

}  // namespace

Group::Group(c10::intrusive_ptr<c10d::ProcessGroup> process_group,
             std::chrono::milliseconds timeout)
    : pg_(std::move(process_group)), timeout_(timeout) {
  TORCH_CHECK(pg_, "vicreg::distributed::Group: expected a process group, got null");
  TORCH_CHECK(timeout_.count() > 0, "vicreg::distributed::Group: timeout must be > 0 ms");
}

int Group::rank() const { return pg_->getRank(); }
int Group::size() const { return pg_->getSize(); }

at::Tensor all_gather(const at::Tensor& z, const Group& group) {
  TORCH_CHECK(z.defined() && z.dim() >= 1, "vicreg::distributed::all_gather: expected a tensor "
              "with a leading batch dim");
  if (group.size() == 1) return z;
  return GatherFunction::apply(z.contiguous(), &group);
}

void all_reduce_mean_(std::vector<at::Tensor>& tensors, const Group& group) {
  if (group.size() == 1 || tensors.empty()) return;
  for (auto& t : tensors) {
    if (!t.defined()) continue;
    std::vector<at::Tensor> one{t};
    wait(group.process_group()->allreduce(one), group, "all_reduce_mean_");
    t.div_(group.size());
  }
}

std::shared_ptr<Group> make_gloo_group(const c10::intrusive_ptr<c10d::Store>& store, int rank,
                                       int size, std::chrono::milliseconds timeout) {
  TORCH_CHECK(size >= 1 && rank >= 0 && rank < size,
              "vicreg::distributed::make_gloo_group: need 0 <= rank < size, got rank ", rank,
              " and size ", size);
  ignore_sigpipe();
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  return std::make_shared<Group>(gloo_process_group(store, rank, size, options), timeout);
}

std::shared_ptr<Group> init_from_env(std::chrono::milliseconds timeout) {
  const int rank = env_int("RANK");
  const int size = env_int("WORLD_SIZE");
  const int port = env_int("MASTER_PORT");
  const char* addr = std::getenv("MASTER_ADDR");
  TORCH_CHECK(addr != nullptr && *addr != 0,
              "vicreg::distributed::init_from_env: environment variable MASTER_ADDR is not set");
  TORCH_CHECK(size >= 1 && rank < size, "vicreg::distributed::init_from_env: RANK ", rank,
              " must be below WORLD_SIZE ", size);
  TORCH_CHECK(port > 0 && port < 65536, "vicreg::distributed::init_from_env: MASTER_PORT ",
              port, " is not a TCP port");
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
  auto store = c10::make_intrusive<c10d::TCPStore>(addr, so);
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  return std::make_shared<Group>(gloo_process_group(store, rank, size, options), timeout);
}

}  // namespace vicreg::distributed
