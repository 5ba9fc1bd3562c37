"""The iterative alignment flow (IAF / INB) and its baselines in one container.

:class:`IterativeAlignmentFlow` holds a label-conditioned stack of bijections of ℝ^d (Zhou,
Gong, Ravikumar, Inouye, *Iterative Alignment Flows*, AISTATS 2022): optional per-pixel Φ⁻¹ /
Φ pre- and post-layers for [0, 1] image data, then the fitted layers. ``forward(X, y)`` maps
every sample by its own label into the shared latent space; ``inverse(Z, y)`` maps back;
``translate(X, y_from, y_to) = inverse(forward(X, y_from), y_to)`` moves samples between
domains; ``log_det(X, y)`` is log|det ∂forward/∂x| (§2.2).

``fit(X, y, n_layers, k_directions, method=...)`` builds, in closed form:

=============  ====================================================================
``inb``        L layers of max-K-sliced directions + naive-barycenter maps (the method)
``rand-nb``    the same layers with Haar-random directions (ablation of subproblem 1)
``nb-inb``     one full-dimensional NB layer, then L − 1 INB layers
``nb-rand-nb`` one full-dimensional NB layer, then L − 1 Rand-NB layers
``nb``         one NB map over all d coordinates (no rotation)
``gb``         the Gaussian-barycenter map (closed-form Gaussian OT)
``gbnb``       GB followed by NB
``dd``         independent per-class Gaussianising flows (each class → N(0, I))
=============  ====================================================================

Data split inside each INB layer (``split``): ``"all"`` (default; fedinb's
``use_all_data=True``): the directions are fitted on the first min-class-size samples of each
class (a random subsample of that size when classes are unequal, with a warning) and the maps
on all rows; ``"half"`` (the original repository): within each class a random half fits the
directions and the other half the maps. Either way the layer is then applied to all rows.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from disentangle.align.layers import (
    LAYER_TYPES,
    AlignmentLayer,
    CdfLayer,
    GaussianBarycenterLayer,
    GaussianizeLayer,
    InverseCdfLayer,
    ProjectedNBLayer,
)
from disentangle.align.marginals import resolve_bins

METHODS = ("inb", "rand-nb", "nb-inb", "nb-rand-nb", "nb", "gb", "gbnb", "dd")
_FORMAT = "disentangle.align.IterativeAlignmentFlow/1"


def _as_float_tensor(name: str, x, dtype: torch.dtype | None = None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x))
    if not (x.is_floating_point() or x.dtype in (torch.uint8, torch.int32, torch.int64)):
        raise ValueError(f"`{name}` must be a real-valued array, got dtype {x.dtype}.")
    if dtype is None:
        dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    x = x.to(dtype)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"`{name}` must have shape (n, d) with n, d >= 1, got {tuple(x.shape)}.")
    if not bool(torch.isfinite(x).all()):
        bad = "NaN" if bool(torch.isnan(x).any()) else "inf"
        raise ValueError(f"`{name}` contains {bad} values; all entries must be finite.")
    return x


def _as_labels(name: str, y, n: int, device) -> torch.Tensor:
    if not isinstance(y, torch.Tensor):
        arr = np.asarray(y)
        if arr.dtype.kind not in "iub":
            raise ValueError(
                f"`{name}` must hold integer class labels, got dtype {arr.dtype} "
                "(cast with .astype(int) if the values are whole numbers)."
            )
        y = torch.as_tensor(arr.astype(np.int64))
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"`{name}` must hold integer class labels, got dtype {y.dtype}.")
    y = y.to(device=device, dtype=torch.long)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"`{name}` must have shape ({n},) to match X, got {tuple(y.shape)}.")
    return y


class IterativeAlignmentFlow(nn.Module):
    """A label-conditioned invertible flow aligning k >= 2 distributions.

    Args:
        dim: data dimension d.
        classes: the sorted distinct labels (any integers).
        image_data: add the Φ⁻¹ pre-layer and Φ post-layer (inputs must lie in [0, 1]).
        weights: barycentric weights per class (non-negative; default uniform).

    Usually built by :meth:`fit` through :func:`fit_alignment` or created empty and fitted::

        flow = IterativeAlignmentFlow.create(X, y)
        flow.fit(X, y, n_layers=30, k_directions=2)
        Z = flow(X, y); X_back = flow.inverse(Z, y)
    """

    def __init__(
        self,
        dim: int,
        classes: Sequence[int],
        *,
        image_data: bool = False,
        weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        classes = sorted(int(c) for c in classes)
        if len(classes) < 2 or len(set(classes)) != len(classes):
            raise ValueError(f"need at least two distinct classes to align, got labels {classes}.")
        self.dim = int(dim)
        self.image_data = bool(image_data)
        self.register_buffer("classes", torch.tensor(classes, dtype=torch.long))
        c = len(classes)
        w = torch.full((c,), 1.0 / c) if weights is None else torch.as_tensor(weights).double()
        if w.shape != (c,) or bool((w < 0).any()) or not bool(w.sum() > 0):
            raise ValueError(f"`weights` must be {c} non-negative numbers with a positive sum.")
        self.register_buffer("weights", (w / w.sum()).float())
        self.pre = InverseCdfLayer() if image_data else None
        self.post = CdfLayer() if image_data else None
        self.layers = nn.ModuleList()
        self.fit_info: list[dict] = []

    @classmethod
    def create(
        cls, X, y, *, image_data: bool = False, weights: Sequence[float] | None = None
    ) -> IterativeAlignmentFlow:
        """An empty flow with the dimension and classes of (X, y)."""
        x = _as_float_tensor("X", X)
        labels = _as_labels("y", y, x.shape[0], "cpu")
        classes = torch.unique(labels).tolist()
        if len(classes) < 2:
            raise ValueError(
                f"`y` holds a single class ({classes[0]}); alignment needs at least two."
            )
        return cls(x.shape[1], classes, image_data=image_data, weights=weights)

    @property
    def n_classes(self) -> int:
        return int(self.classes.numel())

    # ----------------------------------------------------------- validation
    def _prepare(self, X, y) -> tuple[torch.Tensor, torch.Tensor]:
        x = _as_float_tensor("X", X)
        if x.shape[1] != self.dim:
            raise ValueError(f"`X` must have {self.dim} columns, got {x.shape[1]}.")
        x = x.to(self.classes.device)
        return x, self._index(y, x.shape[0])

    def _index(self, y, n: int) -> torch.Tensor:
        labels = _as_labels("y", y, n, self.classes.device)
        idx = torch.searchsorted(self.classes, labels).clamp(max=self.n_classes - 1)
        bad = self.classes[idx] != labels
        if bool(bad.any()):
            unknown = sorted(set(labels[bad].tolist()))[:5]
            raise ValueError(
                f"`y` contains labels {unknown} that the flow was not fitted on "
                f"(known: {self.classes.tolist()})."
            )
        return idx

    # ----------------------------------------------------------- transforms
    def _stack(self, n_layers: int | None = None) -> list[AlignmentLayer]:
        layers = list(self.layers)[: (len(self.layers) if n_layers is None else n_layers)]
        return ([self.pre] if self.pre is not None else []) + layers

    def forward(self, X, y, *, n_layers: int | None = None) -> torch.Tensor:
        """Map X (n, d) with labels y (n,) to the shared space (after the post-layer).

        ``n_layers`` uses only the first layers (for convergence curves).
        """
        x, yi = self._prepare(X, y)
        for layer in self._stack(n_layers):
            x = layer(x, yi)
        return self.post(x, yi) if self.post is not None else x

    def forward_iter(self, X, y) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(l, Z_l)`` for l = 0..L: the latent after l layers (post-layer applied)."""
        x, yi = self._prepare(X, y)
        if self.pre is not None:
            x = self.pre(x, yi)
        for i in range(len(self.layers) + 1):
            if i > 0:
                x = self.layers[i - 1](x, yi)
            yield i, (self.post(x, yi) if self.post is not None else x)

    def inverse(self, Z, y) -> torch.Tensor:
        """Inverse of :meth:`forward`: Z (n, d) in the shared space back to the data space."""
        z, yi = self._prepare(Z, y)
        if self.post is not None:
            if bool(((z < 0) | (z > 1)).any()):
                raise ValueError("`Z` must lie in [0, 1] (the output of the Φ post-layer).")
            z = self.post.inverse(z, yi)
        for layer in reversed(self._stack()):
            z = layer.inverse(z, yi)
        return z

    def translate(self, X, y_from, y_to) -> torch.Tensor:
        """``T_{y_to}⁻¹(T_{y_from}(x))``: move samples from their domain to another.

        ``y_from`` and ``y_to`` are each one label for all rows or an array of n labels.
        """
        x = _as_float_tensor("X", X)

        def rows(lab):
            lab = np.asarray(lab.cpu() if isinstance(lab, torch.Tensor) else lab)
            return np.full(x.shape[0], lab) if lab.ndim == 0 else lab

        return self.inverse(self.forward(x, rows(y_from)), rows(y_to))

    def log_det(self, X, y) -> torch.Tensor:
        """log|det ∂forward/∂x| per sample, (n,): the sum over all layers (§2.2)."""
        x, yi = self._prepare(X, y)
        total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        stack = self._stack() + ([self.post] if self.post is not None else [])
        for layer in stack:
            x, ld = layer.forward_and_log_det(x, yi)
            total = total + ld
        return total

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        X,
        y,
        n_layers: int = 30,
        k_directions: int = 2,
        *,
        method: str = "inb",
        split: str = "all",
        bins: int | str = "auto",
        alpha: float = 1e-6,
        n_grid: int = 100,
        bound_eps: float | None = None,
        max_swd_iter: int = 200,
        swd_tol: float = 1e-6,
        dd_bins: int = 40,
        dd_alpha: float = 1.0,
        dd_rotation: str = "random",
        dd_initial_bins: int | None = None,
        seed: int = 0,
        callback: Callable[[IterativeAlignmentFlow, int, torch.Tensor], None] | None = None,
        progress: bool = False,
    ) -> IterativeAlignmentFlow:
        """Fit the flow on X (n, d) with integer labels y (n,); returns self.

        Args:
            n_layers: L, the number of INB / Rand-NB / DD layers (unused by nb, gb, gbnb).
            k_directions: K directions per INB layer, 1 <= K <= d.
            method: one of :data:`METHODS`.
            split: ``"all"`` or ``"half"`` (see the module docstring).
            bins: histogram bins of the NB maps, ``"auto"`` = round(√N); alpha: pseudo-count.
            n_grid, bound_eps: barycenter quantile grid (100 levels on [0.005, 0.995]).
            max_swd_iter, swd_tol: the Stiefel ascent's cap (200) and tolerance (1e-6).
            dd_bins, dd_alpha, dd_rotation: DD layers (40 bins; ``"random"`` or ``"pca"``).
            dd_initial_bins: DD only: a first rotation-free Gaussianisation layer with this
                many bins (the authors use 256 with alpha 1 on images).
            seed: seeds every random choice (directions' initialisation, subsampling).
            callback: called as ``callback(flow, layer_index, Z_train)`` after each layer.
            progress: show a tqdm bar.
        """
        if method not in METHODS:
            raise ValueError(f"`method` must be one of {METHODS}, got {method!r}.")
        if split not in ("all", "half"):
            raise ValueError(f"`split` must be 'all' or 'half', got {split!r}.")
        if not isinstance(n_layers, int) or n_layers < 1:
            raise ValueError(f"`n_layers` must be a positive integer, got {n_layers!r}.")
        if isinstance(X, torch.Tensor):
            self.to(device=X.device)  # fit where the data live
        x, yi = self._prepare(X, y)
        self.to(dtype=x.dtype)
        counts = torch.bincount(yi, minlength=self.n_classes)
        if bool((counts == 0).any()):
            missing = self.classes[counts == 0].tolist()
            raise ValueError(f"`y` has no samples of classes {missing}.")
        iterative = method in ("inb", "rand-nb", "nb-inb", "nb-rand-nb")
        if iterative:
            if not isinstance(k_directions, int) or k_directions < 1:
                raise ValueError(
                    f"`k_directions` must be a positive integer, got {k_directions!r}."
                )
            if k_directions > self.dim:
                raise ValueError(
                    f"`k_directions` = {k_directions} exceeds the data dimension d = {self.dim}."
                )
            need = max(2, k_directions) * (2 if split == "half" else 1)
            if int(counts.min()) < need:
                small = self.classes[counts < need].tolist()
                raise ValueError(
                    f"classes {small} have fewer than {need} samples; each class needs at "
                    f"least max(2, k_directions) samples per half-split part "
                    f"(k_directions = {k_directions}, split = {split!r})."
                )
        elif int(counts.min()) < 2:
            raise ValueError("every class needs at least 2 samples.")
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        if self.pre is not None:
            x = self.pre(x, yi)
        self.layers = nn.ModuleList()
        self.fit_info = []
        nb_opts = {"bins": bins, "alpha": alpha, "n_grid": n_grid, "bound_eps": bound_eps}

        plan: list[tuple[str, dict]] = []
        if method in ("nb", "nb-inb", "nb-rand-nb"):
            plan.append(("nb", {}))
        elif method in ("gb", "gbnb"):
            plan.append(("gb", {}))
            if method == "gbnb":
                plan.append(("nb", {}))
        if iterative:
            n_iter = n_layers - (1 if method.startswith("nb-") else 0)
            rand = method.endswith("rand-nb")
            plan += [("rand" if rand else "inb", {})] * n_iter
        if method == "dd":
            if dd_initial_bins is not None:
                plan.append(("dd", {"bins": dd_initial_bins, "rotation": "none"}))
            plan += [("dd", {"bins": dd_bins, "rotation": dd_rotation})] * n_layers

        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(plan), desc=f"fit {method}", unit="layer")
        for index, (step, opts) in enumerate(plan):
            t0 = time.perf_counter()
            info: dict = {"layer": index + 1, "kind": step}
            if step in ("inb", "rand"):
                layer, t_dir = self._fit_projected(
                    x,
                    yi,
                    k_directions,
                    step == "rand",
                    split,
                    gen,
                    max_swd_iter,
                    swd_tol,
                    nb_opts,
                    info,
                )
                info["seconds_directions"] = t_dir
            elif step == "nb":
                n_rows = x.shape[0]
                layer = ProjectedNBLayer(
                    self.dim, self.n_classes, None, resolve_bins(bins, n_rows), n_grid
                ).fit(x, yi, None, alpha=alpha, bound_eps=bound_eps, weights=self.weights)
            elif step == "gb":
                layer = GaussianBarycenterLayer(self.dim, self.n_classes).fit(
                    x, yi, weights=self.weights
                )
            else:
                layer = GaussianizeLayer(
                    self.dim, self.n_classes, opts["bins"], opts["rotation"]
                ).fit(x, yi, alpha=dd_alpha, generator=gen)
            x = layer(x, yi)
            self.layers.append(layer)
            info["seconds"] = time.perf_counter() - t0
            self.fit_info.append(info)
            if bar is not None:
                bar.update(1)
            if callback is not None:
                callback(self, index + 1, x)
        if bar is not None:
            bar.close()
        return self

    def _fit_projected(self, x, yi, k, rand, split, gen, max_iter, tol, nb_opts, info):
        from otcore.sliced import max_k_sliced_barycentric, random_stiefel

        t0 = time.perf_counter()
        theta_idx, map_idx = self._split_rows(yi, split, gen, need_theta=not rand)
        if rand:
            w = random_stiefel(self.dim, k, generator=gen, dtype=x.dtype).to(x.device)
        else:
            xs = x[theta_idx]  # (C, m, d)
            init = random_stiefel(self.dim, k, generator=gen, dtype=x.dtype).to(x.device)
            out = max_k_sliced_barycentric(
                xs, k, weights=self.weights, init=init, max_iter=max_iter, tol=tol
            )
            w = out.directions
            info.update(
                objective=out.value,
                swd_iters=out.n_iters,
                swd_evals=out.n_evals,
                swd_converged=out.converged,
            )
        t_dir = time.perf_counter() - t0
        xm, ym = (x, yi) if map_idx is None else (x[map_idx], yi[map_idx])
        layer = ProjectedNBLayer(
            self.dim,
            self.n_classes,
            k,
            resolve_bins(nb_opts["bins"], xm.shape[0]),
            nb_opts["n_grid"],
        ).fit(
            xm,
            ym,
            w,
            alpha=nb_opts["alpha"],
            bound_eps=nb_opts["bound_eps"],
            weights=self.weights,
        )
        return layer, t_dir

    def _split_rows(self, yi, split, gen, *, need_theta: bool):
        """Row indices (C, m) for the direction fit and (rows,) or None for the maps."""
        c = self.n_classes
        n = yi.shape[0]
        counts = torch.bincount(yi, minlength=c)
        m_min = int(counts.min())
        if split == "all" and not need_theta:
            return None, None
        perm = torch.randperm(n, generator=gen).to(yi.device)
        order = perm[torch.argsort(yi[perm], stable=True)]
        ys = yi[order]
        starts = torch.cumsum(counts, 0) - counts
        pos = torch.arange(n, device=yi.device) - starts[ys]
        m = m_min if split == "all" else m_min // 2
        if split == "all" and bool((counts != m_min).any()) and not getattr(self, "_warned", 0):
            warnings.warn(
                f"class sizes differ ({counts.tolist()}); the directions are fitted on a "
                f"random subsample of {m_min} rows per class (equal sizes are needed for "
                "quantile averaging), the maps on all rows.",
                stacklevel=4,
            )
            self._warned = 1
        theta = order[pos < m].reshape(c, m)
        maps = None if split == "all" else order[pos >= m]
        return theta, maps

    # ------------------------------------------------------------ save/load
    def config(self) -> dict:
        return {
            "format": _FORMAT,
            "dim": self.dim,
            "classes": self.classes.tolist(),
            "weights": self.weights.tolist(),
            "image_data": self.image_data,
            "dtype": str(self.weights.dtype).replace("torch.", ""),
            "layers": [{"kind": lay.kind, "config": lay.config()} for lay in self.layers],
            "fit_info": self.fit_info,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``flow.json`` (config) and ``flow.safetensors`` (state) into directory ``path``.

        Each file is written to a temporary name and renamed, so a crash never leaves a
        half-written flow.
        """
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        for name, writer in (
            ("flow.safetensors", lambda p: save_file(state, p)),
            ("flow.json", lambda p: Path(p).write_text(json.dumps(self.config(), indent=1))),
        ):
            fd, tmp = tempfile.mkstemp(dir=path, prefix=f".{name}.")
            os.close(fd)
            writer(tmp)
            os.replace(tmp, path / name)
        return path

    @classmethod
    def load(
        cls, path: str | os.PathLike, *, device: torch.device | str = "cpu"
    ) -> IterativeAlignmentFlow:
        """Load a flow written by :meth:`save`."""
        from safetensors.torch import load_file

        path = Path(path)
        for name in ("flow.json", "flow.safetensors"):
            if not (path / name).is_file():
                raise FileNotFoundError(f"{path / name} is missing; is {path} a saved flow?")
        cfg = json.loads((path / "flow.json").read_text())
        if cfg.get("format") != _FORMAT:
            raise ValueError(f"{path / 'flow.json'} is not a saved IterativeAlignmentFlow.")
        flow = cls(cfg["dim"], cfg["classes"], image_data=cfg["image_data"], weights=cfg["weights"])
        for spec in cfg["layers"]:
            flow.layers.append(LAYER_TYPES[spec["kind"]](**spec["config"]))
        flow.to(dtype=getattr(torch, cfg["dtype"]))
        flow.load_state_dict(load_file(str(path / "flow.safetensors")))
        flow.fit_info = cfg.get("fit_info", [])
        return flow.to(device)


def fit_alignment(
    method: str,
    X,
    y,
    *,
    n_layers: int = 30,
    k_directions: int = 2,
    image_data: bool = False,
    weights: Sequence[float] | None = None,
    **options,
) -> IterativeAlignmentFlow:
    """Create and fit a flow in one call: ``fit_alignment("inb", X, y, n_layers=30, ...)``.

    ``options`` are passed to :meth:`IterativeAlignmentFlow.fit`.
    """
    flow = IterativeAlignmentFlow.create(X, y, image_data=image_data, weights=weights)
    return flow.fit(X, y, n_layers, k_directions, method=method, **options)
