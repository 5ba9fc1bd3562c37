"""Evaluation hook of the flow-factorized model and its baselines: E_k per transformation
(ffrl.md §3.2) and the importance-sampled log-likelihood of the first frames.

:class:`FlowEvaluator` is the ``evaluate(model, step)`` hook of :func:`disentangle.train.fit` for
:class:`disentangle.models.ffrl.FFRL` (or a baseline of
:mod:`disentangle.models.sequence_baselines`, scored by latent traversal) on a sequence dataset
(``disentangle.data.sequences``). It
scores the same fixed evaluation sequences every time (seeded), with the flow applied, each k
separately (the authors' MNIST loop mixed the k into a running mean; ffrl.md §3.2), and leaves
the global RNG untouched so that evaluating does not change the training run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from disentangle.models.ffrl import code_log_likelihood, log_likelihood

__all__ = ["FlowEvaluator"]


class FlowEvaluator:
    """E_k of an FFRL model on fixed sequences of an evaluation split.

    Args:
        data: a :class:`disentangle.data.sequences.DigitSequences` (the evaluation split).
        num_sequences: sequences scored per transformation (the first of a seeded permutation).
        batch_size: sequences per forward pass.
        seed: seed of the sequence choice and of the posterior samples ``z_0``.

    Calling it returns ``{"E_<name>": E_k, "E_<name>_per_pixel": ..., "E_mean": ...}``, where
    ``E_k`` is the pixel L1 summed over pixels and over t = 1..T′−1, averaged over sequences, and
    ``"log_px0"``: the mean importance-sampled log p(x_0) (σ = 1 Gaussian decoder,
    ``is_samples`` samples; :func:`disentangle.models.ffrl.log_likelihood`), and
    ``"logpx_code"``: the authors' printed single-sample value with its signs
    (:func:`disentangle.models.ffrl.code_log_likelihood`). Baselines add
    ``"E_<name>_best_dim"``, the traversal error of their best single latent axis. Weakly
    supervised FFRL models add ``"k_accuracy"``: the fraction of sequences whose predicted
    index is the true k under the best one-to-one matching of indices to transformations (the
    model names its indices freely), with the confusion counts in ``last["details"]``.
    """

    def __init__(
        self,
        data: Any,
        num_sequences: int = 512,
        batch_size: int = 128,
        seed: int = 0,
        is_samples: int = 10,
    ):
        if num_sequences < 1 or batch_size < 1:
            raise ValueError(
                f"num_sequences, batch_size: must be ≥ 1, got {num_sequences}, {batch_size}"
            )
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.is_samples = is_samples
        order = np.random.default_rng(seed).permutation(len(data))
        self.indices = np.sort(order[: min(num_sequences, len(data))])
        self.last: dict[str, Any] = {}

    def __call__(self, model: torch.nn.Module, step: int) -> dict[str, float]:
        device = next(model.parameters()).device
        scores: dict[str, float] = {}
        weak = getattr(model, "weakly_supervised", False)
        n_k = len(self.data.transformations)
        confusion = np.zeros((n_k, n_k), dtype=np.int64)  # rows: true k, columns: predicted
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(self.seed)
            for k, name in enumerate(self.data.transformations):
                total = per_pixel = per_dim = 0.0
                for start in range(0, len(self.indices), self.batch_size):
                    idx = self.indices[start : start + self.batch_size]
                    frames = self.data.frames(idx, k).to(device)
                    if weak:
                        with torch.no_grad():
                            pred = model.predict_index(frames, hard_sample=False).argmax(1)
                        confusion[k] += np.bincount(pred.cpu().numpy(), minlength=n_k)
                    err = model.equivariance_error(frames, k)
                    total += err["sum"].item() * len(idx)
                    per_pixel += err["per_pixel"].item() * len(idx)
                    if "per_dim" in err:  # traversal E_k of a baseline: one error per axis
                        per_dim = per_dim + err["per_dim"].double().cpu() * len(idx)
                scores[f"E_{name}"] = total / len(self.indices)
                scores[f"E_{name}_per_pixel"] = per_pixel / len(self.indices)
                if isinstance(per_dim, torch.Tensor):
                    scores[f"E_{name}_best_dim"] = float(per_dim.min()) / len(self.indices)
            total = code_total = 0.0
            for start in range(0, len(self.indices), self.batch_size):
                x0 = self.data.first_frames(self.indices[start : start + self.batch_size])
                x0 = x0.to(device)
                with torch.no_grad():
                    mean, logvar = model.encoder(x0)
                    ll = log_likelihood(x0, model.decode, mean, logvar, self.is_samples)
                    code = code_log_likelihood(x0, model.decode, mean, logvar)
                total += ll.sum().item()
                code_total += code.sum().item()
            scores["log_px0"] = total / len(self.indices)
            scores["logpx_code"] = code_total / len(self.indices)
        names = self.data.transformations
        scores["E_mean"] = float(np.mean([scores[f"E_{n}"] for n in names]))
        details: dict[str, Any] = {}
        if weak:
            rows, cols = linear_sum_assignment(-confusion)
            scores["k_accuracy"] = float(confusion[rows, cols].sum() / confusion.sum())
            details["k_confusion"] = confusion.tolist()
        self.last = {"step": step, "scores": scores, "details": details}
        return scores
