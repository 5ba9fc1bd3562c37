"""The one training loop of the toolkit, on HF Accelerate.

:func:`fit` trains any ``nn.Module`` whose ``forward(batch)`` returns a dict of scalar tensors with
a ``"loss"`` entry (the VAE family here; other model families plug in the same way). It handles
single-process, multi-process (DDP through ``accelerate launch``) and multi-GPU runs, mixed
precision, gradient accumulation, seeding, logging (JSONL, TensorBoard, progress bar), periodic
evaluation, atomic checkpoints and exact resumption.

Exactness: the data order is a function of ``(seed, samples_seen)``
(:class:`~disentangle.train.state.ResumableBatchSampler`) and every process's RNG states are
saved with the model and optimizer, so a run resumed from a checkpoint logs the same losses as an
uninterrupted run on the same CPU. Resuming unpickles nothing but data (tensors, numbers, numpy
arrays; see :mod:`disentangle.train.state`), so a checkpoint folder from elsewhere cannot run code.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import send_to_device, set_seed
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from disentangle.train.config import TrainConfig
from disentangle.train.history import History
from disentangle.train.state import (
    ResumableBatchSampler,
    TrainState,
    latest_checkpoint,
    latest_intact_checkpoint,
    load_checkpoint,
    remove_stale,
    save_checkpoint,
)

__all__ = ["FitResult", "fit", "use_cpu"]

Evaluator = Callable[[nn.Module, int], dict[str, float]]


@dataclass
class FitResult:
    """What :func:`fit` returns (on every process)."""

    model: nn.Module
    """The trained model, unwrapped from DDP."""
    step: int
    """Optimizer steps done."""
    train: dict[str, float]
    """Last logged training values (means over processes)."""
    eval: dict[str, float]
    """Last evaluation (main process; empty elsewhere or when no evaluator was given)."""
    resumed_from: int | None
    """Step of the checkpoint the run resumed from, if any."""


def use_cpu(requested: bool) -> bool:
    """Train on the CPU when asked to or when no accelerator is present.

    Accelerate sets up multi-process CPU training (gloo) only in CPU mode, so on a CPU-only
    machine ``torchrun --nproc_per_node N`` or ``accelerate launch --multi_gpu --num_processes N``
    then gives N cooperating processes.
    """
    return requested or not torch.accelerator.is_available()


def _checkpoint_root(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def _check_finite_parameters(model: nn.Module, step: int, root: Path) -> None:
    """Refuse to checkpoint non-finite weights (they would replace the good checkpoints)."""
    total = torch.stack([p.detach().float().sum() for p in model.parameters()]).sum()
    if not bool(torch.isfinite(total)):
        bad = [n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
        raise FloatingPointError(
            f"non-finite weights {bad[:5]} at step {step}: no checkpoint was written; last good "
            f"checkpoint: {latest_checkpoint(root)} (lower train.lr or the regulariser weight)"
        )


def fit(
    model: nn.Module,
    dataset: Dataset,
    cfg: TrainConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    evaluate: Evaluator | None = None,
    eval_every: int = 0,
    hparams: dict | None = None,
    num_workers: int = 0,
) -> FitResult:
    """Train ``model`` on ``dataset`` with Adam for ``cfg.steps`` steps; write logs to ``run_dir``.

    ``dataset[i]`` returns a tensor or a tuple of tensors; batches are collated by the default
    DataLoader collate and passed to ``model(batch)``. A model with a method
    ``gradient_probe(out) -> dict[str, float]`` has it called on each logged step, between its
    forward and backward passes (on the first micro-batch), and its values logged with the
    losses (the VAE family logs its regulariser's share of the gradient norm).
    ``evaluate(model, step)`` (main process, model unwrapped, in eval mode) returns metrics
    logged as ``split="eval"`` every ``eval_every`` steps and at the end. With ``resume=True``
    training continues from the newest complete checkpoint under ``run_dir/checkpoints`` (from
    scratch if there is none). ``hparams`` go to TensorBoard. ``num_workers`` DataLoader
    workers prepare the batches.
    """
    run_dir = Path(run_dir)
    accelerator = Accelerator(
        cpu=use_cpu(cfg.cpu),
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=cfg.grad_accumulation,
        log_with="tensorboard",
        project_dir=str(run_dir),
    )
    main = accelerator.is_main_process
    world, rank = accelerator.num_processes, accelerator.process_index
    # The fused kernel is several times faster than the per-tensor loop on CPU and GPU alike.
    fused = accelerator.device.type in ("cpu", "cuda")
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.adam_betas, fused=fused)
    model, optimizer = accelerator.prepare(model, optimizer)
    state = TrainState()

    root = _checkpoint_root(run_dir)
    history = History(run_dir / "metrics.jsonl")
    checkpoint = latest_intact_checkpoint(root) if resume else None
    last: dict[str, float] = {}
    if checkpoint is not None:
        state = load_checkpoint(accelerator, checkpoint)
        if main:
            remove_stale(root)
            # a final evaluation cut short is redone below: drop any record it left
            history.truncate(state.step, drop_eval_at=cfg.steps)
        if state.step >= cfg.steps:  # nothing left to train: report the last logged values
            last = history.last("train")
    else:
        # Same initial parameters everywhere (seeded before the model was built); a different
        # sampling-noise stream per process from here on.
        set_seed(cfg.seed + rank, deterministic=cfg.deterministic)
        if main and history.path.exists():
            history.truncate(-1)
    resumed_from = state.step if checkpoint is not None else None
    accelerator.init_trackers(
        "tensorboard",
        config=hparams,
        init_kwargs={"tensorboard": {"purge_step": state.step + 1 if resumed_from else None}},
    )

    sampler = ResumableBatchSampler(
        len(dataset),  # type: ignore[arg-type]
        cfg.batch_size,
        seed=cfg.seed,
        start=state.samples_seen,
        rank=rank,
        world_size=world,
    )
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    batches = iter(loader)
    global_batch = cfg.batch_size * world * cfg.grad_accumulation
    unwrapped = accelerator.unwrap_model(model)
    probe = getattr(unwrapped, "gradient_probe", None)

    def run_eval(step: int) -> dict[str, float]:
        values: dict[str, float] = {}
        if main and evaluate is not None:
            unwrapped.eval()
            values = evaluate(unwrapped, step)
            unwrapped.train()
            history.append(step, "eval", values)
            accelerator.log({f"eval/{k}": v for k, v in values.items()}, step=step)
        accelerator.wait_for_everyone()
        return values

    bar = tqdm(
        total=cfg.steps,
        initial=state.step,
        disable=not (main and cfg.progress),
        desc="train",
        dynamic_ncols=True,
    )
    last_eval: dict[str, float] = {}
    sums: dict[str, torch.Tensor] = {}
    n_since, t_since = 0, time.perf_counter()
    model.train()
    probed: dict[str, float] = {}
    while state.step < cfg.steps:
        logged = (state.step + 1) % cfg.log_every == 0 or state.step + 1 == cfg.steps
        for micro in range(cfg.grad_accumulation):
            batch = send_to_device(next(batches), accelerator.device)
            with accelerator.accumulate(model):
                out = model(batch)
                if probe is not None and logged and micro == 0:
                    probed = probe(out)
                accelerator.backward(out["loss"])
                optimizer.step()
                optimizer.zero_grad()
            for k, v in out.items():
                sums[k] = sums.get(k, 0) + v.detach().float() / cfg.grad_accumulation
        state.step += 1
        state.samples_seen += global_batch
        n_since += 1
        bar.update(1)
        step = state.step
        if step % cfg.log_every == 0 or step == cfg.steps:
            keys = sorted(sums)
            means = accelerator.reduce(torch.stack([sums[k] for k in keys]) / n_since, "mean")
            last = dict(zip(keys, means.tolist()))
            if probed:  # the probe's values of this step, averaged over processes
                names = sorted(probed)
                vals = torch.tensor([probed[k] for k in names], device=accelerator.device)
                last.update(zip(names, accelerator.reduce(vals, "mean").tolist()))
                probed = {}
            if not all(math.isfinite(v) for v in last.values()):
                bad = [k for k, v in last.items() if not math.isfinite(v)]
                raise FloatingPointError(
                    f"non-finite training values {bad} at step {step}; last checkpoint: "
                    f"{latest_checkpoint(root)} (lower train.lr or the regulariser weight)"
                )
            speed = n_since * global_batch / (time.perf_counter() - t_since)
            if main:
                history.append(step, "train", {**last, "images_per_s": speed})
            accelerator.log({f"train/{k}": v for k, v in last.items()}, step=step)
            bar.set_postfix({**{k: f"{v:.4g}" for k, v in last.items()}, "img/s": f"{speed:.0f}"})
            sums, n_since, t_since = {}, 0, time.perf_counter()
        if eval_every and step % eval_every == 0 and step != cfg.steps:
            last_eval = run_eval(step)
        if step == cfg.steps or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0):
            _check_finite_parameters(unwrapped, step, root)
            save_checkpoint(accelerator, root, state, cfg.keep_checkpoints)
    bar.close()
    last_eval = run_eval(state.step)
    for tracker in accelerator.trackers:  # not end_training(): the process group stays up
        tracker.finish()
    return FitResult(unwrapped, state.step, last, last_eval, resumed_from)
