"""Functional forms of the VICReg loss and of the VCReg layer: thin, scriptable calls of the
``torch.ops.vicreg`` operators. Bad arguments raise the operators' ``RuntimeError``, which
names the argument and what was expected.

Views are ``[n, d]`` (n samples, d features) or ``[n, P..., d]`` (local features: each
position has its own statistics over the n samples, and the terms are averaged over the
positions). float16 and bfloat16 compute in float32 and return a float32 loss.

With ``process_group`` (a ``torch.distributed`` group, e.g. ``torch.distributed.group.WORLD``)
the loss is that of the views of every rank of the group, each rank computing its own share
or the whole gathered batch (``sharded``): see :mod:`vicreg.distributed`.
"""
from typing import Any, Optional, Tuple

import torch

from .distributed import eager_only, terms_across_ranks

__all__ = ["vicreg_loss", "vicreg_terms", "vcreg"]


def vicreg_loss(z_a: torch.Tensor, z_b: torch.Tensor, inv_coeff: float = 25.0,
                var_coeff: float = 25.0, cov_coeff: float = 1.0, gamma: float = 1.0,
                eps: float = 1e-4, convention: str = "reference",
                invariance: Optional[str] = None, variance_form: Optional[str] = None,
                variance_views: Optional[str] = None, covariance_norm: Optional[str] = None,
                fused_backward: bool = True, check_finite: bool = False,
                process_group: Optional[Any] = None,
                sharded: Optional[bool] = None) -> torch.Tensor:
    r"""The VICReg loss of two views, a 0-dim tensor.

    ``loss = inv_coeff * s(Za, Zb) + var_coeff * V + cov_coeff * (c(Za) + c(Zb))``, with
    ``v(Z) = (1/d) sum_j max(0, gamma - S_j)`` (V combines v(Za) and v(Zb)) and
    ``c(Z) = (1/d) sum_{i != j} C_ij^2`` over the covariance matrix C of Z.

    Args:
        z_a: first view, ``[n, d]`` or ``[n, P..., d]``, floating point, n >= 2.
        z_b: second view, same shape, dtype and device as ``z_a``.
        inv_coeff: weight of the invariance term s (lambda), >= 0.
        var_coeff: weight of the variance term V (mu), >= 0.
        cov_coeff: weight of the covariance term (nu), >= 0.
        gamma: target of the variance hinge, > 0.
        eps: added to Var_j under the square root in the std form, >= 0.
        convention: preset of the four knobs below: ``"reference"`` (facebookresearch/vicreg;
            element_mean, std, mean, unbiased), ``"paper"`` (sample_mean, std, sum, unbiased)
            or ``"article"`` (sample_mean, var, sum, unbiased).
        invariance: overrides the convention: ``"element_mean"`` (mean over the n*d entries
            of (Za - Zb)^2) or ``"sample_mean"`` ((1/n) sum_i ||za_i - zb_i||^2).
        variance_form: overrides the convention: ``"std"`` (S_j = sqrt(Var_j + eps)) or
            ``"var"`` (S_j = Var_j).
        variance_views: overrides the convention: ``"mean"`` (V = (v(Za) + v(Zb)) / 2) or
            ``"sum"`` (V = v(Za) + v(Zb)).
        covariance_norm: overrides the convention: C divided by n-1 (``"unbiased"``) or by n
            (``"biased"``).
        fused_backward: use the hand-written backward (default); ``False`` lets autograd
            differentiate the tensor-op formulation, which supports double backward.
        check_finite: raise a ``RuntimeError`` on NaN/Inf in the inputs or the result (one
            host sync per call); by default NaN/Inf propagate without a sync.
        process_group: a ``torch.distributed`` group: the loss of the views gathered from
            all its ranks (ranks may hold different n), with the gradient of this rank's
            rows; DDP's gradient averaging then gives one process's gradient. Eager only.
        sharded: with ``process_group``: each rank computes only its own rows' share
            (``True``; PyTorch 2.2 or later, ``fused_backward=True``) or the whole gathered
            batch (``False``); ``None`` (default): sharded where available. Same results.
    """
    if process_group is not None:
        # (Not through vicreg_terms: a scripted vicreg_loss calls only vicreg::vicreg_loss.)
        if torch.jit.is_scripting():
            raise RuntimeError(eager_only())
        else:
            return terms_across_ranks(
                z_a, z_b, process_group, sharded, inv_coeff=inv_coeff, var_coeff=var_coeff,
                cov_coeff=cov_coeff, gamma=gamma, eps=eps, convention=convention,
                invariance=invariance, variance_form=variance_form,
                variance_views=variance_views, covariance_norm=covariance_norm,
                fused_backward=fused_backward, check_finite=check_finite)[0]
    return torch.ops.vicreg.vicreg_loss(
        z_a, z_b, inv_coeff=inv_coeff, var_coeff=var_coeff, cov_coeff=cov_coeff, gamma=gamma,
        eps=eps, convention=convention, invariance=invariance, variance_form=variance_form,
        variance_views=variance_views, covariance_norm=covariance_norm,
        fused_backward=fused_backward, check_finite=check_finite)


def vicreg_terms(z_a: torch.Tensor, z_b: torch.Tensor, inv_coeff: float = 25.0,
                 var_coeff: float = 25.0, cov_coeff: float = 1.0, gamma: float = 1.0,
                 eps: float = 1e-4, convention: str = "reference",
                 invariance: Optional[str] = None, variance_form: Optional[str] = None,
                 variance_views: Optional[str] = None, covariance_norm: Optional[str] = None,
                 fused_backward: bool = True, check_finite: bool = False,
                 process_group: Optional[Any] = None, sharded: Optional[bool] = None
                 ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""The VICReg loss and its unweighted terms, from one computation.

    Returns ``(loss, invariance, variance, covariance)``, 0-dim tensors, with
    ``loss == inv_coeff * invariance + var_coeff * variance + cov_coeff * covariance`` and
    covariance reported as ``c(Za) + c(Zb)``. The arguments are those of :func:`vicreg_loss`.
    """
    if process_group is not None:
        # torch.distributed has no TorchScript form: scripted code fails here with a clear
        # error, and the script compiler skips the eager branch.
        if torch.jit.is_scripting():
            raise RuntimeError(eager_only())
        else:
            return terms_across_ranks(
                z_a, z_b, process_group, sharded, inv_coeff=inv_coeff, var_coeff=var_coeff,
                cov_coeff=cov_coeff, gamma=gamma, eps=eps, convention=convention,
                invariance=invariance, variance_form=variance_form,
                variance_views=variance_views, covariance_norm=covariance_norm,
                fused_backward=fused_backward, check_finite=check_finite)
    return torch.ops.vicreg.vicreg_terms(
        z_a, z_b, inv_coeff=inv_coeff, var_coeff=var_coeff, cov_coeff=cov_coeff, gamma=gamma,
        eps=eps, convention=convention, invariance=invariance, variance_form=variance_form,
        variance_views=variance_views, covariance_norm=covariance_norm,
        fused_backward=fused_backward, check_finite=check_finite)


def vcreg(x: torch.Tensor, var_coeff: float = 1.0, cov_coeff: float = 1.0, gamma: float = 1.0,
          eps: float = 1e-4, channel_dim: int = -1, variance_form: str = "std") -> torch.Tensor:
    r"""VCReg: returns ``x`` itself; the backward adds the gradient of the VCReg penalty.

    ``penalty = var_coeff * (1/d) sum_j max(0, gamma - S_j) + cov_coeff / (d (d-1)) *
    sum_{i != j} C_ij^2``, over the d channels at ``channel_dim``, every other dim counting
    as a sample (N in all), C divided by N-1.

    Args:
        x: features, at least 2 dims, floating point, at least 2 samples.
        var_coeff: weight of the variance hinge (alpha), >= 0.
        cov_coeff: weight of the normalized off-diagonal covariance (beta), >= 0.
        gamma: target of the variance hinge, > 0.
        eps: added to Var_j under the square root in the std form, >= 0.
        channel_dim: the dim that holds the channels: -1 for ``[N, d]``, 1 for NCHW maps.
        variance_form: ``"std"`` (S_j = sqrt(Var_j + eps)) or ``"var"`` (S_j = Var_j).
    """
    return torch.ops.vicreg.vcreg(x, var_coeff=var_coeff, cov_coeff=cov_coeff, gamma=gamma,
                                  eps=eps, channel_dim=channel_dim,
                                  variance_form=variance_form)
