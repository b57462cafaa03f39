"""Every generated CUDA kernel executed on the CPU under the emulation of tests/cuda_emulation (no GPU).

Each algebra's .cu is compiled unchanged with g++ and the emulation header (threads of a block are fibers
that meet at __syncthreads and warp shuffles; wrong lane masks, barriers after a return, deadlocks and
misaligned accesses are errors).  Launches go through runtime.kernels.cuda._launch, the same glue (grids, tiles,
splits, persistent striding, argument order) the GPU path uses, with `EmuBackend` in place of CuPy.

Checked against the float64 torch reference (runtime/kernels/reference.py), for the nine built-in algebras and
a user algebra built into a temporary folder, in every storage type:
* elementwise product and gradients, the six scheme maps (with and without a broadcast bias), n = 1, 3, 17,
  1035 elements, through the glue and with a small grid that makes the grid-stride loop go round;
* gemv at every batch tile B, with batches 1, B, B + 1, splits 1 / 2 / 4 / 8 and the glue's own choice, rows
  and columns 1, 3, 17, 1030 (unaligned rows, the persistent grid striding over 129 row groups);
* bsr at every B, with empty rows, an all-empty matrix and 1030 columns;
* half / bfloat16 conversions inside the kernels bit for bit (R: the product is one rounding of x*y).

Inputs sit between NaN guard regions and outputs start as NaN (torch's deterministic mode fills new
tensors), so an out-of-bounds read or an unwritten output cannot pass.  Deliberately broken copies of the
generated source (mutants: a wrong lane mask, an off-by-one tile, a missing barrier, ...) must fail the same
checks: those are the tests of the tests.
"""
from __future__ import annotations

import hashlib
import random
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from cuda_emulation import EmuBackend, EmuLibrary, EmulationError, find_compiler, group_of
from runtime import load_algebra
from runtime.kernels import reference
from runtime.kernels.cuda import _backend, _launch, ops

ALGEBRAS = ["R", "C", "H", "Dual", "Cross3", "M2R", "M3R", "M4R", "M2C", "RandH", "RandM4R"]
USER = "Σ3"                                     # a user algebra (non-ASCII name: the kernels' C prefix differs)
ALL = ALGEBRAS + [USER]
DTYPES = {"f32": torch.float32, "f64": torch.float64, "f16": torch.float16, "bf16": torch.bfloat16}
UNIT = {torch.float64: 2.0**-53, torch.float32: 2.0**-24, torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}
GUARD = 64                                      # bytes of NaN (floats) or -1 (integers) on each side of an input
USER_SPEC = '''from codegen.spec import algebra

Σ3 = algebra("Σ3", basis=["1", "a", "b"], products={"a*a": "1/2*b - 1", "a*b": "2*a", "b*a": "b - a", "b*b": "3"},
             unit="1", title="a small non-commutative test algebra")
'''

pytestmark = pytest.mark.skipif(find_compiler() is None, reason="no C++ compiler for the CUDA emulation")


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def user_algebra(tmp_path_factory):
    from codegen.build import build

    specs = tmp_path_factory.mktemp("user_spec")
    (specs / "user.py").write_text(USER_SPEC)
    out = tmp_path_factory.mktemp("user_generated")
    build(spec_dir=specs, out_dir=out)
    return load_algebra(USER, path=out)


def algebra(name: str, user_algebra):
    return user_algebra if name == USER else load_algebra(name)


@pytest.fixture(scope="session")
def emu_libraries(user_algebra):
    """One emulation library per algebra (cached on disk by source hash), built two at a time."""
    algs = [load_algebra(n) for n in ALGEBRAS] + [user_algebra]
    sources = [_launch.table(a).source for a in algs]
    with ThreadPoolExecutor(2) as pool:
        libs = list(pool.map(EmuLibrary.build, sources))
    return {hashlib.sha256(s.encode()).hexdigest(): lib for s, lib in zip(sources, libs)}


@pytest.fixture(scope="session")
def deterministic_fill():
    """torch.empty fills new tensors with NaN (integers: their maximum), so unwritten outputs show."""
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(prev)


def install(backend, monkeypatch):
    """Route runtime.kernels.cuda's launches to `backend` on a pretend device of 2 SMs."""
    monkeypatch.setattr(_backend, "get_backend", lambda: backend)
    monkeypatch.setattr(_launch, "sm_count", lambda device: 2)
    return backend


@pytest.fixture
def emu(emu_libraries, deterministic_fill, monkeypatch):
    """The emulator behind runtime.kernels.cuda, each launch with the next thread schedule (forward, reverse,
    shuffled, warps running ahead): results must not depend on it."""
    return install(EmuBackend(occupancy=1, order="mixed", libraries=emu_libraries), monkeypatch)


# ------------------------------------------------------------------------------------------- helpers
def guarded(t: torch.Tensor) -> torch.Tensor:
    """A contiguous, 16-byte aligned copy of t with GUARD bytes of NaN (-1 for integers) on either side."""
    pad = GUARD // t.element_size()
    fill = float("nan") if t.dtype.is_floating_point else -1
    for _ in range(4):
        buf = torch.full((t.numel() + 2 * pad + 16,), fill, dtype=t.dtype)
        skip = (-buf.data_ptr() % 16) // t.element_size()
        if (buf.data_ptr() + skip * t.element_size()) % 16 == 0:
            break
    view = buf[skip + pad: skip + pad + t.numel()].view(t.shape)
    view.copy_(t)
    return view


def rand(shape, dtype, gen) -> torch.Tensor:
    return guarded(torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype))


def check(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype, terms: int, what: str) -> None:
    """got (storage dtype) against the float64 reference of the same stored inputs: finite everywhere, and
    |got - want| <= u |want| + 8 terms u_acc max(1, |want|max): one rounding to the storage type (unit u)
    after a float32 (float64 for f64) accumulation of `terms` products."""
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    assert got.dtype == dtype, f"{what}: dtype {got.dtype} != {dtype}"
    g = got.double()
    bad = ~torch.isfinite(g)
    assert not bad.any(), f"{what}: {int(bad.sum())} of {g.numel()} outputs not finite (unwritten, or read out of bounds)"
    if not g.numel():
        return
    acc = UNIT[torch.float64] if dtype == torch.float64 else UNIT[torch.float32]
    scale = max(1.0, float(want.abs().max()))
    tol = UNIT[dtype] * want.abs() + 8 * terms * acc * scale
    err = (g - want).abs()
    worst = int(torch.argmax(err - tol))
    assert bool((err <= tol).all()), (f"{what}: error {float(err.flatten()[worst]):.3g} > tolerance "
                                      f"{float(tol.flatten()[worst]):.3g} at flat index {worst}")


def seeded() -> tuple[torch.Generator, int]:
    seed = random.randrange(2**31)
    return torch.Generator().manual_seed(seed), seed


def random_bsr(out: int, inn: int, density: float, gen: torch.Generator):
    """Block-CSR pattern with every third row empty (crow, col int64, guarded)."""
    mask = torch.rand(out, inn, generator=gen) < density
    mask[::3] = False
    crow = torch.zeros(out + 1, dtype=torch.int64)
    crow[1:] = mask.sum(1).cumsum(0)
    col = mask.nonzero()[:, 1].contiguous()
    return guarded(crow), guarded(col), int(mask.sum(1).max()) if out else 0


# ---------------------------------------------------------------------------------------- the checks
EW_SHAPES = [(1,), (3,), (17,), (45, 23)]        # n = 1, 3, 17, 1035; the post-map bias broadcasts over rows


def check_elementwise(alg, s: str, be) -> None:
    """mul_fwd, mul_bwd, premap / postmap U V W through the glue, and a grid-stride launch."""
    dtype, d, r = DTYPES[s], alg.dim, alg.rank
    gen, seed = seeded()
    terms = d * max(d, r)
    t = _launch.table(alg)
    for shape in EW_SHAPES:
        what = f"{alg.name} {s} n={shape} seed={seed}"
        x, y, g = (rand(shape + (d,), dtype, gen) for _ in range(3))
        x64, y64, g64 = x.double(), y.double(), g.double()
        check(_launch.mul_fwd(alg, x, y), reference.mul(alg, x64, y64), dtype, terms, f"mul_fwd {what}")
        for got, want, side in zip(_launch.mul_bwd(alg, x, y, g), reference.mul_backward(alg, x64, y64, g64), "xy"):
            check(got, want, dtype, terms, f"mul_bwd g{side} {what}")
        if s not in t.data["map_storage"]:
            continue
        for P in "UVW":
            check(_launch.premap(alg, P, x), reference.premap(alg, P, x64), dtype, terms, f"premap {P} {what}")
            m = rand((r,) + shape, dtype, gen)
            bias = rand(shape[-1:] + (d,), dtype, gen) if P != "U" else None
            want = reference.postmap(alg, P, m.double(), None if bias is None else bias.double())
            check(_launch.postmap(alg, P, m, bias), want, dtype, terms, f"postmap {P} bias={bias is not None} {what}")
    # a grid of 2 x 64 threads over 1035 elements: every thread goes round the grid-stride loop 8 or 9 times;
    # the gradient kernel with gy not wanted (null pointer)
    n = 1035
    x, y, g = (rand((n, d), dtype, gen) for _ in range(3))
    z, gx = torch.full_like(x, float("nan")), torch.full_like(x, float("nan"))
    pre = f"{t.prefix}_"
    be.function(t.source, f"ew_{s}", f"{pre}mul_fwd_{s}", None)((2, 1, 1), (64, 1, 1),
                                                               (x.data_ptr(), y.data_ptr(), z.data_ptr(), n))
    check(z, reference.mul(alg, x.double(), y.double()), dtype, terms, f"mul_fwd grid-stride {alg.name} {s}")
    be.function(t.source, f"ew_{s}", f"{pre}mul_bwd_{s}", None)(
        (2, 1, 1), (64, 1, 1), (x.data_ptr(), y.data_ptr(), g.data_ptr(), gx.data_ptr(), 0, n))
    check(gx, reference.mul_backward(alg, x.double(), y.double(), g.double())[0], dtype, terms,
          f"mul_bwd grid-stride {alg.name} {s}")


GEMV_SHAPES = [(1, 1), (3, 17), (17, 3), (5, 1030)]
SPLITS = (1, 2, 4, 8)


def check_gemv(alg, s: str, be, tiles=None) -> None:
    """Every tile B: batches 1, B, B + 1 (two batch tiles, the last one ragged) over ragged shapes, splits
    1 / 2 / 4 / 8 in turn, bias or not; the glue's own tile and split choice; 1030 rows on the
    persistent grid (2 resident blocks stride over 129 row groups)."""
    dtype, d = DTYPES[s], alg.dim
    gen, seed = seeded()
    t = _launch.table(alg)
    k = 0
    for b in tiles or t.tiles:
        for out, inn in GEMV_SHAPES:
            w = rand((out, inn, d), dtype, gen)
            bias = rand((out, d), dtype, gen)
            for batch in sorted({1, b, b + 1}):
                x = rand((batch, inn, d), dtype, gen)
                splits, use_bias = SPLITS[k % 4], k % 3 != 1
                k += 1
                bb = bias if use_bias else None
                want = reference.gemv(alg, w.double(), x.double(), None if bb is None else bb.double())
                got = _launch.gemv(alg, w, x, bb, tile=b, splits=splits)
                check(got, want, dtype, inn * d,
                      f"{alg.name} gemv {s} B={b} out={out} in={inn} batch={batch} splits={splits} "
                      f"bias={use_bias} seed={seed}")
    if tiles is None:
        assert _launch.pick_splits(alg, 3, 600, None) > 1 and _launch.pick_splits(alg, 10_000, 600, None) == 1
        for out, inn, batch in ((1030, 3, t.tiles[-1]), (2, 600, 2)):   # the glue's choices of tile and splits
            w, x, bias = rand((out, inn, d), dtype, gen), rand((batch, inn, d), dtype, gen), rand((out, d), dtype, gen)
            got = _launch.gemv(alg, w, x, bias)
            name, grid, block, args = be.launches[-1]
            tile, splits = _launch.pick_tile(alg, batch), _launch.pick_splits(alg, out, inn, None)
            assert name.endswith(f"_b{tile}") and args[-1] == splits
            row_groups = -(-out // (block[0] // 32 // splits))
            assert grid[0] == min(row_groups, 2 * be.occupancy_blocks) and grid[1] * tile >= batch  # persistent grid
            check(got, reference.gemv(alg, w.double(), x.double(), bias.double()), dtype, inn * d,
                  f"{alg.name} gemv {s} auto out={out} in={inn} batch={batch} grid={grid} seed={seed}")


def check_bsr(alg, s: str, be, tiles=None) -> None:
    """Every tile B: batches 1, B, B + 1; 17 rows (every third one empty) x 3 or 1030 columns, and an
    all-empty 3 x 5 matrix; bias or not."""
    dtype, d = DTYPES[s], alg.dim
    gen, seed = seeded()
    t = _launch.table(alg)
    k = 0
    for b in tiles or t.tiles:
        for out, inn, density in ((17, 3, 0.7), (17, 1030, 0.3), (3, 5, 0.0), (1, 40, 0.9)):
            crow, col, per_row = random_bsr(out, inn, density, gen)
            values = rand((col.numel(), d), dtype, gen)
            bias = rand((out, d), dtype, gen)
            for batch in sorted({1, b, b + 1}):
                x = rand((batch, inn, d), dtype, gen)
                bb = bias if k % 2 else None
                k += 1
                want = reference.bsr_linear(alg, crow, col, values.double(), x.double(),
                                            None if bb is None else bb.double())
                check(_launch.bsr(alg, crow, col, values, x, bb, tile=b), want, dtype, max(1, per_row) * d,
                      f"{alg.name} bsr {s} B={b} out={out} in={inn} batch={batch} bias={bb is not None} seed={seed}")


def check_conversions(s: str, be) -> None:
    """R's product is x*y rounded once: the kernel's result equals torch's float product rounded to the
    storage type, bit for bit (2^16 random storage values times short mantissas: many exact ties)."""
    alg, dtype = load_algebra("R"), DTYPES[s]
    gen, seed = seeded()
    n = 1 << 16
    bits = torch.randint(0, 1 << 16, (n,), generator=gen, dtype=torch.int32).to(torch.int16)
    x = bits.view(dtype).float()
    x = torch.where(torch.isfinite(x), x, torch.ones_like(x)).to(dtype)
    y = (1 + torch.randint(0, 64, (n,), generator=gen) / 64.0).to(dtype)
    got = _launch.mul_fwd(alg, guarded(x[:, None]), guarded(y[:, None]))[:, 0]
    want = (x.float() * y.float()).to(dtype)
    same = (got.view(torch.int16) == want.view(torch.int16)) | (torch.isnan(got) & torch.isnan(want))
    assert bool(same.all()), (f"{s}: {int((~same).sum())} results differ in their bits, first at "
                              f"{int((~same).nonzero()[0])} (seed {seed})")


def assert_all_launched(be, alg, s: str, kinds: set[str]) -> None:
    """Every kernel of the algebra's table of these kinds and storage ran in this test."""
    want = {k["name"] for k in _launch.table(alg).data["kernels"] if k["storage"] == s and k["kind"] in kinds}
    ran = {name for name, *_ in be.launches}
    assert want and want <= ran, f"never launched: {sorted(want - ran)}"


# ------------------------------------------------------------------------------------------ the tests
@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("s", ["f32", "f64", "f16", "bf16"])
def test_elementwise_kernels(emu, user_algebra, name, s):
    alg = algebra(name, user_algebra)
    check_elementwise(alg, s, emu)
    assert_all_launched(emu, alg, s, {"mul_fwd", "mul_bwd", "premap", "postmap"})


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("s", ["f32", "f16", "bf16"])
def test_gemv_kernels(emu, user_algebra, name, s):
    alg = algebra(name, user_algebra)
    check_gemv(alg, s, emu)
    assert_all_launched(emu, alg, s, {"gemv"})


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("s", ["f32", "f16", "bf16"])
def test_bsr_kernels(emu, user_algebra, name, s):
    alg = algebra(name, user_algebra)
    check_bsr(alg, s, emu)
    assert_all_launched(emu, alg, s, {"bsr"})


def test_kernel_kinds_are_known(user_algebra):
    """Every kernel of every table is of a kind the tests above launch, in the group the runtime compiles."""
    for alg in [load_algebra(n) for n in ALGEBRAS] + [user_algebra]:
        for k in _launch.table(alg).data["kernels"]:
            assert k["kind"] in {"mul_fwd", "mul_bwd", "premap", "postmap", "gemv", "bsr"}, k
            assert group_of(k["name"]) in {f"ew_{k['storage']}", f"mat_{k['storage']}"}, k


@pytest.mark.parametrize("s", ["f16", "bf16"])
def test_storage_conversions_in_kernels_bit_exact(emu, s):
    check_conversions(s, emu)


def test_misaligned_views_are_realigned_or_refused(emu):
    """The glue's callers (ops.prep) copy a misaligned view; a misaligned pointer reaching a kernel's vector
    load is an emulation error (the device would fault)."""
    alg, dtype, d = load_algebra("H"), torch.float16, 4
    buf = rand((1 + 5 * 9 * d,), dtype, torch.Generator().manual_seed(1))
    x = buf[1:].view(5, 9, d)                            # 2-byte offset from a 16-byte boundary
    w = rand((3, 9, d), dtype, torch.Generator().manual_seed(2))
    assert x.data_ptr() % 16
    got = _launch.gemv(alg, ops.prep(w), ops.prep(x), None)
    check(got, reference.gemv(alg, w.double(), x.double(), None), dtype, 9 * d, "gemv of a realigned view")
    y = torch.empty(5, 3, d, dtype=dtype)
    t = _launch.table(alg)
    with pytest.raises(EmulationError, match="misaligned"):
        emu.function(t.source, "mat_f16", f"{t.prefix}_gemv_f16_b8", None)(
            (1, 1, 1), (256, 1, 1), (w.data_ptr(), x.data_ptr(), 0, y.data_ptr(), 3, 9, 5, 1))


@pytest.mark.parametrize("s", ["f32", "bf16"])
def test_batches_beyond_the_grid_limit_are_chunked(emu, monkeypatch, s):
    """Batches over MAX_GRID_Y tiles go in several launches, each from its own batch row (pretend the
    limit is 2 tiles: 11 rows of tile 2 are 3 launches)."""
    monkeypatch.setattr(_launch, "MAX_GRID_Y", 2)
    alg, dtype = load_algebra("H"), DTYPES[s]
    gen, seed = seeded()
    w, x, bias = rand((6, 9, 4), dtype, gen), rand((11, 9, 4), dtype, gen), rand((6, 4), dtype, gen)
    n0 = len(emu.launches)
    check(_launch.gemv(alg, w, x, bias, tile=2), reference.gemv(alg, w.double(), x.double(), bias.double()),
          dtype, 36, f"chunked gemv {s} seed={seed}")
    assert [a[1][1] for a in emu.launches[n0:]] == [2, 2, 2] and [a[3][6] for a in emu.launches[n0:]] == [4, 4, 3]
    crow, col, per_row = random_bsr(6, 9, 0.5, gen)
    values = rand((col.numel(), 4), dtype, gen)
    check(_launch.bsr(alg, crow, col, values, x, bias, tile=2),
          reference.bsr_linear(alg, crow, col, values.double(), x.double(), bias.double()), dtype, max(1, per_row) * 4,
          f"chunked bsr {s} seed={seed}")


@pytest.mark.parametrize("order", ["forward", "reverse", "shuffle", "warps-ahead"])
def test_thread_order_does_not_matter(emu, order):
    """The same results whatever order the emulator runs the threads of a block in."""
    emu.order = order
    alg = load_algebra("H")
    check_gemv(alg, "f32", emu, tiles=[2])
    check_bsr(alg, "bf16", emu, tiles=[4])


# ------------------------------------------------------------------------------- mutants (tests of tests)
def _gemv(alg, s, be):
    check_gemv(alg, s, be, tiles=[1, 4])


def _bsr(alg, s, be):
    check_bsr(alg, s, be, tiles=[1, 4])


def _ew(alg, s, be):
    check_elementwise(alg, s, be)


def _conv(alg, s, be):
    check_conversions(s, be)


#: (id, algebra, storage, text in the generated source, its broken replacement, the check that must fail)
MUTANTS = [
    ("lane-mask-misses-lane-31", "H", "f32", "__shfl_xor_sync(0xffffffffu", "__shfl_xor_sync(0x7fffffffu", _gemv),
    ("lane-mask-half-warp", "H", "f16", "__shfl_xor_sync(0xffffffffu", "__shfl_xor_sync(0x0000ffffu", _bsr),
    ("reduction-skips-last-level", "H", "f32", "off > 0; off >>= 1", "off > 1; off >>= 1", _gemv),
    ("tile-off-by-one", "H", "f32", "batch - b0 < B ? batch - b0 : B;", "batch - b0 < B ? batch - b0 : B - 1;", _gemv),
    ("bsr-tile-off-by-one", "C", "bf16", "batch - b0 < B ? batch - b0 : B;", "batch - b0 <= B ? batch - b0 - 1 : B;", _bsr),
    ("row-groups-off-by-one", "H", "f32", "(out + rows - 1) / rows", "(out + rows - 2) / rows", _gemv),
    ("persistent-stride-skips", "H", "f32", "rg += gridDim.x", "rg += gridDim.x + 1", _gemv),
    ("split-partials-dropped", "H", "f32", "for (int j = 1; j < splits; ++j)", "for (int j = 1; j < splits - 1; ++j)", _gemv),
    ("missing-barrier-before-combine", "H", "f32", "      __syncthreads();\n      if (warp % splits == 0)",
     "      if (warp % splits == 0)", _gemv),
    ("missing-barrier-before-next-row-group", "H", "f32", "      __syncthreads();                      // part is",
     "      // part is", _gemv),
    ("misaligned-group-loads", "H", "bf16", "* (long long)sizeof(S)) % 16 == 0", "* (long long)sizeof(S)) % 8 == 0", _gemv),
    ("bsr-drops-last-nonzero", "M2R", "f32", "p < end; p += nlanes", "p + 1 < end; p += nlanes", _bsr),
    ("bsr-row-off-by-one", "H", "f32", "const long long o = (long long)blockIdx.x * 8 + warp;",
     "const long long o = (long long)blockIdx.x * 8 + warp + 1;", _bsr),
    ("grid-stride-skips", "Cross3", "f32", "e += AN_THREAD_STRIDE", "e += AN_THREAD_STRIDE + 1", _ew),
    ("half-rounds-ties-up", "R", "f16", "u += 0xc8000fffu + odd;", "u += 0xc8001000u + 0 * odd;", _conv),
]


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m[0] for m in MUTANTS])
def test_mutant_is_caught(emu_libraries, deterministic_fill, monkeypatch, mutant):
    mid, name, s, find, replace, run = mutant
    alg = load_algebra(name)
    t = _launch.table(alg)
    assert t.source.count(find) >= 1, f"mutant {mid}: {find!r} no longer in the generated source (update it)"
    broken = t.source.replace(find, replace)
    group = f"mat_{s}" if run in (_gemv, _bsr) else f"ew_{s}"
    lib = EmuLibrary.build(broken, group=group)
    be = install(EmuBackend(occupancy=1, order="mixed", libraries={hashlib.sha256(t.source.encode()).hexdigest(): lib}),
                 monkeypatch)
    with pytest.raises((AssertionError, EmulationError)) as caught:
        run(alg, s, be)
    print(f"{mid}: {caught.type.__name__}: {str(caught.value).splitlines()[0]}")



# ----------------------------------------------------------------------------- the emulator's own rules
EMULATOR_PROBES = r'''
extern "C" __global__ void warp_ops(int* out) {
  const int lane = threadIdx.x & 31, v = 100 * (threadIdx.x >> 5) + lane;
  int* o = out + 8 * threadIdx.x;
  o[0] = __shfl_down_sync(0xffffffffu, v, 3);
  o[1] = __shfl_up_sync(0xffffffffu, v, 5);
  o[2] = __shfl_sync(0xffffffffu, v, 7);
  o[3] = __shfl_xor_sync(0xffffffffu, v, 9, 8);
  o[4] = (int)__ballot_sync(0xffffffffu, lane % 3 == 0);
  o[5] = __all_sync(0xffffffffu, lane < 40) + 2 * __any_sync(0xffffffffu, lane == 31);
  double d = __shfl_xor_sync(0xffffffffu, 0.5 * v, 1);
  o[6] = (int)(2 * d);
  o[7] = 0;
}
extern "C" __global__ void lane_outside_mask(int* out) {
  out[threadIdx.x] = __shfl_xor_sync(0xfffffffeu, (int)threadIdx.x, 1);
}
extern "C" __global__ void reads_lane_outside_mask(int* out) {
  if ((threadIdx.x & 31) >= 16) return;
  out[threadIdx.x] = __shfl_xor_sync(0x0000ffffu, (int)threadIdx.x, 16);
}
extern "C" __global__ void mask_names_returned_lane(int* out) {
  if ((threadIdx.x & 31) == 3) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, (int)threadIdx.x, 1);
}
extern "C" __global__ void barrier_after_return(int* out) {
  if (threadIdx.x == 5) return;
  __syncthreads();
  out[threadIdx.x] = 1;
}
extern "C" __global__ void divergent_sync(int* out) {
  if ((threadIdx.x & 31) < 16) __syncthreads();
  else out[threadIdx.x] = __shfl_xor_sync(0xffff0000u, (int)threadIdx.x, 1);
}
template <int N> __device__ float block_sum(float v) {
  __shared__ float part[N];
  part[threadIdx.x] = v;
  __syncthreads();
  float s = 0.0f;
  for (int i = 0; i < N; ++i) s += part[i];
  __syncthreads();
  return s;
}
extern "C" __global__ void shared_memory(float* out) {
  // block 0 fills the shared array, block 1 reads it unwritten (NaN on the emulator), block 2 sums across warps
  if (blockIdx.x == 2) { out[2 * 64 + threadIdx.x] = block_sum<64>((float)threadIdx.x); return; }
  __shared__ float buf[64];
  if (blockIdx.x == 0) buf[threadIdx.x] = 1.0f;
  __syncthreads();
  out[blockIdx.x * 64 + threadIdx.x] = buf[63 - threadIdx.x];
}
'''


@pytest.fixture(scope="module")
def probes():
    return EmuLibrary.build(EMULATOR_PROBES)


def test_emulated_warp_operations(probes):
    out = torch.full((64, 8), -1, dtype=torch.int32)
    probes.launch("warp_ops", (1, 1, 1), (64, 1, 1), (out.data_ptr(),))
    for t in range(64):
        w, lane = t // 32, t % 32
        v = lambda src: 100 * w + src                                     # noqa: E731
        want = [v(lane + 3 if lane + 3 < 32 else lane), v(lane - 5 if lane >= 5 else lane), v(7),
                v(lane ^ 9 if (lane ^ 9) // 8 == lane // 8 else lane),
                sum(1 << i for i in range(32) if i % 3 == 0), 1 + 2, v(lane ^ 1), 0]
        assert out[t].tolist() == want, (t, out[t].tolist(), want)


@pytest.mark.parametrize("kernel, message", [
    ("lane_outside_mask", "does not include the calling lane"),
    ("reads_lane_outside_mask", "reads lane 1[6-9]|reads lane 2|reads lane 3"),
    ("mask_names_returned_lane", "live lanes are 0xfffffff7"),
    ("barrier_after_return", r"__syncthreads\(\) while 1 of 64 threads have already returned"),
    ("divergent_sync", "deadlock"),
])
def test_emulator_refuses_what_the_device_does_not_define(probes, kernel, message):
    out = torch.zeros(64, dtype=torch.int32)
    with pytest.raises(EmulationError, match=message):
        probes.launch(kernel, (1, 1, 1), (64, 1, 1), (out.data_ptr(),))


def test_emulated_shared_memory(probes):
    out = torch.zeros(3, 64)
    probes.launch("shared_memory", (3, 1, 1), (64, 1, 1), (out.data_ptr(),))
    assert bool((out[0] == 1).all())
    assert bool(out[1].isnan().all())                   # a new block's shared memory is not the last one's
    assert bool((out[2] == sum(range(64))).all())       # a barrier makes every warp's write visible
