"""Training: one Accelerate loop, tyro dataclass configs with presets, checkpoints, evaluation.

Python API::

    from disentangle.train import PRESETS, run
    import dataclasses
    cfg = dataclasses.replace(PRESETS["quick"], output_dir="runs/demo")
    results = run(cfg)            # trains, evaluates, writes the run folder
    print(results["headline"])    # {'DCI-D': ..., 'DCI-D (HFS)': ..., 'MIG': ...}

Command line: ``accelerate launch apps/train.py`` (or ``python apps/train.py``); see
``python apps/train.py --help``. Any ``nn.Module`` whose ``forward(batch)`` returns a dict with a
``"loss"`` can be trained by :func:`fit`.
"""

from disentangle.train.config import (
    PRESETS,
    Config,
    DataConfig,
    EvalConfig,
    ModelConfig,
    RegulariserConfig,
    TrainConfig,
    flatten,
    validate,
)
from disentangle.train.evaluation import Evaluator, headline
from disentangle.train.history import History, read_history
from disentangle.train.lock import RunFolderInUseError, RunLock
from disentangle.train.loop import FitResult, fit
from disentangle.train.runner import build_dataset, build_model, dataset_names, run
from disentangle.train.state import (
    CheckpointError,
    ResumableBatchSampler,
    TrainState,
    latest_checkpoint,
    latest_intact_checkpoint,
    load_checkpoint,
    save_checkpoint,
    verify_checkpoint,
)

__all__ = [
    "PRESETS",
    "CheckpointError",
    "Config",
    "DataConfig",
    "EvalConfig",
    "Evaluator",
    "FitResult",
    "History",
    "ModelConfig",
    "RegulariserConfig",
    "ResumableBatchSampler",
    "RunFolderInUseError",
    "RunLock",
    "TrainConfig",
    "TrainState",
    "build_dataset",
    "build_model",
    "dataset_names",
    "fit",
    "flatten",
    "headline",
    "latest_checkpoint",
    "latest_intact_checkpoint",
    "load_checkpoint",
    "read_history",
    "run",
    "save_checkpoint",
    "validate",
    "verify_checkpoint",
]
