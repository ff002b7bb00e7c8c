"""PyTorch 2: every vicreg operator that takes tensors under torch.library.opcheck, and training steps under
torch.compile and torch.export with a batch size that changes.

Needs torch >= 2.4 (torch.library.opcheck); on older torch (Debian 12's 1.13) it skips with
that reason, unless VICREG_REQUIRE_PYTORCH2 is set (cmake/libtorch2-check.sh sets it, so the
LibTorch 2 run cannot skip it). Two ways in, as CTest runs it:
- python_pytorch2: VICREG_LIBRARY, the built library, loaded into torch.ops; the modules
  below call torch.ops.vicreg directly;
- python_package_pytorch2: the installed package (VICREG_PACKAGE_PREFIX on PYTHONPATH), whose
  vicreg.VICRegLoss and vicreg.VCReg are the modules.
Equality tests use the aot_eager backend (AOTAutograd without code generation): it traces the
operators exactly as inductor would, and the comparison does not depend on generated code.
"""
import os

import pytest

if os.environ.get("CI"):
    import torch  # CI installs python3-torch: there a missing torch fails instead of skipping
else:
    torch = pytest.importorskip(
        "torch", reason="python3-torch cannot be imported: install Debian's python3-torch")

_VERSION = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
if _VERSION < (2, 4):
    if os.environ.get("VICREG_REQUIRE_PYTORCH2"):
        raise RuntimeError(f"VICREG_REQUIRE_PYTORCH2 is set, but torch is {torch.__version__}")
    pytest.skip(f"torch {torch.__version__} has no torch.library.opcheck, torch.compile or "
                "torch.export (they need torch >= 2.4)", allow_module_level=True)

from torch import nn  # noqa: E402

LIB = os.environ.get("VICREG_LIBRARY")
if LIB:
    torch.ops.load_library(LIB)
    PACKAGE = None
else:
    if not os.environ.get("VICREG_PACKAGE_PREFIX"):
        pytest.skip("neither VICREG_LIBRARY nor VICREG_PACKAGE_PREFIX is set (run these tests "
                    "through ctest)", allow_module_level=True)
    import vicreg as PACKAGE  # noqa: E402

OPS = torch.ops.vicreg
SETTINGS = (25.0, 25.0, 1.0, 1.0, 1e-4, "element_mean", "std", "mean", "unbiased")
# (n, d) and (n, P, d), on both sides of the Gram-or-direct rule (Gram when 2 (n - 1) <= d).
SHAPES = [(6, 20), (12, 8), (6, 3, 20)]
DTYPES = [torch.float32, torch.float64]


def views(shape, dtype, seed=0, requires_grad=True):
    g = torch.Generator().manual_seed(seed)
    za = torch.randn(shape, generator=g, dtype=torch.float64) * 0.8
    zb = za + 0.3 * torch.randn(shape, generator=g, dtype=torch.float64)
    return (za.to(dtype).requires_grad_(requires_grad), zb.to(dtype).requires_grad_(requires_grad))


def opcheck(op, args, kwargs=None):
    """torch.library.opcheck with every default test; fails on any that does not succeed."""
    result = torch.library.opcheck(op, args, kwargs or {})
    assert set(result) >= {"test_schema", "test_autograd_registration", "test_faketensor",
                           "test_aot_dispatch_dynamic"}, result
    assert all(v == "SUCCESS" for v in result.values()), result


# ---- opcheck: every operator that takes tensors ------------------------------------------
# (_vicreg_check_settings and _vcreg_check_settings take none: the Python modules call them in
# their constructors, outside any traced region.)

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("fused", [True, False])
def test_opcheck_vicreg_loss(shape, dtype, fused):
    za, zb = views(shape, dtype)
    opcheck(OPS.vicreg_loss.default, (za, zb), {"convention": "paper", "fused_backward": fused})


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("fused", [True, False])
def test_opcheck_vicreg_terms(shape, dtype, fused):
    za, zb = views(shape, dtype)
    opcheck(OPS.vicreg_terms.default, (za, zb), {"fused_backward": fused})


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_opcheck_fused_forward(shape, dtype):
    za, zb = views(shape, dtype)
    opcheck(OPS._vicreg_fused.default, (za, zb) + SETTINGS)


def fused_backward_args(shape, dtype):
    za, zb = views(shape, dtype, requires_grad=False)
    saved = [t.clone() for t in OPS._vicreg_fused(za, zb, *SETTINGS)[4:]]
    grads = [torch.tensor(w, dtype=dtype) for w in (1.0, 0.3, 0.7, 1.3)]
    return grads, saved


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_opcheck_fused_backward(shape, dtype):
    grads, saved = fused_backward_args(shape, dtype)
    opcheck(OPS._vicreg_fused_backward.default, (*grads, saved) + SETTINGS)


VCREG_CASES = [((10, 6), -1), ((4, 3, 5, 5), 1)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape,channel_dim", VCREG_CASES, ids=str)
def test_opcheck_vcreg(shape, channel_dim, dtype):
    x = torch.randn(shape, dtype=dtype, requires_grad=True)
    opcheck(OPS.vcreg.default, (x,), {"var_coeff": 0.5, "cov_coeff": 0.1,
                                      "channel_dim": channel_dim})


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape,channel_dim", VCREG_CASES, ids=str)
def test_opcheck_vcreg_backward(shape, channel_dim, dtype):
    x, grad = torch.randn(shape, dtype=dtype), torch.randn(shape, dtype=dtype)
    opcheck(OPS._vcreg_backward.default, (grad, x, 0.5, 0.1, 1.0, 1e-4, channel_dim, "std"))


# ---- torch.compile: a training step over changing batch sizes ---------------------------

class Loss(nn.Module):
    """The VICReg loss as a user's module would call it (the package's, where it is loaded)."""

    def __init__(self, fused):
        super().__init__()
        self.fused = fused
        self.package = PACKAGE.VICRegLoss(fused_backward=fused) if PACKAGE else None

    def forward(self, za, zb):
        if self.package is not None:
            return self.package(za, zb)
        return OPS.vicreg_loss(za, zb, fused_backward=self.fused)


class VCRegNet(nn.Module):
    """Linear -> VCReg -> ReLU -> Linear, trained on a plain loss: the layer adds its gradient."""

    def __init__(self):
        super().__init__()
        self.first, self.second = nn.Linear(10, 24), nn.Linear(24, 4)
        self.vcreg = PACKAGE.VCReg(var_coeff=0.5, cov_coeff=0.1) if PACKAGE else None

    def forward(self, x):
        h = self.first(x)
        h = self.vcreg(h) if self.vcreg is not None else OPS.vcreg(h, 0.5, 0.1)
        return self.second(torch.relu(h)).square().mean()


BATCHES = [64, 48, 40, 64]  # the last batch of an epoch is shorter; the next epoch starts again


def batch(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 10, generator=g, dtype=torch.float64)


def assert_equal_within(got, want, tol=1e-12):
    scale = max(1.0, float(want.abs().max()))
    assert float((got - want).abs().max()) <= tol * scale, (got, want)


def run_steps(step, params, inputs_of):
    """The loss and the parameters' gradients at each batch size."""
    out = []
    for i, n in enumerate(BATCHES):
        loss = step(*inputs_of(n, i))
        out.append((loss.detach(), torch.autograd.grad(loss, params)))
    return out


def compare_compiled(model_step, params, inputs_of, dynamic):
    torch._dynamo.reset()
    eager = run_steps(model_step, params, inputs_of)
    compiled = run_steps(torch.compile(model_step, backend="aot_eager", dynamic=dynamic),
                         params, inputs_of)
    for (l_e, g_e), (l_c, g_c) in zip(eager, compiled):
        assert_equal_within(l_c, l_e)
        for a, b in zip(g_c, g_e):
            assert_equal_within(a, b)


@pytest.mark.parametrize("dynamic", [None, True], ids=["dynamic=None", "dynamic=True"])
@pytest.mark.parametrize("d", [32, 256], ids=["direct", "gram"])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "autograd"])
def test_compiled_training_step_equals_eager(fused, d, dynamic):
    torch.manual_seed(0)
    projector = nn.Linear(10, d).double()
    loss = Loss(fused)

    def step(xa, xb):
        return loss(projector(xa), projector(xb))

    def inputs_of(n, i):
        x = batch(n, i)
        return x, x + 0.1 * batch(n, 100 + i)

    compare_compiled(step, list(projector.parameters()), inputs_of, dynamic)


@pytest.mark.parametrize("dynamic", [None, True], ids=["dynamic=None", "dynamic=True"])
def test_compiled_vcreg_network_equals_eager(dynamic):
    torch.manual_seed(0)
    net = VCRegNet().double()
    compare_compiled(net, list(net.parameters()), lambda n, i: (batch(n, i),), dynamic)


def graphs_of(fn, *args):
    """The forward and backward graphs that AOTAutograd hands to a compiler of one's own. (Its
    default partitioner, which such a backend gets, saves what the forward op returns as it is
    returned: the saved tensors are outputs of their own for that reason, not one Tensor[].)"""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    graphs = {}

    def keep(name):
        def compiler(gm, example_inputs):
            graphs.setdefault(name, []).append(gm)
            return make_boxed_func(gm.forward)
        return compiler

    torch._dynamo.reset()
    backend = aot_autograd(fw_compiler=keep("forward"), bw_compiler=keep("backward"))
    out = torch.compile(fn, backend=backend, dynamic=True)(*args)
    torch.autograd.grad(out, [a for a in args if a.requires_grad])
    return {k: [str(n.target) for g in v for n in g.graph.nodes] for k, v in graphs.items()}


def test_compiled_graphs_call_the_fused_operators():
    # The fused operators stay nodes of their own in the captured graphs, forward and backward:
    # their kernels choose the Gram or direct path from the real sizes at run time.
    za, zb = views((16, 40), torch.float64, seed=3)
    targets = graphs_of(lambda a, b: Loss(True)(a, b), za, zb)
    assert "vicreg._vicreg_fused.default" in targets["forward"]
    assert "vicreg._vicreg_fused_backward.default" in targets["backward"]


# ---- torch.export: a dynamic batch dimension ----------------------------------------------

@pytest.mark.parametrize("fused", [True, False], ids=["fused", "autograd"])
@pytest.mark.parametrize("d", [32, 2048])
def test_exported_loss_with_an_unbounded_batch_equals_eager_on_both_sides_of_the_rule(fused, d):
    # The Gram-or-direct rule (Gram when 2 (n - 1) <= d) is no guard on the batch size: the
    # fused operators choose their path at run time, and the traced tensor-op path
    # (fused_backward=False) takes the direct one, accurate for every n. So one program, exported
    # at one batch size with an unbounded Dim, serves batches on both sides of the rule.
    from torch.export import Dim, export

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.projector = nn.Linear(10, d).double()
            self.loss = Loss(fused)

        def forward(self, xa, xb):
            return self.loss(self.projector(xa), self.projector(xb))

    torch.manual_seed(0)
    model = Model()
    n = Dim("batch")
    program = export(model, (batch(40, 1), batch(40, 2)),
                     dynamic_shapes={"xa": {0: n}, "xb": {0: n}})
    edge = d // 2 + 1  # the largest n of the Gram path
    for size in (2, 3, 17, edge, edge + 1, 2 * d + 5):
        xa, xb = batch(size, 3), batch(size, 4)
        assert_equal_within(program.module()(xa, xb), model(xa, xb))
