"""Tests of napari_cycsr.simulate: fibre lattices and synthetic pCLE frames."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree
from skimage import data

from napari_cycsr.fibres import FibreBundle
from napari_cycsr.simulate import (
    DEFAULT_SPACING,
    PCLESimulation,
    hexagonal_lattice,
    simulate_pcle,
)


# ---------------------------------------------------------------- lattice
def test_default_spacing_gives_one_fibre_per_six_pixels():
    assert DEFAULT_SPACING == pytest.approx(2.632, abs=1e-3)
    counts = [
        len(hexagonal_lattice((64, 64), DEFAULT_SPACING, fov="full", seed=s)) for s in range(5)
    ]
    assert np.mean(counts) == pytest.approx(682, rel=0.02)


def test_perfect_lattice_geometry():
    c = hexagonal_lattice((50, 60), 4.0, jitter=0.0, fov="full", seed=3)
    d, _ = cKDTree(c).query(c, k=7)
    np.testing.assert_allclose(d[:, 1], 4.0, atol=1e-9)
    inner = (c[:, 0] > 5) & (c[:, 0] < 44) & (c[:, 1] > 5) & (c[:, 1] < 54)
    np.testing.assert_allclose(d[inner, 1:], 4.0, atol=1e-9)  # six neighbours each
    assert c.shape[1] == 2 and c.dtype == np.float64
    assert (c >= -0.5).all() and (c[:, 0] <= 49.5).all() and (c[:, 1] <= 59.5).all()


def test_circle_fov_and_jitter():
    circle = hexagonal_lattice((80, 80), 3.0, jitter=0.1, fov="circle", seed=0)
    full = hexagonal_lattice((80, 80), 3.0, jitter=0.1, fov="full", seed=0)
    r = np.hypot(circle[:, 0] - 39.5, circle[:, 1] - 39.5)
    assert r.max() <= 40.0
    assert len(circle) / len(full) == pytest.approx(np.pi / 4, rel=0.05)
    perfect = hexagonal_lattice((80, 80), 3.0, jitter=0.0, fov="full", seed=0)
    jittered = hexagonal_lattice((80, 80), 3.0, jitter=0.1, fov="full", seed=0)
    d, _ = cKDTree(perfect).query(jittered)
    # Gaussian displacement of 0.1 * spacing per axis: mean radial 0.1 * 3 * sqrt(pi / 2)
    assert d.mean() == pytest.approx(0.3 * np.sqrt(np.pi / 2), rel=0.15)


def test_lattice_deterministic_per_seed():
    a = hexagonal_lattice((40, 40), 3.0, seed=11)
    np.testing.assert_array_equal(a, hexagonal_lattice((40, 40), 3.0, seed=11))
    b = hexagonal_lattice((40, 40), 3.0, seed=12)
    assert a.shape != b.shape or not np.allclose(a, b)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"shape": (0, 10), "spacing": 3.0}, "shape"),
        ({"shape": (10, 10, 3), "spacing": 3.0}, "shape"),
        ({"shape": (10, 10), "spacing": 0.0}, "spacing"),
        ({"shape": (10, 10), "spacing": np.nan}, "spacing"),
        ({"shape": (10, 10), "spacing": 3.0, "jitter": -0.1}, "jitter"),
        ({"shape": (10, 10), "spacing": 3.0, "fov": "square"}, "fov"),
    ],
)
def test_lattice_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        hexagonal_lattice(**kwargs)


# ---------------------------------------------------------------- simulate_pcle
def test_simulation_contents(small_sim):
    sim = small_sim
    assert isinstance(sim, PCLESimulation)
    assert sim.hr.shape == sim.lr.shape == (64, 64)
    assert sim.hr.dtype == sim.lr.dtype == np.float32
    assert 0.0 <= sim.hr.min() and sim.hr.max() <= 1.0
    assert isinstance(sim.bundle, FibreBundle)
    n = sim.bundle.n_fibres
    assert sim.values.shape == sim.clean_values.shape == (n,)
    assert sim.values.dtype == sim.clean_values.dtype == np.float32
    # circle FOV: about pi/4 of 682 fibres
    assert n == pytest.approx(682 * np.pi / 4, rel=0.06)
    means = sim.bundle.vectorize(sim.hr)
    has_pixels = np.isfinite(means)
    assert has_pixels.mean() > 0.95
    np.testing.assert_allclose(sim.clean_values[has_pixels], means[has_pixels], rtol=1e-6)
    # a fibre whose cell holds no FOV pixel (at the rim) measures the value at its centre
    bilinear = sim.bundle.sample(sim.hr, method="bilinear")
    np.testing.assert_allclose(sim.clean_values[~has_pixels], bilinear[~has_pixels], rtol=1e-6)
    assert np.isfinite(sim.values).all() and np.isfinite(sim.lr).all()
    np.testing.assert_array_equal(sim.lr, sim.bundle.reconstruct(sim.values))
    noise = sim.values - sim.clean_values
    assert noise.std() == pytest.approx(0.01, rel=0.2)
    np.testing.assert_array_equal(sim.mask, sim.bundle.fov_mask)


def test_uint8_normalised_and_input_untouched():
    hr = data.camera()[:48, :48]
    before = hr.copy()
    sim = simulate_pcle(hr, noise=0.0, seed=1)
    np.testing.assert_array_equal(hr, before)
    np.testing.assert_allclose(sim.hr, hr / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(sim.values, sim.clean_values)
    as_float = simulate_pcle(hr / 255.0, noise=0.0, seed=1)
    np.testing.assert_allclose(as_float.values, sim.values, rtol=1e-5)
    scaled = simulate_pcle(hr.astype(np.float64) * 3 + 7, noise=0.0, seed=1)  # min-max
    lo, hi = hr.min(), hr.max()
    np.testing.assert_allclose(scaled.hr, (hr - lo) / (hi - lo), atol=1e-6)
    assert simulate_pcle(np.zeros((32, 32), np.uint16), seed=0).hr.max() == 0


def test_simulation_deterministic_per_seed():
    hr = data.camera()[100:164, 100:164]
    a = simulate_pcle(hr, seed=5)
    b = simulate_pcle(hr, seed=5)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.lr, b.lr)
    np.testing.assert_array_equal(a.bundle.centres, b.bundle.centres)
    c = simulate_pcle(hr, seed=6)
    assert a.values.shape != c.values.shape or not np.array_equal(a.values, c.values)


def test_noise_models():
    hr = np.full((64, 64), 0.5)
    clean = simulate_pcle(hr, noise=0.0, seed=2)
    np.testing.assert_allclose(clean.values, 0.5, rtol=1e-6)
    gain = simulate_pcle(hr, noise=0.0, gain_sd=0.1, seed=2)
    assert np.std(gain.values / 0.5 - 1) == pytest.approx(0.1, rel=0.2)
    shot = simulate_pcle(hr, noise=0.0, poisson_peak=100.0, seed=2)
    # Poisson(50) / 100 has variance 50 / 100**2
    assert np.var(shot.values) == pytest.approx(50 / 100**2, rel=0.25)
    assert np.allclose(shot.values * 100, np.round(shot.values * 100), atol=1e-4)
    noisy = simulate_pcle(hr, noise=0.05, seed=2)
    assert np.std(noisy.values) == pytest.approx(0.05, rel=0.2)


def test_core_sigma_response():
    hr = np.zeros((64, 64))
    hr[:, 32:] = 1.0  # an edge
    cell = simulate_pcle(hr, noise=0.0, seed=3, fov="full")
    gauss = simulate_pcle(hr, noise=0.0, seed=3, fov="full", core_sigma=3.0)
    np.testing.assert_array_equal(cell.bundle.centres, gauss.bundle.centres)
    x = cell.bundle.centres[:, 1]
    far = np.abs(x - 31.5) > 10
    np.testing.assert_allclose(gauss.values[far], cell.values[far], atol=1e-3)
    near = np.abs(x - 31.5) < 1.5
    # a wide core response blurs the edge: values near it move towards 0.5
    assert np.abs(gauss.values[near] - 0.5).mean() < np.abs(cell.values[near] - 0.5).mean()


def test_custom_spacing():
    sim = simulate_pcle(np.zeros((64, 64)), spacing=5.0, jitter=0.0, fov="full", seed=0)
    assert sim.bundle.spacing == pytest.approx(5.0)


@pytest.mark.parametrize(
    ("hr", "kwargs", "exc", "match"),
    [
        (np.indices((32, 32, 3)).sum(0), {}, ValueError, "RGB"),
        (np.zeros((2, 32, 32)), {}, ValueError, "2-D"),
        (np.zeros(32), {}, ValueError, "2-D"),
        (np.full((32, 32), np.nan), {}, ValueError, "NaN"),
        (np.full((32, 32), "a"), {}, TypeError, "numeric"),
        (np.zeros((32, 32)), {"noise": -1.0}, ValueError, "noise"),
        (np.zeros((32, 32)), {"gain_sd": -0.1}, ValueError, "gain_sd"),
        (np.zeros((32, 32)), {"core_sigma": 0.0}, ValueError, "core_sigma"),
        (np.zeros((32, 32)), {"poisson_peak": -5.0}, ValueError, "poisson_peak"),
        (np.zeros((3, 3)), {"spacing": 10.0}, ValueError, "too small"),
    ],
)
def test_bad_inputs(hr, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        simulate_pcle(hr, **kwargs)
