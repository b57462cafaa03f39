"""Test support: run the generated CUDA sources on the CPU: compile them with a C++ compiler and a minimal host shim.

The arithmetic (`<N>_mul`, the scheme maps, the gradients) is `__host__ __device__`, and the kernels whose
threads never communicate (elementwise product and gradients, premap / postmap) run through the shim in
the common header (`ALGEBRANETS_HOST_SHIM`: a launch loops over every block and thread).  The gemv and
block-sparse kernels reduce across a warp, so the shim runs their per-lane code for every lane and sums
the lanes in order instead.  Used by the tests to check the generated code without a GPU:

    lib = HostLibrary.build([load_algebra(n) for n in names], folder)
    lib.call("H_mul_host", x_ptr, y_ptr, z_ptr)            # plain C ABI, every argument a 64-bit integer
    backend = HostBackend(lib)                              # same interface as the CUDA backends
"""
from __future__ import annotations

import ctypes
import subprocess
from pathlib import Path

from runtime.kernels.compiler import find_compiler
from runtime.registry import Algebra

DEFINE = "ALGEBRANETS_HOST_SHIM"
FLAGS = ("-std=c++17", "-fPIC", "-shared", "-ffp-contract=off", "-Wall", "-Wextra", "-Wno-unknown-pragmas")


def translation_unit(algebras: list[Algebra]) -> str:
    """One C++ file including every algebra's generated .cu with the host shim on."""
    lines = [f"#define {DEFINE} 1"]
    lines += [f'#include "{(a.path / f"{a.name}.cu").resolve().as_posix()}"' for a in algebras]
    return "\n".join(lines) + "\n"


class HostLibrary:
    """The generated code of some algebras as a shared library, called through ctypes."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.lib = ctypes.CDLL(str(self.path))
        self._fns: dict = {}

    @classmethod
    def build(cls, algebras: list[Algebra], folder: Path, *, cxx: str | None = None, opt: str = "-O0",
              extra: tuple[str, ...] = ()) -> "HostLibrary":
        cxx = cxx or find_compiler()
        if cxx is None:
            raise FileNotFoundError("no C++ compiler (set CXX or install g++)")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        src = folder / "algebranets_host.cpp"
        src.write_text(translation_unit(algebras))
        out = folder / "libalgebranets_host.so"
        cmd = [cxx, *FLAGS, opt, *extra, str(src), "-o", str(out)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-6000:]}")
        lib = cls(out)
        lib.warnings = res.stderr
        return lib

    def fn(self, name: str, nargs: int):
        """The exported function `name` taking `nargs` 64-bit integer / pointer arguments."""
        f = self._fns.get(name)
        if f is None:
            f = getattr(self.lib, name)
            f.argtypes = [ctypes.c_int64] * nargs
            f.restype = None
            self._fns[name] = f
        return f

    def call(self, name: str, *args) -> None:
        self.fn(name, len(args))(*[0 if a is None else int(a) for a in args])


class HostBackend:
    """A kernel backend running the host build: `function(...)` returns launch(grid, block, args).

    Kernels that run through the shim get (grid.x, block.x) like a CUDA launch; gemv / bsr run their
    host loops (every row, every lane) and check that the grid covers every output row.
    """

    name = "host"

    def __init__(self, lib: HostLibrary, kernel_kinds: dict[str, str] | None = None):
        self.lib = lib
        self.launches: list = []

    def function(self, source: str, group: str | None, name: str, device):
        def launch(grid, block, args):
            self.launches.append((name, tuple(grid), tuple(block), tuple(args)))
            if "_gemv_" in name or "_bsr_" in name:
                self.lib.call(f"{name}_host", *args)
            else:
                self.lib.call(f"{name}_host", grid[0], block[0], *args)

        return launch
