"""Datasets of the alignment experiments (Zhou et al., AISTATS 2022, §4).

Every loader returns ``(X, y)`` as NumPy arrays: X (n, d) float64, y (n,) int64. Image data are
dequantised into (0, 1) (``(x + U[0, 1)) / levels``, the authors' ``(X + U)/256``) so that the
Φ⁻¹ pre-layer is finite. Nothing is downloaded: MNIST / Fashion-MNIST are read from local IDX
or ``.npz`` files, or through Hugging Face ``datasets`` only when the user asks for it.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

__all__ = [
    "dequantize",
    "digits",
    "four_class_pattern",
    "load_idx",
    "load_mnist",
    "three_gaussians",
    "two_moons",
    "upsampled_digits",
]


def dequantize(x: np.ndarray, rng: np.random.Generator, levels: int = 256) -> np.ndarray:
    """``(x + U[0, 1)) / levels`` for integer images with values in [0, levels − 1]."""
    x = np.asarray(x, dtype=np.float64)
    return (x + rng.random(x.shape)) / levels


def two_moons(n: int = 3000, noise: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's ``make_moons(n, noise=0.1)``: the moons of Figure 1 (2 classes)."""
    from sklearn.datasets import make_moons

    x, y = make_moons(n, noise=noise, random_state=seed)
    return x.astype(np.float64), y.astype(np.int64)


def four_class_pattern(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The 4-class 2-D "random pattern": two ``make_classification`` draws shifted by ±2.

    Each draw has n/2 points, 2 informative features, one cluster per class; the first is
    shifted by +2 (labels 0, 1), the second by −2 (labels 2, 3). Reconstructed from the brief
    (the notebook's data cell was not inspected): sizes match (2666 / 1334 after a 2:1 split).
    """
    from sklearn.datasets import make_classification

    rng = np.random.RandomState(seed)
    parts = []
    for shift, offset in ((2.0, 0), (-2.0, 2)):
        x, y = make_classification(
            n_samples=n // 2,
            n_features=2,
            n_redundant=0,
            n_informative=2,
            n_clusters_per_class=1,
            random_state=rng,
        )
        parts.append((x + shift, y + offset))
    return (
        np.concatenate([p[0] for p in parts]).astype(np.float64),
        np.concatenate([p[1] for p in parts]).astype(np.int64),
    )


def three_gaussians(n: int = 6000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three 2-D Gaussians with random SPD covariances (``make_spd_matrix``), n/3 points each.

    Means are drawn uniformly in [−2, 2]². Reconstructed from the brief's description (4000
    train / 2000 test; random SPD covariances); the authors' exact means are not known.
    """
    from sklearn.datasets import make_spd_matrix

    rng = np.random.RandomState(seed)
    xs, ys = [], []
    for c in range(3):
        cov = make_spd_matrix(2, random_state=rng)
        mean = rng.uniform(-2, 2, size=2)
        xs.append(rng.multivariate_normal(mean, cov, size=n // 3))
        ys.append(np.full(n // 3, c))
    return np.concatenate(xs), np.concatenate(ys).astype(np.int64)


def digits(classes: tuple[int, ...] = (0, 1), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8×8 digits (values 0..16), dequantised into (0, 1): d = 64."""
    from sklearn.datasets import load_digits

    data = load_digits()
    keep = np.isin(data.target, classes)
    x = dequantize(data.images[keep].reshape(-1, 64), np.random.default_rng(seed), levels=17)
    return x, data.target[keep].astype(np.int64)


def upsampled_digits(
    classes: tuple[int, ...] = (0, 1), n: int = 9000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-shaped stand-in: 8×8 digits upsampled to 28×28 (bilinear), plus noise, in (0, 1).

    ``n`` images with balanced classes, each a random digit of its class with independent
    Gaussian pixel noise (σ = 0.05) added before clipping to [1/512, 1 − 1/512]: d = 784.
    Used by the benchmark when no MNIST file is present.
    """
    import torch
    from sklearn.datasets import load_digits

    data = load_digits()
    rng = np.random.default_rng(seed)
    per = n // len(classes)
    imgs, labels = [], []
    for c in classes:
        pool = data.images[data.target == c] / 16.0
        imgs.append(pool[rng.integers(0, len(pool), per)])
        labels.append(np.full(per, c))
    x = torch.as_tensor(np.concatenate(imgs))[:, None]
    x = torch.nn.functional.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)
    x = x.reshape(len(x), -1).numpy() + rng.normal(0, 0.05, (len(x), 784))
    return np.clip(x, 1 / 512, 1 - 1 / 512), np.concatenate(labels).astype(np.int64)


def load_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), optionally gzipped, into a NumPy array."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number).")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if raw[2] not in dtypes:
        raise ValueError(f"{path}: unknown IDX element type 0x{raw[2]:02x}.")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=dtypes[raw[2]], offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} but the file holds {data.size} values.")
    return data.reshape(shape)


def _find(folder: Path, stems: tuple[str, ...]) -> Path:
    for stem in stems:
        for suffix in ("", ".gz"):
            p = folder / f"{stem}{suffix}"
            if p.is_file():
                return p
    raise FileNotFoundError(f"none of {stems} (optionally .gz) found in {folder}")


def load_mnist(
    path: str | Path | None,
    classes: tuple[int, ...] = (0, 1),
    *,
    split: str = "train",
    source: str = "local",
    name: str = "mnist",
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """MNIST or Fashion-MNIST images of ``classes``, flattened (784) and dequantised.

    Args:
        path: a ``.npz`` file (keys ``x_train``/``y_train``/``x_test``/``y_test``, the Keras
            layout) or a folder with the IDX files (``train-images-idx3-ubyte[.gz]`` ...).
            Ignored when ``source="hf"``.
        split: ``"train"`` or ``"test"``.
        source: ``"local"`` or ``"hf"`` (Hugging Face ``datasets``; needs network or a
            cache; ``name`` is then the dataset id, e.g. ``"mnist"`` or ``"fashion_mnist"``).
    """
    if split not in ("train", "test"):
        raise ValueError(f"`split` must be 'train' or 'test', got {split!r}.")
    if source == "hf":
        from datasets import load_dataset

        ds = load_dataset(name, split=split).with_format("numpy")
        x = np.stack(ds["image"]).astype(np.uint8)
        y = np.asarray(ds["label"])
    elif source == "local":
        if path is None:
            raise ValueError("`path` is required for source='local' (an .npz file or folder).")
        path = Path(path)
        if path.is_file() and path.suffix == ".npz":
            with np.load(path) as f:
                keys = (f"x_{split}", f"y_{split}")
                missing = [k for k in keys if k not in f]
                if missing:
                    raise ValueError(f"{path} has no arrays {missing} (found {list(f.keys())}).")
                x, y = f[keys[0]], f[keys[1]]
        elif path.is_dir():
            prefix = "train" if split == "train" else "t10k"
            x = load_idx(
                _find(path, (f"{prefix}-images-idx3-ubyte", f"{prefix}-images.idx3-ubyte"))
            )
            y = load_idx(
                _find(path, (f"{prefix}-labels-idx1-ubyte", f"{prefix}-labels.idx1-ubyte"))
            )
        else:
            raise FileNotFoundError(f"{path} is neither an .npz file nor a folder of IDX files.")
    else:
        raise ValueError(f"`source` must be 'local' or 'hf', got {source!r}.")
    y = np.asarray(y).astype(np.int64)
    keep = np.isin(y, classes)
    if not keep.any():
        raise ValueError(f"no images of classes {classes} in the data.")
    x = np.asarray(x)[keep].reshape(int(keep.sum()), -1)
    return dequantize(x, np.random.default_rng(seed)), y[keep]
