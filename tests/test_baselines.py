"""Tests of napari_cycsr.baselines: PSF models, noise estimate, Wiener, sharpening, TLI."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage import data

from napari_cycsr.baselines import estimate_noise, fibre_psf, sharpen, tli, wiener
from napari_cycsr.metrics import gcf, psnr, ssim

SPACING = 3.0


@pytest.fixture(scope="module")
def camera() -> np.ndarray:
    return data.camera()[96:192, 160:256].astype(np.float64) / 255.0


@pytest.fixture(scope="module")
def disc_mask() -> np.ndarray:
    yy, xx = np.indices((96, 96))
    return (yy - 47.5) ** 2 + (xx - 47.5) ** 2 <= 42**2


def _degrade(image: np.ndarray, kind: str = "gaussian", noise: float = 0.01) -> np.ndarray:
    blurred = ndimage.convolve(image, fibre_psf(SPACING, kind=kind), mode="reflect")
    return blurred + np.random.default_rng(0).normal(0.0, noise, image.shape)


# --------------------------------------------------------------------------------------------
# PSF and noise
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["gaussian", "tli"])
def test_fibre_psf_is_normalised_centred_and_symmetric(kind):
    psf = fibre_psf(2.6, kind=kind)
    assert psf.ndim == 2 and psf.shape[0] == psf.shape[1] and psf.shape[0] % 2 == 1
    assert psf.sum() == pytest.approx(1.0)
    c = psf.shape[0] // 2
    assert psf[c, c] == psf.max()
    np.testing.assert_allclose(psf, psf.T, atol=1e-12)
    np.testing.assert_allclose(psf, psf[::-1, ::-1], atol=1e-12)


def test_gaussian_psf_fwhm_equals_spacing():
    # spacing 4 -> half maximum at 2 px from the centre
    psf = fibre_psf(4.0)
    c = psf.shape[0] // 2
    assert psf[c, c + 2] / psf[c, c] == pytest.approx(0.5, rel=1e-9)


def test_tli_psf_is_wider_than_a_pixel_and_zero_beyond_its_support():
    # disc radius 0.525 s plus cone radius 0.909 s: nothing beyond 1.44 s (+ 1 px binning)
    s = 4.0
    psf = fibre_psf(s, kind="tli")
    c = psf.shape[0] // 2
    yy, xx = np.indices(psf.shape) - c
    assert np.all(psf[np.hypot(yy, xx) > 1.44 * s + 1.5] == 0)
    assert psf[c, c + 2] > 0.3 * psf[c, c]


def test_fibre_psf_bad_inputs():
    with pytest.raises(ValueError, match="kind"):
        fibre_psf(3.0, kind="airy")
    with pytest.raises(ValueError, match="positive"):
        fibre_psf(-1.0)
    with pytest.raises(TypeError, match="positive number"):
        fibre_psf("wide")


def test_estimate_noise_on_plane_plus_noise():
    rng = np.random.default_rng(1)
    yy, xx = np.indices((128, 128))
    plane = 0.002 * yy + 0.001 * xx  # the operator is blind to planes
    est = estimate_noise(plane + rng.normal(0, 0.05, plane.shape))
    assert est == pytest.approx(0.05, rel=0.1)
    assert estimate_noise(plane) == pytest.approx(0.0, abs=1e-12)
    mask = np.zeros(plane.shape, bool)
    mask[:64] = True
    noisy = plane + np.where(mask, rng.normal(0, 0.02, plane.shape), 1.0 * (xx % 2))
    assert estimate_noise(noisy, mask=mask) == pytest.approx(0.02, rel=0.15)


# --------------------------------------------------------------------------------------------
# Wiener
# --------------------------------------------------------------------------------------------
def test_wiener_improves_psnr_of_matched_blur(camera):
    degraded = _degrade(camera)
    before = psnr(degraded, camera, data_range=1.0)
    restored = wiener(degraded, SPACING)
    assert restored.dtype == np.float32 and restored.shape == camera.shape
    after = psnr(restored, camera, data_range=1.0)
    assert after > before + 1.0
    assert ssim(restored, camera, data_range=1.0) > ssim(degraded, camera, data_range=1.0)


def test_wiener_tli_psf_and_explicit_kernel(camera):
    degraded = _degrade(camera, kind="tli")
    before = psnr(degraded, camera, data_range=1.0)
    assert psnr(wiener(degraded, SPACING, psf="tli"), camera, data_range=1.0) > before + 0.5
    kernel = fibre_psf(SPACING, kind="tli") * 7.0  # any scale: normalised
    np.testing.assert_allclose(
        wiener(degraded, SPACING, psf=kernel, balance=0.01),
        wiener(degraded, SPACING, psf="tli", balance=0.01),
        atol=1e-6,
    )


def test_wiener_balance_controls_smoothing(camera):
    degraded = _degrade(camera)
    sharp = wiener(degraded, SPACING, balance=1e-4)
    smooth = wiener(degraded, SPACING, balance=1.0)
    assert gcf(sharp) > gcf(smooth)


def test_wiener_unsupervised_is_seeded_and_improves(camera):
    small = camera[:48, :48]
    degraded = _degrade(small)
    a = wiener(degraded, SPACING, balance="unsupervised", seed=3)
    b = wiener(degraded, SPACING, balance="unsupervised", seed=3)
    np.testing.assert_array_equal(a, b)
    assert psnr(a, small, data_range=1.0) > psnr(degraded, small, data_range=1.0)


def test_wiener_respects_the_mask(camera, disc_mask):
    degraded = _degrade(camera)
    original = degraded.copy()
    out = wiener(degraded, SPACING, mask=disc_mask)
    np.testing.assert_array_equal(degraded, original)  # input untouched
    assert np.all(out[~disc_mask] == 0)
    # pixels outside the FOV are replaced by the nearest inside value: they cannot matter
    changed = degraded.copy()
    changed[~disc_mask] = 5.0
    np.testing.assert_array_equal(wiener(changed, SPACING, mask=disc_mask), out)
    # and the FOV edge does not ring: inside, the masked result beats the zero-filled input
    zero_filled = np.where(disc_mask, degraded, 0.0)
    ringing = wiener(zero_filled, SPACING, balance=1e-3)
    clean = wiener(degraded, SPACING, mask=disc_mask, balance=1e-3)
    assert psnr(clean, camera, mask=disc_mask, data_range=1.0) > psnr(
        ringing, camera, mask=disc_mask, data_range=1.0
    )


def test_wiener_stack_is_per_frame(camera):
    frames = np.stack([_degrade(camera), _degrade(camera[::-1])])
    out = wiener(frames, SPACING, balance=0.01)
    assert out.shape == frames.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out[1], wiener(frames[1], SPACING, balance=0.01))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"image": np.indices((16, 16, 3)).sum(0)}, ValueError, "RGB"),
        ({"image": np.zeros(16)}, ValueError, "2-D"),
        ({"image": np.full((16, 16), np.nan)}, ValueError, "NaN"),
        ({"spacing": 0.0}, ValueError, "spacing"),
        ({"balance": "auto"}, ValueError, "unsupervised"),
        ({"balance": -1.0}, ValueError, "balance"),
        ({"mask": np.ones((8, 8), bool)}, ValueError, "shape"),
        ({"psf": np.ones(3)}, ValueError, "psf"),
        ({"psf": "airy"}, ValueError, "kind"),
    ],
)
def test_wiener_bad_inputs(kwargs, error, match):
    args = {"image": np.zeros((16, 16)), "spacing": SPACING, **kwargs}
    image, spacing = args.pop("image"), args.pop("spacing")
    with pytest.raises(error, match=match):
        wiener(image, spacing, **args)


# --------------------------------------------------------------------------------------------
# sharpening
# --------------------------------------------------------------------------------------------
def test_sharpen_raises_gcf(camera, disc_mask):
    blurred = ndimage.gaussian_filter(camera, 1.5)
    out = sharpen(blurred, radius=2.0)
    assert out.dtype == np.float32
    assert gcf(out) > gcf(blurred) + 0.3
    assert gcf(sharpen(blurred, radius=2.0, amount=2.0)) > gcf(out)
    masked = sharpen(blurred, radius=2.0, mask=disc_mask)
    assert gcf(masked, mask=disc_mask) > gcf(blurred, mask=disc_mask)
    assert np.all(masked[~disc_mask] == 0)


def test_sharpen_parameters(camera):
    np.testing.assert_array_equal(sharpen(camera, amount=0.0), camera.astype(np.float32))
    np.testing.assert_array_equal(sharpen(camera, spacing=3.0), sharpen(camera, radius=3.0))
    np.testing.assert_array_equal(sharpen(camera), sharpen(camera, radius=2.0))
    expected = camera + 0.5 * (camera - ndimage.gaussian_filter(camera, 1.0, mode="reflect"))
    np.testing.assert_allclose(sharpen(camera, radius=1.0, amount=0.5), expected, atol=1e-6)
    stack = np.stack([camera, camera.T])
    np.testing.assert_array_equal(sharpen(stack)[1], sharpen(camera.T))


def test_sharpen_does_not_modify_input_and_accepts_integers(camera):
    image = (camera * 255).astype(np.uint8)
    copy = image.copy()
    out = sharpen(image, radius=1.0)
    np.testing.assert_array_equal(image, copy)
    assert out.dtype == np.float32
    assert out.max() > 255 or out.min() < 0  # not clipped to the input's dtype


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"radius": 0.0}, ValueError, "radius"),
        ({"spacing": -2.0}, ValueError, "spacing"),
        ({"amount": math.nan}, ValueError, "amount"),
        ({"amount": "lots"}, TypeError, "amount"),
        ({"mask": np.zeros((16, 16), bool)}, ValueError, "no pixel"),
    ],
)
def test_sharpen_bad_inputs(kwargs, error, match):
    with pytest.raises(error, match=match):
        sharpen(np.zeros((16, 16)), **kwargs)
    with pytest.raises(ValueError, match="RGB"):
        sharpen(np.indices((16, 16, 4)).sum(0))


# --------------------------------------------------------------------------------------------
# TLI, and the baselines on a simulated fibre bundle
# --------------------------------------------------------------------------------------------
def test_tli_requires_reconstruct():
    with pytest.raises(TypeError, match="reconstruct"):
        tli(np.zeros(3), object())


def test_baselines_on_simulated_bundle():
    simulate = pytest.importorskip("napari_cycsr.simulate")
    sim = simulate.simulate_pcle(data.camera()[64:192, 64:192], seed=1)
    lr = tli(sim.values, sim.bundle)
    assert lr.dtype == np.float32
    np.testing.assert_allclose(lr, sim.lr, atol=1e-6)
    m = sim.mask
    restored = wiener(lr, sim.bundle.spacing, mask=m)
    assert np.all(restored[~m] == 0)
    # Wiener with the estimated balance does not lose PSNR against the TLI input here
    assert psnr(restored, sim.hr, mask=m, data_range=1.0) > psnr(lr, sim.hr, mask=m, data_range=1.0)
    sharp = sharpen(lr, spacing=sim.bundle.spacing, mask=m)
    assert gcf(sharp, mask=m) > gcf(lr, mask=m)


def test_backproject_sharpens_tli_towards_the_truth():
    from skimage import data

    from napari_cycsr.baselines import backproject
    from napari_cycsr.consistency import project_consistent
    from napari_cycsr.metrics import cycle_error, psnr
    from napari_cycsr.simulate import simulate_pcle

    sim = simulate_pcle(data.camera()[100:196, 100:196] / 255.0, seed=0)
    m = sim.bundle.fov_mask
    out = backproject(sim.lr, sim.bundle)
    assert out.dtype == np.float32 and out.shape == sim.lr.shape
    assert psnr(out, sim.hr, mask=m) > psnr(sim.lr, sim.hr, mask=m) + 0.3
    assert cycle_error(out, sim.bundle, sim.values) < cycle_error(sim.lr, sim.bundle, sim.values)
    # values default to the TLI image sampled at the centres, i.e. the measured values
    np.testing.assert_allclose(out, project_consistent(sim.lr, sim.bundle, sim.values), atol=1e-4)
    stack = backproject(np.stack([sim.lr, sim.lr]), sim.bundle, iterations=1)
    np.testing.assert_allclose(stack[1], backproject(sim.lr, sim.bundle, iterations=1), atol=1e-6)
    with pytest.raises(TypeError, match="FibreBundle"):
        backproject(sim.lr, None)
