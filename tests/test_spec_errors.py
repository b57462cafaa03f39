"""Bad specs: one clear message naming the file, the algebra and the problem; exit code != 0; the
generated folder is left exactly as it was."""
from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from codegen.build import build
from codegen.spec import SpecError

ROOT = Path(__file__).resolve().parent.parent

GOOD = '''
from codegen.spec import algebra
SplitC = algebra("SplitC", basis=["1", "j"], products={"j*j": "1"}, unit="1", claims={"commutative": True})
'''


def tree_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture
def spec_dir(tmp_path):
    d = tmp_path / "specs"
    d.mkdir()
    (d / "good.py").write_text(GOOD)
    out = tmp_path / "out"
    build(d, out)
    return d, out


BAD = {
    "unknown_symbol": ('algebra("X", basis=["1", "i"], products={"i*i": "-q"}, unit="1")',
                       "unknown symbol 'q'"),
    "unknown_key": ('algebra("X", basis=["1", "i"], products={"i*k": "1"}, unit="1")',
                    "unknown basis element 'k'"),
    "outside_basis": ('algebra("X", basis=["1", "i"], products={"i*i": "i*i"}, unit="1")', "leaves the basis"),
    "bad_name": ('algebra("2X", basis=["1", "i"], products={"i*i": "-1"}, unit="1")', "not a Python identifier"),
    "missing": ('algebra("X", basis=["a", "b"], products={"a*a": "a", "a*b": "b", "b*a": "b"})',
                "missing product b*b"),
    "float": ('algebra("X", basis=["1", "i"], products={"i*i": -0.5}, unit="1")', "non-exact coefficient"),
    "float_in_string": ('algebra("X", basis=["1", "i"], products={"i*i": "-0.5"}, unit="1")',
                        "non-exact coefficient"),
    "not_closed": ('from_matrices("X", {"a": sympy.Matrix([[1, 0], [0, 0]]), "b": sympy.Matrix([[0, 1], [0, 0]]),'
                   ' "c": sympy.Matrix([[0, 0], [1, 0]])})', "leaves the span"),
    "dependent": ('from_matrices("X", {"a": sympy.eye(2), "b": 2 * sympy.eye(2)})', "linearly dependent"),
    "false_claim": ('algebra("X", basis=["1", "i"], products={"i*i": "-1"}, unit="1", claims={"anticommutative": True})',
                    "claim anticommutative=True is false: 1*1 = 1, not 0"),
    "false_assoc": ('algebra("X", basis=["e1", "e2", "e3"], missing="zero", claims={"associative": True},'
                    ' products={"e1*e2": "e3", "e2*e1": "-e3", "e2*e3": "e1", "e3*e2": "-e1", "e3*e1": "e2", "e1*e3": "-e2"})',
                    "(e1*e1)*e2 = 0 but e1*(e1*e2) = -e2"),
    "wrong_type_products": ('algebra("X", basis=["1", "i"], products=["i*i"], unit="1")', "products must be a dict"),
    "wrong_type_claim": ('algebra("X", basis=["1", "i"], products={"i*i": "-1"}, unit="1", claims={"associative": "yes"})',
                         "must be True or False"),
    "unknown_claim": ('algebra("X", basis=["1", "i"], products={"i*i": "-1"}, unit="1", claims={"fast": True})',
                      "unknown claim 'fast'"),
    "wrong_scheme": ('algebra("X", basis=["1", "i"], products={"i*i": "-1"}, unit="1",'
                     ' scheme=dict(U=[[1, 0], [0, 1]], V=[[1, 0], [0, 1]], W=[[1, 0], [0, 1]]))',
                     "scheme given in the spec is wrong"),
    "bare_number_no_unit": ('algebra("X", basis=["a"], products={"a*a": "2"})', "declares no unit"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_spec_is_reported_and_leaves_output(spec_dir, case):
    d, out = spec_dir
    before = tree_hash(out)
    body, expected = BAD[case]
    bad = d / f"bad_{case}.py"
    bad.write_text(f"import sympy\nfrom codegen.spec import algebra, from_matrices\nX = {body}\n")
    with pytest.raises(SpecError) as info:
        build(d, out)
    message = str(info.value)
    assert expected in message
    assert str(bad) in message
    if case != "bad_name":
        assert "algebra X" in message
    assert tree_hash(out) == before
    assert not any(p.name.startswith(".build-tmp") for p in out.iterdir())


def test_duplicate_name_across_files(spec_dir):
    d, out = spec_dir
    before = tree_hash(out)
    (d / "again.py").write_text(GOOD.replace('"j*j": "1"', '"j*j": "-1"'))
    with pytest.raises(SpecError, match="two different algebras are named .SplitC."):
        build(d, out)
    assert tree_hash(out) == before


def test_python_error_in_spec_names_file_and_line(spec_dir):
    d, out = spec_dir
    (d / "broken.py").write_text("x = 1\ny = undefined_name\n")
    with pytest.raises(SpecError, match=r"broken.py: line 2: NameError"):
        build(d, out)


def test_cli_exit_code_and_single_line(spec_dir):
    d, out = spec_dir
    before = tree_hash(out)
    (d / "bad.py").write_text('from codegen.spec import algebra\nX = algebra("X", basis=["1", "i"], products={"i*i": 0.5}, unit="1")\n')
    proc = subprocess.run([sys.executable, "-m", "codegen", "build", "--spec-dir", str(d), "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert err.count("\n") == 0, err
    assert "bad.py" in err and "algebra X" in err and "non-exact" in err
    assert tree_hash(out) == before
