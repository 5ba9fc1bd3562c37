"""Metrics history of a run: one JSON object per line in ``metrics.jsonl``.

Each record has ``"step"``, ``"split"`` (``"train"`` or ``"eval"``) and float values. On resume
the file is cut back to the checkpoint's step so that a resumed run's history equals the one an
uninterrupted run writes.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

__all__ = ["History", "read_history"]


def read_history(path: Path) -> list[dict]:
    """All records of a ``metrics.jsonl`` file (a torn last line from a kill is skipped)."""
    records = []
    if not Path(path).exists():
        return records
    with open(path) as fh:
        for line in fh:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def _clean(value: float) -> float | None:
    return value if math.isfinite(value) else None


class History:
    """Append-only JSONL writer (main process only)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def truncate(self, step: int, drop_eval_at: int | None = None) -> None:
        """Keep only records with ``record["step"] <= step`` (atomic rewrite), less the eval
        records at step ``drop_eval_at`` (an evaluation that will be redone)."""
        keep = [
            r
            for r in read_history(self.path)
            if r["step"] <= step and not (r["split"] == "eval" and r["step"] == drop_eval_at)
        ]
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in keep)
        os.replace(tmp, self.path)

    def last(self, split: str) -> dict[str, float]:
        """The values of the newest record of ``split`` (empty if none), without throughput."""
        records = [r for r in read_history(self.path) if r["split"] == split]
        if not records:
            return {}
        skip = {"step", "split", "images_per_s"}
        return {k: v for k, v in records[-1].items() if k not in skip}

    def append(self, step: int, split: str, values: dict[str, float]) -> None:
        """Write one record and flush it to disk."""
        record = {"step": step, "split": split, **{k: _clean(float(v)) for k, v in values.items()}}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
