"""Transformed-digit sequences (FFRL data, ffrl.md §2.1): closed forms, splits, loaders, errors."""

import gzip
from itertools import islice

import numpy as np
import pytest
import torch

from disentangle.data.sequences import (
    TRANSFORMATIONS,
    DigitSequences,
    SequenceSampler,
    affine_warp,
    load_mnist_images,
    make_sequence_dataset,
    rotate_hue,
    sequence_frames,
    transform_frames,
)

H = W = 28
C = (14.0, 14.0)


def _ramp():
    """An affine image f(x, y) = 0.2 + 0.01·x + 0.015·y: bilinear sampling is exact on it."""
    y, x = torch.meshgrid(
        torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij"
    )
    return (0.2 + 0.01 * x + 0.015 * y)[None, None], x, y


@pytest.mark.parametrize("angle,scale", [(0.0, 1.5), (30.0, 1.0), (-50.0, 1.3), (80.0, 1.8)])
def test_affine_warp_matches_closed_form_on_a_ramp(angle, scale):
    img, x, y = _ramp()
    out = affine_warp(img, angle, scale, C)[0, 0]
    th = np.deg2rad(angle)
    # inverse of the kornia/OpenCV map: src = c + R(θ)(p − c)/s
    sx = C[0] + (np.cos(th) * (x - C[0]) - np.sin(th) * (y - C[1])) / scale
    sy = C[1] + (np.sin(th) * (x - C[0]) + np.cos(th) * (y - C[1])) / scale
    inside = (sx >= 0) & (sx <= W - 1) & (sy >= 0) & (sy <= H - 1)
    expected = 0.2 + 0.01 * sx + 0.015 * sy
    assert inside.sum() > 300
    torch.testing.assert_close(out[inside], expected[inside], atol=1e-9, rtol=0)
    # outside the source image: zero padding
    far = (sx < -1) | (sx > W) | (sy < -1) | (sy > H)
    if far.any():
        assert out[far].abs().max() == 0


def test_rotation_is_counter_clockwise_on_screen_and_scale_zooms_in():
    img = torch.zeros(1, 1, H, W)
    img[0, 0, 14, 20] = 1.0  # right of the centre (x = 20, y = 14)
    rot = affine_warp(img, 90.0, 1.0, C)[0, 0]
    assert rot.argmax().item() == 8 * W + 14 and rot.max().item() == pytest.approx(1.0, abs=1e-5)
    img = torch.zeros(1, 1, H, W)
    img[0, 0, 14, 16] = 1.0
    zoom = affine_warp(img, 0.0, 1.5, C)[0, 0]
    assert zoom[14, 17].item() == pytest.approx(1.0, abs=1e-5)  # 14 + 1.5·2 = 17


@pytest.mark.parametrize(
    "deg,rgb",
    [
        (0, (0.8, 0, 0)),
        (20, (0.8, 0.8 / 3, 0)),
        (60, (0.8, 0.8, 0)),
        (120, (0, 0.8, 0)),
        (160, (0, 0.8, 0.8 * 2 / 3)),
        (240, (0, 0, 0.8)),
        (300, (0.8, 0, 0.8)),
        (360, (0.8, 0, 0)),
    ],
)
def test_hue_rotation_of_pure_red_matches_hsv(deg, rgb):
    img = torch.zeros(1, 3, 2, 2, dtype=torch.float64)
    img[:, 0] = 0.8
    out = rotate_hue(img, float(deg))
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor(rgb, dtype=torch.float64))


def test_hue_rotation_keeps_value_saturation_greys_and_composes():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(4, 3, 5, 5, generator=g, dtype=torch.float64)
    img[:, :, 0, 0] = 0.4  # a grey pixel
    out = rotate_hue(img, 47.0)
    torch.testing.assert_close(out.amax(1), img.amax(1))
    torch.testing.assert_close(out.amax(1) - out.amin(1), img.amax(1) - img.amin(1))
    torch.testing.assert_close(out[:, :, 0, 0], img[:, :, 0, 0])
    torch.testing.assert_close(rotate_hue(out, 73.0), rotate_hue(img, 120.0))
    torch.testing.assert_close(rotate_hue(img, 360.0), img)


def test_transform_frames_step_parameters_and_identity():
    g = torch.Generator().manual_seed(1)
    x0 = torch.zeros(3, 3, H, W)
    x0[:, 0] = torch.rand(3, H, W, generator=g)
    frames = sequence_frames(x0, "rotate", steps=8)
    assert frames.shape == (3, 9, 3, H, W)
    for k in TRANSFORMATIONS:
        assert torch.equal(sequence_frames(x0, k, 8)[:, 0], x0)
    torch.testing.assert_close(frames[:, 3], affine_warp(x0, 30.0, 1.0, C))
    torch.testing.assert_close(transform_frames(x0, 0, 5.0), affine_warp(x0, 0.0, 1.5, C))
    torch.testing.assert_close(transform_frames(x0, "hue", 4.0), rotate_hue(x0, 80.0))
    # per-sample steps
    t = torch.tensor([0.0, 2.0, 7.0])
    per = transform_frames(x0, 1, t)
    for i in range(3):
        torch.testing.assert_close(per[i], transform_frames(x0[i : i + 1], 1, t[i])[0])


def test_digits_seq_splits_shapes_and_sampler_determinism():
    train = make_sequence_dataset("digits_seq", split="train")
    ev = make_sequence_dataset("digits_seq", split="eval")
    assert len(train) + len(ev) == 1797
    assert set(train.indices).isdisjoint(ev.indices)
    x0, _ = train[0]
    assert x0.shape == (3, 28, 28) and x0[1:].abs().max() == 0 and 0.5 < x0.max() <= 1
    # digit within the central 20×20 box before transformation
    assert x0[0, :4].abs().max() == 0 and x0[0, :, 24:].abs().max() == 0
    assert len(SequenceSampler(train, 16, seed=3, epochs=2)) == 2 * (len(train) // 16)
    a = list(islice(SequenceSampler(train, 16, seed=3), 12))
    b = list(islice(SequenceSampler(train, 16, seed=3), 12))
    assert all(torch.equal(p.frames, q.frames) and torch.equal(p.k, q.k) for p, q in zip(a, b))
    ks = {int(p.k[0]) for p in a}
    assert ks == {0, 1, 2} and all(p.k.unique().numel() == 1 for p in a)
    assert a[0].frames.shape == (16, 9, 3, 28, 28)
    torch.testing.assert_close(a[0].frames, train.frames(a[0].indices, int(a[0].k[0])))
    c = next(iter(SequenceSampler(train, 16, seed=4)))
    assert not torch.equal(c.indices, a[0].indices)


def _write_idx(path, images, gz=False):
    n, h, w = images.shape
    raw = (2051).to_bytes(4, "big") + b"".join(v.to_bytes(4, "big") for v in (n, h, w))
    raw += images.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


def test_mnist_loaders_idx_gz_npz(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, (10, 28, 28)).astype(np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", imgs, gz=True)
    np.testing.assert_array_equal(load_mnist_images(tmp_path), imgs)
    _write_idx(tmp_path / "raw.idx", imgs)
    np.testing.assert_array_equal(load_mnist_images(tmp_path / "raw.idx"), imgs)
    np.savez(tmp_path / "mnist.npz", x_train=imgs)
    ds = make_sequence_dataset("mnist_seq", path=tmp_path / "mnist.npz", split="all", steps=2)
    assert ds.name == "mnist_seq" and len(ds) == 10
    torch.testing.assert_close(ds[3][0][0], torch.from_numpy(imgs[3] / 255.0).float())
    assert ds.frames([0, 1], "scale").shape == (2, 3, 3, 28, 28)


def test_bad_input_errors(tmp_path):
    x0 = torch.zeros(2, 3, H, W)
    with pytest.raises(ValueError, match="unknown transformation 'shear'"):
        transform_frames(x0, "shear", 1.0)
    with pytest.raises(ValueError, match="k: transformation index"):
        transform_frames(x0, 3, 1.0)
    with pytest.raises(ValueError, match="steps: must be ≥ 1"):
        sequence_frames(x0, 0, steps=0)
    with pytest.raises(ValueError, match="steps"):
        make_sequence_dataset("digits_seq", steps=0)
    with pytest.raises(FileNotFoundError, match="no MNIST file"):
        make_sequence_dataset("mnist_seq", path=tmp_path / "missing.npz")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_mnist_images(tmp_path)
    with pytest.raises(ValueError, match="pass path"):
        make_sequence_dataset("mnist_seq")
    with pytest.raises(ValueError, match="unknown sequence dataset 'mnist'"):
        make_sequence_dataset("mnist")
    (tmp_path / "bad.idx").write_bytes(b"\x00" * 40)
    with pytest.raises(ValueError, match="magic number"):
        load_mnist_images(tmp_path / "bad.idx")
    imgs = np.zeros((3, 28, 28), np.uint8)
    _write_idx(tmp_path / "trunc.idx", imgs)
    (tmp_path / "trunc.idx").write_bytes((tmp_path / "trunc.idx").read_bytes()[:-5])
    with pytest.raises(ValueError, match="truncated"):
        load_mnist_images(tmp_path / "trunc.idx")
    with pytest.raises(ValueError, match="images: expected"):
        rotate_hue(torch.zeros(2, 1, 4, 4), 10.0)
    with pytest.raises(ValueError, match="split"):
        DigitSequences(imgs, split="test")


# --- 3D Shapes sequences (ffrl.md §2.2) ---------------------------------------------------------


@pytest.fixture(scope="module")
def shapes_base():
    from disentangle.data.shapes3d import Shapes3D

    return Shapes3D(cache=False, progress=False)  # renders only the geometries a test needs


def test_shapes3d_sequences_vary_one_factor_from_level_zero(shapes_base):
    from disentangle.data.sequences import SHAPES3D_TRANSFORMATIONS, Shapes3DSequences

    data = Shapes3DSequences(shapes_base, "train", steps=3, num_items=20, seed=1)
    assert len(data) == 20 and data.observation_shape == (3, 64, 64)
    rng = np.random.default_rng(0)
    for k, column in zip(range(5), (0, 1, 2, 3, 5)):
        frames = data.frames([4, 7], k)
        assert frames.shape == (2, 4, 3, 64, 64)
        cls = np.repeat(data.classes[[4, 7]][:, None], 4, 1)
        cls[:, :, column] = np.arange(4)  # factor k at levels 0..3, the others fixed
        expected = shapes_base.sample_observations_from_factors(cls.reshape(-1, 6), rng)
        np.testing.assert_array_equal(frames.reshape(-1, 3, 64, 64).numpy(), expected)
    assert data.frames([4], "scale").shape[1] == 4
    assert SHAPES3D_TRANSFORMATIONS[3] == "scale"


def test_shapes3d_sequence_splits_hold_out_one_shape(shapes_base):
    from disentangle.data.sequences import Shapes3DSequences

    train = Shapes3DSequences(shapes_base, "train", eval_shape=1)
    held = Shapes3DSequences(shapes_base, "eval", eval_shape=1)
    assert len(train) == 360_000 and len(held) == 120_000
    assert (train.classes[:, 4] != 1).all() and (held.classes[:, 4] == 1).all()
    # every frame keeps its item's shape (no sequence varies it): no frame is shared
    assert set(train.classes[:, 4]).isdisjoint(held.classes[:, 4])
    with pytest.raises(ValueError, match="steps"):
        Shapes3DSequences(shapes_base, steps=8)
    with pytest.raises(ValueError, match="eval_shape"):
        Shapes3DSequences(shapes_base, eval_shape=4)
    with pytest.raises(ValueError, match="unknown transformation"):
        Shapes3DSequences(shapes_base, num_items=2).frames([0], "shape")


def test_shapes3d_sequence_fn_uses_the_loader_indices(shapes_base):
    from disentangle.data.sequences import Shapes3DSequences

    data = Shapes3DSequences(shapes_base, "eval", steps=2, num_items=6)
    x0, idx = torch.utils.data.default_collate([data[i] for i in (0, 5)])
    frames = data.sequence_fn()(x0, 2, idx)
    torch.testing.assert_close(frames, data.frames([0, 5], 2))
    assert frames.shape == (2, 3, 3, 64, 64)
    # frame 0 is the item with factor k (object hue, grid column 2) at level 0
    start = data.classes[[0, 5]].copy()
    start[:, 2] = 0
    expected = shapes_base.sample_observations_from_factors(start, np.random.default_rng(0))
    np.testing.assert_array_equal(frames[:, 0].numpy(), expected)


# --- Falcor3D / Isaac3D image folders (ffrl.md §2.3) ----------------------------------------


def _write_folder(root, sizes):
    """A tiny factor grid of 4×4 PNGs whose pixels encode the factor levels."""
    from PIL import Image

    folder = root / "images"
    folder.mkdir(parents=True)
    for i, levels in enumerate(np.ndindex(*sizes)):
        img = np.zeros((4, 4, 3), np.uint8)
        img[0, : len(levels), 0] = np.asarray(levels) * 40  # row 0, red: the levels
        Image.fromarray(img).save(folder / f"{i:06d}.png")
    return root


def _levels(frames):
    return (frames[..., 0, 0, :3] * 255 / 40).round().long()  # red channel, row 0


def test_folder_sequences_fix_the_base_index_bug_and_split_cleanly(tmp_path):
    from disentangle.data.sequences import FolderSequences, FolderSpec

    spec = FolderSpec(("a", "b", "c"), (3, 4, 4), (0, 1, 2), 2, (1, 2))
    root = _write_folder(tmp_path / "grid", spec.factor_sizes)
    train = FolderSequences(root, spec, "train")
    held = FolderSequences(root, spec, "eval")
    assert train.observation_shape == (3, 4, 4) and train.transformations == ("a", "b", "c")
    assert len(train) == 3 * 3 * 3 and len(held) == 3 * 1 * 1
    for k in range(3):
        for i in range(len(train)):
            seq = _levels(train.frames([i], k))[0]  # (T + 1, 3) factor levels per frame
            expected = np.repeat(train.classes[i][None], 3, 0)
            expected[:, k] = np.arange(3)  # only factor k moves, from level 0 (the fix)
            np.testing.assert_array_equal(seq.numpy(), expected)
    train_frames = {
        tuple(r)
        for k in range(3)
        for r in _levels(train.frames(range(len(train)), k)).reshape(-1, 3).tolist()
    }
    eval_frames = {
        tuple(r)
        for k in range(3)
        for r in _levels(held.frames(range(len(held)), k)).reshape(-1, 3).tolist()
    }
    assert not train_frames & eval_frames  # no frame of an eval sequence is seen in training


def test_folder_sequences_bad_input(tmp_path):
    from disentangle.data.sequences import (
        FALCOR3D,
        FolderSequences,
        FolderSpec,
        make_sequence_dataset,
    )

    with pytest.raises(FileNotFoundError, match="root"):
        FolderSequences(tmp_path / "missing", FALCOR3D)
    spec = FolderSpec(("a", "b"), (3, 4), (0, 1), 2, (0, 1))
    root = _write_folder(tmp_path / "g", spec.factor_sizes)
    with pytest.raises(FileNotFoundError, match="233280 files"):
        FolderSequences(root, FALCOR3D)  # a 12-image folder is not Falcor3D
    with pytest.raises(ValueError, match="steps"):
        FolderSequences(root, spec, steps=3)  # factor a has 3 levels: T ≤ 2
    with pytest.raises(ValueError, match="split_factors"):
        FolderSequences(root, spec, steps=2)  # a split factor of 3 levels is reached at T = 2
    (root / "images" / "000005.png").write_bytes(b"not a png")
    data = FolderSequences(root, spec, "all")
    with pytest.raises(ValueError, match="cannot read"):
        data.frames([1], 0)  # item (0, 1) along a: files 1, 5, 9
    with pytest.raises(ValueError, match="path"):
        make_sequence_dataset("isaac3d_seq")
