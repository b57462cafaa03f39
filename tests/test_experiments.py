"""The experiment scripts (examples.imagenet, examples.lm) on tiny data the tests make: training on one
process and on two gloo processes through torchrun, exact resume, and the data pipelines they use."""
from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from examples import imagenet, lm
from examples.training import images, text
from examples.training.loop import lr_at, param_groups
from runtime import sparsity

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------------- data

@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    """3 classes x (8 train + 4 val) random RGB images of random sizes, JPEG and PNG."""
    from PIL import Image

    root = tmp_path_factory.mktemp("imagefolder")
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("val", 4)):
        for c in ("ant", "bee", "cat"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                h, w = rng.integers(18, 40, 2)
                a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                Image.fromarray(a).save(root / split / c / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root


@pytest.fixture(scope="module")
def byte_file(tmp_path_factory) -> Path:
    """200 kB of English-like text (random words)."""
    rng = np.random.default_rng(1)
    words = ("the of and to in a is that for it as was with be by on not he this are or his from at which "
             "but have an they you were her she there one all we").split()
    body = " ".join(words[i] for i in rng.integers(0, len(words), 50_000)).encode()[:200_000]
    path = tmp_path_factory.mktemp("enwik") / "enwik8"
    path.write_bytes(body)
    return path


@pytest.fixture(scope="module")
def wikitext_dir(tmp_path_factory) -> Path:
    rng = np.random.default_rng(2)
    words = [f"w{i}" for i in range(40)]
    root = tmp_path_factory.mktemp("wikitext")
    for name, n_lines, extra in (("train", 300, []), ("valid", 30, ["unseen"]), ("test", 30, [])):
        lines = [" ".join([words[i] for i in rng.integers(0, 40, 12)] + extra) for _ in range(n_lines)]
        (root / f"wiki.{name}.tokens").write_text("\n".join(lines) + "\n")
    return root


def read_log(out: Path) -> list[dict]:
    with open(out / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def torchrun(module: str, args: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", module, *args]
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run


# ------------------------------------------------------------------------------------------ ImageNet

def image_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--data", str(data), "--out", str(out), "--arch", "resnet18", "--base-width", "8", "--image-size", "16",
            "--steps", "6", "--batch-size", "4", "--warmup-steps", "2", "--log-every", "1", "--eval-every", "3",
            "--workers", "0", "--no-progress", *extra]


def independent_top1(data: Path, out: Path, algebra: str) -> float:
    """Top-1 on val from the saved checkpoint, one image at a time (no sharding, no summing over ranks)."""
    ident = json.loads((out / "config.json").read_text())["identity"]
    model = imagenet.build_model(algebra, "resnet18", 3, "params", base_width=8)
    sparsity.load_pruned_state_dict(model, torch.load(out / "checkpoint.pt")["model"])
    model.eval()
    val = images.ImageFolder(data / "val", images.eval_transform(ident["image_size"], False),
                             images.ImageFolder(data / "train").classes)
    hits = 0
    with torch.no_grad():
        for i in range(len(val)):
            x, y = val[i]
            hits += int(model(images.normalize(x[None], torch.device("cpu"))).argmax(1).item() == y)
    return hits / len(val)


def test_imagenet_one_process_evaluates_what_the_checkpoint_predicts(image_dir, tmp_path):
    out = tmp_path / "run"
    final = imagenet.main(image_args(image_dir, out, "--algebra", "H", "--label-smoothing", "0.1"))
    rows = read_log(out)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(float(r["loss"])) and float(r["images_per_s"]) > 0 for r in rows)
    assert rows[2]["val_top1"] and not rows[3]["val_top1"]             # evaluated at step 3 and at the end
    assert 0 <= final["val_top1"] <= final["val_top5"] <= 1
    assert final["val_top1"] == pytest.approx(independent_top1(image_dir, out, "H"), abs=1e-12)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["algebra"] == "H" and summary["val_top1"] == final["val_top1"]
    # the learning rate followed warmup then cosine: base 0.1 * 4 / 256
    assert [float(r["lr"]) for r in rows] == pytest.approx([lr_at(s, 6, 2, 0.1 * 4 / 256) for s in range(6)])


def test_imagenet_resume_repeats_the_uninterrupted_run_exactly(image_dir, tmp_path):
    extra = ["--algebra", "M2R", "--prune", "0.5", "--prune-every", "1", "--prune-start", "0.3", "--prune-end", "0.7",
             "--workers", "1"]                                          # a worker process: per-sample seeds
    imagenet.main(image_args(image_dir, tmp_path / "a", *extra))
    imagenet.main(image_args(image_dir, tmp_path / "b", *extra, "--stop-at", "4"))
    assert [r["step"] for r in read_log(tmp_path / "b")] == ["1", "2", "3", "4"]
    imagenet.main(image_args(image_dir, tmp_path / "b", *extra, "--resume"))
    a, b = read_log(tmp_path / "a"), read_log(tmp_path / "b")
    keys = ["step", "lr", "loss", "sparsity", "val_loss", "val_top1", "val_top5"]
    assert [[r[k] for k in keys] for r in a] == [[r[k] for k in keys] for r in b]
    assert float(a[-1]["sparsity"]) == 0.5
    with pytest.raises(ValueError, match="algebra"):                    # a different run refuses the checkpoint
        imagenet.main(image_args(image_dir, tmp_path / "b", "--algebra", "H", "--resume"))


def test_imagenet_bf16_autocast_and_channels_last_follow_float32(image_dir, tmp_path):
    base = ["--algebra", "M2R", "--steps", "2"]
    imagenet.main(image_args(image_dir, tmp_path / "f32", *base))
    imagenet.main(image_args(image_dir, tmp_path / "bf16", *base, "--amp", "bf16", "--channels-last"))
    f32, bf16 = read_log(tmp_path / "f32"), read_log(tmp_path / "bf16")
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["amp"] == "bf16"
    assert float(bf16[0]["loss"]) != float(f32[0]["loss"])             # bf16 arithmetic did happen
    assert float(bf16[0]["loss"]) == pytest.approx(float(f32[0]["loss"]), abs=0.05)
    assert float(bf16[-1]["val_top1"]) >= 0


@pytest.mark.slow
@pytest.mark.parametrize("sharding", [[], ["--fsdp"]], ids=["ddp", "fsdp"])
def test_imagenet_two_gloo_processes(image_dir, tmp_path, sharding):
    out = tmp_path / "ddp"
    run = torchrun("examples.imagenet", image_args(image_dir, out, "--algebra", "C", "--batch-size", "2",
                                                   "--threads", "1", *sharding))
    assert "2 process(es) on cpu" in run.stdout
    rows = read_log(out)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]        # one log, written by rank 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2
    # the ranks' shards of val add up to the whole set: same top-1 as the checkpoint on every image
    assert summary["val_top1"] == pytest.approx(independent_top1(image_dir, out, "C"), abs=1e-12)


# ------------------------------------------------------------------------------------------------ LM

def lm_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--dataset", "enwik8", "--data", str(data), "--out", str(out), "--d-model", "16", "--n-layers", "2",
            "--n-heads", "2", "--seq-len", "32", "--steps", "6", "--batch-size", "4", "--warmup-steps", "2",
            "--log-every", "1", "--eval-every", "3", "--workers", "0", "--no-progress", "--sample-tokens", "12",
            *extra]


def test_lm_enwik8_resume_repeats_the_uninterrupted_run_exactly(byte_file, tmp_path):
    extra = ["--algebra", "H", "--dropout", "0.1", "--label-smoothing", "0.05"]   # dropout: RNG per step
    final = lm.main(lm_args(byte_file, tmp_path / "a", *extra))
    lm.main(lm_args(byte_file, tmp_path / "b", *extra, "--stop-at", "2"))
    lm.main(lm_args(byte_file, tmp_path / "b", *extra, "--resume"))
    a, b = read_log(tmp_path / "a"), read_log(tmp_path / "b")
    keys = ["step", "lr", "loss", "valid_loss", "valid_bpb", "test_loss", "test_bpb"]
    assert [[r[k] for k in keys] for r in a] == [[r[k] for k in keys] for r in b]
    assert final["valid_bpb"] == pytest.approx(final["valid_loss"] / math.log(2))
    assert 0 < final["test_bpb"] < 9                                     # below log2(256) + untrained slack
    samples = (tmp_path / "a" / "samples.txt").read_text()
    assert samples.count("--- step") == 2 and " >>> " in samples          # generated at step 3 and at the end
    final_sample = samples.split("--- step 6\n")[1]
    assert (tmp_path / "b" / "samples.txt").read_text().split("--- step 6\n")[1] == final_sample


@pytest.mark.slow
def test_lm_two_gloo_processes_match_one_process_with_twice_the_batch(byte_file, tmp_path):
    # DDP averages the two halves' gradients and the sampler splits each global batch between the ranks,
    # so without dropout two processes with batch b train exactly like one with batch 2b (up to rounding)
    extra = ["--algebra", "M2C", "--dropout", "0"]
    one = lm.main(lm_args(byte_file, tmp_path / "one", *extra, "--batch-size", "4"))
    torchrun("examples.lm", lm_args(byte_file, tmp_path / "two", *extra, "--batch-size", "2", "--threads", "1"))
    a, b = read_log(tmp_path / "one"), read_log(tmp_path / "two")
    assert [float(r["loss"]) for r in a] == pytest.approx([float(r["loss"]) for r in b], rel=1e-4)
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert two["world_size"] == 2
    for k in ("valid_bpb", "test_bpb"):
        assert two[k] == pytest.approx(one[k], rel=1e-4)


@pytest.mark.slow
def test_lm_fsdp_two_gloo_processes_match_one_process_and_resume(byte_file, tmp_path):
    # FSDP2 shards parameters, gradients and optimizer state; each rank sees half of every global batch, so
    # the run follows one process with twice the batch; its checkpoint holds full tensors (loads unsharded)
    # and a sharded run resumes from it exactly
    extra = ["--algebra", "H", "--dropout", "0", "--sample-tokens", "0"]
    one = lm.main(lm_args(byte_file, tmp_path / "one", *extra, "--batch-size", "4"))
    args = lm_args(byte_file, tmp_path / "two", *extra, "--batch-size", "2", "--threads", "1", "--fsdp")
    torchrun("examples.lm", args)
    a, b = read_log(tmp_path / "one"), read_log(tmp_path / "two")
    assert [float(r["loss"]) for r in a] == pytest.approx([float(r["loss"]) for r in b], rel=1e-4)
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert two["valid_bpb"] == pytest.approx(one["valid_bpb"], rel=1e-4)
    ckpt = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=False)
    assert ckpt["fsdp"] and all(type(t) is torch.Tensor for t in ckpt["model"].values())
    args_b = lm_args(byte_file, tmp_path / "b", *extra, "--batch-size", "2", "--threads", "1", "--fsdp")
    torchrun("examples.lm", args_b + ["--stop-at", "2"])
    torchrun("examples.lm", args_b + ["--resume"])
    assert [r["loss"] for r in read_log(tmp_path / "b")] == [r["loss"] for r in b]


def test_lm_wikitext_with_a_user_algebra(wikitext_dir, tmp_path):
    spec_dir = tmp_path / "specs"
    spec_dir.mkdir()
    (spec_dir / "split.py").write_text(
        "from codegen.spec import algebra\n\n"
        "SplitC = algebra('SplitC', basis=['1', 'j'], products={'j*j': '1'}, unit='1',\n"
        "                 claims={'associative': True, 'commutative': True}, title='split-complex numbers')\n")
    out = tmp_path / "run"
    args = lm_args(wikitext_dir, out, "--algebra", "SplitC", "--spec-dir", str(spec_dir), "--seq-len", "16")
    args[args.index("enwik8")] = "wikitext103"
    final = lm.main(args)
    assert (out / "generated" / "SplitC" / "manifest.json").is_file()     # built on demand into OUT/generated
    assert final["valid_ppl"] == pytest.approx(math.exp(final["valid_loss"]))
    data = text.load_wikitext(wikitext_dir)
    assert data.vocab_size == 40 + 2                                      # 40 words, <eos>, <unk>
    valid = data.splits["valid"].tolist()
    assert valid.count(data.vocab.index("<unk>")) == 30                    # "unseen" once per line
    assert valid.count(data.vocab.index("<eos>")) == 30
    assert (out / "samples.txt").read_text().count("--- step") == 2


# --------------------------------------------------------------------------------- data pipelines

def test_enwik8_standard_split_of_the_first_1e8_bytes(tmp_path):
    path = tmp_path / "enwik8"
    with open(path, "wb") as f:                      # sparse file of 10^8 + 10 bytes with marked boundaries
        f.truncate(10 ** 8 + 10)
        for pos, b in ((0, 1), (90_000_000 - 1, 2), (90_000_000, 3), (95_000_000, 4), (10 ** 8 - 1, 5), (10 ** 8, 6)):
            f.seek(pos)
            f.write(bytes([b]))
    data = text.load_enwik8(path)
    assert data.standard and data.vocab_size == 256
    tr, va, te = data.splits["train"], data.splits["valid"], data.splits["test"]
    assert (len(tr), len(va), len(te)) == (90_000_000, 5_000_000, 5_000_000)
    assert (int(tr[0]), int(tr[-1]), int(va[0]), int(te[0]), int(te[-1])) == (1, 2, 3, 4, 5)


def test_text_windows_cover_the_stream(byte_file):
    stream = text.load_enwik8(byte_file).splits["valid"]
    ev = text.EvalWindows(stream, 32)
    predicted = torch.cat([ev[i][1:] for i in range(len(ev))])
    assert torch.equal(predicted, stream[1:1 + len(predicted)].long()) and len(stream) - 1 - len(predicted) < 32
    tw = text.TrainWindows(stream, 32)
    starts = set()
    for i in (0, len(tw) - 1):
        for seed in range(20):
            torch.manual_seed(seed)
            w = tw[i]
            assert w.shape == (33,)
            s = next(s for s in range(i * 32, i * 32 + 32) if torch.equal(stream[s:s + 33].long(), w))
            starts.add(s - i * 32)
    assert len(starts) > 5                                                # random offsets within the stride


def test_builtin_transforms_against_numpy(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)
    img = Image.fromarray(a)
    t = images.ToUint8Tensor()
    assert torch.equal(t(img), torch.from_numpy(a).permute(2, 0, 1))
    assert torch.equal(t(images.CenterCrop(20)(img)), torch.from_numpy(a[5:25, 15:35]).permute(2, 0, 1))
    assert images.Resize(15)(img).size == (25, 15)                           # short side 15, aspect kept
    assert torch.equal(t(images.RandomHorizontalFlip(p=1.0)(img)), torch.from_numpy(a[:, ::-1].copy()).permute(2, 0, 1))
    crop = images.RandomResizedCrop(16)
    torch.manual_seed(0)
    for _ in range(50):
        left, top, w, h = crop.box(50, 30)
        assert 0 <= left and left + w <= 50 and 0 <= top and top + h <= 30
        assert 0.08 * 1500 * 0.9 <= w * h <= 1500 and 3 / 4 * 0.85 <= w / h <= 4 / 3 * 1.15
    assert crop(img).size == (16, 16)
    x = torch.from_numpy(a).permute(2, 0, 1)[None]
    expect = (x.float() / 255 - torch.tensor(images.MEAN).view(1, 3, 1, 1)) / torch.tensor(images.STD).view(1, 3, 1, 1)
    assert torch.allclose(images.normalize(x, torch.device("cpu")), expect, atol=1e-6)


def test_image_folder_classes_and_errors(image_dir, tmp_path):
    train = images.ImageFolder(image_dir / "train")
    assert train.classes == ["ant", "bee", "cat"] and len(train) == 24
    assert train.targets == sorted(train.targets)
    (tmp_path / "val" / "dog").mkdir(parents=True)
    with pytest.raises(ValueError, match="classes the training set lacks"):
        images.ImageFolder(tmp_path / "val", classes=train.classes)
    with pytest.raises(FileNotFoundError, match="no train/"):
        imagenet.main(image_args(tmp_path, tmp_path / "out"))


def test_weight_decay_skips_biases_and_norms():
    from runtime.layers import AlgebraConv2d
    from runtime.layers.lift import AlgebraReadout

    model = imagenet.build_model("H", "resnet18", 3, "params", base_width=8)
    decay, no_decay = (set(map(id, g["params"])) for g in param_groups(model, 0.1))
    weights = {id(m.weight) for m in model.modules() if isinstance(m, (AlgebraConv2d, AlgebraReadout))}
    assert decay == weights
    assert no_decay == {id(p) for p in model.parameters()} - weights


def test_whole_model_matching_hits_the_real_total_or_refuses():
    real = lm.build_model("R", 256, 32, 2, 2, 64, 16, None)
    model = lm.build_model("H", 256, 32, 2, 2, 64, 16, "params", scope="model")
    from runtime import counting

    got, want = counting.count_params(model), counting.count_params(real)
    assert abs(got - want) <= 0.1 * want and model.d_model % 2 == 0
    per_layer = lm.build_model("H", 256, 32, 2, 2, 64, 16, "params")
    assert abs(counting.count_params(per_layer) - want) > abs(got - want)   # the embeddings were paid for
    with pytest.raises(ValueError, match="no width matches"):              # vocabulary larger than the layers
        lm.build_model("M4R", 5000, 16, 1, 2, 32, 16, "params", scope="model")
