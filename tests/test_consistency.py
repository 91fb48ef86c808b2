"""Consistency projection: iterative back-projection onto the measured fibre values."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from napari_cycsr.consistency import cell_means, project_consistent, upsampled_bundle
from napari_cycsr.fibres import FibreBundle
from napari_cycsr.metrics import cycle_error, psnr
from napari_cycsr.simulate import hexagonal_lattice, simulate_pcle


@pytest.fixture(scope="module")
def sim():
    return simulate_pcle(data.camera()[100:228, 100:228] / 255.0, seed=0)


def test_cycle_error_drops_tenfold(sim):
    before = cycle_error(sim.lr, sim.bundle, sim.values)
    out = project_consistent(sim.lr, sim.bundle, sim.values, iterations=3)
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
        cycle_error(project_consistent(sim.lr, sim.bundle, sim.values, iterations=k), sim.bundle,
                    sim.values)
        for k in (0, 1, 2, 4)
    ]  # fmt: skip
    assert all(a > b for a, b in zip(errors, errors[1:]))


def test_consistent_image_is_a_fixed_point(sim):
    once = project_consistent(sim.lr, sim.bundle, sim.values, iterations=40)
    again = project_consistent(once, sim.bundle, sim.values, iterations=2)
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
    out = project_consistent(up, sim.bundle, sim.values, iterations=3)
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
    bad = sim.lr.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        project_consistent(bad, b, v)
    with pytest.raises(ValueError, match="shape"):
        project_consistent(np.zeros(5), b, v)
    with pytest.raises(TypeError, match="dtype"):
        project_consistent(sim.lr.astype(complex), b, v)
