"""The package as a user gets it: build the wheel, install it (not editable) into a fresh virtual environment, and
from an empty folder run a layer over a built-in algebra, the generated CPU kernels (a batch-1 dense forward, an
element-sparse one and a packed layer, with KernelUnavailableWarning an error: the wheel must carry what they
compile), build a user algebra, and build the built-ins, without ever writing into site-packages.

The wheel is installed with `pip install --no-deps`; its dependencies (torch, SymPy, NumPy, Jinja2) come from
this test environment through a `.pth` line in the fresh venv, like `--system-site-packages` would give them
(installing torch afresh costs about a minute).  The package itself is only the wheel's copy: the test checks
that `runtime` and `codegen` are imported from the fresh site-packages, with no checkout on the path.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("algebra_spec", "codegen", "runtime", "examples")
SCRIPTS = ("algebranets-imagenet", "algebranets-lm", "algebranets-compare", "algebranets-study",
           "algebranets-pareto", "algebranets-train-resnet")

SPLIT = '''
from codegen.spec import algebra

SplitC = algebra("SplitC", basis=["1", "j"], products={"j*j": "1"}, unit="1", title="split-complex numbers")
'''

USE_LAYERS = '''
import sys, torch, runtime, codegen
from runtime.layers import AlgebraLinear
from runtime import load_algebra
site = sys.argv[1]
for module in (runtime, codegen):
    assert module.__file__.startswith(site), (module.__file__, site)
torch.manual_seed(0)
for name, method in (("H", "bilinear"), ("M2C", "fold")):
    lin = AlgebraLinear(3, 2, algebra=name, method=method).double()
    x = torch.randn(4, 3 * lin.algebra.dim, dtype=torch.float64)
    T = lin.algebra.structure_tensor()
    L = torch.einsum("oia,ajk->okij", lin.weight, T).reshape(2 * T.shape[0], -1)
    torch.testing.assert_close(lin(x), x @ L.T + lin.bias.reshape(-1))
S = load_algebra("SplitC", "user_generated")
j = torch.tensor([0.0, 1.0])
assert S.mul(j, j).tolist() == [1.0, 0.0]
print("cache:", load_algebra("H").path.parent)
'''

USE_KERNELS = '''
import warnings, torch
from runtime import sparsity as sp
from runtime.kernels import cpu
from runtime.layers import AlgebraLinear
from runtime.functional import algebra_linear
warnings.simplefilter("error", cpu.KernelUnavailableWarning)      # the wheel must carry what the kernels compile
torch.manual_seed(0)
lin = AlgebraLinear(40, 24, "H", method="kernel")
x = torch.randn(1, 160)
with torch.no_grad():
    y = lin(x)
    ref = algebra_linear(x, lin.weight, lin.bias, "H", method="block")
    assert torch.allclose(y, ref, atol=1e-4), (y - ref).abs().max()
    sp.prune_elements_(lin, 0.9)
    fast = sp.to_block_sparse(lin)
    ys = fast(x)
    assert torch.allclose(ys, algebra_linear(x, lin.weight, lin.bias, "H", method="block"), atol=1e-4)
assert cpu.ops.registered(lin.algebra)
from runtime import packing                                        # the packed form: the planar kernel
m3 = AlgebraLinear(30, 12, "M3R").eval()
packed = packing.to_packed(m3)
assert packed.is_packed
with torch.inference_mode():
    for rows in (1, 8):
        xm = torch.randn(rows, 270)
        assert torch.allclose(packed(xm), algebra_linear(xm, m3.weight, m3.bias, "M3R", method="block"), atol=1e-4)
import runtime
phm = AlgebraLinear(40, 24, runtime.learned(4)).eval()         # a learned algebra at inference: its kernel (learned.cpp)
with torch.inference_mode():
    yl = phm(x)
assert cpu.ops.learned_loaded()
phm.method = "block"
assert torch.allclose(yl, phm(x), atol=1e-4)
print("kernels ok")
'''


def _run(cmd: list[str], cwd: Path, env: dict, ok: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if ok:
        assert res.returncode == 0, f"{cmd} failed:\n{res.stdout}\n{res.stderr}"
    return res


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the sources (the checkout gets no build/ or egg-info folders)."""
    pytest.importorskip("setuptools")
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist), str(src)],
         src, dict(os.environ))
    (whl,) = dist.glob("algebranets-*.whl")
    return whl


def test_wheel_holds_every_subpackage_template_and_stored_scheme(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = [p.relative_to(ROOT).as_posix() for pkg in PACKAGES for p in (ROOT / pkg).rglob("*")
              if p.is_file() and "__pycache__" not in p.parts
              and (p.suffix in (".py", ".j2", ".cpp") or (p.suffix == ".json" and p.parent.name == "schemes"))]
    assert wanted and any(w.endswith(".j2") for w in wanted) and any(w.endswith(".json") for w in wanted)
    assert "runtime/kernels/cpu/glue.cpp" in wanted
    missing = sorted(set(wanted) - names)
    assert not missing, f"files missing from the wheel: {missing}"
    assert not any(n.startswith("generated/") for n in names)


def test_installed_wheel_works_from_an_empty_folder(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, dict(os.environ))
    py = venv / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path,
                     dict(os.environ)).stdout.strip())
    (site / "test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index", str(wheel)],
         tmp_path, dict(os.environ))

    work, home = tmp_path / "empty", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ALGEBRANETS_") and k not in ("PYTHONPATH", "XDG_CACHE_HOME", "VIRTUAL_ENV")}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / "cache"), PYTHONDONTWRITEBYTECODE="")
    before = _snapshot(site)

    # a user algebra, built where the user says
    (work / "my_specs").mkdir()
    (work / "my_specs" / "split.py").write_text(SPLIT)
    res = _run([str(py), "-m", "codegen", "build", "--spec-dir", "my_specs", "--out", "user_generated"], work, env)
    assert "SplitC" in res.stdout and (work / "user_generated" / "SplitC" / "ops.py").is_file()
    res = _run([str(py), "-m", "codegen", "build", "--spec-dir", "my_specs"], work, env, ok=False)
    assert res.returncode != 0 and "--out" in res.stderr

    # built-in algebras: built on first use into the user cache
    res = _run([str(py), "-c", USE_LAYERS, str(site)], work, env)
    cache = Path(res.stdout.split("cache:")[1].strip())
    assert cache.is_relative_to(home / "cache" / "algebranets"), cache
    assert sorted(p.name for p in cache.iterdir() if p.is_dir()) == ["H", "M2C"]

    # the CPU kernels compile from the installed package (glue.cpp is package data) into the user cache
    res = _run([str(py), "-W", "error::runtime.kernels.cpu.KernelUnavailableWarning", "-c", USE_KERNELS], work, env)
    assert "kernels ok" in res.stdout and "compiling" in res.stderr
    assert any((home / "cache" / "algebranets" / "cpu" / "glue").glob("glue-*.so"))

    # `python -m codegen build` of an installed package builds the built-ins into that same cache folder
    res = _run([str(py), "-m", "codegen", "build"], work, env)
    assert str(cache) in res.stdout
    assert {"R", "C", "H", "M4R", "M2C"} <= {p.name for p in cache.iterdir() if p.is_dir()}
    res = _run([str(py), "-m", "codegen", "build", "--out", str(site / "generated")], work, env, ok=False)
    assert res.returncode != 0 and "site-packages" in res.stderr
    res = _run([str(py), "-m", "codegen", "search", "C", "--budget", "1"], work, env, ok=False)
    assert res.returncode != 0 and "installed" in res.stderr and "--no-save" in res.stderr
    assert "M2C" in _run([str(py), "-m", "codegen", "list"], work, env).stdout

    # the training scripts are installed commands; their errors are one line
    for script in SCRIPTS:
        assert "usage:" in _run([str(venv / "bin" / script), "--help"], work, env).stdout
    res = _run([str(venv / "bin" / "algebranets-lm"), "--dataset", "enwik8", "--data", "missing", "--out", "run"],
               work, env, ok=False)
    assert res.returncode == 2 and res.stderr.startswith("error: ") and res.stderr.count("\n") == 1, res.stderr

    assert _snapshot(site) == before, "something was written into site-packages"
    assert sorted(p.name for p in work.iterdir()) == ["my_specs", "user_generated"]
    _run([sys.executable, "-m", "pip", "--python", str(py), "uninstall", "-q", "-y", "algebranets"], tmp_path,
         dict(os.environ))
    assert not any((site / pkg).exists() for pkg in (*PACKAGES, "generated"))
