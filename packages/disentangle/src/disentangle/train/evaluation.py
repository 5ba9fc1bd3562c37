"""Disentanglement scores of a model's posterior means with ``dismetrics``.

:class:`Evaluator` is the ``evaluate(model, step)`` hook of :func:`disentangle.train.fit` and the
engine of ``apps/evaluate.py``. It scores ``model.represent`` (the posterior means, as in the HFS
and GMG papers) with ``dismetrics.evaluate`` for the sampling and array metrics and with
``dismetrics.score`` on one encoded sample for the codebase variants (``dci_hfs``: the HFS repo's
min-max-scaled DCI-D, ``mig_hfs``), and with a :class:`~disentangle.train.geometry.GeometryProbe`
the decoder's and encoder's DST and GMG on fixed batches (``geometry.*``). Every draw is seeded:
the same model gives the same scores.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from torch import nn

from disentangle.train.config import EvalConfig
from disentangle.train.geometry import GeometryProbe

__all__ = ["Evaluator", "headline"]

#: Result keys quoted in tables: DCI-D (disentanglement_lib and HFS-style) and MIG.
HEADLINE = {
    "dci.disentanglement": "DCI-D",
    "dci_hfs.disentanglement": "DCI-D (HFS)",
    "mig.discrete_mig": "MIG",
}


def headline(scores: dict[str, float]) -> dict[str, float]:
    """The headline scores of a flat score dict, under short names (DCI-D, MIG, ...)."""
    return {short: scores[key] for key, short in HEADLINE.items() if key in scores}


class Evaluator:
    """Score a model on a ``dismetrics.GroundTruthData`` dataset.

    Parameters
    ----------
    data: the ground-truth dataset (protocol ``dismetrics.GroundTruthData``).
    cfg: which metrics, which dismetrics preset and sample sizes.
    seed: seed of every draw of the evaluation.
    batch_size: images per ``represent`` call.
    geometry: also report the held-out DST/GMG of this probe (``geometry.<side>.<gmg|dst>``).
    """

    def __init__(
        self,
        data: Any,
        cfg: EvalConfig,
        seed: int = 0,
        batch_size: int = 256,
        geometry: GeometryProbe | None = None,
    ) -> None:
        import dismetrics  # sklearn/scipy: imported only when an evaluation is built

        names = list(cfg.metrics)
        known = set(dismetrics.ALL_METRICS) | set(dismetrics.VARIANT_METRICS)
        unknown = [m for m in names if m not in known]
        if unknown:
            raise ValueError(f"eval.metrics: unknown {unknown}; choose from {sorted(known)}")
        self.data, self.seed, self.batch_size = data, seed, batch_size
        self.geometry = geometry
        self.standard = [m for m in names if m in dismetrics.ALL_METRICS]
        self.variants = [m for m in names if m in dismetrics.VARIANT_METRICS]
        preset = dismetrics.PRESETS[cfg.preset]
        changes: dict[str, int] = {"batch_size": batch_size}
        if cfg.num_train is not None:
            changes["num_train"] = cfg.num_train
        if cfg.num_test is not None:
            changes["num_test"] = cfg.num_test
        if cfg.num_sampled is not None:
            n = cfg.num_sampled
            changes.update(
                beta_vae_num_train=n,
                beta_vae_num_eval=max(n // 2, 1),
                factor_vae_num_train=n,
                factor_vae_num_eval=max(n // 2, 1),
                factor_vae_num_variance_estimate=n,
            )
        self.preset = dataclasses.replace(preset, **changes)
        self.last: dict[str, Any] = {}

    def represent_fn(self, model: nn.Module):
        """``(n, C, H, W)`` numpy images → ``(n, D)`` numpy posterior means of ``model``."""
        device = next(model.parameters()).device

        @torch.no_grad()
        def represent(x: np.ndarray) -> np.ndarray:
            out = [
                model.represent(torch.as_tensor(chunk, dtype=torch.float32, device=device))
                for chunk in np.array_split(x, max(1, -(-len(x) // self.batch_size)))
            ]
            return torch.cat(out).float().cpu().numpy()

        return represent

    def __call__(self, model: nn.Module, step: int = 0) -> dict[str, float]:
        """Flat headline scores ``{"<metric>.<key>": value}``; the full result goes to ``last``."""
        if not self.standard and not self.variants and self.geometry is None:
            return {}
        import dismetrics

        was_training = model.training
        model.eval()
        represent = self.represent_fn(model)
        scores: dict[str, float] = {}
        full: dict[str, Any] = {}
        if self.standard:
            res = dismetrics.evaluate(
                self.data, represent, self.standard, seed=self.seed, preset=self.preset
            )
            scores.update(res.scalars())
            full["evaluate"] = res.to_dict()
        if self.variants:
            n = self.preset.num_train + self.preset.num_test
            rng = np.random.default_rng([self.seed, 1])
            codes, factors = dismetrics.sample_codes(self.data, represent, n, rng, self.batch_size)
            res = dismetrics.score(
                codes, factors, self.variants, seed=self.seed, preset=self.preset
            )
            scores.update(res.scalars())
            full["variants"] = res.to_dict()
        if self.geometry is not None:
            scores.update(self.geometry(model))
        model.train(was_training)
        self.last = {"step": step, "scores": scores, "details": full}
        return scores
