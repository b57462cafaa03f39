"""Launch the generated kernels of one algebra on CUDA tensors (no autograd here; see ops.py).

Each function takes contiguous, 16-byte-aligned CUDA tensors of a supported storage dtype (the callers in
ops.py arrange that) and returns new tensors.  Kernel names, tiles and groups come from the algebra's
generated `kernels.json`.
"""
from __future__ import annotations

import collections
import concurrent.futures
import json
import os
import threading

import torch

from ...registry import Algebra, load_algebra
from . import _backend

SUFFIX = {torch.float32: "f32", torch.float64: "f64", torch.float16: "f16", torch.bfloat16: "bf16"}
MAX_GRID_Y = 65535
_lock = threading.Lock()
_props: dict = {}


class KernelTable:
    """The generated kernels.json of an algebra plus its CUDA source."""

    def __init__(self, alg: Algebra):
        folder = alg.path
        path = folder / "kernels.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: rebuild with `python -m codegen build`")
        self.data = json.loads(path.read_text())
        self.source = (folder / self.data["source"]).read_text()
        self.names = {k["name"] for k in self.data["kernels"]}
        self.prefix = self.data.get("prefix", alg.name)      # the kernels' C name prefix (ASCII)
        self.tiles = list(self.data["tiles"])
        self.block = int(self.data["block"])
        self.warps = self.block // 32
        self.groups = dict(self.data["groups"])

    def has(self, name: str) -> bool:
        return name in self.names


def table(alg: Algebra) -> KernelTable:
    """The algebra's kernel table (cached on the Algebra: a plain dict lookup, fine inside torch.compile)."""
    t = alg.cache.kernel_table
    if t is None:
        with _lock:
            t = alg.cache.kernel_table
            if t is None:
                t = alg.cache.kernel_table = KernelTable(alg)
    return t


def sm_count(device: int) -> int:
    if device not in _props:
        _props[device] = torch.cuda.get_device_properties(device).multi_processor_count
    return _props[device]


#: launches per kernel name in this process (the GPU tests use it to check that kernels really ran)
launches: collections.Counter = collections.Counter()


def _fn(alg: Algebra, group: str, name: str, device: int):
    be = _backend.get_backend()
    if be is None:
        raise _backend.BackendUnavailable(_backend.backend_error() or "no CUDA kernel backend")
    launch = be.function(table(alg).source, group, name, device)

    def counted(grid, block, args):
        launches[name] += 1
        launch(grid, block, args)

    counted.occupancy = getattr(launch, "occupancy", None)
    return counted


def _resident_blocks(fn, block: int, device) -> int:
    """Blocks that run at once on the whole device (grid size of the persistent gemv kernels)."""
    occ = getattr(fn, "occupancy", None)
    per_sm = 4
    if occ is not None:
        try:
            per_sm = max(1, int(occ(block)))
        except Exception:  # pragma: no cover - attribute queries are best effort
            per_sm = 4
    return sm_count(device) * per_sm


def groups_for(alg: Algebra, dtypes=(torch.float32, torch.float16, torch.bfloat16), kinds=("ew", "mat")):
    """(group, one kernel name) pairs covering the kernels of these storage dtypes."""
    t = table(alg)
    out = []
    for dt in dtypes:
        s = SUFFIX[dt]
        if "ew" in kinds and s in t.data["elementwise_storage"]:
            out.append((f"ew_{s}", f"{t.prefix}_mul_fwd_{s}"))
        if "mat" in kinds and s in t.data["matrix_storage"]:
            out.append((f"mat_{s}", f"{t.prefix}_gemv_{s}_b{t.tiles[0]}"))
    return out


def warmup(algebras, device: int | None = None, dtypes=(torch.float32, torch.float16, torch.bfloat16),
           kinds=("ew", "mat"), workers: int | None = None) -> int:
    """Compile (in parallel) the kernel groups these algebras need; returns how many modules were prepared."""
    be = _backend.get_backend()
    if be is None:
        raise _backend.BackendUnavailable(_backend.backend_error() or "no CUDA kernel backend")
    dev = torch.cuda.current_device() if device is None else device
    algebras = [load_algebra(a) for a in algebras]
    jobs = [(alg, g, n) for alg in algebras for g, n in groups_for(alg, dtypes, kinds)]
    workers = workers or max(1, min(len(jobs), os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda j: be.function(table(j[0]).source, j[1], j[2], dev), jobs))
    return len(jobs)


def _ptr(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.data_ptr()


def _grid_1d(n: int, block: int, device: int) -> int:
    return max(1, min((n + block - 1) // block, sm_count(device) * 16))


def supports(alg: Algebra, kind: str, dtype: torch.dtype) -> bool:
    """Whether kernels of this kind exist for the storage dtype."""
    s = SUFFIX.get(dtype)
    if s is None:
        return False
    t = table(alg)
    key = {"mul": "elementwise_storage", "map": "map_storage", "gemv": "matrix_storage",
           "bsr": "matrix_storage"}[kind]
    return s in t.data[key]


def mul_fwd(alg: Algebra, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    s, d = SUFFIX[x.dtype], alg.dim
    z = torch.empty_like(x)
    n = x.numel() // d
    if n:
        t = table(alg)
        dev = x.device.index
        _fn(alg, f"ew_{s}", f"{t.prefix}_mul_fwd_{s}", dev)((_grid_1d(n, t.block, dev), 1, 1), (t.block, 1, 1),
                                                             (x.data_ptr(), y.data_ptr(), z.data_ptr(), n))
    return z


def mul_bwd(alg: Algebra, x: torch.Tensor, y: torch.Tensor, g: torch.Tensor):
    s, d = SUFFIX[x.dtype], alg.dim
    gx, gy = torch.empty_like(x), torch.empty_like(y)
    n = x.numel() // d
    if n:
        t = table(alg)
        dev = x.device.index
        _fn(alg, f"ew_{s}", f"{t.prefix}_mul_bwd_{s}", dev)(
            (_grid_1d(n, t.block, dev), 1, 1), (t.block, 1, 1),
            (x.data_ptr(), y.data_ptr(), g.data_ptr(), gx.data_ptr(), gy.data_ptr(), n))
    return gx, gy


def premap(alg: Algebra, which: str, x: torch.Tensor) -> torch.Tensor:
    s, d, r = SUFFIX[x.dtype], alg.dim, alg.rank
    out = torch.empty((r,) + tuple(x.shape[:-1]), dtype=x.dtype, device=x.device)
    n = x.numel() // d
    if n:
        t = table(alg)
        dev = x.device.index
        _fn(alg, f"ew_{s}", f"{t.prefix}_premap_{which}_{s}", dev)(
            (_grid_1d(n, t.block, dev), 1, 1), (t.block, 1, 1), (x.data_ptr(), out.data_ptr(), n))
    return out


def postmap(alg: Algebra, which: str, m: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    s, d = SUFFIX[m.dtype], alg.dim
    z = torch.empty(tuple(m.shape[1:]) + (d,), dtype=m.dtype, device=m.device)
    n = z.numel() // d
    if n:
        t = table(alg)
        dev = m.device.index
        nbias = bias.shape[0] if bias is not None else 1
        _fn(alg, f"ew_{s}", f"{t.prefix}_postmap_{which}_{s}", dev)(
            (_grid_1d(n, t.block, dev), 1, 1), (t.block, 1, 1), (m.data_ptr(), _ptr(bias), z.data_ptr(), n, nbias))
    return z


def pick_tile(alg: Algebra, batch: int) -> int:
    tiles = table(alg).tiles
    for b in tiles:
        if b >= batch:
            return b
    return tiles[-1]


def pick_splits(alg: Algebra, out: int, inn: int, device: int) -> int:
    """Warps per output row: enough warps in flight to saturate memory, each with >= 2 groups per lane."""
    t = table(alg)
    target = sm_count(device) * 32
    splits = 1
    while splits < t.warps and out * splits < target and inn >= 64 * splits * 2:
        splits *= 2
    return splits


def gemv(alg: Algebra, w: torch.Tensor, x: torch.Tensor, bias: torch.Tensor | None, *,
         tile: int | None = None, splits: int | None = None) -> torch.Tensor:
    s, d = SUFFIX[w.dtype], alg.dim
    out, inn, _ = w.shape
    batch = x.shape[0]
    y = torch.empty(batch, out, d, dtype=w.dtype, device=w.device)
    if batch == 0 or out == 0:
        return y
    if inn == 0:
        return y.zero_() if bias is None else y.copy_(bias.expand_as(y))
    t = table(alg)
    dev = w.device.index
    b = tile or pick_tile(alg, batch)
    k = splits or pick_splits(alg, out, inn, dev)
    rows = t.warps // k
    fn = _fn(alg, f"mat_{s}", f"{t.prefix}_gemv_{s}_b{b}", dev)
    row_groups = (out + rows - 1) // rows
    gx = min(row_groups, _resident_blocks(fn, t.block, dev))
    chunk = MAX_GRID_Y * b
    for start in range(0, batch, chunk):
        nb = min(chunk, batch - start)
        grid = (gx, (nb + b - 1) // b, 1)
        fn(grid, (t.block, 1, 1), (w.data_ptr(), x[start].data_ptr(), _ptr(bias), y[start].data_ptr(), out, inn, nb, k))
    return y


def bsr(alg: Algebra, crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, x: torch.Tensor,
        bias: torch.Tensor | None, *, tile: int | None = None) -> torch.Tensor:
    s, d = SUFFIX[values.dtype], alg.dim
    out = crow.numel() - 1
    batch, inn = x.shape[0], x.shape[1]
    y = torch.empty(batch, out, d, dtype=values.dtype, device=values.device)
    if batch == 0 or out == 0:
        return y
    t = table(alg)
    dev = values.device.index
    b = tile or pick_tile(alg, batch)
    fn = _fn(alg, f"mat_{s}", f"{t.prefix}_bsr_{s}_b{b}", dev)
    chunk = MAX_GRID_Y * b                      # batch rows per launch (grid.y is limited)
    for start in range(0, batch, chunk):
        nb = min(chunk, batch - start)
        grid = ((out + t.warps - 1) // t.warps, (nb + b - 1) // b, 1)
        fn(grid, (t.block, 1, 1),
           (crow.data_ptr(), col.data_ptr(), values.data_ptr(), x[start].data_ptr(), _ptr(bias), y[start].data_ptr(),
            out, inn, nb))
    return y
