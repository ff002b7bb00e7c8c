"""The vicreg operators from Python (Debian's python3-torch, the same LibTorch).

Run by CTest with VICREG_LIBRARY (path of libvicreg.so) and VICREG_SCRIPT_TOOL (the C++
helper that saves and loads TorchScript modules) in the environment.
"""
import json
import math
import os
import subprocess

import pytest

if os.environ.get("CI"):
    import torch  # CI installs python3-torch: there a missing torch fails instead of skipping
else:
    torch = pytest.importorskip(
        "torch", reason="python3-torch cannot be imported: install Debian's python3-torch")

LIB = os.environ.get("VICREG_LIBRARY")
TOOL = os.environ.get("VICREG_SCRIPT_TOOL")
if not LIB:
    pytest.skip("VICREG_LIBRARY is not set (run these tests through ctest)",
                allow_module_level=True)
torch.ops.load_library(LIB)
LOSS = torch.ops.vicreg.vicreg_loss
TERMS = torch.ops.vicreg.vicreg_terms

CONVENTIONS = {
    # invariance, variance form, views (README.md, "Conventions")
    "reference": ("element", "std", "mean"),
    "paper": ("sample", "std", "sum"),
    "article": ("sample", "var", "sum"),
}


def reference_terms(za, zb, convention, inv_c=25.0, var_c=25.0, cov_c=1.0, gamma=1.0,
                    eps=1e-4):
    """Loops over positions and dims in float64, written from the README's conventions."""
    inv_kind, form, views = CONVENTIONS[convention]
    n, d = za.shape[0], za.shape[-1]
    a = za.detach().double().reshape(n, -1, d)
    b = zb.detach().double().reshape(n, -1, d)
    P = a.shape[1]
    sq = float(((a - b) ** 2).sum())
    inv = sq / (n * P * d) if inv_kind == "element" else sq / (n * P)

    def view_terms(z):
        v_tot, c_tot = 0.0, 0.0
        for p in range(P):
            x = z[:, p, :]
            xc = x - x.mean(0)
            v = 0.0
            for j in range(d):
                var = float((xc[:, j] ** 2).sum()) / (n - 1)
                s = var if form == "var" else math.sqrt(var + eps)
                v += max(0.0, gamma - s)
            c = 0.0
            for j in range(d):
                for k in range(d):
                    if j != k:
                        c += (float((xc[:, j] * xc[:, k]).sum()) / (n - 1)) ** 2
            v_tot += v / d
            c_tot += c / d
        return v_tot / P, c_tot / P

    va, ca = view_terms(a)
    vb, cb = view_terms(b)
    var = (va + vb) / 2 if views == "mean" else va + vb
    cov = ca + cb
    return inv_c * inv + var_c * var + cov_c * cov, inv, var, cov


def fixed_input(k, n=16, d=24):
    return torch.sin(torch.arange(n * d, dtype=torch.float64) * 0.37 + k).reshape(n, d)


@pytest.mark.parametrize("convention", ["reference", "paper", "article"])
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("shape", [(12, 7), (6, 20), (8, 3, 5)])
def test_op_matches_independent_formula(convention, fused, shape):
    g = torch.Generator().manual_seed(1)
    za = torch.randn(shape, dtype=torch.float64, generator=g) * 0.7
    zb = za + 0.3 * torch.randn(shape, dtype=torch.float64, generator=g)
    got = TERMS(za, zb, convention=convention, fused_backward=fused)
    want = reference_terms(za, zb, convention)
    for x, y in zip(got, want):
        assert abs(float(x) - y) <= 1e-10 * max(1.0, abs(y))
    loss = LOSS(za, zb, convention=convention, fused_backward=fused)
    assert loss.dim() == 0 and float(loss) == float(got[0])


@pytest.mark.parametrize("fused", [True, False])
def test_knobs_override_the_convention(fused):
    g = torch.Generator().manual_seed(4)
    za = torch.randn(10, 6, dtype=torch.float64, generator=g)
    zb = torch.randn(10, 6, dtype=torch.float64, generator=g)
    # The paper's knobs, given one by one on top of the reference convention.
    got = TERMS(za, zb, convention="reference", invariance="sample_mean", variance_views="sum",
                fused_backward=fused)
    want = reference_terms(za, zb, "paper")
    for x, y in zip(got, want):
        assert abs(float(x) - y) <= 1e-10 * max(1.0, abs(y))
    article = TERMS(za, zb, convention="paper", variance_form="var", fused_backward=fused)
    assert abs(float(article[0]) - reference_terms(za, zb, "article")[0]) <= 1e-10 * abs(
        float(article[0]))
    with pytest.raises(RuntimeError, match="unknown variance_form 'mad'"):
        LOSS(za, zb, variance_form="mad")


def test_ops_have_kernels_on_the_meta_device():
    a = torch.empty(16, 3, 40, device="meta", requires_grad=True)
    b = torch.empty(16, 3, 40, device="meta", requires_grad=True)
    for fused in (True, False):
        t = TERMS(a, b, fused_backward=fused)
        assert [x.shape for x in t] == [torch.Size([])] * 4
        ga, gb = torch.autograd.grad(t[0], (a, b))
        assert ga.shape == a.shape and ga.device.type == "meta" and gb.shape == b.shape
    x = torch.empty(8, 4, 5, 5, device="meta", requires_grad=True)
    (gx,) = torch.autograd.grad(torch.ops.vicreg.vcreg(x, channel_dim=1).sum(), (x,))
    assert gx.shape == x.shape and gx.device.type == "meta"


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("shape", [(6, 8), (9, 4), (5, 2, 3)])
def test_gradcheck_float64(fused, shape):
    g = torch.Generator().manual_seed(2)
    za = (torch.randn(shape, dtype=torch.float64, generator=g) * 2).requires_grad_()
    zb = (torch.randn(shape, dtype=torch.float64, generator=g) * 0.4).requires_grad_()
    for convention in CONVENTIONS:
        assert torch.autograd.gradcheck(
            lambda a, b: LOSS(a, b, convention=convention, fused_backward=fused), (za, zb))


def test_fused_double_backward_is_a_clear_error():
    za = torch.randn(8, 5, dtype=torch.float64, requires_grad=True)
    zb = torch.randn(8, 5, dtype=torch.float64)
    loss = LOSS(za, zb)
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(loss, za, create_graph=True)


def test_script_and_trace():
    @torch.jit.script
    def scripted(a, b):
        return torch.ops.vicreg.vicreg_loss(a, b, convention="paper")

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(6, 10).double()

        def forward(self, a, b):
            return torch.ops.vicreg.vicreg_loss(self.proj(a), self.proj(b))

    za, zb = fixed_input(0, 12, 6), fixed_input(1, 12, 6)
    assert float(scripted(za, zb)) == float(LOSS(za, zb, convention="paper"))
    head = Head()
    eager = head(za, zb)
    assert float(torch.jit.script(head)(za, zb)) == float(eager)
    traced = torch.jit.trace(head, (za, zb))
    assert "vicreg::vicreg_loss" in str(traced.graph)
    assert float(traced(za, zb)) == float(eager)


def _run_tool(*args):
    assert TOOL, "VICREG_SCRIPT_TOOL is not set"
    out = subprocess.run([TOOL, *args], check=True, capture_output=True, text=True, timeout=120)
    return out.stdout


class Criterion(torch.nn.Module):
    def __init__(self, convention: str, fused: bool):
        super().__init__()
        self.convention = convention
        self.fused = fused

    def forward(self, a, b):
        return torch.ops.vicreg.vicreg_loss(a, b, 25.0, 25.0, 1.0, 1.0, 1e-4, self.convention,
                                            fused_backward=self.fused)


@pytest.mark.parametrize("fused", [True, False])
def test_python_saved_module_runs_in_cpp(tmp_path, fused):
    path = str(tmp_path / "py_module.pt")
    torch.jit.script(Criterion("paper", fused)).save(path)
    cpp = json.loads(_run_tool("run", path))
    a = fixed_input(0).requires_grad_()
    b = fixed_input(1).requires_grad_()
    loss = LOSS(a, b, convention="paper", fused_backward=fused)
    loss.backward()
    assert abs(cpp["loss"] - float(loss)) <= 1e-12 * abs(float(loss))
    assert torch.allclose(torch.tensor(cpp["grad_a"], dtype=torch.float64).reshape(16, 24), a.grad, rtol=1e-10,
                          atol=1e-14)
    assert torch.allclose(torch.tensor(cpp["grad_b"], dtype=torch.float64).reshape(16, 24), b.grad, rtol=1e-10,
                          atol=1e-14)


@pytest.mark.parametrize("convention", ["reference", "article"])
def test_cpp_saved_module_runs_in_python(tmp_path, convention):
    path = str(tmp_path / "cpp_module.pt")
    _run_tool("save", path, convention, "fused")
    module = torch.jit.load(path)
    a = fixed_input(0).requires_grad_()
    b = fixed_input(1)
    loss = module(a, b)
    want = reference_terms(a, b, convention)
    assert abs(float(loss) - want[0]) <= 1e-10 * abs(want[0])
    loss.backward()
    a2 = fixed_input(0).requires_grad_()
    LOSS(a2, b, convention=convention, fused_backward=False).backward()
    assert torch.allclose(a.grad, a2.grad, rtol=1e-10, atol=1e-14)
    terms = module.terms(a, b)
    assert len(terms) == 4


def test_bad_arguments_raise_runtime_error_with_message():
    z = torch.randn(8, 4)
    with pytest.raises(RuntimeError, match="unknown convention 'lightly'"):
        LOSS(z, z, convention="lightly")
    with pytest.raises(RuntimeError, match="same shape"):
        LOSS(z, torch.randn(8, 5))
    with pytest.raises(RuntimeError, match="n >= 2"):
        LOSS(z[:1], z[:1])
    with pytest.raises(RuntimeError, match="gamma must be a finite number > 0"):
        LOSS(z, z, gamma=0.0)
    with pytest.raises(RuntimeError, match="floating-point dtype"):
        LOSS(z.long(), z.long())


def vcreg_penalty_reference(x, var_coeff, cov_coeff, gamma=1.0, eps=1e-4, channel_dim=-1):
    """Samples by channels, centered, C with n-1, off-diagonal / (d (d-1))."""
    x2 = x.movedim(channel_dim, -1).reshape(-1, x.shape[channel_dim])
    n, d = x2.shape
    xc = x2 - x2.mean(0)
    std = torch.sqrt((xc ** 2).sum(0) / (n - 1) + eps)
    v = torch.relu(gamma - std).mean()
    c = xc.T @ xc / (n - 1)
    off = (c ** 2).sum() - (torch.diagonal(c) ** 2).sum()
    return var_coeff * v + cov_coeff * off / (d * (d - 1))


@torch.jit.script
def _scripted_vcreg(t: torch.Tensor, channel_dim: int) -> torch.Tensor:
    return torch.ops.vicreg.vcreg(t, 0.7, 1.3, 1.0, 1e-4, channel_dim, "std")


@pytest.mark.parametrize("shape,channel_dim", [((12, 5), -1), ((4, 3, 5, 5), 1)])
def test_vcreg_op_is_identity_and_injects_penalty_gradient(shape, channel_dim):
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(shape, dtype=torch.float64, generator=g) * 0.5
    w = torch.randn(shape, dtype=torch.float64, generator=g)
    x = x0.clone().requires_grad_()
    y = torch.ops.vicreg.vcreg(x, 0.7, 1.3, 1.0, 1e-4, channel_dim, "std")
    assert torch.equal(y, x0)
    (y * w).sum().backward()
    x2 = x0.clone().requires_grad_()
    ((x2 * w).sum() + vcreg_penalty_reference(x2, 0.7, 1.3, channel_dim=channel_dim)).backward()
    assert torch.allclose(x.grad, x2.grad, rtol=1e-10, atol=1e-13)
    assert torch.equal(_scripted_vcreg(x0, channel_dim), x0)
    with pytest.raises(RuntimeError, match="channel_dim 7 is out of range"):
        torch.ops.vicreg.vcreg(x0, 0.7, 1.3, 1.0, 1e-4, 7, "std")
