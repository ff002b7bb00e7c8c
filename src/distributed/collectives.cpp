// vicreg::distributed's collectives: the differentiable all-gather, the bucketed gradient
// all-reduce, and, when one fails, which ranks were lost.

#include <ATen/ATen.h>
#include <c10/util/accumulate.h>
#include <torch/autograd.h>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "distributed/common.h"
#include "vicreg/distributed.h"

namespace vicreg::distributed {
namespace {

using detail::message_of;
std::string failure_key(int rank) { return "vicreg/failed/" + std::to_string(rank); }

// After a failed collective: this rank says so in the store, then waits a few seconds for
// the others to say the same (a peer's exit makes its neighbours' collectives fail at once,
// and their exits fail the rest). Those that stay silent are the lost ones. Rank 0 serves
// the store: when it is unreachable, rank 0 is the lost one, unless it had already reported.
std::string lost_ranks(const Group& g) {
  const auto& store = g.store();
  if (!store || g.size() < 2) return "";
  const auto grace = std::min<std::chrono::milliseconds>(g.timeout(), std::chrono::seconds(5));
  const auto deadline = std::chrono::steady_clock::now() + grace;
  std::vector<bool> reported(g.size(), false);
  reported[g.rank()] = true;
  bool store_lost = false;
  try {
    store->set(failure_key(g.rank()), std::vector<uint8_t>{1});
    for (;;) {
      for (int r = 0; r < g.size(); ++r) {
        if (!reported[r]) reported[r] = store->check({failure_key(r)});
      }
      if (std::all_of(reported.begin(), reported.end(), [](bool b) { return b; })) break;
      if (std::chrono::steady_clock::now() >= deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  } catch (const std::exception&) {
    store_lost = true;
  }
  std::string lost;
  for (int r = 0; r < g.size(); ++r) {
    if (reported[r] || (store_lost && r != 0)) continue;
    lost += (lost.empty() ? "" : ", ") + std::to_string(r);
  }
  if (lost.empty()) return "; every rank reported the failure (no rank lost)";
  return (lost.find(',') == std::string::npos ? "; lost rank: " : "; lost ranks: ") + lost +
         (store_lost ? " (the store that rank 0 serves is unreachable)"
                     : " (no report within " + std::to_string(grace.count()) +
                           " ms: exited or hung)");
}

}  // namespace

namespace detail {

void wait(const c10::intrusive_ptr<c10d::Work>& work, const Group& g, const std::string& what) {
  try {
    work->wait(g.timeout());
  } catch (const std::exception& e) {
    const auto message = message_of(e);
    TORCH_CHECK(false, "vicreg::distributed: ", what, " failed on rank ", g.rank(), " of ",
                g.size(), " (a rank that exited or hung makes its peers fail within the ",
                g.timeout().count(), " ms timeout): ", message, lost_ranks(g));
  }
}

std::vector<int64_t> exchange_rows(const at::Tensor& z, const Group& g, const char* fn) {
  // Every rank's signature: rows, dtype, then the row shape padded with -1 to kMaxRowDims.
  constexpr int64_t kMaxRowDims = 16;
  TORCH_CHECK(z.dim() - 1 <= kMaxRowDims, fn, ": expected at most ", kMaxRowDims + 1,
              " dims, got shape ", z.sizes());
  std::vector<int64_t> sig(2 + kMaxRowDims, -1);
  sig[0] = z.size(0);
  sig[1] = static_cast<int64_t>(z.scalar_type());
  for (int64_t i = 1; i < z.dim(); ++i) sig[1 + i] = z.size(i);
  // (on z's device: a backend such as NCCL takes tensors of one device)
  const auto mine = at::tensor(sig, at::kLong).to(z.device());
  std::vector<at::Tensor> in{mine};
  std::vector<std::vector<at::Tensor>> out(1);
  for (int r = 0; r < g.size(); ++r) out[0].push_back(at::empty_like(mine));
  wait(g.process_group()->allgather(out, in), g, "exchanging embedding sizes");
  // Read a copy that this thread owns: Gloo's worker may drop the last reference to `out` and
  // free it after we return, ordered only by LibTorch's (uninstrumented) reference count, so
  // ThreadSanitizer would report our reads of `out` against that free.
  const auto all = at::stack(out[0]).cpu().contiguous();
  const auto* p = all.data_ptr<int64_t>();
  const int64_t n = all.size(1);
  std::vector<std::vector<int64_t>> sigs;
  for (int r = 0; r < g.size(); ++r) sigs.emplace_back(p + r * n, p + (r + 1) * n);
  const auto row_shape = [](const std::vector<int64_t>& s) {
    std::vector<int64_t> shape;
    for (size_t i = 2; i < s.size() && s[i] >= 0; ++i) shape.push_back(s[i]);
    return c10::str(c10::IntArrayRef(shape));
  };
  std::vector<int64_t> rows;
  for (int r = 0; r < g.size(); ++r) {
    const auto& s = sigs[r];
    rows.push_back(s[0]);
    TORCH_CHECK(std::equal(s.begin() + 2, s.end(), sigs[0].begin() + 2), fn,
                ": ranks hold embeddings of different feature shapes: rank 0 has rows of shape ",
                row_shape(sigs[0]), ", rank ", r, " has ", row_shape(s), " (this rank ",
                g.rank(), ": shape ", z.sizes(), ")");
    TORCH_CHECK(s[1] == sigs[0][1], fn, ": ranks hold embeddings of different dtypes: rank 0 ",
                static_cast<at::ScalarType>(sigs[0][1]), ", rank ", r, " ",
                static_cast<at::ScalarType>(s[1]));
  }
  return rows;
}

// Not Gloo's allgather (LibTorch 1.13's Gloo has no other gather): it takes equal sizes (so
// padding), copies its input into a fresh buffer and a fresh flat output into the outputs (so a
// concatenation after it), and on a CPU those passes and fresh pages cost about as much as the
// transfer. A broadcast from each rank writes straight into the result, of any sizes; all are in
// flight at once, and the bytes sent over all ranks are those of a ring allgather. (After a
// failed wait the other broadcasts stay queued, each until its own timeout.)
void broadcast_blocks_(const at::Tensor& flat, const std::vector<int64_t>& counts,
                       const Group& g, const std::string& what) {
  TORCH_INTERNAL_ASSERT(flat.dim() == 1 && flat.is_contiguous() &&
                        static_cast<int>(counts.size()) == g.size());
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  int64_t start = 0;
  for (int r = 0; r < g.size(); ++r) {
    if (counts[r] > 0) {  // every rank knows every count, so all skip the same broadcasts
      std::vector<at::Tensor> block{flat.narrow(0, start, counts[r])};
      c10d::BroadcastOptions o;
      o.rootRank = r;
      o.timeout = g.timeout();
      works.push_back(g.process_group()->broadcast(block, o));
    }
    start += counts[r];
  }
  for (const auto& w : works) wait(w, g, what);
}

at::Tensor gather_rows(const at::Tensor& z, const std::vector<int64_t>& rows, const Group& g,
                       const std::string& what) {
  const int64_t row_numel = c10::multiply_integers(z.sizes().slice(1));
  std::vector<int64_t> counts;
  int64_t total = 0, mine = 0;
  for (int r = 0; r < g.size(); ++r) {
    if (r == g.rank()) mine = total;
    counts.push_back(rows[r] * row_numel);
    total += rows[r];
  }
  auto shape = z.sizes().vec();
  shape[0] = total;
  const auto all = at::empty(shape, z.options());
  all.narrow(0, mine, z.size(0)).copy_(z);
  broadcast_blocks_(all.view(-1), counts, g, what);
  // The caller's graph gets a copy that Gloo never held: Gloo's worker thread may drop the last
  // reference to a tensor it held, and free it there, in an order that only LibTorch's
  // (uninstrumented) reference count keeps, so ThreadSanitizer would report our kernels' reads
  // against that free. (The gathered buffer is read here by ATen only.)
  return all.clone();
}

void save_group(torch::autograd::AutogradContext* ctx, const Group& g) {
  ctx->saved_data["group"] = c10::IValue::make_capsule(g.process_group());
  ctx->saved_data["timeout_ms"] = static_cast<int64_t>(g.timeout().count());
  if (g.store()) ctx->saved_data["store"] = c10::IValue::make_capsule(g.store());
}

Group saved_group(torch::autograd::AutogradContext* ctx) {
  const auto store = ctx->saved_data.count("store")
                         ? c10::static_intrusive_pointer_cast<c10d::Store>(
                               ctx->saved_data["store"].toCapsule())
                         : c10::intrusive_ptr<c10d::Store>();
  return Group(c10::static_intrusive_pointer_cast<c10d::ProcessGroup>(
                   ctx->saved_data["group"].toCapsule()),
               std::chrono::milliseconds(ctx->saved_data["timeout_ms"].toInt()), store);
}

void all_reduce_sum_(at::Tensor& t, const Group& g, const std::string& what) {
  std::vector<at::Tensor> one{t};
  wait(g.process_group()->allreduce(one), g, what);
}

}  // namespace detail

namespace {

using detail::wait;

class GatherFunction : public torch::autograd::Function<GatherFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& z,
                            const Group* g) {
    const auto rows = detail::exchange_rows(z, *g, "vicreg::distributed::all_gather");
    int64_t offset = 0;
    for (int r = 0; r < g->rank(); ++r) offset += rows[r];
    auto gathered = detail::gather_rows(z, rows, *g, "all_gather");
    ctx->saved_data["offset"] = offset;
    ctx->saved_data["rows"] = z.size(0);
    detail::save_group(ctx, *g);
    return gathered;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto g = detail::saved_group(ctx);
    std::vector<at::Tensor> t{grads[0].contiguous().clone()};
    wait(g.process_group()->allreduce(t), g, "all_gather backward (all-reduce)");
    return {t[0].narrow(0, ctx->saved_data["offset"].toInt(), ctx->saved_data["rows"].toInt()),
            at::Tensor()};
  }
};

}  // namespace

Group::Group(c10::intrusive_ptr<c10d::ProcessGroup> process_group,
             std::chrono::milliseconds timeout, c10::intrusive_ptr<c10d::Store> store)
    : pg_(std::move(process_group)), timeout_(timeout), store_(std::move(store)) {
  TORCH_CHECK(pg_, "vicreg::distributed::Group: expected a process group, got null");
  TORCH_CHECK(timeout_.count() > 0, "vicreg::distributed::Group: timeout must be > 0 ms");
}

int Group::rank() const { return pg_->getRank(); }
int Group::size() const { return pg_->getSize(); }

at::Tensor all_gather(const at::Tensor& z, const Group& group) {
  TORCH_CHECK(z.defined() && z.dim() >= 1, "vicreg::distributed::all_gather: expected a tensor "
              "with a leading batch dim");
  if (group.size() == 1) return z;
  const detail::NormalTensorsUnderInference normal;
  return GatherFunction::apply(z.contiguous(), &group);
}

void all_reduce_mean_(std::vector<at::Tensor>& tensors, const Group& group,
                      int64_t bucket_bytes) {
  TORCH_CHECK(bucket_bytes > 0, "vicreg::distributed::all_reduce_mean_: bucket_bytes must be > 0, "
              "got ", bucket_bytes);
  if (group.size() == 1 || tensors.empty()) return;
  // Consecutive tensors of one dtype and device share a bucket up to bucket_bytes.
  struct Bucket {
    std::vector<at::Tensor*> members;
    int64_t bytes = 0;
    at::Tensor flat;
    c10::intrusive_ptr<c10d::Work> work;
  };
  std::vector<Bucket> buckets;
  for (auto& t : tensors) {
    if (!t.defined()) continue;
    const int64_t bytes = t.numel() * static_cast<int64_t>(t.element_size());
    const bool fits = !buckets.empty() &&
                      buckets.back().members[0]->scalar_type() == t.scalar_type() &&
                      buckets.back().members[0]->device() == t.device() &&
                      buckets.back().bytes + bytes <= bucket_bytes;
    if (!fits) buckets.emplace_back();
    buckets.back().members.push_back(&t);
    buckets.back().bytes += bytes;
  }
  for (auto& b : buckets) {
    std::vector<at::Tensor> flat;
    for (const auto* t : b.members) flat.push_back(t->reshape(-1));
    std::vector<at::Tensor> one{at::cat(flat)};
    b.flat = one[0];
    b.work = group.process_group()->allreduce(one);
  }
  for (size_t i = 0; i < buckets.size(); ++i) {
    auto& b = buckets[i];
    wait(b.work, group,
         "all_reduce_mean_ (bucket " + std::to_string(i + 1) + " of " +
             std::to_string(buckets.size()) + ")");
    b.flat.div_(group.size());
    int64_t offset = 0;
    for (auto* t : b.members) {
      t->copy_(b.flat.narrow(0, offset, t->numel()).view(t->sizes()));
      offset += t->numel();
    }
  }
}
}  // namespace vicreg::distributed
