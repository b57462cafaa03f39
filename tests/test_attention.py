"""AlgebraMultiheadAttention and the Transformer encoder / decoder layers against torch's own modules (R) and
against explicit per-head attention on the projected components (other algebras)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from runtime import counting
from runtime.layers import (AlgebraLayerNorm, AlgebraMultiheadAttention, AlgebraTransformerDecoder,
                            AlgebraTransformerDecoderLayer, AlgebraTransformerEncoder,
                            AlgebraTransformerEncoderLayer)

pytestmark = pytest.mark.usefixtures("one_thread")
D64 = torch.float64


def pair(batch_first, kdim=None, vdim=None, **kw):
    t = nn.MultiheadAttention(8, 2, kdim=kdim, vdim=vdim, batch_first=batch_first, **kw).double()
    a = AlgebraMultiheadAttention(8, 2, kdim=kdim, vdim=vdim, batch_first=batch_first, algebra="R", **kw).double()
    a.load_torch_state_dict(t.state_dict())
    return t, a


def qkv(B, L, S, E, kd, vd, batch_first):
    q, k, v = torch.randn(B, L, E, dtype=D64), torch.randn(B, S, kd, dtype=D64), torch.randn(B, S, vd, dtype=D64)
    return (q, k, v) if batch_first else (q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1))


def same(a, b):
    assert (a is None) == (b is None)
    if a is not None:
        assert torch.allclose(a, b, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("dims", [(None, None), (3, 5)])
@pytest.mark.parametrize("extra", [{}, {"add_bias_kv": True}, {"add_zero_attn": True}, {"bias": False}])
def test_mha_equals_torch_over_R(batch_first, dims, extra):
    torch.manual_seed(0)
    t, a = pair(batch_first, *dims, **extra)
    B, L, S = 3, 4, 6
    q, k, v = qkv(B, L, S, 8, dims[0] or 8, dims[1] or 8, batch_first)
    kpm = torch.zeros(B, S, dtype=torch.bool)
    kpm[0, -2:] = True
    float_mask = torch.randn(L, S, dtype=D64)
    bool_mask = torch.rand(B * 2, L, S) > 0.7
    bool_mask[..., 0] = False                                  # no row fully masked
    cases = [{}, {"key_padding_mask": kpm}, {"key_padding_mask": kpm.double() * -3.0},
             {"attn_mask": float_mask, "need_weights": False}, {"attn_mask": bool_mask, "key_padding_mask": kpm},
             {"attn_mask": bool_mask, "average_attn_weights": False}]
    for kw in cases:
        (o1, w1), (o2, w2) = t(q, k, v, **kw), a(q, k, v, **kw)
        same(o1, o2)
        same(w1, w2)
    # gradients agree too
    x = q.clone().requires_grad_()
    g1, = torch.autograd.grad(t(x, k, v, need_weights=False)[0].square().sum(), x)
    g2, = torch.autograd.grad(a(x, k, v, need_weights=False)[0].square().sum(), x)
    same(g1, g2)


def test_mha_causal_unbatched_and_dropout():
    torch.manual_seed(1)
    t, a = pair(True)
    x = torch.randn(2, 5, 8, dtype=D64)
    causal = nn.Transformer.generate_square_subsequent_mask(5, dtype=D64)
    ref = t(x, x, x, attn_mask=causal, is_causal=True, need_weights=False)[0]
    same(a(x, x, x, attn_mask=causal, is_causal=True, need_weights=False)[0], ref)
    same(a(x, x, x, is_causal=True, need_weights=False)[0], ref)             # the hint alone suffices here
    o, w = a(x, x, x, is_causal=True)                                          # explicit weights: causal zeros
    same(o, ref)
    assert torch.all(w.triu(1) == 0)
    kpm = torch.zeros(2, 5, dtype=torch.bool)
    kpm[1, 0] = True
    same(a(x, x, x, is_causal=True, key_padding_mask=kpm)[0],
         t(x, x, x, attn_mask=torch.ones(5, 5, dtype=torch.bool).triu(1), key_padding_mask=kpm)[0])
    for m in (t, a):                                                           # unbatched (L, E)
        m.batch_first = False
    same(a(x[0], x[0], x[0])[0], t(x[0], x[0], x[0])[0])
    same(a(x[0], x[0], x[0])[1], t(x[0], x[0], x[0])[1])
    d = AlgebraMultiheadAttention(4, 2, dropout=0.5, batch_first=True, algebra="H")
    y = torch.randn(2, 6, 16)
    d.eval()
    assert torch.equal(d(y, y, y)[0], d(y, y, y)[0])
    d.train()
    assert not torch.allclose(d(y, y, y, need_weights=False)[0], d.eval()(y, y, y)[0])


@pytest.mark.parametrize("name", ["C", "H", "M2R", "Cross3"])
def test_mha_over_an_algebra_is_real_attention_on_projected_components(name):
    """Cross attention with a padding mask: per head, softmax(<q, k> / sqrt(head reals)) over whole elements."""
    torch.manual_seed(2)
    a = AlgebraMultiheadAttention(4, 2, kdim=3, vdim=2, batch_first=True, algebra=name).double()
    d = a.algebra.dim
    B, L, S = 2, 3, 5
    q, k, v = (torch.randn(B, L, 4 * d, dtype=D64), torch.randn(B, S, 3 * d, dtype=D64),
               torch.randn(B, S, 2 * d, dtype=D64))
    kpm = torch.zeros(B, S, dtype=torch.bool)
    kpm[1, 2:] = True
    Q, K, V = a.q(q), a.k(k), a.v(v)
    hd = 2 * d
    heads, ws = [], []
    for h in range(2):
        sl = slice(h * hd, (h + 1) * hd)
        s = Q[..., sl] @ K[..., sl].transpose(1, 2) / math.sqrt(hd)
        w = torch.softmax(s.masked_fill(kpm[:, None, :], float("-inf")), -1)
        heads.append(w @ V[..., sl])
        ws.append(w)
    out, w = a(q, k, v, key_padding_mask=kpm)
    same(out, a.o(torch.cat(heads, -1)))
    same(w, torch.stack(ws, 1).mean(1))
    same(a(q, k, v, key_padding_mask=kpm, need_weights=False)[0], out)        # the SDPA path agrees
    rep = counting.count(a, q, k, v)
    core = [lc for lc in rep.layers if lc.kind == "AlgebraMultiheadAttention"]
    assert core[0].macs == {"real": 2 * B * L * S * 4 * d}                    # scores and mixing


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("norm_first", [True, False])
def test_encoder_and_decoder_equal_torch_over_R(batch_first, norm_first):
    torch.manual_seed(3)
    E, H, Fd = 8, 2, 12
    te = nn.TransformerEncoder(nn.TransformerEncoderLayer(E, H, Fd, 0.1, "gelu", batch_first=batch_first,
                                                          norm_first=norm_first),
                               2, norm=nn.LayerNorm(E), enable_nested_tensor=False).double().eval()
    ae = AlgebraTransformerEncoder(AlgebraTransformerEncoderLayer(E, H, Fd, 0.1, "gelu", batch_first=batch_first,
                                                                  norm_first=norm_first, algebra="R"),
                                   2, norm=AlgebraLayerNorm(E)).double().eval()
    ae.load_torch_state_dict(te.state_dict())
    src = torch.randn(3, 5, E, dtype=D64)
    tgt = torch.randn(3, 4, E, dtype=D64)
    if not batch_first:
        src, tgt = src.transpose(0, 1), tgt.transpose(0, 1)
    kpm = torch.zeros(3, 5, dtype=torch.bool)
    kpm[1, -1] = True
    m5 = nn.Transformer.generate_square_subsequent_mask(5, dtype=D64)
    for kw in ({}, {"src_key_padding_mask": kpm}, {"mask": m5, "is_causal": True}):
        same(ae(src, **kw), te(src, **kw))
    td = nn.TransformerDecoder(nn.TransformerDecoderLayer(E, H, Fd, 0.1, batch_first=batch_first,
                                                          norm_first=norm_first), 2).double().eval()
    ad = AlgebraTransformerDecoder(AlgebraTransformerDecoderLayer(E, H, Fd, 0.1, batch_first=batch_first,
                                                                  norm_first=norm_first, algebra="R"), 2)
    ad = ad.double().eval()
    ad.load_torch_state_dict(td.state_dict())
    m4 = nn.Transformer.generate_square_subsequent_mask(4, dtype=D64)
    for kw in ({}, {"memory_key_padding_mask": kpm, "tgt_mask": m4, "tgt_is_causal": True}):
        same(ad(tgt, src, **kw), td(tgt, src, **kw))
    layer = AlgebraTransformerEncoderLayer(E, H, Fd, batch_first=True, algebra="R").double().eval()
    tl = nn.TransformerEncoderLayer(E, H, Fd, batch_first=True).double().eval()
    layer.load_torch_state_dict(tl.state_dict())
    x = torch.randn(2, 5, E, dtype=D64)
    same(layer(x), tl(x))


@pytest.mark.parametrize("name", ["C", "H", "M2R"])
def test_algebra_encoder_decoder_train(name):
    torch.manual_seed(4)
    enc = AlgebraTransformerEncoder(AlgebraTransformerEncoderLayer(4, 2, 8, 0.0, batch_first=True, algebra=name,
                                                                   norm_first=True), 2)
    dec = AlgebraTransformerDecoder(AlgebraTransformerDecoderLayer(4, 2, 8, 0.0, batch_first=True, algebra=name), 1)
    d = enc.algebra.dim
    src, tgt, target = torch.randn(4, 6, 4 * d), torch.randn(4, 3, 4 * d), torch.randn(4, 3, 4 * d)
    params = list(enc.parameters()) + list(dec.parameters())
    opt = torch.optim.Adam(params, lr=1e-2)
    losses = []
    for _ in range(15):
        loss = (dec(tgt, enc(src), tgt_is_causal=True) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses
    with pytest.raises(ValueError, match="must be divisible by num_heads"):
        AlgebraMultiheadAttention(5, 2, algebra=name)
    with pytest.raises(ValueError, match="attn_mask must have shape"):
        x = torch.randn(1, 3, 4 * d)
        enc.layers[0].self_attn(x, x, x, attn_mask=torch.zeros(2, 2))
    with pytest.raises(ValueError, match="algebra 'R'"):
        enc.load_torch_state_dict({})
