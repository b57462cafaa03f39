"""TransformerLM.generate: KV-cached decoding against recomputing the whole prefix every step."""
from __future__ import annotations

import pytest
import torch

from runtime.models import TransformerLM

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB = 23


def make_lm(algebra: str, seed: int = 0, dropout: float = 0.0, dtype=torch.float64) -> TransformerLM:
    torch.manual_seed(seed)
    lm = TransformerLM(VOCAB, d_model=4, n_layers=2, n_heads=2, max_len=24, algebra=algebra, dropout=dropout)
    return lm.to(dtype).eval()


def recompute_greedy(lm: TransformerLM, prompt: torch.Tensor, n: int) -> torch.Tensor:
    """The oracle: run the full forward on the whole sequence for every new token."""
    seq = prompt
    with torch.no_grad():
        for _ in range(n):
            seq = torch.cat([seq, lm(seq)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return seq


@pytest.mark.parametrize("algebra", ["R", "C", "H", "M2C", "M3R", "Dual"])
@pytest.mark.parametrize("batch", [1, 3])
def test_greedy_equals_full_recompute_argmax(algebra, batch):
    lm = make_lm(algebra, seed=batch)
    prompt = torch.randint(0, VOCAB, (batch, 5))
    out = lm.generate(prompt, max_new_tokens=12)
    assert out.shape == (batch, 17) and out.dtype == torch.long
    assert torch.equal(out[:, :5], prompt)
    assert torch.equal(out, recompute_greedy(lm, prompt, 12))


@pytest.mark.parametrize("algebra", ["H", "M2C"])
def test_cached_logits_equal_full_forward_in_chunks(algebra):
    # chunks of several positions after a non-empty cache exercise the explicit causal mask
    lm = make_lm(algebra)
    tokens = torch.randint(0, VOCAB, (2, 20))
    cache = lm.new_cache()
    with torch.no_grad():
        full = lm(tokens)
        parts = [lm(tokens[:, a:b], cache) for a, b in ((0, 7), (7, 8), (8, 15), (15, 20))]
    assert torch.allclose(torch.cat(parts, dim=1), full, atol=1e-10, rtol=0)
    with pytest.raises(ValueError, match="exceeds max_len"):
        lm(tokens[:, :5], cache)                                 # 20 cached + 5 > max_len 24


@pytest.mark.parametrize("context", [torch.inference_mode, torch.no_grad])
def test_generate_under_inference_mode_and_no_grad(context):
    lm = make_lm("M2C", dtype=torch.float32)
    prompt = torch.randint(0, VOCAB, (2, 3))
    expect = recompute_greedy(lm, prompt, 10)
    with context():
        out = lm.generate(prompt, 10)
    assert torch.equal(out, expect)


def test_generate_at_working_size_under_no_grad_between_training_steps():
    # d_model 32 puts the projections on the fold / bilinear paths (the small models above stay on block)
    torch.manual_seed(0)
    lm = TransformerLM(96, d_model=32, n_layers=2, n_heads=4, algebra="M2C", max_len=40)
    opt = torch.optim.SGD(lm.parameters(), lr=0.01)
    for _ in range(2):
        loss = lm.loss(torch.randint(0, 96, (4, 33)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        prompt = torch.randint(0, 96, (2, 5))
        out = lm.generate(prompt, 16)
        assert lm.training
        assert torch.equal(out, recompute_greedy(lm.eval(), prompt, 16))
        lm.train()


def test_generate_at_working_size_under_inference_mode():
    """The reported configuration (M2C, d_model 32: fold / bilinear paths) under inference_mode, where the scratch
    pool once handed out wrong-size buffers: generate equals greedy decoding by full recompute."""
    torch.manual_seed(0)
    lm = TransformerLM(96, d_model=32, n_layers=2, n_heads=4, algebra="M2C", max_len=64).eval()
    prompt = torch.randint(0, 96, (2, 5))
    with torch.inference_mode():
        out = lm.generate(prompt, 20)
        seq = prompt
        for _ in range(20):
            seq = torch.cat([seq, lm(seq)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, seq)


def test_sampling_is_reproducible_with_a_seeded_generator():
    lm = make_lm("H", dtype=torch.float32)
    prompt = torch.randint(0, VOCAB, (4, 2))
    a = lm.generate(prompt, 15, temperature=1.5, generator=torch.Generator().manual_seed(7))
    b = lm.generate(prompt, 15, temperature=1.5, generator=torch.Generator().manual_seed(7))
    c = lm.generate(prompt, 15, temperature=1.5, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a, lm.generate(prompt, 15))       # at this temperature, not the greedy path


def test_top_k_samples_only_among_the_k_most_likely():
    lm = make_lm("C")
    prompt = torch.randint(0, VOCAB, (3, 4))
    out = lm.generate(prompt, 12, temperature=2.0, top_k=3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = lm(out[:, :-1])[:, 3:]                          # the logits each new token was drawn from
    top3 = logits.topk(3, dim=-1).indices
    assert (top3 == out[:, 4:, None]).any(-1).all()
    greedy = lm.generate(prompt, 12)
    assert torch.equal(lm.generate(prompt, 12, temperature=1.0, top_k=1), greedy)


def test_generate_under_bfloat16_autocast():
    lm = make_lm("H", dtype=torch.float32)
    prompt = torch.randint(0, VOCAB, (2, 3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = lm.generate(prompt, 6)
    assert out.shape == (2, 9) and torch.equal(out[:, :3], prompt)
    assert int(out.min()) >= 0 and int(out.max()) < VOCAB


def test_generate_runs_in_eval_mode_and_restores_training_mode():
    lm = make_lm("H", dropout=0.5).train()
    prompt = torch.randint(0, VOCAB, (2, 3))
    out = lm.generate(prompt, 8)
    assert lm.training
    assert torch.equal(out, recompute_greedy(lm.eval(), prompt, 8))


def test_max_len_and_bad_input_are_refused_clearly():
    lm = make_lm("R")
    prompt = torch.randint(0, VOCAB, (1, 20))
    assert lm.generate(prompt, 4).shape == (1, 24)                  # exactly max_len is fine
    with pytest.raises(ValueError, match="exceeds max_len 24"):
        lm.generate(prompt, 5)
    assert torch.equal(lm.generate(prompt, 0), prompt)
    with pytest.raises(ValueError, match="int64"):
        lm.generate(prompt.float(), 2)
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        lm.generate(prompt[0], 2)
    with pytest.raises(ValueError, match="temperature"):
        lm.generate(prompt[:, :3], 2, temperature=-1.0)
    with pytest.raises(ValueError, match="top_k"):
        lm.generate(prompt[:, :3], 2, temperature=1.0, top_k=0)
    with pytest.raises(ValueError, match=r"\[0, 23\)"):
        lm.generate(torch.tensor([[3, VOCAB]]), 2)
