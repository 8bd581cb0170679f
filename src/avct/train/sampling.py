"""The data order: batches as a pure function of (seed, step), each item's randomness seeded by its
position, so that a resumed run sees exactly the same data."""
from __future__ import annotations

from typing import Any, Iterator

import torch

from .seeding import isolated_rng, derive_seed


# ---- data ----------------------------------------------------------------------------------------------
class StepBatches(torch.utils.data.Sampler):
    """This process's share of the global batch of every step in [start, stop).

    Sample position p = step * batch + j runs through epochs of a fresh permutation each
    (epoch = p // n, permutation seeded from (seed, epoch)); process r takes the r-th contiguous slice
    of each global batch. Yields lists of (position, dataset index)."""

    def __init__(self, num_items: int, batch_size: int, rank: int, world: int, seed: int, start: int, stop: int):
        self.n, self.batch, self.rank, self.world = num_items, batch_size, rank, world
        self.seed, self.start, self.stop = seed, start, stop
        self.local = batch_size // world

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, perm = -1, None
        for step in range(self.start, self.stop):
            first = step * self.batch + self.rank * self.local
            batch = []
            for pos in range(first, first + self.local):
                e, k = divmod(pos, self.n)
                if e != epoch:
                    gen = torch.Generator().manual_seed(derive_seed(self.seed, "epoch", e))
                    epoch, perm = e, torch.randperm(self.n, generator=gen)
                batch.append((pos, int(perm[k])))
            yield batch


class SeededItems(torch.utils.data.Dataset):
    """dataset[i] with the global RNGs seeded from (seed, sample position): reproducible augmentation
    for any worker count, and the training RNG streams stay untouched."""

    def __init__(self, dataset: torch.utils.data.Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        pos, index = key
        with isolated_rng(derive_seed(self.seed, "item", pos)):
            return self.dataset[index]


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch
