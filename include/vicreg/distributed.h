#pragma once
// VICReg across processes on LibTorch's c10d: a differentiable all-gather of embeddings and
// the process-group setup torchrun users expect. With a process group, every rank's loss is
// the single-process loss of the batch gathered from every rank, normalized by its true size.
// By default (VICRegLossOptions::sharded) each rank computes it from statistics summed over the
// ranks and the gradient of its own rows only; otherwise every rank computes the whole gathered
// batch through all_gather.

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <functional>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "vicreg/export.h"

namespace vicreg::distributed {

/// A c10d process group and the timeout its collectives wait for. Pass it to
/// VICRegLossOptions::process_group to compute the loss on the gathered batch.
class VICREG_EXPORT Group {
 public:
  /// With `store` (the one the group was set up over), a failed collective names the lost
  /// ranks: every rank that sees one fail says so in the store, and the ranks that have not
  /// said so within a few seconds are named as exited or hung.
  explicit Group(c10::intrusive_ptr<c10d::ProcessGroup> process_group,
                 std::chrono::milliseconds timeout = std::chrono::minutes(5),
                 c10::intrusive_ptr<c10d::Store> store = {});
  int rank() const;
  int size() const;
  const c10::intrusive_ptr<c10d::ProcessGroup>& process_group() const { return pg_; }
  std::chrono::milliseconds timeout() const { return timeout_; }
  const c10::intrusive_ptr<c10d::Store>& store() const { return store_; }

 private:
  c10::intrusive_ptr<c10d::ProcessGroup> pg_;
  std::chrono::milliseconds timeout_;
  c10::intrusive_ptr<c10d::Store> store_;
};

/// Concatenates every rank's rows in rank order. Ranks may hold different numbers of rows
/// (the sizes are exchanged first); the other dims and the dtype must agree, else every rank
/// gets a c10::Error. Differentiable: the backward all-reduces (sums) the incoming gradient
/// over the ranks and returns this rank's slice, as facebookresearch/vicreg's FullGatherLayer.
VICREG_EXPORT at::Tensor all_gather(const at::Tensor& z, const Group& group);

/// DDP's default bucket size.
constexpr int64_t kDefaultBucketBytes = 25 << 20;

/// Averages tensors (e.g. parameter gradients) over the ranks in place, as DDP does: the
/// tensors are flattened into buckets of at most `bucket_bytes` (consecutive tensors of one
/// dtype and device; a larger tensor gets a bucket of its own), one asynchronous all-reduce
/// per bucket, all awaited, then divided and copied back. Undefined tensors are skipped. Every
/// rank must pass tensors of the same shapes and dtypes in the same order.
VICREG_EXPORT void all_reduce_mean_(std::vector<at::Tensor>& tensors, const Group& group,
                                    int64_t bucket_bytes = kDefaultBucketBytes);

/// Where a rank's Gloo transport binds: network interfaces by name (one device per name, as
/// torch.distributed's GLOO_SOCKET_IFNAME="eth0,eth1"), or one local address or hostname.
/// Both empty: the environment decides (see make_gloo_group and init_from_env).
struct GlooEndpoint {
  std::vector<std::string> interfaces;
  std::string address;
};

/// A Gloo process group (CPU tensors) over `store`; collectives time out after `timeout`.
/// The transport binds as `endpoint` says; when it is empty, to the interfaces named in
/// GLOO_SOCKET_IFNAME if that is set, else to 127.0.0.1 (all ranks on this host).
/// Both group makers set SIGPIPE to ignored if it has its default action (as Python does), so
/// that a peer that died is a c10::Error on the other ranks, not a killed process. Every error
/// that reaches a rank from its peers (setup, collectives, timeouts) is a c10::Error whose
/// message starts with "vicreg::distributed" and names the rank, the operation and the timeout.
VICREG_EXPORT std::shared_ptr<Group> make_gloo_group(const c10::intrusive_ptr<c10d::Store>& store,
                                                     int rank, int size,
                                                     std::chrono::milliseconds timeout,
                                                     const GlooEndpoint& endpoint = {});

/// What init_from_env reads from the environment (as torchrun sets it), parsed and checked.
struct EnvConfig {
  int rank = 0, world_size = 1, master_port = 0;
  std::string master_addr;
  std::vector<std::string> socket_ifnames;  ///< GLOO_SOCKET_IFNAME's list; empty when unset
};

/// Reads RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT and GLOO_SOCKET_IFNAME through `getenv`
/// (std::getenv by default). A missing or malformed variable is a c10::Error that names it and
/// says what was expected: RANK and WORLD_SIZE decimal integers with 0 <= RANK < WORLD_SIZE,
/// MASTER_PORT in 1..65535, MASTER_ADDR not empty, GLOO_SOCKET_IFNAME a comma-separated list
/// of at least one name.
VICREG_EXPORT EnvConfig parse_env(const std::function<const char*(const char*)>& getenv = {});

/// Reads RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT (as torchrun sets them), makes a
/// TCPStore (rank 0 serves it) and a Gloo process group with `timeout`. A missing or malformed
/// variable is a c10::Error that names it. The transport binds as `endpoint` says; when it is
/// empty, to the interfaces in GLOO_SOCKET_IFNAME if set, else to the address this host's name
/// resolves to, unless that is a loopback address (Debian's /etc/hosts) while MASTER_ADDR is
/// not: then to the local address that routes to MASTER_ADDR, said in one line on stderr.
/// (NCCL for CUDA tensors is not built in yet.)
VICREG_EXPORT std::shared_ptr<Group> init_from_env(
    std::chrono::milliseconds timeout = std::chrono::seconds(60),
    const GlooEndpoint& endpoint = {});

}  // namespace vicreg::distributed
