#pragma once
// What the parts of vicreg::distributed share: collectives.cpp (the gather, the all-reduce
// and naming the ranks lost after a failure), sharded.cpp (the loss computed by shares) and
// setup.cpp (the Gloo transport and the environment).

#include <c10/core/GradMode.h>
#include <c10/core/InferenceMode.h>
#include <c10/util/Exception.h>

#include <exception>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "vicreg/distributed.h"

// PyTorch 2.2 keeps a registry of process groups by name (for its functional collectives):
// through it a Python torch.distributed group reaches the sharded loss, as the operator
// vicreg::_vicreg_sharded_terms (sharded.cpp). LibTorch 1.13 has none and no such operator.
#include <torch/version.h>
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 2)
#define VICREG_GROUPS_BY_NAME 1
#else
#define VICREG_GROUPS_BY_NAME 0
#endif

namespace vicreg::ops {
struct Settings;
}
namespace torch::autograd {
struct AutogradContext;
}

namespace vicreg::distributed::detail {

// The message of an exception without LibTorch's backtrace.
inline std::string message_of(const std::exception& e) {
  if (const auto* c = dynamic_cast<const c10::Error*>(&e)) return c->what_without_backtrace();
  return e.what();
}

// Gloo's worker threads run outside InferenceMode and refuse to write into inference tensors,
// so under InferenceMode a distributed call makes normal tensors, with grad mode off: no graph,
// as InferenceMode promises. (Outside InferenceMode this does nothing.)
class NormalTensorsUnderInference {
 public:
  NormalTensorsUnderInference() {
    if (c10::InferenceMode::is_enabled()) {
      normal_.emplace(false);
      no_grad_.emplace(false);
    }
  }

 private:
  std::optional<c10::InferenceMode> normal_;
  std::optional<c10::AutoGradMode> no_grad_;
};

// Waits for a collective; a failure is a c10::Error that names this rank, `what`, the timeout
// and the ranks lost (see lost_ranks in collectives.cpp).
void wait(const c10::intrusive_ptr<c10d::Work>& work, const Group& g, const std::string& what);

// Every rank's row count of z ([rows, ...]), after checking that the ranks agree on the rest of
// the shape and on the dtype (else a c10::Error on every rank, from `fn`).
std::vector<int64_t> exchange_rows(const at::Tensor& z, const Group& g, const char* fn);

// Fills a 1-D buffer that holds every rank's block in rank order,
// `counts[r]` elements from rank r, where this rank's block is already written: each rank
// broadcasts its block straight into its peers' buffers. Not differentiable.
void broadcast_blocks_(const at::Tensor& flat, const std::vector<int64_t>& counts,
                       const Group& g, const std::string& what);

// Every rank's rows of z concatenated in rank order, `rows` from exchange_rows (through
// broadcast_blocks_ into a buffer, then copied). Not differentiable.
at::Tensor gather_rows(const at::Tensor& z, const std::vector<int64_t>& rows, const Group& g,
                       const std::string& what);

// The group an autograd Function's backward needs, kept in its context by the forward (the
// process group and store themselves, ref-counted, so that the graph never outlives them).
void save_group(torch::autograd::AutogradContext* ctx, const Group& g);
Group saved_group(torch::autograd::AutogradContext* ctx);

// t summed elementwise over the ranks, in place (t contiguous).
void all_reduce_sum_(at::Tensor& t, const Group& g, const std::string& what);

// The sharded loss (sharded.cpp): (loss, invariance, variance, covariance) of the batch
// gathered from every rank, each rank computing its own rows' share; the backward is
// hand-written and sends four numbers.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> sharded_terms(
    const at::Tensor& z_a, const at::Tensor& z_b, const ops::Settings& s, const Group& g,
    bool check_finite);

}  // namespace vicreg::distributed::detail
