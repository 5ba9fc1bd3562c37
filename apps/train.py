"""Train a GMG-regularised VAE (or any configured variant) and score its disentanglement.

    accelerate launch apps/train.py                  # quick preset: generated dSprites, CPU
    python apps/train.py                             # the same, single process
    accelerate launch apps/train.py --preset paper   # HFS/GMG paper settings (300k steps)
    python apps/train.py --regulariser.kind dst --model.base beta_tcvae --train.seed 1
    torchrun --nproc_per_node 2 apps/train.py                # two CPU processes (DDP, gloo)
    accelerate launch --multi_gpu --num_processes 2 apps/train.py  # two GPUs (or CPU processes)
    python apps/train.py --output-dir runs/x --resume         # continue a stopped run

--preset is read first and sets the defaults of every other field (shown below for the chosen
preset: `python apps/train.py --preset paper --help`). The run folder (config.json,
checkpoints/, metrics.jsonl, tensorboard/, results.json, images/) is described in
disentangle.train.runner.
"""

from __future__ import annotations

import argparse
import json
import sys

import tyro

from disentangle.train import PRESETS, Config, run


def parse(args: list[str] | None = None) -> Config:
    """Parse the command line into a Config: ``--preset`` first, then field overrides."""
    args = sys.argv[1:] if args is None else list(args)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    known, _ = pre.parse_known_args(args)
    return tyro.cli(Config, args=args, default=PRESETS[known.preset], description=__doc__)


def main(args: list[str] | None = None) -> int:
    try:
        results = run(parse(args))
    except (ValueError, FileExistsError, FloatingPointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if results:
        print(json.dumps({"step": results["step"], **results["headline"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
