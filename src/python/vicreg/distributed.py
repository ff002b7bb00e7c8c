"""The loss across ranks: embeddings gathered from every rank of a ``torch.distributed``
process group, with the gradient flowing back to each rank's own rows.

With ``process_group`` given, :func:`vicreg.functional.vicreg_loss` and
:class:`vicreg.VICRegLoss` compute on every rank the loss of the batch gathered from every rank
(ranks may hold different numbers of rows), in one of two ways with the same loss and
gradients:

- sharded (the default where it is available: PyTorch 2.2 or later, the hand-written
  backward): each rank computes only its own rows' share, from statistics summed over the
  ranks, in the library's C++ (``torch.ops.vicreg._vicreg_sharded_terms``, which finds the
  group by its name); the backward sums the four output gradients over the ranks;
- replicated (``sharded=False``; the only way on PyTorch 1.13, which cannot hand a Python
  group to C++): the views are gathered and every rank computes the whole batch, as
  facebookresearch/vicreg, lightly (``gather_distributed=True``) and solo-learn do; the
  gather's backward sums the gathered batch's gradient over the ranks and keeps this rank's
  rows.

Either way the gradient of a rank's rows is the sum over the ranks of their output gradients
times one process's Jacobian, so the gradient averaging of
``torch.nn.parallel.DistributedDataParallel`` yields the gradient of one process that holds
the whole batch. Any backend works (Gloo on CPU tensors, NCCL on CUDA tensors). Eager mode
only: a scripted module cannot reach other ranks, and the backward cannot be differentiated
again (double backward raises). Pass a group that exists: ``torch.distributed.group.WORLD``
is ``None`` until ``init_process_group``.
"""
from typing import List, Optional, Tuple

import torch
import torch.distributed as dist

__all__ = ["all_gather", "all_gather_views", "can_shard", "terms_across_ranks"]

# Row signatures carry the dtype as an index of this list, so that ranks whose embeddings
# differ in dtype fail with both dtypes named instead of a garbled gather.
_DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.complex128,
           torch.complex64, torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8,
           torch.bool]
# The per-row shape travels padded to this many dims (-1 beyond a row's own dims).
_MAX_ROW_DIMS = 16


def eager_only() -> str:
    """The error of a scripted call with a process group (a function: TorchScript reads no
    global strings)."""
    return ("vicreg: process_group works in eager mode only (a scripted function or module "
            "cannot gather across ranks)")


def _fail(what: str, group, error: BaseException) -> RuntimeError:
    return RuntimeError(
        f"vicreg.distributed: {what} failed on rank {dist.get_rank(group)} of "
        f"{dist.get_world_size(group)} (a rank that exited or hung makes its peers fail "
        f"within the process group's timeout): {error}")


def _signatures(z: torch.Tensor, group) -> List[List[int]]:
    """Every rank's [rows, dtype index, row shape padded with -1 to _MAX_ROW_DIMS]."""
    row = list(z.shape[1:])
    if len(row) > _MAX_ROW_DIMS:
        raise RuntimeError(f"vicreg.distributed.all_gather: expected at most "
                           f"{_MAX_ROW_DIMS + 1} dims, got shape {tuple(z.shape)}")
    code = _DTYPES.index(z.dtype) if z.dtype in _DTYPES else len(_DTYPES)
    mine = torch.tensor([z.shape[0], code] + row + [-1] * (_MAX_ROW_DIMS - len(row)),
                        dtype=torch.long, device=z.device)
    out = [torch.empty_like(mine) for _ in range(dist.get_world_size(group))]
    try:
        dist.all_gather(out, mine, group=group)
    except RuntimeError as e:
        raise _fail("exchanging embedding sizes", group, e) from e
    return [s.tolist() for s in out]


def _row_shape(sig: List[int]) -> Tuple[int, ...]:
    return tuple(x for x in sig[2:] if x >= 0)


def _dtype_name(code: int) -> str:
    return str(_DTYPES[code]) if code < len(_DTYPES) else "another dtype"


def _checked_rows(z: torch.Tensor, group) -> List[int]:
    """Every rank's row count, after checking that all ranks hold rows of one shape and dtype
    (every rank sees the same signatures, so every rank raises alike)."""
    sigs = _signatures(z, group)
    rank = dist.get_rank(group)
    for r, s in enumerate(sigs):
        if s[2:] != sigs[0][2:]:
            raise RuntimeError(
                f"vicreg.distributed.all_gather: ranks hold embeddings of different row "
                f"shapes: rank 0 has rows of shape {_row_shape(sigs[0])}, rank {r} has "
                f"{_row_shape(s)} (this rank {rank}: shape {tuple(z.shape)})")
        if s[1] != sigs[0][1]:
            raise RuntimeError(
                f"vicreg.distributed.all_gather: ranks hold embeddings of different dtypes: "
                f"rank 0 has {_dtype_name(sigs[0][1])}, rank {r} has {_dtype_name(s[1])}")
    return [s[0] for s in sigs]


class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: torch.Tensor, group, rows: List[int]) -> torch.Tensor:
        # all_gather needs equal shapes: pad every rank's rows to the longest, then trim.
        padded = z.new_zeros((max(rows),) + tuple(z.shape[1:]))
        padded[:z.shape[0]] = z
        out = [torch.empty_like(padded) for _ in rows]
        try:
            dist.all_gather(out, padded, group=group)
        except RuntimeError as e:
            raise _fail("all_gather", group, e) from e
        ctx.group = group
        ctx.offset = sum(rows[:dist.get_rank(group)])
        ctx.rows = z.shape[0]
        return torch.cat([part[:r] for part, r in zip(out, rows)])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        # Every rank's loss is the same function of the gathered batch, so the sum over the
        # ranks of their gradients, divided by DDP's averaging, is one process's gradient.
        # (The all-reduce is invisible to autograd: hence once_differentiable.)
        total = grad.contiguous().clone()
        try:
            dist.all_reduce(total, group=ctx.group)
        except RuntimeError as e:
            raise _fail("all_gather backward (all-reduce)", ctx.group, e) from e
        return total[ctx.offset:ctx.offset + ctx.rows], None, None


def _check_group(group) -> None:
    if dist.is_available() and group is dist.GroupMember.NON_GROUP_MEMBER:
        raise RuntimeError("vicreg.distributed: this rank is not a member of process_group "
                           "(new_group returns a placeholder on the ranks it leaves out)")
    if not dist.is_available() or not isinstance(group, dist.ProcessGroup):
        raise TypeError("process_group must be a torch.distributed process group (e.g. "
                        "torch.distributed.group.WORLD after init_process_group), got "
                        f"{type(group).__name__} {group!r}")


def _group_size(group) -> int:
    try:
        return dist.get_world_size(group)
    except RuntimeError:  # a group this process is not part of, or destroyed since
        return -1


def _resolved(group):
    """The group to gather over, checked: `group`, or all ranks when it is None."""
    if group is not None:
        _check_group(group)
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("vicreg.distributed.all_gather: torch.distributed is not "
                           "initialized (call torch.distributed.init_process_group first)")
    return dist.group.WORLD if group is None else group


def all_gather(z: torch.Tensor, group=None) -> torch.Tensor:
    """The rows of ``z`` (``[n, ...]``, n may differ between ranks) of every rank of ``group``
    (default: all ranks), concatenated in rank order; differentiable as described above."""
    if not isinstance(z, torch.Tensor) or z.dim() < 1:
        raise RuntimeError("vicreg.distributed.all_gather: expected a tensor with a leading "
                           f"batch dim, got {type(z).__name__}"
                           + (f" of {z.dim()} dims" if isinstance(z, torch.Tensor) else ""))
    group = _resolved(group)
    if dist.get_world_size(group) == 1:
        return z
    return _Gather.apply(z.contiguous(), group, _checked_rows(z, group))


def _check_views(z_a: torch.Tensor, z_b: torch.Tensor) -> None:
    for name, z in (("z_a", z_a), ("z_b", z_b)):
        if not isinstance(z, torch.Tensor) or z.dim() < 2:
            raise RuntimeError(f"vicreg_loss: expected {name} of shape [n, d] or [n, P..., d], "
                               f"got {type(z).__name__}"
                               + (f" of shape {tuple(z.shape)}" if isinstance(z, torch.Tensor)
                                  else ""))
    if (z_a.shape, z_a.dtype, z_a.device) != (z_b.shape, z_b.dtype, z_b.device):
        raise RuntimeError(f"vicreg_loss: z_a and z_b must have the same shape, dtype and "
                           f"device, got {tuple(z_a.shape)} {z_a.dtype} {z_a.device} and "
                           f"{tuple(z_b.shape)} {z_b.dtype} {z_b.device}")


def all_gather_views(z_a: torch.Tensor, z_b: torch.Tensor, group=None
                     ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Both views gathered, stacked, in one signature exchange and one gather. Views that
    differ from each other raise here, before any collective, as the loss would (the peers
    then fail within the group's timeout, as with any rank that stops)."""
    _check_views(z_a, z_b)
    group = _resolved(group)
    if dist.get_world_size(group) == 1:
        return z_a, z_b
    rows = _checked_rows(z_a, group)
    both = _Gather.apply(torch.stack([z_a, z_b], 1), group, rows)
    return both[:, 0], both[:, 1]


def can_shard() -> bool:
    """Whether this build has the sharded loss for Python groups (PyTorch 2.2 or later)."""
    try:
        return torch.ops.vicreg._vicreg_sharded_terms is not None
    except (AttributeError, RuntimeError):
        return False


def _timeout_ms(group, device: torch.device) -> int:
    """The timeout of the group's collectives, as its backend holds it."""
    try:
        timeout = group._get_backend(device).options._timeout
    except (AttributeError, RuntimeError):  # a backend that does not say
        timeout = dist.default_pg_timeout
    return max(1, int(timeout.total_seconds() * 1000))


def _eager(fn):
    """fn, run eagerly under torch.compile (a graph break): collectives with the other ranks
    and the sharded operator, which talks to them from C++, cannot be traced."""
    disable = getattr(getattr(torch, "compiler", None), "disable", None)
    return disable(fn) if disable is not None else fn


@_eager
def terms_across_ranks(z_a: torch.Tensor, z_b: torch.Tensor, group, sharded: Optional[bool],
                       **arguments) -> Tuple[torch.Tensor, ...]:
    """(loss, invariance, variance, covariance) of the views of every rank of ``group``:
    sharded or replicated as above (``sharded=None``: sharded where available); ``arguments``
    are those of ``torch.ops.vicreg.vicreg_terms`` after the views."""
    group = _resolved(group)
    fused = arguments.get("fused_backward", True)
    if sharded is None:
        sharded = fused and can_shard()
    if sharded and not fused:
        raise RuntimeError("vicreg: sharded=True has the hand-written backward only "
                           "(fused_backward=True); with fused_backward=False pass sharded=False "
                           "or None (autograd then differentiates the gathered batch)")
    if sharded and not can_shard():
        raise RuntimeError("vicreg: sharded=True needs PyTorch 2.2 or later, where a Python "
                           f"process group can reach C++ by name (this is {torch.__version__}); "
                           "pass sharded=False or None")
    if dist.get_world_size(group) == 1:
        return torch.ops.vicreg.vicreg_terms(z_a, z_b, **arguments)
    if sharded:
        _check_views(z_a, z_b)
        return torch.ops.vicreg._vicreg_sharded_terms(
            z_a, z_b, group.group_name, _timeout_ms(group, z_a.device), **arguments)
    z_a, z_b = all_gather_views(z_a, z_b, group)
    return torch.ops.vicreg.vicreg_terms(z_a, z_b, **arguments)
