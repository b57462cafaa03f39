"""Compile the generated CUDA sources with NVRTC and launch their kernels on torch's current stream.

Two backends share one interface (`Backend.function(source, group, name, device)` -> launcher):

* ``cupy`` (default when CuPy imports): `cupy.RawModule` (NVRTC), launched on
  `cupy.cuda.ExternalStream(torch.cuda.current_stream().cuda_stream)`.
* ``nvrtc``: NVRTC and the CUDA driver through ctypes (no CuPy); opt-in with
  ``ALGEBRANETS_CUDA_BACKEND=nvrtc``, for machines where CuPy is missing (benchmarks/gpu_check.sh uses it
  then).

``ALGEBRANETS_CUDA_BACKEND=off`` disables the kernels (everything runs on the torch reference paths).
Modules are cached per (source digest, kernel group, device, compute capability, options), so each group
of kernels of each algebra compiles once per device and process (CuPy also keeps its on-disk cache).
Tensors are passed to kernels as raw device pointers: no copies (`to_cupy` / `from_cupy` exchange whole
tensors through DLPack).
"""
from __future__ import annotations

import ctypes
import glob
import hashlib
import os
import sys
import threading
import warnings
from pathlib import Path

import torch

ENV_BACKEND = "ALGEBRANETS_CUDA_BACKEND"
STD = "-std=c++17"
_lock = threading.Lock()


def nvrtc_options(group: str | None) -> tuple[str, ...]:
    """NVRTC options for one kernel group ("ew_f32", "mat_bf16", ...; None: the whole file)."""
    opts = [STD]
    if group is not None:
        opts += ["-DALGEBRANETS_SELECT", f"-DALGEBRANETS_SELECT_{group.upper()}"]
    return tuple(opts)


def _sha(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


class BackendUnavailable(RuntimeError):
    pass


def blocks_per_sm(device: int, block: int, regs: int, smem: int) -> int:
    """Resident blocks per SM from a kernel's registers per thread and static shared memory."""
    p = torch.cuda.get_device_properties(device)
    max_threads = getattr(p, "max_threads_per_multi_processor", 2048)
    regs_sm = getattr(p, "regs_per_multiprocessor", 65536)
    smem_sm = getattr(p, "shared_memory_per_multiprocessor", 228 * 1024)
    by_threads = max_threads // block
    by_regs = regs_sm // max(1, ((regs + 7) // 8 * 8) * block)
    by_smem = smem_sm // smem if smem else by_threads
    return max(1, min(by_threads, by_regs, by_smem, 32))


def _entry(modules: dict, key) -> dict:
    """The cache slot of one module (created empty, with its own lock, under the global lock)."""
    with _lock:
        e = modules.get(key)
        if e is None:
            e = modules[key] = {"lock": threading.Lock(), "module": None, "functions": {}}
        return e


# ------------------------------------------------------------------------------------------- CuPy
class CupyBackend:
    name = "cupy"

    def __init__(self):
        import cupy  # noqa: F401  (ImportError: backend unavailable)

        self.cupy = cupy
        self._modules: dict = {}
        self._streams: dict = {}

    def _stream(self, device: int):
        """A CuPy view of torch's current stream on `device` (cached per stream)."""
        ts = torch.cuda.current_stream(device)
        key = (device, ts.cuda_stream)
        s = self._streams.get(key)
        if s is None:
            cs = self.cupy.cuda.Stream
            try:
                s = cs.from_external(ts)            # CUDA stream protocol (CuPy >= 14)
            except Exception:                      # older CuPy, or a stream it cannot query
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    s = self.cupy.cuda.ExternalStream(ts.cuda_stream, device)
            self._streams[key] = s
        return s

    def function(self, source: str, group: str | None, name: str, device: int):
        cp = self.cupy
        cc = torch.cuda.get_device_capability(device)
        opts = nvrtc_options(group)
        entry = _entry(self._modules, (_sha(source), group, device, cc, opts))
        fn = entry["functions"].get(name)
        if fn is None:
            with entry["lock"]:                     # one compile per module; other modules compile in parallel
                if entry["module"] is None:
                    entry["module"] = cp.RawModule(code=source, options=opts, backend="nvrtc")
                fn = entry["functions"].get(name)
                if fn is None:
                    with cp.cuda.Device(device):
                        fn = entry["functions"][name] = entry["module"].get_function(name)

        def launch(grid, block, args):
            with cp.cuda.Device(device), self._stream(device):
                fn(tuple(grid), tuple(block), tuple(args))

        def occupancy(block: int) -> int:
            """Blocks of `block` threads resident per SM (registers and static shared memory)."""
            with cp.cuda.Device(device):
                attrs = fn.attributes
            return blocks_per_sm(device, block, int(attrs.get("num_regs", 64)), int(attrs.get("shared_size_bytes", 0)))

        launch.occupancy = occupancy
        return launch

    def to_cupy(self, t: torch.Tensor):
        return self.cupy.from_dlpack(t)

    def from_cupy(self, a) -> torch.Tensor:
        return torch.from_dlpack(a)


# ------------------------------------------------------------------------------------------ ctypes
def _find_library(names: list[str], patterns: list[str]) -> ctypes.CDLL:
    errors = []
    for n in names:
        try:
            return ctypes.CDLL(n)
        except OSError as e:
            errors.append(str(e))
    roots = [Path(p) for p in sys.path if p and Path(p).is_dir()]
    for root in roots:
        for pat in patterns:
            for hit in sorted(glob.glob(str(root / pat))):
                try:
                    return ctypes.CDLL(hit)
                except OSError as e:
                    errors.append(str(e))
    raise BackendUnavailable(f"cannot load any of {names}: {'; '.join(errors[-3:])}")


class NvrtcBackend:
    """NVRTC + CUDA driver API through ctypes (no CuPy).  Kernels run on torch's current stream."""

    name = "nvrtc"

    def __init__(self):
        if not torch.cuda.is_available():
            raise BackendUnavailable("no CUDA device")
        major = (torch.version.cuda or "12").split(".")[0]
        self.nvrtc = _find_library([f"libnvrtc.so.{major}", "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"],
                                   ["nvidia/cuda_nvrtc/lib/libnvrtc.so*", "nvidia/cu*/lib/libnvrtc.so*"])
        self.cuda = _find_library(["libcuda.so.1", "libcuda.so"], [])
        self.cuda.cuModuleLoadData.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p]
        self.cuda.cuModuleGetFunction.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p, ctypes.c_char_p]
        self.cuda.cuLaunchKernel.argtypes = [ctypes.c_void_p] + [ctypes.c_uint] * 7 + [
            ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p]
        self._modules: dict = {}

    def _check_cu(self, res: int, what: str) -> None:
        if res != 0:
            msg = ctypes.c_char_p()
            self.cuda.cuGetErrorString(res, ctypes.byref(msg))
            raise RuntimeError(f"{what} failed: {msg.value.decode() if msg.value else res}")

    def compile(self, source: str, options: tuple[str, ...], arch: str) -> bytes:
        lib = self.nvrtc
        prog = ctypes.c_void_p()
        res = lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), b"algebranets.cu", 0, None, None)
        if res != 0:
            raise RuntimeError(f"nvrtcCreateProgram failed ({res})")
        try:
            opts = [o.encode() for o in options] + [f"--gpu-architecture={arch}".encode()]
            arr = (ctypes.c_char_p * len(opts))(*opts)
            res = lib.nvrtcCompileProgram(prog, len(opts), arr)
            if res != 0:
                size = ctypes.c_size_t()
                lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
                log = ctypes.create_string_buffer(size.value)
                lib.nvrtcGetProgramLog(prog, log)
                raise RuntimeError(f"NVRTC compilation failed:\n{log.value.decode(errors='replace')}")
            size = ctypes.c_size_t()
            lib.nvrtcGetCUBINSize(prog, ctypes.byref(size))
            buf = ctypes.create_string_buffer(size.value)
            lib.nvrtcGetCUBIN(prog, buf)
            return buf.raw
        finally:
            lib.nvrtcDestroyProgram(ctypes.byref(prog))

    def function(self, source: str, group: str | None, name: str, device: int):
        cc = torch.cuda.get_device_capability(device)
        opts = nvrtc_options(group)
        mod = _entry(self._modules, (_sha(source), group, device, cc, opts))
        with mod["lock"]:
            if mod["module"] is None:
                ver_major, ver_minor = ctypes.c_int(), ctypes.c_int()
                self.nvrtc.nvrtcVersion(ctypes.byref(ver_major), ctypes.byref(ver_minor))
                arch = f"sm_{cc[0]}{cc[1]}"
                if ver_major.value < 13 and cc[0] * 10 + cc[1] > 90 and (ver_major.value, ver_minor.value) < (12, 8):
                    arch = "sm_90"
                cubin = self.compile(source, opts, arch)
                with torch.cuda.device(device):
                    torch.empty(1, device=f"cuda:{device}")   # torch's primary context is current
                    handle = ctypes.c_void_p()
                    self._check_cu(self.cuda.cuModuleLoadData(ctypes.byref(handle), cubin), "cuModuleLoadData")
                mod["module"], mod["cubin"] = handle, cubin
            fn = mod["functions"].get(name)
            if fn is None:
                fn = ctypes.c_void_p()
                self._check_cu(self.cuda.cuModuleGetFunction(ctypes.byref(fn), mod["module"], name.encode()),
                               f"cuModuleGetFunction({name})")
                mod["functions"][name] = fn

        def occupancy(block: int) -> int:
            n = ctypes.c_int()
            with torch.cuda.device(device):
                res = self.cuda.cuOccupancyMaxActiveBlocksPerMultiprocessor(ctypes.byref(n), fn, ctypes.c_int(block),
                                                                            ctypes.c_size_t(0))
            return n.value if res == 0 and n.value > 0 else 4

        def launch(grid, block, args):
            vals = [ctypes.c_int64(int(a) if a is not None else 0) for a in args]
            ptrs = (ctypes.c_void_p * len(vals))(*[ctypes.cast(ctypes.byref(v), ctypes.c_void_p) for v in vals])
            stream = ctypes.c_void_p(torch.cuda.current_stream(device).cuda_stream)
            with torch.cuda.device(device):
                self._check_cu(self.cuda.cuLaunchKernel(fn, *grid, *block, 0, stream, ptrs, None), f"launch {name}")

        launch.occupancy = occupancy
        return launch

    def to_cupy(self, t):  # pragma: no cover - needs CuPy
        raise BackendUnavailable("the nvrtc backend has no CuPy arrays")


# --------------------------------------------------------------------------------------- selection
_state: dict = {}


def backend_name_requested() -> str:
    return os.environ.get(ENV_BACKEND, "").strip().lower() or "auto"


def get_backend():
    """The active backend object, or None (CuPy missing / backend off).  Decided once per process."""
    req = backend_name_requested()
    if req in _state:
        _state["last"] = _state[req]
        return _state[req]
    be = None
    err = None
    try:
        if req in ("auto", "cupy"):
            be = CupyBackend()
        elif req == "nvrtc":
            be = NvrtcBackend()
        elif req not in ("off", "none", "0"):
            err = f"unknown {ENV_BACKEND}={req!r} (use cupy, nvrtc or off)"
    except (ImportError, OSError, BackendUnavailable) as e:
        err = f"{type(e).__name__}: {e}"
    _state[req] = be
    _state[f"error:{req}"] = err
    _state["last"] = be
    return be


def active_cached() -> bool:
    """Whether the last backend decision found one (no environment lookups: safe inside torch.compile)."""
    return _state.get("last") is not None


def backend_error() -> str | None:
    """Why no backend is active (None when one is)."""
    get_backend()
    return _state.get(f"error:{backend_name_requested()}")


def reset() -> None:
    """Forget the chosen backend (tests; after changing ALGEBRANETS_CUDA_BACKEND)."""
    _state.clear()
