// The functional API: the loss and the VCReg layer through the registered operators, and each
// term alone through the math core (ops/core.h).

#include <ATen/core/dispatch/Dispatcher.h>

#include "ops/checks.h"
#include "ops/core.h"
#include "ops/ops.h"
#include "ops/settings.h"
#include "vicreg/functional.h"
#ifdef VICREG_WITH_DISTRIBUTED
#include "distributed/common.h"
#endif

namespace vicreg::functional {

at::Tensor invariance_term(const at::Tensor& z_a, const at::Tensor& z_b,
                           const VICRegLossOptions& o) {
  checks::views("invariance_term", z_a, z_b);
  return ops::invariance_term(z_a, z_b, ops::Settings::of(o));
}

at::Tensor variance_term(const at::Tensor& z, const VICRegLossOptions& o) {
  checks::views("variance_term", z, z);
  checks::gamma_eps("variance_term", o.gamma(), o.eps());
  checks::settings_fit("variance_term", z.scalar_type(), {{"gamma", o.gamma()}, {"eps", o.eps()}});
  return ops::variance_term(z, ops::Settings::of(o));
}

at::Tensor covariance_term(const at::Tensor& z, const VICRegLossOptions& o) {
  checks::views("covariance_term", z, z);
  return ops::covariance_term(z, ops::Settings::of(o));
}

at::Tensor vcreg_penalty(const at::Tensor& x, const VCRegOptions& o) {
  const auto s = ops::VCRegSettings::of(o);
  checks::vcreg_call("vcreg_penalty", x, s);
  return ops::vcreg_penalty(x, s);
}

namespace {

bool single_rank(const VICRegLossOptions& o) {
#ifdef VICREG_WITH_DISTRIBUTED
  return o.process_group()->size() == 1;
#else
  return false;
#endif
}

}  // namespace

VICRegTerms vicreg_terms(const at::Tensor& z_a, const at::Tensor& z_b,
                         const VICRegLossOptions& o) {
  // (A group of one rank: the single-process path, to the bit.)
  if (o.process_group() && !single_rank(o)) {
#ifdef VICREG_WITH_DISTRIBUTED
    const auto& g = *o.process_group();
    if (o.sharded() && o.backward() == Backward::Fused) {
      auto [loss, inv, var, cov] = distributed::detail::sharded_terms(
          z_a, z_b, ops::Settings::of(o), g, o.check_finite());
      return {loss, inv, var, cov};
    }
    checks::views("vicreg_loss", z_a, z_b, /*local_shard=*/true);
    // Every term on the gathered batch, normalized by its true size, through the operator
    // (either backward). The invariance of the gathered pairs is the mean of the ranks' local
    // pair terms weighted by their rows; the gather's backward hands each rank the gradient
    // of its own rows summed over ranks, which DDP's averaging turns into the single-process
    // gradient.
    const auto ga = distributed::all_gather(z_a, g), gb = distributed::all_gather(z_b, g);
    auto local = o;
    local.process_group(nullptr);
    return vicreg_terms(ga, gb, local);
#else
    TORCH_CHECK(false, "vicreg_loss: a process_group was given, but this build of vicreg has no "
                "distributed support (configure with -DVICREG_DISTRIBUTED=ON)");
#endif
  }
  // Through the public operator, so that C++, Python and TorchScript share one path, with
  // every setting given (the convention is then moot).
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("vicreg::vicreg_terms", "")
          .typed<ops::Signature<std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
                                    const at::Tensor&, const at::Tensor&),
                                ops::Front>>();
  auto [loss, invariance, variance, covariance] = ops::call_with(op, ops::Front::of(o), z_a, z_b);
  return {loss, invariance, variance, covariance};
}

at::Tensor vicreg_loss(const at::Tensor& z_a, const at::Tensor& z_b,
                       const VICRegLossOptions& o) {
  return vicreg_terms(z_a, z_b, o).loss;
}

at::Tensor vcreg(const at::Tensor& x, const VCRegOptions& o) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("vicreg::vcreg", "")
                             .typed<ops::Signature<at::Tensor(const at::Tensor&),
                                                   ops::VCRegSettings>>();
  return ops::call_with(op, ops::VCRegSettings::of(o), x);
}

}  // namespace vicreg::functional
