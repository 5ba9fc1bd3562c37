"""No code runs from files a user is handed: dSprites ``.npz`` files and checkpoint folders.

Each test plants a payload, an object whose unpickling writes a marker file, where a loader used
to unpickle it, and checks that the marker never appears: the loader either skips the entry or
refuses the file with an error naming it.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from disentangle.data.dsprites import (
    DatasetFileError,
    DSprites,
    factor_metadata,
    generate_dsprites,
    load_dsprites_npz,
)
from disentangle.train import CheckpointError, TrainConfig, fit
from disentangle.train.state import TRAIN_STATE_FILE, read_train_state, write_manifest


class Payload:
    """Unpickling this runs code: it writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))


def test_the_payload_runs_when_unpickled(tmp_path):
    """Control: the payload is live, so the marker's absence below means something."""
    marker = tmp_path / "marker"
    np.savez(tmp_path / "p.npz", metadata=np.array(Payload(marker), dtype=object))
    with np.load(tmp_path / "p.npz", allow_pickle=True) as f:
        f["metadata"]
    assert marker.exists()
    marker.unlink()
    torch.save({"x": Payload(marker)}, tmp_path / "p.pt")
    torch.load(tmp_path / "p.pt", weights_only=False)
    assert marker.exists()


# --- dSprites .npz ----------------------------------------------------------------------------


def _dsprites_entries() -> dict[str, np.ndarray]:
    arrays = generate_dsprites(np.arange(5))
    return {
        "imgs": arrays.imgs,
        "latents_values": arrays.latents_values,
        "latents_classes": arrays.latents_classes,
    }


def test_dsprites_pickled_metadata_is_never_unpickled(tmp_path):
    marker, path = tmp_path / "marker", tmp_path / "d.npz"
    entries = _dsprites_entries()
    np.savez(path, **entries, metadata=np.array(Payload(marker), dtype=object))
    loaded = load_dsprites_npz(path)
    np.testing.assert_array_equal(loaded.imgs, entries["imgs"])
    assert loaded.metadata.keys() == factor_metadata().keys()
    assert loaded.metadata["latents_sizes"].tolist() == [1, 3, 6, 40, 32, 32]
    assert DSprites(path).images([[0, 0, 0, 0, 3]]).sum() == entries["imgs"][3].sum()
    assert not marker.exists()


@pytest.mark.parametrize("key", ["imgs", "latents_classes", "latents_values"])
def test_dsprites_required_entry_stored_with_pickle_is_refused(tmp_path, key):
    marker, path = tmp_path / "marker", tmp_path / "d.npz"
    entries = _dsprites_entries()
    planted = entries[key].astype(object)
    planted.flat[0] = Payload(marker)
    np.savez(path, **{**entries, key: planted})
    with pytest.raises(DatasetFileError, match=rf"d\.npz: {key} .*pickled content is refused"):
        load_dsprites_npz(path)
    assert not marker.exists()


def test_dsprites_file_that_is_a_pickle_is_refused(tmp_path):
    marker, path = tmp_path / "marker", tmp_path / "d.npz"
    path.write_bytes(pickle.dumps({**_dsprites_entries(), "x": Payload(marker)}))
    with pytest.raises(DatasetFileError, match=r"d\.npz is a pickle.*pickled content is refused"):
        load_dsprites_npz(path)
    assert not marker.exists()


# --- checkpoints ------------------------------------------------------------------------------


class NoisyRegression(nn.Module):
    """A linear model whose loss draws torch noise: exact resumption needs the RNG state."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(3, 1)

    def forward(self, batch):
        (x,) = batch
        return {"loss": ((self.lin(x) - torch.randn(x.shape[0], 1)) ** 2).mean()}


DATA = TensorDataset(torch.linspace(-1, 1, 60).reshape(20, 3))
STEP2 = Path("checkpoints") / "step_00000002"


def _cfg(steps: int) -> TrainConfig:
    return TrainConfig(
        steps=steps, batch_size=4, log_every=1, checkpoint_every=2, cpu=True, progress=False
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Run folders: "half", stopped at its step-2 checkpoint, and "full", 4 uninterrupted steps."""
    root = tmp_path_factory.mktemp("runs")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    full = fit(NoisyRegression(), DATA, _cfg(4), root / "full")
    fit(NoisyRegression(), DATA, _cfg(2), root / "half")
    torch.set_num_threads(n)
    return root, full


@pytest.fixture
def run_dir(trained, tmp_path, one_thread):
    """A fresh copy of the run folder stopped at step 2."""
    shutil.copytree(trained[0] / "half", tmp_path / "run")
    return tmp_path / "run"


def _resume(run_dir: Path):
    return fit(NoisyRegression(), DATA, _cfg(4), run_dir, resume=True)


def test_train_state_is_json_and_resume_is_exact(trained, run_dir):
    ckpt = run_dir / STEP2
    assert json.loads((ckpt / TRAIN_STATE_FILE).read_text()) == {"step": 2, "samples_seen": 8}
    assert not list(ckpt.glob("custom_checkpoint_*.pkl"))
    resumed = _resume(run_dir)
    assert resumed.resumed_from == 2 and resumed.step == 4
    assert resumed.train == trained[1].train  # bit-exact: data order and RNG states restored


def test_planted_custom_checkpoint_pickle_is_refused(run_dir, tmp_path):
    marker = tmp_path / "marker"
    planted = run_dir / STEP2 / "custom_checkpoint_0.pkl"
    torch.save({"step": 2, "samples_seen": 8, "x": Payload(marker)}, planted)
    write_manifest(run_dir / STEP2)  # a forged manifest: the pickle check must still refuse
    with pytest.raises(CheckpointError, match=r"custom_checkpoint_0\.pkl.*is refused"):
        _resume(run_dir)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["random_states_0.pkl", "optimizer.bin"])
def test_planted_payload_in_a_checkpoint_pickle_is_refused(run_dir, tmp_path, name):
    marker, path = tmp_path / "marker", run_dir / STEP2 / name
    state = torch.load(path, weights_only=False)  # the file this test's own run wrote
    state["x"] = Payload(marker)
    torch.save(state, path)
    write_manifest(run_dir / STEP2)  # a forged manifest: the pickle check must still refuse
    with pytest.raises(CheckpointError, match=rf"{name}: pickled content .* is refused"):
        _resume(run_dir)
    assert not marker.exists()


def test_truncated_checkpoint_pickle_is_named(run_dir):
    path = run_dir / STEP2 / "optimizer.bin"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"optimizer\.bin is damaged"):
        _resume(run_dir)
    write_manifest(run_dir / STEP2)  # manifest rewritten: the loader still names the file
    with pytest.raises(CheckpointError, match=r"cannot read .*optimizer\.bin"):
        _resume(run_dir)


def test_bad_train_state_file_is_refused_on_resume(run_dir):
    (run_dir / STEP2 / TRAIN_STATE_FILE).write_text('{"step": 2, "samples_seen": -8}')
    write_manifest(run_dir / STEP2)
    with pytest.raises(CheckpointError, match=r"train_state\.json: samples_seen must be"):
        _resume(run_dir)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (None, "is missing"),
        ("{not json", "not a JSON file"),
        ("[2, 8]", "exactly the keys"),
        ('{"step": 2}', "exactly the keys"),
        ('{"step": 2, "samples_seen": 8, "code": "x"}', "exactly the keys"),
        ('{"step": "2", "samples_seen": 8}', "step must be an integer"),
        ('{"step": 2.0, "samples_seen": 8}', "step must be an integer"),
        ('{"step": true, "samples_seen": 8}', "step must be an integer"),
        ('{"step": 2, "samples_seen": -1}', "samples_seen must be an integer ≥ 0"),
        ('{"step": 3, "samples_seen": 8}', "disagrees with the folder name step_00000002"),
    ],
)
def test_train_state_file_is_validated(tmp_path, text, match):
    ckpt = tmp_path / "step_00000002"
    ckpt.mkdir()
    if text is not None:
        (ckpt / TRAIN_STATE_FILE).write_text(text)
    with pytest.raises(CheckpointError, match=rf"train_state\.json.*{match}"):
        read_train_state(ckpt)
    (ckpt / TRAIN_STATE_FILE).write_text('{"step": 2, "samples_seen": 8}')
    assert read_train_state(ckpt).samples_seen == 8
