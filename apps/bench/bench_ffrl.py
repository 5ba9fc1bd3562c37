"""Benchmark suite `ffrl`: cost of an FFRL training step against a VAE step on T′ + 1 frames.

    python apps/bench/bench_ffrl.py            # full
    python apps/bench/bench_ffrl.py --quick    # smoke version

An FFRL step decodes T′ + 1 frames, so it costs several VAE steps by nature. The reference is
therefore a VAE step with the same MLP encoder/decoder that encodes x_0 and decodes T′ + 1
latents (BCE on every frame, analytic KL, backward, Adam). Issue 9's target: everything beyond
those decodes (the potentials and their closed-form derivatives, the density bookkeeping and the
losses) adds at most 30 %. The forward pass is also split into encoder, flow (potentials,
HJ/IC penalties, log-determinants, prior, KL terms) and decoder, timed separately.

Setting: the CPU recipe of docs/FFRL.md — 3×28×28 digit sequences, MLP VAE, T′ = 8, K = 3,
batch 64, the model defaults (hj_variant "exact", density "code"). Variants run interleaved
over several rounds and the table reports medians; the machine is shared, compare ratios
only. Writes docs/benchmarks/ffrl.md.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "benchmarks" / "ffrl.md"
STEPS, BATCH = 8, 64


def _frames(batch: int) -> torch.Tensor:
    from disentangle.data.sequences import make_sequence_dataset

    data = make_sequence_dataset("digits_seq", split="train", steps=STEPS)
    return data.frames(range(batch), "rotate")


def _vae_step(model, opt, frames: torch.Tensor) -> None:
    from disentangle.models.objectives import kl_normal, reconstruction_loss

    x0 = frames[:, 0]
    mean, logvar = model.encoder(x0)
    z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)
    zs = z.repeat(STEPS + 1, 1) + 0.01 * torch.randn(z.shape[0] * (STEPS + 1), z.shape[1])
    logits = model.decoder(zs)
    target = frames.transpose(0, 1).reshape(logits.shape)
    loss = reconstruction_loss(logits, target, "bernoulli") + kl_normal(mean, logvar).sum()
    opt.zero_grad()
    loss.backward()
    opt.step()


def _ffrl_step(model, opt, frames: torch.Tensor) -> None:
    out = model({"frames": frames, "k": torch.zeros(frames.shape[0])})
    opt.zero_grad()
    out["loss"].backward()
    opt.step()


def _forward_split(model, frames: torch.Tensor) -> dict[str, float]:
    """Forward times of the encoder, the decoder (all T′ + 1 frames) and the flow: the model's
    whole forward pass minus those two."""
    batch = {"frames": frames, "k": torch.zeros(frames.shape[0])}
    t0 = time.perf_counter()
    model(batch)
    total = time.perf_counter() - t0
    t0 = time.perf_counter()
    mean, _ = model.encoder(frames[:, 0])
    encoder = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.decoder(mean.repeat(STEPS + 1, 1))
    decoder = time.perf_counter() - t0
    return {"encoder": encoder, "flow": total - encoder - decoder, "decoder": decoder}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke version")
    args = parser.parse_args(argv)
    steps, rounds = (3, 2) if args.quick else (10, 5)
    latents = (16,) if args.quick else (16, 64)

    from disentangle.models.ffrl import FFRL

    frames = _frames(BATCH)
    rows = []
    for n in latents:
        torch.manual_seed(0)
        model = FFRL((3, 28, 28), latent_dim=n, num_transformations=3, steps=STEPS)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        vae, ffrl, split = [], [], {"encoder": [], "flow": [], "decoder": []}
        _ffrl_step(model, opt, frames)  # warm-up
        _vae_step(model, opt, frames)
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(steps):
                _vae_step(model, opt, frames)
            vae.append((time.perf_counter() - t0) / steps)
            t0 = time.perf_counter()
            for _ in range(steps):
                _ffrl_step(model, opt, frames)
            ffrl.append((time.perf_counter() - t0) / steps)
            for key, value in _forward_split(model, frames).items():
                split[key].append(value)
        v, f = statistics.median(vae), statistics.median(ffrl)
        parts = {k: statistics.median(x) for k, x in split.items()}
        rows.append((n, v, f, parts))

    cmd = "python apps/bench/bench_ffrl.py" + (" --quick" if args.quick else "")
    lines = [
        "## ffrl: FFRL step against a VAE step on T′ + 1 frames",
        "",
        f"Command: `{cmd}` — {datetime.date.today().isoformat()}, {platform.machine()} "
        f"{platform.processor() or ''}, {torch.get_num_threads()} torch threads, "
        f"Python {platform.python_version()}, torch {torch.__version__}.",
        "",
        f"3×28×28 digit sequences, MLP VAE, T′ = {STEPS}, K = 3, batch {BATCH}, "
        f"hj_variant = {model.hj_variant!r}, density = {model.density!r}. Medians over "
        f"{rounds} interleaved rounds × {steps} steps; the machine is shared, compare ratios "
        "only.",
        "",
        "| latent | VAE step on T′+1 frames (ms) | FFRL step (ms) | overhead | target | met "
        "| forward split: encoder / flow / decoder (ms) |",
        "|---:|---:|---:|---:|---:|:--:|---|",
    ]
    for n, v, f, p in rows:
        over = f / v - 1
        lines.append(
            f"| {n} | {v * 1e3:.1f} | {f * 1e3:.1f} | {over:+.0%} | ≤ +30% | "
            f"{'yes' if over <= 0.30 else 'no'} | {p['encoder'] * 1e3:.1f} / "
            f"{p['flow'] * 1e3:.1f} / {p['decoder'] * 1e3:.1f} |"
        )
    lines.append("")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
