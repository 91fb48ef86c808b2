"""Tests of the differentiable losses (Voronoi vectorization, Eqs. 1, 4, 5, 6)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from napari_cycsr.losses import (
    PAPER_FIBRES_PER_PATCH,
    add_instance_noise,
    consistency_layer,
    discriminator_loss,
    l_adv,
    l_pix,
    l_reg,
    l_vec,
    segment_minmax,
    voronoi_means,
)


def _random_cells(seed: int = 0, b: int = 3, h: int = 12, w: int = 10, n: int = 25):
    rng = np.random.default_rng(seed)
    sr = rng.normal(size=(b, 1, h, w)).astype(np.float64)
    index = rng.integers(-1, n, size=(b, h, w)).astype(np.int64)
    index.flat[:n] = np.arange(n)  # every id present at least once
    return sr, index, n


def _slow_means(sr: np.ndarray, index: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n)
    for c in range(n):
        pixels = sr[:, 0][index == c]
        out[c] = pixels.mean() if pixels.size else 0.0
    return out


def test_voronoi_means_matches_per_cell_reference():
    sr, index, n = _random_cells()
    got = voronoi_means(torch.from_numpy(sr), torch.from_numpy(index), n)
    np.testing.assert_allclose(got.numpy(), _slow_means(sr, index, n), rtol=1e-12, atol=1e-12)


def test_voronoi_means_empty_segment_is_zero_and_dtype_kept():
    sr = torch.ones(1, 1, 2, 2, dtype=torch.float32)
    index = torch.tensor([[[0, 0], [2, -1]]])
    got = voronoi_means(sr, index, 4)
    assert got.dtype == torch.float32
    assert got.tolist() == [1.0, 0.0, 1.0, 0.0]


def test_voronoi_means_gradient_only_on_counted_pixels():
    sr_np, index, n = _random_cells(seed=1)
    sr = torch.from_numpy(sr_np).requires_grad_(True)
    voronoi_means(sr, torch.from_numpy(index), n).sum().backward()
    grad = sr.grad.numpy()[:, 0]
    counted = index >= 0
    assert np.all(grad[~counted] == 0)
    counts = np.bincount(index[counted], minlength=n)
    # d(sum of means)/d(pixel) = 1 / size of the pixel's cell
    np.testing.assert_allclose(grad[counted], 1.0 / counts[index[counted]])


def test_voronoi_means_validates_inputs():
    sr = torch.zeros(2, 1, 4, 4)
    with pytest.raises(ValueError, match="shape"):
        voronoi_means(sr, torch.zeros(2, 4, 5, dtype=torch.int64), 1)
    with pytest.raises(TypeError, match="int64"):
        voronoi_means(sr, torch.zeros(2, 4, 4, dtype=torch.int32), 1)
    with pytest.raises(ValueError, match="n_cells"):
        voronoi_means(sr, torch.full((2, 4, 4), 3, dtype=torch.int64), 3)
    with pytest.raises(ValueError, match=r"\(B, 1, h, w\)"):
        voronoi_means(torch.zeros(2, 4, 4), torch.zeros(2, 4, 4, dtype=torch.int64), 1)


def test_l_vec_plain_mean_squared_error():
    v_hat = torch.tensor([0.0, 1.0, 3.0])
    v = torch.tensor([0.0, 2.0, 1.0])
    assert l_vec(v_hat, v).item() == pytest.approx(5.0 / 3.0)
    assert l_vec(torch.zeros(0), torch.zeros(0)).item() == 0.0


def test_l_vec_tolerance_is_a_dead_zone():
    v = torch.tensor([0.0, 0.0, 0.0, 0.0])
    v_hat = torch.tensor([0.05, -0.05, 0.3, -0.5], requires_grad=True)
    # inside +-0.1: no loss and no gradient; outside: the excess, squared
    loss = l_vec(v_hat, v, tolerance=0.1)
    assert loss.item() == pytest.approx((0.2**2 + 0.4**2) / 4)
    loss.backward()
    assert v_hat.grad[0] == 0 and v_hat.grad[1] == 0
    assert v_hat.grad[2] > 0 and v_hat.grad[3] < 0
    # one tolerance per cell
    per_cell = l_vec(v_hat.detach(), v, tolerance=torch.tensor([0.0, 0.0, 0.3, 0.5]))
    assert per_cell.item() == pytest.approx((0.05**2 + 0.05**2) / 4)
    assert l_vec(v_hat.detach(), v, tolerance=0.0).item() == pytest.approx(
        l_vec(v_hat.detach(), v).item()
    )
    with pytest.raises(ValueError, match="tolerance"):
        l_vec(v_hat.detach(), v, tolerance=torch.zeros(3))


def test_l_vec_normalise_is_per_patch_minmax():
    rng = np.random.default_rng(2)
    v = torch.from_numpy(rng.random(10))
    segment = torch.tensor([0] * 4 + [1] * 6)
    # per-patch affine changes of v_hat (positive gain) vanish after min-max normalisation
    gain = torch.where(segment == 0, 3.0, 0.5).double()
    offset = torch.where(segment == 0, -1.0, 2.0).double()
    v_hat = torch.from_numpy(rng.random(10))
    base = l_vec(v_hat, v, normalise=True, segment_patch=segment, n_patches=2)
    moved = l_vec(v_hat * gain + offset, v, normalise=True, segment_patch=segment, n_patches=2)
    assert moved.item() == pytest.approx(base.item(), rel=1e-9)
    assert l_vec(v * gain + offset, v, normalise=True, segment_patch=segment, n_patches=2) < 1e-12

    # explicit reference
    def mm(x):
        out = x.clone()
        for s in (0, 1):
            sel = segment == s
            out[sel] = (x[sel] - x[sel].min()) / (x[sel].max() - x[sel].min())
        return out

    assert base.item() == pytest.approx(((mm(v_hat) - mm(v)) ** 2).mean().item(), rel=1e-9)
    low, high = segment_minmax(v, segment, 2)
    assert low[1].item() == v[4:].min().item() and high[0].item() == v[:4].max().item()


def test_l_vec_normalise_gradient_flows():
    v_hat = torch.rand(8, dtype=torch.float64, requires_grad=True)
    segment = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    l_vec(
        v_hat,
        torch.rand(8, dtype=torch.float64),
        normalise=True,
        segment_patch=segment,
        n_patches=2,
    ).backward()
    assert torch.isfinite(v_hat.grad).all() and v_hat.grad.abs().sum() > 0


def test_l_vec_paper_padding_divides_by_682_per_patch():
    v_hat = torch.tensor([1.0, 2.0, 3.0])
    v = torch.tensor([0.0, 0.0, 0.0])
    segment = torch.tensor([0, 0, 1])
    got = l_vec(v_hat, v, segment_patch=segment, n_patches=2, padding=PAPER_FIBRES_PER_PATCH)
    assert got.item() == pytest.approx(14.0 / (682 * 2))


def test_l_vec_validates_inputs():
    with pytest.raises(ValueError, match="equal length"):
        l_vec(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="segment_patch"):
        l_vec(torch.zeros(3), torch.zeros(3), normalise=True)


def test_l_reg_zero_for_identical_and_matches_eq6():
    x = torch.rand(2, 1, 6, 5, dtype=torch.float64)
    assert l_reg(x, x).item() == 0.0
    sr = torch.rand(2, 1, 6, 5, dtype=torch.float64)
    rows = ((sr.mean(-1) - x.mean(-1)) ** 2).mean()
    cols = ((sr.mean(-2) - x.mean(-2)) ** 2).mean()
    assert l_reg(sr, x).item() == pytest.approx((rows + cols).item())
    # row/column-mean preserving changes are not penalised
    checker = torch.tensor([[1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64).repeat(3, 3)
    y = torch.rand(1, 1, 6, 6, dtype=torch.float64)
    assert l_reg(y + 0.1 * checker, y).item() == pytest.approx(0.0, abs=1e-24)


def test_l_reg_scale_two_pools_back():
    lr = torch.rand(2, 1, 8, 8)
    sr = F.interpolate(lr, scale_factor=2, mode="nearest")
    assert l_reg(sr, lr).item() == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="integer scale"):
        l_reg(torch.rand(2, 1, 12, 12), lr)


def test_l_adv_and_discriminator_loss_are_bce():
    logits = torch.tensor([-2.0, 0.0, 3.0])
    assert l_adv(logits).item() == pytest.approx(-torch.log(torch.sigmoid(logits)).mean().item())
    assert math.isfinite(l_adv(torch.tensor([-1000.0])).item())
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    expected = -torch.log(torch.sigmoid(real)).mean() - torch.log(1 - torch.sigmoid(fake)).mean()
    assert discriminator_loss(real, fake).item() == pytest.approx(expected.item(), rel=1e-6)


def test_l_pix():
    a = torch.zeros(1, 1, 2, 2)
    assert l_pix(a, torch.ones(1, 1, 2, 2)).item() == 1.0
    with pytest.raises(ValueError, match="equal shapes"):
        l_pix(a, torch.ones(1, 1, 2, 3))


def test_add_instance_noise_is_seeded_and_scaled():
    x = torch.zeros(4, 1, 32, 32)
    assert add_instance_noise(x, 0.0) is x
    a = add_instance_noise(x, 0.1, torch.Generator().manual_seed(3))
    b = add_instance_noise(x, 0.1, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert a.std().item() == pytest.approx(0.1, rel=0.1)
    assert torch.equal(x, torch.zeros_like(x))  # input untouched
    with pytest.raises(ValueError, match="sigma"):
        add_instance_noise(x, -1.0)


def test_l_vec_normalise_flat_patch_stays_bounded():
    segment = torch.zeros(6, dtype=torch.int64)
    v = torch.full((6,), 0.5, dtype=torch.float64)
    v_hat = (0.5 + 1e-7 * torch.arange(6, dtype=torch.float64)).requires_grad_(True)
    loss = l_vec(v_hat, v, normalise=True, segment_patch=segment, n_patches=1)
    loss.backward()
    assert loss.item() < 1e-6
    assert v_hat.grad.abs().max().item() < 1e3


def _block_cells(b: int = 2, h: int = 24, w: int = 24, block: int = 3):
    """Square 'fibre cells' of block x block pixels, unique ids over the batch, a border of
    uncounted pixels (-1) two pixels wide."""
    rows = np.arange(h)[:, None] // block
    cols = np.arange(w)[None, :] // block
    local = rows * (w // block) + cols
    per_patch = (h // block) * (w // block)
    index = np.stack([local + i * per_patch for i in range(b)]).astype(np.int64)
    index[:, :2] = -1
    index[:, :, :2] = -1
    return torch.from_numpy(index), b * per_patch


def test_consistency_layer_drives_cell_means_to_the_values():
    index, n = _block_cells()
    rng = np.random.default_rng(3)
    sr = torch.from_numpy(rng.normal(size=(2, 1, 24, 24)))
    values = torch.from_numpy(rng.normal(size=n))
    counted = torch.bincount(index[index >= 0], minlength=n) > 0

    def error(x):
        return float((voronoi_means(x, index, n) - values)[counted].square().mean())

    before = error(sr)
    one = error(consistency_layer(sr, index, values, n, sigma=1.2, steps=1))
    three = error(consistency_layer(sr, index, values, n, sigma=1.2, steps=3))
    assert one < before / 2
    assert three < one / 3


def test_consistency_layer_keeps_consistent_images_and_is_differentiable():
    index, n = _block_cells(b=1)
    rng = np.random.default_rng(4)
    sr = torch.from_numpy(rng.normal(size=(1, 1, 24, 24))).requires_grad_(True)
    values = voronoi_means(sr, index, n).detach()
    out = consistency_layer(sr, index, values, n, sigma=1.0, steps=2)
    # already consistent: the residual is 0 for every counted cell, nothing changes
    torch.testing.assert_close(out, sr, rtol=0, atol=1e-12)
    (out * torch.from_numpy(rng.normal(size=out.shape))).sum().backward()
    assert sr.grad is not None and torch.isfinite(sr.grad).all()
    # pixels beyond the reach of every counted cell are untouched
    far_index = torch.full((1, 24, 24), -1, dtype=torch.int64)
    far_index[0, :3, :3] = 0
    moved = consistency_layer(sr.detach(), far_index, torch.tensor([5.0]), 1, sigma=0.8)
    torch.testing.assert_close(moved[0, 0, 12:, 12:], sr.detach()[0, 0, 12:, 12:])


def test_consistency_layer_validates_arguments():
    index, n = _block_cells(b=1)
    sr = torch.zeros(1, 1, 24, 24)
    with pytest.raises(ValueError, match="sigma"):
        consistency_layer(sr, index, torch.zeros(n), n, sigma=0.0)
    with pytest.raises(ValueError, match="steps"):
        consistency_layer(sr, index, torch.zeros(n), n, sigma=1.0, steps=0)


def test_adversarial_loss_kinds():
    from napari_cycsr.losses import discriminator_loss, highpass, l_adv

    real = torch.tensor([2.0, 0.5])
    fake = torch.tensor([-1.0, 0.0])
    # hinge: D pays for real logits below 1 and fake logits above -1
    assert discriminator_loss(real, fake, kind="hinge").item() == pytest.approx(0.25 + 0.5)
    assert l_adv(fake, kind="hinge").item() == pytest.approx(0.5)
    # relativistic average: the same BCE on logits relative to the other batch's mean
    d_ra = discriminator_loss(real, fake, kind="relativistic")
    d_bce = discriminator_loss(real - fake.mean(), fake - real.mean())
    assert d_ra.item() == pytest.approx(d_bce.item())
    g_ra = l_adv(fake, real, kind="relativistic")
    expected = (
        torch.nn.functional.softplus(-(fake - real.mean())).mean()
        + torch.nn.functional.softplus(real - fake.mean()).mean()
    )
    assert g_ra.item() == pytest.approx(expected.item())
    # the paper's loss is unchanged
    assert l_adv(fake).item() == pytest.approx(torch.nn.functional.softplus(-fake).mean().item())
    with pytest.raises(ValueError, match="real_logits"):
        l_adv(fake, kind="relativistic")
    with pytest.raises(ValueError, match="kind"):
        discriminator_loss(real, fake, kind="wasserstein")
    # the high-pass removes constants and ramps' interiors, keeps fine detail
    flat = torch.full((2, 1, 16, 16), 0.7)
    assert highpass(flat, 1.0).abs().max() < 1e-6
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2
    detail = highpass(checker.float()[None, None], 1.0)
    assert detail.std() > 0.4


def test_noise_aware_l_vec_allows_noise_but_not_an_offset():
    from napari_cycsr.losses import l_vec_noise_aware, smooth_cells

    # one 32 x 32 patch of 4 x 4 px cells
    cells = torch.arange(64).reshape(8, 8).repeat_interleave(4, 0).repeat_interleave(4, 1)
    index = cells[None].clone()
    v = torch.full((64,), 0.5, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    noise = 0.01 * torch.randn(64, generator=gen, dtype=torch.float64)
    # the smooth part of a constant is the constant; of white noise much less than the noise
    assert torch.allclose(smooth_cells(torch.full_like(v, 0.3), index, 64, 6.0), v * 0 + 0.3)
    assert smooth_cells(noise, index, 64, 6.0).std() < 0.5 * noise.std()
    args = {"tolerance": 0.03, "sigma": 6.0, "smooth_ratio": 0.3}
    # noise inside the band costs nothing; the same size as an offset does
    assert l_vec_noise_aware(v + noise, v, index, 64, **args).item() == 0.0
    assert l_vec_noise_aware(v + 0.02, v, index, 64, **args).item() > 1e-5
    # outside the band: the excess, and a gradient
    v_hat = (v + 0.2 * torch.sign(noise)).requires_grad_(True)
    loss = l_vec_noise_aware(v_hat, v, index, 64, **args)
    loss.backward()
    assert loss.item() > 0 and v_hat.grad.abs().sum() > 0
