"""The loss across ranks: embeddings gathered from every rank of a ``torch.distributed``
process group, with the gradient flowing back to each rank's own rows.

With ``process_group`` given, :func:`vicreg.functional.vicreg_loss` and
:class:`vicreg.VICRegLoss` compute on every rank the loss of the whole gathered batch, as
facebookresearch/vicreg, lightly (``gather_distributed=True``) and solo-learn do. Ranks may
hold different numbers of rows. The gather's backward sums the gathered batch's gradient over
the ranks and keeps this rank's rows, so the gradient averaging of
``torch.nn.parallel.DistributedDataParallel`` yields the gradient of one process that holds
the whole batch. Any backend works (Gloo on CPU tensors, NCCL on CUDA tensors). Eager mode
only: a scripted module cannot gather.
"""
import math
from typing import List, Tuple

import torch
import torch.distributed as dist

__all__ = ["all_gather", "all_gather_views"]

# Row signatures carry the dtype as an index of this list (-1: another dtype), so that ranks
# whose embeddings differ in dtype fail with a clear error instead of a garbled gather.
_DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]


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
    """Every rank's (rows, elements per row, dims, dtype index)."""
    n = z.shape[0]
    code = _DTYPES.index(z.dtype) if z.dtype in _DTYPES else -1
    mine = torch.tensor([n, math.prod(z.shape[1:]), z.dim(), code], dtype=torch.long,
                        device=z.device)
    out = [torch.empty_like(mine) for _ in range(dist.get_world_size(group))]
    try:
        dist.all_gather(out, mine, group=group)
    except RuntimeError as e:
        raise _fail("exchanging embedding sizes", group, e) from e
    return [s.tolist() for s in out]


def _checked_rows(z: torch.Tensor, group) -> List[int]:
    """Every rank's row count, after checking that all ranks hold rows of one shape and dtype."""
    sigs = _signatures(z, group)
    rank = dist.get_rank(group)
    for r, s in enumerate(sigs):
        if s[1:3] != sigs[0][1:3]:
            raise RuntimeError(
                f"vicreg.distributed.all_gather: ranks hold embeddings of different "
                f"feature shapes: rank 0 has {sigs[0][1]} elements per row in {sigs[0][2]} "
                f"dims, rank {r} has {s[1]} in {s[2]} (this rank {rank}: shape "
                f"{tuple(z.shape)})")
        if s[3] != sigs[0][3]:
            raise RuntimeError(
                f"vicreg.distributed.all_gather: ranks hold embeddings of different dtypes "
                f"(rank {r} differs from rank 0; this rank {rank}: {z.dtype})")
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
    def backward(ctx, grad: torch.Tensor):
        # Every rank's loss is the same function of the gathered batch, so the sum over the
        # ranks of their gradients, divided by DDP's averaging, is one process's gradient.
        total = grad.contiguous().clone()
        try:
            dist.all_reduce(total, group=ctx.group)
        except RuntimeError as e:
            raise _fail("all_gather backward (all-reduce)", ctx.group, e) from e
        return total[ctx.offset:ctx.offset + ctx.rows], None, None


def _check_group(group) -> None:
    if not dist.is_available() or not isinstance(group, dist.ProcessGroup):
        raise TypeError("process_group must be a torch.distributed process group (e.g. "
                        "torch.distributed.group.WORLD after init_process_group), got "
                        f"{type(group).__name__} {group!r}")


def _group_size(group) -> int:
    try:
        return dist.get_world_size(group)
    except RuntimeError:  # a group this process is not part of, or destroyed since
        return -1


def _gather(z: torch.Tensor, group, rows_of: torch.Tensor) -> torch.Tensor:
    """all_gather of z, whose per-rank rows are checked on `rows_of` (z itself, or one view
    when z stacks both)."""
    if group is not None:
        _check_group(group)
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("vicreg.distributed.all_gather: torch.distributed is not "
                           "initialized (call torch.distributed.init_process_group first)")
    if group is None:
        group = dist.group.WORLD
    if dist.get_world_size(group) == 1:
        return z
    return _Gather.apply(z.contiguous(), group, _checked_rows(rows_of, group))


def all_gather(z: torch.Tensor, group=None) -> torch.Tensor:
    """The rows of ``z`` (``[n, ...]``, n may differ between ranks) of every rank of ``group``
    (default: all ranks), concatenated in rank order; differentiable as described above."""
    if not isinstance(z, torch.Tensor) or z.dim() < 1:
        raise RuntimeError("vicreg.distributed.all_gather: expected a tensor with a leading "
                           f"batch dim, got {type(z).__name__}"
                           + (f" of {z.dim()} dims" if isinstance(z, torch.Tensor) else ""))
    return _gather(z, group, z)


def all_gather_views(z_a: torch.Tensor, z_b: torch.Tensor, group=None
                     ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Both views gathered, in one collective when they have the same shape, dtype and device
    (as the loss requires; otherwise each alone, and the loss then says what differs)."""
    if (isinstance(z_a, torch.Tensor) and isinstance(z_b, torch.Tensor) and z_a.dim() >= 1
            and z_a.shape == z_b.shape and z_a.dtype == z_b.dtype
            and z_a.device == z_b.device):
        both = _gather(torch.stack([z_a, z_b], 1), group, z_a)
        return both[:, 0], both[:, 1]
    return all_gather(z_a, group), all_gather(z_b, group)
