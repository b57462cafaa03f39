"""examples.study: one result file per run, resumable, mean ± std and paired differences over seeds."""
from __future__ import annotations

import csv
import json
import statistics

import pytest

from examples import study

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--algebras", "R,C", "--seeds", "0,1", "--digits-epochs", "1", "--lm-steps", "3", "--digits-widths", "4",
        "--text-widths", "8", "--jobs", "1"]


def test_study_runs_resumes_and_summarises(tmp_path, capsys):
    out = tmp_path / "study"
    summary = study.main(TINY + ["--out", str(out)])
    files = sorted(p.name for p in (out / "runs").glob("*.json"))
    assert files == sorted(f"{t}-{a}-w{w}-s{s}.json" for t, w in (("digits", 4), ("text", 8))
                           for a in ("R", "C") for s in (0, 1))
    runs = [json.loads((out / "runs" / f).read_text()) for f in files]
    for s in summary:                                   # mean, sample std and paired difference, recomputed
        vals = {r["seed"]: r["value"] for r in runs if (r["task"], r["algebra"]) == (s["task"], s["algebra"])}
        base = {r["seed"]: r["value"] for r in runs if (r["task"], r["algebra"]) == (s["task"], "R")}
        assert s["mean"] == pytest.approx(statistics.fmean(vals.values()))
        assert s["std"] == pytest.approx(statistics.stdev(vals.values()))
        assert s["diff_vs_R"] == pytest.approx(statistics.fmean(vals[k] - base[k] for k in vals))
    c_digits = next(r for r in runs if r["task"] == "digits" and r["algebra"] == "C")
    assert c_digits["dim"] == 2 and 0 <= c_digits["value"] <= 1 and c_digits["width"] >= 1
    with open(out / "runs.csv") as f:
        assert len(list(csv.DictReader(f))) == 8
    assert "± " in (out / "summary.md").read_text() and (out / "study.png").stat().st_size > 10_000

    (out / "runs" / files[0]).unlink()                  # interrupted: only the missing run is redone
    capsys.readouterr()
    study.main(TINY + ["--out", str(out)])
    assert "7 runs done, 1 to go" in capsys.readouterr().out
    with pytest.raises(ValueError, match="budget"):
        study.main(TINY[:-2] + ["--lm-steps", "4", "--out", str(out)])
