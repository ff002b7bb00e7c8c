#pragma once
// TorchScript: a scripted module around the registered loss operator, so that a loss
// configured in C++ can be saved to a .pt file and run by torch.jit.load in Python (after
// torch.ops.load_library("libvicreg.so")) or by torch::jit::load in C++.

#include <torch/csrc/jit/api/compilation_unit.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/frontend/resolver.h>

#include <string>

#include "vicreg/export.h"
#include "vicreg/options.h"

namespace vicreg::script {

/// A torch::jit::Module whose attributes are the options (inv_coeff, var_coeff, cov_coeff,
/// gamma, eps, invariance, variance_form, variance_views, covariance_norm, fused_backward,
/// check_finite) and whose methods call torch.ops.vicreg.vicreg_terms:
///   forward(z_a, z_b) -> Tensor (the loss)
///   terms(z_a, z_b) -> (loss, invariance, variance, covariance)
VICREG_EXPORT torch::jit::Module make_loss_module(const VICRegLossOptions& options = {});

/// A TorchScript name resolver for C++ that knows `torch.ops.<namespace>.<op>` (LibTorch's
/// native resolver, used by torch::jit::compile, resolves only `torch.<aten op>`): pass it to
/// torch::jit::Module::define, or use `compile` below.
VICREG_EXPORT torch::jit::ResolverPtr resolver();

/// Like torch::jit::compile, but the source may call registered operators as
/// `torch.ops.vicreg.vicreg_loss(...)`, as Python TorchScript code does.
VICREG_EXPORT std::shared_ptr<torch::jit::CompilationUnit> compile(const std::string& source);

/// make_loss_module(options).save(path).
VICREG_EXPORT void save_loss_module(const VICRegLossOptions& options, const std::string& path);

}  // namespace vicreg::script
