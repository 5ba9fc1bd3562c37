"""3D Shapes, MPI3D, HF datasets, correlated factors, caching, registry, torch DataLoader."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from disentangle.data import (
    DATASETS,
    MPI3D,
    SHAPES3D_GRID,
    CacheCorruptWarning,
    CorrelatedFactors,
    Shapes3D,
    cached_array,
    from_hf,
    make_dataset,
    write_shapes3d_h5,
)
from disentangle.data.dsprites import DatasetFileError
from disentangle.data.shapes3d_render import SceneConfig, compose, hue_rgb, render_geometry
from dismetrics.protocol import GroundTruthData

FAST = SceneConfig(supersample=1)


def test_shapes3d_grid():
    assert SHAPES3D_GRID.names == (
        "floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation",
    )  # fmt: skip
    assert SHAPES3D_GRID.sizes == (10, 10, 10, 8, 4, 15) and len(SHAPES3D_GRID) == 480_000
    np.testing.assert_allclose(SHAPES3D_GRID.values[0], np.arange(10) / 10)
    np.testing.assert_allclose(SHAPES3D_GRID.values[3][[0, -1]], [0.75, 1.25])
    np.testing.assert_allclose(SHAPES3D_GRID.values[5][[0, -1]], [-30, 30])
    # classes are exactly unravel_index(arange(480000), sizes): orientation fastest
    assert SHAPES3D_GRID.classes_of(15).tolist() == [[0, 0, 0, 0, 1, 0]]


def test_hue_rgb():
    np.testing.assert_allclose(hue_rgb([0.0, 1 / 3, 2 / 3]), np.eye(3), atol=1e-12)


def _render(classes, ds):
    return ds.sample_observations_from_factors(np.array(classes), np.random.default_rng(0))


def test_shapes3d_images_and_factor_effects():
    ds = Shapes3D(cache=False, scene=FAST)
    assert isinstance(ds, GroundTruthData) and ds.observation_shape == (3, 64, 64)
    base = [0, 6, 3, 4, 0, 7]
    img = _render([base], ds)[0]
    assert img.dtype == np.float32 and 0 <= img.min() and img.max() <= 1
    sky = np.array([0.6, 0.886, 0.976])
    np.testing.assert_allclose(img[:, 1, 32], sky, atol=0.02)  # pale sky band at the top
    floor = img[:, 62, 32]
    assert floor[0] > 0.5 and floor[1] < 0.05 and floor[2] < 0.05  # floor hue 0 = red
    changed = {}
    for k, new in ((0, 5), (1, 0), (2, 8)):
        other = list(base)
        other[k] = new
        changed[k] = np.abs(_render([other], ds)[0] - img).sum(0) > 1e-3
    coeff = ds._memo[int(np.ravel_multi_index(base[3:], (8, 4, 15)))]
    for k, region in ((0, 1), (1, 2), (2, 3)):  # floor, wall, object hue recolour their region
        assert (coeff[region][changed[k]] > 0).all() and changed[k].sum() > 50
    # scale grows the object's area; orientation moves the wall corner and the object
    small = coeff[3].sum()
    big = ds._memo.get(int(np.ravel_multi_index([7, 0, 7], (8, 4, 15))))
    if big is None:
        _render([[0, 6, 3, 7, 0, 7]], ds)
        big = ds._memo[int(np.ravel_multi_index([7, 0, 7], (8, 4, 15)))]
    assert big[3].sum() > 1.4 * small
    turned = _render([[0, 6, 3, 4, 0, 0]], ds)[0]
    assert np.abs(turned - img).sum() > 100
    shapes = [_render([[0, 6, 3, 4, s, 7]], ds)[0] for s in range(4)]
    assert all(np.abs(a - b).sum() > 10 for i, a in enumerate(shapes) for b in shapes[i + 1 :])


def test_compose_is_linear_in_colours():
    coeff = render_geometry(np.array([1.0]), np.array([2]), np.array([10.0]), FAST)
    assert coeff.shape == (1, 4, 64, 64)
    np.testing.assert_allclose(coeff.sum(1).max(), 1.0, atol=1e-5)  # coverage sums to ≤ 1
    a = compose(coeff, np.array([0.0]), np.array([0.5]), np.array([0.2]))
    assert a.shape == (1, 3, 64, 64)


def test_shapes3d_determinism():
    ds = Shapes3D(cache=False, scene=FAST)
    f1, o1 = ds.sample(4, np.random.default_rng(7))
    f2, o2 = ds.sample(4, np.random.default_rng(7))
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(o1, o2)


def test_shapes3d_h5_loader(tmp_path):
    ds = Shapes3D(cache=False, scene=FAST)
    idx = np.array([0, 15, 4321, 479_999])
    cls = SHAPES3D_GRID.classes_of(idx)
    images = (ds.sample_observations_from_factors(cls, None) * 255).round().astype(np.uint8)
    labels = SHAPES3D_GRID.values_of(cls)
    path = tmp_path / "3dshapes.h5"
    write_shapes3d_h5(path, images.transpose(0, 2, 3, 1), labels)
    real = Shapes3D(tmp_path)  # a folder holding 3dshapes.h5
    got = real.sample_observations_from_factors(cls[::-1], None)
    np.testing.assert_array_equal((got * 255).round().astype(np.uint8), images[::-1])
    with pytest.raises(KeyError):
        real.sample_observations_from_factors(np.array([[1, 1, 1, 1, 1, 1]]), None)
    import pickle

    clone = pickle.loads(pickle.dumps(real))  # DataLoader workers pickle the dataset
    assert clone.sample_observations_from_factors(cls[:1], None).shape == (1, 3, 64, 64)


def test_shapes3d_h5_errors(tmp_path):
    import h5py

    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["images"] = np.zeros((2, 64, 64, 3), np.uint8)
    with pytest.raises(DatasetFileError, match="lacks the datasets"):
        Shapes3D(tmp_path / "a.h5")
    with h5py.File(tmp_path / "b.h5", "w") as f:
        f["images"] = np.zeros((2, 32, 32, 3), np.uint8)
        f["labels"] = np.zeros((2, 6))
    with pytest.raises(DatasetFileError, match=r"\(N, 64, 64, 3\)"):
        Shapes3D(tmp_path / "b.h5")
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f["images"] = np.zeros((1, 64, 64, 3), np.uint8)
        f["labels"] = np.array([[0.0, 0.0, 0.0, 0.75, 0.0, 31.0]])
    with pytest.raises(DatasetFileError, match="orientation"):
        Shapes3D(tmp_path / "c.h5")
    (tmp_path / "d.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(DatasetFileError, match="truncated"):
        Shapes3D(tmp_path / "d.h5")
    with pytest.raises(DatasetFileError, match="not found"):
        Shapes3D(tmp_path / "nope.h5")


def _write_npz(path, n, compressed=False):
    images = np.random.default_rng(0).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
    (np.savez_compressed if compressed else np.savez)(path, images=images)
    return images


@pytest.mark.parametrize("compressed", [False, True])
def test_mpi3d_loader(tmp_path, compressed):
    sizes = (2, 1, 2, 1, 1, 3, 2)
    images = _write_npz(tmp_path / "mpi3d_toy.npz", 24, compressed)
    ds = MPI3D(tmp_path, variant="toy", factor_sizes=sizes)
    if not compressed:
        assert isinstance(ds._images, np.memmap)  # read lazily
    assert ds.factor_names[0] == "object_color" and ds.factor_sizes == sizes
    cls = ds.grid.classes_of(np.array([23, 0, 7]))
    got = ds.sample_observations_from_factors(cls, None)
    np.testing.assert_allclose(got, images[[23, 0, 7]].transpose(0, 3, 1, 2) / 255.0, atol=1e-6)


def test_mpi3d_errors(tmp_path):
    _write_npz(tmp_path / "m.npz", 24)
    with pytest.raises(DatasetFileError, match="need 460800"):
        MPI3D(tmp_path / "m.npz", variant="toy")
    data = (tmp_path / "m.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(data[: len(data) - 5000])
    with pytest.raises(DatasetFileError, match="truncated"):
        MPI3D(tmp_path / "t.npz", factor_sizes=(2, 1, 2, 1, 1, 3, 2))
    np.savez(tmp_path / "k.npz", imgs=np.zeros((1, 64, 64, 3), np.uint8))
    with pytest.raises(DatasetFileError, match="no array 'images'"):
        MPI3D(tmp_path / "k.npz", factor_sizes=(1,) * 7)
    with pytest.raises(ValueError, match="variant"):
        MPI3D(tmp_path / "m.npz", variant="fake")


def test_hf_loading_path_on_local_files(tmp_path):
    import datasets

    ds = make_dataset("dsprites", tiny=True)
    cls = ds.grid.classes_of(np.arange(0, len(ds), 97))
    imgs = (ds.sample_observations_from_factors(cls, None)[:, 0] * 255).astype(np.uint8)
    vals = ds.grid.values_of(cls)
    table = {"image": [im for im in imgs]}
    table.update({n: vals[:, k] for k, n in enumerate(ds.factor_names)})
    datasets.Dataset.from_dict(table).to_parquet(str(tmp_path / "train.parquet"))
    hf = from_hf(
        "parquet",
        data_files={"train": str(tmp_path / "train.parquet")},
        factor_columns=list(ds.factor_names),
        cache_dir=str(tmp_path / "hf_cache"),
    )
    assert hf.observation_shape == (1, 64, 64) and len(hf.grid.names) == 5
    assert len(hf) == len(cls) and hf.sample(3, np.random.default_rng(0))[1].shape[0] == 3
    x, y = hf[4]
    assert x.shape == (1, 64, 64) and x.max() <= 1
    np.testing.assert_allclose(x[0].numpy(), imgs[4] / 255.0)
    np.testing.assert_allclose(hf.grid.values_of(y[None].numpy())[0], vals[4])


def test_correlated_sampler():
    ds = make_dataset("dsprites", tiny=True, correlations={("posX", "posY"): 0.1})
    f = ds.sample_factors(20_000, np.random.default_rng(0))
    corr = np.corrcoef(f[:, 3], f[:, 4])[0, 1]
    assert corr > 0.7  # σ = 0.1 on [0, 1] couples strongly
    assert abs(np.corrcoef(f[:, 0], f[:, 2])[0, 1]) < 0.05  # others stay independent
    # empirical joint matches the normalised weights
    sampler = ds.correlation
    w = sampler.weights(np.array([[0, 0, 0, 0, 0], [0, 0, 0, 0, 7]]))
    np.testing.assert_allclose(w, [1.0, np.exp(-1 / (2 * 0.01))])
    inv = CorrelatedFactors(ds.grid, {("posX", "posY"): 0.1}, inverse=True)
    g = inv.sample(20_000, np.random.default_rng(1))
    assert np.corrcoef(g[:, 3], g[:, 4])[0, 1] < -0.7
    plain = make_dataset("dsprites", tiny=True).sample_factors(20_000, np.random.default_rng(0))
    assert abs(np.corrcoef(plain[:, 3], plain[:, 4])[0, 1]) < 0.05  # off by default
    with pytest.raises(ValueError, match="unknown factor"):
        CorrelatedFactors(ds.grid, {("posX", "colour"): 0.1})
    with pytest.raises(ValueError, match="sigma"):
        CorrelatedFactors(ds.grid, {("posX", "posY"): 0.0})
    s = sampler.torch_sampler(64, torch.Generator().manual_seed(0))
    assert len(list(s)) == 64


def test_cache_written_once_and_corruption_rebuilt(tmp_path):
    calls = []

    def build(out):
        calls.append(1)
        out[:] = np.arange(out.size, dtype=out.dtype).reshape(out.shape)

    kw = dict(params={"v": 1}, cache_dir=tmp_path)
    a = cached_array("arr", (100, 10), np.int32, build, **kw)
    b = cached_array("arr", (100, 10), np.int32, build, **kw)
    assert len(calls) == 1 and isinstance(b, np.memmap) and b[3, 4] == 34
    manifest = json.loads((tmp_path / "arr.json").read_text())
    assert manifest["nbytes"] == (tmp_path / "arr.npy").stat().st_size
    del a, b
    raw = bytearray((tmp_path / "arr.npy").read_bytes())
    raw[-1] ^= 0xFF  # same size, one flipped byte: only the checksum sees it
    (tmp_path / "arr.npy").write_bytes(bytes(raw))
    with pytest.warns(CacheCorruptWarning, match="checksum"):
        c = cached_array("arr", (100, 10), np.int32, build, **kw)
    assert len(calls) == 2 and c[-1, -1] == 999
    (tmp_path / "arr.npy").write_bytes(bytes(raw[:-40]))  # truncated
    with pytest.warns(CacheCorruptWarning, match="size"):
        cached_array("arr", (100, 10), np.int32, build, verify="size", **kw)
    with pytest.warns(CacheCorruptWarning, match="parameters"):
        cached_array("arr", (100, 10), np.int32, build, params={"v": 2}, cache_dir=tmp_path)
    assert len(calls) == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cached_array("arr", (100, 10), np.int32, build, params={"v": 2}, cache_dir=tmp_path)


def test_registry_names_and_errors():
    for name in ("dsprites", "dsprites_real", "color_dsprites", "noisy_dsprites", "shapes3d",
                 "mpi3d_toy", "mpi3d_real"):  # fmt: skip
        assert name in DATASETS
    with pytest.raises(ValueError, match="did you mean 'dsprites'"):
        make_dataset("dsprite")
    with pytest.raises(ValueError, match="tiny=True"):
        make_dataset("mpi3d_toy", tiny=True)
    ds = make_dataset("dsprites", tiny=True)
    assert len(ds) == 1536 and ds.factor_sizes == (3, 2, 4, 8, 8)
    sub = make_dataset("dsprites", cache=False, subset={"shape": [2], "scale": [5]})
    assert sub.factor_sizes == (1, 1, 40, 32, 32)
    with pytest.raises(ValueError, match="unknown factors"):
        make_dataset("dsprites", cache=False, subset={"colour": [0]})
    with pytest.raises(ValueError, match=r"0\.\.5"):
        make_dataset("dsprites", cache=False, subset={"scale": [6]})


@pytest.mark.parametrize("name", ["dsprites", "noisy_dsprites", "shapes3d"])
def test_dataloader_with_workers(name):
    ds = make_dataset(name, tiny=True)
    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True, num_workers=2)
    seen = 0
    for x, y in loader:
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape[1:] == ds.observation_shape and y.shape[1] == len(ds.factor_sizes)
        assert 0 <= x.min() and x.max() <= 1
        seen += len(x)
        if seen >= 96:
            break
    assert seen == 96
    _, y0 = ds[5]
    assert y0.tolist() == ds.grid.classes_of(5)[0].tolist()


def test_memory_maps_pickle_by_reference(tmp_path):
    import pickle

    import disentangle.data.dsprites as mod

    old = mod.N_IMAGES
    mod.N_IMAGES = 512
    try:
        ds = make_dataset("dsprites", cache_dir=tmp_path, progress=False)
    finally:
        mod.N_IMAGES = old
    blob = pickle.dumps(ds)
    assert len(blob) < 10_000  # the 512 × 512-byte cache is not copied into the pickle
    clone = pickle.loads(blob)
    assert isinstance(clone._packed, np.memmap)
    np.testing.assert_array_equal(clone.images([[0, 0, 0, 0, 7]]), ds.images([[0, 0, 0, 0, 7]]))
