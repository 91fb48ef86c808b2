"""Tests of napari_cycsr.metrics: GCF on hand-computed images, SSIM/PSNR, Tot_cs, evaluate."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest
from scipy import ndimage
from skimage import data
from skimage.metrics import structural_similarity

from napari_cycsr.metrics import (
    COLUMNS,
    band_correlation,
    cycle_error,
    delta_gcf,
    evaluate,
    format_table,
    gcf,
    gcf_contrasts,
    gcf_weights,
    gradient_ratio,
    hallucination,
    psnr,
    radial_power_spectrum,
    rows_to_csv,
    spectrum_distance,
    ssim,
    tot_cs,
)

# Weights of Matkovic et al.: w_i = (-0.406385 i/9 + 0.334573) i/9 + 0.0877526
#   w_1 = (-0.0451539 + 0.334573) / 9 + 0.0877526 = 0.0321577 + 0.0877526 = 0.1199103
#   w_2 = (-0.0903078 + 0.334573) * 2/9 + 0.0877526 = 0.0542812 + 0.0877526 = 0.1420338
W1 = 0.11991027901234569
W2 = 0.14203376049382715


def _checkerboard(n: int, block: int = 1) -> np.ndarray:
    yy, xx = np.indices((n, n)) // block
    return ((yy + xx) % 2).astype(np.float64)


@pytest.fixture(scope="module")
def camera() -> np.ndarray:
    return data.camera()[96:224, 160:288].astype(np.float64) / 255.0


@pytest.fixture(scope="module")
def disc_mask() -> np.ndarray:
    yy, xx = np.indices((128, 128))
    return (yy - 63.5) ** 2 + (xx - 63.5) ** 2 <= 55**2


# --------------------------------------------------------------------------------------------
# GCF
# --------------------------------------------------------------------------------------------
def test_gcf_weights_match_the_paper_formula():
    w = gcf_weights()
    assert w.shape == (9,)
    assert w[0] == pytest.approx(0.1199103, abs=1e-7)
    assert w[1] == pytest.approx(0.1420338, abs=1e-7)
    # w_9 = (-0.406385 + 0.334573) + 0.0877526 = 0.0159406
    assert w[8] == pytest.approx(0.0159406, abs=1e-7)


@pytest.mark.parametrize(
    "image",
    [np.full((16, 16), 0.3), np.zeros((5, 7)), np.full((9, 9), 200, dtype=np.uint8)],
)
def test_gcf_of_flat_image_is_zero(image):
    assert gcf(image) == 0.0
    assert gcf(image, mask=np.ones(image.shape, bool)) == 0.0


def test_gcf_pixel_checkerboard_by_hand():
    # 16x16 checkerboard of intensities 0/1: L = 100 sqrt(k^2.2) is 0 or 100.
    # Level 1: every pixel differs from each of its (2, 3 or 4) neighbours by 100 -> C_1 = 100.
    # Level 2: each 2x2 block holds two 1s and two 0s -> linear mean 0.5 everywhere -> flat,
    # C_2 = 0, and so are all coarser levels. GCF = w_1 * 100 = 11.991028.
    board = _checkerboard(16)
    np.testing.assert_allclose(gcf_contrasts(board), [100, 0, 0, 0, 0, 0, 0, 0, 0], atol=1e-12)
    assert gcf(board) == pytest.approx(100 * W1, rel=1e-12)
    assert gcf(board) == pytest.approx(11.991028, abs=1e-6)
    # the same picture as uint8 0/255 is divided by 255
    assert gcf((board * 255).astype(np.uint8)) == pytest.approx(100 * W1, rel=1e-12)


def test_gcf_two_pixel_block_checkerboard_by_hand():
    # 16x16 image of 2x2 blocks alternating 0/1 (L = 0 / 100).
    # Level 1, local contrast per pixel:
    #   interior (14x14 = 196 px): 2 neighbours in its own block (diff 0) and 2 in the next
    #     blocks (diff 100) -> 50
    #   border, not corner (4 x 14 = 56 px): 3 neighbours, one in another block -> 100/3
    #     (e.g. (0, 1): left (0, 0) same block, down (1, 1) same block, right (0, 2) other)
    #   corners (4 px): both neighbours in its own block -> 0
    #   C_1 = (196 * 50 + 56 * 100/3) / 256 = 45.5729167
    # Level 2: the blocks become a 8x8 pixel checkerboard -> C_2 = 100; level 3 flat -> 0.
    # GCF = w_1 C_1 + w_2 C_2 = 0.1199103 * 45.5729167 + 0.1420338 * 100 = 19.668037
    board = _checkerboard(16, block=2)
    c = gcf_contrasts(board)
    assert c[0] == pytest.approx((196 * 50 + 56 * 100 / 3) / 256, rel=1e-12)
    assert c[1] == pytest.approx(100.0, rel=1e-12)
    np.testing.assert_allclose(c[2:], 0.0, atol=1e-12)
    assert gcf(board) == pytest.approx(19.668037, abs=1e-6)


def test_gcf_uses_gamma_and_perceptual_luminance():
    # 1x2 image with intensities 0 and 0.5: l = 0.5^2.2, L = 100 sqrt(l) = 100 * 0.5^1.1
    # = 46.6516. Each pixel has one neighbour -> C_1 = 46.6516; level 2 is 1x1 -> 0.
    image = np.array([[0.0, 0.5]])
    c = gcf_contrasts(image)
    assert c[0] == pytest.approx(100 * 0.5**1.1, rel=1e-12)
    np.testing.assert_allclose(c[1:], 0.0)
    assert gcf(image) == pytest.approx(W1 * 46.65164957684037, rel=1e-12)


def test_gcf_superpixels_average_linear_luminance():
    # Left 2x2 block: checkerboard 0/1 -> linear mean 0.5 -> L = 100 sqrt(0.5) = 70.7107.
    # Right 2x2 block: intensity 0.5 -> l = 0.5^2.2 -> L = 100 * 0.5^1.1 = 46.6516.
    # Level 2 is the 1x2 image (70.7107, 46.6516): C_2 = 24.0590. (Averaging intensities
    # instead would give 0.5 and 0.5, i.e. C_2 = 0.)
    image = np.array([[1.0, 0.0, 0.5, 0.5], [0.0, 1.0, 0.5, 0.5]])
    c = gcf_contrasts(image)
    assert c[1] == pytest.approx(100 * math.sqrt(0.5) - 100 * 0.5**1.1, rel=1e-12)
    np.testing.assert_allclose(c[2:], 0.0)


def test_gcf_odd_size_partial_superpixels():
    # 3x3 zeros with a 1 at (2, 2) (L = 100).
    # Level 1: (2,2) has 2 neighbours, both 0 -> 100; (1,2) and (2,1) have 3 neighbours, one
    #   of them 100 -> 100/3 each; all others 0. C_1 = (100 + 200/3) / 9 = 18.518519.
    # Level 2 (odd size: last row/column form partial blocks) is 2x2: the block of (2,2)
    #   alone -> L = 100, the others 0. Local contrasts: 100, 50, 50, 0 -> C_2 = 50.
    # Level 3 is 1x1 -> 0.
    image = np.zeros((3, 3))
    image[2, 2] = 1.0
    c = gcf_contrasts(image)
    assert c[0] == pytest.approx((100 + 200 / 3) / 9, rel=1e-12)
    assert c[1] == pytest.approx(50.0, rel=1e-12)
    np.testing.assert_allclose(c[2:], 0.0)


def test_gcf_sharper_image_has_higher_gcf(camera):
    blurred = ndimage.gaussian_filter(camera, 2.0)
    assert gcf(camera) > gcf(blurred) + 0.5
    assert gcf(blurred) > gcf(ndimage.gaussian_filter(camera, 4.0))


def test_gcf_single_pixel_is_zero():
    assert gcf(np.array([[0.7]])) == 0.0


def test_gcf_mask_ignores_outside_pixels(camera, disc_mask):
    ref = gcf(camera, mask=disc_mask)
    changed = camera.copy()
    changed[~disc_mask] = np.random.default_rng(0).random(np.count_nonzero(~disc_mask))
    assert gcf(changed, mask=disc_mask) == ref
    changed[~disc_mask] = np.nan
    assert gcf(changed, mask=disc_mask) == ref
    assert gcf(camera, mask=np.ones_like(disc_mask)) == gcf(camera)
    assert ref != gcf(camera)


def test_gcf_mask_border_acts_like_image_border(camera):
    # A mask covering the top-left 64x32 region (aligned with every superpixel grid) gives the
    # same contrasts as the cropped image: the mask edge is treated as the image border.
    mask = np.zeros(camera.shape, bool)
    mask[:64, :32] = True
    np.testing.assert_allclose(
        gcf_contrasts(camera, mask=mask), gcf_contrasts(camera[:64, :32]), rtol=1e-12
    )


def test_gcf_data_range_and_clipping(camera):
    assert gcf(camera * 255.0, data_range=255.0) == pytest.approx(gcf(camera), rel=1e-12)
    assert gcf(camera * 2 + 3, data_range=(3.0, 5.0)) == pytest.approx(gcf(camera), rel=1e-12)
    # float values beyond [0, 1] are clipped, like a display
    assert gcf(np.clip(camera * 3 - 1, 0, 1)) == pytest.approx(gcf(camera * 3 - 1), rel=1e-12)


def test_delta_gcf(camera):
    blurred = ndimage.gaussian_filter(camera, 1.5)
    assert delta_gcf(camera, blurred) == pytest.approx(gcf(camera) - gcf(blurred), rel=1e-12)
    assert delta_gcf(camera, blurred) > 0
    with pytest.raises(ValueError, match="same shape"):
        delta_gcf(camera, camera[:10])


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (np.indices((8, 8, 3)).sum(0), ValueError, "RGB"),
        (np.zeros(8), ValueError, "2-D"),
        (np.zeros((2, 8, 8)), ValueError, "2-D"),
        (np.array([[0.1, np.nan], [0.2, 0.3]]), ValueError, "NaN"),
        (np.array([["a", "b"]]), TypeError, "numeric"),
        (np.zeros((4, 4), complex), TypeError, "real"),
    ],
)
def test_gcf_rejects_bad_images(bad, error, match):
    with pytest.raises(error, match=match):
        gcf(bad)


def test_gcf_rejects_bad_masks_and_ranges():
    image = np.zeros((4, 4))
    with pytest.raises(ValueError, match="shape"):
        gcf(image, mask=np.ones((3, 4), bool))
    with pytest.raises(ValueError, match="no pixel"):
        gcf(image, mask=np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="high > low"):
        gcf(image, data_range=(1.0, 1.0))
    with pytest.raises(ValueError, match="pair"):
        gcf(image, data_range=(0.0, 1.0, 2.0))


# --------------------------------------------------------------------------------------------
# SSIM and PSNR
# --------------------------------------------------------------------------------------------
def test_identical_images(camera, disc_mask):
    assert ssim(camera, camera) == pytest.approx(1.0)
    assert ssim(camera, camera, mask=disc_mask) == pytest.approx(1.0)
    assert psnr(camera, camera) == math.inf
    assert psnr(camera, camera, mask=disc_mask) == math.inf


def test_ssim_matches_scikit_image_without_mask(camera):
    noisy = camera + np.random.default_rng(1).normal(0, 0.05, camera.shape)
    expected = structural_similarity(
        noisy,
        camera,
        data_range=float(camera.max() - camera.min()),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert ssim(noisy, camera) == pytest.approx(expected, rel=1e-12)
    assert 0.0 < ssim(noisy, camera) < 0.95


def test_psnr_by_hand():
    # MSE = 4 ones in 16 pixels = 0.25; PSNR = 10 log10(1 / 0.25) = 6.0206 dB
    assert psnr(np.zeros((4, 4)), np.eye(4), data_range=1.0) == pytest.approx(6.0205999)
    # default data range is the reference's max - min: here 2 -> 10 log10(4 / 0.25 * 1)
    ref = 2 * np.eye(4)
    img = np.eye(4) * 2
    img[0, 1] = 1.0  # one pixel off by 1 -> MSE = 1/16
    assert psnr(img, ref) == pytest.approx(10 * math.log10(4 / (1 / 16)))
    mask = np.ones((4, 4), bool)
    mask[0, 1] = False
    assert psnr(img, ref, mask=mask) == math.inf


def test_masks_respected_by_ssim_and_psnr(camera, disc_mask):
    rng = np.random.default_rng(2)
    noisy = camera + rng.normal(0, 0.05, camera.shape)
    s0 = ssim(noisy, camera, mask=disc_mask)
    p0 = psnr(noisy, camera, mask=disc_mask)
    outside = ~disc_mask
    changed_img = noisy.copy()
    changed_img[outside] = rng.random(np.count_nonzero(outside)) * 10
    changed_ref = camera.copy()
    changed_ref[outside] = np.nan
    assert ssim(changed_img, changed_ref, mask=disc_mask) == pytest.approx(s0, rel=1e-12)
    assert psnr(changed_img, changed_ref, mask=disc_mask) == pytest.approx(p0, rel=1e-12)
    # restricting to the mask does change the score compared to the full frame
    assert psnr(noisy, camera) != pytest.approx(p0, rel=1e-6)


def test_ssim_psnr_bad_inputs(camera):
    with pytest.raises(ValueError, match="same shape"):
        ssim(camera, camera[:-1])
    with pytest.raises(ValueError, match="same shape"):
        psnr(camera, camera.T[:, :-1])
    nan = camera.copy()
    nan[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ssim(nan, camera)
    with pytest.raises(ValueError, match="NaN"):
        psnr(camera, nan)
    with pytest.raises(ValueError, match="constant"):
        psnr(camera, np.ones_like(camera))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(camera[:8, :8], camera[:8, :8])
    with pytest.raises(ValueError, match="RGB"):
        ssim(np.indices((16, 16, 3)).sum(0), np.indices((16, 16, 3)).sum(0))
    border_only = np.zeros(camera.shape, bool)
    border_only[:3] = True
    with pytest.raises(ValueError, match="border"):
        ssim(camera, camera, mask=border_only)


# --------------------------------------------------------------------------------------------
# Tot_cs
# --------------------------------------------------------------------------------------------
def test_tot_cs_minmax_by_hand():
    # SSIM 0.9, 0.8, 0.7 -> 1, 0.5, 0; dGCF 0, 1, 0.5 -> 0, 1, 0.5; mean -> 0.5, 0.75, 0.25
    np.testing.assert_allclose(tot_cs([0.9, 0.8, 0.7], [0.0, 1.0, 0.5]), [0.5, 0.75, 0.25])


def test_tot_cs_minmax_ties_nan_and_per_image_rows():
    # all SSIM equal -> 0.5 each; NaN stays NaN and is ignored by the min/max of the others
    out = tot_cs([0.8, 0.8, np.nan], [1.0, 0.0, 5.0])
    np.testing.assert_allclose(out[:2], [0.75, 0.25])
    assert math.isnan(out[2])
    # 2-D (images, methods): normalised per image (row)
    s = np.array([[0.9, 0.7], [0.5, 0.6]])
    d = np.array([[0.0, 1.0], [2.0, 1.0]])
    np.testing.assert_allclose(tot_cs(s, d), [[0.5, 0.5], [0.5, 0.5]])
    assert tot_cs(0.9, 0.1) == pytest.approx(0.5)


def test_tot_cs_fixed_is_independent_of_other_methods():
    # SSIM as is (clipped to [0, 1]); dGCF -> 1 / (1 + exp(-dgcf / 0.5))
    assert tot_cs(1.0, 0.0, method="fixed") == pytest.approx(0.75)
    expected = (0.8 + 1 / (1 + math.exp(-1.0 / 0.5))) / 2
    assert tot_cs([0.8], [1.0], method="fixed")[0] == pytest.approx(expected)
    together = tot_cs([0.8, 0.3], [1.0, -2.0], method="fixed")
    assert together[0] == pytest.approx(expected)
    assert tot_cs(-0.2, 0.0, method="fixed") == pytest.approx(0.25)
    assert tot_cs(0.5, 1.0, method="fixed", dgcf_scale=1.0) == pytest.approx(
        (0.5 + 1 / (1 + math.exp(-1.0))) / 2
    )


def test_tot_cs_minmax_reproduces_paper_table2_ranking():
    # Means of Table 2 of Ravi et al. (Proposed, Ravi-Szcz., Villena, Wiener, sharpening);
    # the paper's Tot_cs: 0.66 > 0.59 > 0.55 > 0.53 > 0.43 -> order 0, 1, 2, 4, 3.
    s = [0.87, 0.86, 0.87, 0.84, 0.61]
    d = [0.66, 0.41, 0.27, -0.01, 1.34]
    scores = tot_cs(s, d)
    assert list(np.argsort(-scores)) == [0, 1, 2, 4, 3]


def test_tot_cs_bad_inputs():
    with pytest.raises(ValueError, match="method"):
        tot_cs([0.1], [0.2], method="zscore")
    with pytest.raises(ValueError, match="broadcastable"):
        tot_cs([0.1, 0.2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="dgcf_scale"):
        tot_cs([0.1], [0.2], method="fixed", dgcf_scale=0.0)


# --------------------------------------------------------------------------------------------
# evaluate and tables
# --------------------------------------------------------------------------------------------
class BlockBundle:
    """Minimal stand-in for FibreBundle: 'fibres' are 4x4 blocks of a 16x16 image."""

    def vectorize(self, image):
        image = np.asarray(image, dtype=np.float64)
        return image.reshape(4, 4, 4, 4).mean(axis=(1, 3)).ravel()


def test_cycle_error_with_block_bundle():
    rng = np.random.default_rng(3)
    image = rng.random((16, 16))
    values = BlockBundle().vectorize(image)
    assert cycle_error(image, BlockBundle(), values) == 0.0
    shifted = values + 0.1
    shifted[0] = np.nan  # ignored
    assert cycle_error(image, BlockBundle(), shifted) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="one value per fibre"):
        cycle_error(image, BlockBundle(), values[:-1])
    with pytest.raises(TypeError, match="vectorize"):
        cycle_error(image, object(), values)


def test_evaluate_rows(camera, disc_mask):
    rng = np.random.default_rng(4)
    lr = ndimage.gaussian_filter(camera, 2.0)
    images = {
        "identity": camera.copy(),
        "noisy": camera + rng.normal(0, 0.05, camera.shape),
        "lr": lr,
    }
    rows = evaluate(images, reference=camera, lr=lr, mask=disc_mask)
    assert [r["method"] for r in rows] == ["identity", "noisy", "lr"]
    for row in rows:
        assert tuple(row) == COLUMNS
        assert math.isnan(row["cycle_error"])
    ident, noisy, low = rows
    assert ident["ssim"] == pytest.approx(1.0)
    assert ident["psnr"] == math.inf
    assert ident["dgcf_ref"] == pytest.approx(0.0, abs=1e-12)
    assert low["dgcf_lr"] == pytest.approx(0.0, abs=1e-12)
    assert ident["dgcf_lr"] > 0  # the reference is sharper than the blurred input
    assert noisy["dgcf_ref"] > 0  # noise adds contrast
    assert noisy["ssim"] < ident["ssim"] and low["ssim"] < ident["ssim"]
    assert ident["tot_cs"] == pytest.approx(
        tot_cs([r["ssim"] for r in rows], [r["dgcf_ref"] for r in rows])[0]
    )
    # the GCF uses the reference's range inside the mask
    lo, hi = camera[disc_mask].min(), camera[disc_mask].max()
    assert ident["gcf"] == pytest.approx(gcf(camera, mask=disc_mask, data_range=(lo, hi)))


def test_evaluate_without_reference_and_with_bundle():
    rng = np.random.default_rng(5)
    image = rng.random((16, 16))
    values = BlockBundle().vectorize(image)
    rows = evaluate(
        {"a": image, "b": image * 0.5}, bundle=BlockBundle(), values=values, tot_cs_method="fixed"
    )
    assert rows[0]["cycle_error"] == 0.0
    assert rows[1]["cycle_error"] > 0
    for row in rows:
        for key in ("ssim", "psnr", "dgcf_ref", "dgcf_lr", "tot_cs"):
            assert math.isnan(row[key])
        assert row["gcf"] > 0


def test_evaluate_bad_inputs(camera):
    with pytest.raises(TypeError, match="mapping"):
        evaluate([camera])
    with pytest.raises(TypeError, match="mapping"):
        evaluate({})
    with pytest.raises(ValueError, match="same shape"):
        evaluate({"a": camera, "b": camera[:-1]})
    with pytest.raises(ValueError, match="reference has shape"):
        evaluate({"a": camera}, reference=camera[:-1])
    with pytest.raises(ValueError, match="lr has shape"):
        evaluate({"a": camera}, lr=camera[:, :-1])
    with pytest.raises(ValueError, match="together"):
        evaluate({"a": camera}, bundle=BlockBundle())
    with pytest.raises(ValueError, match="tot_cs_method"):
        evaluate({"a": camera}, tot_cs_method="other")
    with pytest.raises(ValueError, match="RGB"):
        evaluate({"a": np.indices((16, 16, 3)).sum(0)})


def test_format_table_and_csv(camera):
    rows = evaluate({"id": camera, "blur": ndimage.gaussian_filter(camera, 1.0)}, reference=camera)
    table = format_table(rows)
    lines = table.strip().splitlines()
    assert len(lines) == 4
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    # columns that are NaN in every row (no lr, no bundle) are dropped
    assert header == ["method", "ssim", "psnr", "gcf", "dgcf_ref", "tot_cs"]
    assert "| id | 1.000 | inf |" in table
    full = format_table(rows, drop_empty=False, digits=2)
    assert "dgcf_lr" in full and "| - |" in full

    text = rows_to_csv(rows)
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert [p["method"] for p in parsed] == ["id", "blur"]
    assert list(parsed[0]) == list(COLUMNS)
    for row, back in zip(rows, parsed):
        for key in COLUMNS[1:]:
            value = float(back[key])
            if math.isnan(row[key]):
                assert math.isnan(value)
            else:
                assert value == row[key]  # full precision round trip
    with pytest.raises(ValueError, match="empty"):
        format_table([])
    with pytest.raises(ValueError, match="empty"):
        rows_to_csv([])


def test_cycle_error_with_a_simulated_fibre_bundle():
    simulate = pytest.importorskip("napari_cycsr.simulate")
    sim = simulate.simulate_pcle(data.camera()[:96, :96], seed=0, noise=0.0)
    # the clean fibre values are the cell means of the HR image: no cycle error
    assert cycle_error(sim.hr, sim.bundle, sim.clean_values) == pytest.approx(0.0, abs=1e-10)
    # the TLI image does not average back exactly to the fibre values
    err_lr = cycle_error(sim.lr, sim.bundle, sim.values)
    assert 0 < err_lr < 0.01
    rows = evaluate(
        {"tli": sim.lr},
        reference=sim.hr,
        lr=sim.lr,
        mask=sim.mask,
        bundle=sim.bundle,
        values=sim.values,
    )
    assert rows[0]["cycle_error"] == pytest.approx(err_lr)


def test_tot_cs_fixed_reproduces_paper_table1_ranking():
    # Means of Table 1 (T_pair, T_unpair, T_res, T_nat); the paper's Tot_cs 0.53, 0.64, 0.45,
    # 0.66 ranks T_nat > T_unpair > T_pair > T_res. Min-max over the table does not (it ranks
    # T_unpair first); the fixed normalisation does.
    s = [0.91, 0.91, 0.88, 0.87]
    d = [0.01, 0.38, -0.13, 0.66]
    assert list(np.argsort(-tot_cs(s, d, method="fixed"))) == [3, 1, 0, 2]
    assert list(np.argsort(-tot_cs(s, d))) != [3, 1, 0, 2]


# --- no-reference sharpness and the field of view of reconstructed images (issue 11) ---------


def test_sharpness_ranks_blur_and_ignores_the_fov_edge():
    from scipy import ndimage

    from napari_cycsr.metrics import evaluate, sharpness

    rng = np.random.default_rng(0)
    image = ndimage.gaussian_filter(rng.random((64, 64)), 1.0)
    blurred = ndimage.gaussian_filter(image, 2.0)
    assert sharpness(image, data_range=1.0) > 2 * sharpness(blurred, data_range=1.0)
    yy, xx = np.mgrid[:64, :64]
    disc = (yy - 32) ** 2 + (xx - 32) ** 2 < 25**2
    flat = np.where(disc, 0.5, 0.0)
    # the step at the FOV's edge is not detail: a flat disc has no sharpness inside its mask
    assert sharpness(flat, mask=disc, data_range=1.0) == 0
    assert sharpness(flat, data_range=1.0) > 0
    assert math.isnan(sharpness(np.zeros((8, 8))))
    rows = evaluate({"a": image, "b": blurred}, with_sharpness=True)
    assert list(rows[0])[-1] == "sharpness" and rows[0]["sharpness"] > rows[1]["sharpness"]
    assert "sharpness" not in evaluate({"a": image})[0]


def test_image_fov_of_a_tli_image(small_sim):
    from napari_cycsr.metrics import image_fov

    fov = image_fov(small_sim.lr)
    truth = small_sim.bundle.fov_mask
    assert fov is not None and fov.shape == truth.shape
    assert (fov & truth).sum() / (fov | truth).sum() > 0.9  # nearly the bundle's own FOV
    assert image_fov(small_sim.hr) is None  # no flat surround: no FOV found
    dark = small_sim.lr.copy()
    dark[20:30, 20:30] = 0  # dark detail inside does not carve the FOV
    assert image_fov(dark)[25, 25]


# --------------------------------------------------------------------------------------------
# spectra, hallucinated detail, directional streaks (hand-made cases)
# --------------------------------------------------------------------------------------------
def test_radial_spectrum_of_white_noise_and_of_a_sinusoid():
    rng = np.random.default_rng(0)
    f, p = radial_power_spectrum(rng.normal(0.0, 0.2, (128, 128)))
    assert f[0] == pytest.approx(1 / 128) and f[-1] == pytest.approx(0.5)
    assert np.median(p) == pytest.approx(0.04, rel=0.1)  # flat at the noise variance
    x = np.arange(128)
    wave = np.sin(2 * np.pi * 0.25 * x)[None, :] * np.ones((128, 1))
    f, p = radial_power_spectrum(wave)
    assert f[np.argmax(p)] == pytest.approx(0.25, abs=1 / 128)


def test_radial_spectrum_inside_a_mask():
    rng = np.random.default_rng(1)
    img = np.full((96, 96), 5.0)  # the outside is a huge constant: must not leak in
    yy, xx = np.mgrid[0:96, 0:96]
    disc = (yy - 47.5) ** 2 + (xx - 47.5) ** 2 < 40**2
    img[disc] = rng.normal(0.0, 0.1, disc.sum())
    _, p = radial_power_spectrum(img, mask=disc)
    assert np.median(p) == pytest.approx(0.01, rel=0.2)


def test_spectrum_distance_hand_cases():
    rng = np.random.default_rng(2)
    ref = rng.random((96, 96))
    assert spectrum_distance(ref, ref, spacing=3.0) == 0.0
    # half the amplitude: a quarter of the power at every frequency, -6.02 dB
    assert spectrum_distance(0.5 * ref, ref, spacing=3.0, signed=True) == pytest.approx(
        -6.0206, abs=1e-3
    )
    assert spectrum_distance(0.5 * ref, ref, spacing=3.0) == pytest.approx(6.0206, abs=1e-3)
    blurred = ndimage.gaussian_filter(ref, 1.5)
    noisy = ref + rng.normal(0, 0.3, ref.shape)
    assert spectrum_distance(blurred, ref, spacing=3.0, signed=True) < -5  # lost the detail
    assert spectrum_distance(noisy, ref, spacing=3.0, signed=True) > 1  # invented detail
    # a change below the band (a slow ramp) hardly moves the distance
    ramp = ref + np.linspace(0, 1, 96)[None, :]
    assert spectrum_distance(ramp, ref, spacing=3.0) < 0.5
    with pytest.raises(ValueError, match="spacing"):
        spectrum_distance(ref, ref, spacing=0)
    with pytest.raises(ValueError, match="same shape"):
        spectrum_distance(ref, ref[:-1], spacing=3)
    # max_frequency: only the band up to it. An image that lost everything above 0.3
    # cycles / px is far from the reference over the whole band, not below 0.3
    spectrum = np.fft.fft2(ref)
    fy, fx = np.meshgrid(np.fft.fftfreq(96), np.fft.fftfreq(96), indexing="ij")
    low = np.fft.ifft2(np.where(np.hypot(fy, fx) <= 0.3, spectrum, 0)).real
    assert spectrum_distance(low, ref, spacing=3.0, signed=True) < -10
    assert abs(spectrum_distance(low, ref, spacing=3.0, signed=True, max_frequency=0.25)) < 0.5
    assert np.isnan(spectrum_distance(low, ref, spacing=3.0, max_frequency=0.1))  # no ring
    with pytest.raises(ValueError, match="max_frequency"):
        spectrum_distance(ref, ref, spacing=3.0, max_frequency=-1)


def test_band_correlation_tells_the_reference_detail_from_invented_detail():
    rng = np.random.default_rng(4)
    ref = ndimage.gaussian_filter(rng.random((96, 96)), 0.7)
    base = ndimage.gaussian_filter(ref, 2.0)  # a blurred input, as TLI is
    assert band_correlation(ref, ref, spacing=3.0) == pytest.approx(1.0)
    assert band_correlation(-ref, ref, spacing=3.0) == pytest.approx(-1.0)
    # the amplitude does not count, nor does a change below the band
    ramp = np.linspace(0, 1, 96)[None, :]
    assert band_correlation(0.2 * ref + ramp, ref, spacing=3.0) > 0.99
    # adding half the reference's missing detail back: what is added is the reference's
    half = base + 0.5 * (ref - base)
    assert band_correlation(half, ref, spacing=3.0, base=base) == pytest.approx(1.0)
    # invented detail of the same power: unrelated (about 0); a mix is in between
    detail = ref - base
    noise = rng.standard_normal(ref.shape)
    noise = ndimage.gaussian_filter(noise, 0.7)
    noise *= detail.std() / noise.std()
    invented = band_correlation(base + noise, ref, spacing=3.0, base=base)
    mixed = band_correlation(base + 0.5 * detail + 0.5 * noise, ref, spacing=3.0, base=base)
    assert abs(invented) < 0.1 and 0.5 < mixed < 0.9
    # nothing added: no correlation to speak of; an empty band: the same
    assert np.isnan(band_correlation(base, ref, spacing=3.0, base=base))
    assert np.isnan(band_correlation(ref, ref, spacing=3.0, max_frequency=0.1))
    # inside a mask: only its pixels count
    mask = np.zeros(ref.shape, bool)
    mask[8:88, 8:60] = True
    outside = ref.copy()
    outside[~mask] = rng.random(int((~mask).sum()))
    assert band_correlation(outside, ref, spacing=3.0, mask=mask) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="base"):
        band_correlation(ref, ref, spacing=3.0, base=base[:-1])
    with pytest.raises(ValueError, match="spacing"):
        band_correlation(ref, ref, spacing=-1.0)


def test_hallucination_counts_detail_only_where_the_truth_is_flat():
    rng = np.random.default_rng(3)
    ref = np.zeros((96, 96))
    ref[:, 48:] = rng.random((96, 48))  # left half flat, right half textured
    texture = 0.1 * rng.standard_normal((96, 96))
    on_flat = ref.copy()
    on_flat[:, :48] += texture[:, :48]
    on_texture = ref.copy()
    on_texture[:, 56:] += texture[:, 56:]
    assert hallucination(ref, ref, spacing=3.0) == 0.0
    assert hallucination(on_flat, ref, spacing=3.0) > 0.05
    assert hallucination(on_texture, ref, spacing=3.0) < 0.01
    # a smooth change of brightness is not detail, and neither is missing detail
    assert hallucination(ref + 0.2, ref, spacing=3.0) < 1e-12
    assert hallucination(ndimage.gaussian_filter(ref, 2.0), ref, spacing=3.0) == 0.0
    with pytest.raises(ValueError, match="flat_fraction"):
        hallucination(ref, ref, spacing=3.0, flat_fraction=1.5)


def test_gradient_ratio_detects_streak_direction():
    rng = np.random.default_rng(4)
    base = rng.random((64, 64))
    vertical = base + 0.1 * (np.arange(64) % 2)[None, :]  # columns alternate
    horizontal = base + 0.1 * (np.arange(64) % 2)[:, None]
    isotropic = base + 0.1 * rng.standard_normal((64, 64))
    assert gradient_ratio(vertical, base) > 100
    assert gradient_ratio(horizontal, base) < 0.01
    assert gradient_ratio(isotropic, base) == pytest.approx(1.0, abs=0.15)
    assert np.isnan(gradient_ratio(base, base))
    mask = np.zeros((64, 64), bool)
    mask[:, :32] = True
    left = base.copy()
    left[:, 32:] += 0.1 * (np.arange(64) % 2)[:, None][:, :1]  # streaks outside the mask
    assert np.isnan(gradient_ratio(left, base, mask=mask))


def test_hallucination_ignores_what_lies_outside_the_mask():
    ref = np.full((64, 64), 0.5)
    yy, xx = np.mgrid[0:64, 0:64]
    disc = (yy - 31.5) ** 2 + (xx - 31.5) ** 2 < 28**2
    cut = np.where(disc, ref, 0.0)  # the same flat image, zero outside the field of view
    assert hallucination(cut, ref, spacing=3.0, mask=disc) < 1e-9
    assert hallucination(cut, ref, spacing=3.0) > 0.01  # without the mask the edge counts
