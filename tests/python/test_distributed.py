"""The loss across ranks from Python: ``process_group=`` of vicreg.VICRegLoss and
vicreg.functional, over ``torch.distributed`` with Gloo on loopback.

Run by CTest (test python_package_distributed) on the installed package, like test_package.py.
The ranks are spawned with torch.multiprocessing and meet through a file in a scratch directory
(no port to pick). Every rank trains one step of the same small projector, wrapped in
DistributedDataParallel, on its shard of a batch, with the loss of the batch of all ranks
(sharded where this PyTorch allows it, and replicated); one process then does the same step on
the whole batch. The losses and the parameter gradients must agree to 1e-12 in float64.
"""
import copy
import datetime
import os
import sys
import traceback

import pytest

if os.environ.get("CI"):
    import torch  # CI installs python3-torch: there a missing torch fails instead of skipping
else:
    torch = pytest.importorskip(
        "torch", reason="python3-torch cannot be imported: install Debian's python3-torch")

if not os.environ.get("VICREG_PACKAGE_PREFIX"):
    pytest.skip("VICREG_PACKAGE_PREFIX is not set (run this file through ctest -R "
                "python_package_distributed)", allow_module_level=True)

import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

import vicreg  # noqa: E402
import vicreg.functional as VF  # noqa: E402

IN, OUT = 5, 24
# (feature shape of the embedding, fused backward, module or functional, sharded). At
# d = 24 the batches below (8 and 11 rows) take the Gram path, at [n, 2, 12] the direct one.
# sharded None: sharded where available (PyTorch 2.2 or later, fused backward).
CASES = [((OUT,), True, "module", None), ((OUT,), False, "functional", None),
         ((2, OUT // 2), True, "functional", None), ((2, OUT // 2), False, "module", None),
         ((OUT,), True, "functional", False), ((2, OUT // 2), True, "module", False)]
TIMEOUT_S = 60


def batch(rows):
    """Two views of `rows` inputs and a projector's initial weights, the same on every rank."""
    g = torch.Generator().manual_seed(11)
    x = torch.randn(rows, IN, dtype=torch.float64, generator=g)
    x_a = x + 0.3 * torch.randn(rows, IN, dtype=torch.float64, generator=g)
    x_b = x + 0.3 * torch.randn(rows, IN, dtype=torch.float64, generator=g)
    proj = torch.nn.Linear(IN, OUT).double()
    with torch.no_grad():
        proj.weight.copy_(torch.randn(OUT, IN, dtype=torch.float64, generator=g))
        proj.bias.copy_(torch.randn(OUT, dtype=torch.float64, generator=g))
    return x_a, x_b, proj


def step(model, x_a, x_b, shape, fused, kind, sharded, group):
    """One step's loss and gradients: both views through the model in one call (DDP expects
    one forward per backward), the loss (of the gathered batch when `group` is given)."""
    model.zero_grad()
    n = x_a.shape[0]
    z = model(torch.cat([x_a, x_b])).reshape((2 * n,) + shape)
    z_a, z_b = z[:n], z[n:]
    if kind == "module":
        loss = vicreg.VICRegLoss(fused_backward=fused, process_group=group,
                                 sharded=sharded)(z_a, z_b)
    else:
        loss = VF.vicreg_loss(z_a, z_b, fused_backward=fused, process_group=group,
                              sharded=sharded)
    loss.backward()
    return float(loss), [p.grad.clone() for p in model.parameters()]


# One spawn of 4 ranks serves every multi-rank case (torch's import in each process is most of
# a spawn's cost): the 2- and 3-rank cases run in subgroups of it.
SHARDS = {2: (4, 4), 3: (3, 6, 2), 4: (2, 5, 0, 4)}  # ranks: rows of each rank (one empty)


def run_ranks(rank, world, scratch):
    # Each rank ends with os._exit, without the interpreter's teardown: in PyTorch 1.13,
    # ProcessGroupGloo's destructor joins its worker threads while holding the GIL, and a
    # worker that is freeing a tensor Python has seen waits for the GIL. That deadlock hung
    # this test once in 13 loaded runs. The results are on disk by then; a failure prints its
    # traceback and exits 1, which mp.spawn reports.
    code = 0
    try:
        run_rank(rank, world, scratch)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_rank(rank, world, scratch):
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    dist.init_process_group("gloo", init_method="file://" + os.path.join(scratch, "rendezvous"),
                            rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=TIMEOUT_S))
    # Every rank creates every subgroup, in the same order (torch.distributed requires it).
    groups = {size: dist.new_group(list(range(size)),
                                   timeout=datetime.timedelta(seconds=TIMEOUT_S))
              for size in SHARDS}
    results = {}
    for size, shards in SHARDS.items():
        if rank >= size:
            continue
        x_a, x_b, proj = batch(sum(shards))
        lo = sum(shards[:rank])
        rows = slice(lo, lo + shards[rank])
        ddp = torch.nn.parallel.DistributedDataParallel(proj, process_group=groups[size])
        results[size] = [step(ddp, x_a[rows], x_b[rows], shape, fused, kind, sharded,
                              groups[size])
                         for shape, fused, kind, sharded in CASES]
    torch.save(results, os.path.join(scratch, f"rank{rank}.pt"))
    # Failures, in the 2-rank group. Ranks that disagree on the rows' shape, then on the
    # dtype: both ranks fail with both named. A second derivative through the gather raises
    # (its all-reduce is invisible to autograd).
    pair = groups[2]
    messages = []
    if rank < 2:
        disagreeing = [torch.zeros(3, 4 if rank == 0 else 6, dtype=torch.float64),
                       torch.zeros(3, 2, 4) if rank == 0 else torch.zeros(3, 4, 2),
                       torch.zeros(3, 4, dtype=torch.float64 if rank == 0 else torch.float32)]
        for sharded in [False] + ([True] if vicreg.distributed.can_shard() else []):
            for z in disagreeing:
                try:
                    VF.vicreg_loss(z, z, process_group=pair, sharded=sharded)
                except RuntimeError as e:
                    messages.append(str(e))
        z = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
        loss = VF.vicreg_loss(z, 2 * z, fused_backward=False, process_group=pair)  # replicated
        (g,) = torch.autograd.grad(loss, z, create_graph=True)
        try:
            g.sum().backward()
        except RuntimeError as e:
            messages.append(str(e))
    if rank == 3:  # not in the pair: refused before any collective
        try:
            VF.vicreg_loss(torch.zeros(3, 4), torch.zeros(3, 4), process_group=pair)
        except RuntimeError as e:
            torch.save(str(e), os.path.join(scratch, "non_member.pt"))
    dist.barrier()
    if rank == 1:
        os._exit(0)  # a rank that exits without a goodbye to the group, like a killed process
    if rank == 0:  # its peer fails with the error named, not a hang
        z = torch.randn(3, 4, dtype=torch.float64)
        try:
            VF.vicreg_loss(z, z, process_group=pair)
        except RuntimeError as e:
            messages.append(str(e))
        torch.save(messages, os.path.join(scratch, "messages.pt"))


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    scratch = tmp_path_factory.mktemp("ranks")
    mp.spawn(run_ranks, args=(max(SHARDS), str(scratch)), nprocs=max(SHARDS))
    return scratch


@pytest.mark.parametrize("size", sorted(SHARDS), ids=lambda n: f"{n} ranks {SHARDS[n]}")
def test_ranks_equal_one_process_on_the_whole_batch(size, ranks):
    shards = SHARDS[size]
    x_a, x_b, proj = batch(sum(shards))
    for case, (shape, fused, kind, sharded) in enumerate(CASES):
        loss, grads = step(proj, x_a, x_b, shape, fused, kind, None, None)
        # A weight gradient that can disagree (the bias's is 0: the loss ignores shifts).
        assert grads[0].abs().max() > 1e-3
        for rank in range(size):
            got_loss, got_grads = torch.load(ranks / f"rank{rank}.pt")[size][case]
            where = f"rank {rank} of {size}, case {CASES[case]}"
            assert abs(got_loss - loss) <= 1e-12 * abs(loss), (where, got_loss, loss)
            for got, want in zip(got_grads, grads):
                assert torch.allclose(got, want, rtol=1e-12, atol=1e-12), (where, got, want)


def test_disagreeing_and_lost_ranks_fail_with_a_clear_error(ranks):
    messages = torch.load(ranks / "messages.pt")
    sharded = vicreg.distributed.can_shard()
    assert len(messages) == (8 if sharded else 5), messages
    width, layout, dtype = messages[:3]
    assert "different row shapes: rank 0 has rows of shape (4,), rank 1 has (6,)" in width, width
    assert "rank 0 has rows of shape (2, 4), rank 1 has (4, 2)" in layout, layout
    assert "different dtypes: rank 0 has torch.float64, rank 1 has torch.float32" in dtype, dtype
    if sharded:  # the same three, from the library's C++
        width, layout, dtype = messages[3:6]
        assert "different feature shapes: rank 0 has rows of shape [4], rank 1 has [6]" in width
        assert "rank 0 has rows of shape [2, 4], rank 1 has [4, 2]" in layout, layout
        assert "different dtypes: rank 0 Double, rank 1 Float" in dtype, dtype
    twice, lost = messages[-2:]
    assert "once_differentiable" in twice, twice
    assert "failed on rank 0 of 2" in lost, lost
    assert ("vicreg::distributed" if sharded else "vicreg.distributed") in lost, lost
    non_member = torch.load(ranks / "non_member.pt")
    assert "this rank is not a member of process_group" in non_member, non_member


def test_process_group_is_checked_and_eager_only():
    with pytest.raises(TypeError, match="process_group must be a torch.distributed process"):
        vicreg.VICRegLoss(process_group="world")
    z = torch.randn(4, 3, dtype=torch.float64)
    with pytest.raises(TypeError, match="process_group must be a torch.distributed process"):
        VF.vicreg_loss(z, z, process_group=object())
    # Scripting still works without a group; with one, the call says why it cannot gather.
    scripted = torch.jit.script(VF.vicreg_loss)
    assert abs(float(scripted(z, z)) - float(VF.vicreg_loss(z, z))) <= 1e-12
    with pytest.raises((RuntimeError, torch.jit.Error), match="eager mode only"):
        scripted(z, z, process_group=z)


def test_sharded_where_a_python_group_can_reach_cpp():
    # PyTorch 2.2 keeps process groups by name; 1.13 cannot hand one to C++.
    major, minor = (int(x) for x in torch.__version__.split(".")[:2])
    assert vicreg.distributed.can_shard() == ((major, minor) >= (2, 2))


def test_a_group_of_one_rank_is_the_local_loss(tmp_path):
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        criterion = vicreg.VICRegLoss(process_group=dist.group.WORLD)
        assert "process_group=<a group of 1 ranks>" in repr(criterion)
        z_a = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
        z_b = torch.randn(6, 4, dtype=torch.float64)
        assert float(criterion(z_a, z_b)) == float(VF.vicreg_loss(z_a, z_b))
        with pytest.raises((RuntimeError, torch.jit.Error), match="eager mode only"):
            torch.jit.script(criterion)(z_a, z_b)
        # A copy (e.g. a model's EMA copy) shares the group, a handle to the ranks.
        twin = copy.deepcopy(criterion)
        assert twin.process_group is criterion.process_group and twin.gathers
        # Views that differ are refused before any collective, as the loss would refuse them.
        with pytest.raises(RuntimeError, match="z_a and z_b must have the same shape"):
            criterion(z_a, z_b[:, :3])
        # sharded=True: the hand-written backward only, and PyTorch 2.2 or later.
        with pytest.raises(RuntimeError, match="sharded=True has the hand-written backward"):
            VF.vicreg_loss(z_a, z_b, fused_backward=False, process_group=dist.group.WORLD,
                           sharded=True)
        if vicreg.distributed.can_shard():
            assert float(VF.vicreg_loss(z_a, z_b, process_group=dist.group.WORLD,
                                        sharded=True)) == float(VF.vicreg_loss(z_a, z_b))
        else:
            with pytest.raises(RuntimeError, match="sharded=True needs PyTorch 2.2 or later"):
                VF.vicreg_loss(z_a, z_b, process_group=dist.group.WORLD, sharded=True)
    finally:
        dist.destroy_process_group()
