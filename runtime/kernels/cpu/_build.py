"""Compile the CPU kernels with the system C++ compiler and cache the shared libraries by content hash.

Two kinds of library, both built on first use and kept in the cache folder (never in site-packages):

* ``cpu/kernels/<Name>-<hash>.so``: an algebra's generated `<Name>_cpu.cpp` (plain C++, no torch headers), with
  -O3 -march=native.  The hash covers the source, the flags, the compiler's version and the target it
  resolves -march=native to, so a library is never used on a machine or compiler it was not built for and
  never rebuilt when nothing changed.
* ``cpu/glue/glue-<hash>.so``: runtime/kernels/cpu/glue.cpp, the torch ops (TORCH_LIBRARY) that thread the kernels with
  at::parallel_for; the hash also covers torch's version and headers.

Builds write a temporary file and rename it, so concurrent processes never see a partial library.

The compiler is runtime.kernels.compiler.find_compiler's.  The libraries go to the `cpu` folder of the user cache:
$ALGEBRANETS_CACHE, else $XDG_CACHE_HOME/algebranets, else ~/.cache/algebranets.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from codegen.contract.locations import CACHE_ENV, cache_root

ENV_CACHE = CACHE_ENV
KERNEL_FLAGS = ("-std=c++17", "-O3", "-march=native", "-ffp-contract=fast", "-fopenmp-simd", "-fPIC", "-shared")
GLUE_FLAGS = ("-std=c++20", "-O2", "-fPIC", "-shared", "-fopenmp")
GLUE_SOURCE = Path(__file__).resolve().parent / "glue.cpp"


class KernelBuildError(RuntimeError):
    """The C++ compiler is missing or failed.  str(e) is one line; `log` holds the compiler's output."""

    def __init__(self, message: str, log: str = ""):
        super().__init__(message)
        self.log = log


def cache_dir() -> Path:
    """Where the compiled libraries live: the `cpu` folder of the AlgebraNets user cache ($ALGEBRANETS_CACHE, or
    $XDG_CACHE_HOME/algebranets, or ~/.cache/algebranets; `codegen.contract.locations.cache_root`)."""
    return cache_root() / "cpu"


_identities: dict[tuple, str] = {}


def compiler_identity(cxx: str) -> str:
    """The compiler's version and what -march=native means to it here (part of every cache key)."""
    st = os.stat(cxx)
    key = (cxx, st.st_mtime_ns, st.st_size)
    hit = _identities.get(key)
    if hit is None:
        try:
            version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60).stdout
            target = subprocess.run([cxx, "-march=native", "-E", "-v", "-x", "c++", os.devnull, "-o", os.devnull],
                                    capture_output=True, text=True, timeout=60).stderr
        except (OSError, subprocess.SubprocessError) as e:
            raise KernelBuildError(f"cannot run the C++ compiler {cxx}: {e}") from e
        # the line that runs the compiler proper carries the resolved -march / -m flags
        lines = [ln for ln in target.splitlines() if "-march" in ln or "-mcpu" in ln or "target-cpu" in ln]
        hit = _identities[key] = version.strip() + "\n" + "\n".join(ln.split(os.devnull)[-1] for ln in lines)
    return hit


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()[:20]


def compile_library(cxx: str, source: Path, target: Path, flags: tuple[str, ...], extra: tuple[str, ...] = ()) -> Path:
    """Compile `source` into the shared library `target` (temporary file, then rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    cmd = [cxx, *flags, str(source), "-o", str(tmp), *extra]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.SubprocessError) as e:
        raise KernelBuildError(f"{' '.join(cmd)} could not run: {e}") from e
    if res.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise KernelBuildError(f"{Path(cxx).name} failed to compile {source.name} (exit {res.returncode})",
                               log=f"{' '.join(cmd)}\n{res.stderr[-6000:]}")
    os.replace(tmp, target)
    return target


def kernel_library(cxx: str, source: Path, name: str) -> Path:
    """The compiled kernels of one algebra's generated source (built now if not cached)."""
    data = source.read_bytes()
    key = _digest(data, " ".join(KERNEL_FLAGS), compiler_identity(cxx))
    target = cache_dir() / "kernels" / f"{name}-{key}.so"
    if not target.is_file():
        compile_library(cxx, source, target, KERNEL_FLAGS)
    return target


def glue_library(cxx: str) -> Path:
    """The compiled torch ops (built now if not cached for this torch, compiler and source)."""
    import torch
    from torch.utils import cpp_extension

    include = cpp_extension.include_paths()
    libdir = str(Path(torch.__file__).resolve().parent / "lib")
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    flags = GLUE_FLAGS + (f"-D_GLIBCXX_USE_CXX11_ABI={abi}",) + tuple(f"-I{p}" for p in include)
    link = (f"-L{libdir}", "-lc10", "-ltorch_cpu", "-ltorch", f"-Wl,-rpath,{libdir}")
    key = _digest(GLUE_SOURCE.read_bytes(), torch.__version__, " ".join(flags + link), compiler_identity(cxx))
    target = cache_dir() / "glue" / f"glue-{key}.so"
    if not target.is_file():
        compile_library(cxx, GLUE_SOURCE, target, flags, link)
    return target
