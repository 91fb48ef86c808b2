"""Core detection on real bundles (napari_cycsr.detect): issue 12's defects, each a test."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree

from napari_cycsr.detect import NoBundleFound, bundle_fov, detect_cores, lattice_regularity
from napari_cycsr.fibres import FibreBundle
from napari_cycsr.simulate import hexagonal_lattice

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_detect import grey_surround, visible_maxima  # noqa: E402


def _cores(shape=(160, 160), spacing=5.0, seed=0, fov="circle"):
    rng = np.random.default_rng(seed)
    centres = hexagonal_lattice(shape, spacing, jitter=0.05, fov=fov, seed=seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = np.zeros(shape)
    for cy, cx in centres:
        img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 2.0)
    return img + rng.normal(0, 0.01, shape), centres


@pytest.mark.parametrize("kind", ["uniform", "gaussian", "constant"])
def test_noise_is_no_fibre_bundle(kind):
    rng = np.random.default_rng(0)
    frame = {
        "uniform": rng.uniform(0, 255, (200, 240)),
        "gaussian": rng.normal(100, 20, (200, 240)),
        "constant": np.full((200, 240), 7.0),
    }[kind]
    with pytest.raises(NoBundleFound, match="no fibre bundle found|no periodic pattern"):
        FibreBundle.detect(frame)


def test_lattice_regularity_separates_cores_from_noise():
    _, centres = _cores()
    assert lattice_regularity(centres) > 0.95
    noise = np.random.default_rng(1).uniform(0, 100, (500, 2))
    assert lattice_regularity(noise) < 0.6


def test_simulated_bundle_keeps_its_outermost_row_and_a_filled_fov():
    img, truth = _cores()
    found = FibreBundle.detect(img)
    d, _ = cKDTree(found.centres).query(truth)
    assert (d < 0.5).mean() >= 0.99  # every core, the outermost row included
    fov = found.fov_mask
    assert not (ndimage.binary_fill_holes(fov) & ~fov).any()


def test_tli_projection_and_sr_share_one_fov():
    img, truth = _cores()
    keep = np.ones(len(truth), bool)
    keep[np.argsort(np.hypot(*(truth - 80).T))[40:48]] = False  # a few missing cores
    bundle = FibreBundle(truth[keep], img.shape)
    out = bundle.reconstruct(np.ones(bundle.n_fibres, np.float32))
    # TLI is exactly zero outside the FOV and the FOV has no pinhole where cores are missing
    assert np.all(out[~bundle.fov_mask] == 0)
    assert np.allclose(out[bundle.fov_mask], 1.0)
    assert not (ndimage.binary_fill_holes(bundle.fov_mask) & ~bundle.fov_mask).any()


def test_small_fov_warns_without_background():
    img, _ = _cores((64, 64), fov="full")
    frame = np.zeros((400, 400))
    frame[20:84, 30:94] = img
    with pytest.warns(UserWarning, match="covers only .* % of the frame.*background"):
        FibreBundle.detect(frame)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FibreBundle.detect(frame, background=frame)  # with a background: no warning


@pytest.mark.parametrize("background", [np.zeros, lambda s: np.full(s, np.nan)])
def test_useless_background_is_refused(background):
    img, _ = _cores()
    with pytest.raises(ValueError, match="background (is all zero|contains NaN)"):
        detect_cores(img, background=background(img.shape))


# ---------------------------------------------------------------- real frames
@pytest.fixture(scope="module")
def real_usaf(load_frame):
    raw = load_frame("usaf1.tif").astype(np.float64)
    return raw, FibreBundle.detect(raw)


def test_real_outermost_row_is_kept(real_usaf):
    """Before: 277-1,130 clearly visible cores per frame lay outside the FOV."""
    raw, bundle = real_usaf
    maxima = visible_maxima(raw)
    idx = np.rint(maxima).astype(int)
    beyond = ndimage.distance_transform_edt(~bundle.fov_mask)[idx[:, 0], idx[:, 1]]
    outside = beyond > 0.5 * bundle.spacing  # clearly outside, not a core on the FOV's edge
    assert outside.sum() < 50, outside.sum()
    d, _ = cKDTree(bundle.centres).query(maxima)
    assert (d <= 0.5 * bundle.spacing).mean() > 0.97


@pytest.mark.slow
def test_real_grey_surround(load_frame):
    """Before: 23.5 % of the 'cores' were noise outside the bundle disc."""
    raw = load_frame("usaf1.tif").astype(np.float64)
    grey, disc = grey_surround(raw, visible_maxima(raw))
    bundle = FibreBundle.detect(grey)
    idx = np.rint(bundle.centres).astype(int)
    far = ndimage.distance_transform_edt(~disc)[idx[:, 0], idx[:, 1]] > 0.5 * bundle.spacing
    assert far.mean() < 0.05


def test_real_dark_content_does_not_carve_the_fov(load_frame):
    """Before: dark scene content at the edge carved bites and pinholes into the FOV."""
    raw = load_frame("tissue_paper.tif").astype(np.float64)
    bundle = FibreBundle.detect(raw)
    fov = bundle.fov_mask
    assert not (ndimage.binary_fill_holes(fov) & ~fov).any()
    disc = bundle_fov(load_frame("tissue_paper_back.tif"))
    # the FOV covers (nearly) all of the bundle's face
    assert (fov & disc).sum() > 0.85 * disc.sum()
