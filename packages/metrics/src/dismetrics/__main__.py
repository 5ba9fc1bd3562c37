"""Command line: score saved codes against saved factors.

    python -m dismetrics CODES.npy FACTORS.npy --metrics mig,dci,sap --out results.json

CODES.npy holds (N, D) floats, FACTORS.npy (N, K) integer classes (``.npz`` files with a single
array work too). Without --codes-test/--factors-test the samples are split at random (seeded)
into train and test for the metrics that need both. Prints a table; --out writes the JSON of
``EvaluationResult.to_dict()`` (scores, per-metric details, settings, timings).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from .evaluate import ARRAY_METRICS, VARIANT_METRICS, score
from .presets import PRESETS, resolve_preset


def _load(path: str | None, arg: str) -> np.ndarray | None:
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise SystemExit(f"error: {arg}: file not found: {path}")
    try:
        arr = np.load(p, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise SystemExit(f"error: {arg}: cannot read {path} as .npy/.npz: {err}") from err
    if isinstance(arr, np.lib.npyio.NpzFile):
        if len(arr.files) != 1:
            raise SystemExit(f"error: {arg}: {path} holds arrays {arr.files}; expected exactly one")
        arr = arr[arr.files[0]]
    return arr


def _write_json(path: Path, payload: dict) -> None:
    """Write atomically: a temporary file in the same folder, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(payload, fh, indent=2)
    os.replace(tmp, path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dismetrics",
        description="Score a representation: codes (N, D) against integer factors (N, K).",
    )
    parser.add_argument("codes", help="(N, D) float codes, .npy or single-array .npz")
    parser.add_argument("factors", help="(N, K) integer factor classes, .npy or .npz")
    parser.add_argument(
        "--metrics",
        default=",".join(ARRAY_METRICS),
        help=f"comma-separated, from {', '.join(ARRAY_METRICS + VARIANT_METRICS)} "
        "(default: all but the variants)",
    )
    parser.add_argument("--codes-test", help="separate test codes (else a random split)")
    parser.add_argument("--factors-test", help="separate test factors")
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-fraction", type=float, default=2 / 3)
    parser.add_argument("--num-bins", type=int, help="histogram bins (default 20)")
    parser.add_argument("--n-jobs", type=int, help="threads for per-factor fits (default: all)")
    parser.add_argument("--out", type=Path, help="write the full results as JSON here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = resolve_preset(args.preset)
    if args.num_bins is not None:
        cfg = dataclasses.replace(cfg, num_bins=args.num_bins)
    if args.n_jobs is not None:
        cfg = dataclasses.replace(cfg, n_jobs=args.n_jobs)
    try:
        result = score(
            _load(args.codes, "codes"),
            _load(args.factors, "factors"),
            args.metrics,
            codes_test=_load(args.codes_test, "--codes-test"),
            factors_test=_load(args.factors_test, "--factors-test"),
            seed=args.seed,
            preset=cfg,
            train_fraction=args.train_fraction,
        )
    except (ValueError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(result.table())
    if args.out is not None:
        _write_json(args.out, result.to_dict())
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
