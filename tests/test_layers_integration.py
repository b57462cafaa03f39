"""Algebra layers with torch.compile (fullgraph), CPU autocast (bfloat16) and DistributedDataParallel (gloo)."""
from __future__ import annotations

import copy
import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from runtime.layers import AlgebraConv1d, AlgebraConv2d, AlgebraLinear

from test_functional import oracle_linear


# ---------------------------------------------------------------------------------------- compile
def _compiled_matches_eager(model: nn.Module, x: torch.Tensor, **compile_args) -> tuple[nn.Module, nn.Module]:
    """Outputs and parameter gradients of torch.compile(model, fullgraph=True) equal eager ones; returns
    (compiled, eager copy)."""
    ref = copy.deepcopy(model)
    compiled = torch.compile(model, fullgraph=True, dynamic=False, **compile_args)
    y, y_ref = compiled(x), ref(x)
    if isinstance(y, tuple):                        # recurrent: (output, h_n) or (output, (h_n, c_n))
        y, y_ref = (torch.cat([o.flatten()] + [h.flatten() for h in (s if isinstance(s, tuple) else (s,))])
                    for o, s in (y, y_ref))
    assert torch.allclose(y, y_ref, atol=1e-5)
    g = torch.randn_like(y)
    y.backward(g)
    y_ref.backward(g)
    for p, q in zip(model.parameters(), ref.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-4)
    return compiled, ref


@pytest.mark.slow
@pytest.mark.parametrize("name,method", [("H", "bilinear"), ("M2R", "fold")])
def test_torch_compile_fullgraph(name, method):
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = nn.Sequential(AlgebraConv1d(2, 3, 3, name, padding=1, method=method), nn.Flatten(),
                          AlgebraLinear(3 * 5, 2, name, method=method))
    x = torch.randn(4, 2 * model[0].algebra.dim, 5)
    compiled, ref = _compiled_matches_eager(model, x)
    # the compiled graph sees weight updates (no stale cached combinations)
    with torch.no_grad():
        for p, q in zip(model.parameters(), ref.parameters()):
            p.mul_(0.5)
            q.mul_(0.5)
    assert torch.allclose(compiled(x), ref(x), atol=1e-5)


# ---------------------------------------------------------------------------------------- autocast
@pytest.mark.parametrize("method", ["block", "fold", "bilinear", "auto"])
@pytest.mark.parametrize("name", ["C", "H", "M2R"])
def test_cpu_autocast_bfloat16(name, method):
    torch.manual_seed(1)
    lin = AlgebraLinear(32, 16, name, method=method)
    conv = AlgebraConv2d(4, 4, 3, name, padding=1, method=method)
    d = lin.algebra.dim
    x = torch.randn(8, 32 * d, requires_grad=True)
    xi = torch.randn(2, 4 * d, 6, 6, requires_grad=True)
    ref = oracle_linear(x.detach(), lin.weight.detach(), lin.bias.detach(), lin.algebra)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = lin(x)
        yc = conv(xi)
        assert y.dtype == torch.bfloat16 and yc.dtype == torch.bfloat16
    err = (y.double() - ref).abs().max() / ref.abs().max()
    assert err < 3e-2, err
    with torch.no_grad():
        ref_c = conv(xi)
    errc = (yc.float() - ref_c).abs().max() / ref_c.abs().max()
    assert errc < 3e-2, errc
    (y.float().sum() + yc.float().sum()).backward()
    for p in list(lin.parameters()) + list(conv.parameters()):
        assert p.grad is not None and p.grad.dtype == torch.float32
    assert x.grad.dtype == torch.float32 and xi.grad.dtype == torch.float32
    # bf16 gradients agree with the float32 ones
    g_bf16 = lin.weight.grad.clone()
    lin.weight.grad = None
    lin(x).sum().backward()
    assert (g_bf16 - lin.weight.grad).abs().max() < 3e-2 * lin.weight.grad.abs().max()


# --------------------------------------------------------------------------------------------- DDP
def _make_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(AlgebraConv1d(2, 3, 3, "H", padding=1, method="bilinear", dtype=torch.float64),
                         nn.Tanh(), nn.Flatten(),
                         AlgebraLinear(3 * 6, 2, "M2R", method="fold", dtype=torch.float64),
                         nn.Tanh(),
                         AlgebraLinear(2, 1, "M2R", method="auto", dtype=torch.float64))


def _data():
    g = torch.Generator().manual_seed(123)
    return torch.randn(8, 8, 6, generator=g, dtype=torch.float64), torch.randn(8, 4, generator=g,
                                                                                dtype=torch.float64)


def _train(model, x, y, steps=3):
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(steps):
        opt.zero_grad()
        loss = (model(x) - y).square().mean()
        loss.backward()
        opt.step()
    return model


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    # the parent session already built and checked these algebras; a child re-checking staleness could
    # race with edits to the code generator made while the tests run
    from runtime.registry import load_algebra
    for name in ("H", "M2R"):
        load_algebra(name, check_stale=False)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        model = _make_model(seed=rank)                  # different init per rank: DDP broadcasts rank 0's
        ddp = nn.parallel.DistributedDataParallel(model)
        x, y = _data()
        per = x.shape[0] // world
        _train(ddp, x[rank * per:(rank + 1) * per], y[rank * per:(rank + 1) * per])
        torch.save(model.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
        # Both ranks must be done with gloo before either tears it down: a rank leaving early makes the
        # other abort ("terminate called without an active exception").
        dist.barrier()
    finally:
        dist.destroy_process_group()
    # Trained and saved: leave without the interpreter's teardown, where torch's gloo threads now and then abort
    # the process all the same (as tests/test_fsdp.py's workers do; seen here in a clean-clone CI run).
    os._exit(0)


@pytest.mark.slow
def test_ddp_two_processes_gloo_matches_one_process():
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, "init")
        mp.spawn(_ddp_worker, args=(2, init_file, tmp), nprocs=2, join=True)
        states = [torch.load(os.path.join(tmp, f"rank{r}.pt")) for r in range(2)]
    single = _train(_make_model(seed=0), *_data())
    for key, v in single.state_dict().items():
        assert torch.allclose(states[0][key], states[1][key], atol=0, rtol=0), key
        assert torch.allclose(states[0][key], v, atol=1e-10), key


@pytest.mark.slow
def test_torch_compile_fullgraph_transposed_conv_and_group_norm():
    from runtime.layers import AlgebraConvTranspose1d, AlgebraGroupNorm

    torch._dynamo.reset()
    torch.manual_seed(0)
    model = nn.Sequential(AlgebraConvTranspose1d(2, 4, 3, "H", stride=2, padding=1, output_padding=1,
                                                 method="bilinear"),
                          AlgebraGroupNorm(2, 4, "H", mode="whitening"))
    _compiled_matches_eager(model, torch.randn(3, 2 * 4, 5))


@pytest.mark.slow
@pytest.mark.parametrize("name,method", [("H", "bilinear"), ("M2R", "fold")])
def test_torch_compile_fullgraph_recurrent(name, method):
    """A bidirectional LSTM (the time loop unrolls into one graph) and a GRU cell.  The aot_eager backend
    checks the whole-graph capture and the autograd tracing of the custom Functions; inductor's code
    generation for the unrolled loop would add tens of seconds to the suite."""
    from runtime.layers import AlgebraGRUCell, AlgebraLSTM

    torch._dynamo.reset()
    torch.manual_seed(0)
    lstm = AlgebraLSTM(2, 3, name, bidirectional=True, method=method)
    d = lstm.algebra.dim
    _compiled_matches_eager(lstm, torch.randn(2, 2, 2 * d), backend="aot_eager")
    _compiled_matches_eager(AlgebraGRUCell(2, 3, name, method=method), torch.randn(2, 2 * d), backend="aot_eager")
