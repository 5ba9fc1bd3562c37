"""Montage of real 3D Shapes frames (``3dshapes.gif``) beside 3D-Shapes-like renders.

The renders use factor values close to what each real frame shows (orientation traversal,
the four shapes, scales, and hue traversals), for a side-by-side visual check.

    python apps/shapes3d_montage.py   # writes docs/img/shapes3d_montage.png
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro
from PIL import Image

from disentangle.data.calibration import load_gif_frames
from disentangle.data.shapes3d import render_shapes3d

ROOT = Path(__file__).resolve().parents[1]

# (real frame index, classes: floor_hue, wall_hue, object_hue, scale, shape, orientation)
PAIRS = [
    (0, (0, 6, 3, 3, 0, 0)),
    (4, (0, 6, 3, 3, 0, 4)),
    (7, (0, 6, 3, 3, 0, 7)),
    (10, (0, 6, 3, 3, 0, 10)),
    (14, (0, 6, 3, 3, 0, 14)),
    (15, (0, 6, 3, 3, 1, 14)),
    (16, (0, 6, 3, 3, 2, 14)),
    (17, (0, 6, 3, 0, 3, 14)),
    (23, (0, 6, 3, 6, 3, 14)),
    (26, (0, 6, 5, 7, 3, 14)),
    (30, (0, 6, 9, 7, 3, 14)),
    (35, (0, 8, 2, 7, 3, 14)),
    (40, (0, 5, 2, 7, 3, 14)),
    (46, (1, 5, 2, 7, 3, 14)),
]


@dataclass
class Args:
    reference: Path = ROOT.parent / "shared" / "reference" / "3dshapes.gif"
    out: Path = ROOT / "docs" / "img" / "shapes3d_montage.png"


def main(args: Args) -> None:
    if not args.reference.exists():
        raise SystemExit(f"reference frames not found: {args.reference}")
    frames = load_gif_frames(args.reference)
    real = np.stack([np.asarray(Image.fromarray(frames[i]).resize((64, 64), 2)) for i, _ in PAIRS])
    gen = render_shapes3d(np.array([c for _, c in PAIRS]))
    gen = (gen.transpose(0, 2, 3, 1) * 255).round().astype(np.uint8)
    grid = np.concatenate([np.concatenate(list(real), 1), np.concatenate(list(gen), 1)], 0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), 0).save(args.out)
    print(f"wrote {args.out} (top: real frames, bottom: generated)")


if __name__ == "__main__":
    main(tyro.cli(Args))
