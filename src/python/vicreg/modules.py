"""``VICRegLoss`` and ``VCReg``: nn.Modules over :mod:`vicreg.functional`, scriptable with
``torch.jit.script``. Their constructors check the arguments: a wrong type is a ``TypeError``
that names it; a bad value is the operators' own ``RuntimeError``, the same words as a call of
:mod:`vicreg.functional` with that value, raised at construction. (A coefficient that only a
lower precision cannot hold, such as 1e39 in float32, fails at the first call in that dtype.)
"""
import copy
import inspect
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from . import functional as F
from .distributed import _check_group, _group_size, eager_only

__all__ = ["VICRegLoss", "VCReg"]


# The modules' settings are the operators' arguments after the tensors: their names, types and
# defaults come from the registered schemas (the C++ settings tables), not from a list here.
def _arguments(op) -> List[Tuple[str, str, Any]]:
    """(name, schema type, default) of each argument of ``op`` after its tensors."""
    return [(a.name, str(a.type), a.default_value) for a in op.default._schema.arguments
            if str(a.type) != "Tensor"]


_LOSS = _arguments(torch.ops.vicreg.vicreg_loss)
_VCREG = _arguments(torch.ops.vicreg.vcreg)
_PYTHON_TYPE = {"float": float, "int": int, "bool": bool, "str": str,
                "Optional[str]": Optional[str]}
_TYPE_WORDS = {"float": "a float", "int": "an int", "bool": "a bool", "str": "a str",
               "Optional[str]": "a str or None"}
_KIND = inspect.Parameter.POSITIONAL_OR_KEYWORD


def _checked(name: str, schema_type: str, value):
    """``value`` as the schema's type takes it (an int for a float, never a bool for a
    number); anything else is a ``TypeError`` that names the argument."""
    if value is None and schema_type == "Optional[str]":
        return None
    accepted = {"float": (int, float), "int": (int,), "bool": (bool,)}.get(schema_type, (str,))
    if (isinstance(value, bool) and schema_type != "bool") or not isinstance(value, accepted):
        raise TypeError(f"{name} must be {_TYPE_WORDS[schema_type]}, got "
                        f"{type(value).__name__} {value!r}")
    return float(value) if schema_type == "float" else value


def _signature(arguments, *more: inspect.Parameter) -> inspect.Signature:
    """A constructor's signature: self, the operator's arguments with their defaults, then
    ``more``."""
    return inspect.Signature(
        [inspect.Parameter("self", _KIND)] +
        [inspect.Parameter(name, _KIND, default=default, annotation=_PYTHON_TYPE[schema_type])
         for name, schema_type, default in arguments] + list(more))


def _set_arguments(module: nn.Module, arguments, bound: inspect.BoundArguments) -> Dict[str, Any]:
    """Sets each argument as an attribute of ``module``, checked; returns them by name."""
    values = {name: _checked(name, schema_type, bound.arguments[name])
              for name, schema_type, _ in arguments}
    for name, value in values.items():
        setattr(module, name, value)
    return values


def _flag(name: str, value) -> bool:
    return _checked(name, "bool", value)


_LOSS_SIGNATURE = _signature(
    _LOSS, inspect.Parameter("process_group", _KIND, default=None),
    inspect.Parameter("sharded", _KIND, default=None, annotation=Optional[bool]))
_VCREG_SIGNATURE = _signature(
    _VCREG, inspect.Parameter("active_in_eval", _KIND, default=False, annotation=bool))


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

    # TorchScript's types of the attributes: the operator's arguments, then the module's own.
    __annotations__ = {**{name: _PYTHON_TYPE[t] for name, t, _ in _LOSS},
                       "gathers": bool, "sharded": Optional[bool]}
    # A process group has no TorchScript type; a scripted module with one fails at its call.
    __jit_ignored_attributes__ = ["process_group"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()
        bound = _LOSS_SIGNATURE.bind(self, *args, **kwargs)
        bound.apply_defaults()
        settings = _set_arguments(self, _LOSS, bound)
        process_group, sharded = bound.arguments["process_group"], bound.arguments["sharded"]
        if process_group is not None:
            _check_group(process_group)
        self.process_group = process_group
        self.gathers = process_group is not None
        if sharded is not None:
            _flag("sharded", sharded)
        self.sharded = sharded
        # The operator's own checks of the settings, without a tensor: its words, now.
        torch.ops.vicreg._vicreg_check_settings(**settings)

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        """The loss of the views ``z_a`` and ``z_b`` (``[n, d]`` or ``[n, P..., d]``)."""
        if self.gathers:
            return self._across_ranks(z_a, z_b)[0]
        # (TorchScript compiles this call, so it names each setting, as terms does.)
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
        settings = {name: getattr(self, name) for name, _, _ in _LOSS}
        return F.vicreg_terms(z_a, z_b, process_group=self.process_group, sharded=self.sharded,
                              **settings)

    def extra_repr(self) -> str:
        # The numbers and the convention always; a knob or a switch when not its default.
        parts = [f"{name}={getattr(self, name)!r}" for name, schema_type, default in _LOSS
                 if schema_type in ("float", "str") or getattr(self, name) != default]
        if self.gathers:
            parts.append("process_group=<a group of " + str(_group_size(self.process_group)) +
                         " ranks>")
            if self.sharded is not None:
                parts.append(f"sharded={self.sharded}")
        return ", ".join(parts)


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

    __annotations__ = {**{name: _PYTHON_TYPE[t] for name, t, _ in _VCREG},
                       "active_in_eval": bool}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()
        bound = _VCREG_SIGNATURE.bind(self, *args, **kwargs)
        bound.apply_defaults()
        settings = _set_arguments(self, _VCREG, bound)
        self.active_in_eval = _flag("active_in_eval", bound.arguments["active_in_eval"])
        # (The channel dim is checked against each input's dims.)
        torch.ops.vicreg._vcreg_check_settings(**settings)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` itself; in training mode (or with ``active_in_eval``) the backward adds the
        gradient of the penalty."""
        if not self.training and not self.active_in_eval:
            return x
        return F.vcreg(x, self.var_coeff, self.cov_coeff, self.gamma, self.eps,
                       self.channel_dim, self.variance_form)

    def extra_repr(self) -> str:
        s = ", ".join(f"{name}={getattr(self, name)!r}" for name, _, _ in _VCREG)
        if self.active_in_eval:
            s += ", active_in_eval=True"
        return s


# help() and inspect show the constructors' arguments as the schemas give them.
VICRegLoss.__init__.__signature__ = _LOSS_SIGNATURE
VCReg.__init__.__signature__ = _VCREG_SIGNATURE
