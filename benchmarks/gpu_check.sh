#!/usr/bin/env bash
# One-shot GPU check for a lent GPU machine (no network needed): the GPU tests, then the timings table.
#
#   benchmarks/gpu_check.sh            # python: $PYTHON, else .venv/bin/python if it sees a GPU, else python3
#   QUICK=1 benchmarks/gpu_check.sh    # fewer sizes (about half the time)
#
# Needs torch with CUDA; sympy, jinja2, numpy (torch's own dependencies) for the build; pytest for the tests
# (skipped with a note if missing: the benchmark still checks every kernel it times).  Kernels compile through
# CuPy when it imports, else through NVRTC + the CUDA driver via ctypes (ALGEBRANETS_CUDA_BACKEND=nvrtc).
# Budget on an H100 (estimated; not yet measured): build ~10 s, tests ~1-2 min (NVRTC compiles in parallel),
# timings ~2 min.  Timeouts (60 + 200 + 200 s) bound the whole script below 8 minutes.  Results: $OUT (or a temp folder) gets gpu_tests.txt,
# bench_gpu.txt and bench_gpu.json.
set -uo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ] && .venv/bin/python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    PY=.venv/bin/python
  else
    PY=python3
  fi
fi
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
WORK="$(mktemp -d)"
GEN="$WORK/generated"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export CUPY_CACHE_DIR="${CUPY_CACHE_DIR:-$WORK/cupy_cache}"

echo "== environment"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" - <<'EOF'
import sys, torch
print("python", sys.version.split()[0], "| torch", torch.__version__, "| CUDA", torch.version.cuda,
      "| device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
for m in ("cupy", "triton", "pytest", "hypothesis", "sympy", "jinja2", "numpy"):
    try:
        mod = __import__(m)
        print(f"  {m} {getattr(mod, '__version__', '?')}")
    except Exception as e:
        print(f"  {m}: not importable ({type(e).__name__})")
sys.exit(0 if torch.cuda.is_available() else 3)
EOF
if [ $? -ne 0 ]; then echo "no CUDA device visible to torch: nothing to check"; exit 3; fi

if ! "$PY" -c "import cupy" 2>/dev/null; then
  export ALGEBRANETS_CUDA_BACKEND="${ALGEBRANETS_CUDA_BACKEND:-nvrtc}"
  echo "CuPy not importable: using ALGEBRANETS_CUDA_BACKEND=$ALGEBRANETS_CUDA_BACKEND (NVRTC + driver through ctypes)"
fi

echo "== build ($GEN)"
timeout 60 "$PY" -m codegen build --out "$GEN" | tail -1 || { echo "build failed"; exit 1; }
export ALGEBRANETS_GENERATED="$GEN" ALGEBRANETS_TEST_GENERATED="$GEN"
export ALGEBRANETS_REQUIRE_GPU_KERNELS=1

TEST_RC=0
echo "== GPU tests"
if "$PY" -c "import pytest" 2>/dev/null; then
  timeout 200 "$PY" -m pytest -q -m gpu tests/test_cuda_gpu.py -p no:cacheprovider --maxfail=10 --durations=5 \
    > "$OUT/gpu_tests.txt" 2>&1
  TEST_RC=$?
  tail -25 "$OUT/gpu_tests.txt"
  [ $TEST_RC -eq 124 ] && echo "GPU tests TIMED OUT (200 s)"
else
  echo "pytest not installed: skipping tests/test_cuda_gpu.py (bench_gpu.py's check still runs)"
fi

echo "== timings"
BENCH_ARGS=(--json "$OUT/bench_gpu.json")
[ -n "${QUICK:-}" ] && BENCH_ARGS+=(--quick)
timeout 200 "$PY" benchmarks/bench_gpu.py "${BENCH_ARGS[@]}" 2>&1 | tee "$OUT/bench_gpu.txt"
BENCH_RC=${PIPESTATUS[0]}
[ $BENCH_RC -eq 124 ] && echo "timings TIMED OUT (200 s)"

echo "== summary: tests rc=$TEST_RC, timings rc=$BENCH_RC, results in $OUT"
rm -rf "$WORK"
[ $TEST_RC -eq 0 ] && [ $BENCH_RC -eq 0 ]
