"""``VICRegLoss`` and ``VCReg``: nn.Modules over :mod:`vicreg.functional`, scriptable with
``torch.jit.script``. Their constructors check the arguments: a wrong type is a ``TypeError``
that names it; a bad value is the operators' own ``RuntimeError``, the same words as a call of
:mod:`vicreg.functional` with that value, raised at construction. (A coefficient that only a
lower precision cannot hold, such as 1e39 in float32, fails at the first call in that dtype.)
"""
import copy
from typing import Optional, Tuple

import torch
from torch import nn

from . import functional as F
from .distributed import _check_group, _group_size, eager_only

__all__ = ["VICRegLoss", "VCReg"]

# The knobs that override a convention when given (extra_repr shows those given).
KNOBS = ("invariance", "variance_form", "variance_views", "covariance_norm")


def _number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__} {value!r}")
    return float(value)


def _text(name: str, value) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__} {value!r}")
    return value


# A tiny input (2 rows, 2 features) for the operators to run their checks of the settings on,
# once, at construction; on the CPU whatever the default device (a meta device has no values
# for check_finite to read).
def _probe() -> torch.Tensor:
    return torch.zeros(2, 2, dtype=torch.float64, device="cpu")


def _flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return value


class VICRegLoss(nn.Module):
    r"""The VICReg loss (Bardes, Ponce & LeCun, ICLR 2022) as a module.

    ``loss = inv_coeff * s(Za, Zb) + var_coeff * V + cov_coeff * (c(Za) + c(Zb))``: see
    :func:`vicreg.functional.vicreg_loss` for the terms and every argument.

    Args:
        inv_coeff, var_coeff, cov_coeff: weights of the invariance, variance and covariance
            terms (>= 0; default 25, 25, 1).
        gamma: target of the variance hinge (> 0; default 1).
        eps: added to Var_j in the std form (>= 0; default 1e-4).
        convention: ``"reference"`` (default), ``"paper"`` or ``"article"``.
        invariance, variance_form, variance_views, covariance_norm: when given, override what
            the convention sets (``"element_mean"``/``"sample_mean"``, ``"std"``/``"var"``,
            ``"mean"``/``"sum"``, ``"unbiased"``/``"biased"``).
        fused_backward: hand-written backward (default) or autograd over tensor ops.
        check_finite: raise on NaN/Inf inputs or results (one host sync per call).
        process_group: a ``torch.distributed`` process group (e.g.
            ``torch.distributed.group.WORLD``): each rank's loss is the loss of the views
            of every rank, as in the official code (:mod:`vicreg.distributed`). Eager mode
            only; ``None`` (default): the local views.
        sharded: with ``process_group``: each rank computes its own rows' share (``True``) or
            the whole gathered batch (``False``); ``None`` (default): sharded where available
            (PyTorch 2.2 or later, ``fused_backward``). Same results.

    ``forward(z_a, z_b)`` returns the loss (0-dim); ``terms(z_a, z_b)`` returns
    ``(loss, invariance, variance, covariance)``, the terms unweighted.
    """

    inv_coeff: float
    var_coeff: float
    cov_coeff: float
    gamma: float
    eps: float
    convention: str
    invariance: Optional[str]
    variance_form: Optional[str]
    variance_views: Optional[str]
    covariance_norm: Optional[str]
    fused_backward: bool
    check_finite: bool
    gathers: bool
    sharded: Optional[bool]
    # A process group has no TorchScript type; a scripted module with one fails at its call.
    __jit_ignored_attributes__ = ["process_group"]

    def __init__(self, inv_coeff: float = 25.0, var_coeff: float = 25.0, cov_coeff: float = 1.0,
                 gamma: float = 1.0, eps: float = 1e-4, convention: str = "reference",
                 invariance: Optional[str] = None, variance_form: Optional[str] = None,
                 variance_views: Optional[str] = None, covariance_norm: Optional[str] = None,
                 fused_backward: bool = True, check_finite: bool = False,
                 process_group=None, sharded: Optional[bool] = None) -> None:
        super().__init__()
        self.inv_coeff = _number("inv_coeff", inv_coeff)
        self.var_coeff = _number("var_coeff", var_coeff)
        self.cov_coeff = _number("cov_coeff", cov_coeff)
        self.gamma = _number("gamma", gamma)
        self.eps = _number("eps", eps)
        self.convention = _text("convention", convention)
        self.invariance = None if invariance is None else _text("invariance", invariance)
        self.variance_form = None if variance_form is None else _text("variance_form",
                                                                      variance_form)
        self.variance_views = None if variance_views is None else _text("variance_views",
                                                                        variance_views)
        self.covariance_norm = None if covariance_norm is None else _text("covariance_norm",
                                                                          covariance_norm)
        self.fused_backward = _flag("fused_backward", fused_backward)
        self.check_finite = _flag("check_finite", check_finite)
        if process_group is not None:
            _check_group(process_group)
        self.process_group = process_group
        self.gathers = process_group is not None
        if sharded is not None:
            _flag("sharded", sharded)
        self.sharded = sharded
        F.vicreg_loss(_probe(), _probe(), self.inv_coeff, self.var_coeff, self.cov_coeff,
                      self.gamma, self.eps, self.convention, self.invariance,
                      self.variance_form, self.variance_views, self.covariance_norm,
                      self.fused_backward, self.check_finite)

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        """The loss of the views ``z_a`` and ``z_b`` (``[n, d]`` or ``[n, P..., d]``)."""
        if self.gathers:
            return self._across_ranks(z_a, z_b)[0]
        return F.vicreg_loss(z_a, z_b, self.inv_coeff, self.var_coeff, self.cov_coeff,
                             self.gamma, self.eps, self.convention, self.invariance,
                             self.variance_form, self.variance_views, self.covariance_norm,
                             self.fused_backward, self.check_finite)

    @torch.jit.export
    def terms(self, z_a: torch.Tensor, z_b: torch.Tensor
              ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(loss, invariance, variance, covariance)`` from one computation."""
        if self.gathers:
            return self._across_ranks(z_a, z_b)
        return F.vicreg_terms(z_a, z_b, self.inv_coeff, self.var_coeff, self.cov_coeff,
                              self.gamma, self.eps, self.convention, self.invariance,
                              self.variance_form, self.variance_views, self.covariance_norm,
                              self.fused_backward, self.check_finite)

    def _across_ranks(self, z_a: torch.Tensor, z_b: torch.Tensor
                      ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The terms over every rank of process_group (eager only)."""
        if torch.jit.is_scripting():
            raise RuntimeError(eager_only())
        else:
            return self._terms_of_group(z_a, z_b)

    def __deepcopy__(self, memo):
        # A process group is a handle to the ranks, not data: a copy (e.g. a model's EMA copy)
        # shares it (deepcopy of the handle itself fails).
        if self.process_group is not None:
            memo[id(self.process_group)] = self.process_group
        twin = type(self).__new__(type(self))
        memo[id(self)] = twin
        for key, value in self.__dict__.items():
            twin.__dict__[key] = copy.deepcopy(value, memo)
        return twin

    @torch.jit.unused
    def _terms_of_group(self, z_a: torch.Tensor, z_b: torch.Tensor
                        ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return F.vicreg_terms(z_a, z_b, self.inv_coeff, self.var_coeff, self.cov_coeff,
                              self.gamma, self.eps, self.convention, self.invariance,
                              self.variance_form, self.variance_views, self.covariance_norm,
                              self.fused_backward, self.check_finite, self.process_group,
                              self.sharded)

    def extra_repr(self) -> str:
        s = (f"inv_coeff={self.inv_coeff}, var_coeff={self.var_coeff}, "
             f"cov_coeff={self.cov_coeff}, gamma={self.gamma}, eps={self.eps}, "
             f"convention={self.convention!r}")
        for name in KNOBS:
            value = getattr(self, name)
            if value is not None:
                s += f", {name}={value!r}"
        if not self.fused_backward:
            s += ", fused_backward=False"
        if self.check_finite:
            s += ", check_finite=True"
        if self.gathers:
            s += ", process_group=<a group of " + str(_group_size(self.process_group)) + " ranks>"
            if self.sharded is not None:
                s += f", sharded={self.sharded}"
        return s


class VCReg(nn.Module):
    r"""The VCReg layer (Zhu et al., "Variance-Covariance Regularization Improves
    Representation Learning"): the identity in the forward pass that, in the backward pass,
    adds the gradient of the VCReg penalty to the incoming gradient. Put it after the blocks
    of a network trained with any loss.

    ``penalty = var_coeff * (1/d) sum_j max(0, gamma - S_j) + cov_coeff / (d (d-1)) *
    sum_{i != j} C_ij^2`` over the d channels at ``channel_dim``: see
    :func:`vicreg.functional.vcreg`.

    Args:
        var_coeff: weight of the variance hinge (alpha, >= 0; default 1).
        cov_coeff: weight of the normalized off-diagonal covariance (beta, >= 0; default 1).
        gamma: target of the variance hinge (> 0; default 1).
        eps: added to Var_j in the std form (>= 0; default 1e-4).
        channel_dim: the dim that holds the channels: -1 (default) for ``[N, d]``, 1 for NCHW.
        variance_form: ``"std"`` (default) or ``"var"``.
        active_in_eval: also inject the gradient in eval mode; by default eval mode is a pure
            identity (``forward`` returns its input).
    """

    var_coeff: float
    cov_coeff: float
    gamma: float
    eps: float
    channel_dim: int
    variance_form: str
    active_in_eval: bool

    def __init__(self, var_coeff: float = 1.0, cov_coeff: float = 1.0, gamma: float = 1.0,
                 eps: float = 1e-4, channel_dim: int = -1, variance_form: str = "std",
                 active_in_eval: bool = False) -> None:
        super().__init__()
        self.var_coeff = _number("var_coeff", var_coeff)
        self.cov_coeff = _number("cov_coeff", cov_coeff)
        self.gamma = _number("gamma", gamma)
        self.eps = _number("eps", eps)
        if isinstance(channel_dim, bool) or not isinstance(channel_dim, int):
            raise TypeError(f"channel_dim must be an int, got {type(channel_dim).__name__} "
                            f"{channel_dim!r}")
        self.channel_dim = channel_dim
        self.variance_form = _text("variance_form", variance_form)
        self.active_in_eval = _flag("active_in_eval", active_in_eval)
        # The channel dim is checked against each input's dims, so not here.
        F.vcreg(_probe(), self.var_coeff, self.cov_coeff, self.gamma, self.eps, -1,
                self.variance_form)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` itself; in training mode (or with ``active_in_eval``) the backward adds the
        gradient of the penalty."""
        if not self.training and not self.active_in_eval:
            return x
        return F.vcreg(x, self.var_coeff, self.cov_coeff, self.gamma, self.eps,
                       self.channel_dim, self.variance_form)

    def extra_repr(self) -> str:
        s = (f"var_coeff={self.var_coeff}, cov_coeff={self.cov_coeff}, gamma={self.gamma}, "
             f"eps={self.eps}, channel_dim={self.channel_dim}, "
             f"variance_form={self.variance_form!r}")
        if self.active_in_eval:
            s += ", active_in_eval=True"
        return s
