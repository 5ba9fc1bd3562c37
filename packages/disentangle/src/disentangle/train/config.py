"""Dataclass configs of a training run, their presets and their validation.

One :class:`Config` describes a run: data, model, regulariser, optimisation loop, evaluation and
where the run folder goes. ``apps/train.py`` parses it with tyro (every field below is a flag;
``--help`` lists them with these docstrings). The presets:

- ``quick`` (the default): generated dSprites, β-VAE + GMG (decoder, cosine), 3 000 steps at
  batch 64 — about 11 minutes on a 2-core CPU, fast metrics preset;
- ``ffrl``: the flow-factorized model (FFRL, issue 9) on the digit sequences, MLP VAE with
  latent 16, 2000 steps at lr 1e-3 — a CPU run; ``ffrl_paper``: the FFRL paper's MNIST
  settings (ConvVAE s = 324, batch 128, 90 000 steps; local MNIST via ``--data.path``);
- ``paper``: the HFS training settings the GMG paper reuses (Roth et al. 2023,
  ``grid_searches/correlation_benchmark/base.yaml``): batch 64, Adam 1e-4, 300 000 steps,
  latent 10, full metrics preset.

:func:`validate` checks a config before anything is built and raises ``ValueError`` naming the
field and what is wrong.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import otcore

__all__ = [
    "PRESETS",
    "SEQUENCE_KINDS",
    "Config",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "RegulariserConfig",
    "TrainConfig",
    "flatten",
    "from_dict",
    "validate",
]


@dataclass
class DataConfig:
    """Which ground-truth dataset to train on (built by ``disentangle.data.make_dataset``)."""

    name: str = "dsprites"
    """Dataset name (disentangle.data.DATASETS): "dsprites" (generated, default), "shapes3d"
    (generated), "dsprites_real", "shapes3d_real", ..."""
    path: str | None = None
    """File or folder of a real dataset (None: the procedural generator)."""
    tiny: bool = False
    """A small factorial sub-grid of the dataset (fast tests and smoke runs)."""
    num_workers: int = 0
    """DataLoader worker processes (0: load in the training process)."""


@dataclass
class ModelConfig:
    """The model: a VAE with its base objective (β-VAE or β-TCVAE, optionally with HFS), or the
    flow-factorized model (FFRL, ``disentangle.models.ffrl``) on a sequence dataset."""

    architecture: Literal["conv", "mlp", "flow_conv", "flow_conv2"] = "conv"
    """Encoder/decoder: "conv" (Locatello et al. 2019), "mlp", "flow_conv" (the FFRL
    ConvVAE, channel width = latent size; 28×28 or 64×64) or "flow_conv2" (the FFRL ConvVAE2
    for the 128×128 Falcor3D / Isaac3D frames)."""
    latent_dim: int = 10
    """Number of latent dimensions D."""
    base: Literal["beta_vae", "beta_tcvae"] = "beta_vae"
    """Base objective: "beta_vae" (Higgins et al. 2017) or "beta_tcvae" (Chen et al. 2018)."""
    beta: float = 1.0
    """β: weight of the KL (β-VAE) or of the total correlation (β-TCVAE)."""
    tc_alpha: float = 1.0
    """β-TCVAE weight of the index-code mutual information."""
    tc_gamma: float = 1.0
    """β-TCVAE weight of the dimension-wise KL."""
    hfs_gamma: float = 0.0
    """Weight of the HFS Hausdorff factorised-support term (Roth et al. 2023); 0 disables it."""
    hfs_pairs: int = 25
    """Latent pairs drawn per step for the HFS term."""
    reconstruction: Literal["bernoulli", "gaussian", "none"] = "bernoulli"
    """Decoder likelihood; "none" is the decoder-free variant (no decoder, no reconstruction)."""
    kind: Literal["vae", "ffrl", "seq_vae", "slow_vae"] = "vae"
    """Model family: "vae" (the VAE family), "ffrl" (latent flows), or the FFRL baselines
    "seq_vae" (VAE, or β-VAE with model.beta > 1, on all sequence frames) and "slow_vae"
    (SlowVAE); the last three need a sequence dataset (data.name "digits_seq", "mnist_seq",
    "shapes3d_seq", "falcor3d_seq" or "isaac3d_seq") and regulariser.kind "none"."""
    flow_steps: int = 8
    """FFRL: T′, flow steps trained per sequence (8 for the digit sequences; at most 7 for 3D
    Shapes, 4 for Falcor3D, 3 for Isaac3D)."""
    hj_variant: Literal["code", "exact"] = "exact"
    """FFRL: Hamilton-Jacobi penalty per sample ("exact", the default: lower E_k on all three
    digit transformations over 3 seeds, docs/FFRL.md) or as the authors' code ("code")."""
    density: Literal["code", "laplacian", "exact"] = "code"
    """FFRL: log-density bookkeeping (Hessian row sums, Laplacian, or exact log-det)."""
    weakly_supervised: bool = False
    """FFRL: hide k from the model (index predictor + batch consensus, ffrl.md §1.11)."""
    diversity_weight: float = 0.5
    """FFRL, weakly supervised: weight of the index-usage balance term (our addition, see
    ``FFRLWeights.diversity``; 0 is the authors' model, whose predictor collapses)."""
    slow_gamma: float = 10.0
    """SlowVAE: weight γ of the Laplace transition-prior KL (10 as the authors' baseline)."""
    slow_rate: float = 6.0
    """SlowVAE: rate of the Laplace transition prior (6 as the authors' baseline)."""
    hj_weight: float = 1.0
    """FFRL: weight of the Hamilton-Jacobi and initial-condition penalties (1 as the paper;
    0 is the "no HJ" ablation)."""


@dataclass
class RegulariserConfig:
    """Geometric regulariser λ·R(T) (GMG paper, §3)."""

    kind: Literal["none", "gmg", "dst", "jacobian"] = "gmg"
    """R: Gromov-Monge gap, distortion, Jacobian isometry, or none."""
    side: Literal["encoder", "decoder"] = "decoder"
    """T: the encoder (reference: image batch) or the decoder (reference: encoded batch)."""
    cost: Literal["sqeuclidean", "scaled_sqeuclidean", "cosine"] = "cosine"
    """Geometric feature preserved: squared distances, distances up to scale, or angles."""
    weight: float = 5000.0
    """λ ≥ 0, weight of the regulariser (the paper's grid is not public). For the decoder GMG
    with cosine costs, 1 000-step pilots gave: λ 5 000, held-out GMG 0.54× the unregularised
    run's at +4.8 % reconstruction loss; λ 10 000, 0.07× at +17 % (docs/EXPERIMENTS_GMG.md)."""
    epsilon0: float = otcore.DEFAULT_EPSILON0
    """GW entropic regularisation ε = ε0·mean(Cx)·mean(Cy) (GMG only; the paper's ε0 is not
    public; chosen by measurement, docs/EXPERIMENTS_GMG.md)."""
    detach_reference: bool = True
    """No gradient through the reference points' cost matrix."""
    start: Literal["best", "product", "identity"] = "best"
    """Where the GMG's GW solve starts: "best" of the two below (lower regularised objective),
    "product" (a⊗b, the paper's) or "identity" (the map's own coupling); GMG only."""
    debias: bool = False
    """Subtract the entropic self-transport terms from GW, as the Sinkhorn divergence does
    (ours, not the paper's): an isometry then has GMG = 0 at any ε0; GMG only."""


@dataclass
class TrainConfig:
    """The optimisation loop (HF Accelerate)."""

    steps: int = 3000
    """Optimizer steps."""
    batch_size: int = 64
    """Images per process per micro-batch (also the GMG reference batch)."""
    lr: float = 1e-4
    """Adam learning rate."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    """Adam (β1, β2)."""
    grad_accumulation: int = 1
    """Micro-batches accumulated per optimizer step."""
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    """Autocast precision (bf16 works on CPU, fp16 needs a GPU)."""
    seed: int = 0
    """Seed of the model initialisation, data order and sampling noise."""
    deterministic: bool = False
    """Ask torch for deterministic kernels (CPU runs are reproducible either way)."""
    log_every: int = 25
    """Log losses (JSONL, TensorBoard, progress bar) every this many steps."""
    checkpoint_every: int = 500
    """Write a checkpoint every this many steps (and at the end); 0: only at the end."""
    keep_checkpoints: int = 2
    """Number of most recent checkpoints kept."""
    cpu: bool = False
    """Train on the CPU even if an accelerator is present."""
    progress: bool = True
    """Show a progress bar."""


@dataclass
class EvalConfig:
    """Disentanglement metrics (dismetrics) on the posterior means."""

    every: int = 0
    """Evaluate every this many steps (0: only at the end)."""
    preset: Literal["default", "fast"] = "fast"
    """dismetrics preset: "default" (disentanglement_lib sizes) or "fast"."""
    metrics: tuple[str, ...] = (
        "dci",
        "mig",
        "sap",
        "modularity_explicitness",
        "beta_vae",
        "factor_vae",
        "dci_hfs",
        "mig_hfs",
    )
    """dismetrics metrics (dci_hfs: HFS-style min-max-scaled DCI-D); empty to skip evaluation."""
    num_train: int | None = None
    """Encoded points for the array metrics (None: the preset's, 10 000)."""
    num_test: int | None = None
    """Test points for DCI, SAP, modularity (None: the preset's, 5 000)."""
    num_sampled: int | None = None
    """Training votes of BetaVAE/FactorVAE (eval: half of it; None: the preset's, 10 000)."""
    images: bool = True
    """Write traversal, reconstruction and curve PNGs."""
    geometry_batches: int = 6
    """Fixed held-out batches (of train.batch_size images) on which the decoder's and the
    encoder's DST and GMG are measured at every evaluation (0: skip)."""
    geometry_epsilon0: float = 0.001
    """ε0 of those held-out GMG estimates (float64, best of both starts: near-unbiased)."""
    geometry_cost: Literal["sqeuclidean", "scaled_sqeuclidean", "cosine"] | None = None
    """Cost of the held-out DST and GMG (None: the regulariser's cost)."""


@dataclass
class Config:
    """A training run: ``accelerate launch apps/train.py [--preset paper] [--field value ...]``."""

    preset: Literal["quick", "paper", "ffrl", "ffrl_paper"] = "quick"
    """Preset whose values every other field defaults to: "quick" (CPU, ~11 min), "paper",
    "ffrl" (flow-factorized model on the digit sequences, CPU, ≤ 15 min) or "ffrl_paper" (the
    FFRL paper's MNIST settings; needs --data.path to local MNIST files and a GPU)."""
    output_dir: Path | None = None
    """Run folder (None: runs/<dataset>-<base>-<regulariser>-seed<seed>)."""
    resume: bool = False
    """Continue from the last checkpoint in output_dir."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    regulariser: RegulariserConfig = field(default_factory=RegulariserConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def run_dir(self) -> Path:
        """The run folder: ``output_dir`` or a name derived from the config."""
        if self.output_dir is not None:
            return Path(self.output_dir)
        m = self.model
        if m.kind in SEQUENCE_KINDS:
            if m.kind == "ffrl":
                tag = f"ffrl-{m.hj_variant}" + ("" if m.hj_weight == 1.0 else f"-hj{m.hj_weight:g}")
            else:
                tag = m.kind + ("" if m.beta == 1.0 else f"-beta{m.beta:g}")
            return Path("runs") / f"{self.data.name}-{tag}-seed{self.train.seed}"
        reg = self.regulariser
        tag = "base" if reg.kind == "none" else f"{reg.kind}-{reg.side}-{reg.cost}"
        return Path("runs") / f"{self.data.name}-{self.model.base}-{tag}-seed{self.train.seed}"


#: Quick evaluation sizes: encoding runs at ~1 700 images/s on one core here and one BetaVAE vote
#: encodes 128 images, so 200 votes (BetaVAE: 25 600 images) keep the final evaluation near a
#: minute; the array metrics keep 5 000 / 2 500 points.
QUICK = Config(eval=EvalConfig(num_train=5000, num_test=2500, num_sampled=200))
PAPER = Config(
    preset="paper",
    train=TrainConfig(steps=300_000, checkpoint_every=10_000, log_every=100),
    eval=EvalConfig(every=50_000, preset="default"),
)
#: FFRL on CPU (issue 9 §3): MLP VAE with latent 16 on the digit sequences (T′ = 8), lr 1e-3.
FFRL_QUICK = Config(
    preset="ffrl",
    data=DataConfig(name="digits_seq"),
    model=ModelConfig(architecture="mlp", latent_dim=16, kind="ffrl"),
    regulariser=RegulariserConfig(kind="none"),
    train=TrainConfig(steps=2000, lr=1e-3),
    eval=EvalConfig(num_test=512),
)
#: The FFRL paper's MNIST run (``papers/ffrl.md`` §1.9–1.10): ConvVAE with s = 324 (70.9M
#: parameters), T′ = D/2 = 8, batch 128, Adam 1e-4, 90 000 iterations.
FFRL_PAPER = Config(
    preset="ffrl_paper",
    data=DataConfig(name="mnist_seq"),
    model=ModelConfig(architecture="flow_conv", latent_dim=324, kind="ffrl"),
    regulariser=RegulariserConfig(kind="none"),
    train=TrainConfig(steps=90_000, batch_size=128, lr=1e-4, checkpoint_every=5000),
    eval=EvalConfig(every=10_000, num_test=2048),
)
PRESETS: dict[str, Config] = {
    "quick": QUICK,
    "paper": PAPER,
    "ffrl": FFRL_QUICK,
    "ffrl_paper": FFRL_PAPER,
}
PRESET_DESCRIPTIONS: dict[str, str] = {
    "quick": "CPU-friendly default: β-VAE + GMG (decoder, cosine) on generated dSprites, ~11 min.",
    "paper": "HFS/GMG paper settings: batch 64, Adam 1e-4, 300k steps, latent 10 (GPU).",
    "ffrl": "FFRL on the digit sequences: MLP VAE, latent 16, 2000 steps, lr 1e-3 (CPU).",
    "ffrl_paper": "FFRL paper, MNIST: ConvVAE s = 324, batch 128, 90k steps (GPU; --data.path).",
}


#: Model families trained on sequence datasets and scored by E_k (FFRL and its baselines).
SEQUENCE_KINDS: tuple[str, ...] = ("ffrl", "seq_vae", "slow_vae")
#: The sequence datasets (``disentangle.data.sequences.SEQUENCE_DATASETS``).
SEQUENCE_DATASETS: tuple[str, ...] = (
    "digits_seq",
    "mnist_seq",
    "shapes3d_seq",
    "falcor3d_seq",
    "isaac3d_seq",
)
#: Their longest sequences (T); the digit transformations have no limit.
_MAX_STEPS = {"shapes3d_seq": 7, "falcor3d_seq": 4, "isaac3d_seq": 3}


#: Largest accepted learning rate: Adam steps are about lr in every parameter, so anything
#: above this diverges at once (a typo such as 1e10 for 1e-10 is refused up front).
MAX_LR = 10.0


def _check(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise ValueError(f"{name}: {message}")


def validate(cfg: Config, dataset_names: tuple[str, ...] | None = None) -> Config:
    """Check every field of ``cfg``; raise ``ValueError`` naming the first bad one.

    ``dataset_names`` lists the names ``data.name`` may take (checked when given).
    """
    d, m, r, t, e = cfg.data, cfg.model, cfg.regulariser, cfg.train, cfg.eval
    for section in ("data", "model", "regulariser", "train", "eval"):
        for name, value in flatten(getattr(cfg, section), section + ".").items():
            if isinstance(value, float):
                _check(math.isfinite(value), name, f"must be finite, got {value}")
    _check(all(math.isfinite(b) for b in t.adam_betas), "train.adam_betas", f"got {t.adam_betas}")
    _check(
        cfg.output_dir is None or str(cfg.output_dir).strip() not in ("", "."),
        "output_dir",
        "an empty path would write the run into the current folder; name a run folder",
    )
    if dataset_names is not None:
        _check(
            d.name in dataset_names,
            "data.name",
            f"unknown dataset {d.name!r}; choose one of {', '.join(dataset_names)}",
        )
    _check(d.num_workers >= 0, "data.num_workers", f"must be ≥ 0, got {d.num_workers}")
    _check(
        m.architecture in ("conv", "mlp", "flow_conv", "flow_conv2"),
        "model.architecture",
        f"got {m.architecture!r}",
    )
    _check(m.latent_dim >= 1, "model.latent_dim", f"must be ≥ 1, got {m.latent_dim}")
    _check(m.base in ("beta_vae", "beta_tcvae"), "model.base", f"unknown base {m.base!r}")
    for name in ("beta", "tc_alpha", "tc_gamma", "hfs_gamma"):
        value = getattr(m, name)
        _check(value >= 0, f"model.{name}", f"must be ≥ 0, got {value}")
    _check(m.kind in ("vae", *SEQUENCE_KINDS), "model.kind", f"unknown model family {m.kind!r}")
    if m.kind in SEQUENCE_KINDS:
        _check(
            d.name in SEQUENCE_DATASETS,
            "data.name",
            f"the {m.kind} model trains on sequences ({', '.join(SEQUENCE_DATASETS)}), got "
            f"{d.name!r}",
        )
        _check(r.kind == "none", "regulariser.kind", f"the {m.kind} model takes no regulariser")
        _check(
            m.flow_steps >= 2,
            "model.flow_steps",
            f"must be ≥ 2 (E_k scores t = 1..T′ − 1), got {m.flow_steps}",
        )
        _check(m.hj_weight >= 0, "model.hj_weight", f"must be ≥ 0, got {m.hj_weight}")
        _check(
            m.diversity_weight >= 0,
            "model.diversity_weight",
            f"must be ≥ 0, got {m.diversity_weight}",
        )
        _check(m.slow_gamma >= 0, "model.slow_gamma", f"must be ≥ 0, got {m.slow_gamma}")
        _check(m.slow_rate > 0, "model.slow_rate", f"must be > 0, got {m.slow_rate}")
        _check(
            m.architecture in ("mlp", "flow_conv") or d.name not in ("digits_seq", "mnist_seq"),
            "model.architecture",
            "the 28×28 digit sequences need 'mlp' or 'flow_conv' (Locatello's conv needs "
            "multiples of 16)",
        )
        _check(
            m.flow_steps <= _MAX_STEPS.get(d.name, m.flow_steps),
            "model.flow_steps",
            f"{d.name} sequences have at most T = {_MAX_STEPS.get(d.name)} steps, got "
            f"{m.flow_steps}",
        )
        _check(m.hj_variant in ("code", "exact"), "model.hj_variant", f"got {m.hj_variant!r}")
        _check(m.density in ("code", "laplacian", "exact"), "model.density", f"got {m.density!r}")
    else:
        _check(
            d.name not in SEQUENCE_DATASETS,
            "model.kind",
            f"{d.name!r} is a sequence dataset for the flow model; pass --model.kind ffrl",
        )
    _check(m.hfs_pairs >= 1, "model.hfs_pairs", f"must be ≥ 1, got {m.hfs_pairs}")
    _check(
        m.reconstruction in ("bernoulli", "gaussian", "none"),
        "model.reconstruction",
        f"unknown likelihood {m.reconstruction!r}",
    )
    _check(r.kind in ("none", "gmg", "dst", "jacobian"), "regulariser.kind", f"unknown {r.kind!r}")
    _check(r.side in ("encoder", "decoder"), "regulariser.side", f"unknown side {r.side!r}")
    _check(
        r.cost in ("sqeuclidean", "scaled_sqeuclidean", "cosine"),
        "regulariser.cost",
        f"unknown cost {r.cost!r}; choose sqeuclidean, scaled_sqeuclidean or cosine",
    )
    _check(r.weight >= 0, "regulariser.weight", f"λ must be ≥ 0, got {r.weight}")
    _check(r.epsilon0 > 0, "regulariser.epsilon0", f"must be > 0, got {r.epsilon0}")
    if m.reconstruction == "none":
        _check(
            r.kind == "none" or r.side == "encoder",
            "regulariser.side",
            "the decoder-free model (model.reconstruction='none') has no decoder; use 'encoder'",
        )
    _check(t.steps >= 1, "train.steps", f"must be ≥ 1, got {t.steps}")
    _check(t.batch_size >= 1, "train.batch_size", f"must be ≥ 1, got {t.batch_size}")
    if r.kind in ("gmg", "dst") or m.base == "beta_tcvae" or m.hfs_gamma > 0:
        _check(
            t.batch_size >= 2,
            "train.batch_size",
            "the GMG/DST regularisers, β-TCVAE and HFS compare points within a batch and need "
            f"at least 2 per process, got {t.batch_size}",
        )
    _check(0 < t.lr <= MAX_LR, "train.lr", f"must be in (0, {MAX_LR:g}], got {t.lr}")
    _check(all(0 <= b < 1 for b in t.adam_betas), "train.adam_betas", f"got {t.adam_betas}")
    _check(t.grad_accumulation >= 1, "train.grad_accumulation", f"got {t.grad_accumulation}")
    _check(t.log_every >= 1, "train.log_every", f"must be ≥ 1, got {t.log_every}")
    _check(t.checkpoint_every >= 0, "train.checkpoint_every", f"got {t.checkpoint_every}")
    _check(t.keep_checkpoints >= 1, "train.keep_checkpoints", f"got {t.keep_checkpoints}")
    _check(e.every >= 0, "eval.every", f"must be ≥ 0, got {e.every}")
    for name in ("num_train", "num_test", "num_sampled"):
        value = getattr(e, name)
        _check(value is None or value >= 2, f"eval.{name}", f"must be ≥ 2, got {value}")
    _check(r.start in otcore.STARTS, "regulariser.start", f"unknown start {r.start!r}")
    _check(e.geometry_batches >= 0, "eval.geometry_batches", f"got {e.geometry_batches}")
    _check(e.geometry_epsilon0 > 0, "eval.geometry_epsilon0", f"got {e.geometry_epsilon0}")
    if e.geometry_batches:
        _check(t.batch_size >= 2, "train.batch_size", "the held-out GMG needs batches of ≥ 2")
    return cfg


def flatten(cfg: object, prefix: str = "") -> dict[str, bool | int | float | str | None]:
    """Flatten a (nested) dataclass into ``{"a.b": value}`` with scalar or string values."""
    out: dict[str, bool | int | float | str | None] = {}
    for f in dataclasses.fields(cfg):  # type: ignore[arg-type]
        value = getattr(cfg, f.name)
        key = prefix + f.name
        if dataclasses.is_dataclass(value):
            out.update(flatten(value, key + "."))
        elif value is None or isinstance(value, (bool, int, float, str)):
            out[key] = value
        else:
            out[key] = str(value)
    return out


def from_dict(values: dict) -> Config:
    """Rebuild a :class:`Config` from its JSON form (``config.json`` of a run folder)."""
    sections = {f.name: f.type for f in dataclasses.fields(Config)}
    types = {
        "data": DataConfig,
        "model": ModelConfig,
        "regulariser": RegulariserConfig,
        "train": TrainConfig,
        "eval": EvalConfig,
    }
    kwargs = {}
    for key, value in values.items():
        if key not in sections:
            raise ValueError(f"config: unknown field {key!r}")
        if key in types:
            fields = {f.name for f in dataclasses.fields(types[key])}
            unknown = set(value) - fields
            if unknown:
                raise ValueError(f"config.{key}: unknown fields {sorted(unknown)}")
            value = types[key](
                **{k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
            )
        elif key == "output_dir" and value is not None:
            value = Path(value)
        kwargs[key] = value
    return Config(**kwargs)
