"""Bad specs: one clear message naming the file, the algebra and the problem; exit code != 0; the
generated folder is left exactly as it was."""
from __future__ import annotations

import hashlib
import json
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


# ------------------------------------------------------------------------ reproductions of the reliability issue
def run_cli(capsys, *argv: str) -> tuple[int, str]:
    """`python -m codegen ARGV` in this process: (exit code, stderr)."""
    from codegen.cli import main

    rc = main(list(argv))
    return rc, capsys.readouterr().err.strip()


IRRATIONAL = {
    "sqrt2_string": 'algebra("X", basis=["1", "i"], products={"i*i": "sqrt(2)"}, unit="1")',
    "pi_string": 'algebra("X", basis=["1", "i"], products={"i*i": "pi"}, unit="1")',
    "sympy_sqrt2_times_i": 'algebra("X", basis=["1", "i"], products={"i*i": sympy.sqrt(2) * sympy.Symbol("i")}, '
                           'unit="1")',
    "matrix_entry": 'from_matrices("X", {"a": sympy.Matrix([[sympy.sqrt(2)]])})',
    "scheme_entry": 'algebra("X", basis=["1", "i"], products={"i*i": "-1"}, unit="1", '
                    'scheme=dict(U=[["sqrt(2)", 0]], V=[[1, 0]], W=[[1, 0]]))',
}


def build_refuses(spec_dir, capsys, body: str) -> str:
    """Write a spec defining algebra X as `body`, build it with the CLI: one line naming the file and the
    algebra, a non-zero exit, and the output folder unchanged.  Returns the message."""
    d, out = spec_dir
    before = tree_hash(out)
    bad = d / "bad_x.py"
    bad.write_text(f"import sympy\nfrom codegen.spec import algebra, from_matrices\nX = {body}\n")
    rc, err = run_cli(capsys, "build", "--spec-dir", str(d), "--out", str(out))
    assert rc != 0 and "\n" not in err and "Traceback" not in err
    assert str(bad) in err and "algebra X" in err
    assert tree_hash(out) == before
    return err


@pytest.mark.parametrize("case", sorted(IRRATIONAL))
def test_irrational_coefficient_gives_one_line_and_writes_nothing(spec_dir, capsys, case):
    err = build_refuses(spec_dir, capsys, IRRATIONAL[case])
    assert "not a rational number" in err or "exact rational" in err, err


@pytest.mark.parametrize("command", ["build", "list", "check"])
def test_spec_calling_sys_exit_is_an_error(spec_dir, capsys, command):
    d, out = spec_dir
    before = tree_hash(out)
    (d / "exits.py").write_text("import sys\n\nsys.exit(0)\n")
    args = ["--spec-dir", str(d)] + (["--out", str(out)] if command != "list" else [])
    rc, err = run_cli(capsys, command, *args)
    assert rc != 0 and "\n" not in err
    assert "exits.py" in err and "line 3" in err and "sys.exit(0)" in err
    assert tree_hash(out) == before


def test_out_naming_an_existing_file(spec_dir, capsys, tmp_path):
    d, _ = spec_dir
    target = tmp_path / "a_file"
    target.write_text("mine\n")
    rc, err = run_cli(capsys, "build", "--spec-dir", str(d), "--out", str(target))
    assert rc != 0 and "\n" not in err and "Traceback" not in err
    assert str(target) in err and "is a file" in err
    assert target.read_text() == "mine\n"


def test_own_specs_need_an_output_folder(spec_dir, capsys):
    d, _ = spec_dir
    rc, err = run_cli(capsys, "build", "--spec-dir", str(d))
    assert rc != 0 and "--out" in err and str(d) in err


COMPLEX = 'basis=["1", "i"], products={"i*i": "-1"}, unit="1"'


def test_scheme_above_the_naive_count_is_refused(spec_dir):
    d, out = spec_dir
    before = tree_hash(out)
    # the 4 naive products plus a useless fifth: a valid scheme of rank 5 that could never be chosen
    rows = "U=[[1, 0], [1, 0], [0, 1], [0, 1], [0, 0]], V=[[1, 0], [0, 1], [1, 0], [0, 1], [1, 1]], " \
           "W=[[1, 0], [0, 1], [0, 1], [-1, 0], [0, 0]]"
    (d / "big.py").write_text(f"from codegen.spec import algebra\nX = algebra('X', {COMPLEX}, scheme=dict({rows}))\n")
    with pytest.raises(SpecError, match=r"rank 5, more than the naive product's 4 multiplications") as info:
        build(d, out)
    assert str(d / "big.py") in str(info.value) and "algebra X" in str(info.value)
    assert tree_hash(out) == before


@pytest.mark.parametrize("form", ["numpy", "sympy", "tuples"])
def test_correct_scheme_as_arrays_is_used(spec_dir, form):
    d, out = spec_dir
    wrap = {"numpy": "np.array({})", "sympy": "sympy.Matrix({})", "tuples": "tuple(map(tuple, {}))"}[form]
    U, V, W = ("[[1, 0], [0, 1], [1, 1]]", "[[1, 0], [0, 1], [1, 1]]", "[[1, -1], [-1, -1], [0, 1]]")  # Karatsuba
    scheme = f"dict(U={wrap.format(U)}, V={wrap.format(V)}, W={wrap.format(W)})"
    (d / "karatsuba.py").write_text("import numpy as np\nimport sympy\nfrom codegen.spec import algebra\n"
                                    f"K = algebra('K', {COMPLEX}, scheme={scheme})\n")
    build(d, out)
    manifest = json.loads((out / "K" / "manifest.json").read_text())
    assert manifest["scheme"]["rank"] == 3 and manifest["scheme"]["provenance"] == "given in spec"


def test_two_algebras_with_one_name_in_one_file(spec_dir):
    d, out = spec_dir
    (d / "twice.py").write_text(f"from codegen.spec import algebra\nFirst = algebra('Y', {COMPLEX})\n"
                                f"Second = algebra('Y', basis=['1', 'j'], products={{'j*j': '1'}}, unit='1')\n")
    with pytest.raises(SpecError) as info:
        build(d, out)
    message = str(info.value)
    assert "variable First" in message and "variable Second" in message and "'Y'" in message


@pytest.mark.parametrize("title", ["two\nlines", "carriage\rreturn", "nul\x00"])
def test_title_must_be_one_line(spec_dir, capsys, title):
    assert "one line" in build_refuses(spec_dir, capsys, f"algebra('X', {COMPLEX}, title={title!r})")


def test_zero_algebra_is_refused(spec_dir):
    d, out = spec_dir
    (d / "zero.py").write_text("from codegen.spec import algebra\nZ = algebra('Z', basis=['a'], products={'a*a': '0'})\n")
    with pytest.raises(SpecError, match="every product is zero"):
        build(d, out)


def test_basis_names_python_reads_differently(spec_dir):
    d, out = spec_dir
    (d / "nfkc.py").write_text("from codegen.spec import algebra\n"
                               "X = algebra('X', basis=['1', 'ℌ'], products={'ℌ*ℌ': '-1'}, unit='1')\n")
    with pytest.raises(SpecError, match="read by Python as 'H'"):
        build(d, out)


# ------------------------------------------------------------------------ the CLI: flags, pipes, progress, lookups
@pytest.mark.parametrize("flags, words", [(["--field", "0"], "needs a prime"), (["--field", "4"], "needs a prime"),
                                          (["--field", "x"], "expected a prime"),
                                          (["--budget", "0"], "positive finite"), (["--budget", "nan"], "positive"),
                                          (["--budget", "-3"], "positive"), (["--seed", "-1"], ">= 0")])
def test_search_flags_out_of_range(flags, words):
    proc = subprocess.run([sys.executable, "-m", "codegen", "search", "C", "--no-save", *flags],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_show_into_a_closed_pipe_is_quiet():
    proc = subprocess.run(f"{sys.executable} -m codegen show M4R | head -2", shell=True, capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.stdout.count("\n") == 2 and proc.stderr == "", proc.stderr


def test_failed_build_reports_nothing_as_built(spec_dir):
    """Algebras checked before the failing one are not announced: nothing was written."""
    d, out = spec_dir
    before = tree_hash(out)
    (d / "zz_bad.py").write_text('from codegen.spec import algebra\n'
                                 'Zz = algebra("Zz", basis=["1", "i"], products={"i*i": "10**50"}, unit="1")\n')
    proc = subprocess.run([sys.executable, "-m", "codegen", "build", "--spec-dir", str(d), "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout
    assert proc.stderr.strip().count("\n") == 0 and "too large" in proc.stderr
    assert tree_hash(out) == before


def test_build_progress_goes_to_stderr(spec_dir, monkeypatch):
    from codegen import build as build_module

    d, out = spec_dir
    monkeypatch.setattr(build_module.StageTimer, "QUIET", 0.0)
    monkeypatch.setattr(build_module.StageTimer, "SLOW", 0.0)
    lines = []
    build(d, out, progress=lines.append)
    assert any("SplitC (dim 2, 1 of" in line for line in lines)
    assert any(line.startswith("[") and "SplitC: scheme took" in line for line in lines)


def test_show_finds_the_specs_of_a_build_folder(spec_dir, monkeypatch):
    d, out = spec_dir
    ok = subprocess.run([sys.executable, "-m", "codegen", "show", "SplitC", "--out", str(out)], capture_output=True,
                        text=True, cwd=ROOT)
    assert ok.returncode == 0 and ok.stdout.startswith("SplitC:"), ok.stderr
    env = {**__import__("os").environ, "ALGEBRANETS_GENERATED": str(out)}
    ok = subprocess.run([sys.executable, "-m", "codegen", "show", "SplitC"], capture_output=True, text=True,
                        cwd=ROOT, env=env)
    assert ok.returncode == 0 and ok.stdout.startswith("SplitC:"), ok.stderr
    bad = subprocess.run([sys.executable, "-m", "codegen", "show", "Nope", "--out", str(out)], capture_output=True,
                         text=True, cwd=ROOT)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "--spec-dir" in bad.stderr and "SplitC" in bad.stderr and "(has: C," in bad.stderr
