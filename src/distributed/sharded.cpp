// The sharded VICReg loss: the loss of the batch gathered from every rank, where each rank
// computes only its own rows' share. Every term depends on the other ranks' rows only through
// statistics summed over the ranks: the column sums (the mean), the column sums of squares, the
// squared view difference, and either the d x d matrix M = Zc^T Zc (direct path) or, on the Gram
// path, the squared norm of this rank's Gram rows against all N centered rows. The gradient of a
// rank's own rows needs nothing more (ops/core.h, Shard): so the forward sends the statistics
// (and, on the Gram path, the centered rows, gathered without autograd), and the backward sends
// only the four output gradients, summed over the ranks as the replicated path's gather
// backward sums the ranks' gradients.

#include <ATen/ATen.h>
#include <c10/util/accumulate.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <algorithm>
#include <array>

#include "ops/checks.h"
#include "distributed/common.h"
#include "ops/core.h"
#include "ops/ops.h"

#if VICREG_GROUPS_BY_NAME
#include <torch/csrc/distributed/c10d/GroupRegistry.hpp>
#endif

namespace vicreg::distributed::detail {
namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr const char* kFn = "vicreg_loss (sharded over the process group)";

// The saved tensors: per view (a, b) Zc of this rank's rows, the column sums of squares of all
// N, the matrix (Gram rows or M) and, on the Gram path, all N centered rows; Za - Zb once.
enum SavedIndex { kZc = 0, kDiff = 2, kColsq = 3, kMat = 5, kZcAll = 7 };

// A view [P, n, d] centered with the column means of all N rows, and every rank's centered
// rows [P, N, d] in rank order. This rank's rows are centered straight into their slot of the
// buffer that the ranks' broadcasts fill, so with one position (P == 1) the view's centered
// rows and the gathered ones are one buffer, written once.
struct Gathered {
  Tensor zc, zc_all;
};
Gathered center_and_gather(const Tensor& z, const ops::ColumnMean& column_mean,
                           const std::vector<int64_t>& rows, const Group& g) {
  const int64_t P = z.size(0), d = z.size(2);
  std::vector<int64_t> counts, offsets;
  int64_t N = 0;
  for (auto r : rows) {
    offsets.push_back(N);
    counts.push_back(P * r * d);
    N += r;
  }
  // Rank r's block [P, n_r, d] starts at element P * offsets[r] * d.
  const auto flat = at::empty({P * N * d}, z.options());
  const auto block = [&](int r) {
    return flat.narrow(0, P * offsets[r] * d, counts[r]).view({P, rows[r], d});
  };
  auto zc = ops::center(z, column_mean, block(g.rank()));
  broadcast_blocks_(flat, counts, g, "sharded loss (centered rows)");
  if (P == 1) return {zc, flat.view({1, N, d})};
  std::vector<Tensor> parts;
  for (int r = 0; r < g.size(); ++r) parts.push_back(block(r));
  return {zc, at::cat(parts, 1)};
}

class ShardedFunction : public torch::autograd::Function<ShardedFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& z_a, const Tensor& z_b,
                               const ops::Settings& s, const Group* g, bool check_finite) {
    // Every check that could fail on one rank alone comes after the exchange, from what all
    // ranks share: a rank that raised alone would leave its peers waiting for the timeout.
    const auto rows = exchange_rows(z_a, *g, kFn);
    int64_t N = 0;
    for (auto r : rows) N += r;
    TORCH_CHECK(N >= 2, kFn, ": need at least 2 samples over all ranks (N >= 2) to estimate a "
                "variance, got N = ", N, " (rows per rank ", c10::IntArrayRef(rows), ")");
    TORCH_CHECK(c10::multiply_integers(z_a.sizes().slice(1)) > 0, kFn,
                ": got rows of an empty shape ", z_a.sizes().slice(1), " on every rank");
    if (check_finite) {
      auto bad = at::zeros({1}, z_a.options().dtype(at::kDouble));
      if (!at::isfinite(z_a).all().item<bool>() || !at::isfinite(z_b).all().item<bool>()) {
        bad.fill_(1);
      }
      all_reduce_sum_(bad, *g, "sharded loss (check_finite)");
      const auto ranks = bad.item<double>();
      TORCH_CHECK(ranks == 0, kFn, ": z_a or z_b contains NaN or Inf on ", ranks,
                  " rank(s) (check_finite is on)");
    }
    const auto za = ops::as_positions(ops::to_compute_dtype(z_a));
    const auto zb = ops::as_positions(ops::to_compute_dtype(z_b));
    const int64_t P = za.size(0), d = za.size(2);
    const auto column_mean = [&](const Tensor& t) {
      auto sums = t.sum(1, /*keepdim=*/true);
      all_reduce_sum_(sums, *g, "sharded loss (column sums)");
      return sums / static_cast<double>(N);
    };
    // The views one at a time: on a CPU, fresh buffers of the views' size cost as much as
    // passes over them (page faults), so there is no stacked copy of both.
    const bool gram = ops::use_gram(N, d);
    std::array<Tensor, 2> zc, mat, zc_all;
    for (int v = 0; v < 2; ++v) {
      const auto& z = v == 0 ? za : zb;
      if (gram) {  // every rank's centered rows, sent once, in the forward
        auto both = center_and_gather(z, column_mean, rows, *g);
        zc[v] = std::move(both.zc);
        zc_all[v] = std::move(both.zc_all);
      } else {
        zc[v] = ops::center(z, column_mean);
      }
    }
    auto diff = za - zb;
    // Summed over the ranks in one buffer: per view the column sums of squares (ATen's cascade
    // sum, not M's diagonal from BLAS) and ||G||_F^2 (Gram) or M (direct); then sum (Za - Zb)^2.
    std::vector<Tensor> local;
    for (int v = 0; v < 2; ++v) {
      local.push_back(ops::column_sums_of_squares(zc[v]).reshape(-1));
      if (gram) {
        // This rank's Gram rows: ||G||_F^2 is the sum over the ranks of their squared norms.
        mat[v] = ops::batched_mm(zc[v], zc_all[v].transpose(1, 2));
        local.push_back(ops::sum_of_squares(mat[v]).reshape({1}));
      } else {
        local.push_back(ops::batched_mm(zc[v].transpose(1, 2), zc[v]).reshape(-1));
      }
    }
    local.push_back(ops::sum_of_squares(diff).reshape({1}));
    auto sums = at::cat(local);
    all_reduce_sum_(sums, *g, gram ? "sharded loss (Gram norms)" : "sharded loss (covariance)");
    std::array<Tensor, 2> colsq, offdiag;
    int64_t at = 0;
    const auto next = [&](int64_t count) {
      auto part = sums.narrow(0, at, count);
      at += count;
      return part;
    };
    for (int v = 0; v < 2; ++v) {
      colsq[v] = next(P * d).view({P, 1, d});
      if (gram) {
        offdiag[v] = ops::offdiag_of_gram(next(1)[0], colsq[v]);
      } else {
        mat[v] = next(P * d * d).view({P, d, d});
        offdiag[v] = ops::offdiag_of_matrix_(mat[v]);
      }
    }
    const auto sq_diff_all = next(1)[0];
    const ops::Shape shape{P, N, d};
    auto [loss, inv, var, cov] = ops::weighted(
        ops::invariance_of(sq_diff_all, shape, s),
        ops::variance_of(ops::hinge_term(colsq[0], N, s.hinge),
                         ops::hinge_term(colsq[1], N, s.hinge), s),
        ops::covariance_of(offdiag[0] + offdiag[1], shape, s), s);
    ctx->saved_data["settings"] = s.to_ivalue();
    ctx->saved_data["rows"] = N;
    ctx->saved_data["sizes"] = ops::to_ivalue(ops::shape_of(z_a));
    ctx->saved_data["dtype"] = static_cast<int64_t>(z_a.scalar_type());
    ctx->save_for_backward({zc[0], zc[1], diff, colsq[0], colsq[1], mat[0], mat[1], zc_all[0],
                            zc_all[1]});
    save_group(ctx, *g);
    ctx->set_materialize_grads(false);
    return {loss, inv, var, cov};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    TORCH_CHECK(!at::GradMode::is_enabled(),
                kFn, ": double backward is not supported (the sharded backward is hand-written); "
                "use the autograd backward (Backward::Autograd, Python fused_backward=False), "
                "which differentiates the gathered batch");
    const auto saved = ctx->get_saved_variables();
    const auto s = ops::Settings::from_ivalue(ctx->saved_data["settings"]);
    const int64_t N = ctx->saved_data["rows"].toInt();
    const auto& zc_a = saved[kZc];
    const int64_t P = zc_a.size(0), d = zc_a.size(2);
    // Each rank's loss is a function of every rank's rows: the gradient of this rank's rows
    // is the sum over the ranks of their output gradients times the one Jacobian.
    auto g = at::zeros({4}, zc_a.options());
    for (int i = 0; i < 4; ++i) {
      if (grads[i].defined()) g[i].add_(grads[i].to(zc_a.scalar_type()));
    }
    const auto group = saved_group(ctx);
    all_reduce_sum_(g, group, "sharded loss backward (output gradients)");
    const auto w = ops::vicreg_backward_weights(g[0], g[1], g[2], g[3], {P, N, d}, s);
    const auto view = [&](int v) {
      const ops::Shard shard{N, saved[kZcAll + v]};
      return ops::view_gradient(saved[kZc + v], {saved[kColsq + v], saved[kMat + v], {}, {}},
                                w.hinge, w.offdiag, s.hinge, &shard);
    };
    auto ga = view(0), gb = view(1);
    ga.addcmul_(saved[kDiff], w.inv);
    gb.addcmul_(saved[kDiff], w.inv.neg());
    const auto sizes = ops::shape_from_ivalue(ctx->saved_data["sizes"]);
    const auto dtype = static_cast<at::ScalarType>(ctx->saved_data["dtype"].toInt());
    return {ops::from_positions(ga, sizes).to(dtype), ops::from_positions(gb, sizes).to(dtype),
            Tensor(), Tensor(), Tensor()};
  }
};

}  // namespace

std::tuple<Tensor, Tensor, Tensor, Tensor> sharded_terms(const Tensor& z_a, const Tensor& z_b,
                                                         const ops::Settings& s, const Group& g,
                                                         bool check_finite) {
  checks::loss_call(kFn, z_a, z_b, s, /*local_shard=*/true);
  const NormalTensorsUnderInference normal;
  const auto out = ShardedFunction::apply(z_a, z_b, s, &g, check_finite);
  if (check_finite) checks::finite_result(kFn, out[0]);
  return {out[0], out[1], out[2], out[3]};
}

#if VICREG_GROUPS_BY_NAME
namespace {

using Terms = std::tuple<Tensor, Tensor, Tensor, Tensor>;
using ShardedHead = Terms(const Tensor& z_a, const Tensor& z_b, c10::string_view group_name,
                          int64_t timeout_ms);

// vicreg::_vicreg_sharded_terms: the fronts' arguments, with the group by its registered name
// (torch.distributed's group_name) and the timeout of its collectives.
Terms sharded_front(const Tensor& z_a, const Tensor& z_b, c10::string_view group_name,
                    int64_t timeout_ms, const ops::Front& f) {
  TORCH_CHECK(f.fused_backward, "_vicreg_sharded_terms: the sharded loss has the hand-written "
              "backward only (fused_backward=True); the autograd backward differentiates the "
              "gathered batch (sharded=False)");
  TORCH_CHECK(timeout_ms > 0, "_vicreg_sharded_terms: timeout_ms must be > 0, got ", timeout_ms);
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
  try {
    pg = c10d::resolve_process_group(std::string(group_name));
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "_vicreg_sharded_terms: no process group is registered under the name '",
                std::string(group_name), "' (expected the group_name of a live "
                "torch.distributed group): ", message_of(e));
  }
  const Group g(pg, std::chrono::milliseconds(timeout_ms));
  return sharded_terms(z_a, z_b, f.settings, g, f.check_finite);
}

}  // namespace
#endif

}  // namespace vicreg::distributed::detail

#if VICREG_GROUPS_BY_NAME
TORCH_LIBRARY_FRAGMENT(vicreg, m) {
  m.def((std::string("_vicreg_sharded_terms(Tensor z_a, Tensor z_b, str group_name, "
                     "int timeout_ms, ") +
         vicreg::ops::Front::schema() + ") -> " + vicreg::ops::kTermsResult)
            .c_str());
}

TORCH_LIBRARY_IMPL(vicreg, CompositeImplicitAutograd, m) {
  using namespace vicreg;
  m.impl("_vicreg_sharded_terms",
         TORCH_FN((ops::WithSettings<distributed::detail::sharded_front,
                                     distributed::detail::ShardedHead, ops::Front>::call)));
}
#endif
