"""Compile the CPU kernels with the system C++ compiler and cache the shared libraries by content hash.

Two kinds of library, both built on first use and kept in the cache folder (never in site-packages):

* ``cpu/kernels/<Name>-<hash>.so``: an algebra's generated `<Name>_cpu.cpp` (plain C++, no torch headers), with
  -O3 -march=native.  The hash covers the source, the flags, the compiler's version and the target it
  resolves -march=native to, so a library is never used on a machine or compiler it was not built for and
  never rebuilt when nothing changed.
* ``cpu/glue/glue-<hash>.so``: runtime/kernels/cpu/glue.cpp, the torch ops (TORCH_LIBRARY) that thread the kernels with
  at::parallel_for; the hash also covers torch's version and headers.

Builds write a temporary file and rename it, so concurrent processes never see a partial library.

The compiler is runtime.kernels.compiler.find_compiler's.  ALGEBRANETS_CPU_MARCH names the target the kernels are
built for instead of the machine's own (-march=<name>, e.g. x86-64-v3 for AVX2 + FMA on an AVX-512 machine;
part of the cache key); a target this CPU cannot run is refused (KernelBuildError).  Every compile is announced
first in one line on the `runtime.kernels.cpu` logger (WARNING: stderr by default).  ALGEBRANETS_CPU_MAX_TERMS (default
MAX_TERMS) bounds what first use compiles, by nonzero structure constants; `python -m runtime.kernels.cpu compile`
compiles any size.  The libraries go to the `cpu` folder of the user cache:
$ALGEBRANETS_CACHE, else $XDG_CACHE_HOME/algebranets, else ~/.cache/algebranets.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
from pathlib import Path

from codegen.contract.locations import CACHE_ENV, cache_root

ENV_CACHE = CACHE_ENV
ENV_MARCH = "ALGEBRANETS_CPU_MARCH"
ENV_MAX_TERMS = "ALGEBRANETS_CPU_MAX_TERMS"
#: first-use compilation stops here: an algebra whose structure tensor has more nonzero constants than this (the
#: unrolled multiply-adds of the generated code) is not compiled on first use, the layers run the torch paths
#: (compile time and memory measured per algebra size in docs/benchmarks.md: up to d = 16 Cl(4,0) with 256
#: nonzeros 4-6 s; d = 32 Cl(5,0) with 1024 about a minute, d = 64 Cl(6,0) with 4096 over ten).
#: `python -m runtime.kernels.cpu compile` builds any size.
MAX_TERMS = 512
KERNEL_FLAGS = ("-std=c++17", "-O3", "-march=native", "-ffp-contract=fast", "-fopenmp-simd", "-fPIC", "-shared")
#: predefined macros that name instruction-set extensions (a named target must not need one the CPU lacks)
_ISA_MACRO = re.compile(r"#define (__(?:AVX|SSE|FMA|F16C|BMI|LZCNT|POPCNT|MOVBE|AES|PCLMUL|SHA|VPCLMUL|GFNI|"
                        r"VAES|AMX|ARM_FEATURE_|ARM_NEON)\w*__) ")
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


log = logging.getLogger("runtime.kernels.cpu")


def max_terms() -> int:
    """The first-use compile limit: $ALGEBRANETS_CPU_MAX_TERMS if set (an integer), else MAX_TERMS."""
    given = os.environ.get(ENV_MAX_TERMS, "").strip()
    if not given:
        return MAX_TERMS
    try:
        return int(given)
    except ValueError:
        raise KernelBuildError(f"{ENV_MAX_TERMS}={given!r} is not an integer") from None


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


def target_march() -> str:
    """The -march the kernels are built for: $ALGEBRANETS_CPU_MARCH, else "native".  Raises KernelBuildError for
    a name that is not a plain target name."""
    march = os.environ.get(ENV_MARCH, "").strip() or "native"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", march):
        raise KernelBuildError(f"{ENV_MARCH}={march!r} is not a target name (e.g. x86-64-v3, x86-64-v4, native)")
    return march


def kernel_flags(march: str | None = None) -> tuple[str, ...]:
    """The kernel compile flags for target `march` (default: `target_march()`)."""
    m = march or target_march()
    return tuple(f"-march={m}" if f == "-march=native" else f for f in KERNEL_FLAGS)


_macros: dict[tuple, frozenset[str]] = {}


def isa_macros(cxx: str, march: str) -> frozenset[str]:
    """The instruction-set macros (__AVX2__, __AVX512F__, __ARM_NEON, ...) `cxx` predefines for -march=<march>."""
    key = (cxx, march)
    hit = _macros.get(key)
    if hit is None:
        try:
            res = subprocess.run([cxx, f"-march={march}", "-dM", "-E", "-x", "c++", os.devnull],
                                 capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as e:
            raise KernelBuildError(f"cannot run the C++ compiler {cxx}: {e}") from e
        if res.returncode != 0:
            raise KernelBuildError(f"{ENV_MARCH}={march!r}: {Path(cxx).name} does not know this target",
                                   log=res.stderr[-3000:])
        hit = _macros[key] = frozenset(_ISA_MACRO.findall(res.stdout))
    return hit


def check_target(cxx: str, march: str) -> None:
    """Refuse a named target that needs instructions this CPU lacks (its library would die of SIGILL)."""
    if march == "native":
        return
    missing = sorted(isa_macros(cxx, march) - isa_macros(cxx, "native"))
    if missing:
        raise KernelBuildError(f"{ENV_MARCH}={march}: this CPU lacks {', '.join(m.strip('_') for m in missing[:6])}"
                               f"{' ...' if len(missing) > 6 else ''}; unset it or name a target this CPU runs")


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()[:20]


def compile_library(cxx: str, source: Path, target: Path, flags: tuple[str, ...], extra: tuple[str, ...] = (),
                    what: str = "") -> Path:
    """Compile `source` into the shared library `target` (temporary file, then rename), first saying so in one
    line on the `runtime.kernels.cpu` logger (WARNING: shown on stderr unless logging is configured otherwise)."""
    log.warning("AlgebraNets: compiling %s with %s (once; cached in %s)", what or source.name, Path(cxx).name,
                target.parent)
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


def kernel_library(cxx: str, source: Path, name: str, terms: int = 0, *, force: bool = False) -> Path:
    """The compiled kernels of one algebra's generated source for `target_march()` (built now if not cached).

    terms: the algebra's nonzero structure constants; above `max_terms()` a library not yet cached is not
    compiled (KernelBuildError naming the command that compiles it) unless `force`."""
    march = target_march()
    check_target(cxx, march)
    flags = kernel_flags(march)
    data = source.read_bytes()
    key = _digest(data, " ".join(flags), compiler_identity(cxx))
    target = cache_dir() / "kernels" / f"{name}-{key}.so"
    if not target.is_file():
        limit = max_terms()
        if terms > limit and not force:
            raise KernelBuildError(
                f"the CPU kernels of {name} ({terms} nonzero structure constants, more than {ENV_MAX_TERMS}="
                f"{limit}) are not compiled on first use (that takes minutes); compile them once with "
                f"`python -m runtime.kernels.cpu compile --generated {source.parent.parent} {name}`")
        compile_library(cxx, source, target, flags,
                        what=(f"the CPU kernels of {name} ({terms} nonzero structure constants, -march={march})" if terms
                              else f"the CPU kernel {source.name} (-march={march})"))
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
        compile_library(cxx, GLUE_SOURCE, target, flags, link,
                        what=f"the torch ops of the CPU kernels ({GLUE_SOURCE.name})")
    return target
