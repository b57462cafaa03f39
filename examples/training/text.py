"""Language-modelling data: enwik8 (bytes) and WikiText-103 (words), as token streams and windows.

enwik8: the first 10^8 bytes of the English Wikipedia dump, split 90 M / 5 M / 5 M bytes into
train / valid / test (the standard split; the file `enwik8` or `enwik8.zip`).  A shorter file is split
in the same proportions (for tests), and `standard` says which case applies.  Vocabulary: the 256 byte
values; the metric is bits per byte.

WikiText-103: the tokenised files `wiki.train.tokens`, `wiki.valid.tokens`, `wiki.test.tokens` (also
WikiText-2, same format).  Every line is split on whitespace and ends with `<eos>`; the vocabulary is
every word of the training split (most frequent first), and a word outside it reads as `<unk>` (the
files already use `<unk>` for rare words).  The metric is perplexity per word.  Encoding WikiText-103 takes
a minute in Python; `load_wikitext` caches the result by file size and time.

Training windows start at a random offset inside each stride of `seq_len` tokens (a new offset per epoch
and window, from the seeded per-sample RNG); evaluation windows tile the split without overlap, so every
token but the first is predicted exactly once, from its position within its window.
"""
from __future__ import annotations

import hashlib
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

__all__ = ["TokenData", "load_enwik8", "load_wikitext", "TrainWindows", "EvalWindows", "ENWIK8_BYTES",
           "WIKITEXT_FILES"]

ENWIK8_BYTES = 10 ** 8
ENWIK8_SPLIT = (90 * 10 ** 6, 5 * 10 ** 6, 5 * 10 ** 6)
WIKITEXT_FILES = {"train": "wiki.train.tokens", "valid": "wiki.valid.tokens", "test": "wiki.test.tokens"}


@dataclass
class TokenData:
    splits: dict[str, torch.Tensor]        # "train" / "valid" / "test": 1-D integer token streams
    vocab: list[str]                       # token id -> word ([] for bytes: id = byte value)
    standard: bool                         # the standard split of the standard file

    @property
    def vocab_size(self) -> int:
        return len(self.vocab) or 256

    def decode(self, ids: list[int]) -> str:
        if not self.vocab:
            return bytes(ids).decode("utf-8", errors="replace")
        return " ".join(self.vocab[i] for i in ids).replace(" <eos> ", "\n")


def _read_bytes(path: Path) -> bytes:
    if path.suffix == ".zip":
        try:
            z = zipfile.ZipFile(path)
        except zipfile.BadZipFile as e:
            raise ValueError(f"{path} is not a zip file ({e})") from None
        with z:
            names = [n for n in z.namelist() if not n.endswith("/")]
            if len(names) != 1:
                raise ValueError(f"{path} should hold one file (enwik8), holds {names[:5]}")
            return z.read(names[0])
    return path.read_bytes()


def load_enwik8(path: str | Path) -> TokenData:
    """Bytes of `path` (a file, or a folder holding `enwik8` / `enwik8.zip`), split 90/5/5."""
    path = Path(path)
    if path.is_dir():
        hits = [path / n for n in ("enwik8", "enwik8.zip") if (path / n).is_file()]
        if not hits:
            raise FileNotFoundError(f"{path} holds neither enwik8 nor enwik8.zip")
        path = hits[0]
    data = _read_bytes(path)[:ENWIK8_BYTES]
    n = len(data)
    if n < 1000:                        # (checked first: torch.frombuffer refuses an empty buffer)
        raise ValueError(f"{path} holds {n} bytes: too few to split into train/valid/test")
    stream = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    standard = n == ENWIK8_BYTES
    n_train, n_valid, _ = ENWIK8_SPLIT if standard else (n * 9 // 10, n // 20, n - n * 9 // 10 - n // 20)
    splits = {"train": stream[:n_train], "valid": stream[n_train:n_train + n_valid],
              "test": stream[n_train + n_valid:]}
    return TokenData(splits, [], standard)


def _words(path: Path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            yield from line.split()
            yield "<eos>"


def _encode_wikitext(folder: Path) -> dict:
    counts = Counter(_words(folder / WIKITEXT_FILES["train"]))
    counts.setdefault("<unk>", 0)
    vocab = sorted(counts, key=lambda w: (-counts[w], w))
    index = {w: i for i, w in enumerate(vocab)}
    unk = index["<unk>"]
    splits = {name: torch.tensor([index.get(w, unk) for w in _words(folder / fname)], dtype=torch.int32)
              for name, fname in WIKITEXT_FILES.items()}
    return {"splits": splits, "vocab": vocab}


def load_wikitext(folder: str | Path, cache_dir: str | Path | None = None) -> TokenData:
    """The three WikiText token files of `folder`, encoded (and cached in `cache_dir` when given)."""
    folder = Path(folder)
    missing = [f for f in WIKITEXT_FILES.values() if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {', '.join(missing)} (the WikiText token files)")
    key = hashlib.sha256(repr([(f, (folder / f).stat().st_size, (folder / f).stat().st_mtime_ns)
                               for f in sorted(WIKITEXT_FILES.values())]).encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"wikitext-{key}.pt" if cache_dir is not None else None
    if cache is not None and cache.is_file():
        enc = torch.load(cache, weights_only=True)
    else:
        enc = _encode_wikitext(folder)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(cache.name + ".tmp")
            torch.save(enc, tmp)
            tmp.replace(cache)
    n_words = sum(len(s) for s in enc["splits"].values())
    standard = len(enc["vocab"]) == 267_735 and n_words > 10 ** 8
    return TokenData(enc["splits"], list(enc["vocab"]), standard)


class TrainWindows(Dataset):
    """Window i: tokens [s, s + seq_len] (seq_len + 1 of them) with s = i * seq_len + a random offset in
    [0, seq_len) drawn from torch's RNG (seeded per sample by the sampler)."""

    def __init__(self, stream: torch.Tensor, seq_len: int):
        self.stream, self.seq_len = stream, int(seq_len)
        self.n = (len(stream) - 1) // self.seq_len - 1
        if self.n < 1:
            raise ValueError(f"{len(stream)} training tokens are too few for windows of {seq_len}")

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        s = i * self.seq_len + int(torch.randint(0, self.seq_len, (1,)))
        return self.stream[s:s + self.seq_len + 1].long()


class EvalWindows(Dataset):
    """Window i: tokens [i * seq_len, (i + 1) * seq_len] (adjacent windows share one token)."""

    def __init__(self, stream: torch.Tensor, seq_len: int):
        self.stream, self.seq_len = stream, int(seq_len)
        self.n = (len(stream) - 1) // self.seq_len
        if self.n < 1:
            raise ValueError(f"{len(stream)} evaluation tokens are too few for one window of {seq_len}")

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        s = i * self.seq_len
        return self.stream[s:s + self.seq_len + 1].long()
