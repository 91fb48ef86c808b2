"""Losses of the cycle-consistent adversarial super-resolution (Ravì et al., Eqs. 1-6).

Everything here is plain differentiable torch on batched tensors:

* :func:`voronoi_means` is the Voronoi vectorization V^ of a whole batch of super-resolved
  patches in one ``index_add`` over a flat segment index (patch offset + local cell id), with
  no loop over patches or cells and no fixed-length padding;
* :func:`l_vec` is the cycle consistency (Eq. 4), optionally with the paper's per-patch
  min-max normalisation and its 682-element zero padding;
* :func:`l_adv` (Eq. 5), :func:`l_reg` (Eq. 6) and :func:`discriminator_loss` (Eq. 1) are
  the adversarial, regularisation and discriminator terms; :func:`add_instance_noise` adds
  the white noise the paper puts on the discriminator's inputs;
* :func:`l_pix` is a supervised pixel loss, used only with paired high-resolution targets
  (a "supervised ceiling" for comparisons, not part of the unsupervised method).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from .config import ADV_LOSSES

__all__ = [
    "ADV_LOSSES",
    "PAPER_FIBRES_PER_PATCH",
    "add_instance_noise",
    "consistency_layer",
    "discriminator_loss",
    "highpass",
    "l_adv",
    "l_pix",
    "l_reg",
    "l_vec",
    "l_vec_noise_aware",
    "segment_minmax",
    "smooth_cells",
    "voronoi_means",
]

#: Length of the zero-padded fibre vector of one 64x64 patch in the paper (Eq. 4).
PAPER_FIBRES_PER_PATCH = 682

#: Smallest per-patch range used by the min-max normalisation of l_vec (in normalised
#: intensity units, where the image range is about 1): a flat patch would otherwise divide by
#: ~0 and blow up the gradients.
_MINMAX_EPS = 1e-3


def voronoi_means(sr: torch.Tensor, cell_index: torch.Tensor, n_cells: int) -> torch.Tensor:
    """Mean of the pixels of every Voronoi cell of a batch of patches (V^, Fig. 3).

    Parameters
    ----------
    sr : torch.Tensor
        ``(B, 1, h, w)`` super-resolved patches (float).
    cell_index : torch.Tensor
        ``(B, h, w)`` int64 *global* segment id of every pixel (patch offset + local cell
        id, so that ids are unique over the whole batch), ``-1`` for pixels that are not
        counted (outside the field of view, or in a cell cut by the patch border).
    n_cells : int
        Number of segments; ids must lie in ``[0, n_cells)``.

    Returns
    -------
    torch.Tensor
        ``(n_cells,)`` mean of ``sr`` over every segment, differentiable with respect to
        ``sr``; a segment with no pixel has mean 0.

    Notes
    -----
    One ``index_add`` of the flattened batch and one ``bincount`` of the counts: the cost is
    linear in the number of pixels, whatever the number of patches or cells.

    Examples
    --------
    >>> sr = torch.tensor([[[[1.0, 3.0], [5.0, 7.0]]]])
    >>> idx = torch.tensor([[[0, 0], [1, -1]]])
    >>> voronoi_means(sr, idx, 2)
    tensor([2., 5.])
    """
    if sr.dim() != 4 or sr.shape[1] != 1:
        raise ValueError(f"sr must have shape (B, 1, h, w), got {tuple(sr.shape)}")
    expected = (sr.shape[0], sr.shape[2], sr.shape[3])
    if tuple(cell_index.shape) != expected:
        raise ValueError(
            f"cell_index must have shape {expected} to match sr, got {tuple(cell_index.shape)}"
        )
    if cell_index.dtype != torch.int64:
        raise TypeError(f"cell_index must be int64, got {cell_index.dtype}")
    n_cells = int(n_cells)
    if n_cells < 0:
        raise ValueError(f"n_cells must be >= 0, got {n_cells}")
    flat_index = cell_index.reshape(-1)
    flat_sr = sr.reshape(-1)
    counted = flat_index >= 0
    index = flat_index[counted]
    if index.numel() and int(index.max()) >= n_cells:
        raise ValueError(f"cell_index holds id {int(index.max())} >= n_cells={n_cells}")
    sums = torch.zeros(n_cells, dtype=sr.dtype, device=sr.device)
    sums = sums.index_add(0, index, flat_sr[counted])
    counts = torch.bincount(index, minlength=n_cells).to(sr.dtype)
    return sums / counts.clamp(min=1)


def segment_minmax(
    x: torch.Tensor, segment: torch.Tensor, n_segments: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimum and maximum of ``x`` within each segment.

    Parameters
    ----------
    x : torch.Tensor
        ``(n,)`` values.
    segment : torch.Tensor
        ``(n,)`` int64 segment (patch) of every value, in ``[0, n_segments)``.
    n_segments : int
        Number of segments.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        ``(n_segments,)`` minima and maxima (0 for an empty segment).
    """
    base = torch.zeros(n_segments, dtype=x.dtype, device=x.device)
    low = base.scatter_reduce(0, segment, x, reduce="amin", include_self=False)
    high = base.scatter_reduce(0, segment, x, reduce="amax", include_self=False)
    return low, high


def _minmax_normalise(x: torch.Tensor, segment: torch.Tensor, n_segments: int) -> torch.Tensor:
    low, high = segment_minmax(x, segment, n_segments)
    return (x - low[segment]) / (high - low).clamp(min=_MINMAX_EPS)[segment]


def l_vec(
    v_hat: torch.Tensor,
    v: torch.Tensor,
    *,
    normalise: bool = False,
    segment_patch: torch.Tensor | None = None,
    n_patches: int | None = None,
    padding: int | None = None,
    tolerance: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Cycle-consistency loss between measured and re-vectorised fibre values (Eq. 4).

    Parameters
    ----------
    v_hat : torch.Tensor
        ``(n,)`` Voronoi vectorization of the super-resolved patches (:func:`voronoi_means`).
    v : torch.Tensor
        ``(n,)`` measured fibre values of the same cells, in the same order.
    normalise : bool
        Min-max normalise both vectors to ``[0, 1]`` within every patch first, as the paper
        does (needs ``segment_patch`` and ``n_patches``). A patch range below ``1e-3`` (a flat
        patch) is treated as ``1e-3`` so that the gradients stay bounded.
    segment_patch : torch.Tensor, optional
        ``(n,)`` int64 patch of every cell; needed by ``normalise`` and ``padding``.
    n_patches : int, optional
        Number of patches in the batch; needed by ``normalise`` and ``padding``.
    padding : int, optional
        The paper's zero padding: divide the summed squared error by ``padding * n_patches``
        (``padding=682`` in the paper), as if every patch's vector were zero-padded to
        ``padding`` elements, instead of by the number of valid cells.
    tolerance : torch.Tensor or float, optional
        Noise-aware cycle consistency: a difference is only penalised beyond ``tolerance``
        (a scalar or one value per cell, e.g. 1.5 times the noise level of the fibre values),
        ``max(|v_hat - v| - tolerance, 0) ** 2``: the output must agree with the measurement
        up to its noise, not fit the noise. ``None`` or 0: the plain squared difference.

    Returns
    -------
    torch.Tensor
        Scalar loss (0 when there is no valid cell).

    Examples
    --------
    >>> l_vec(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 4.0]))
    tensor(2.)
    """
    if v_hat.shape != v.shape or v_hat.dim() != 1:
        raise ValueError(
            f"v_hat and v must be 1-D of equal length, got {tuple(v_hat.shape)} and "
            f"{tuple(v.shape)}"
        )
    needs_segments = normalise or padding is not None
    if needs_segments and (segment_patch is None or n_patches is None):
        raise ValueError("normalise=True and padding need segment_patch and n_patches")
    if segment_patch is not None and segment_patch.shape != v.shape:
        raise ValueError(
            f"segment_patch must have shape {tuple(v.shape)}, got {tuple(segment_patch.shape)}"
        )
    v = v.to(v_hat.dtype)
    if normalise:
        v_hat = _minmax_normalise(v_hat, segment_patch, int(n_patches))
        v = _minmax_normalise(v, segment_patch, int(n_patches))
    diff = v_hat - v
    if tolerance is not None:
        tol = torch.as_tensor(tolerance, dtype=v_hat.dtype, device=v_hat.device)
        if tol.dim() not in (0, 1) or (tol.dim() == 1 and tol.shape != v.shape):
            raise ValueError(
                f"tolerance must be a scalar or one value per cell {tuple(v.shape)}, "
                f"got {tuple(tol.shape)}"
            )
        diff = torch.relu(diff.abs() - tol)
    squared = diff.square()
    if padding is not None:
        if padding < 1:
            raise ValueError(f"padding must be a positive integer, got {padding!r}")
        return squared.sum() / (int(padding) * max(int(n_patches), 1))
    if squared.numel() == 0:
        return squared.sum()
    return squared.mean()


#: Adversarial loss functions: "bce" (the paper's Eqs. 1 and 5), "hinge" (Lim & Ye 2017,
#: as in SN-GAN / SAGAN), "relativistic" (relativistic average GAN, Jolicoeur-Martineau 2018,
#: as in ESRGAN).


def _check_adv_kind(kind: str) -> None:
    if kind not in ADV_LOSSES:
        raise ValueError(f"kind must be one of {ADV_LOSSES}, got {kind!r}")


def smooth_cells(
    values: torch.Tensor, cell_index: torch.Tensor, n_cells: int, sigma: float
) -> torch.Tensor:
    """The smooth part of per-cell values: their map blurred over ``sigma`` pixels, per cell.

    Each counted pixel takes its cell's value, the map is blurred by a Gaussian of standard
    deviation ``sigma`` (a normalised convolution over the counted pixels of each patch, so
    uncounted pixels and other patches do not leak in), and the blurred map is averaged over
    every cell again. Differentiable with respect to ``values``.

    Parameters
    ----------
    values : torch.Tensor
        ``(n_cells,)`` one value per segment (e.g. the residuals ``V^ - V``).
    cell_index : torch.Tensor
        ``(B, h, w)`` segment of every pixel, ``-1`` where not counted (as for
        :func:`voronoi_means`).
    n_cells : int
        Number of segments.
    sigma : float
        Blur in pixels (> 0), e.g. two fibre spacings.

    Returns
    -------
    torch.Tensor
        ``(n_cells,)``.
    """
    counted = cell_index >= 0
    field = torch.where(counted, values[cell_index.clamp(min=0)], torch.zeros_like(values[:1]))
    weight = _gaussian_blur(counted.unsqueeze(1).to(values.dtype), sigma)
    blurred = _gaussian_blur(field.unsqueeze(1), sigma) / weight.clamp(min=1e-6)
    return voronoi_means(blurred, cell_index, n_cells)


def l_vec_noise_aware(
    v_hat: torch.Tensor,
    v: torch.Tensor,
    cell_index: torch.Tensor,
    n_cells: int,
    *,
    tolerance: torch.Tensor | float,
    sigma: float,
    smooth_ratio: float,
) -> torch.Tensor:
    """Cycle consistency up to the noise of the measured values, at two scales.

    The residual ``r = V^ - V`` is split into its smooth part ``r_s``
    (:func:`smooth_cells`: an offset or shading error, which many fibres measure together,
    so its noise is ``smooth_ratio`` times smaller) and its fibre-to-fibre part ``r - r_s``.
    Each is penalised only beyond its own noise band::

        mean( max(|r_s| - smooth_ratio * tol, 0)^2 + max(|r - r_s| - tol, 0)^2 )

    so the output must agree with the fibres up to their noise, and may not drift by a
    common offset inside the band (which a plain dead zone on ``r`` would allow).

    Parameters
    ----------
    v_hat, v : torch.Tensor
        ``(n_cells,)`` Voronoi means of the output and measured values.
    cell_index, n_cells
        The batch's cells (as for :func:`voronoi_means`).
    tolerance : torch.Tensor or float
        Band of the fibre-to-fibre part: a scalar or one value per cell (e.g. 1.5 times the
        noise level).
    sigma : float
        Blur of :func:`smooth_cells` in pixels.
    smooth_ratio : float
        Noise of the smooth part per unit of fibre noise (about 0.15 for two spacings).

    Returns
    -------
    torch.Tensor
        Scalar loss (0 when there is no cell).
    """
    if v_hat.shape != v.shape or v_hat.dim() != 1:
        raise ValueError(
            f"v_hat and v must be 1-D of equal length, got {tuple(v_hat.shape)} and "
            f"{tuple(v.shape)}"
        )
    if v.numel() == 0:
        return v_hat.sum() * 0.0
    r = v_hat - v.to(v_hat.dtype)
    tol = torch.as_tensor(tolerance, dtype=r.dtype, device=r.device)
    smooth = smooth_cells(r, cell_index, n_cells, sigma)
    low = torch.relu(smooth.abs() - smooth_ratio * tol)
    high = torch.relu((r - smooth).abs() - tol)
    return (low.square() + high.square()).mean()


def l_adv(
    fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None, *, kind: str = "bce"
) -> torch.Tensor:
    """Adversarial loss of the generator (Eq. 5 for ``kind="bce"``).

    * ``"bce"``: ``-log DS(SR(x))`` averaged over the batch, computed from logits as
      ``softplus(-logit)`` (no overflow for large negative logits);
    * ``"hinge"``: ``-mean(logit)``;
    * ``"relativistic"``: the relativistic average loss, ``BCE(C(fake) - mean C(real), 1) +
      BCE(C(real) - mean C(fake), 0)``: SR patches should look *more* real than the real
      ones on average (needs ``real_logits``).

    Parameters
    ----------
    fake_logits : torch.Tensor
        ``(B,)`` discriminator logits of super-resolved patches.
    real_logits : torch.Tensor, optional
        ``(B,)`` logits of target patches (``"relativistic"`` only; no gradient flows to
        them from here).
    kind : {"bce", "hinge", "relativistic"}

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    _check_adv_kind(kind)
    if kind == "bce":
        return F.softplus(-fake_logits).mean()
    if kind == "hinge":
        return -fake_logits.mean()
    if real_logits is None:
        raise ValueError("the relativistic loss needs real_logits")
    real_logits = real_logits.detach()
    fake_rel = fake_logits - real_logits.mean()
    real_rel = real_logits - fake_logits.mean()
    return F.binary_cross_entropy_with_logits(
        fake_rel, torch.ones_like(fake_rel)
    ) + F.binary_cross_entropy_with_logits(real_rel, torch.zeros_like(real_rel))


def discriminator_loss(
    real_logits: torch.Tensor, fake_logits: torch.Tensor, *, kind: str = "bce"
) -> torch.Tensor:
    """Loss of the discriminator: target patches real, SR outputs fake (Eq. 1 for "bce").

    Parameters
    ----------
    real_logits, fake_logits : torch.Tensor
        ``(B,)`` logits on target-domain patches and on super-resolved patches.
    kind : {"bce", "hinge", "relativistic"}
        ``"bce"``: ``BCE(real, 1) + BCE(fake, 0)``, each averaged over its batch;
        ``"hinge"``: ``mean relu(1 - real) + mean relu(1 + fake)``; ``"relativistic"``:
        ``BCE(real - mean fake, 1) + BCE(fake - mean real, 0)``.

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    _check_adv_kind(kind)
    if kind == "hinge":
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
    if kind == "relativistic":
        real_logits, fake_logits = (
            real_logits - fake_logits.mean(),
            fake_logits - real_logits.mean(),
        )
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def highpass(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Fine detail of a batch: ``x`` minus its Gaussian blur (reflected at the borders).

    What a frequency-separated discriminator sees: with ``sigma`` about half the fibre
    spacing, the band of detail the fibres do not measure (the cycle consistency governs
    the cell means, the adversarial term the detail inside the cells).

    Parameters
    ----------
    x : torch.Tensor
        ``(B, 1, h, w)`` patches.
    sigma : float
        Standard deviation of the blur in pixels (> 0).

    Returns
    -------
    torch.Tensor
        ``(B, 1, h, w)``, differentiable.
    """
    if not (sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    radius = max(1, int(math.ceil(3.0 * sigma)))
    radius = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    y = F.pad(x, (radius, radius, 0, 0), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1))
    y = F.pad(y, (0, 0, radius, radius), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, -1, 1))
    return x - y


def l_reg(sr: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
    """Row- and column-mean regulariser between SR output and LR input (Eq. 6).

    Parameters
    ----------
    sr : torch.Tensor
        ``(B, 1, H*s, W*s)`` super-resolved patches; for ``s > 1`` they are average-pooled
        by ``s`` back onto the LR grid first.
    lr : torch.Tensor
        ``(B, 1, H, W)`` LR input patches.

    Returns
    -------
    torch.Tensor
        Mean over rows of the squared difference of row means plus mean over columns of the
        squared difference of column means, averaged over the batch.
    """
    if sr.dim() != 4 or lr.dim() != 4:
        raise ValueError(f"sr and lr must be 4-D, got {tuple(sr.shape)} and {tuple(lr.shape)}")
    if sr.shape[-2:] != lr.shape[-2:]:
        factor = sr.shape[-1] // lr.shape[-1]
        if (
            factor < 1
            or sr.shape[-1] != lr.shape[-1] * factor
            or sr.shape[-2] != lr.shape[-2] * factor
        ):
            raise ValueError(
                f"sr {tuple(sr.shape)} must be lr {tuple(lr.shape)} times an integer scale"
            )
        sr = F.avg_pool2d(sr, factor)
    rows = (sr.mean(dim=-1) - lr.mean(dim=-1)).square().mean()
    cols = (sr.mean(dim=-2) - lr.mean(dim=-2)).square().mean()
    return rows + cols


def l_pix(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Supervised mean squared pixel error against paired high-resolution patches.

    Only meaningful with a registered ("paired") target; used as a supervised reference,
    not by the unsupervised method.

    Parameters
    ----------
    sr, hr : torch.Tensor
        ``(B, 1, h, w)`` super-resolved and paired high-resolution patches.

    Returns
    -------
    torch.Tensor
        Scalar mean squared error.
    """
    if sr.shape != hr.shape:
        raise ValueError(
            f"sr and hr must have equal shapes, got {tuple(sr.shape)}, {tuple(hr.shape)}"
        )
    return F.mse_loss(sr, hr.to(sr.dtype))


def add_instance_noise(
    x: torch.Tensor, sigma: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """White Gaussian noise of standard deviation ``sigma`` added to discriminator inputs.

    Parameters
    ----------
    x : torch.Tensor
        Discriminator input batch.
    sigma : float
        Noise standard deviation (in normalised intensity units); 0 returns ``x``.
    generator : torch.Generator, optional
        Source of randomness (a CPU generator; the noise is drawn on the CPU and moved to
        ``x``'s device so that results do not depend on the device).

    Returns
    -------
    torch.Tensor
        ``x + sigma * N(0, 1)``, a new tensor.
    """
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma!r}")
    if sigma == 0:
        return x
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device="cpu")
    return x + sigma * noise.to(x.device)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, 1, h, w)`` with zero padding."""
    radius = max(1, int(math.ceil(3.0 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    x = F.conv2d(x, k.view(1, 1, 1, -1), padding=(0, radius))
    return F.conv2d(x, k.view(1, 1, -1, 1), padding=(radius, 0))


def consistency_layer(
    sr: torch.Tensor,
    cell_index: torch.Tensor,
    values: torch.Tensor,
    n_cells: int,
    *,
    sigma: float,
    steps: int = 2,
) -> torch.Tensor:
    """Differentiable back-projection of a batch of patches onto their fibre values.

    The training-time counterpart of :func:`napari_cycsr.consistency.project_consistent`:
    ``X <- X + R (V - V^(X))`` repeated ``steps`` times, where ``V^`` is the Voronoi cell
    mean (:func:`voronoi_means`) and the back-projector ``R`` spreads every fibre's residual
    over its cell and smooths it by a normalised Gaussian convolution of standard deviation
    ``sigma`` pixels (about half the fibre spacing: a smooth interpolation of the residuals,
    like the TLI back-projector of the inference-time projection). Put after the generator
    during training, it makes the images the discriminator judges agree with the measured
    fibres, so that the adversarial term can only shape detail the measurement does not
    determine.

    Parameters
    ----------
    sr : torch.Tensor
        ``(B, 1, h, w)`` generator output.
    cell_index, n_cells
        Segment of every pixel, as for :func:`voronoi_means` (``-1`` = not counted).
    values : torch.Tensor
        ``(n_cells,)`` measured fibre values V of the segments.
    sigma : float
        Smoothing of the back-projected residual, in pixels of ``sr`` (> 0).
    steps : int
        Back-projection iterations (>= 1).

    Returns
    -------
    torch.Tensor
        ``(B, 1, h, w)`` corrected patches, differentiable with respect to ``sr``. Pixels
        farther than about ``3 * sigma`` from any counted cell are left unchanged.
    """
    if not (sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    counted = cell_index >= 0
    safe_index = cell_index.clamp(min=0)
    mask = counted.unsqueeze(1).to(sr.dtype)
    weight = _gaussian_blur(mask, sigma)
    reach = weight > 0.05
    inv_weight = torch.where(reach, 1.0 / weight.clamp(min=1e-6), torch.zeros_like(weight))
    values = values.to(sr.dtype)
    zeros = torch.zeros(cell_index.shape, dtype=sr.dtype, device=sr.device)
    out = sr
    for _ in range(steps):
        residual = values - voronoi_means(out, cell_index, n_cells)
        field = torch.where(counted, residual[safe_index], zeros)
        out = out + _gaussian_blur(field.unsqueeze(1), sigma) * inv_weight
    return out
