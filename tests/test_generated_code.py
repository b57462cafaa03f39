"""User text never breaks generated code: algebras with components no product reaches, non-ASCII names, and
titles full of quotes and backslashes build into files that compile and load, and layers over them match an
independent oracle.  The build compiles every generated Python file before writing anything."""
from __future__ import annotations

import json
import subprocess
import pytest
import torch

import runtime
from codegen.build import BuildError, build, check_generated
from runtime import load_algebra
from runtime.functional import algebra_conv1d, algebra_linear

SPECS = '''
from codegen.spec import algebra

# a*a = b, a*b = b*a = c: nilpotent, and no product has a component along a
Nil = algebra("Nil", basis=["a", "b", "c"], products={"a*a": "b", "a*b": "c", "b*a": "c"}, missing="zero",
              title='nilpotent "N" \\\\ with */ // and \u00e4')
\u0394elta = algebra("\u0394elta", basis=["1", "\u03b5"], products={"\u03b5*\u03b5": "0"}, unit="1",
                    title="dual numbers, spelled in Greek")
'''

F64 = dict(dtype=torch.float64)
TABLES = {"Nil": {("a", "a"): "b", ("a", "b"): "c", ("b", "a"): "c"},
          "\u0394elta": {("1", "1"): "1", ("1", "\u03b5"): "\u03b5", ("\u03b5", "1"): "\u03b5"}}


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    root = tmp_path_factory.mktemp("odd")
    (root / "specs").mkdir()
    (root / "specs" / "odd.py").write_text(SPECS, encoding="utf-8")
    build(root / "specs", root / "out")
    runtime.clear_cache()
    return root / "out"


def test_component_no_product_reaches(out):
    """Regression (a reported failure): A.mul raised `TypeError: expected Tensor as element 0` (ops.py wrote `z0 = 0.0`)."""
    A = load_algebra("Nil", out)
    table = TABLES["Nil"]
    eye = torch.eye(3, dtype=torch.float64)
    for i, a in enumerate(A.basis):
        for j, b in enumerate(A.basis):
            want = eye[A.basis.index(table[(a, b)])] if (a, b) in table else torch.zeros(3, **F64)
            for mul in (A.mul, A.mul_scheme):
                torch.testing.assert_close(mul(eye[i], eye[j]), want, rtol=0, atol=0)
    x, y = torch.randn(4, 1, 3), torch.randn(5, 3)                # broadcasting
    assert A.mul(x, y).shape == (4, 5, 3) and A.mul(x, y)[..., 0].abs().max() == 0


def _oracle(A, x, w):
    """y_o = sum_i w_oi * x_i from the multiplication table written above, as plain products of coordinates."""
    T = torch.zeros(A.dim, A.dim, A.dim, **F64)
    for (a, b), c in TABLES[A.name].items():
        T[A.basis.index(a), A.basis.index(b), A.basis.index(c)] = 1
    return torch.einsum("ajk,oia,nij->nok", T, w, x.view(x.shape[0], w.shape[1], -1)).reshape(x.shape[0], -1)


@pytest.mark.parametrize("method", ["block", "fold", "bilinear", "kernel"])
@pytest.mark.parametrize("name", ["Nil", "\u0394elta"])
def test_layers_over_odd_algebras(out, name, method):
    A = load_algebra(name, out)
    torch.manual_seed(0)
    x, w = torch.randn(3, 4 * A.dim, **F64), torch.randn(2, 4, A.dim, **F64)
    torch.testing.assert_close(algebra_linear(x, w, None, A, method), _oracle(A, x, w))
    xc = torch.randn(2, 2 * A.dim, 5, **F64, requires_grad=True)
    wc = torch.randn(3, 2, 3, A.dim, **F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: algebra_conv1d(x, w, None, A, method=method), (xc, wc))


def test_user_text_is_escaped(out):
    text = (out / "Nil" / "ops.py").read_text(encoding="utf-8")
    compile(text, "ops.py", "exec")
    assert '\\"N\\"' in text and "\\u00e4" in text                 # escaped in the comment and docstring
    manifest = json.loads((out / "Nil" / "manifest.json").read_text())
    assert manifest["title"] == 'nilpotent "N" \\ with */ // and \u00e4'   # stored as given
    assert load_algebra("Nil", out).title == manifest["title"]


def test_non_ascii_name_gets_ascii_kernel_names(out):
    table = json.loads((out / "\u0394elta" / "kernels.json").read_text())
    assert table["algebra"] == "\u0394elta" and table["prefix"].isascii() and table["prefix"].isidentifier()
    assert all(k["name"].isascii() and k["name"].startswith(table["prefix"] + "_") for k in table["kernels"])
    source = (out / "\u0394elta" / "\u0394elta.cu").read_text(encoding="utf-8")
    code = "\n".join(line.split("//")[0] for line in source.splitlines())
    assert code.isascii(), "a non-ASCII character outside comments of the CUDA source"
    cpu = json.loads((out / "\u0394elta" / "cpu_kernels.json").read_text())
    assert all(e.isascii() and e.startswith(table["prefix"] + "_") for e in cpu["entry_points"].values())


@pytest.mark.parametrize("name", ["Nil", "\u0394elta"])
def test_cuda_sources_of_odd_algebras_compile(out, name):
    from tests.test_cuda_compile import nvcc_or_skip

    nvcc = nvcc_or_skip()
    src = out / name / f"{name}.cu"
    res = subprocess.run([nvcc, "-cubin", "-arch=sm_80", "-std=c++17", "-Werror", "all-warnings", "-x", "cu",
                          str(src), "-o", str(out / f"{name}.cubin")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_post_build_check_catches_an_invalid_file():
    from codegen.spec.discover import discover
    from codegen.build import DEFAULT_SPEC_DIR

    C = discover(DEFAULT_SPEC_DIR)["C"]
    with pytest.raises(BuildError, match="generated ops.py is invalid.*bug in the code generator"):
        check_generated(C, {"ops.py": b"def mul(x, y:\n    pass\n"})
    with pytest.raises(BuildError, match="generated manifest.json is invalid"):
        check_generated(C, {"manifest.json": b'{"name": '})
