"""Every generated .cu compiles: nvcc for sm_80 and sm_90, and NVRTC (the runtime's compiler) when CuPy is
installed; the kernel table matches the sources; the output is deterministic.

Without nvcc these tests skip, unless ALGEBRANETS_REQUIRE_NVCC=1 (set by CI, .ci/run): then they FAIL.
The nine files compile in parallel (one job per file and architecture) once per session.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from runtime import load_algebra
from runtime.kernels.cuda._backend import nvrtc_options

ALGEBRAS = ["R", "C", "H", "Dual", "Cross3", "M2R", "M3R", "M4R", "M2C", "O", "RandH", "RandM4R"]
ARCHS = ("sm_80", "sm_90")
REQUIRE_ENV = "ALGEBRANETS_REQUIRE_NVCC"
MAX_SPILL_BYTES = 64        # ptxas occasionally spills a word or two; more than this is a regression
GROUPS = ("ew_f32", "ew_f64", "ew_f16", "ew_bf16", "mat_f32", "mat_f16", "mat_bf16")


def find_nvcc() -> str | None:
    for c in (os.environ.get("NVCC"), shutil.which("nvcc"),
              os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "nvcc")):
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def nvcc_or_skip() -> str:
    """nvcc's path; skip when it is absent, FAIL when absent and ALGEBRANETS_REQUIRE_NVCC is set."""
    nvcc = find_nvcc()
    if nvcc is None:
        if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
            pytest.fail(f"nvcc not found, and {REQUIRE_ENV} is set: the CUDA sources must be compile-checked")
        pytest.skip("nvcc not found (set ALGEBRANETS_REQUIRE_NVCC=1 to make this a failure)")
    return nvcc


def source(name: str) -> Path:
    alg = load_algebra(name)
    return alg.path / f"{name}.cu"


def _nvcc_job(nvcc: str, name: str, arch: str, outdir: Path):
    out = outdir / f"{name}.{arch}.cubin"
    cmd = [nvcc, "-cubin", f"-arch={arch}", "-std=c++17", "-Werror", "all-warnings", "-Xptxas", "-v",
           "-x", "cu", str(source(name)), "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    log = res.stdout + res.stderr
    compiled = set(re.findall(r"Compiling entry function '(\w+)'", log))
    spills, current = {}, None
    for line in log.splitlines():
        m = re.search(r"Function properties for (\w+)", line)
        if m:
            current = m.group(1)
        m = re.search(r"(\d+) bytes spill stores", line)
        if m and current:
            spills[current] = int(m.group(1))
    return res.returncode, log, compiled, spills


@pytest.fixture(scope="session")
def nvcc_results(tmp_path_factory):
    nvcc = nvcc_or_skip()
    outdir = tmp_path_factory.mktemp("nvcc")
    jobs = [(n, a) for n in ALGEBRAS for a in ARCHS]
    workers = max(2, min(len(jobs), os.cpu_count() or 2))
    with ThreadPoolExecutor(workers) as pool:
        futures = {job: pool.submit(_nvcc_job, nvcc, *job, outdir) for job in jobs}
        return {job: f.result() for job, f in futures.items()}


def kernel_names(name: str) -> list[str]:
    alg = load_algebra(name)
    return [k["name"] for k in json.loads((alg.path / "kernels.json").read_text())["kernels"]]


@pytest.mark.parametrize("name", ALGEBRAS)
@pytest.mark.parametrize("arch", ARCHS)
def test_nvcc_compiles(nvcc_results, name, arch):
    rc, log, compiled, spills = nvcc_results[(name, arch)]
    assert rc == 0, f"nvcc -arch={arch} failed for {name}.cu:\n{log[-6000:]}"
    missing = set(kernel_names(name)) - compiled
    assert not missing, f"kernels not compiled for {arch}: {sorted(missing)}"
    big = {k: v for k, v in spills.items() if v > MAX_SPILL_BYTES}
    assert not big, f"register spills over {MAX_SPILL_BYTES} bytes: {big}"


def test_missing_nvcc_fails_when_required(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)
    monkeypatch.setenv("CUDA_HOME", "/nonexistent")
    monkeypatch.delenv("NVCC", raising=False)
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception):
        nvcc_or_skip()
    monkeypatch.setenv(REQUIRE_ENV, "0")
    with pytest.raises(pytest.skip.Exception):
        nvcc_or_skip()


# --------------------------------------------------------------------------------------------- NVRTC
def _nvrtc_compile(src: str, options: tuple[str, ...], arch: str) -> tuple[bool, str]:
    from cupy.cuda import nvrtc

    prog = nvrtc.createProgram(src, "algebranets.cu", (), ())
    try:
        # CuPy's RawModule adds --device-as-default-execution-space; compile the way it will
        nvrtc.compileProgram(prog, options + ("--device-as-default-execution-space", f"--gpu-architecture={arch}"))
        return len(nvrtc.getCUBIN(prog)) > 0, nvrtc.getProgramLog(prog)
    except nvrtc.NVRTCError:
        return False, nvrtc.getProgramLog(prog)
    finally:
        nvrtc.destroyProgram(prog)


@pytest.fixture(scope="session")
def nvrtc_ok():
    pytest.importorskip("cupy", reason="CuPy (the `cuda` extra) is not installed")
    try:
        from cupy.cuda import nvrtc

        nvrtc.getVersion()
    except Exception as e:  # pragma: no cover - broken install
        pytest.skip(f"NVRTC unavailable: {e}")
    return True


@pytest.mark.parametrize("name", ["H", "M4R"])
def test_nvrtc_compiles_whole_file(nvrtc_ok, name):
    """NVRTC differs from nvcc in headers and builtins, not per algebra: the common code is the same in every
    file, and nvcc checks every built-in algebra."""
    ok, log = _nvrtc_compile(source(name).read_text(), nvrtc_options(None), "sm_90")
    assert ok, log[-6000:]


@pytest.mark.parametrize("group", GROUPS)
def test_nvrtc_compiles_each_kernel_group(nvrtc_ok, group):
    """The runtime compiles one group at a time (ALGEBRANETS_SELECT_*): each must stand alone."""
    ok, log = _nvrtc_compile(source("H").read_text(), nvrtc_options(group), "sm_80")
    assert ok, log[-6000:]


# ------------------------------------------------------------------------------- table and sources
@pytest.mark.parametrize("name", ALGEBRAS)
def test_kernel_table_matches_source(name):
    src = source(name).read_text()
    defined = re.findall(r'extern "C" __global__ void (?:__launch_bounds__\(\d+\) )?(\w+)\(', src)
    assert sorted(defined) == sorted(kernel_names(name))
    # every kernel sits in the select group the runtime compiles it with
    sections = re.findall(r"defined\(ALGEBRANETS_SELECT_(\w+)\)\n(.*?)#endif  // ALGEBRANETS_SELECT_\1", src, re.S)
    where = {k: g.lower() for g, body in sections for k in re.findall(r'__global__ void (?:__launch_bounds__\(\d+\) )?(\w+)\(', body)}
    for k in kernel_names(name):
        storage = k.rsplit("_b", 1)[0].rsplit("_", 1)[1] if ("_gemv_" in k or "_bsr_" in k) else k.rsplit("_", 1)[1]
        want = ("mat_" if ("_gemv_" in k or "_bsr_" in k) else "ew_") + storage
        assert where.get(k) == want, (k, where.get(k), want)
    assert src.count("#if") == src.count("#endif")


def test_generated_cuda_is_deterministic(tmp_path):
    """A second build of the same sources gives byte-identical CUDA files and kernel tables."""
    from codegen.build import build

    build(out_dir=tmp_path, only=["H", "M4R"])
    for name in ("H", "M4R"):
        folder = load_algebra(name).path
        for f in (f"{name}.cu", "kernels.json"):
            assert (tmp_path / name / f).read_bytes() == (folder / f).read_bytes(), f"{name}/{f} differs"
