"""examples.pareto: both phases on a tiny corpus and tiny sizes; files, resumability, refusal of a mixed budget,
the CSV columns with finite values, and the Pareto marking against a brute-force check."""
from __future__ import annotations

import csv
import json
import math

import pytest

from examples import pareto, pareto_learned, pareto_report
from examples.training.stdlib_text import stdlib_corpus

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--tiny", "--algebras", "R,C,H,PHM4", "--sizes", "8,16", "--seeds", "0,1", "--jobs", "1"]


def row_bits(out, key: str) -> float:
    return json.loads((out / "runs" / f"{key}.json").read_text())["bits_per_char"]


def test_pareto_both_phases_resume_and_refuse(tmp_path, capsys):
    out = tmp_path / "p"
    summary = pareto.main(TINY + ["--out", str(out)])
    keys = [f"{a}-{s}-s0" for a in ("R", "C", "H", "PHM4") for s in (8, 16)] + [f"{a}-16-s1" for a in ("R", "C", "H", "PHM4")]
    for sub, ext in (("runs", "json"), ("speed", "json"), ("checkpoints", "pt")):
        assert sorted(p.stem for p in (out / sub).glob(f"*.{ext}")) == sorted(keys), sub
    assert not list(out.rglob("*.tmp"))
    with open(out / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(keys) and set(pareto_report.RUN_COLUMNS) <= set(rows[0])
    for r in rows:
        for col in pareto_report.RUN_COLUMNS:
            if col not in ("algebra", "size", "python", "corpus_sha256", "rss_method"):
                assert math.isfinite(float(r[col])), (r["algebra"], r["size"], col)
        assert float(r["tokens_per_s_b1"]) > 0 and float(r["bits_per_char"]) > 0
    c = next(r for r in rows if r["algebra"] == "C" and r["size"] == "16")
    assert int(c["dim"]) == 2 and int(c["params"]) > 0 and int(c["macs_naive"]) >= int(c["macs_scheme"]) > 0
    assert all(r["ratio_b1"] == "1.0" for r in rows if r["algebra"] == "R")
    corpus = stdlib_corpus(pareto.TINY["train_bytes"], pareto.TINY["val_bytes"])
    assert {r["corpus_sha256"] for r in rows} == {corpus.sha256}
    # summary: the middle size has both seeds (mean ± std), Pareto marks agree with a brute-force check
    medium = [s for s in summary if s["size"] == "16"]
    assert all(s["seeds"] == 2 and math.isfinite(s["bits_per_char_std"]) for s in medium)
    for s in summary:
        dominated = any(t["bits_per_char"] <= s["bits_per_char"] and t["tokens_per_s_b1"] >= s["tokens_per_s_b1"]
                        and (t["bits_per_char"], t["tokens_per_s_b1"]) != (s["bits_per_char"], s["tokens_per_s_b1"])
                        for t in summary)
        assert s["pareto"] == (not dominated)
    assert "★" in (out / "summary.md").read_text()
    for png in ("pareto_speed.png", "pareto_size.png"):
        assert (out / png).stat().st_size > 10_000

    capsys.readouterr()                                  # a second call trains and measures nothing
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.json")}
    pareto.main(TINY + ["--out", str(out)])
    text = capsys.readouterr().out
    assert "12 trained, 0 to train" in text and "12 measured, 0 to measure" in text
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.json")} == before

    # the learned algebra's layers against the built algebras of dimension 4, and the loss after rounding to them
    learned = pareto_learned.main(["--out", str(out), "--steps", "5", "--restarts", "2"])
    assert [r["key"] for r in learned] == ["PHM4-16-s0", "PHM4-16-s1", "PHM4-8-s0"]
    for r in learned:
        assert sum(r["nearest_counts"].values()) == r["layers"] > 0
        assert {"H", "M2R", "RandH"} <= set(r["distance"])
        assert all(math.isfinite(r[k]) for k in ("bits_trained", "bits_nearest", "bits_H", "bits_M2R"))
    assert row_bits(out, "PHM4-8-s0") == pytest.approx(learned[2]["bits_trained"], abs=1e-6)
    assert "PHM4-8-s0" in (out / "learned.md").read_text()

    (out / "speed" / "H-8-s0.json").unlink()             # interrupted in phase 2: only that one is measured
    pareto.main(TINY + ["--out", str(out), "--phase", "measure"])
    assert "11 measured, 1 to measure" in capsys.readouterr().out

    with pytest.raises(pareto.UserError, match="another corpus or budget"):   # mixed budget refused up front
        pareto.main(TINY + ["--out", str(out), "--tokens", "4096"])
    row = json.loads((out / "runs" / "R-8-s0.json").read_text())
    row["budget"]["corpus_sha256"] = "0" * 64            # a run made on another Python's standard library
    (out / "runs" / "R-8-s0.json").write_text(json.dumps(row))
    with pytest.raises(pareto.UserError, match="corpus_sha256"):
        pareto.main(TINY + ["--out", str(out)])


def test_pareto_refuses_unknown_algebra_and_missing_R(tmp_path):
    with pytest.raises(pareto.UserError, match="'Nope' is not available"):
        pareto.main(["--tiny", "--algebras", "R,Nope", "--out", str(tmp_path / "a")])
    with pytest.raises(pareto.UserError, match="must include R"):
        pareto.main(["--tiny", "--algebras", "C,H", "--out", str(tmp_path / "b")])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_pareto_optimal_marks_non_dominated_points():
    pts = [dict(bits_per_char=2.0, tokens_per_s_b1=100.0), dict(bits_per_char=1.5, tokens_per_s_b1=50.0),
           dict(bits_per_char=2.5, tokens_per_s_b1=90.0), dict(bits_per_char=1.5, tokens_per_s_b1=50.0)]
    assert pareto_report.pareto_optimal(pts) == [True, True, False, True]
