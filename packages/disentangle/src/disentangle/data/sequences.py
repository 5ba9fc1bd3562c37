"""Transformed-digit sequences for Flow Factorized Representation Learning (FFRL).

Song, Keller, Sebe, Welling, *Flow Factorized Representation Learning*, NeurIPS 2023
(arXiv 2309.13167); data protocol as the authors' code runs it (``papers/ffrl.md`` §2.1):

- a red digit (grey copied into the R channel, G = B = 0) on black, ``3×28×28`` in [0, 1];
- K = 3 transformations, each applied to the *first* frame with the step-t parameter
  (frames are not chained), t = 0..T (T = 8 in the paper; t = 0 is the identity):

  ==========  =============================  ================================
  k           transformation                 parameter at step t
  ==========  =============================  ================================
  0 scale     zoom about the centre          scale 1 + 0.1·t
  1 rotate    rotation about the centre      10·t degrees (counter-clockwise
                                             on screen, kornia/OpenCV sign)
  2 hue       HSV hue rotation               20·t degrees
  ==========  =============================  ================================

- the warps are bilinear with zero padding about the centre ``(14, 14)`` in pixel-index
  coordinates (kornia's ``warp_affine`` with ``get_rotation_matrix2d`` as in the authors' code,
  ``align_corners=True``); here they are a batched ``affine_grid``/``grid_sample``, and the hue
  step is the exact RGB→HSV→RGB hue shift of ``kornia.enhance.adjust_hue`` in closed form;
- one k per mini-batch (:class:`SequenceSampler`), train/evaluation splits that do not overlap
  (80/20 as the authors' 48k/12k ``random_split`` of the MNIST training set).

Sources of the first frames:

- ``"digits_seq"``: scikit-learn's bundled 8×8 digits (1 797 images, no download), upsampled
  bilinearly to a 20×20 box centred in 28×28 like MNIST. A dataset of its own: results on it are
  **not** MNIST results.
- ``"mnist_seq"``: MNIST read from local files (IDX ``train-images-idx3-ubyte[.gz]`` or an
  ``.npz`` with ``x_train``/``images``), given by ``path`` — nothing is downloaded.

>>> import torch
>>> from disentangle.data.sequences import make_sequence_dataset, SequenceSampler
>>> ds = make_sequence_dataset("digits_seq", split="train")
>>> batch = next(iter(SequenceSampler(ds, batch_size=4, seed=0)))
>>> tuple(batch.frames.shape), batch.k.unique().numel()
((4, 9, 3, 28, 28), 1)
"""

from __future__ import annotations

import gzip
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "FALCOR3D",
    "ISAAC3D",
    "SEQUENCE_DATASETS",
    "SHAPES3D_TRANSFORMATIONS",
    "TRANSFORMATIONS",
    "DigitSequences",
    "FactorSequences",
    "FolderSequences",
    "FolderSpec",
    "SequenceBatch",
    "SequenceSampler",
    "Shapes3DSequences",
    "affine_warp",
    "load_mnist_images",
    "make_sequence_dataset",
    "rotate_hue",
    "sequence_frames",
    "transform_frames",
]

#: transformation names in index order k = 0, 1, 2 (ffrl.md §2.1)
TRANSFORMATIONS: tuple[str, ...] = ("scale", "rotate", "hue")
#: step sizes of the paper: scale +0.1, rotation +10°, hue +20° per step
SCALE_STEP, ANGLE_STEP, HUE_STEP = 0.1, 10.0, 20.0
#: centre of the warps in pixel-index coordinates, as the authors' code (kornia)
DEFAULT_CENTER = (14.0, 14.0)


def affine_warp(
    images: torch.Tensor,
    angle_deg: torch.Tensor | float,
    scale: torch.Tensor | float,
    center: tuple[float, float] = DEFAULT_CENTER,
) -> torch.Tensor:
    """Rotate and scale ``images`` about ``center``; bilinear, zero padding.

    Implements OpenCV/kornia's ``getRotationMatrix2D`` + ``warpAffine``: the forward map in
    pixel-index coordinates ``(x, y)`` (x to the right, y down) is
    ``p' = c + s·R(θ)ᵀ (p − c)`` with ``R(θ)ᵀ = [[cos θ, sin θ], [−sin θ, cos θ]]``, so a positive
    angle turns the picture counter-clockwise on screen and ``s > 1`` zooms in; the output is
    ``out(p') = in(c + R(θ)(p' − c)/s)``.

    Args:
        images: ``(B, C, H, W)`` float.
        angle_deg: rotation in degrees, a scalar or ``(B,)``.
        scale: scale factor (> 0), a scalar or ``(B,)``.
        center: ``(cx, cy)`` in pixel-index coordinates.

    Returns:
        ``(B, C, H, W)`` warped images.
    """
    if images.ndim != 4:
        raise ValueError(f"images: expected (B, C, H, W), got shape {tuple(images.shape)}")
    b, _, h, w = images.shape
    dtype, device = images.dtype, images.device
    theta = torch.deg2rad(torch.as_tensor(angle_deg, dtype=dtype, device=device)).expand(b)
    s = torch.as_tensor(scale, dtype=dtype, device=device).expand(b)
    if not bool((s > 0).all()):
        raise ValueError("scale: must be > 0")
    cos, sin = torch.cos(theta) / s, torch.sin(theta) / s
    # inverse map in pixels: src = c + A (dst − c), A = R(θ)/s = [[cos, −sin], [sin, cos]]/s
    a = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # (B,2,2)
    cx, cy = center
    # pixels ↔ normalised coordinates of align_corners=True: p = n·half + half
    half = torch.tensor([(w - 1) / 2, (h - 1) / 2], dtype=dtype, device=device)
    c = torch.tensor([cx, cy], dtype=dtype, device=device)
    # n_src = (c + A (half·n + half − c) − half) / half
    lin = a * half[None, None, :] / half[None, :, None]
    shift = (c + torch.einsum("bij,j->bi", a, half - c) - half) / half
    grid = F.affine_grid(torch.cat([lin, shift[..., None]], -1), list(images.shape), True)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def rotate_hue(images: torch.Tensor, degrees: torch.Tensor | float) -> torch.Tensor:
    """Shift the HSV hue of RGB ``images`` by ``degrees``, keeping value and saturation.

    Exact RGB→HSV→RGB (as ``kornia.enhance.adjust_hue`` with factor = radians): with
    ``V = max``, ``Δ = max − min`` and hue ``h``, the output channel n ∈ {R: 5, G: 3, B: 1} is
    ``V − Δ·clamp(min(k, 4 − k), 0, 1)`` with ``k = (n + h'/60) mod 6`` and
    ``h' = h + degrees`` (the standard HSV→RGB formula). Grey pixels (Δ = 0) are unchanged.

    Args:
        images: ``(B, 3, H, W)`` RGB in [0, 1].
        degrees: hue shift, a scalar or ``(B,)``.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images: expected (B, 3, H, W) RGB, got shape {tuple(images.shape)}")
    shift = torch.as_tensor(degrees, dtype=images.dtype, device=images.device)
    shift = shift.expand(images.shape[0]).reshape(-1, 1, 1)
    r, g, b = images.unbind(1)
    vmax, argmax = images.max(1)
    delta = vmax - images.min(1).values
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hue = torch.where(
        argmax == 0,
        torch.remainder((g - b) / safe, 6.0),
        torch.where(argmax == 1, (b - r) / safe + 2.0, (r - g) / safe + 4.0),
    )
    hue = hue + shift / 60.0  # in sextants
    out = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(n + hue, 6.0)
        out.append(vmax - delta * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0))
    return torch.stack(out, 1)


def _transformation_index(k: int | str) -> int:
    if isinstance(k, str):
        if k not in TRANSFORMATIONS:
            raise ValueError(
                f"k: unknown transformation {k!r}; known: {', '.join(TRANSFORMATIONS)}"
            )
        return TRANSFORMATIONS.index(k)
    if not 0 <= int(k) < len(TRANSFORMATIONS):
        raise ValueError(
            f"k: transformation index must be in 0..{len(TRANSFORMATIONS) - 1}, got {k}"
        )
    return int(k)


def transform_frames(
    x0: torch.Tensor,
    k: int | str,
    t: torch.Tensor | float,
    center: tuple[float, float] = DEFAULT_CENTER,
) -> torch.Tensor:
    """The step-``t`` frame of transformation ``k`` made directly from ``x0`` (ffrl.md §2.1).

    Args:
        x0: ``(B, 3, H, W)`` first frames in [0, 1].
        k: transformation, an index of :data:`TRANSFORMATIONS` or its name.
        t: step, a scalar or ``(B,)`` (real values allowed; 0 is the identity).

    Returns:
        ``(B, 3, H, W)``: scale ``1 + 0.1·t``, rotation ``10·t`` degrees, or hue ``+20·t`` degrees.
    """
    kk = _transformation_index(k)
    t = torch.as_tensor(t, dtype=x0.dtype, device=x0.device)
    if kk == 0:
        out = affine_warp(x0, 0.0, 1.0 + SCALE_STEP * t, center)
    elif kk == 1:
        out = affine_warp(x0, ANGLE_STEP * t, 1.0, center)
    else:
        out = rotate_hue(x0, HUE_STEP * t)
    # t = 0 is the identity exactly (the float32 sampling grid is off by ~1e-6)
    return torch.where((t == 0).reshape(-1, 1, 1, 1), x0, out)


def sequence_frames(
    x0: torch.Tensor, k: int | str, steps: int = 8, center: tuple[float, float] = DEFAULT_CENTER
) -> torch.Tensor:
    """Frames ``t = 0..steps`` of transformation ``k``: ``(B, steps + 1, 3, H, W)``.

    All steps are computed in one batched call (frame t is made from ``x0``, not from frame t−1).
    """
    if int(steps) < 1:
        raise ValueError(f"steps: must be ≥ 1, got {steps}")
    b = x0.shape[0]
    t = torch.arange(steps + 1, dtype=x0.dtype, device=x0.device).repeat_interleave(b)
    frames = transform_frames(x0.repeat(steps + 1, 1, 1, 1), k, t, center)
    return frames.reshape(steps + 1, b, *x0.shape[1:]).transpose(0, 1)


def load_mnist_images(path: str | os.PathLike) -> np.ndarray:
    """MNIST images ``(N, 28, 28)`` uint8 from local files (never downloaded).

    ``path`` is an IDX file (``train-images-idx3-ubyte``, optionally ``.gz``), a folder holding
    one, or an ``.npz`` with an ``x_train`` (Keras layout) or ``images`` array.

    Raises:
        FileNotFoundError: nothing at ``path`` or no IDX file in the folder.
        ValueError: a malformed file (wrong magic number, truncated data, wrong shape).
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"path: no MNIST file or folder at {str(p)!r}")
    if p.is_dir():
        names = ("train-images-idx3-ubyte", "train-images.idx3-ubyte")
        found = [p / (n + ext) for n in names for ext in ("", ".gz") if (p / (n + ext)).exists()]
        if not found:
            raise FileNotFoundError(
                f"path: folder {str(p)!r} has no train-images-idx3-ubyte[.gz] file"
            )
        p = found[0]
    if p.suffix == ".npz":
        with np.load(p) as z:
            key = next((k for k in ("x_train", "images") if k in z.files), None)
            if key is None:
                raise ValueError(f"path: {str(p)!r} has no 'x_train' or 'images' array")
            arr = z[key]
        if arr.ndim != 3:
            raise ValueError(f"path: {str(p)!r} images must be (N, H, W), got {arr.shape}")
        if arr.dtype != np.uint8:
            arr = np.clip(np.round(arr * (255.0 if arr.max() <= 1 else 1.0)), 0, 255)
        return arr.astype(np.uint8)
    raw = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
    if len(raw) < 16 or int.from_bytes(raw[:4], "big") != 2051:
        raise ValueError(f"path: {str(p)!r} is not an IDX image file (magic number 2051)")
    n, h, w = (int.from_bytes(raw[i : i + 4], "big") for i in (4, 8, 12))
    if len(raw) != 16 + n * h * w:
        raise ValueError(
            f"path: {str(p)!r} is truncated: header says {n}×{h}×{w}, got {len(raw) - 16} bytes"
        )
    return np.frombuffer(raw, np.uint8, offset=16).reshape(n, h, w).copy()


def _sklearn_digits() -> np.ndarray:
    """scikit-learn's 8×8 digits upsampled to a 20×20 box centred in 28×28, float32 [0, 1]."""
    from sklearn.datasets import load_digits

    small = torch.from_numpy(load_digits().images.astype(np.float32) / 16.0)[:, None]
    box = F.interpolate(small, size=(20, 20), mode="bilinear", align_corners=False)
    return F.pad(box.clamp(0, 1), (4, 4, 4, 4))[:, 0].numpy()


class DigitSequences(torch.utils.data.Dataset):
    """First frames of red-digit sequences; item ``i`` is ``(x0 (3, 28, 28) float32, i)``.

    Sequences are made per batch by :class:`SequenceSampler` (one k per batch) or
    :meth:`frames`, so the loader stays light and the transformation runs batched.

    Args:
        images: ``(N, H, W)`` grey images, uint8 or float in [0, 1].
        split: ``"train"``, ``"eval"`` or ``"all"``.
        eval_fraction: share of images in the evaluation split (0.2 as the authors' 48k/12k).
        split_seed: seed of the permutation that assigns images to splits.
        steps: T, the number of transformation steps (frames t = 0..T).
        name: dataset name stored on the object.
    """

    transformations = TRANSFORMATIONS

    def __init__(
        self,
        images: np.ndarray,
        split: str = "train",
        eval_fraction: float = 0.2,
        split_seed: int = 0,
        steps: int = 8,
        name: str = "digit_sequences",
    ) -> None:
        if split not in ("train", "eval", "all"):
            raise ValueError(f"split: expected 'train', 'eval' or 'all', got {split!r}")
        if not 0 < eval_fraction < 1:
            raise ValueError(f"eval_fraction: must be in (0, 1), got {eval_fraction}")
        if int(steps) < 1:
            raise ValueError(f"steps: must be ≥ 1, got {steps}")
        arr = np.asarray(images)
        if arr.ndim != 3:
            raise ValueError(f"images: expected (N, H, W) grey images, got shape {arr.shape}")
        grey = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)
        if not np.isfinite(grey).all() or grey.min() < 0 or grey.max() > 1:
            raise ValueError("images: values must be finite and in [0, 1] (or uint8)")
        n = grey.shape[0]
        perm = np.random.default_rng(split_seed).permutation(n)
        n_eval = round(eval_fraction * n)
        self.indices = {"eval": perm[:n_eval], "train": perm[n_eval:], "all": np.arange(n)}[split]
        self.split, self.steps, self.name = split, int(steps), name
        self._grey = torch.from_numpy(grey[np.sort(self.indices)])
        self.observation_shape = (3, *grey.shape[1:])

    def __len__(self) -> int:
        return self._grey.shape[0]

    def first_frames(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """Red first frames ``(B, 3, H, W)``: the grey digit in R, zeros in G and B."""
        grey = self._grey[torch.as_tensor(np.asarray(indices), dtype=torch.long)]
        zeros = torch.zeros_like(grey)
        return torch.stack([grey, zeros, zeros], 1)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.first_frames([int(index)])[0], int(index)

    def frames(self, indices: Sequence[int] | np.ndarray | torch.Tensor, k: int | str):
        """Sequences ``(B, steps + 1, 3, H, W)`` of transformation ``k`` for items ``indices``."""
        return sequence_frames(self.first_frames(indices), k, self.steps)

    def sequence_fn(self, steps: int | None = None) -> Callable:
        """``(x0, k, indices) -> frames`` for the models' ``sequence_fn``: the frames are made
        from the batch's first frames ``x0`` (on their device), ``steps`` of them (default T)."""
        return partial(_frames_from_first, steps=self.steps if steps is None else steps)


def _frames_from_first(x0: torch.Tensor, k: int, indices: torch.Tensor, steps: int):
    return sequence_frames(x0, k, steps)


class FactorSequences(torch.utils.data.Dataset):
    """Sequences over a factor grid: an item is a row of ``classes`` (one level per factor);
    its sequence for transformation k sets grid column ``columns[k]`` to levels 0..T with the
    other factors fixed. Subclasses set ``classes``, ``columns``, ``transformations``,
    ``steps`` and ``observation_shape`` and implement ``_images(classes) -> (N, C, H, W)``.
    Item ``i`` is ``(x0, i)``, x0 the item's own image."""

    classes: np.ndarray
    columns: tuple[int, ...]
    transformations: tuple[str, ...]
    steps: int

    def _images(self, classes: np.ndarray) -> torch.Tensor:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.classes)

    def first_frames(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """The items' images ``(B, C, H, W)``."""
        return self._images(self.classes[np.asarray(indices, dtype=np.int64)])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.first_frames([int(index)])[0], int(index)

    def frames(self, indices: Sequence[int] | np.ndarray | torch.Tensor, k: int | str):
        """Sequences ``(B, steps + 1, C, H, W)``: factor k of each item at levels 0..T."""
        if isinstance(k, str):
            if k not in self.transformations:
                raise ValueError(
                    f"k: unknown transformation {k!r}; known: {', '.join(self.transformations)}"
                )
            k = self.transformations.index(k)
        if not 0 <= int(k) < len(self.transformations):
            raise ValueError(f"k: must be in 0..{len(self.transformations) - 1}, got {k}")
        cls = self.classes[np.asarray(indices, dtype=np.int64)]
        seq = np.repeat(cls[:, None], self.steps + 1, 1)  # (B, T + 1, factors)
        seq[:, :, self.columns[int(k)]] = np.arange(self.steps + 1)
        images = self._images(seq.reshape(-1, cls.shape[1]))
        return images.reshape(len(cls), self.steps + 1, *images.shape[1:])

    def sequence_fn(self, steps: int | None = None) -> Callable:
        """``(x0, k, indices) -> frames`` for the models' ``sequence_fn``, made from the items'
        factors (``x0`` only gives the device and dtype). Frames are the dataset's T + 1
        (``steps`` is accepted for the common signature; build the dataset with the T wanted)."""
        return partial(_frames_from_items, self)


def _frames_from_items(data: FactorSequences, x0: torch.Tensor, k: int, indices):
    return data.frames(torch.as_tensor(indices).cpu(), k).to(x0.device, x0.dtype)


#: The transformations of the 3D Shapes sequences (ffrl.md §2.2): factor k of the grid is set
#: to its levels 0..T with the others fixed; shape (index 4 of the grid) is never varied.
SHAPES3D_TRANSFORMATIONS: tuple[str, ...] = (
    "floor_hue",
    "wall_hue",
    "object_hue",
    "scale",
    "orientation",
)
_SHAPES3D_FACTOR = (0, 1, 2, 3, 5)  # grid column of each transformation


class Shapes3DSequences(FactorSequences):
    """3D Shapes sequences (K = 5, ``papers/ffrl.md`` §2.2); item ``i`` is ``(x0, i)``.

    An item is a full factor combination of the 3D Shapes grid. Its sequence for
    transformation k sets factor k to levels 0..T (T ≤ 7: the first 8 levels, as the authors)
    with the other five factors fixed, so x_0 has factor k at level 0 — a different image for
    each k, as in the authors' code. ``first_frames`` (what the loader yields, and what
    ``log p(x_0)`` scores) are the items' own images.

    Splits do not overlap: a sequence never varies the object shape, so the evaluation split
    holds every combination with one held-out shape (``eval_shape``, default 2: sphere) and no
    frame of it appears in training. The authors had no split (ffrl.md §2.2).

    Args:
        base: a :class:`~disentangle.data.shapes3d.Shapes3D` (procedural or the real
            ``3dshapes.h5``); built procedurally when None.
        split: ``"train"``, ``"eval"`` or ``"all"``.
        steps: T in 1..7.
        eval_shape: the shape class (0..3) held out for evaluation.
        num_items: keep this many items of the split (a seeded subset; None: all).
        seed: seed of that subset.
    """

    transformations = SHAPES3D_TRANSFORMATIONS

    def __init__(
        self,
        base=None,
        split: str = "train",
        steps: int = 7,
        eval_shape: int = 2,
        num_items: int | None = None,
        seed: int = 0,
    ) -> None:
        from disentangle.data.shapes3d import Shapes3D

        if split not in ("train", "eval", "all"):
            raise ValueError(f"split: expected 'train', 'eval' or 'all', got {split!r}")
        if not 1 <= int(steps) <= 7:
            raise ValueError(f"steps: must be in 1..7 (8 levels of scale), got {steps}")
        if eval_shape not in range(4):
            raise ValueError(f"eval_shape: must be a shape class in 0..3, got {eval_shape}")
        self.base = Shapes3D(progress=False) if base is None else base
        grid = self.base.grid
        classes = grid.classes_of(np.arange(len(grid)))
        keep = {
            "train": classes[:, 4] != eval_shape,
            "eval": classes[:, 4] == eval_shape,
            "all": np.ones(len(classes), bool),
        }[split]
        classes = classes[keep]
        if num_items is not None:
            if num_items < 1:
                raise ValueError(f"num_items: must be ≥ 1, got {num_items}")
            pick = np.random.default_rng(seed).permutation(len(classes))[:num_items]
            classes = classes[np.sort(pick)]
        self.classes, self.split, self.steps = classes, split, int(steps)
        self.columns, self.name = _SHAPES3D_FACTOR, "shapes3d_seq"
        self.observation_shape = tuple(self.base.observation_shape)

    def _images(self, classes: np.ndarray) -> torch.Tensor:
        rng = np.random.default_rng(0)  # the grid is noise-free; the generator is unused
        images = self.base.sample_observations_from_factors(classes, rng)
        return torch.from_numpy(np.asarray(images, dtype=np.float32))


@dataclass(frozen=True)
class FolderSpec:
    """Layout of an image-folder factor dataset (NVlabs' high-res disentanglement datasets)."""

    factor_names: tuple[str, ...]
    """Factors in index order: file index = Σ_i level_i · base_i, the last factor fastest."""
    factor_sizes: tuple[int, ...]
    transformations: tuple[int, ...]
    """Factor indices FFRL varies, in k order."""
    steps: int
    """T: frames j = 0..T per sequence."""
    split_factors: tuple[int, int]
    """Two factors whose top level no sequence reaches (size > T + 1): eval holds the items
    at the top level of both, train the items at the top level of neither (module doc)."""
    pattern: str = "{:06d}.png"
    """File name of index i inside the images folder."""


#: Falcor3D (ffrl.md §2.3): 233 280 images, every factor is a transformation, frames 0..4.
FALCOR3D = FolderSpec(
    (
        "lighting_intensity",
        "lighting_x",
        "lighting_y",
        "lighting_z",
        "camera_x",
        "camera_y",
        "camera_z",
    ),
    (5, 6, 6, 6, 6, 6, 6),
    (0, 1, 2, 3, 4, 5, 6),
    4,
    (1, 4),
)
#: Isaac3D (ffrl.md §2.3), factor order of the index bases: 737 280 images, factors 1..8
#: are the transformations (object_shape is not), frames 0..3.
ISAAC3D = FolderSpec(
    (
        "object_shape",
        "robot_x",
        "robot_y",
        "camera_height",
        "object_scale",
        "lighting_intensity",
        "lighting_y",
        "object_color",
        "wall_color",
    ),
    (3, 8, 5, 4, 4, 4, 6, 4, 4),
    (1, 2, 3, 4, 5, 6, 7, 8),
    3,
    (1, 6),
)


class FolderSequences(FactorSequences):
    """Sequences of an image-folder factor dataset (Falcor3D, Isaac3D; ``papers/ffrl.md``
    §2.3), read lazily from PNG files; item ``i`` is ``(x0, i)``.

    Frame j of the sequence of item ``i`` along transformation k is the file whose factor k is
    at level j and whose other factors are those of ``i``. This **fixes the authors' base-index
    bug**: their code took ``(i mod base_0) + j·base_k``, which zeroes factor 0 instead of
    factor k, so for k ≥ 1 the frames carried into factor k − 1 and mixed factors.

    Splits do not overlap: with a, b the spec's ``split_factors`` (top levels never reached by a
    sequence), eval holds the items at the top level of both, train those at the top level of
    neither; every frame of an eval sequence keeps a or b at its top level, which no train frame
    has. The authors had no split.

    Args:
        root: the dataset folder (``images/`` inside it, or the images themselves).
        spec: :data:`FALCOR3D`, :data:`ISAAC3D` or a :class:`FolderSpec`.
        split: ``"train"``, ``"eval"`` or ``"all"``.
        steps: T (default: the spec's).
        num_items: keep this many items of the split (seeded subset; None: all).
        seed: seed of that subset.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        spec: FolderSpec,
        split: str = "train",
        steps: int | None = None,
        num_items: int | None = None,
        seed: int = 0,
    ) -> None:
        from PIL import Image

        folder = Path(root)
        if (folder / "images").is_dir():
            folder = folder / "images"
        if not folder.is_dir():
            raise FileNotFoundError(f"root: no image folder at {str(root)!r}")
        if split not in ("train", "eval", "all"):
            raise ValueError(f"split: expected 'train', 'eval' or 'all', got {split!r}")
        self.spec, self.folder = spec, folder
        self.steps = spec.steps if steps is None else int(steps)
        sizes = np.asarray(spec.factor_sizes)
        too_short = [spec.factor_names[f] for f in spec.transformations if sizes[f] <= self.steps]
        if self.steps < 1 or too_short:
            raise ValueError(f"steps: must be ≥ 1 and below the levels of {too_short or 'all'}")
        a, b = spec.split_factors
        if split != "all" and min(sizes[a], sizes[b]) <= self.steps + 1:
            raise ValueError(
                f"spec.split_factors: factors {spec.factor_names[a]!r} and "
                f"{spec.factor_names[b]!r} need more than steps + 1 = {self.steps + 1} levels, "
                "so that no sequence reaches their top level (else train and eval share frames)"
            )
        total = int(np.prod(sizes))
        last = folder / spec.pattern.format(total - 1)
        if not last.exists():
            raise FileNotFoundError(
                f"root: {folder} lacks {last.name}; a {'×'.join(map(str, sizes))} grid needs "
                f"{total} files named like {spec.pattern.format(0)}"
            )
        with Image.open(folder / spec.pattern.format(0)) as im:
            w, h = im.size
        self.observation_shape = (3, h, w)
        self.transformations = tuple(spec.factor_names[f] for f in spec.transformations)
        classes = np.stack(np.unravel_index(np.arange(total), sizes), 1)
        top_a, top_b = classes[:, a] == sizes[a] - 1, classes[:, b] == sizes[b] - 1
        keep = {"train": ~top_a & ~top_b, "eval": top_a & top_b, "all": np.ones(total, bool)}
        classes = classes[keep[split]]
        if num_items is not None:
            pick = np.random.default_rng(seed).permutation(len(classes))[:num_items]
            classes = classes[np.sort(pick)]
        name = Path(root).name if folder == Path(root) else folder.parent.name
        self.classes, self.split, self.name = classes, split, name
        self.columns, self._sizes = spec.transformations, sizes

    def _images(self, classes: np.ndarray) -> torch.Tensor:
        from PIL import Image

        index = np.ravel_multi_index(tuple(classes.T), tuple(self._sizes))
        images = []
        for i in index.tolist():
            path = self.folder / self.spec.pattern.format(i)
            try:
                with Image.open(path) as im:
                    images.append(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0)
            except OSError as err:
                raise ValueError(f"root: cannot read {path} ({err})") from err
        return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


SEQUENCE_DATASETS: dict[str, str] = {
    "digits_seq": "scikit-learn's 8×8 digits upsampled to 28×28 (bundled; NOT MNIST)",
    "mnist_seq": "MNIST train images from local IDX/.npz files (path=...)",
    "shapes3d_seq": "3D Shapes sequences, K = 5 (procedural renderer, or 3dshapes.h5 at path)",
    "falcor3d_seq": "Falcor3D sequences, K = 7, from the 128×128 PNG folder at path",
    "isaac3d_seq": "Isaac3D sequences, K = 8, from the 128×128 PNG folder at path",
}


def make_sequence_dataset(
    name: str,
    *,
    path: str | os.PathLike | None = None,
    split: str = "train",
    steps: int | None = None,
    eval_fraction: float = 0.2,
    split_seed: int = 0,
) -> DigitSequences | Shapes3DSequences | FolderSequences:
    """Build a sequence dataset by name (:data:`SEQUENCE_DATASETS`).

    Args:
        name: ``"digits_seq"`` (bundled scikit-learn digits), ``"mnist_seq"`` (needs ``path``)
            or ``"shapes3d_seq"`` (procedural, or the real ``3dshapes.h5`` at ``path``).
        path: MNIST file or folder (see :func:`load_mnist_images`), or the 3D Shapes file.
        steps: T, frames t = 0..T per sequence (None: 8 for digits, 7 for 3D Shapes, the
            spec's 4 for Falcor3D and 3 for Isaac3D).
        split, eval_fraction, split_seed: see :class:`DigitSequences` (3D Shapes and the
            folders split by factors instead: :class:`Shapes3DSequences`,
            :class:`FolderSequences`).
    """
    if name in ("falcor3d_seq", "isaac3d_seq"):
        if path is None:
            raise ValueError(f"path: {name!r} reads a local PNG folder; pass path=...")
        spec = FALCOR3D if name == "falcor3d_seq" else ISAAC3D
        return FolderSequences(path, spec, split, steps)
    if name == "shapes3d_seq":
        from disentangle.data.shapes3d import Shapes3D

        base = Shapes3D(path, progress=False) if path is not None else None
        return Shapes3DSequences(base, split, 7 if steps is None else steps)
    if name == "digits_seq":
        if path is not None:
            raise ValueError("path: 'digits_seq' is bundled with scikit-learn and takes no path")
        images = _sklearn_digits()
    elif name == "mnist_seq":
        if path is None:
            raise ValueError("path: 'mnist_seq' reads local MNIST files; pass path=...")
        images = load_mnist_images(path)
    else:
        raise ValueError(
            f"name: unknown sequence dataset {name!r}; known: {list(SEQUENCE_DATASETS)}"
        )
    steps = 8 if steps is None else steps
    return DigitSequences(images, split, eval_fraction, split_seed, steps, name)


@dataclass
class SequenceBatch:
    """A batch of sequences sharing one transformation."""

    frames: torch.Tensor
    """``(B, T + 1, 3, H, W)``; frame 0 is the untransformed digit."""
    k: torch.Tensor
    """``(B,)`` int64 transformation index (the same for the whole batch)."""
    indices: torch.Tensor
    """``(B,)`` int64 item indices in the dataset."""


class SequenceSampler:
    """Seedable iterator of :class:`SequenceBatch`: one k drawn uniformly per batch (ffrl.md §1.7).

    Each epoch is a fresh permutation of the dataset; the stream of (indices, k) depends only on
    ``seed``. The weakly supervised setting uses the same batches and simply hides ``k`` from the
    model.

    Args:
        dataset: a :class:`DigitSequences`.
        batch_size: sequences per batch.
        seed: seed of the order and of the k draws.
        drop_last: drop a last incomplete batch of an epoch.
        epochs: number of passes (None: endless).
    """

    def __init__(
        self,
        dataset: DigitSequences,
        batch_size: int,
        seed: int = 0,
        drop_last: bool = True,
        epochs: int | None = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size: must be ≥ 1, got {batch_size}")
        if drop_last and batch_size > len(dataset):
            raise ValueError(
                f"batch_size: {batch_size} exceeds the {len(dataset)} items of the dataset"
            )
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.drop_last, self.epochs = drop_last, epochs

    def __len__(self) -> int:
        per = len(self.dataset) / self.batch_size
        per_epoch = math.floor(per) if self.drop_last else math.ceil(per)
        if self.epochs is None:
            raise TypeError("an endless SequenceSampler (epochs=None) has no length")
        return per_epoch * self.epochs

    def __iter__(self) -> Iterator[SequenceBatch]:
        gen = torch.Generator().manual_seed(self.seed)
        n, bs, epoch = len(self.dataset), self.batch_size, 0
        num_k = len(self.dataset.transformations)
        while self.epochs is None or epoch < self.epochs:
            order = torch.randperm(n, generator=gen)
            stop = n - n % bs if self.drop_last else n
            for start in range(0, stop, bs):
                idx = order[start : start + bs]
                k = int(torch.randint(num_k, (1,), generator=gen))
                yield SequenceBatch(self.dataset.frames(idx, k), torch.full((idx.numel(),), k), idx)
            epoch += 1
