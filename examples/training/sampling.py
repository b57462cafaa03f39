"""Data order that resumes exactly: seeded per-epoch shuffles, mid-epoch restarts, per-sample seeds.

The training sampler is torch's `DistributedSampler` (this rank's share of a permutation seeded by
(seed, epoch)); `ResumableSampler` starts it `skip` samples into an epoch and tags every index with its
epoch.  `SeededDataset` turns a tagged key (epoch, index) into a fresh RNG seed for that one sample, so
random augmentation (crops, flips, window offsets) depends only on (seed, epoch, index): the same in
every DataLoader worker, after a restart, and with any number of workers.  `ShardSampler` splits an
evaluation set across ranks without padding, so sums over ranks count every sample exactly once.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

__all__ = ["sample_seed", "SeededDataset", "ResumableSampler", "ShardSampler"]

_MASK = (1 << 63) - 1


def sample_seed(*parts: int) -> int:
    """A 63-bit seed from integers (splitmix-style mixing, so nearby inputs give unrelated seeds)."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (int(p) & _MASK)) * 0xBF58476D1CE4E5B9 & _MASK
        h = (h ^ (h >> 31)) * 0x94D049BB133111EB & _MASK
    return h


class SeededDataset(Dataset):
    """`dataset[index]` with torch's global RNG seeded from (seed, epoch, index) for key (epoch, index);
    a plain int key reads the sample without reseeding (evaluation).  The caller's RNG state is kept."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, int(seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        if isinstance(key, tuple):
            epoch, index = key
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(sample_seed(self.seed, epoch, index))
                return self.dataset[index]
        return self.dataset[key]


class ResumableSampler(Sampler):
    """(epoch, index) keys of this rank's share of epoch `epoch`, from sample `skip` on."""

    def __init__(self, dataset: Dataset, rank: int, world: int, seed: int, shuffle: bool = True):
        self.base = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed,
                                       drop_last=False)
        self.epoch, self.skip = 0, 0

    @property
    def samples_per_epoch(self) -> int:
        """Samples this rank sees per epoch (the same on every rank)."""
        return len(self.base)

    def start(self, epoch: int, skip: int = 0) -> None:
        self.base.set_epoch(epoch)
        self.epoch, self.skip = int(epoch), int(skip)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for k, i in enumerate(self.base):
            if k >= self.skip:
                yield (self.epoch, i)

    def __len__(self) -> int:
        return max(0, len(self.base) - self.skip)


class ShardSampler(Sampler):
    """Indices rank, rank + world, rank + 2 world, ... of a dataset of n samples (no padding)."""

    def __init__(self, n: int, rank: int, world: int):
        self.indices = range(rank, n, world)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
