"""Consistency projection: iterative back-projection onto the measured fibre values."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from napari_cycsr.consistency import (
    cell_means,
    estimate_noise,
    project_consistent,
    upsampled_bundle,
)
from napari_cycsr.fibres import FibreBundle
from napari_cycsr.metrics import cycle_error, psnr
from napari_cycsr.simulate import hexagonal_lattice, simulate_pcle


@pytest.fixture(scope="module")
def sim():
    return simulate_pcle(data.camera()[100:228, 100:228] / 255.0, seed=0)


def test_cycle_error_drops_tenfold(sim):
    before = cycle_error(sim.lr, sim.bundle, sim.values)
    out = project_consistent(sim.lr, sim.bundle, sim.values, iterations=3, noise=None)
    after = cycle_error(out, sim.bundle, sim.values)
    assert before > 1e-5
    assert after < before / 10
    assert out.dtype == np.float32 and out.shape == sim.lr.shape


def test_psnr_improves_over_tli(sim):
    mask = sim.bundle.fov_mask
    out = project_consistent(sim.lr, sim.bundle, sim.values, iterations=2)
    gain = psnr(out, sim.hr, mask=mask) - psnr(sim.lr, sim.hr, mask=mask)
    assert gain > 0.5


def test_more_iterations_more_consistent(sim):
    errors = [
        cycle_error(project_consistent(sim.lr, sim.bundle, sim.values, iterations=k, noise=None),
                    sim.bundle, sim.values)
        for k in (0, 1, 2, 4)
    ]  # fmt: skip
    assert all(a > b for a, b in zip(errors, errors[1:]))


def test_consistent_image_is_a_fixed_point(sim):
    once = project_consistent(sim.lr, sim.bundle, sim.values, iterations=40, noise=None)
    again = project_consistent(once, sim.bundle, sim.values, iterations=2, noise=None)
    assert np.abs(again - once).max() < 1e-5
    assert cycle_error(once, sim.bundle, sim.values) < 1e-12


def test_mask_zeroes_outside_fov(sim):
    out = project_consistent(sim.lr + 1.0, sim.bundle, sim.values, iterations=1)
    assert np.all(out[~sim.bundle.fov_mask] == 0)
    kept = project_consistent(sim.lr + 1.0, sim.bundle, sim.values, iterations=0, mask=False)
    np.testing.assert_allclose(kept, sim.lr + 1.0, atol=1e-6)


def test_stack_matches_frames(sim):
    stack = np.stack([sim.lr, 0.5 * sim.lr, np.flipud(sim.lr)]).reshape(3, 1, *sim.lr.shape)
    values = np.stack([sim.values, 0.5 * sim.values, sim.values[::-1]]).reshape(3, 1, -1)
    out = project_consistent(stack, sim.bundle, values)
    assert out.shape == stack.shape
    for i in range(3):
        single = project_consistent(stack[i, 0], sim.bundle, values[i, 0])
        np.testing.assert_allclose(out[i, 0], single, atol=1e-6)


def test_input_not_modified(sim):
    image = sim.lr.copy()
    values = sim.values.copy()
    project_consistent(image, sim.bundle, values, iterations=2)
    np.testing.assert_array_equal(image, sim.lr)
    np.testing.assert_array_equal(values, sim.values)


def test_integer_image_accepted(sim):
    img = np.round(sim.lr * 255).astype(np.uint8)
    out = project_consistent(img, sim.bundle, sim.values * 255, iterations=2)
    assert out.dtype == np.float32
    assert cycle_error(out, sim.bundle, sim.values * 255) < cycle_error(
        img.astype(np.float32), sim.bundle, sim.values * 255
    )


def test_nan_values_are_skipped(sim):
    values = sim.values.astype(np.float64)
    values[:10] = np.nan
    out = project_consistent(sim.lr, sim.bundle, values, iterations=2)
    assert np.isfinite(out).all()


def test_scale_two_output(sim):
    from skimage.transform import resize

    h, w = sim.lr.shape
    up = resize(sim.lr, (2 * h, 2 * w), order=1).astype(np.float32)
    before = np.nanmean((cell_means(up, sim.bundle) - sim.values) ** 2)
    out = project_consistent(up, sim.bundle, sim.values, iterations=3, noise=None)
    after = np.nanmean((cell_means(out, sim.bundle) - sim.values) ** 2)
    assert out.shape == (2 * h, 2 * w)
    assert after < before / 10
    fov = np.repeat(np.repeat(sim.bundle.fov_mask, 2, axis=0), 2, axis=1)
    assert np.all(out[~fov] == 0)


def test_cell_means_same_grid_is_vectorize(sim):
    np.testing.assert_allclose(
        cell_means(sim.lr, sim.bundle), sim.bundle.vectorize(sim.lr), atol=1e-6
    )
    block = np.repeat(np.repeat(sim.lr, 4, axis=0), 4, axis=1)  # a constant per block
    np.testing.assert_allclose(
        cell_means(block, sim.bundle), sim.bundle.vectorize(sim.lr), atol=1e-6
    )


def test_upsampled_bundle_centre_convention():
    bundle = FibreBundle(hexagonal_lattice((32, 32), 4.0, seed=0), (32, 32))
    fine = upsampled_bundle(bundle, 2)
    assert fine.shape == (64, 64)
    np.testing.assert_allclose(fine.centres, bundle.centres * 2 + 0.5)
    assert upsampled_bundle(bundle, 2) is fine  # cached
    assert upsampled_bundle(bundle, 1) is bundle
    with pytest.raises(ValueError, match="scale"):
        upsampled_bundle(bundle, 0)


def test_errors(sim):
    b, v = sim.bundle, sim.values
    with pytest.raises(TypeError, match="values is required"):
        project_consistent(sim.lr, b, None)
    with pytest.raises(TypeError, match="FibreBundle"):
        project_consistent(sim.lr, "bundle", v)
    with pytest.raises(ValueError, match="do not fit"):
        project_consistent(sim.lr[:-1], b, v)
    with pytest.raises(ValueError, match="values must have shape"):
        project_consistent(sim.lr, b, v[:-1])
    with pytest.raises(ValueError, match="values must have shape"):
        project_consistent(np.stack([sim.lr, sim.lr]), b, v)
    with pytest.raises(ValueError, match="iterations"):
        project_consistent(sim.lr, b, v, iterations=-1)
    with pytest.raises(TypeError, match="iterations"):
        project_consistent(sim.lr, b, v, iterations=1.5)
    with pytest.raises(ValueError, match="'auto', None or a number"):
        project_consistent(sim.lr, b, v, noise="high")
    with pytest.raises(ValueError, match=">= 0"):
        project_consistent(sim.lr, b, v, noise=-0.1)
    with pytest.raises(ValueError, match="noise must be a number, one level per frame"):
        project_consistent(sim.lr, b, v, noise=np.ones(3))
    with pytest.raises(ValueError, match="tolerance"):
        project_consistent(sim.lr, b, v, tolerance=-1)
    with pytest.raises(ValueError, match="values must have shape"):
        estimate_noise(v[:-1], b)
    bad = sim.lr.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        project_consistent(bad, b, v)
    with pytest.raises(ValueError, match="shape"):
        project_consistent(np.zeros(5), b, v)
    with pytest.raises(TypeError, match="dtype"):
        project_consistent(sim.lr.astype(complex), b, v)


# ---------------------------------------------------------------- noise-aware projection


@pytest.mark.parametrize("sigma", [0.005, 0.02, 0.05])
def test_estimate_noise_on_flat_and_smooth_images(sigma):
    yy, xx = np.mgrid[0:160, 0:160] / 160.0
    smooth = 0.3 + 0.3 * np.sin(3 * xx) * np.cos(2 * yy)  # no detail at the fibre scale
    for hr in (np.full((160, 160), 0.4), smooth):
        sim = simulate_pcle(hr, noise=sigma, seed=3)
        est = estimate_noise(sim.values, sim.bundle)
        assert est == pytest.approx(sigma, rel=0.2)


def test_estimate_noise_zero_for_linear_values():
    sim = simulate_pcle(np.full((96, 96), 0.5), noise=0.0, seed=1)
    ramp = 0.01 * sim.bundle.centres[:, 0] + 0.02 * sim.bundle.centres[:, 1]
    assert estimate_noise(ramp, sim.bundle) < 1e-9  # neighbour residuals of a plane vanish


def test_estimate_noise_per_frame_of_a_stack():
    sim = simulate_pcle(np.full((96, 96), 0.4), noise=0.0, seed=2)
    rng = np.random.default_rng(0)
    stack = 0.4 + np.stack([0.01, 0.04])[:, None] * rng.standard_normal((2, sim.bundle.n_fibres))
    est = estimate_noise(stack, sim.bundle)
    assert est.shape == (2,)
    assert est[0] == pytest.approx(0.01, rel=0.25) and est[1] == pytest.approx(0.04, rel=0.25)


def test_noise_aware_projection_does_not_fit_noise():
    # a flat scene seen with noise: the TLI image is as good as it gets, and the exact fit
    # amplifies the noise; the noise-aware projection must leave the image almost unchanged
    hr = np.full((128, 128), 0.4, dtype=np.float32)
    sim = simulate_pcle(hr, noise=0.02, seed=4)
    m = sim.bundle.fov_mask
    tli = psnr(sim.lr, hr, mask=m, data_range=(0, 1))
    exact = project_consistent(sim.lr, sim.bundle, sim.values, noise=None)
    aware = project_consistent(sim.lr, sim.bundle, sim.values)
    assert psnr(exact, hr, mask=m, data_range=(0, 1)) < tli - 1.0
    assert psnr(aware, hr, mask=m, data_range=(0, 1)) > tli - 0.05


def test_noise_aware_projection_keeps_residuals_within_tolerance(sim):
    out = project_consistent(sim.lr, sim.bundle, sim.values, noise=0.01, iterations=20)
    residual = np.abs(sim.values - sim.bundle.vectorize(out))
    before = np.abs(sim.values - sim.bundle.vectorize(sim.lr))
    assert before.max() > 0.05  # the TLI image is far from its values at edges
    # within the band: 1.5 noise levels for the fibre-to-fibre part, plus the smooth part's
    # narrower band (about 0.16 of it)
    assert residual.max() < 1.2 * 1.5 * 0.01
    # a fibre already within the band is not moved: an image consistent up to the noise
    # is a fixed point
    again = project_consistent(out, sim.bundle, sim.values, noise=0.02, iterations=3)
    assert np.abs(again - out).max() < 1e-6


def test_noise_arrays_per_frame_and_per_fibre(sim):
    stack = np.stack([sim.lr, sim.lr])
    values = np.stack([sim.values, sim.values])
    per_frame = project_consistent(stack, sim.bundle, values, noise=np.array([0.0, 0.05]))
    exact = project_consistent(sim.lr, sim.bundle, sim.values, noise=0.0, iterations=5)
    loose = project_consistent(sim.lr, sim.bundle, sim.values, noise=0.05)
    np.testing.assert_allclose(per_frame[0], exact, atol=1e-6)
    np.testing.assert_allclose(per_frame[1], loose, atol=1e-6)
    fibre = np.full(sim.bundle.n_fibres, 0.05)
    np.testing.assert_allclose(
        project_consistent(sim.lr, sim.bundle, sim.values, noise=fibre), loose, atol=1e-6
    )


def test_noise_aware_projection_removes_a_common_offset():
    # an offset inside the per-fibre noise band is not noise: many fibres measure it
    hr = np.full((128, 128), 0.4, dtype=np.float32)
    sim = simulate_pcle(hr, noise=0.02, seed=5)
    m = sim.bundle.fov_mask
    shifted = sim.lr + 0.025 * m  # within 1.5 x 0.02 of every fibre's value
    out = project_consistent(shifted, sim.bundle, sim.values, noise=0.02)
    assert abs(float(np.mean(out[m] - hr[m]))) < 0.006
    assert (
        psnr(out, hr, mask=m, data_range=(0, 1)) > psnr(shifted, hr, mask=m, data_range=(0, 1)) + 5
    )
