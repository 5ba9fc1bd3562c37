"""Resumable training state: step counter, data order and atomic checkpoints.

The data order is a pure function of ``(seed, samples_seen)``: epoch e visits a permutation of
the dataset drawn from ``numpy.random.default_rng([seed, e])``, and global micro-batch g covers
positions ``[g·B·W, (g+1)·B·W)`` of the concatenated epochs, process r taking its
``[r·B, (r+1)·B)`` slice (B per-process batch, W processes). Restoring ``samples_seen`` from a
checkpoint therefore restores the exact stream of batches, whatever was prefetched when the run
stopped. RNG states of every process are checkpointed by ``Accelerator.save_state``.

A checkpoint folder ``checkpoints/step_XXXXXXXX/`` holds::

    model.safetensors       model weights (``Accelerator.save_state``)
    optimizer.bin           optimizer state: a torch pickle of tensors and numbers (idem)
    random_states_<r>.pkl   RNG states of process r: python ``random``, numpy, torch CPU and
                            accelerator generators, a torch pickle (idem)
    train_state.json        ``{"step": ..., "samples_seen": ...}`` (:class:`TrainState`, JSON,
                            written by the main process)
    manifest.json           SHA-256 and size of every other file of the folder

On resume :func:`latest_intact_checkpoint` verifies the manifest of the newest checkpoint; a
damaged one (a truncated, zeroed or edited file) is skipped with a warning for the next newest
intact one, and when none is intact the run stops with :class:`CheckpointError` naming the file.

Loading one runs no code from the folder (:func:`load_checkpoint`): the weights are
safetensors and ``train_state.json`` is plain JSON, validated; every torch pickle (``*.bin``,
``*.pkl``, ``*.pt``) is first loaded with ``torch.load(weights_only=True)`` allowing only tensors,
containers, numbers, strings and numpy arrays, and refused with :class:`CheckpointError` if it
needs any other class or function; only then does ``Accelerator.load_state`` read the folder.
``custom_checkpoint_*.pkl`` files (where older versions had Accelerate pickle the train state;
Accelerate unpickles them with ``weights_only=False``) are refused.

Checkpoints are written to ``checkpoints/.tmp-step_XXXXXXXX`` and renamed to
``checkpoints/step_XXXXXXXX`` once every process has finished writing, so a checkpoint directory
is either complete or absent (a run killed mid-write leaves only a ``.tmp-`` folder, which is
ignored and cleaned up).
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import pickle
import re
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = [
    "MANIFEST_FILE",
    "TRAIN_STATE_FILE",
    "CheckpointError",
    "ResumableBatchSampler",
    "TrainState",
    "check_torch_pickle",
    "latest_checkpoint",
    "latest_intact_checkpoint",
    "load_checkpoint",
    "read_train_state",
    "remove_stale",
    "save_checkpoint",
    "verify_checkpoint",
    "write_manifest",
]

_STEP_DIR = re.compile(r"^step_(\d{8})$")
#: the :class:`TrainState` of a checkpoint, as JSON
TRAIN_STATE_FILE = "train_state.json"
#: checksums of the other files of a checkpoint, as JSON
MANIFEST_FILE = "manifest.json"
#: files of a checkpoint folder that Accelerate reads with ``torch.load`` (pickle)
_PICKLE_SUFFIXES = (".bin", ".pkl", ".pt")
#: besides torch's own weights-only allow-list: what a pickled numpy array needs (numpy's RNG
#: state holds one); reconstructing an array from its bytes runs no code of the file's choosing
_NUMPY_ARRAY_GLOBALS = [
    np.zeros(1).__reduce__()[0],  # numpy's _reconstruct, wherever this numpy version keeps it
    np.ndarray,
    np.dtype,
    type(np.dtype(np.uint32)),
    codecs.encode,
]


class CheckpointError(ValueError):
    """A checkpoint file is missing or malformed, or holds pickled content that is refused."""


@dataclass
class TrainState:
    """Counters saved with every checkpoint (``train_state.json``)."""

    step: int = 0
    samples_seen: int = 0


def read_train_state(checkpoint: Path) -> TrainState:
    """The :class:`TrainState` in ``checkpoint/train_state.json``, validated.

    Raises:
        CheckpointError: the file is missing, not JSON, not exactly ``{"step", "samples_seen"}``
            with integers ≥ 0, or its step disagrees with a ``step_XXXXXXXX`` folder name.
    """
    path = Path(checkpoint) / TRAIN_STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: not a complete checkpoint of this toolkit")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"cannot read {path}: not a JSON file ({err})") from err
    if not isinstance(data, dict) or set(data) != {"step", "samples_seen"}:
        raise CheckpointError(
            f'{path} must hold a JSON object with exactly the keys "step" and "samples_seen", '
            f"got {str(data)[:200]}"
        )
    for key, value in data.items():
        if type(value) is not int or value < 0:
            raise CheckpointError(f"{path}: {key} must be an integer ≥ 0, got {value!r}")
    if (m := _STEP_DIR.match(path.parent.name)) and int(m.group(1)) != data["step"]:
        raise CheckpointError(
            f"{path}: step {data['step']} disagrees with the folder name {path.parent.name}"
        )
    return TrainState(**data)


def _weights_only_reason(err: pickle.UnpicklingError) -> str:
    """The reason in torch's weights-only error, without its advice to allow-list or to load
    with ``weights_only=False``."""
    reason = " ".join(str(err).partition("WeightsUnpickler error:")[2].split()) or str(err)
    for advice in (" Please use ", " Check the documentation"):
        reason = reason.partition(advice)[0]
    return reason


def check_torch_pickle(path: Path) -> None:
    """Load ``path`` with ``torch.load(weights_only=True)`` to prove that it is data only.

    Tensors, containers, numbers, strings and numpy arrays pass; a file that needs any other
    class or function (which unpickling would call: arbitrary code) is refused.

    Raises:
        CheckpointError: the file is refused, truncated or not a torch file.
    """
    try:
        with torch.serialization.safe_globals(_NUMPY_ARRAY_GLOBALS):
            torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: pickled content other than tensors, numbers, strings and numpy arrays is "
            f"refused (unpickling it can run arbitrary code), and this file does not load as "
            f"such data: {_weights_only_reason(err)}"
        ) from err
    except Exception as err:
        raise CheckpointError(f"cannot read {path}: truncated or not a torch file ({err})") from err


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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.relative_to(folder).as_posix() != MANIFEST_FILE
    )


def write_manifest(folder: Path) -> None:
    """Write ``folder/manifest.json``: SHA-256 and size of every other file of the folder."""
    entries = {
        p.relative_to(folder).as_posix(): {"sha256": _sha256(p), "size": p.stat().st_size}
        for p in _files(folder)
    }
    (folder / MANIFEST_FILE).write_text(json.dumps(entries, indent=1) + "\n", encoding="utf-8")


def verify_checkpoint(checkpoint: Path) -> None:
    """Check every file of ``checkpoint`` against its ``manifest.json``.

    Raises:
        CheckpointError: the manifest is missing or unreadable, or a file is missing, added,
            of another size or another checksum (named in the message).
    """
    checkpoint = Path(checkpoint)
    path = checkpoint / MANIFEST_FILE
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(entries, dict):
            raise ValueError("not a JSON object")
        expected = {k: (str(v["sha256"]), int(v["size"])) for k, v in entries.items()}
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(
            f"cannot verify {checkpoint}: {path} is missing or malformed ({err})"
        ) from err
    present = {p.relative_to(checkpoint).as_posix(): p for p in _files(checkpoint)}
    for name in sorted(set(expected) | set(present)):
        if name not in present:
            raise CheckpointError(f"{checkpoint / name} is missing (listed in {MANIFEST_FILE})")
        if name not in expected:
            raise CheckpointError(f"{checkpoint / name} is not listed in {MANIFEST_FILE}")
        sha, size = expected[name]
        if present[name].stat().st_size != size or _sha256(present[name]) != sha:
            raise CheckpointError(f"{checkpoint / name} is damaged: its checksum differs")


def latest_intact_checkpoint(root: Path) -> Path | None:
    """The newest checkpoint under ``root`` that passes :func:`verify_checkpoint`.

    Damaged newer ones are skipped with a :class:`UserWarning` naming the file. Returns None when
    there is no checkpoint at all.

    Raises:
        CheckpointError: checkpoints exist but none is intact (the newest one's error).
    """
    if not Path(root).is_dir():
        return None
    found = sorted(
        (int(m.group(1)), p) for p in Path(root).iterdir() if (m := _STEP_DIR.match(p.name))
    )
    first_error = None
    for _, path in reversed(found):
        try:
            verify_checkpoint(path)
        except CheckpointError as err:
            first_error = first_error or err
            warnings.warn(f"skipping a damaged checkpoint: {err}", stacklevel=2)
            continue
        return path
    if first_error is not None:
        raise CheckpointError(f"no intact checkpoint under {root}; newest: {first_error}")
    return None


def remove_stale(root: Path) -> None:
    """Delete leftovers of interrupted writes and deletions (``.tmp-*``, ``.trash-*``)."""
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith((".tmp-", ".trash-")):
                shutil.rmtree(p, ignore_errors=True)


def save_checkpoint(accelerator, root: Path, state: TrainState, keep: int) -> Path:
    """Atomically write a checkpoint of ``state.step`` to ``root/step_<step>``; keep the last
    ``keep``.

    Must be called by every process (each saves its RNG state through
    ``accelerator.save_state``); the main process adds ``train_state.json``, renames the finished
    folder into place and prunes old checkpoints.
    """
    final = root / f"step_{state.step:08d}"
    tmp = root / f".tmp-{final.name}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / TRAIN_STATE_FILE).write_text(json.dumps(asdict(state)) + "\n", encoding="utf-8")
        write_manifest(tmp)
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


def load_checkpoint(accelerator, checkpoint: Path) -> TrainState:
    """Restore model, optimizer and RNG states from ``checkpoint``; return its :class:`TrainState`.

    Must be called by every process. Before ``accelerator.load_state`` reads the folder, the
    train state is read from JSON and every torch pickle in it is checked with
    :func:`check_torch_pickle`, so a crafted checkpoint cannot run code.

    Raises:
        CheckpointError: a ``custom_checkpoint_*.pkl`` file is present, ``train_state.json`` is
            missing or malformed, or a pickle is refused or unreadable.
    """
    checkpoint = Path(checkpoint)
    pickled = sorted(p.name for p in checkpoint.glob("custom_checkpoint_*.pkl"))
    if pickled:
        raise CheckpointError(
            f"{checkpoint} holds {pickled}: pickled custom state, which Accelerate would unpickle "
            "with weights_only=False (it can run arbitrary code), is refused. This toolkit keeps "
            f"the train state in {TRAIN_STATE_FILE}: to resume a checkpoint of an older version "
            f'that you trust, delete the .pkl and write {{"step": N, "samples_seen": '
            "N·batch_size·processes·grad_accumulation} there"
        )
    state = read_train_state(checkpoint)
    for path in sorted(checkpoint.iterdir()):
        if path.suffix in _PICKLE_SUFFIXES and path.is_file():
            check_torch_pickle(path)
    accelerator.load_state(str(checkpoint))
    return state
