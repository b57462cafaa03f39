"""The example scripts' command lines: every numeric flag refuses out-of-range values before any work, a user's
mistake is one "error: ..." line with exit code 2 (as from `python -m codegen`), a run folder that already holds a
run is never overwritten silently (--resume continues it, --overwrite replaces it), and a refused run leaves no
file behind."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from examples import compare, imagenet, lm, pareto, study, train_resnet
from examples.training.cli import RUN_FILES, UserError
from examples.training.cli import run as run_cli

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def byte_file(tmp_path_factory) -> Path:
    rng = np.random.default_rng(3)
    path = tmp_path_factory.mktemp("enwik") / "enwik8"
    path.write_bytes(bytes(rng.integers(97, 123, 40_000, dtype=np.uint8)))
    return path


def lm_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--dataset", "enwik8", "--data", str(data), "--out", str(out), "--d-model", "8", "--n-layers", "1",
            "--n-heads", "2", "--seq-len", "16", "--steps", "2", "--batch-size", "2", "--warmup-steps", "1",
            "--log-every", "1", "--workers", "0", "--no-progress", "--sample-tokens", "0", *extra]


TRAINING_FLAGS = [("--steps", "0"), ("--steps", "-3"), ("--epochs", "0"), ("--batch-size", "0"), ("--lr", "0"),
                  ("--lr", "nan"), ("--lr", "inf"), ("--momentum", "1"), ("--weight-decay", "-1"),
                  ("--warmup-steps", "-1"), ("--clip", "0"), ("--label-smoothing", "1"), ("--prune", "1.5"),
                  ("--prune-start", "-0.1"), ("--prune-end", "2"), ("--prune-every", "0"), ("--log-every", "0"),
                  ("--eval-every", "0"), ("--ckpt-every", "0"), ("--eval-batch-size", "0"), ("--seed", "-1"),
                  ("--workers", "-1"), ("--threads", "0"), ("--stop-at", "0"), ("--steps", "x")]
LM_FLAGS = [("--d-model", "0"), ("--n-heads", "0"), ("--seq-len", "0"), ("--dropout", "1"), ("--top-k", "0"),
            ("--sample-tokens", "-1"), ("--temperature", "-1"), ("--n-layers", "0")]
IMAGENET_FLAGS = [("--base-width", "0"), ("--image-size", "0")]


@pytest.mark.parametrize("script, flag, value", [("lm", f, v) for f, v in TRAINING_FLAGS + LM_FLAGS]
                         + [("imagenet", f, v) for f, v in TRAINING_FLAGS[:6] + IMAGENET_FLAGS])
def test_training_flags_out_of_range(script, flag, value, tmp_path, capsys):
    out = tmp_path / "run"
    argv = (lm_args(tmp_path / "data", out) if script == "lm"
            else ["--data", str(tmp_path / "data"), "--out", str(out)])
    module = lm if script == "lm" else imagenet
    with pytest.raises(SystemExit) as info:
        module.main([*argv, f"{flag}={value}"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: expected" in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("module, argv", [
    (compare, ["--epochs", "0"]), (compare, ["--threads", "0"]), (compare, ["--seed", "-2"]),
    (compare, ["--algebras", ","]),
    (study, ["--jobs", "0"]), (study, ["--lm-steps", "0"]), (study, ["--digits-epochs", "-1"]),
    (study, ["--seeds", "a,b"]), (study, ["--digits-widths", "0,4"]), (study, ["--tasks", ""]),
    (pareto, ["--jobs", "0"]), (pareto, ["--tokens", "0"]), (pareto, ["--seeds", "a"]), (pareto, ["--phase", "x"]),
    (train_resnet, ["--steps", "0"]), (train_resnet, ["--sparsity", "1"]), (train_resnet, ["--seed", "-1"]),
])
def test_other_scripts_flags_out_of_range(module, argv, capsys):
    with pytest.raises(SystemExit) as info:
        module.main(argv)
    assert info.value.code == 2 and "error: argument" in capsys.readouterr().err


def test_user_errors_are_one_line(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    cases = [(lm.main, lm_args(empty, tmp_path / "a"), "holds 0 bytes"),
             (lm.main, lm_args(tmp_path / "missing", tmp_path / "b"), "No such file"),
             (imagenet.main, ["--data", str(tmp_path), "--out", str(tmp_path / "c")], "has no train/ folder"),
             (study.main, ["--tasks", "nope", "--out", str(tmp_path / "d")], "unknown task"),
             (pareto.main, ["--algebras", "R,Nope", "--out", str(tmp_path / "f")], "'Nope' is not available"),
             (pareto.main, ["--sizes", "huge", "--out", str(tmp_path / "g")], "unknown size"),
             (lm.main, lm_args(empty, tmp_path / "e", "--algebra", "Nope"), "not built")]
    for main, argv, words in cases:
        assert run_cli(main, argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and words in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.txt"]        # nothing written


def test_scripts_exit_with_one_line_from_the_shell(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "examples.imagenet", "--data", str(tmp_path), "--out",
                           str(tmp_path / "run"), "--steps", "0"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "--steps: expected an integer >= 1" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "examples.imagenet", "--data", str(tmp_path), "--out",
                           str(tmp_path / "run")], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_run_folder_is_never_overwritten_silently(byte_file, tmp_path):
    out = tmp_path / "run"
    lm.main(lm_args(byte_file, out))
    before = {f: (out / f).read_bytes() for f in RUN_FILES if (out / f).is_file()}
    assert {"checkpoint.pt", "log.csv", "summary.json", "config.json"} <= set(before)
    with pytest.raises(UserError, match="already holds a run .*--resume.*--overwrite"):
        lm.main(lm_args(byte_file, out, "--seed", "1"))
    assert {f: (out / f).read_bytes() for f in before} == before               # untouched
    with pytest.raises(ValueError, match="nothing to resume"):                 # --resume continues (here: done)
        lm.main(lm_args(byte_file, out, "--resume"))
    lm.main(lm_args(byte_file, out, "--seed", "1", "--overwrite"))
    assert (out / "log.csv").read_bytes() != before["log.csv"]
    assert '"seed": 1' in (out / "config.json").read_text()


def test_compare_refuses_to_overwrite_results(tmp_path):
    (tmp_path / "results.csv").write_text("old")
    with pytest.raises(UserError, match="already holds"):
        compare.main(["--out", str(tmp_path), "--algebras", "R", "--quick"])
    assert (tmp_path / "results.csv").read_text() == "old"
