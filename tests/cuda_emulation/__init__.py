"""CPU emulation of the generated CUDA kernels, for the tests (no GPU needed).

A generated ``<Name>.cu`` is compiled unchanged with g++ and ``cuda_emu.h`` force-included (``-include``),
which supplies the CUDA execution model: blocks run one after another, the threads of a block are fibers
that synchronise at ``__syncthreads`` and at warp shuffles exactly where the device would, and malformed
warp operations (a lane outside the mask, a mask that is not the warp's live lanes), barriers after some
threads returned, deadlocks and misaligned global accesses are errors (`EmulationError`).  One shared
library per source, cached under the temporary folder (or $ALGEBRANETS_EMU_CACHE) by the hash of its inputs:

    lib = EmuLibrary.build(source_text)                 # every extern "C" __global__ kernel of the source
    lib.launch("H_gemv_f32_b4", grid=(2, 1, 1), block=(256, 1, 1), args=(w_ptr, x_ptr, 0, y_ptr, 5, 7, 3, 1))
    backend = EmuBackend()                              # runtime.kernels.cuda's backend interface: function(...)

`EmuBackend` plugs into `runtime.kernels.cuda._launch` in place of the CuPy / NVRTC backends, so the launch glue
(grids, tiles, splits, argument order) is the one the GPU runs.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import subprocess
import tempfile
import threading
from pathlib import Path

from .host import find_compiler

HEADER = Path(__file__).with_name("cuda_emu.h")
# hidden symbols and no GNU-unique objects: every library keeps its own emulator state and __shared__ arrays
# (several builds of one algebra, e.g. the mutants of the tests, load side by side)
FLAGS = ("-std=c++17", "-fPIC", "-shared", "-O1", "-ffp-contract=off", "-fvisibility=hidden", "-fno-gnu-unique",
         "-Wall", "-Wextra", "-Werror", "-Wno-unknown-pragmas")
KERNEL_RE = re.compile(r'extern "C" __global__ void (?:__launch_bounds__\(\d+\) )?(\w+)\(')
GROUP_RE = re.compile(r"_(?:(?P<ew>mul_fwd|mul_bwd|premap_[UVW]|postmap_[UVW])_(?P<es>f32|f64|f16|bf16)"
                      r"|(?:gemv|bsr)_(?P<ms>f32|f16|bf16)_b\d+)$")
ORDERS = {"forward": 0, "reverse": 1, "shuffle": 2, "warps-ahead": 3}
_lock = threading.Lock()


class EmulationError(RuntimeError):
    """A kernel did something the device would not do reliably (see cuda_emu.h), or the launch was invalid."""


def cache_root() -> Path:
    """Where built libraries are cached: $ALGEBRANETS_EMU_CACHE, else <tmp>/algebranets-cuda-emu."""
    return Path(os.environ.get("ALGEBRANETS_EMU_CACHE", Path(tempfile.gettempdir()) / "algebranets-cuda-emu"))


def group_of(name: str) -> str:
    """The runtime's kernel group of a kernel name: "ew_f32", "mat_bf16", ..."""
    m = GROUP_RE.search(name)
    if m is None:
        raise ValueError(f"not a generated kernel name: {name!r}")
    return f"ew_{m['es']}" if m["ew"] else f"mat_{m['ms']}"


def kernel_names(source: str, group: str | None = None) -> list[str]:
    """The extern "C" __global__ kernels a source defines (those of one group when `group` is given)."""
    names = KERNEL_RE.findall(source)
    return names if group is None else [n for n in names if group_of(n) == group]


def select_defines(group: str | None) -> tuple[str, ...]:
    """The -D options compiling one kernel group (the runtime's ALGEBRANETS_SELECT scheme; None: all)."""
    return () if group is None else ("-DALGEBRANETS_SELECT", f"-DALGEBRANETS_SELECT_{group.upper()}")


def wrapper(cu_file: str, names: list[str]) -> str:
    """The translation unit: the source itself plus one C entry point `<kernel>_emu(cfg, args)` per kernel."""
    lines = [f'#include "{cu_file}"', 'extern "C" {']
    lines += [f"__attribute__((visibility(\"default\"))) int {n}_emu(const long long* cfg, const long long* args) "
              f"{{ return ::an_emu::run_kernel({n}, cfg, args); }}" for n in names]
    return "\n".join(lines + ["}"]) + "\n"


def shared_variables(so: Path) -> dict[str, list[int]]:
    """Mangled name -> [address relative to an_emu_error, bytes] of every function-local static object of a
    library outside the standard library and the emulator (nm: `_ZZ...` symbols, local ones included; in
    the generated code these are exactly the __shared__ arrays)."""
    res = subprocess.run(["nm", "-S", "--defined-only", str(so)], capture_output=True, text=True, check=True)
    rows = [line.split() for line in res.stdout.splitlines()]
    anchor = next(int(r[0], 16) for r in rows if r[-1] == "an_emu_error")
    out = {}
    for r in rows:
        if (len(r) == 4 and r[3].startswith("_ZZ") and r[2] in "uUbBdDvV"
                and not r[3].startswith(("_ZZNSt", "_ZZSt", "_ZZNKSt", "_ZZN9__gnu_cxx", "_ZZN6an_emu"))):
            out[r[3]] = [int(r[0], 16) - anchor, int(r[1], 16)]
    return out


class EmuLibrary:
    """One generated source compiled for the emulation, its kernels launched through ctypes."""

    def __init__(self, path: Path, names: list[str]):
        self.path = path
        self.names = set(names)
        self.lib = ctypes.CDLL(str(path))
        self.lib.an_emu_add_shared.argtypes = [ctypes.c_void_p, ctypes.c_longlong]
        self.shared = json.loads(path.with_suffix(".shared.json").read_text())
        anchor = ctypes.cast(self.lib.an_emu_error, ctypes.c_void_p).value
        for offset, size in self.shared.values():
            self.lib.an_emu_add_shared(anchor + offset, size)
        self.lib.an_emu_error.restype = ctypes.c_char_p
        self.lib.an_emu_counter.restype = ctypes.c_longlong
        self.lib.an_emu_counter.argtypes = [ctypes.c_int]
        self._fns: dict = {}

    @classmethod
    def build(cls, source: str, *, group: str | None = None, cxx: str | None = None,
              folder: Path | None = None) -> "EmuLibrary":
        """Compile (or reuse the cached build of) `source` with the emulation header: every kernel, or the
        kernels of one group ("ew_f32", "mat_bf16", ...) compiled on their own as the runtime does."""
        cxx = cxx or find_compiler()
        if cxx is None:
            raise FileNotFoundError("no C++ compiler (set CXX or install g++) for the CUDA emulation")
        names = kernel_names(source, group)
        defines = select_defines(group)
        tools = HEADER.read_text() + Path(__file__).read_text()      # the emulator's version is part of the key
        key = hashlib.sha256("\0".join([source, tools, cxx, *FLAGS, *defines]).encode()).hexdigest()[:20]
        folder = Path(folder or cache_root()) / key
        so = folder / "libkernels_emu.so"
        with _lock:                                  # one build per key per process; others reuse it
            if not so.is_file():
                folder.mkdir(parents=True, exist_ok=True)
                (folder / "kernels.cu").write_text(source)
                (folder / "emu.cpp").write_text(wrapper("kernels.cu", names))
                tmp = folder / f"libkernels_emu.{os.getpid()}.{threading.get_ident()}.so"
                cmd = [cxx, *FLAGS, *defines, "-include", str(HEADER), "emu.cpp", "-o", str(tmp)]
                res = subprocess.run(cmd, capture_output=True, text=True, cwd=folder)
                if res.returncode != 0:
                    raise RuntimeError(f"{' '.join(cmd)} failed (in {folder}):\n{res.stderr[-6000:]}")
                shared = shared_variables(tmp)
                if "__shared__" in source and not shared and any("_gemv_" in n for n in names):
                    raise RuntimeError(f"{tmp}: no __shared__ variable found among its symbols")
                so.with_suffix(".shared.json").write_text(json.dumps(shared))
                os.replace(tmp, so)                  # atomic: concurrent sessions never see half a file
        return cls(so, names)

    def _fn(self, name: str):
        f = self._fns.get(name)
        if f is None:
            if name not in self.names:
                raise KeyError(f"no kernel {name!r} in {self.path}")
            f = getattr(self.lib, f"{name}_emu")
            f.argtypes = [ctypes.POINTER(ctypes.c_longlong), ctypes.POINTER(ctypes.c_longlong)]
            f.restype = ctypes.c_int
            self._fns[name] = f
        return f

    def launch(self, name: str, grid, block, args, *, order: str = "forward", seed: int = 0) -> None:
        """Run kernel `name` on (grid, block); args are pointers / integers as 64-bit values (None: null)."""
        cfg = (ctypes.c_longlong * 8)(*[int(v) for v in (*tuple(grid) + (1,) * (3 - len(grid)),
                                                          *tuple(block) + (1,) * (3 - len(block)))],
                                      ORDERS[order], seed)
        vals = [0 if a is None else int(a) for a in args]
        arr = (ctypes.c_longlong * max(1, len(vals)))(*vals)
        if self._fn(name)(cfg, arr) != 0:
            raise EmulationError(f"{name} grid={tuple(grid)} block={tuple(block)}: "
                                 f"{self.lib.an_emu_error().decode(errors='replace')}")

    def counters(self) -> dict[str, int]:
        """Warp operations, barriers and fiber switches so far (for tests that a reduction really ran)."""
        return {k: int(self.lib.an_emu_counter(i)) for i, k in enumerate(("warp_ops", "barriers", "switches"))}


class EmuBackend:
    """A runtime.kernels.cuda kernel backend that runs launches in the emulation (same interface as CupyBackend).

    `occupancy` is the resident blocks per SM the launch glue asks for (with its `sm_count`, the persistent
    gemv grid); `order` the thread scheduling order (a key of ORDERS, or "mixed": each launch the next one).
    """

    name = "emulation"

    def __init__(self, *, occupancy: int = 1, order: str = "forward", seed: int = 0,
                 libraries: dict[str, EmuLibrary] | None = None):
        self.occupancy_blocks = occupancy
        self.order = order
        self.seed = seed
        self.libraries: dict[str, EmuLibrary] = dict(libraries or {})
        self.launches: list = []

    def library(self, source: str) -> EmuLibrary:
        key = hashlib.sha256(source.encode()).hexdigest()
        lib = self.libraries.get(key)
        if lib is None:
            lib = self.libraries[key] = EmuLibrary.build(source)
        return lib

    def function(self, source: str, group: str | None, name: str, device):
        lib = self.library(source)

        def launch(grid, block, args):
            self.launches.append((name, tuple(grid), tuple(block), tuple(args)))
            k = len(self.launches)
            order = list(ORDERS)[k % len(ORDERS)] if self.order == "mixed" else self.order
            lib.launch(name, grid, block, args, order=order, seed=self.seed + k)

        launch.occupancy = lambda block: self.occupancy_blocks
        return launch
