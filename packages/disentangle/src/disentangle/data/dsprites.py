"""dSprites: a calibrated procedural generator, the real ``.npz`` loader, colour and noisy variants.

Factor grid and order of the real file (``metrics.md`` §4.1): color 1, shape 3 (square,
ellipse, heart), scale 6 = linspace(0.5, 1, 6), orientation 40 = linspace(0, 2π, 40) (both
ends), posX 32 and posY 32 = linspace(0, 1, 32); 737 280 binary 64×64 images, flat index
row-major with posY fastest. Like disentanglement_lib's ``dsprites_full`` the datasets expose
the K = 5 factors after colour (its single value is kept in the file arrays).

Geometry of the generator (pixel units of the 64×64 canvas, measured on the 320 real frames
of ``deepmind/dsprites-dataset:dsprites.gif``; see ``apps/calibrate_dsprites.py`` and
``docs/DATA.md``):

* a pixel is on when its centre lies inside the shape (point sampling, no anti-aliasing);
* sprite centre = (16 + 32·posX, 16 + 32·posY), posY growing down the rows;
* orientation θ rotates the shape counter-clockwise on screen about that centre;
* at scale s: square of side 19.197·s; ellipse with semi-axes 12.766·s (horizontal at θ = 0)
  and 7.2137·s; heart (lobes up, tip down) given by a polar outline r(φ)·s, φ measured from
  "up", a 24-knot piecewise-linear profile (:class:`SpriteGeometry`).

With these the best-matching generated image reproduces every real frame with IoU ≥ 0.97.
Exact duplicates exist only where the real file has them: orientation 0 and 2π.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .base import FactorGrid, GroundTruthDataset
from .cache import cached_array

__all__ = [
    "DSPRITES_FILENAME",
    "DSPRITES_GRID",
    "ColorDSprites",
    "DSprites",
    "DSpritesArrays",
    "NoisyDSprites",
    "SpriteGeometry",
    "dsprites_metadata",
    "factor_metadata",
    "generate_dsprites",
    "load_dsprites_npz",
    "render_dsprites",
    "save_dsprites_npz",
]

DSPRITES_FILENAME = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
#: environment variable naming the real file (or the folder holding it)
DSPRITES_ENV = "DSPRITES_PATH"
FILE_NAMES = ("color", "shape", "scale", "orientation", "posX", "posY")
FILE_SIZES = (1, 3, 6, 40, 32, 32)
FILE_VALUES = (
    np.array([1.0]),
    np.array([1.0, 2.0, 3.0]),
    np.linspace(0.5, 1.0, 6),
    np.linspace(0.0, 2 * np.pi, 40),
    np.linspace(0.0, 1.0, 32),
    np.linspace(0.0, 1.0, 32),
)
#: the 5 latent factors the datasets expose (dlib ``dsprites_full``)
DSPRITES_GRID = FactorGrid(FILE_NAMES[1:], FILE_VALUES[1:])
N_IMAGES = 737_280
IMAGE_SIZE = 64


@dataclass(frozen=True)
class SpriteGeometry:
    """Shape sizes at scale 1, in pixels of the 64×64 canvas (see the module docstring).

    ``heart_profile`` is the heart's outline radius at equally spaced angles φ ∈ [0, π]
    measured from "up" (the outline is mirror-symmetric), linearly interpolated.
    """

    square_side: float = 19.197
    ellipse_axes: tuple[float, float] = (12.766, 7.2137)
    heart_profile: tuple[float, ...] = (
        5.195, 7.408, 9.036, 10.145, 10.839, 11.195, 11.267, 11.105, 10.773, 10.191, 9.322,
        8.518, 7.740, 7.097, 6.591, 6.258, 6.017, 5.896, 5.917, 6.017, 6.312, 6.767, 7.599,
        9.117,
    )  # fmt: skip

    @property
    def max_radius(self) -> float:
        """The farthest any shape reaches from its centre."""
        return max(self.square_side / np.sqrt(2), *self.ellipse_axes, *self.heart_profile)


#: the geometry calibrated on the real frames (``apps/calibrate_dsprites.py --refit``)
CALIBRATED = SpriteGeometry()
GENERATOR_VERSION = 1


def window_size(scale: float, geometry: SpriteGeometry = CALIBRATED) -> int:
    """Even side of a window around the sprite centre that holds every on-pixel at ``scale``."""
    return 2 * int(np.ceil(geometry.max_radius * scale + 1))


def _generator_params() -> dict:
    return {"version": GENERATOR_VERSION, **asdict(CALIBRATED)}


def render_sprite_windows(
    classes: np.ndarray, win: int | None = None, geometry: SpriteGeometry = CALIBRATED
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rasterise sprites into square windows around their centres.

    Args:
        classes: ``(n, 5)`` classes (shape, scale, orientation, posX, posY).
        win: even window side; default :func:`window_size` of the largest scale present.
        geometry: shape sizes (default: calibrated on the real frames).

    Returns:
        ``(masks (n, win, win) bool, top (n,), left (n,))``: the window of sprite ``i``
        covers rows ``top[i]:top[i]+win`` and columns ``left[i]:left[i]+win`` of the 64×64
        image and holds every on-pixel of the sprite.
    """
    cls = DSPRITES_GRID.check_classes(classes, "classes")
    n = cls.shape[0]
    if win is None:
        win = window_size(FILE_VALUES[2][cls[:, 1].max()], geometry) if n else 2
    if win % 2 or win < window_size(FILE_VALUES[2][cls[:, 1].max()] if n else 0.5, geometry):
        raise ValueError(f"win must be even and large enough for the scales present, got {win}")
    shape = cls[:, 0]
    s = FILE_VALUES[2][cls[:, 1]]
    th = FILE_VALUES[3][cls[:, 2]]
    cx = 16.0 + 32.0 * FILE_VALUES[4][cls[:, 3]]
    cy = 16.0 + 32.0 * FILE_VALUES[5][cls[:, 4]]
    left = np.floor(cx).astype(np.int64) - win // 2
    top = np.floor(cy).astype(np.int64) - win // 2
    centres = np.arange(win) + 0.5
    dx = torch.from_numpy((left[:, None] + centres - cx[:, None]) / s[:, None]).float()
    dv = torch.from_numpy((cy[:, None] - top[:, None] - centres) / s[:, None]).float()
    cos = torch.from_numpy(np.cos(th)).float()[:, None, None]
    sin = torch.from_numpy(np.sin(th)).float()[:, None, None]
    masks = torch.zeros((n, win, win), dtype=torch.bool)
    for kind in range(3):
        sel = torch.from_numpy(np.flatnonzero(shape == kind))
        if sel.numel() == 0:
            continue
        x, v0 = dx[sel][:, None, :], dv[sel][:, :, None]
        c, si = cos[sel], sin[sel]
        u = x * c + v0 * si  # rotate the pixel into the sprite's frame (inverse of CCW θ)
        v = v0 * c - x * si
        if kind == 0:
            half = geometry.square_side / 2
            inside = (u.abs() <= half) & (v.abs() <= half)
        elif kind == 1:
            a, b = geometry.ellipse_axes
            inside = (u / a) ** 2 + (v / b) ** 2 <= 1.0
        else:
            prof = torch.tensor(geometry.heart_profile)
            k = len(geometry.heart_profile) - 1
            pos = torch.atan2(u.abs(), v) * (k / np.pi)
            i0 = pos.floor().clamp(0, k - 1)
            w = pos - i0
            i0 = i0.long()
            inside = torch.hypot(u, v) <= prof[i0] * (1 - w) + prof[i0 + 1] * w
        masks[sel] = inside
    return masks.numpy(), top, left


def render_dsprites(
    classes: np.ndarray, chunk: int = 8192, geometry: SpriteGeometry = CALIBRATED
) -> np.ndarray:
    """Render dSprites-like images ``(n, 64, 64)`` uint8 in {0, 1} for ``(n, 5)`` classes."""
    cls = DSPRITES_GRID.check_classes(classes, "classes")
    n = cls.shape[0]
    out = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    # windows sized per scale (small sprites need small windows), pasted by position:
    # one slice assignment per distinct (scale, top, left)
    for start in range(0, n, chunk):
        part = cls[start : start + chunk]
        for scale in np.unique(part[:, 1]):
            rows = np.flatnonzero(part[:, 1] == scale)
            win = window_size(FILE_VALUES[2][scale], geometry)
            masks, top, left = render_sprite_windows(part[rows], win, geometry)
            key = top * IMAGE_SIZE + left
            order = np.argsort(key, kind="stable")
            bounds = np.flatnonzero(np.diff(key[order])) + 1
            for group in np.split(order, bounds):
                t, l = top[group[0]], left[group[0]]
                out[start + rows[group], t : t + win, l : l + win] = masks[group]
    return out


def factor_metadata() -> dict:
    """The factor entries of the real file's metadata: ``latents_names``,
    ``latents_possible_values`` and ``latents_sizes`` of the 6 file factors."""
    return {
        "latents_names": FILE_NAMES,
        "latents_possible_values": {n: v.copy() for n, v in zip(FILE_NAMES, FILE_VALUES)},
        "latents_sizes": np.array(FILE_SIZES, dtype=np.int64),
    }


def dsprites_metadata() -> dict:
    """Metadata dict with the real file's keys (``latents_sizes``, ``latents_names``, ...)."""
    return {
        "date": "procedural",
        "description": "dSprites-like images generated by disentangle.data (not the DeepMind "
        "file): same factor grid, order, keys and dtypes; geometry calibrated on real frames.",
        "version": GENERATOR_VERSION,
        **factor_metadata(),
        "author": "disentangle (dSprites-like generator)",
        "title": "dSprites-like dataset",
    }


@dataclass
class DSpritesArrays:
    """The four entries of a dSprites ``.npz`` (real key names and dtypes).

    ``metadata`` is what :func:`save_dsprites_npz` pickles into the file
    (:func:`dsprites_metadata` for generated arrays); for a file read by
    :func:`load_dsprites_npz` it is :func:`factor_metadata` (the file's pickled entry is never
    unpickled).
    """

    imgs: np.ndarray  # (N, 64, 64) uint8 in {0, 1}
    latents_values: np.ndarray  # (N, 6) float64
    latents_classes: np.ndarray  # (N, 6) int64
    metadata: dict


def generate_dsprites(
    indices: np.ndarray | None = None, *, progress: bool = False, chunk: int = 16384
) -> DSpritesArrays:
    """Generate dSprites-like arrays for flat grid ``indices`` (default: all 737 280).

    Memory: the full set is 3 GB of uint8 images; prefer :class:`DSprites` (bit-packed cache).
    """
    idx = np.arange(N_IMAGES) if indices is None else np.asarray(indices, dtype=np.int64)
    cls5 = DSPRITES_GRID.classes_of(idx)
    imgs = np.empty((idx.size, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for start in tqdm(range(0, idx.size, chunk), disable=not progress, desc="dSprites"):
        imgs[start : start + chunk] = render_dsprites(cls5[start : start + chunk])
    classes = np.concatenate([np.zeros((idx.size, 1), np.int64), cls5], axis=1)
    values = np.stack([v[classes[:, k]] for k, v in enumerate(FILE_VALUES)], axis=1)
    return DSpritesArrays(imgs, values.astype(np.float64), classes, dsprites_metadata())


def save_dsprites_npz(path: str | os.PathLike, arrays: DSpritesArrays, compressed: bool = True):
    """Write arrays in the real file's format (metadata pickled inside the ``.npz``, as in the
    real file, for other projects' loaders; :func:`load_dsprites_npz` does not read it)."""
    save = np.savez_compressed if compressed else np.savez
    save(
        path,
        imgs=arrays.imgs,
        latents_values=arrays.latents_values,
        latents_classes=arrays.latents_classes,
        metadata=np.array(arrays.metadata, dtype=object),
    )


class DatasetFileError(ValueError):
    """A user's dataset file is missing, truncated, or has the wrong keys or shapes."""


def resolve_path(path: str | os.PathLike | None, env: str, filename: str, what: str) -> Path:
    """``path`` (a file or a folder holding ``filename``) or ``$env``, checked to exist."""
    if path is None:
        if not os.environ.get(env):
            raise DatasetFileError(
                f"no path given for the {what} and ${env} is not set; pass path=... or set "
                f"{env} to the file (or its folder)"
            )
        path = os.environ[env]
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / filename
    if not p.is_file():
        raise DatasetFileError(f"{what} not found: {p} does not exist")
    return p


_PICKLE_REFUSED = "pickled content is refused (unpickling a file can run arbitrary code)"


def _plain_array(f: np.lib.npyio.NpzFile, key: str, p: Path) -> np.ndarray:
    """Entry ``key`` of an open npz, refusing anything that would need unpickling."""
    try:
        arr = f[key]
    except ValueError as err:
        if "allow_pickle" not in str(err):
            raise
        raise DatasetFileError(
            f"{p}: {key} is an object array stored with pickle; {_PICKLE_REFUSED}. A dSprites "
            "npz stores imgs, latents_classes and latents_values as plain numeric arrays"
        ) from err
    if not isinstance(arr, np.ndarray):
        raise DatasetFileError(f"{p}: {key} is not a .npy array inside the npz")
    return arr


def load_dsprites_npz(path: str | os.PathLike | None = None) -> DSpritesArrays:
    """Load and validate a dSprites ``.npz`` (the real file, or one from :func:`save_dsprites_npz`).

    Only the plain arrays ``imgs``, ``latents_classes`` and ``latents_values`` are read, without
    pickle: the file's ``metadata`` entry (a pickled dict) is skipped and the returned
    ``metadata`` is :func:`factor_metadata`, which the arrays are checked against.

    Args:
        path: the file, a folder holding ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``,
            or None to use ``$DSPRITES_PATH``.

    Raises:
        DatasetFileError: missing or truncated file, missing keys, a required entry stored with
            pickle (refused), wrong shapes or dtypes, classes out of range, or values that
            disagree with the factor grid.
    """
    p = resolve_path(path, DSPRITES_ENV, DSPRITES_FILENAME, "dSprites file")
    try:
        f = np.load(p, allow_pickle=False)
    except ValueError as err:
        if "allow_pickle" not in str(err):
            raise DatasetFileError(f"cannot read {p}: not an npz file ({err})") from err
        raise DatasetFileError(f"{p} is a pickle, not an npz file; {_PICKLE_REFUSED}") from err
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise DatasetFileError(f"cannot read {p}: truncated or not an npz file ({err})") from err
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise DatasetFileError(f"{p} is a single .npy array, not an npz file")
    try:
        with f:
            missing = {"imgs", "latents_classes", "latents_values"} - set(f.files)
            if missing:
                raise DatasetFileError(
                    f"{p} lacks the keys {sorted(missing)} (has {sorted(f.files)}); a dSprites "
                    "npz holds imgs, latents_values, latents_classes, metadata"
                )
            imgs = _plain_array(f, "imgs", p)
            classes = _plain_array(f, "latents_classes", p)
            values = _plain_array(f, "latents_values", p)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
        if isinstance(err, DatasetFileError):
            raise
        raise DatasetFileError(f"cannot read {p}: truncated or not an npz file ({err})") from err
    n = imgs.shape[0] if imgs.ndim else 0
    if imgs.ndim != 3 or imgs.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DatasetFileError(f"{p}: imgs must have shape (N, 64, 64), got {imgs.shape}")
    if classes.shape != (n, 6) or values.shape != (n, 6):
        raise DatasetFileError(
            f"{p}: latents_classes and latents_values must have shape ({n}, 6), got "
            f"{classes.shape} and {values.shape}"
        )
    if imgs.dtype != np.uint8:
        raise DatasetFileError(f"{p}: imgs must be uint8, got {imgs.dtype}")
    try:
        FactorGrid(FILE_NAMES, FILE_VALUES).check_classes(classes, "latents_classes")
    except ValueError as err:
        raise DatasetFileError(f"{p}: {err}") from err
    expect = np.stack([v[classes[:, k]] for k, v in enumerate(FILE_VALUES)], axis=1)
    if not np.allclose(values, expect, atol=1e-6):
        raise DatasetFileError(f"{p}: latents_values disagree with latents_classes and the grid")
    return DSpritesArrays(imgs, values, classes.astype(np.int64), factor_metadata())


def _row_lookup(grid: FactorGrid, classes: np.ndarray, source: str) -> np.ndarray | None:
    """Map flat grid index → row of a file (None when the file is the full grid in order)."""
    flat = grid.index_of(classes)
    if flat.size == len(grid) and np.array_equal(flat, np.arange(len(grid))):
        return None
    lookup = np.full(len(grid), -1, dtype=np.int64)
    lookup[flat] = np.arange(flat.size)
    if np.unique(flat).size != flat.size:
        raise DatasetFileError(f"{source} holds the same factor combination more than once")
    return lookup


class DSprites(GroundTruthDataset):
    """dSprites as a ``GroundTruthData`` and torch ``Dataset`` (1×64×64 images in {0, 1}).

    Args:
        path: None for the procedural dSprites-like generator; otherwise the real ``.npz``
            (or its folder, or ``"env"`` for ``$DSPRITES_PATH``).
        cache: procedural only: generate all images once into the cache folder as a
            bit-packed memory map (377 MB) and read from it; False renders on the fly.
        cache_dir, verify: see :func:`disentangle.data.cache.cached_array`.

    A real file that holds only part of the grid is accepted; asking for a missing
    combination raises ``KeyError``.
    """

    name = "dsprites"

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        *,
        cache: bool = True,
        cache_dir: str | os.PathLike | None = None,
        verify: str = "checksum",
        progress: bool = True,
    ):
        self.grid = DSPRITES_GRID
        self.observation_shape = (1, IMAGE_SIZE, IMAGE_SIZE)
        self._lookup = None
        self.path = None
        if path is not None:
            arrays = load_dsprites_npz(None if path == "env" else path)
            self.path = str(path)
            self._lookup = _row_lookup(self.grid, arrays.latents_classes[:, 1:], self.path)
            self._packed = np.packbits(arrays.imgs.reshape(len(arrays.imgs), -1) > 0, axis=1)
            self.metadata = arrays.metadata
        elif cache:
            self._packed = cached_array(
                "dsprites_like",
                (N_IMAGES, IMAGE_SIZE * IMAGE_SIZE // 8),
                np.uint8,
                lambda out: _build_packed(out, progress),
                params=_generator_params(),
                cache_dir=cache_dir,
                verify=verify,
            )
            self.metadata = dsprites_metadata()
        else:
            self._packed = None
            self.metadata = dsprites_metadata()

    def images(self, classes: np.ndarray) -> np.ndarray:
        """Binary images ``(n, 64, 64)`` uint8 for ``(n, 5)`` classes."""
        cls = self.grid.check_classes(classes, "classes")
        if self._packed is None:
            return render_dsprites(cls)
        rows = self.grid.index_of(cls)
        if self._lookup is not None:
            rows = self._lookup[rows]
            if (rows < 0).any():
                missing = cls[np.argmax(rows < 0)].tolist()
                raise KeyError(f"{self.path} holds no image for factor classes {missing}")
        order = np.argsort(rows, kind="stable")
        packed = np.empty((rows.size, self._packed.shape[1]), dtype=np.uint8)
        packed[order] = self._packed[rows[order]]
        return np.unpackbits(packed, axis=1).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)

    def _observations(self, classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.images(classes)[:, None].astype(np.float32)


def _build_packed(out: np.ndarray, progress: bool, chunk: int = 16384) -> None:
    for start in tqdm(range(0, N_IMAGES, chunk), disable=not progress, desc="dSprites-like"):
        stop = min(start + chunk, N_IMAGES)
        imgs = render_dsprites(DSPRITES_GRID.classes_of(np.arange(start, stop)))
        out[start:stop] = np.packbits(imgs.reshape(stop - start, -1), axis=1)


class ColorDSprites(DSprites):
    """Colour-dSprites (disentanglement_lib): the sprite times an RGB colour ~ U(0.5, 1)³.

    Observations are 3×64×64; the colour is drawn per image from the generator (a nuisance,
    not a factor), so observations are random given the factors.
    """

    name = "color_dsprites"
    stochastic = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.observation_shape = (3, IMAGE_SIZE, IMAGE_SIZE)

    def _observations(self, classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        sprite = self.images(classes)[:, None].astype(np.float32)
        color = rng.uniform(0.5, 1.0, size=(sprite.shape[0], 3, 1, 1)).astype(np.float32)
        return sprite * color


class NoisyDSprites(DSprites):
    """Noisy-dSprites (disentanglement_lib): background U(0, 1) per pixel and channel,
    observation ``min(sprite + noise, 1)`` (so the sprite is white), 3×64×64."""

    name = "noisy_dsprites"
    stochastic = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.observation_shape = (3, IMAGE_SIZE, IMAGE_SIZE)

    def _observations(self, classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        sprite = self.images(classes)[:, None].astype(np.float32)
        noise = rng.random(size=(sprite.shape[0], 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
        return np.minimum(sprite + noise, 1.0)
