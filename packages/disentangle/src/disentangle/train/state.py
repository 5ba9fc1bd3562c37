"""Resumable training state: step counter, data order and atomic checkpoints.

The data order is a pure function of ``(seed, samples_seen)``: epoch e visits a permutation of
the dataset drawn from ``numpy.random.default_rng([seed, e])``, and global micro-batch g covers
positions ``[g·B·W, (g+1)·B·W)`` of the concatenated epochs, process r taking its
``[r·B, (r+1)·B)`` slice (B per-process batch, W processes). Restoring ``samples_seen`` from a
checkpoint therefore restores the exact stream of batches, whatever was prefetched when the run
stopped. RNG states of every process are checkpointed by ``Accelerator.save_state``.

Checkpoints are written to ``checkpoints/.tmp-step_XXXXXXXX`` and renamed to
``checkpoints/step_XXXXXXXX`` once every process has finished writing, so a checkpoint directory
is either complete or absent (a run killed mid-write leaves only a ``.tmp-`` folder, which is
ignored and cleaned up).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Sampler

__all__ = [
    "ResumableBatchSampler",
    "TrainState",
    "latest_checkpoint",
    "remove_stale",
    "save_checkpoint",
]

_STEP_DIR = re.compile(r"^step_(\d{8})$")


@dataclass
class TrainState:
    """Counters saved with every checkpoint (``Accelerator.register_for_checkpointing``)."""

    step: int = 0
    samples_seen: int = 0

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step, "samples_seen": self.samples_seen}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step = int(state["step"])
        self.samples_seen = int(state["samples_seen"])


class ResumableBatchSampler(Sampler[list[int]]):
    """Infinite stream of per-process index batches, deterministic in ``(seed, start)``.

    ``start`` is the number of samples (over all processes) already consumed.
    """

    def __init__(
        self,
        dataset_size: int,
        batch_size: int,
        *,
        seed: int,
        start: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if dataset_size < 1:
            raise ValueError(f"dataset_size: must be ≥ 1, got {dataset_size}")
        self.n, self.batch_size = dataset_size, batch_size
        self.seed, self.start, self.rank, self.world_size = seed, start, rank, world_size

    def _epoch(self, e: int) -> np.ndarray:
        return np.random.default_rng([self.seed, e]).permutation(self.n)

    def __iter__(self) -> Iterator[list[int]]:
        global_batch = self.batch_size * self.world_size
        pos = self.start + self.rank * self.batch_size
        epoch, perm = -1, None
        while True:
            out: list[int] = []
            p = pos
            while len(out) < self.batch_size:
                e, i = divmod(p, self.n)
                if e != epoch:
                    epoch, perm = e, self._epoch(e)
                take = min(self.batch_size - len(out), self.n - i)
                out.extend(perm[i : i + take].tolist())
                p += take
            yield out
            pos += global_batch

    def __len__(self) -> int:  # an infinite sampler: DataLoader never asks in our loop
        raise TypeError("ResumableBatchSampler is infinite")


def latest_checkpoint(root: Path) -> Path | None:
    """The complete checkpoint with the highest step under ``root`` (None if there is none)."""
    if not root.is_dir():
        return None
    steps = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name))]
    return max(steps)[1] if steps else None


def remove_stale(root: Path) -> None:
    """Delete leftovers of interrupted writes and deletions (``.tmp-*``, ``.trash-*``)."""
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith((".tmp-", ".trash-")):
                shutil.rmtree(p, ignore_errors=True)


def save_checkpoint(accelerator, root: Path, step: int, keep: int) -> Path:
    """Atomically write ``accelerator.save_state`` to ``root/step_<step>``; keep the last ``keep``.

    Must be called by every process (each saves its RNG state); the main process renames the
    finished folder into place and prunes old checkpoints.
    """
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp-{final.name}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        if final.exists():
            os.replace(final, root / f".trash-{final.name}")
        os.replace(tmp, final)
        done = sorted(p for p in root.iterdir() if _STEP_DIR.match(p.name))
        for old in done[:-keep]:
            trash = root / f".trash-{old.name}"
            os.replace(old, trash)
        remove_stale(root)
    accelerator.wait_for_everyone()
    return final
