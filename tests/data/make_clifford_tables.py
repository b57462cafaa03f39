"""Write clifford_kingdon.json: Clifford multiplication tables computed by the `kingdon` package (PyPI), the
independent reference for `codegen.spec.clifford`'s basis order and signs.

    python -m venv /tmp/k && /tmp/k/bin/pip install kingdon==3.0.0 && /tmp/k/bin/python tests/data/make_clifford_tables.py

Not run by the tests (they read the JSON); kept so the data can be regenerated and reviewed.
"""
import json
from importlib.metadata import version
from pathlib import Path

from kingdon import Algebra

CASES = [  # (signature in generator order, start_index)
    ([1, 1], 1), ([1, -1], 1), ([-1, -1], 1), ([1, 1, 1], 1), ([-1, -1, -1], 1), ([1, 1, 1, -1], 1),
    ([1, -1, -1, -1], 1), ([1, 1, 1, 0], 1), ([0, 1, 1, 1], 0),
]


def table(signature, start):
    alg = Algebra(signature=signature, start_index=start)
    names = list(alg.canon2bin)                       # the canonical order: by grade, then lexicographic
    index = {alg.canon2bin[n]: t for t, n in enumerate(names)}
    blades = [alg.blades[n] for n in names]
    products = []
    for i, a in enumerate(blades):
        for j, b in enumerate(blades):
            c = a * b
            for key, value in zip(c.keys(), c.values()):
                if value != 0:
                    products.append([i, j, index[key], int(value)])
    return {"signature": signature, "start_index": start, "basis": ["1" if n == "e" else n for n in names],
            "products": products}


out = {"provenance": f"computed with kingdon {version('kingdon')} (PyPI) by tests/data/make_clifford_tables.py",
       "tables": [table(s, k) for s, k in CASES]}
Path(__file__).with_name("clifford_kingdon.json").write_text(json.dumps(out, separators=(",", ":")) + "\n")
