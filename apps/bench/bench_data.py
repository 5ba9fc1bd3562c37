"""Benchmark suite `data`: dataset generation and loading speed (issue 6, §6).

Measures, on this machine:
1. generating all 737 280 dSprites-like images into the cache (render + bit-pack + checksum);
2. rendering 3D Shapes: the 480 geometry maps, then composing all 480 000 RGB uint8 images;
3. loading 64×64 batches for training through a ``DataLoader`` (2 workers, batch 256) from
   the caches, beside reading the same cache with plain numpy in the main process (peer).

    python apps/bench/bench_data.py            # full run, writes docs/benchmarks/data.md
    python apps/bench/bench_data.py --quick    # smoke run on slices, extrapolated
"""

from __future__ import annotations

import datetime
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import tyro

import disentangle.data.dsprites as dsprites_mod
from disentangle.data import DSprites, Shapes3D
from disentangle.data.shapes3d import SHAPES3D_GRID, _render_all_geometry
from disentangle.data.shapes3d_render import SceneConfig, compose

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Args:
    quick: bool = False
    """smoke run: 1/16 of dSprites, 24 geometries, 20 000 composed images, 40 batches"""
    out: Path = ROOT / "docs" / "benchmarks" / "data.md"
    batches: int = 200


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def bench_dsprites(tmp: Path, quick: bool) -> tuple[str, float, int]:
    n = dsprites_mod.N_IMAGES // 16 if quick else dsprites_mod.N_IMAGES
    full = dsprites_mod.N_IMAGES
    dsprites_mod.N_IMAGES = n
    try:
        _, secs = _timed(lambda: DSprites(cache_dir=tmp, progress=False))
    finally:
        dsprites_mod.N_IMAGES = full
    return "dSprites-like: generate all 737 280 images into the cache", secs * full / n, n


def bench_shapes3d(tmp: Path, quick: bool) -> list[tuple[str, float, int]]:
    if quick:  # 24 of the 480 geometries, extrapolated
        n_geo, buf = 24, np.zeros((24, 4, 64, 64), np.float32)
        _, geo_secs = _timed(lambda: _render_all_geometry(buf, SceneConfig(), False))
        coeff = np.resize(buf, (480, 4, 64, 64))
    else:  # the real path: render all 480 into the cache (with checksum)
        n_geo = 480
        ds, geo_secs = _timed(lambda: Shapes3D(cache_dir=tmp, progress=False))
        coeff = np.asarray(ds._coeff)
    geo_full = geo_secs * 480 / n_geo
    # compose every image (geometry maps × hues) into uint8, in batches of 4 000
    n_img = 20_000 if quick else len(SHAPES3D_GRID)
    out = np.empty((4000, 64, 64, 3), np.uint8)

    def compose_all():
        for start in range(0, n_img, 4000):
            cls = SHAPES3D_GRID.classes_of(np.arange(start, min(start + 4000, n_img)))
            vals = SHAPES3D_GRID.values_of(cls)
            geo = np.ravel_multi_index(tuple(cls[:, 3:].T), (8, 4, 15))
            img = compose(coeff[geo], vals[:, 0], vals[:, 1], vals[:, 2])
            np.multiply(img.transpose(0, 2, 3, 1), 255, out=img.transpose(0, 2, 3, 1))
            out[: len(cls)] = img.transpose(0, 2, 3, 1)

    _, comp = _timed(compose_all)
    comp_full = comp * len(SHAPES3D_GRID) / n_img
    return [
        ("3D Shapes-like: render the 480 geometry maps (3×3 supersampled)", geo_full, n_geo),
        ("3D Shapes-like: compose all 480 000 RGB images to uint8", comp_full, n_img),
        ("3D Shapes-like: all 480 000 images from scratch (sum)", geo_full + comp_full, 0),
    ]


def bench_loading(tmp: Path, quick: bool, batches: int) -> list[tuple[str, float, float]]:
    rows = []
    nb = 40 if quick else batches
    ds = DSprites(cache_dir=tmp, progress=False)  # built above (slice in --quick)
    n_avail = ds._packed.shape[0]
    sub = torch.utils.data.Subset(ds, np.arange(n_avail))  # quick: only the generated slice
    suites = [("dsprites (bit-packed memmap)", sub)]
    if not quick:
        suites.append(("shapes3d (geometry cache)", Shapes3D(cache_dir=tmp, progress=False)))
    for name, data in suites:
        loader = torch.utils.data.DataLoader(
            data, batch_size=256, shuffle=True, num_workers=2, persistent_workers=True
        )
        it = iter(loader)
        next(it)  # start the workers
        t = time.perf_counter()
        seen = 0
        for _ in range(nb):
            x, _ = next(it)
            seen += len(x)
        rows.append((f"DataLoader, 2 workers, batch 256: {name}", seen / (time.perf_counter() - t)))
        del it, loader
    # peer: the same dSprites cache read and unpacked with numpy in the main process
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    seen = 0
    for _ in range(nb):
        idx = np.sort(rng.integers(0, n_avail, 256))
        x = np.unpackbits(ds._packed[idx], axis=1).astype(np.float32)
        seen += len(x)
    rows.append(
        (
            "numpy in main process, batch 256: dsprites memmap (peer)",
            seen / (time.perf_counter() - t),
        )
    )
    return rows


def main(args: Args) -> None:
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ds_row = bench_dsprites(tmp, args.quick)
        s3_rows = bench_shapes3d(tmp, args.quick)
        load_rows = bench_loading(tmp, args.quick, args.batches)
    cmd = "python apps/bench/bench_data.py" + (" --quick" if args.quick else "")
    load = os.getloadavg()
    lines = [
        "# Data benchmarks (`disentangle.data`)",
        "",
        f"Command: `{cmd}` — {datetime.datetime.now().isoformat(timespec='minutes')}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} (1/5/15 min; the machine is shared), "
        f"Python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}.",
        "",
        "| Generation | seconds | target | met |",
        "|---|---|---|---|",
        f"| {ds_row[0]} | {ds_row[1]:.1f} | < 120 | {'yes' if ds_row[1] < 120 else 'no'} |",
    ]
    for name, secs, _ in s3_rows:
        target = "< 900" if "sum" in name else ""
        met = ("yes" if secs < 900 else "no") if target else ""
        lines.append(f"| {name} | {secs:.1f} | {target} | {met} |")
    lines += ["", "| Loading 64×64 batches | images/s | target | met |", "|---|---|---|---|"]
    for name, rate in load_rows:
        target = "≥ 5 000" if "DataLoader" in name else ""
        met = ("yes" if rate >= 5000 else "no") if target else ""
        lines.append(f"| {name} | {rate:,.0f} | {target} | {met} |")
    if args.quick:
        lines += ["", "Quick run: generation times are extrapolated from slices."]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main(tyro.cli(Args))
