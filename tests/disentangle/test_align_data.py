"""Data loaders of the alignment experiments and an end-to-end run of apps/align.py."""

import gzip
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from disentangle.align import datasets as ds

ROOT = Path(__file__).resolve().parents[2]


def _write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> None:
    code = {np.dtype("uint8"): 0x08}[arr.dtype]
    header = bytes([0, 0, code, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    data = header + arr.tobytes()
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.fixture()
def fake_mnist():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(30, 28, 28), dtype=np.uint8)
    y = np.tile(np.arange(3, dtype=np.uint8), 10)
    return x, y


def test_idx_folder_plain_and_gzipped(tmp_path, fake_mnist):
    x, y = fake_mnist
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", x, gz=True)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", y)
    np.testing.assert_array_equal(ds.load_idx(tmp_path / "train-labels-idx1-ubyte"), y)
    xs, ys = ds.load_mnist(tmp_path, classes=(0, 2))
    assert xs.shape == (20, 784) and set(ys.tolist()) == {0, 2}
    assert xs.min() > 0 and xs.max() < 1
    # dequantisation keeps each pixel within its own 1/256 bin
    np.testing.assert_array_equal(
        np.floor(xs * 256).astype(int), x[np.isin(y, (0, 2))].reshape(20, -1)
    )


def test_npz_layout_and_errors(tmp_path, fake_mnist):
    x, y = fake_mnist
    np.savez(tmp_path / "mnist.npz", x_train=x, y_train=y, x_test=x[:6], y_test=y[:6])
    xs, ys = ds.load_mnist(tmp_path / "mnist.npz", classes=(1,), split="test")
    assert xs.shape == (2, 784) and (ys == 1).all()
    with pytest.raises(ValueError, match="no images of classes"):
        ds.load_mnist(tmp_path / "mnist.npz", classes=(7,))
    np.savez(tmp_path / "bad.npz", images=x)
    with pytest.raises(ValueError, match="x_train"):
        ds.load_mnist(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError):
        ds.load_mnist(tmp_path / "missing.npz")
    with pytest.raises(FileNotFoundError, match="train-images"):
        ds.load_mnist(tmp_path)
    (tmp_path / "junk").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="magic"):
        ds.load_idx(tmp_path / "junk")
    with pytest.raises(ValueError, match="`path` is required"):
        ds.load_mnist(None)


def test_toy_generators_shapes_and_labels():
    x, y = ds.two_moons(300, 0.1, seed=1)
    assert x.shape == (300, 2) and set(y.tolist()) == {0, 1}
    x, y = ds.four_class_pattern(400, seed=1)
    assert x.shape == (400, 2) and len(np.bincount(y)) == 4 and np.bincount(y).min() >= 90
    x, y = ds.three_gaussians(300, seed=1)
    assert x.shape == (300, 2) and np.bincount(y).tolist() == [100, 100, 100]
    x, y = ds.digits((3, 5))
    assert x.shape[1] == 64 and set(y.tolist()) == {3, 5} and 0 < x.min() and x.max() < 1
    x, y = ds.upsampled_digits((0, 1), n=40)
    assert x.shape == (40, 784) and 0 < x.min() and x.max() < 1


def test_align_app_end_to_end(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "apps"))
    import align

    cfg = align.PRESETS["digits3"][1]
    cfg = type(cfg)(
        **{
            **cfg.__dict__,
            "methods": ("inb", "gb", "dd"),
            "n_layers": 2,
            "k_directions": 3,
            "dd_layers": 1,
            "seeds": (0,),
            "out": tmp_path,
            "progress": False,
        }
    )
    results = align.run(cfg)
    run_dir = tmp_path / "digits3"
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved["methods"]["inb"]["wd"]["mean"] == results["methods"]["inb"]["wd"]["mean"]
    for m in ("inb", "gb", "dd"):
        assert (run_dir / f"translation_{m}.png").stat().st_size > 1000
        assert (run_dir / "flows" / m / "flow.safetensors").is_file()
        r = saved["methods"][m]
        assert r["transport_cost"]["mean"] > 0 and len(r["runs"][0]["wd_matrix"]) == 3
    # DD maps each class to noise independently: its transport cost dwarfs the others'
    tc = {m: saved["methods"][m]["transport_cost"]["mean"] for m in ("inb", "gb", "dd")}
    assert tc["dd"] > 2 * max(tc["inb"], tc["gb"])

    moons = align.PRESETS["moons"][1]
    moons = type(moons)(
        **{
            **moons.__dict__,
            "methods": ("inb", "dd"),
            "n_layers": 3,
            "dd_layers": 2,
            "seeds": (0, 1),
            "convergence_layers": (0, 1, 3),
            "wd_solver": "exact",
            "out": tmp_path,
            "progress": False,
            "save_flows": False,
        }
    )
    res = align.run(moons)
    assert (tmp_path / "moons" / "convergence.png").stat().st_size > 1000
    assert (tmp_path / "moons" / "scatter_inb.png").is_file()
    curve = res["convergence"]["inb"][0]
    assert curve["layer"] == [0, 1, 3] and curve["wd"][-1] < curve["wd"][0]
