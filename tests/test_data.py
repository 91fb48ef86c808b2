"""Tests of the patch samplers (LR patches with fibre cells, target-domain patches)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from napari_cycsr.data import (
    LRPatchSampler,
    TargetSampler,
    as_frame_stacks,
    resample_to_spacing,
    robust_normalisation,
)
from napari_cycsr.losses import voronoi_means
from napari_cycsr.simulate import simulate_pcle


@pytest.fixture(scope="module")
def sim():
    return simulate_pcle(data.camera()[:128, 192:320], seed=0)


def _sampler(sim, **kw):
    kw.setdefault("patch", 32)
    kw.setdefault("values", sim.values)
    kw.setdefault("rng", np.random.default_rng(0))
    return LRPatchSampler(sim.lr, sim.bundle, **kw)


def test_patches_lie_inside_the_fov_and_match_the_image(sim):
    sampler = _sampler(sim)
    batch = sampler.sample(8)
    assert batch.lr.shape == (8, 1, 32, 32) and batch.lr.dtype == torch.float32
    norm = sampler.normalisation
    fov = sim.bundle.fov_mask
    for b, (i, t, y0, x0) in enumerate(batch.positions):
        assert (i, t) == (0, 0)
        assert fov[y0 : y0 + 32, x0 : x0 + 32].all()
        expected = (sim.lr[y0 : y0 + 32, x0 : x0 + 32] - norm["low"]) / (norm["high"] - norm["low"])
        np.testing.assert_allclose(batch.lr[b, 0].numpy(), expected, rtol=1e-5, atol=1e-6)


def test_cells_cut_by_the_border_are_excluded(sim):
    sampler = _sampler(sim)
    batch = sampler.sample(6)
    labels = sim.bundle.labels
    index = batch.cell_index.numpy()
    seg = batch.segment_patch.numpy()
    assert batch.n_cells == len(seg) == len(batch.values) == index.max() + 1
    assert np.all(np.diff(seg) >= 0)
    for b, (_, _, y0, x0) in enumerate(batch.positions):
        window = labels[y0 : y0 + 32, x0 : x0 + 32]
        outside = np.ones(labels.shape, dtype=bool)
        outside[y0 : y0 + 32, x0 : x0 + 32] = False
        cut = set(np.unique(labels[outside]).tolist())
        whole = set(np.unique(window[window >= 0]).tolist()) - cut
        kept = batch.fibre[seg == b]
        assert set(kept.tolist()) == whole  # exactly the cells wholly inside the patch
        assert len(whole) > 0
        for cell_id in np.flatnonzero(seg == b):
            fibre = batch.fibre[cell_id]
            np.testing.assert_array_equal(index[b] == cell_id, window == fibre)
        # pixels of cut cells are not counted
        assert np.all(index[b][np.isin(window, list(cut))] == -1)


def test_values_are_the_normalised_measured_fibre_values(sim):
    sampler = _sampler(sim)
    batch = sampler.sample(4)
    norm = sampler.normalisation
    expected = (sim.values[batch.fibre] - norm["low"]) / (norm["high"] - norm["low"])
    np.testing.assert_allclose(batch.values.numpy(), expected, rtol=1e-5, atol=1e-6)
    # without raw values, V = bundle.sample(LR), exact for a TLI image
    derived = _sampler(sim, values=None).batch_at(batch.positions)
    np.testing.assert_allclose(derived.values.numpy(), batch.values.numpy(), atol=1e-4)


def test_voronoi_means_of_batch_agree_with_bundle_vectorize(sim):
    sampler = _sampler(sim)
    batch = sampler.sample(4)
    means = voronoi_means(batch.lr.double(), batch.cell_index, batch.n_cells).numpy()
    norm = sampler.normalisation
    lr_norm = (sim.lr.astype(np.float64) - norm["low"]) / (norm["high"] - norm["low"])
    full = sim.bundle.vectorize(lr_norm)
    np.testing.assert_allclose(means, full[batch.fibre], rtol=1e-4, atol=1e-5)


def test_sampling_is_reproducible_with_the_same_rng(sim):
    a = _sampler(sim, rng=np.random.default_rng(5)).sample(5)
    b = _sampler(sim, rng=np.random.default_rng(5)).sample(5)
    np.testing.assert_array_equal(a.positions, b.positions)
    assert torch.equal(a.cell_index, b.cell_index)


def test_scale_two_repeats_cells_on_the_finer_grid(sim):
    one = _sampler(sim)
    two = _sampler(sim, scale=2)
    positions = one.draw_positions(3)
    b1, b2 = one.batch_at(positions), two.batch_at(positions)
    assert b2.cell_index.shape == (3, 64, 64)
    assert torch.equal(b2.cell_index[:, ::2, ::2], b1.cell_index)
    assert torch.equal(b2.values, b1.values)


def test_stacks_and_lists_of_images(sim):
    frames = np.stack([sim.lr, sim.lr * 0.5])
    values = np.stack([sim.values, sim.values * 0.5])
    sampler = LRPatchSampler(
        [frames, sim.lr],
        [sim.bundle],
        patch=32,
        values=[values, sim.values],
        rng=np.random.default_rng(1),
    )
    assert sampler.n_frames == 3
    batch = sampler.sample(16)
    assert set(batch.positions[:, 0].tolist()) == {0, 1}
    for b, (i, t, _, _) in enumerate(batch.positions):
        assert t < (2 if i == 0 else 1)
        sel = batch.segment_patch.numpy() == b
        scale = 0.5 if (i, t) == (0, 1) else 1.0
        norm = sampler.normalisation
        raw = sim.values[batch.fibre[sel]] * scale
        expected = (raw - norm["low"]) / (norm["high"] - norm["low"])
        np.testing.assert_allclose(batch.values.numpy()[sel], expected, rtol=1e-5, atol=1e-6)


def test_fov_fraction_allows_patches_at_the_edge(sim):
    strict = _sampler(sim)
    loose = _sampler(sim, fov_fraction=0.5)
    assert loose.n_positions() > strict.n_positions()


@pytest.mark.parametrize(
    ("images", "kwargs", "error", "match"),
    [
        ([], {}, ValueError, "empty list"),
        (np.indices((128, 128, 3)).sum(0), {}, ValueError, "RGB"),
        (np.full((128, 128), np.nan), {}, ValueError, "NaN"),
        (np.zeros((100, 128)), {}, ValueError, "bundle is for images of shape"),
        (np.array([["a"]]), {}, TypeError, "numeric"),
        (None, {"values": np.zeros(7)}, ValueError, "fibres"),
        (None, {"patch": 200}, ValueError, "no 200x200 patch"),
        (None, {"scale": 3}, ValueError, "scale"),
    ],
)
def test_bad_inputs_fail_clearly(sim, images, kwargs, error, match):
    with pytest.raises(error, match=match):
        LRPatchSampler(sim.lr if images is None else images, sim.bundle, **kwargs)


def test_wrong_number_of_bundles(sim):
    with pytest.raises(ValueError, match="one bundle per image"):
        LRPatchSampler([sim.lr, sim.lr, sim.lr], [sim.bundle, sim.bundle], patch=32)
    with pytest.raises(TypeError, match="FibreBundle"):
        LRPatchSampler(sim.lr, "bundle", patch=32)


def test_as_frame_stacks_flattens_leading_axes():
    stacks = as_frame_stacks(np.zeros((2, 3, 8, 9), dtype=np.uint8))
    assert len(stacks) == 1 and stacks[0].shape == (6, 8, 9) and stacks[0].dtype == np.float32


def test_robust_normalisation_percentiles_and_mask():
    image = np.arange(1000, dtype=np.float32).reshape(20, 50)
    norm = robust_normalisation([image])
    assert norm["low"] == pytest.approx(np.percentile(image, 1))
    assert norm["high"] == pytest.approx(np.percentile(image, 99.5))
    mask = np.zeros((20, 50), dtype=bool)
    mask[:10] = True
    masked = robust_normalisation([image], [mask])
    assert masked["high"] < 500
    with pytest.raises(ValueError, match="constant"):
        robust_normalisation([np.ones((4, 4))])


def test_target_natural_images():
    sampler = TargetSampler("natural", patch=32, rng=np.random.default_rng(0))
    batch = sampler.sample(16)
    assert batch.shape == (16, 1, 32, 32) and batch.dtype == torch.float32
    for image in sampler.images:  # each image mapped by its own robust range
        low, high = np.percentile(image, [1, 99.5])
        assert low == pytest.approx(0.0, abs=1e-6) and high == pytest.approx(1.0, abs=1e-6)
    again = TargetSampler("natural", patch=32, rng=np.random.default_rng(0)).sample(16)
    assert torch.equal(batch, again)


def test_target_user_images_and_augmentation():
    image = np.tile(np.linspace(0, 1, 40, dtype=np.float32), (40, 1))  # ramp along x
    plain = TargetSampler("images", images=[image], patch=40, augment=False)
    np.testing.assert_allclose(plain.sample(1)[0, 0, 0].numpy(), plain.images[0][0, 0])
    aug = TargetSampler("images", images=image, patch=40, rng=np.random.default_rng(1))
    patches = aug.sample(24)[:, 0].numpy()
    # rotations/flips of a horizontal ramp give both vertical and horizontal ramps
    horizontal = [np.ptp(p[0]) > 0.5 for p in patches]
    assert any(horizontal) and not all(horizontal)
    with pytest.raises(ValueError, match="needs images"):
        TargetSampler("images")
    with pytest.raises(ValueError, match="no 64x64 patch"):
        TargetSampler("images", images=[image])


def test_target_downscaled_lr_images():
    sim = simulate_pcle(data.camera()[:128, 192:320], fov="full", seed=1)
    sampler = TargetSampler(
        "downscaled",
        lr_images=sim.lr,
        masks=[sim.bundle.fov_mask],
        patch=16,
        rng=np.random.default_rng(0),
    )
    assert sampler.images[0].shape[1:] == (32, 32)
    assert sampler.sample(3).shape == (3, 1, 16, 16)


def test_target_paired_uses_lr_positions(sim):
    norm = {"low": 0.0, "high": 2.0}
    hr2 = np.kron(sim.hr, np.ones((2, 2), dtype=np.float32))
    sampler = TargetSampler("paired", images=[hr2], patch=64, scale=2, normalisation=norm)
    positions = np.array([[0, 0, 10, 20], [0, 0, 3, 4]])
    out = sampler.sample(2, positions)
    np.testing.assert_allclose(out[0, 0].numpy(), hr2[20:84, 40:104] / 2.0)
    with pytest.raises(ValueError, match="positions"):
        sampler.sample(2)
    with pytest.raises(ValueError, match="kind"):
        TargetSampler("sun2012")


def _batch_one_patch_at_a_time(sampler, positions):
    """Reference for the batched gather of ``batch_at``: one patch after the other."""
    p, n_max = sampler.patch, sampler._n_max
    keys, lr = [], []
    for b, (i, t, y0, x0) in enumerate(positions):
        lr.append(sampler.images[i][t, y0 : y0 + p, x0 : x0 + p])
        lab = sampler._labels[i][y0 : y0 + p, x0 : x0 + p]
        key = np.full((p, p), -1, dtype=np.int64)
        for cell in np.unique(lab[lab >= 0]):
            ys, xs = np.nonzero(sampler._labels[i] == cell)
            inside = ys.min() >= y0 and ys.max() < y0 + p and xs.min() >= x0 and xs.max() < x0 + p
            if inside:
                key[lab == cell] = b * n_max + cell
        keys.append(key)
    keys = np.stack(keys)
    unique = np.unique(keys[keys >= 0])
    values = [sampler.values[positions[k // n_max, 0]][positions[k // n_max, 1], k % n_max]
              for k in unique]  # fmt: skip
    return np.stack(lr), keys, unique, np.asarray(values, dtype=np.float32)


def test_batched_gather_equals_patch_by_patch(sim):
    other = simulate_pcle(data.coins()[:120, :100], seed=3)
    sampler = LRPatchSampler(
        [sim.lr, np.stack([other.lr, other.lr * 0.5])], [sim.bundle, other.bundle], patch=24,
        fov_fraction=0.7, rng=np.random.default_rng(5),
    )  # fmt: skip
    positions = sampler.draw_positions(9)
    assert len(np.unique(positions[:, 0])) == 2  # patches of both images in one batch
    batch = sampler.batch_at(positions)
    lr, keys, unique, values = _batch_one_patch_at_a_time(sampler, positions)
    np.testing.assert_array_equal(batch.lr[:, 0].numpy(), lr)
    assert batch.n_cells == len(unique)
    np.testing.assert_array_equal(batch.segment_patch.numpy(), unique // sampler._n_max)
    np.testing.assert_array_equal(batch.fibre, unique % sampler._n_max)
    np.testing.assert_array_equal(batch.values.numpy(), values)
    # the same cells, renumbered 0..n-1 in order
    index = batch.cell_index.numpy()
    np.testing.assert_array_equal(index >= 0, keys >= 0)
    np.testing.assert_array_equal(unique[index[index >= 0]], keys[keys >= 0])


@pytest.mark.parametrize("zoom", [0.45, 1.8])
def test_resampled_frames_and_fibres_stay_in_register(zoom):
    """The resized TLI frame is (up to interpolation) the TLI of the same values on the moved
    fibres, and their Voronoi cell means give back the measured values: frames and bundle
    moved together. A bundle off by half a pixel does markedly worse (the check can fail)."""
    from napari_cycsr.fibres import FibreBundle

    sim = simulate_pcle(data.camera()[100:260, 100:260] / 255.0, spacing=4.0, seed=0)
    target = sim.bundle.spacing * zoom
    out = resample_to_spacing(sim.lr, sim.bundle, target)
    (frames,), (bundle,), (values,) = out.images, out.bundles, out.values
    shape = (round(160 * zoom), round(160 * zoom))
    assert frames.shape == (1, *shape) and bundle.shape == shape
    assert out.zooms == [pytest.approx(zoom)]
    assert bundle.n_fibres == sim.bundle.n_fibres
    assert bundle.spacing == pytest.approx(target, rel=0.02)
    np.testing.assert_allclose(values[0], sim.values, rtol=1e-6)  # a fibre measured what it did
    assert not frames[0][~bundle.fov_mask].any()  # TLI-like: zero outside the field

    def error(b):
        inside = b.fov_mask
        direct = b.reconstruct(values[0])
        return (
            float(np.sqrt(np.mean((frames[0][inside] - direct[inside]) ** 2))),
            # cells that hold no pixel centre (fine spacings) have no mean
            float(np.sqrt(np.nanmean((b.vectorize(frames[0]) - values[0]) ** 2))),
        )

    tli_error, cell_error = error(bundle)
    moved = FibreBundle(np.clip(bundle.centres + 0.5, -0.5, shape[0] - 0.5), shape)
    wrong_tli, wrong_cells = error(moved)
    spread = float(np.std(sim.values))
    assert tli_error < 0.2 * spread and cell_error < 0.3 * spread
    assert wrong_tli > 4 * tli_error and wrong_cells > 1.1 * cell_error


def test_resampling_keeps_shared_bundles_scales_registrations_and_leaves_close_ones():
    sim = simulate_pcle(data.camera()[:96, :96] / 255.0, spacing=4.0, seed=0)
    stack = np.stack([sim.lr] * 3)
    shifts = np.array([[0.0, 0.0], [2.0, -1.0], [4.0, 3.0]])
    out = resample_to_spacing([stack, stack], sim.bundle, sim.bundle.spacing / 2,
                              poses=[shifts, None])  # fmt: skip
    assert out.bundles[0] is out.bundles[1]  # one shared bundle stays one
    np.testing.assert_allclose(out.poses[0].shifts, shifts / 2)
    assert out.poses[0].good.all() and out.poses[1] is None
    assert [v.shape for v in out.values] == [(3, sim.bundle.n_fibres)] * 2
    # within the tolerance the data is left alone, values sampled from the frames (exact)
    same = resample_to_spacing(sim.lr, sim.bundle, sim.bundle.spacing * 1.04)
    assert same.zooms == [1.0] and same.bundles[0] is sim.bundle
    np.testing.assert_allclose(same.values[0][0], sim.bundle.sample(sim.lr), atol=1e-6)
    for bad, kind in (("2", TypeError), (True, TypeError), (0.0, ValueError),
                      (float("inf"), ValueError)):  # fmt: skip
        with pytest.raises(kind, match="spacing"):
            resample_to_spacing(sim.lr, sim.bundle, bad)
    with pytest.raises(ValueError, match="shape"):
        resample_to_spacing(sim.lr[:90], sim.bundle, 2.0)


def test_resampling_that_would_exhaust_memory_is_refused_first(monkeypatch):
    """Enlarging many frames is refused before any memory is taken, naming the way out."""
    sim = simulate_pcle(data.camera()[:96, :96] / 255.0, spacing=4.0, seed=0)
    monkeypatch.setenv("NAPARI_CYCSR_MAX_PIXELS", str(3 * 96 * 96))
    stack = np.stack([sim.lr] * 2)
    out = resample_to_spacing(stack, sim.bundle, sim.bundle.spacing * 1.2)  # 2 x 115^2 fits
    assert out.images[0].shape == (2, 115, 115)
    with pytest.raises(ValueError, match="would hold 73,728 pixels .*match_spacing=False"):
        resample_to_spacing(stack, sim.bundle, sim.bundle.spacing * 2)
