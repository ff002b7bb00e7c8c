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
#include <torch/autograd.h>

#include "checks.h"
#include "distributed/common.h"
#include "ops/core.h"

namespace vicreg::distributed::detail {
namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr const char* kFn = "vicreg_loss (sharded over the process group)";

// The saved tensors, in this order: both views' rows stacked as [2P, n, d] (views a then b).
enum SavedIndex { kZc, kDiff, kColsq, kMat, kZcAll };

class ShardedFunction : public torch::autograd::Function<ShardedFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& z_a, const Tensor& z_b,
                               const ops::Settings& s, const Group* g) {
    const auto rows = exchange_rows(z_a, *g, kFn);
    int64_t N = 0;
    for (auto r : rows) N += r;
    TORCH_CHECK(N >= 2, kFn, ": need at least 2 samples over all ranks (N >= 2) to estimate a "
                "variance, got N = ", N, " (rows per rank ", c10::IntArrayRef(rows), ")");
    const auto za = ops::as_positions(ops::to_compute_dtype(z_a));
    const auto zb = ops::as_positions(ops::to_compute_dtype(z_b));
    const int64_t P = za.size(0), d = za.size(2);
    // Both views in one tensor, so that each statistic is one collective.
    const auto z = at::cat({za, zb});
    const auto column_mean = [&](const Tensor& t) {
      auto sums = t.sum(1, /*keepdim=*/true);
      all_reduce_sum_(sums, *g, "sharded loss (column sums)");
      return sums / static_cast<double>(N);
    };
    const auto zc = ops::center(z, column_mean).zc;
    auto diff = za - zb;
    const auto sq_diff = ops::sum_of_squares(diff).reshape({1});
    const bool gram = ops::use_gram(N, d);
    Tensor colsq, mat, zc_all, offdiag, sq_diff_all;
    if (gram) {
      // Every rank's centered rows (sent once, in the forward), then this rank's Gram rows;
      // ||G||_F^2 is the sum over ranks of the squared norms of their rows.
      zc_all = gather_rows(zc.transpose(0, 1).contiguous(), rows, *g,
                           "sharded loss (centered rows)")
                   .transpose(0, 1)
                   .contiguous();
      colsq = ops::column_sums_of_squares(zc_all);
      mat = at::bmm(zc, zc_all.transpose(1, 2));
      auto sums = at::cat({ops::sum_of_squares(mat.narrow(0, 0, P)).reshape({1}),
                           ops::sum_of_squares(mat.narrow(0, P, P)).reshape({1}), sq_diff});
      all_reduce_sum_(sums, *g, "sharded loss (Gram norms)");
      offdiag = at::stack({ops::offdiag_of_gram(sums[0], colsq.narrow(0, 0, P)),
                           ops::offdiag_of_gram(sums[1], colsq.narrow(0, P, P))});
      sq_diff_all = sums[2];
    } else {
      // M and the column sums of squares (ATen's cascade sum, not M's diagonal from BLAS),
      // summed over the ranks in one buffer.
      const auto m = at::bmm(zc.transpose(1, 2), zc);
      auto sums = at::cat({m.reshape(-1), ops::column_sums_of_squares(zc).reshape(-1), sq_diff});
      all_reduce_sum_(sums, *g, "sharded loss (covariance matrix)");
      mat = sums.narrow(0, 0, 2 * P * d * d).view({2 * P, d, d});
      colsq = sums.narrow(0, 2 * P * d * d, 2 * P * d).view({2 * P, d});
      mat.diagonal(0, 1, 2).zero_();
      offdiag = at::stack({ops::sum_of_squares(mat.narrow(0, 0, P)),
                           ops::sum_of_squares(mat.narrow(0, P, P))});
      sq_diff_all = sums[-1];
    }
    const ops::Shape shape{P, N, d};
    const auto hinge_a = ops::hinge_term(colsq.narrow(0, 0, P), N, s.hinge);
    const auto hinge_b = ops::hinge_term(colsq.narrow(0, P, P), N, s.hinge);
    auto [loss, inv, var, cov] =
        ops::weighted(ops::invariance_of(sq_diff_all, shape, s), ops::variance_of(hinge_a, hinge_b, s),
                      ops::covariance_of(offdiag.sum(), shape, s), s);
    ctx->saved_data["settings"] = s.to_ivalue();
    ctx->saved_data["rows"] = N;
    ctx->saved_data["sizes"] = z_a.sizes().vec();
    ctx->saved_data["dtype"] = static_cast<int64_t>(z_a.scalar_type());
    ctx->saved_data["saved"] = std::vector<Tensor>{zc, diff, colsq, mat, zc_all};
    // The process group itself (ref-counted), so the graph never outlives it.
    ctx->saved_data["group"] = c10::IValue::make_capsule(g->process_group());
    ctx->saved_data["timeout_ms"] = static_cast<int64_t>(g->timeout().count());
    if (g->store()) ctx->saved_data["store"] = c10::IValue::make_capsule(g->store());
    ctx->set_materialize_grads(false);
    return {loss, inv, var, cov};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    TORCH_CHECK(!at::GradMode::is_enabled(),
                kFn, ": double backward is not supported (the sharded backward is hand-written); "
                "use Backward::Autograd, which differentiates the gathered batch");
    const auto saved = ctx->saved_data["saved"].toTensorVector();
    const auto s = ops::Settings::from_ivalue(ctx->saved_data["settings"]);
    const int64_t N = ctx->saved_data["rows"].toInt();
    const auto& zc = saved[kZc];
    const int64_t P = zc.size(0) / 2, d = zc.size(2);
    // Each rank's loss is a function of every rank's rows: the gradient of this rank's rows
    // is the sum over the ranks of their output gradients times the one Jacobian.
    auto g = at::zeros({4}, zc.options());
    for (int i = 0; i < 4; ++i) {
      if (grads[i].defined()) g[i].add_(grads[i].to(zc.scalar_type()));
    }
    const auto store = ctx->saved_data.count("store")
                           ? c10::static_intrusive_pointer_cast<c10d::Store>(
                                 ctx->saved_data["store"].toCapsule())
                           : c10::intrusive_ptr<c10d::Store>();
    const Group group(c10::static_intrusive_pointer_cast<c10d::ProcessGroup>(
                          ctx->saved_data["group"].toCapsule()),
                      std::chrono::milliseconds(ctx->saved_data["timeout_ms"].toInt()), store);
    all_reduce_sum_(g, group, "sharded loss backward (output gradients)");
    const auto w = ops::vicreg_backward_weights(g[0], g[1], g[2], g[3], {P, N, d}, s);
    const auto view = [&](int64_t v) {
      const auto part = [&](const Tensor& t) { return t.defined() ? t.narrow(0, v * P, P) : t; };
      const ops::Shard shard{N, part(saved[kZcAll])};
      return ops::view_gradient(part(zc), {part(saved[kColsq]), part(saved[kMat]), {}, {}},
                                w.hinge, w.offdiag, s.hinge, &shard);
    };
    auto ga = view(0), gb = view(1);
    ga.addcmul_(saved[kDiff], w.inv);
    gb.addcmul_(saved[kDiff], w.inv.neg());
    const auto sizes = ctx->saved_data["sizes"].toIntVector();
    const auto dtype = static_cast<at::ScalarType>(ctx->saved_data["dtype"].toInt());
    return {ops::from_positions(ga, sizes).to(dtype), ops::from_positions(gb, sizes).to(dtype),
            Tensor(), Tensor()};
  }
};

}  // namespace

std::tuple<Tensor, Tensor, Tensor, Tensor> sharded_terms(const Tensor& z_a, const Tensor& z_b,
                                                         const ops::Settings& s, const Group& g,
                                                         bool check_finite) {
  checks::loss_call(kFn, z_a, z_b, s, /*local_shard=*/true);
  if (check_finite) {
    checks::finite_input(kFn, "z_a", z_a);
    checks::finite_input(kFn, "z_b", z_b);
  }
  const auto out = ShardedFunction::apply(z_a, z_b, s, &g);
  if (check_finite) checks::finite_result(kFn, out[0]);
  return {out[0], out[1], out[2], out[3]};
}
}  // namespace vicreg::distributed::detail
