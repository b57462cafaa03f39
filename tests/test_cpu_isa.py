"""The CPU kernels per target ISA and how they are compiled: the AVX2 build (ALGEBRANETS_CPU_MARCH=x86-64-v3) of
every built-in algebra against the float64 block path, the AArch64 cross-compile (-Wall -Wextra -Werror) and a
qemu-user run against the structure tensor, the one-line compile message, the first-use size limit and
`python -m runtime.kernels.cpu compile`.

Skips: no C++ compiler; the AVX2 test on a CPU without AVX2; the AArch64 tests without aarch64-linux-gnu-g++
(Debian: g++-aarch64-linux-gnu) or qemu-aarch64 (qemu-user).
"""
from __future__ import annotations

import logging
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime import load_algebra
from runtime.kernels.compiler import find_compiler
from runtime.kernels.cpu import KernelBuildError, _build
from runtime.kernels.cpu.ops import LEARNED_SOURCE

ALGEBRAS = ["R", "C", "H", "Dual", "Cross3", "M2R", "M3R", "M4R", "M2C", "RandH", "RandM4R"]
ROOT = Path(__file__).resolve().parent.parent
CXX = find_compiler()
CROSS = shutil.which("aarch64-linux-gnu-g++")
QEMU = shutil.which("qemu-aarch64")

pytestmark = pytest.mark.skipif(CXX is None, reason="needs a C++ compiler")


def _runs_avx2() -> bool:
    if CXX is None or platform.machine() not in ("x86_64", "AMD64"):
        return False
    try:
        _build.check_target(CXX, "x86-64-v3")
        return True
    except KernelBuildError:
        return False


# ----------------------------------------------------------------------------------- AVX2 on this machine
AVX2_SCRIPT = r'''
import math, sys, torch
from runtime import load_algebra, sparsity as sp
from runtime.kernels import cpu
from runtime.kernels.cpu import _build
from runtime.functional import algebra_linear
assert "-march=x86-64-v3" in _build.kernel_flags(), _build.kernel_flags()
torch.manual_seed(7)
for name in sys.argv[1:]:
    A = load_algebra(name)
    d = A.dim
    for out, inn in ((5, 37), (2, 300)):
        w, b = torch.randn(out, inn, d, dtype=torch.float64), torch.randn(out, d, dtype=torch.float64)
        ws = w * (torch.rand(out, inn) < 0.4).unsqueeze(-1).double()
        crow, col, values = sp.block_csr(ws)
        for batch in (1, 3, 9, 17):
            x = torch.randn(batch, inn * d, dtype=torch.float64)
            ref = algebra_linear(x, w, b, A, method="block")
            refs = algebra_linear(x, ws, b, A, method="block")
            for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 2e-4)):     # the packed weight's kernels
                y = cpu.planar_checked(A, cpu.pack(A, w.to(dtype)), x.to(dtype), b.to(dtype), out, inn)
                torch.testing.assert_close(y.double(), ref, rtol=tol, atol=tol * math.sqrt(inn * d) * 4)
            for v in (None, "small", "lanes_naive", "lanes_scheme"):
                for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 2e-4)):
                    try:
                        y = cpu.dense(A, w.to(dtype), x.to(dtype), b.to(dtype), variant=v)
                        ys = cpu.bsr_linear(A, crow, col.int(), values.to(dtype), x.to(dtype), b.to(dtype), variant=v)
                    except RuntimeError as e:
                        assert v == "lanes_scheme" and "not available" in str(e), (name, v, e)
                        continue
                    scale = tol * math.sqrt(inn * d) * 4
                    torch.testing.assert_close(y.double(), ref, rtol=tol, atol=scale, msg=lambda m: f"{name} {v} {m}")
                    torch.testing.assert_close(ys.double(), refs, rtol=tol, atol=scale, msg=lambda m: f"{name} {v} {m}")
print("ok")
'''


@pytest.mark.slow
@pytest.mark.skipif(not _runs_avx2(), reason="needs an x86-64 CPU with AVX2")
def test_avx2_build_of_every_builtin_matches_the_block_path():
    """Each built-in algebra's kernels built for x86-64-v3 (AVX2 + FMA, 8 float lanes, 16 registers) on this
    machine: every variant, dense and element-sparse, float32 and float64, against the float64 block path."""
    env = dict(os.environ, ALGEBRANETS_CPU_MARCH="x86-64-v3", PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-c", AVX2_SCRIPT, *ALGEBRAS], env=env, capture_output=True, text=True,
                         cwd=ROOT, timeout=1800)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr[-4000:]


def test_bad_or_unrunnable_targets_are_refused(monkeypatch):
    monkeypatch.setenv(_build.ENV_MARCH, "x86-64-v3; rm -rf /")
    with pytest.raises(KernelBuildError, match="not a target name"):
        _build.target_march()
    monkeypatch.setenv(_build.ENV_MARCH, "no-such-cpu-zz")
    with pytest.raises(KernelBuildError, match="does not know this target"):
        _build.check_target(CXX, _build.target_march())
    # a target needing an extension the CPU lacks (here: pretend the CPU has none) would die of SIGILL: refused
    real = _build.isa_macros
    monkeypatch.setattr(_build, "isa_macros",
                        lambda cxx, march: frozenset() if march == "native" else real(cxx, march))
    monkeypatch.setenv(_build.ENV_MARCH, "x86-64-v3" if platform.machine() == "x86_64" else "armv8.2-a+fp16")
    with pytest.raises(KernelBuildError, match="this CPU lacks"):
        _build.check_target(CXX, _build.target_march())
    monkeypatch.delenv(_build.ENV_MARCH)
    assert _build.target_march() == "native" and "-march=native" in _build.kernel_flags()


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 targets")
@pytest.mark.parametrize("march", ["x86-64-v3", "x86-64-v4"])
def test_generated_cpp_compiles_for_each_x86_target_without_warnings(march):
    """-Wall -Wextra -Werror for AVX2 + FMA and AVX-512 whatever this CPU is (compiling needs no such CPU); every
    built-in at -O1, H and the learned layers' kernel (learned.cpp) at -O3 (the optimiser's warnings)."""
    sources = [load_algebra(n).path / f"{n}_cpu.cpp" for n in ALGEBRAS]
    base = [CXX, "-std=c++17", f"-march={march}", "-ffp-contract=fast", "-fopenmp-simd", "-fPIC", "-Wall", "-Wextra",
            "-Werror", "-c", "-o", os.devnull]
    jobs = [[*base, "-O1", str(s)] for s in sources] + [[*base, "-O3", str(s)] for s in (sources[2], LEARNED_SOURCE)]
    for cmd in jobs:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, f"{' '.join(cmd)}:\n{res.stderr[-3000:]}"


# ----------------------------------------------------------------------------------- AArch64 (NEON)
@pytest.mark.skipif(CROSS is None, reason="needs aarch64-linux-gnu-g++ (Debian: g++-aarch64-linux-gnu)")
@pytest.mark.parametrize("opt", ["-O1", "-O3"])
def test_generated_cpp_cross_compiles_for_aarch64_without_warnings(opt):
    sources = [load_algebra(n).path / f"{n}_cpu.cpp" for n in ALGEBRAS]
    if opt == "-O3":
        sources = [sources[2], LEARNED_SOURCE]      # H and the learned layers' kernel: the optimiser's warnings too
    base = [CROSS, "-std=c++17", "-march=armv8-a", "-ffp-contract=fast", "-fopenmp-simd", "-fPIC", "-Wall",
            "-Wextra", "-Werror", opt, "-c", "-o", os.devnull]
    procs = [(s, subprocess.Popen([*base, str(s)], stderr=subprocess.PIPE, text=True)) for s in sources]
    for s, p in procs:
        _, err = p.communicate()
        assert p.returncode == 0, f"{s.name}:\n{err}"


DRIVER = r'''
#include <cstdio>
#include <vector>
typedef long long i64;
extern "C" {
int NAME_cpu_variant_f32(int, i64, int);
i64 NAME_cpu_work_f32(int, int, i64, i64);
void NAME_cpu_prep_f32(int, int, const float*, i64, i64, i64, i64, i64, float*, i64, i64);
i64 NAME_cpu_rows_f32(int, const float*, const i64*, const int*, const float*, const float*, float*, i64, i64, i64,
                      i64, i64);
i64 NAME_cpu_packed_size_f32(i64, i64, int*, int*);
void NAME_cpu_pack_f32(int, const float*, i64, i64, float*, i64, i64);
}
int main() {
  const i64 D = DIM, OUT = 6, IN = 29, B = 3;
  std::vector<float> w(OUT * IN * D), x(B * IN * D), bias(OUT * D), y(B * OUT * D);
  unsigned s = 12345;
  auto rnd = [&]() { s = s * 1103515245u + 12345u; return (float)((s >> 8) % 2001) / 1000.0f - 1.0f; };
  for (auto& v : w) v = rnd();
  for (auto& v : x) v = rnd();
  for (auto& v : bias) v = rnd();
  std::vector<i64> crow(OUT + 1, 0);                    // sparse: every third element of each row
  std::vector<int> col;
  std::vector<float> vals;
  for (i64 o = 0; o < OUT; ++o) {
    for (i64 i = o % 3; i < IN; i += 3) {
      col.push_back((int)i);
      for (i64 k = 0; k < D; ++k) vals.push_back(w[(o * IN + i) * D + k]);
    }
    crow[o + 1] = (i64)col.size();
  }
  for (int sparse = 0; sparse < 2; ++sparse)
    for (i64 batch = 1; batch <= B; batch += 2)
      for (int req = 0; req < 4; ++req) {
        const int v = NAME_cpu_variant_f32(sparse, batch, req);
        if (v < 0) continue;
        int rows = 0, lanes = 0;                            // planar (3): the packed weight
        std::vector<float> packed(NAME_cpu_packed_size_f32(OUT, IN, &rows, &lanes));
        NAME_cpu_pack_f32(0, w.data(), OUT, IN, packed.data(), 0, (OUT + rows - 1) / rows);
        std::vector<float> work(NAME_cpu_work_f32(sparse, v, batch, IN) + 1);
        NAME_cpu_prep_f32(sparse, v, x.data(), IN * D, D, 1, batch, IN, work.data(), 0, IN);
        const i64 bad = NAME_cpu_rows_f32(v, sparse ? vals.data() : v == 3 ? packed.data() : w.data(), sparse ? crow.data() : nullptr,
                                          sparse ? col.data() : nullptr, work.data(), bias.data(), y.data(), OUT,
                                          IN, batch, 0, OUT);
        std::printf("%d %lld %d %lld", sparse, batch, v, bad);
        for (i64 j = 0; j < batch * OUT * D; ++j) std::printf(" %.7g", y[j]);
        std::printf("\n");
      }
  return 0;
}
'''


def _lcg(n: int, state: list[int]) -> np.ndarray:
    """The driver's pseudo-random numbers (same recurrence, same order)."""
    out = np.empty(n)
    for t in range(n):
        state[0] = (state[0] * 1103515245 + 12345) % 2**32
        out[t] = np.float32(((state[0] >> 8) % 2001) / np.float32(1000.0)) - np.float32(1.0)
    return out


@pytest.mark.slow
@pytest.mark.skipif(CROSS is None or QEMU is None, reason="needs aarch64-linux-gnu-g++ and qemu-aarch64 (qemu-user)")
@pytest.mark.parametrize("name", ["C", "H", "M3R"])
def test_aarch64_kernels_run_under_qemu(name, tmp_path):
    """The NEON build (4 float lanes) run under qemu-user: every variant, dense and sparse, against y = sum_i
    w_i * x_i + b computed here from the structure tensor."""
    A = load_algebra(name)
    d, prefix = A.dim, name
    driver = tmp_path / "driver.cpp"
    driver.write_text(DRIVER.replace("NAME", prefix).replace("DIM", str(d)))
    exe = tmp_path / "driver"
    cmd = [CROSS, "-std=c++17", "-O2", "-march=armv8-a", "-ffp-contract=fast", "-fopenmp-simd", "-static", "-Wall",
           "-Werror", str(driver), str(A.path / f"{name}_cpu.cpp"), "-o", str(exe)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    run = subprocess.run([QEMU, str(exe)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    out_, in_, B = 6, 29, 3
    state = [12345]
    w = _lcg(out_ * in_ * d, state).reshape(out_, in_, d)
    x = _lcg(B * in_ * d, state).reshape(B, in_, d)
    bias = _lcg(out_ * d, state).reshape(out_, d)
    T = A.structure_tensor().numpy()
    mask = np.zeros((out_, in_, 1))
    for o in range(out_):
        mask[o, o % 3::3] = 1
    lines = run.stdout.strip().splitlines()
    assert len(lines) >= 8 and any(line.split()[2] == "3" for line in lines), run.stdout
    for line in lines:
        sparse, batch, variant, bad, *vals = line.split()
        batch = int(batch)
        ww = w * mask if sparse == "1" else w
        ref = np.einsum("oia,bij,ajk->bok", ww, x[:batch], T) + bias
        assert bad == "0"
        np.testing.assert_allclose(np.array(vals, dtype=float).reshape(batch, out_, d), ref, rtol=1e-4, atol=1e-4,
                                   err_msg=f"{name} sparse={sparse} batch={batch} variant={variant}")


# ----------------------------------------------------------------------------------- compile message and limit
def test_compiles_say_so_once_and_the_size_limit_holds(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(_build.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.delenv(_build.ENV_MARCH, raising=False)
    monkeypatch.delenv(_build.ENV_MAX_TERMS, raising=False)
    src = tmp_path / "tiny_cpu.cpp"
    src.write_text('extern "C" int tiny_cpu_abi() { return 1; }\n')
    with caplog.at_level(logging.WARNING, logger="runtime.kernels.cpu"):
        lib = _build.kernel_library(CXX, src, "tiny", terms=16)
        assert lib.is_file()
        said = [r.getMessage() for r in caplog.records if r.name == "runtime.kernels.cpu"]
        assert len(said) == 1 and "compiling the CPU kernels of tiny" in said[0] and "cached" in said[0]
        _build.kernel_library(CXX, src, "tiny", terms=16)                   # cached: silent
        assert len([r for r in caplog.records if r.name == "runtime.kernels.cpu"]) == 1

    src.write_text(src.read_text() + "// bigger\n")
    big = _build.MAX_TERMS + 1
    with pytest.raises(KernelBuildError, match=r"not compiled on first use.*python -m runtime.kernels.cpu compile"):
        _build.kernel_library(CXX, src, "tiny", terms=big)
    assert _build.kernel_library(CXX, src, "tiny", terms=big, force=True).is_file()     # asked for: compiled
    assert _build.kernel_library(CXX, src, "tiny", terms=big).is_file()                 # then cached: used
    monkeypatch.setenv(_build.ENV_MAX_TERMS, "8")
    src.write_text(src.read_text() + "// again\n")
    with pytest.raises(KernelBuildError, match="ALGEBRANETS_CPU_MAX_TERMS=8"):
        _build.kernel_library(CXX, src, "tiny", terms=16)
    monkeypatch.setenv(_build.ENV_MAX_TERMS, "many")
    with pytest.raises(KernelBuildError, match="not an integer"):
        _build.max_terms()


LIMITED = r'''
import warnings, torch
from runtime.kernels import cpu
from runtime.layers import AlgebraLinear
from runtime.functional import algebra_linear
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    lin = AlgebraLinear(6, 5, "H", method="kernel")
    x = torch.randn(1, 24)
    with torch.no_grad():
        y = lin(x)
print("warned:", [str(w.message) for w in caught if issubclass(w.category, cpu.KernelUnavailableWarning)])
assert torch.allclose(y, algebra_linear(x, lin.weight, lin.bias, "H", method="block"), atol=1e-5)
print("ran:", cpu.ops.registered(lin.algebra))
'''


@pytest.mark.slow
def test_size_limit_falls_back_and_precompile_lifts_it(tmp_path):
    """Above ALGEBRANETS_CPU_MAX_TERMS a layer runs the torch paths with one KernelUnavailableWarning naming the
    compile command; `python -m runtime.kernels.cpu compile` compiles it (saying so), after which the kernel runs."""
    glue = _build.cache_dir() / "glue"
    if not glue.is_dir():
        pytest.skip("the torch ops are not compiled in the user cache yet (run tests/test_cpu_kernels.py first)")
    cache = tmp_path / "cache"
    (cache / "cpu").mkdir(parents=True)
    (cache / "cpu" / "glue").symlink_to(glue)                    # the torch ops as cached, the kernels not
    env = dict(os.environ, ALGEBRANETS_CACHE=str(cache), ALGEBRANETS_CPU_MAX_TERMS="8", PYTHONPATH=str(ROOT))
    env.pop(_build.ENV_MARCH, None)
    first = subprocess.run([sys.executable, "-c", LIMITED], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "python -m runtime.kernels.cpu compile" in first.stdout and "ran: False" in first.stdout, first.stdout
    pre = subprocess.run([sys.executable, "-m", "runtime.kernels.cpu", "compile", "H"], env=env, capture_output=True,
                         text=True, cwd=ROOT, timeout=600)
    assert pre.returncode == 0, pre.stderr[-3000:]
    assert "compiling the CPU kernels of H" in pre.stderr and "H" in pre.stdout and "ready" in pre.stdout
    again = subprocess.run([sys.executable, "-c", LIMITED], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "warned: []" in again.stdout and "ran: True" in again.stdout, again.stdout
    assert "compiling" not in again.stderr


@pytest.mark.slow
def test_codegen_build_compile_cpu_precompiles_what_it_built(tmp_path):
    """`python -m codegen build --compile-cpu` builds a user algebra and compiles its CPU kernels (saying so);
    a layer over it then runs the kernel without compiling."""
    from test_build import OCTONIONS

    glue = _build.cache_dir() / "glue"
    if not glue.is_dir():
        pytest.skip("the torch ops are not compiled in the user cache yet (run tests/test_cpu_kernels.py first)")
    cache = tmp_path / "cache"
    (cache / "cpu").mkdir(parents=True)
    (cache / "cpu" / "glue").symlink_to(glue)
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "octonions.py").write_text(OCTONIONS)
    env = dict(os.environ, ALGEBRANETS_CACHE=str(cache), PYTHONPATH=str(ROOT))
    env.pop(_build.ENV_MARCH, None)
    res = subprocess.run([sys.executable, "-m", "codegen", "build", "--spec-dir", str(tmp_path / "specs"), "--out",
                          str(tmp_path / "gen"), "--compile-cpu"], env=env, capture_output=True, text=True,
                         cwd=ROOT, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "compiling the CPU kernels of O" in res.stderr and "ready" in res.stdout, (res.stdout, res.stderr)
    assert any((cache / "cpu" / "kernels").glob("O-*.so"))
    script = ("import torch; from runtime import load_algebra; from runtime.kernels import cpu; A = load_algebra('O', %r); "
              "w = torch.randn(3, 5, 8); x = torch.randn(1, 40); print(cpu.dense(A, w, x).shape)"
              % str(tmp_path / "gen"))
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0 and "torch.Size([1, 24])" in run.stdout, run.stderr[-3000:]
    assert "compiling" not in run.stderr
