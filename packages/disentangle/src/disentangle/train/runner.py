"""A whole training run from a :class:`~disentangle.train.config.Config` (``apps/train.py``).

:func:`run` validates the config, builds the dataset (``disentangle.data``) and the model
(:mod:`disentangle.models`), trains with :func:`~disentangle.train.loop.fit`, scores the posterior
means with dismetrics and writes the run folder (main process only)::

    <run_dir>/config.json        resolved config
    <run_dir>/checkpoints/       step_XXXXXXXX/ (weights, optimizer, RNG and train state;
                                 written atomically, see disentangle.train.state)
    <run_dir>/metrics.jsonl      history: {"step", "split": "train"|"eval", values...}
    <run_dir>/tensorboard/       TensorBoard events
    <run_dir>/results.json       final losses and scores
    <run_dir>/images/            traversals.png, reconstructions.png, losses.png, metrics.png
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import set_seed

from disentangle.models import VAE, GeometricRegulariser
from disentangle.train.config import SEQUENCE_KINDS, Config, flatten, from_dict, validate
from disentangle.train.evaluation import Evaluator, headline
from disentangle.train.flow_evaluation import FlowEvaluator
from disentangle.train.geometry import GeometryProbe
from disentangle.train.history import read_history
from disentangle.train.lock import RunLock
from disentangle.train.loop import fit, use_cpu
from disentangle.train.state import latest_checkpoint, latest_intact_checkpoint

__all__ = ["build_dataset", "build_model", "dataset_names", "load_run", "run", "write_json"]

#: Config sections that must not change when a run is resumed.
_FROZEN_ON_RESUME = ("data", "model", "regulariser")


def dataset_names() -> tuple[str, ...]:
    """Names ``data.name`` accepts (the registry of ``disentangle.data``)."""
    from disentangle import data
    from disentangle.data.sequences import SEQUENCE_DATASETS

    return (*data.DATASETS, *SEQUENCE_DATASETS)


def build_dataset(cfg: Config, split: str = "train") -> Any:
    """The training dataset: a torch ``Dataset`` that is also a ``GroundTruthData``, or for the
    ffrl model a sequence dataset (``split``: "train" or "eval", disjoint)."""
    from disentangle.data import make_dataset

    if cfg.model.kind in SEQUENCE_KINDS:
        from disentangle.data.sequences import make_sequence_dataset

        return make_sequence_dataset(
            cfg.data.name, path=cfg.data.path, split=split, steps=cfg.model.flow_steps
        )

    return make_dataset(cfg.data.name, path=cfg.data.path, tiny=cfg.data.tiny)


def build_model(
    cfg: Config, observation_shape: tuple[int, ...], dataset_size: int, data: Any = None
) -> Any:
    """The VAE of ``cfg.model`` with the regulariser of ``cfg.regulariser``, or a sequence model
    (FFRL or a baseline) whose sequences come from ``data`` (built from ``cfg`` if None)."""
    r, m = cfg.regulariser, cfg.model
    if m.kind in SEQUENCE_KINDS:
        data = build_dataset(cfg) if data is None else data
        sequence_fn, num_k = data.sequence_fn(m.flow_steps), len(data.transformations)
    if m.kind == "ffrl":
        from disentangle.models.ffrl import FFRL, FFRLWeights

        return FFRL(
            observation_shape,
            latent_dim=m.latent_dim,
            num_transformations=num_k,
            steps=m.flow_steps,
            architecture=m.architecture,
            hj_variant=m.hj_variant,
            density=m.density,
            weights=FFRLWeights(hj=m.hj_weight, ic=m.hj_weight, diversity=m.diversity_weight),
            weakly_supervised=m.weakly_supervised,
            sequence_fn=sequence_fn,
        )
    if m.kind in ("seq_vae", "slow_vae"):
        from disentangle.models.sequence_baselines import SequenceVAE, SlowVAE

        common = dict(
            latent_dim=m.latent_dim,
            steps=m.flow_steps,
            beta=m.beta,
            architecture=m.architecture,
            sequence_fn=sequence_fn,
            num_transformations=num_k,
        )
        if m.kind == "seq_vae":
            return SequenceVAE(observation_shape, **common)
        return SlowVAE(observation_shape, gamma=m.slow_gamma, rate=m.slow_rate, **common)
    reg = None
    if r.kind != "none":
        reg = GeometricRegulariser(
            r.kind,
            r.side,
            r.cost,
            r.weight,
            r.epsilon0,
            detach_reference=r.detach_reference,
            start=r.start,
            debias=r.debias,
        )
    return VAE(
        observation_shape,
        latent_dim=m.latent_dim,
        architecture=m.architecture,
        base=m.base,
        beta=m.beta,
        tc_alpha=m.tc_alpha,
        tc_gamma=m.tc_gamma,
        hfs_gamma=m.hfs_gamma,
        hfs_pairs=m.hfs_pairs,
        reconstruction=m.reconstruction,
        regulariser=reg,
        dataset_size=dataset_size,
    )


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def _config_dict(cfg: Config) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def _check_output_path(run_dir: Path) -> None:
    """Refuse a run folder path that is, or lies under, an existing file."""
    for parent in (run_dir, *run_dir.parents):
        if parent.exists() and not parent.is_dir():
            raise FileExistsError(
                f"output_dir: {run_dir} cannot be a run folder: {parent} is an existing file"
            )


def _check_run_dir(cfg: Config, run_dir: Path) -> None:
    """Refuse to overwrite a run, or to resume one with a different model or data."""
    has_ckpt = latest_checkpoint(run_dir / "checkpoints") is not None
    if has_ckpt and not cfg.resume:
        raise FileExistsError(
            f"output_dir: {run_dir} already holds a run with checkpoints; pass --resume to "
            "continue it or choose another --output-dir"
        )
    saved = run_dir / "config.json"
    if cfg.resume and has_ckpt and saved.exists():
        old = json.loads(saved.read_text())
        new = _config_dict(cfg)
        changed = [
            f"{section}.{k}"
            for section in _FROZEN_ON_RESUME
            for k in new[section]
            # fields added after the run was saved are absent from its config.json
            if k in old.get(section, {}) and old[section][k] != new[section][k]
        ]
        for k in ("seed", "batch_size", "grad_accumulation"):
            if old.get("train", {}).get(k) != new["train"][k]:
                changed.append(f"train.{k}")
        if changed:
            raise ValueError(
                f"resume: the config differs from the run's saved config in {changed}; "
                f"resume with the same settings (see {saved})"
            )


def _write_images(model: VAE, data: Any, run_dir: Path, seed: int) -> list[str]:
    from disentangle import viz

    out = run_dir / "images"
    records = read_history(run_dir / "metrics.jsonl")
    paths = [
        viz.plot_curves(records, out / "losses.png", "train", title="training losses"),
        viz.plot_curves(records, out / "metrics.png", "eval", title="disentanglement scores"),
    ]
    if isinstance(model, VAE) and model.decoder is not None:
        rng = np.random.default_rng([seed, 2])
        _, images = data.sample(64, rng)
        device = next(model.parameters()).device
        x = torch.as_tensor(images, dtype=torch.float32, device=device)
        model.eval()
        paths.append(viz.plot_traversals(model, x, out / "traversals.png"))
        paths.append(viz.plot_reconstructions(model, x[:10], out / "reconstructions.png"))
    elif hasattr(model, "flow"):  # FFRL: sequences, extrapolation and composition
        model.eval()
        paths += viz.plot_flows(model, data, out, seed=seed)
    elif hasattr(model, "equivariance_error"):  # a sequence baseline: traversals of x_0
        model.eval()
        idx = np.random.default_rng([seed, 2]).choice(len(data), 10, replace=False)
        x = data.first_frames(np.sort(idx)).to(next(model.parameters()).device)
        paths.append(viz.plot_traversals(model, x, out / "traversals.png"))
    return [str(p) for p in paths if p is not None]


def build_evaluator(cfg: Config, data: Any, seed: int | None = None) -> Any:
    """The evaluation hook of a run: :class:`FlowEvaluator` on the eval split for sequence
    models, otherwise the dismetrics :class:`Evaluator` on ``data`` (seed: ``train.seed``), with
    the held-out decoder/encoder DST and GMG unless ``eval.geometry_batches`` is 0."""
    seed = cfg.train.seed if seed is None else seed
    if cfg.model.kind in SEQUENCE_KINDS:
        eval_data = build_dataset(cfg, "eval")
        return FlowEvaluator(eval_data, num_sequences=cfg.eval.num_test or 512, seed=seed)
    e, r = cfg.eval, cfg.regulariser
    geometry = None
    if e.geometry_batches:
        geometry = GeometryProbe(
            data,
            cost=e.geometry_cost or r.cost,
            num_batches=e.geometry_batches,
            batch_size=cfg.train.batch_size,
            epsilon0=e.geometry_epsilon0,
            seed=seed,
        )
    return Evaluator(data, cfg.eval, seed=seed, geometry=geometry)


def load_run(
    run_dir: Path, checkpoint: Path | None = None, dataset: Any = None
) -> tuple[Config, VAE, Any, Path]:
    """Config, trained model (eval mode, CPU), dataset and checkpoint path of a run folder.

    ``checkpoint`` defaults to the newest intact one under ``run_dir/checkpoints`` (its
    manifest verified; damaged newer ones are skipped with a warning).
    """
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    saved = run_dir / "config.json"
    if not saved.exists():
        raise FileNotFoundError(f"run_dir: {run_dir} has no config.json (not a run folder?)")
    cfg = from_dict(json.loads(saved.read_text()))
    if checkpoint is None:
        checkpoint = latest_intact_checkpoint(run_dir / "checkpoints")
    if checkpoint is None or not (Path(checkpoint) / "model.safetensors").exists():
        raise FileNotFoundError(f"checkpoint: no complete checkpoint found in {run_dir}")
    data = dataset if dataset is not None else build_dataset(cfg)
    model = build_model(cfg, tuple(data.observation_shape), len(data), data)
    weights = load_file(str(Path(checkpoint) / "model.safetensors"))
    model.load_state_dict({k.removeprefix("module."): v for k, v in weights.items()})
    return cfg, model.eval(), data, Path(checkpoint)


def _run_locked(cfg: Config, dataset: Any, state: PartialState, run_dir: Path) -> dict[str, Any]:
    """:func:`run` once the run folder is checked and locked."""
    state.wait_for_everyone()
    set_seed(cfg.train.seed, deterministic=cfg.train.deterministic)
    with state.main_process_first():  # a dataset cache is generated once, by the main process
        data = dataset if dataset is not None else build_dataset(cfg)
    missing = getattr(data, "missing_combinations", 0)
    if missing:
        raise ValueError(
            f"data.path: {cfg.data.path} holds {len(data) - missing} of the {len(data)} factor "
            "combinations; training samples the whole grid, so the file must hold every one "
            "(it is truncated or filtered)"
        )
    model = build_model(cfg, tuple(data.observation_shape), len(data), data)
    if state.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "config.json", _config_dict(cfg))
    evaluator = build_evaluator(cfg, data)
    result = fit(
        model,
        data,
        cfg.train,
        run_dir,
        resume=cfg.resume,
        evaluate=evaluator,
        eval_every=cfg.eval.every,
        hparams=flatten(cfg),
        num_workers=cfg.data.num_workers,
    )
    results: dict[str, Any] = {}
    if state.is_main_process:
        scores = evaluator.last.get("scores", {})
        results = {
            "step": result.step,
            "resumed_from": result.resumed_from,
            "train": result.train,
            "headline": headline(scores),
            "geometry": {k: v for k, v in scores.items() if k.startswith("geometry.")},
            "scores": scores,
            "evaluation": evaluator.last.get("details", {}),
            "config": _config_dict(cfg),
        }
        if cfg.eval.images:
            results["images"] = _write_images(result.model, data, run_dir, cfg.train.seed)
        write_json(run_dir / "results.json", results)
    return results


def run(cfg: Config, dataset: Any = None) -> dict[str, Any]:
    """Train and evaluate as configured; return the content of ``results.json``.

    ``dataset`` replaces the one named by ``cfg.data`` (any torch ``Dataset`` of
    ``(image, factors)`` that is also a ``dismetrics.GroundTruthData``). Raises ``ValueError``
    (bad field) or ``FileExistsError`` (a path under a file, a finished run without
    ``resume``, or :class:`~disentangle.train.lock.RunFolderInUseError`: another live process
    holds the folder's lock) before any training starts.
    """
    validate(cfg, None if dataset is not None else dataset_names())
    state = PartialState(cpu=use_cpu(cfg.train.cpu))
    run_dir = cfg.run_dir()
    _check_output_path(run_dir)
    lock = RunLock(run_dir)
    if state.is_main_process:  # one writer per run folder (the other ranks follow the main)
        lock.acquire()
    try:
        _check_run_dir(cfg, run_dir)
        results = _run_locked(cfg, dataset, state, run_dir)
    finally:
        lock.release()
    state.wait_for_everyone()
    state.destroy_process_group()
    return results
