"""Score a trained checkpoint: disentanglement with dismetrics, or E_k for sequence models.

    python apps/evaluate.py runs/dsprites-beta_vae-gmg-decoder-cosine-seed0
    python apps/evaluate.py RUN_DIR --checkpoint RUN_DIR/checkpoints/step_00003000 --preset default

Reads the run's config.json, rebuilds its dataset and model, loads the checkpoint's weights (the
newest by default), scores the posterior means and writes ``evaluation_<step>.json`` into the
run folder. Prints the scores as a table. FFRL runs and their baselines are scored by the
run's own FlowEvaluator (E_k, log p(x_0) and, for weakly supervised models, k_accuracy);
``--preset``, ``--metrics`` and ``--num-train`` apply to VAE runs only.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Literal

import tyro

from disentangle.train import headline
from disentangle.train.runner import build_evaluator, load_run, write_json


@dataclasses.dataclass
class Args:
    run_dir: tyro.conf.Positional[Path]
    """Run folder written by apps/train.py."""
    checkpoint: Path | None = None
    """Checkpoint folder (default: the newest in run_dir/checkpoints)."""
    preset: Literal["default", "fast"] | None = None
    """dismetrics preset (default: the run's eval.preset)."""
    metrics: tuple[str, ...] | None = None
    """Metrics to compute (default: the run's eval.metrics)."""
    num_train: int | None = None
    """Encoded points for the array metrics (default: the run's)."""
    seed: int | None = None
    """Evaluation seed (default: the run's train.seed)."""


def main(args: Args) -> dict:
    cfg, model, data, checkpoint = load_run(args.run_dir, args.checkpoint)
    ev = cfg.eval
    changes = {
        k: v
        for k, v in {
            "preset": args.preset,
            "metrics": args.metrics,
            "num_train": args.num_train,
        }.items()
        if v is not None
    }
    ev = dataclasses.replace(ev, **changes)
    seed = cfg.train.seed if args.seed is None else args.seed
    evaluator = build_evaluator(dataclasses.replace(cfg, eval=ev), data, seed)
    step = int(checkpoint.name.split("_")[-1])
    scores = evaluator(model, step)
    out = {
        "checkpoint": str(checkpoint),
        "step": step,
        "headline": headline(scores),
        "scores": scores,
        "evaluation": evaluator.last["details"],
        "eval_config": dataclasses.asdict(ev),
        "seed": seed,
    }
    write_json(Path(args.run_dir) / f"evaluation_{step:08d}.json", out)
    width = max(len(k) for k in scores) if scores else 0
    for key, value in scores.items():
        print(f"{key:<{width}}  {value:.4f}")
    return out


if __name__ == "__main__":
    try:
        main(tyro.cli(Args, description=__doc__))
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
