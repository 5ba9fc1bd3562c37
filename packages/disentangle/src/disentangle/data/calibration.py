"""Calibration of the dSprites-like generator against real reference frames.

For each real 64×64 binary frame, :func:`dsprites_best_match` searches the generated images
for the one with the highest intersection-over-union (IoU). The search covers every shape,
scale and orientation (720 sprites) at every position within ``radius`` grid steps of the
position read off the frame's bounding box; an image at a farther position cannot overlap
the frame better, so with ``radius ≥ 1`` the search is exhaustive in practice.
IoU is computed inside each sprite's window, which holds all of its on-pixels, so it equals
the IoU of the full 64×64 images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .dsprites import DSPRITES_GRID, FILE_VALUES, IMAGE_SIZE, render_sprite_windows, window_size

__all__ = ["MatchResult", "dsprites_best_match", "load_gif_frames"]


def load_gif_frames(path: str | os.PathLike) -> np.ndarray:
    """All frames of a GIF as ``(n, H, W, 3)`` uint8 RGB."""
    from PIL import Image, ImageSequence

    with Image.open(path) as im:
        return np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)])


@dataclass
class MatchResult:
    """Per frame: best IoU ``(n,)`` and the generated image's classes ``(n, 5)``."""

    iou: np.ndarray
    classes: np.ndarray

    def summary(self) -> dict[str, float]:
        return {
            "frames": int(self.iou.size),
            "mean_iou": float(self.iou.mean()),
            "min_iou": float(self.iou.min()),
            "frames_below_0.9": int((self.iou < 0.9).sum()),
            "frames_below_0.75": int((self.iou < 0.75).sum()),
        }


def _position_class(lo: int, hi: int) -> int:
    centre = (lo + hi + 1) / 2  # continuous coordinate of the bounding-box centre
    return int(np.clip(np.rint((centre - 16.0) / 32.0 * 31.0), 0, 31))


def dsprites_best_match(frames: np.ndarray, radius: int = 1) -> MatchResult:
    """Best-matching generated dSprites-like image of each real frame.

    Args:
        frames: ``(n, 64, 64)`` binary frames (bool or 0/1 or 0/255).
        radius: positions searched around the bounding-box estimate, in grid steps.

    Returns:
        :class:`MatchResult` with the best IoU and the matching classes per frame.
    """
    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"frames must have shape (n, 64, 64), got {frames.shape}")
    frames = frames > 0
    n = frames.shape[0]
    sprites = DSPRITES_GRID.classes_of(np.arange(0, len(DSPRITES_GRID), 32 * 32))[:, :3]
    win = window_size(FILE_VALUES[2].max())
    best_iou = np.zeros(n)
    best_cls = np.zeros((n, 5), dtype=np.int64)
    area = frames.reshape(n, -1).sum(1).astype(np.float64)
    estimates = np.zeros((n, 2), dtype=np.int64)
    for i, f in enumerate(frames):
        rows, cols = np.nonzero(f)
        if rows.size:
            estimates[i] = (
                _position_class(cols.min(), cols.max()),
                _position_class(rows.min(), rows.max()),
            )
    # every frame is compared with the 720 sprites at each position near its estimate;
    # sprites are rendered once per position and scored for all frames at once (matmul)
    wanted: dict[tuple[int, int], list[int]] = {}
    for i in range(n):
        for px in range(estimates[i, 0] - radius, estimates[i, 0] + radius + 1):
            for py in range(estimates[i, 1] - radius, estimates[i, 1] + radius + 1):
                if 0 <= px < 32 and 0 <= py < 32:
                    wanted.setdefault((px, py), []).append(i)
    padded = np.pad(frames, ((0, 0), (0, win), (0, win)))
    for (px, py), members in wanted.items():
        cls = np.concatenate([sprites, np.tile([px, py], (len(sprites), 1))], axis=1)
        masks, top, left = render_sprite_windows(cls, win)
        masks = masks.reshape(len(cls), -1).astype(np.float32)
        t, l = int(top[0]), int(left[0])
        idx = np.asarray(members)
        crops = padded[idx, t : t + win, l : l + win].reshape(idx.size, -1).astype(np.float32)
        inter = crops @ masks.T
        iou = inter / (area[idx, None] + masks.sum(1)[None, :] - inter)
        j = iou.argmax(1)
        score = iou[np.arange(idx.size), j]
        better = score > best_iou[idx]
        best_iou[idx[better]] = score[better]
        best_cls[idx[better]] = np.concatenate(
            [sprites[j[better]], np.tile([px, py], (int(better.sum()), 1))], axis=1
        )
    return MatchResult(best_iou, best_cls)
