"""The Python package `vicreg` as installed by `cmake --install`.

Run by CTest (test python_package): it installs the build tree into a scratch prefix and runs
this file from a scratch directory with only that prefix's site directory on PYTHONPATH, and
VICREG_PACKAGE_PREFIX (the prefix) and VICREG_EXPECTED_VERSION (the CMake project version) in
the environment. Elsewhere (e.g. collected by the python_operators test) it skips.
"""
import inspect
import math
import os
import shutil
import subprocess
import sys

import pytest

if os.environ.get("CI"):
    import torch  # CI installs python3-torch: there a missing torch fails instead of skipping
else:
    torch = pytest.importorskip(
        "torch", reason="python3-torch cannot be imported: install Debian's python3-torch")

PREFIX = os.environ.get("VICREG_PACKAGE_PREFIX")
if not PREFIX:
    pytest.skip("VICREG_PACKAGE_PREFIX is not set (run this file through ctest -R python_package)",
                allow_module_level=True)
PREFIX = os.path.realpath(PREFIX)

import vicreg  # noqa: E402  (only after the environment check)
import vicreg.functional as VF  # noqa: E402

SETTINGS = {  # README.md, "Conventions"
    "reference": {"invariance": "element_mean", "variance_form": "std",
                  "variance_views": "mean", "covariance_norm": "unbiased"},
    "paper": {"invariance": "sample_mean", "variance_form": "std", "variance_views": "sum",
              "covariance_norm": "unbiased"},
    "article": {"invariance": "sample_mean", "variance_form": "var", "variance_views": "sum",
                "covariance_norm": "unbiased"},
}
KNOB_VALUES = {
    "invariance": ("element_mean", "sample_mean"),
    "variance_form": ("std", "var"),
    "variance_views": ("mean", "sum"),
    "covariance_norm": ("unbiased", "biased"),
}


def off_diagonal_squares(c):
    d = c.shape[0]
    mask = ~torch.eye(d, dtype=torch.bool)
    return (c[mask] ** 2).sum()


def reference_terms(za, zb, inv_coeff=25.0, var_coeff=25.0, cov_coeff=1.0, gamma=1.0,
                    eps=1e-4, convention="reference", **knobs):
    """The loss and its terms in float64 from README.md's definitions, a loop over positions
    and plain torch ops (differentiable, so autograd gives an independent gradient too)."""
    s = dict(SETTINGS[convention])
    s.update({k: v for k, v in knobs.items() if v is not None})
    n, d = za.shape[0], za.shape[-1]
    a = za.double().reshape(n, -1, d)
    b = zb.double().reshape(n, -1, d)
    P = a.shape[1]
    sq = ((a - b) ** 2).sum()
    inv = sq / (n * P * d) if s["invariance"] == "element_mean" else sq / (n * P)

    def view_terms(z):
        v_sum, c_sum = 0.0, 0.0
        for p in range(P):
            x = z[:, p, :]
            xc = x - x.mean(dim=0)
            var_j = (xc ** 2).sum(dim=0) / (n - 1)
            s_j = torch.sqrt(var_j + eps) if s["variance_form"] == "std" else var_j
            v_sum = v_sum + torch.clamp(gamma - s_j, min=0).sum() / d
            cov = xc.T @ xc / ((n - 1) if s["covariance_norm"] == "unbiased" else n)
            c_sum = c_sum + off_diagonal_squares(cov) / d
        return v_sum / P, c_sum / P

    va, ca = view_terms(a)
    vb, cb = view_terms(b)
    var = (va + vb) / 2 if s["variance_views"] == "mean" else va + vb
    cov = ca + cb
    return inv_coeff * inv + var_coeff * var + cov_coeff * cov, inv, var, cov


def vcreg_penalty_reference(x, var_coeff=1.0, cov_coeff=1.0, gamma=1.0, eps=1e-4,
                            channel_dim=-1, variance_form="std"):
    """README.md: var_coeff * v(X) + cov_coeff / (d (d-1)) * sum_{i != j} C_ij^2, C over N-1."""
    x2 = x.double().movedim(channel_dim, -1).reshape(-1, x.shape[channel_dim])
    N, d = x2.shape
    xc = x2 - x2.mean(dim=0)
    var_j = (xc ** 2).sum(dim=0) / (N - 1)
    s_j = torch.sqrt(var_j + eps) if variance_form == "std" else var_j
    v = torch.clamp(gamma - s_j, min=0).sum() / d
    return var_coeff * v + cov_coeff * off_diagonal_squares(xc.T @ xc / (N - 1)) / (d * (d - 1))


def views(shape, seed, dtype=torch.float64):
    """Two correlated views whose column scales straddle gamma = 1 (the hinge is partly on)."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.linspace(0.3, 1.8, shape[-1], dtype=torch.float64)
    za = torch.randn(shape, dtype=torch.float64, generator=g) * scale
    zb = za + 0.4 * torch.randn(shape, dtype=torch.float64, generator=g)
    return za.to(dtype), zb.to(dtype)


def assert_close(got, want, rtol=1e-10):
    got, want = float(got), float(want)
    assert abs(got - want) <= rtol * max(1.0, abs(want)), (got, want)


def site_dir():
    return os.path.dirname(os.path.dirname(os.path.realpath(vicreg.__file__)))


# ---- import -------------------------------------------------------------------------------

def test_import_comes_from_the_install_prefix():
    package = os.path.realpath(vicreg.__file__)
    assert os.path.commonpath([package, PREFIX]) == PREFIX, package
    library = os.path.realpath(vicreg._extension.LIBRARY)
    assert os.path.commonpath([library, PREFIX]) == PREFIX, library
    assert os.path.basename(vicreg._extension.LIBRARY).startswith("libvicreg.so")
    assert library in {os.path.realpath(p) for p in torch.ops.loaded_libraries}
    # Only the prefix holds a package vicreg on the path: not the working directory, not the
    # source tree (src/python), not the build tree.
    holders = {os.path.realpath(e or os.getcwd()) for e in sys.path
               if os.path.isdir(os.path.join(e or os.getcwd(), "vicreg"))}
    assert holders == {site_dir()}, holders


def test_exports_and_version():
    assert set(vicreg.__all__) >= {"VICRegLoss", "VCReg", "functional", "__version__"}
    assert vicreg.functional is VF
    assert vicreg.__version__ == os.environ["VICREG_EXPECTED_VERSION"]
    for name in ("vicreg_loss", "vicreg_terms", "vcreg"):
        assert getattr(VF, name).__doc__, name


def test_missing_library_is_a_clear_import_error(tmp_path):
    # The installed package alone, in the same layout under another prefix without the library.
    rel = os.path.relpath(site_dir(), PREFIX)
    copy = tmp_path / "prefix" / rel
    shutil.copytree(os.path.dirname(os.path.realpath(vicreg.__file__)), copy / "vicreg")
    env = dict(os.environ, PYTHONPATH=str(copy))
    out = subprocess.run([sys.executable, "-c", "import vicreg"], env=env, cwd=str(tmp_path),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "ImportError" in out.stderr and "is missing" in out.stderr, out.stderr
    assert str(tmp_path / "prefix") in out.stderr, out.stderr


def test_import_after_the_operators_are_registered_loads_nothing(tmp_path):
    # A process that already has the operators (another copy of the library loaded, or linked
    # into an embedding program) must not load a second copy: LibTorch would abort on the
    # second registration of the namespace vicreg.
    copy = tmp_path / "libvicreg_copy.so"
    shutil.copyfile(vicreg._extension.LIBRARY, copy)
    script = ("import sys, torch\n"
              "torch.ops.load_library(sys.argv[1])\n"
              "import vicreg\n"
              "z = torch.randn(8, 4)\n"
              "print(float(vicreg.VICRegLoss()(z, z + 1)), sorted(torch.ops.loaded_libraries))\n")
    out = subprocess.run([sys.executable, "-c", script, str(copy)], capture_output=True,
                         text=True, timeout=300, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "libvicreg_copy.so']" in out.stdout and "libvicreg.so" not in out.stdout, out.stdout


# ---- values against the independent formula ----------------------------------------------

@pytest.mark.parametrize("convention", ["reference", "paper", "article"])
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("shape", [(12, 7), (6, 20), (8, 3, 5)])
def test_module_matches_independent_formula(convention, fused, shape):
    za, zb = views(shape, 1)
    module = vicreg.VICRegLoss(convention=convention, fused_backward=fused)
    want = reference_terms(za, zb, convention=convention)
    got = module.terms(za, zb)
    assert len(got) == 4
    for x, y in zip(got, want):
        assert x.dim() == 0
        assert_close(x, y)
    assert_close(module(za, zb), want[0])
    assert_close(VF.vicreg_loss(za, zb, convention=convention, fused_backward=fused), want[0])
    for x, y in zip(VF.vicreg_terms(za, zb, convention=convention), want):
        assert_close(x, y)


def test_coefficients_are_passed_through():
    za, zb = views((10, 6), 2)
    kw = dict(inv_coeff=3.0, var_coeff=7.0, cov_coeff=0.5, gamma=1.5, eps=1e-3)
    want = reference_terms(za, zb, convention="paper", **kw)
    got = vicreg.VICRegLoss(convention="paper", **kw).terms(za, zb)
    for x, y in zip(got, want):
        assert_close(x, y)
    assert_close(VF.vicreg_loss(za, zb, 3.0, 7.0, 0.5, 1.5, 1e-3, "paper"), want[0])
    # Integer coefficients are accepted by the module (stored as floats).
    assert_close(vicreg.VICRegLoss(inv_coeff=3, var_coeff=7, cov_coeff=2)(za, zb),
                 reference_terms(za, zb, 3.0, 7.0, 2.0)[0])


def test_float32_input():
    za, zb = views((32, 16), 3, torch.float32)
    loss = vicreg.VICRegLoss()(za, zb)
    assert loss.dtype == torch.float32
    assert_close(loss, reference_terms(za, zb)[0], rtol=1e-4)


@pytest.mark.parametrize("convention", ["reference", "paper", "article"])
@pytest.mark.parametrize("knob", sorted(KNOB_VALUES))
@pytest.mark.parametrize("fused", [True, False])
def test_knob_overrides_the_convention(convention, knob, fused):
    za, zb = views((9, 5), 4)
    base = float(vicreg.VICRegLoss(convention=convention)(za, zb))
    for value in KNOB_VALUES[knob]:
        module = vicreg.VICRegLoss(convention=convention, fused_backward=fused, **{knob: value})
        want = reference_terms(za, zb, convention=convention, **{knob: value})
        for x, y in zip(module.terms(za, zb), want):
            assert_close(x, y)
        assert_close(module(za, zb), want[0])
        assert_close(VF.vicreg_loss(za, zb, convention=convention, **{knob: value}), want[0])
        assert_close(torch.jit.script(module)(za, zb), want[0])
        # The override matters: a value other than the convention's gives another loss.
        if value != SETTINGS[convention][knob]:
            assert abs(float(want[0]) - base) > 1e-6 * abs(base)


# ---- gradients ----------------------------------------------------------------------------

@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("shape", [(6, 8), (9, 4), (5, 2, 3)])
def test_gradcheck(fused, shape):
    za, zb = views(shape, 5)
    za.requires_grad_()
    zb.requires_grad_()
    for convention in SETTINGS:
        module = vicreg.VICRegLoss(convention=convention, fused_backward=fused)
        assert torch.autograd.gradcheck(module, (za, zb))
    biased = vicreg.VICRegLoss(covariance_norm="biased", variance_form="var",
                               fused_backward=fused)
    assert torch.autograd.gradcheck(biased, (za, zb))
    assert torch.autograd.gradcheck(
        lambda a, b: VF.vicreg_terms(a, b, convention="paper", fused_backward=fused)[2], (za, zb))


def test_fused_backward_selects_the_backward():
    za, zb = views((8, 5), 11)
    za.requires_grad_()
    zb.requires_grad_()
    # The hand-written backward has no double backward; autograd over tensor ops has.
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(vicreg.VICRegLoss()(za, zb), za, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(VF.vicreg_loss(za, zb), za, create_graph=True)
    module = vicreg.VICRegLoss(convention="paper", fused_backward=False)
    assert torch.autograd.gradgradcheck(module, (za, zb))
    assert torch.autograd.gradgradcheck(torch.jit.script(module), (za, zb))


@pytest.mark.parametrize("convention", ["reference", "paper", "article"])
@pytest.mark.parametrize("fused", [True, False])
def test_gradient_matches_the_independent_formula(convention, fused):
    za, zb = views((10, 12), 6)
    a1, b1 = za.clone().requires_grad_(), zb.clone().requires_grad_()
    vicreg.VICRegLoss(convention=convention, fused_backward=fused)(a1, b1).backward()
    a2, b2 = za.clone().requires_grad_(), zb.clone().requires_grad_()
    reference_terms(a2, b2, convention=convention)[0].backward()
    assert torch.allclose(a1.grad, a2.grad, rtol=1e-9, atol=1e-12)
    assert torch.allclose(b1.grad, b2.grad, rtol=1e-9, atol=1e-12)


# ---- TorchScript --------------------------------------------------------------------------

class Head(torch.nn.Module):
    """A projector and the criterion: what a user scripts and ships."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Linear(6, 10).double()
        self.criterion = vicreg.VICRegLoss(convention="paper", cov_coeff=2.0,
                                           covariance_norm="biased")

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.criterion(self.proj(a), self.proj(b))


def test_modules_and_functions_script():
    za, zb = views((12, 6), 7)
    module = vicreg.VICRegLoss(convention="article", variance_views="mean", fused_backward=False)
    scripted = torch.jit.script(module)
    want = reference_terms(za, zb, convention="article", variance_views="mean")
    assert_close(scripted(za, zb), want[0])
    for x, y in zip(scripted.terms(za, zb), want):
        assert_close(x, y)
    assert "vicreg::vicreg_loss" in str(scripted.inlined_graph)
    fn = torch.jit.script(VF.vicreg_loss)
    assert_close(fn(za, zb, convention="article", variance_views="mean"), want[0])
    terms = torch.jit.script(VF.vicreg_terms)
    assert_close(terms(za, zb, covariance_norm="biased")[3],
                 reference_terms(za, zb, covariance_norm="biased")[3])


def test_scripted_module_saves_and_loads(tmp_path):
    za, zb = views((12, 6), 8)
    head = Head()
    eager = head(za, zb)
    path = str(tmp_path / "head.pt")
    torch.jit.script(head).save(path)
    loaded = torch.jit.load(path)
    assert_close(loaded(za, zb), eager)
    assert loaded.criterion.convention == "paper"
    assert loaded.criterion.covariance_norm == "biased"
    with torch.no_grad():
        pa, pb = head.proj(za), head.proj(zb)
    want = reference_terms(pa, pb, cov_coeff=2.0, convention="paper", covariance_norm="biased")
    assert_close(eager, want[0])
    for x, y in zip(loaded.criterion.terms(pa, pb), want):
        assert_close(x, y)
    # Same gradients through the loaded module.
    eager.backward()
    loaded(za, zb).backward()
    for p, q in zip(head.parameters(), loaded.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-10, atol=1e-13)


def test_saved_module_needs_only_import_vicreg_in_a_fresh_process(tmp_path):
    za, zb = views((12, 6), 9)
    head = Head()
    path = str(tmp_path / "head.pt")
    inputs = str(tmp_path / "inputs.pt")
    torch.jit.script(head).save(path)
    torch.save((za, zb), inputs)
    script = ("import sys, torch\n"
              "{imp}"
              "m = torch.jit.load(sys.argv[1])\n"
              "a, b = torch.load(sys.argv[2])\n"
              "print(repr(float(m(a, b))))\n")
    run = [sys.executable, "-c"]
    out = subprocess.run(run + [script.format(imp="import vicreg\n"), path, inputs],
                         capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert_close(float(out.stdout.strip().splitlines()[-1]), head(za, zb), rtol=1e-12)
    # Without the package the operators are unknown: import vicreg is what provides them.
    out = subprocess.run(run + [script.format(imp=""), path, inputs],
                         capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert out.returncode != 0
    assert "vicreg::vicreg_loss" in out.stderr, out.stderr


# ---- VCReg --------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,channel_dim,form", [((12, 5), -1, "std"),
                                                    ((4, 3, 5, 5), 1, "std"),
                                                    ((10, 6), -1, "var")])
@pytest.mark.parametrize("scripted", [False, True])
def test_vcreg_is_identity_and_injects_the_penalty_gradient(shape, channel_dim, form, scripted):
    g = torch.Generator().manual_seed(10)
    x0 = torch.randn(shape, dtype=torch.float64, generator=g) * 0.6
    w = torch.randn(shape, dtype=torch.float64, generator=g)
    kw = dict(var_coeff=0.7, cov_coeff=1.3, gamma=1.2, eps=1e-3, channel_dim=channel_dim,
              variance_form=form)
    layer = vicreg.VCReg(**kw)
    if scripted:
        layer = torch.jit.script(layer)

    def grad_through(module, penalty):
        x = x0.clone().requires_grad_()
        y = module(x)
        assert torch.equal(y, x0)
        loss = (y * w).sum()
        if penalty:
            loss = loss + vcreg_penalty_reference(x, **kw)
        loss.backward()
        return x.grad

    identity = torch.nn.Identity()
    layer.train()
    injected = grad_through(layer, False)
    assert torch.allclose(injected, grad_through(identity, True), rtol=1e-10, atol=1e-13)
    assert not torch.allclose(injected, w)
    # Eval mode: a pure identity, the incoming gradient unchanged.
    layer.eval()
    assert torch.equal(grad_through(layer, False), w)
    # active_in_eval: the gradient is injected in eval mode too.
    active = vicreg.VCReg(active_in_eval=True, **kw).eval()
    if scripted:
        active = torch.jit.script(active)
    assert torch.allclose(grad_through(active, False), grad_through(identity, True), rtol=1e-10,
                          atol=1e-13)
    # The functional form.
    x = x0.clone().requires_grad_()
    (VF.vcreg(x, **kw) * w).sum().backward()
    assert torch.allclose(x.grad, injected, rtol=1e-12, atol=1e-14)


def test_vcreg_in_eval_returns_its_input():
    x = torch.randn(8, 4)
    assert vicreg.VCReg().eval()(x) is x
    y = vicreg.VCReg()(x)
    assert torch.equal(y, x) and y.data_ptr() == x.data_ptr()


def test_vcreg_in_a_saved_network(tmp_path):
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(5, 7), vicreg.VCReg(var_coeff=0.5, cov_coeff=0.2),
                              torch.nn.Linear(7, 1)).double()
    path = str(tmp_path / "net.pt")
    torch.jit.script(net).save(path)
    loaded = torch.jit.load(path)
    x = torch.randn(16, 5, dtype=torch.float64)
    net(x).sum().backward()
    loaded(x).sum().backward()
    for p, q in zip(net.parameters(), loaded.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-10, atol=1e-13)
    # The injected gradient reaches the first layer: it differs from a net without VCReg.
    plain = torch.nn.Sequential(net[0], net[2])
    w_grad = net[0].weight.grad.clone()
    net.zero_grad()
    plain(x).sum().backward()
    assert not torch.allclose(net[0].weight.grad, w_grad)


# ---- repr and bad arguments ---------------------------------------------------------------

def test_extra_repr():
    r = repr(vicreg.VICRegLoss(convention="paper", cov_coeff=2.0, variance_form="var",
                               fused_backward=False))
    assert r.startswith("VICRegLoss(")
    for part in ("inv_coeff=25.0", "cov_coeff=2.0", "convention='paper'", "variance_form='var'",
                 "fused_backward=False"):
        assert part in r, r
    assert "invariance=" not in r and "check_finite" not in r, r
    r = repr(vicreg.VCReg(var_coeff=0.16, channel_dim=1, active_in_eval=True))
    for part in ("VCReg(", "var_coeff=0.16", "channel_dim=1", "variance_form='std'",
                 "active_in_eval=True"):
        assert part in r, r


@pytest.mark.parametrize("kwargs,name", [
    ({"convention": "lightly"}, "convention"),
    ({"convention": "Paper"}, "convention"),
    ({"inv_coeff": -1.0}, "inv_coeff"),
    ({"var_coeff": -0.5}, "var_coeff"),
    ({"cov_coeff": float("nan")}, "cov_coeff"),
    ({"inv_coeff": math.inf}, "inv_coeff"),
    ({"gamma": 0.0}, "gamma"),
    ({"gamma": -1.0}, "gamma"),
    ({"eps": -1e-4}, "eps"),
    ({"invariance": "sum"}, "invariance"),
    ({"variance_form": "mad"}, "variance_form"),
    ({"variance_views": "max"}, "variance_views"),
    ({"covariance_norm": "n"}, "covariance_norm"),
])
def test_vicreg_loss_bad_values_raise_the_operators_error_at_construction(kwargs, name):
    with pytest.raises(RuntimeError, match=name) as from_module:
        vicreg.VICRegLoss(**kwargs)
    z = torch.randn(8, 4, dtype=torch.float64)
    with pytest.raises(RuntimeError) as from_call:
        VF.vicreg_loss(z, z, **kwargs)
    # One error, whichever way the value comes in: same type, same words.
    assert str(from_module.value).splitlines()[0] == str(from_call.value).splitlines()[0]


@pytest.mark.parametrize("kwargs,name", [
    ({"inv_coeff": "25"}, "inv_coeff"),
    ({"gamma": None}, "gamma"),
    ({"fused_backward": "yes"}, "fused_backward"),
    ({"check_finite": 1}, "check_finite"),
    ({"convention": None}, "convention"),
    ({"invariance": 1}, "invariance"),
])
def test_vicreg_loss_wrong_types_raise_type_error(kwargs, name):
    with pytest.raises(TypeError, match=name):
        vicreg.VICRegLoss(**kwargs)


def test_module_arguments_are_the_operators_schemas():
    """The constructors take the operators' arguments, in their order, with their defaults,
    then the modules' own; positional calls work as before."""
    def after_tensors(op):
        return [(a.name, a.default_value) for a in op.default._schema.arguments
                if str(a.type) != "Tensor"]

    loss = inspect.signature(vicreg.VICRegLoss).parameters
    assert [(n, p.default) for n, p in loss.items()] == (
        after_tensors(torch.ops.vicreg.vicreg_loss) + [("process_group", None), ("sharded", None)])
    assert loss["eps"].default == 1e-4 and loss["convention"].default == "reference"
    layer = inspect.signature(vicreg.VCReg).parameters
    assert [(n, p.default) for n, p in layer.items()] == (
        after_tensors(torch.ops.vicreg.vcreg) + [("active_in_eval", False)])
    # The functional forms spell their arguments (TorchScript compiles them): the same list.
    for fn, op in ((VF.vicreg_loss, torch.ops.vicreg.vicreg_loss),
                   (VF.vicreg_terms, torch.ops.vicreg.vicreg_terms)):
        params = [(n, p.default) for n, p in inspect.signature(fn).parameters.items()]
        assert params[2:] == after_tensors(op) + [("process_group", None), ("sharded", None)]
    params = [(n, p.default) for n, p in inspect.signature(VF.vcreg).parameters.items()]
    assert params[1:] == after_tensors(torch.ops.vicreg.vcreg)
    module = vicreg.VICRegLoss(3, 7.0, 2.0, 0.5, 1e-3, "paper", None, "var")
    assert (module.inv_coeff, module.gamma, module.convention, module.variance_form) == (
        3.0, 0.5, "paper", "var")
    assert isinstance(module.inv_coeff, float)
    assert vicreg.VCReg(0.5, 0.1, 1.0, 1e-4, 1).channel_dim == 1
    with pytest.raises(TypeError, match="unexpected keyword argument 'cov'"):
        vicreg.VICRegLoss(cov=1.0)
    with pytest.raises(TypeError, match="too many positional arguments"):
        vicreg.VCReg(1.0, 1.0, 1.0, 1e-4, -1, "std", False, 3)


@pytest.mark.parametrize("kwargs,name,error", [
    ({"var_coeff": -1.0}, "var_coeff", RuntimeError),
    ({"cov_coeff": float("inf")}, "cov_coeff", RuntimeError),
    ({"gamma": 0.0}, "gamma", RuntimeError),
    ({"eps": -1.0}, "eps", RuntimeError),
    ({"variance_form": "mad"}, "variance_form", RuntimeError),
    ({"channel_dim": 1.0}, "channel_dim", TypeError),
    ({"active_in_eval": "no"}, "active_in_eval", TypeError),
])
def test_vcreg_bad_arguments(kwargs, name, error):
    with pytest.raises(error, match=name):
        vicreg.VCReg(**kwargs)


def test_bad_inputs_raise_the_operators_runtime_error():
    z = torch.randn(8, 4)
    with pytest.raises(RuntimeError, match="same shape"):
        vicreg.VICRegLoss()(z, torch.randn(8, 5))
    with pytest.raises(RuntimeError, match="n >= 2"):
        vicreg.VICRegLoss().terms(z[:1], z[:1])
    with pytest.raises(RuntimeError, match="unknown convention 'lightly'"):
        VF.vicreg_loss(z, z, convention="lightly")
    with pytest.raises(RuntimeError, match="unknown covariance_norm 'n'"):
        VF.vicreg_terms(z, z, covariance_norm="n")
    with pytest.raises(RuntimeError, match="channel_dim 7 is out of range"):
        vicreg.VCReg(channel_dim=7)(z)
    with pytest.raises(RuntimeError, match="contains NaN or Inf"):
        vicreg.VICRegLoss(check_finite=True)(z, torch.full_like(z, float("nan")))
