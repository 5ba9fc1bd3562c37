"""Command line: score saved codes against saved factors.

    dismetrics CODES.npy FACTORS.npy --metrics mig,dci,sap --out results.json
    dismetrics DATA.npz --metrics mig,dci,sap

(``python -m dismetrics`` runs the same program.) CODES holds (N, D) floats, FACTORS (N, K)
integer classes, each as ``.npy`` or as ``.npz``: an ``.npz`` with a single array gives that
array; one with several gives the array named ``codes`` (for CODES and --codes-test) or
``factors`` (for FACTORS and --factors-test). So one ``.npz`` holding ``codes`` and ``factors``
may be given alone (FACTORS left out), and likewise --codes-test alone. Without
--codes-test the samples are split at random (seeded) into train and test for the metrics that
need both. Prints a table; --out writes the JSON of ``EvaluationResult.to_dict()`` (scores,
per-metric details, settings, timings), creating missing parent folders.

Unreadable input files, a bad --out path and bad settings are reported before any metric runs,
as one line ``error: <argument>: ...`` on stderr with exit status 2. --out is written atomically
(a temporary file in the same folder, then renamed); the temporary file never outlives a failure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from . import __version__
from .evaluate import ARRAY_METRICS, VARIANT_METRICS, score
from .presets import PRESETS, resolve_preset

#: What numpy raises on a truncated, empty or garbage ``.npy``/``.npz`` file.
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


class InputError(Exception):
    """A bad command-line input; the message names the argument and the file."""


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _load(path: str, arg: str, key: str, named: bool = False) -> np.ndarray:
    """The array of ``path`` for argument ``arg``.

    A ``.npz`` with several arrays gives the one named ``key``; with ``named`` the file must be a
    ``.npz`` holding an array called ``key`` (the argument was left out and is read from there).
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{arg}: file not found: {path}")
    try:
        loaded = np.load(p, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            if named:
                raise InputError(
                    f"{arg}: not given, and {path} is a .npy file, not an .npz holding arrays "
                    "'codes' and 'factors'"
                )
            return loaded
        with loaded:
            if key in loaded.files:
                return loaded[key]
            if named:
                raise InputError(
                    f"{arg}: not given, and {path} holds no array named '{key}' "
                    f"(it holds {loaded.files})"
                )
            if len(loaded.files) != 1:
                raise InputError(
                    f"{arg}: {path} holds arrays {loaded.files}; expected a single array "
                    f"or one named '{key}'"
                )
            return loaded[loaded.files[0]]
    except _READ_ERRORS as err:
        raise InputError(
            f"{arg}: cannot read {path} as a .npy/.npz array file "
            f"({type(err).__name__}: {_one_line(err)})"
        ) from err


def _check_out(path: Path) -> None:
    """Fail early when ``path`` cannot become a file: a folder, under a file, or not writable."""
    if path.is_dir():
        raise InputError(f"--out: {path} is a folder; give a file name such as {path / 'out.json'}")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"--out: cannot create {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"--out: cannot create {path}: folder {folder} is not writable")


def _write_json(path: Path, payload: dict) -> None:
    """Write atomically: a temporary file in the same folder, then rename; no leftover on error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, indent=2)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dismetrics",
        description="Score a representation: codes (N, D) against integer factors (N, K).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "codes", help="(N, D) float codes: .npy, single-array .npz, or .npz with a 'codes' array"
    )
    parser.add_argument(
        "factors",
        nargs="?",
        help="(N, K) integer factor classes, .npy or .npz (default: the 'factors' array of the "
        "CODES .npz)",
    )
    parser.add_argument(
        "--metrics",
        default=",".join(ARRAY_METRICS),
        help=f"comma-separated, from {', '.join(ARRAY_METRICS + VARIANT_METRICS)} "
        "(default: all but the variants)",
    )
    parser.add_argument("--codes-test", help="separate test codes, as CODES (else a random split)")
    parser.add_argument(
        "--factors-test",
        help="separate test factors (default: the 'factors' array of the --codes-test .npz)",
    )
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-fraction", type=float, default=2 / 3)
    parser.add_argument("--num-bins", type=int, help="histogram bins (default 20)")
    parser.add_argument("--n-jobs", type=int, help="threads for per-factor fits (default: all)")
    parser.add_argument("--out", type=Path, help="write the full results as JSON here")
    return parser


def _inputs(
    args: argparse.Namespace,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Codes, factors and the optional test pair, read from the files the arguments name."""
    if args.factors_test is not None and args.codes_test is None:
        raise InputError("--factors-test: given without --codes-test")
    pair = args.factors is None
    codes = _load(args.codes, "codes", "codes")
    factors = _load(args.codes if pair else args.factors, "factors", "factors", named=pair)
    if args.codes_test is None:
        return codes, factors, None, None
    pair = args.factors_test is None
    codes_test = _load(args.codes_test, "--codes-test", "codes")
    factors_test = _load(
        args.codes_test if pair else args.factors_test, "--factors-test", "factors", named=pair
    )
    return codes, factors, codes_test, factors_test


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.out is not None:
            _check_out(args.out)
        cfg = resolve_preset(args.preset)
        if args.num_bins is not None:
            cfg = dataclasses.replace(cfg, num_bins=args.num_bins)
        if args.n_jobs is not None:
            cfg = dataclasses.replace(cfg, n_jobs=args.n_jobs)
        codes, factors, codes_test, factors_test = _inputs(args)
        result = score(
            codes,
            factors,
            args.metrics,
            codes_test=codes_test,
            factors_test=factors_test,
            seed=args.seed,
            preset=cfg,
            train_fraction=args.train_fraction,
        )
    except (InputError, ValueError, TypeError) as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    print(result.table())
    if args.out is not None:
        try:
            _write_json(args.out, result.to_dict())
        except OSError as err:
            print(f"error: --out: cannot write {args.out}: {_one_line(err)}", file=sys.stderr)
            return 2
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
