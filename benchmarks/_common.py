"""Shared helpers of the benchmark scripts: data sets, statistics, tables, figures, docs.

Nothing here trains a network; the functions are small and pure where possible so that
``tests/test_benchmarks.py`` can check them quickly. The data sets use only images that ship
with scikit-image (loaded offline) and the real bundle frames under ``../shared/data``.

Data design (simulated pCLE with a known ground truth)
------------------------------------------------------
The "pCLE domain" stand-in is the set of texture-like and microscopy images (brick, grass,
gravel, moon, coins, microaneurysms); it is split by *image* into three disjoint parts:

* :data:`TRAIN_IMAGES`: imaged through the simulated bundle; their LR reconstructions are
  the training inputs (their HR is used only by the paired target ``T_pair`` and the
  supervised baseline);
* :data:`UNPAIRED_IMAGES`: HR images of the same kind, never imaged (``T_unpair``);
* :data:`TEST_IMAGES`: the held-out test set (crops of these images, imaged through the
  bundle with other seeds).

``T_nat`` uses the photographs and documents (:data:`NATURAL_IMAGES`), a different domain,
as Sun2012 is for pCLE in Ravì et al.; ``T_res`` is the training LR images downscaled x4
(done by the trainer's ``target="downscaled"``).

Content classes (do no harm)
----------------------------
A method must not help on textures and harm elsewhere, so the test set is also split into
content classes, each reported separately (:data:`CONTENT_CLASSES`): ``texture`` (gravel,
grass: the crops of :data:`TEST_IMAGES`), ``smooth`` tissue-like images
(immunohistochemistry, retina, cell) and ``sparse`` bright structures (the Hubble deep field
and synthetic fluorescent spots and filaments, :func:`sparse_spots`), each at several noise
levels (:data:`NOISE_LEVELS`). Every class has a *validation* set of crops from other images
or other regions of the same images (never overlapping a test crop): settings are chosen on
the validation crops only, never on the test crops (:func:`class_crops`).
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CONTENT_CLASSES",
    "NATURAL_IMAGES",
    "NOISE_LEVELS",
    "PRETRAIN_IMAGES",
    "REAL_FRAMES",
    "TEST_IMAGES",
    "TRAIN_IMAGES",
    "UNPAIRED_IMAGES",
    "REPO_ROOT",
    "SHARED_DATA",
    "class_crops",
    "crop_grid",
    "fmt_mean_sd",
    "fmt_p",
    "load_grey",
    "load_real_frame",
    "markdown_table",
    "match_points",
    "mean_sd",
    "paired_ttest",
    "render_raw_frame",
    "replace_section",
    "sparse_spots",
    "dead_leaves",
    "update_markdown",
    "write_json",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT / ".." / "shared" / "data" / "pyfibrebundle"

TRAIN_IMAGES: tuple[str, ...] = ("brick", "coins")
UNPAIRED_IMAGES: tuple[str, ...] = ("moon", "microaneurysms")
TEST_IMAGES: tuple[str, ...] = ("gravel", "grass")
NATURAL_IMAGES: tuple[str, ...] = (
    "camera",
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "clock",
    "text",
    "page",
)
#: HR images of the pretrained models' training data (``benchmarks/train_pretrained.py``):
#: none is a test or validation image of any content class; with synthetic sparse spots
#: (seeds from 5000) for the sparse class.
PRETRAIN_IMAGES: tuple[str, ...] = (
    "brick",
    "coins",
    "camera",
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "clock",
    "page",
    "text",
    "shepp_logan_phantom",
)
#: real frames: name -> (data file, background file)
REAL_FRAMES: dict[str, tuple[str, str]] = {
    "tissue_paper": ("tissue_paper.tif", "tissue_paper_back.tif"),
    "usaf1": ("usaf1.tif", "usaf1_background.tif"),
}

_SKIMAGE_NAMES = frozenset(
    "camera astronaut coffee chelsea rocket brick grass gravel horse clock moon text page "
    "coins cell immunohistochemistry retina hubble_deep_field microaneurysms "
    "shepp_logan_phantom".split()
)

#: Noise levels (sd of additive Gaussian noise on the fibre values, images in [0, 1]) of the
#: content-class benchmark.
NOISE_LEVELS: tuple[float, ...] = (0.005, 0.01, 0.02, 0.05)

#: Content classes: class -> split -> sources ``(image, scale, end)``. ``image`` is a
#: scikit-image name or ``"spots"`` (:func:`sparse_spots`); ``scale`` resizes it first;
#: ``end`` is ``"first"`` (crops taken from the start of the image's crop grid, row by row)
#: or ``"last"`` (from its end), so that test and validation crops of one image never
#: overlap. For ``"spots"`` the seeds of the test crops start at 0, those of the validation
#: crops at 1000.
CONTENT_CLASSES: dict[str, dict[str, tuple[tuple[str, float, str], ...]]] = {
    "texture": {
        "test": (("gravel", 1.0, "first"), ("grass", 1.0, "first")),
        "validation": (("gravel", 1.0, "last"), ("grass", 1.0, "last")),
    },
    "smooth": {
        "test": (
            ("immunohistochemistry", 1.0, "first"),
            ("retina", 0.5, "first"),
            ("cell", 1.0, "first"),
        ),
        "validation": (
            ("moon", 1.0, "first"),
            ("immunohistochemistry", 1.0, "last"),
            ("retina", 0.5, "last"),
            ("cell", 1.0, "last"),
        ),
    },
    "sparse": {
        "test": (("hubble_deep_field", 1.0, "first"), ("spots", 1.0, "first")),
        "validation": (("hubble_deep_field", 1.0, "last"), ("spots", 1.0, "last")),
    },
}


def load_grey(name: str, *, scale: float = 1.0) -> np.ndarray:
    """A scikit-image bundled image as a float32 grey image in [0, 1].

    Parameters
    ----------
    name : str
        Name of a function of :mod:`skimage.data` that loads offline (``"camera"``, ...).
    scale : float, optional
        Resize factor (anti-aliased), e.g. 0.5 halves each side. Default 1.

    Returns
    -------
    ndarray, shape (H, W), float32

    Examples
    --------
    >>> load_grey("camera", scale=0.25).shape
    (128, 128)
    """
    if name not in _SKIMAGE_NAMES:
        raise ValueError(f"unknown image {name!r}; expected one of {sorted(_SKIMAGE_NAMES)}")
    if not (isinstance(scale, int | float) and 0 < scale <= 4):
        raise ValueError(f"scale must be a number in (0, 4], got {scale!r}")
    from skimage import color, data, transform, util

    img = getattr(data, name)()
    if img.ndim == 3:
        img = color.rgb2gray(img[..., :3])
    img = util.img_as_float64(img)
    if scale != 1.0:
        img = transform.rescale(img, scale, anti_aliasing=True, preserve_range=True)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def crop_grid(image: np.ndarray, size: int, count: int) -> list[np.ndarray]:
    """Up to ``count`` non-overlapping ``size`` x ``size`` crops on a regular grid.

    The crops are taken row by row from a grid centred on the image, so the result is
    deterministic; fewer than ``count`` are returned when the image holds fewer.

    Parameters
    ----------
    image : ndarray, shape (H, W)
    size : int
        Side of each crop (px).
    count : int
        Maximum number of crops.

    Returns
    -------
    list of ndarray
        Copies, float32.

    Examples
    --------
    >>> [c.shape for c in crop_grid(np.zeros((100, 70)), 32, 3)]
    [(32, 32), (32, 32), (32, 32)]
    """
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W), got shape {arr.shape}")
    if size < 1 or count < 1:
        raise ValueError(f"size and count must be positive, got size={size}, count={count}")
    ny, nx = arr.shape[0] // size, arr.shape[1] // size
    y0 = (arr.shape[0] - ny * size) // 2
    x0 = (arr.shape[1] - nx * size) // 2
    out = []
    for i in range(ny):
        for j in range(nx):
            if len(out) == count:
                return out
            y, x = y0 + i * size, x0 + j * size
            out.append(arr[y : y + size, x : x + size].astype(np.float32, copy=True))
    return out


def _usable(crop: np.ndarray, cls: str) -> bool:
    """Crops of textures and smooth images must show no empty background (< 1 % below 0.02)."""
    if cls == "sparse":
        return bool(crop.std() > 0.01)
    return bool(np.mean(crop < 0.02) < 0.01)


def _check_size(size: int) -> None:
    """The side of a synthetic image: an integer >= 16."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 16:
        raise ValueError(f"size must be an integer >= 16, got {size!r}")


def sparse_spots(size: int, seed: int) -> np.ndarray:
    """A synthetic sparse bright image: fluorescent spots and thin filaments on a dark field.

    A stand-in for fluorescence pCLE of sparse structures (cells, beads, fibres): a dark,
    slowly varying background (about 0.05-0.12), ``~size^2 / 500`` Gaussian spots of standard
    deviation 0.6-2.5 px and amplitude 0.2-0.9, and two or three filaments (smooth random
    curves, about 1 px wide, amplitude 0.3-0.7).

    Parameters
    ----------
    size : int
        Side of the square image (px), >= 16.
    seed : int
        Seed of every random choice.

    Returns
    -------
    ndarray, shape (size, size), float32 in [0, 1]

    Examples
    --------
    >>> img = sparse_spots(64, 0)
    >>> img.shape, bool(np.median(img) < 0.15), bool(img.max() > 0.3)
    ((64, 64), True, True)
    """
    from scipy import ndimage

    _check_size(size)
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal((size, size)), size / 6, mode="wrap")
    field = (field - field.min()) / max(float(np.ptp(field)), 1e-12)
    img = 0.05 + 0.07 * field
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    for _ in range(rng.poisson(size * size / 500)):
        cy, cx = rng.uniform(0, size, 2)
        sd = rng.uniform(0.6, 2.5)
        img += rng.uniform(0.2, 0.9) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sd**2))
    for _ in range(rng.integers(2, 4)):
        t = np.linspace(0, 1, 4 * size)
        pts = rng.uniform(0, size, (4, 2))  # a cubic Bezier curve through the field
        b = (
            ((1 - t) ** 3)[:, None] * pts[0]
            + (3 * (1 - t) ** 2 * t)[:, None] * pts[1]
            + (3 * (1 - t) * t**2)[:, None] * pts[2]
            + (t**3)[:, None] * pts[3]
        )
        line = np.zeros((size, size))
        iy, ix = np.clip(np.rint(b).astype(int), 0, size - 1).T
        line[iy, ix] = 1.0
        line = ndimage.gaussian_filter(line, 0.7)
        img += rng.uniform(0.3, 0.7) * line / max(float(line.max()), 1e-12)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def dead_leaves(size: int, seed: int, *, radii: tuple[float, float] = (1.0, 24.0)) -> np.ndarray:
    """A synthetic texture: the dead-leaves model (opaque discs falling on one another).

    Discs of random grey level with radii drawn from a density proportional to ``r^-3``
    between ``radii`` (px), the law under which the model is scale invariant like natural
    images, are laid front to back until the image is covered. Each disc carries a gentle
    linear shading (up to 0.1 across it, in a random direction), so leaves are not flat.
    Painted at twice the size and averaged 2 x 2, so edges are anti-aliased. A stand-in for
    stochastic textures (stones, cells, fibres in tissue) that uses no photograph.

    Parameters
    ----------
    size : int
        Side of the square image (px), >= 16.
    seed : int
        Seed of every random choice.
    radii : (float, float), optional
        Smallest and largest disc radius (px), 0 < smallest < largest.

    Returns
    -------
    ndarray, shape (size, size), float32 in [0.05, 0.95]

    Examples
    --------
    >>> img = dead_leaves(64, 0)
    >>> img.shape, bool(img.min() >= 0.05), bool(img.std() > 0.1)
    ((64, 64), True, True)
    """
    _check_size(size)
    r_min, r_max = (float(r) for r in radii)
    if not 0 < r_min < r_max:
        raise ValueError(f"radii must be 0 < smallest < largest, got {radii!r}")
    rng = np.random.default_rng(seed)
    n = 2 * size  # painted at twice the size, then averaged 2 x 2
    img = np.zeros((n, n))
    free = np.ones((n, n), dtype=bool)
    a, b = (2 * r_min) ** -2, (2 * r_max) ** -2
    for i in itertools.count():
        if i % 256 == 0 and not free.any():
            break
        r = (a - rng.uniform() * (a - b)) ** -0.5  # inverse CDF of the r^-3 density
        cy, cx = rng.uniform(-r, n + r, 2)
        y0, y1 = max(int(cy - r), 0), min(int(cy + r) + 2, n)
        x0, x1 = max(int(cx - r), 0), min(int(cx + r) + 2, n)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.ogrid[y0:y1, x0:x1]
        dy, dx = yy - cy, xx - cx
        inside = (dy**2 + dx**2 <= r * r) & free[y0:y1, x0:x1]
        if not inside.any():
            continue
        grey, slope = rng.uniform(0.1, 0.9), rng.uniform(0.0, 0.05)
        angle = rng.uniform(0, 2 * np.pi)
        shade = grey + slope * (dy * np.cos(angle) + dx * np.sin(angle)) / r
        img[y0:y1, x0:x1][inside] = np.broadcast_to(shade, inside.shape)[inside]
        free[y0:y1, x0:x1][inside] = False
    img = img.reshape(size, 2, size, 2).mean(axis=(1, 3))
    return np.clip(img, 0.05, 0.95).astype(np.float32)


def class_crops(cls: str, split: str, size: int, count: int) -> list[tuple[str, np.ndarray]]:
    """The crops of one content class and split (:data:`CONTENT_CLASSES`).

    ``count`` crops are shared out evenly over the split's sources (the first sources get
    one more when it does not divide). Crops of scikit-image pictures come from a regular
    grid of non-overlapping ``size`` x ``size`` cells, taken row by row from the start
    (``"first"``) or from the end (``"last"``) of the grid, skipping crops that show empty
    background (textures and smooth images); ``"spots"`` crops are :func:`sparse_spots`
    images.

    Parameters
    ----------
    cls : {"texture", "smooth", "sparse"}
    split : {"test", "validation"}
    size : int
        Crop side (px).
    count : int
        Number of crops.

    Returns
    -------
    list of (str, ndarray)
        ``(label, crop)`` pairs; labels look like ``"gravel#3"`` (grid index) or
        ``"spots#1001"`` (seed).

    Raises
    ------
    ValueError
        For an unknown class or split, or when an image holds too few usable crops for the
        test and validation splits to stay disjoint.
    """
    if cls not in CONTENT_CLASSES:
        raise ValueError(f"unknown content class {cls!r}; expected one of {list(CONTENT_CLASSES)}")
    if split not in ("test", "validation"):
        raise ValueError(f"split must be 'test' or 'validation', got {split!r}")
    sources = CONTENT_CLASSES[cls][split]
    per = [count // len(sources) + (i < count % len(sources)) for i in range(len(sources))]
    out: list[tuple[str, np.ndarray]] = []
    for (name, scale, end), n in zip(sources, per):
        if n == 0:
            continue
        if name == "spots":
            first = 0 if end == "first" else 1000
            out += [(f"spots#{s}", sparse_spots(size, s)) for s in range(first, first + n)]
            continue
        img = load_grey(name, scale=scale)
        grid = crop_grid(img, size, (img.shape[0] // size) * (img.shape[1] // size))
        usable = [(i, c) for i, c in enumerate(grid) if _usable(c, cls)]
        # both ends of one image must stay disjoint whatever the other split asks for
        if 2 * n > len(usable):
            raise ValueError(
                f"{name} (scale {scale}) holds {len(usable)} usable {size} px crops: too few "
                f"for {n} test and {n} validation crops that do not overlap"
            )
        chosen = usable[:n] if end == "first" else usable[::-1][:n]
        out += [(f"{name}#{i}", c) for i, c in chosen]
    return out


def render_raw_frame(
    centres: np.ndarray,
    values: np.ndarray,
    shape: tuple[int, int],
    *,
    core_sigma: float,
    noise: float = 0.01,
    seed: int = 0,
) -> np.ndarray:
    """A synthetic raw camera frame of a bundle: one Gaussian spot per core.

    Each core at ``centres[i]`` contributes ``values[i] * exp(-d^2 / (2 core_sigma^2))``
    (sub-pixel exact); dark cladding between cores; additive Gaussian noise. Used to test
    core detection against known centres.

    Parameters
    ----------
    centres : ndarray, shape (N, 2)
        ``(y, x)`` core centres.
    values : ndarray, shape (N,)
        Core intensities.
    shape : tuple of int
        ``(H, W)``.
    core_sigma : float
        Spot width (px).
    noise : float, optional
        Standard deviation of the additive noise. Default 0.01.
    seed : int, optional
        Noise seed.

    Returns
    -------
    ndarray, shape (H, W), float32, clipped to [0, 1]
    """
    c = np.asarray(centres, np.float64)
    v = np.asarray(values, np.float64)
    if c.ndim != 2 or c.shape[1] != 2 or v.shape != (c.shape[0],):
        raise ValueError(f"centres must be (N, 2) and values (N,), got {c.shape}, {v.shape}")
    if not core_sigma > 0:
        raise ValueError(f"core_sigma must be positive, got {core_sigma!r}")
    h, w = (int(s) for s in shape)
    frame = np.zeros((h, w), np.float64)
    r = int(math.ceil(4 * core_sigma))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    base = np.rint(c).astype(np.int64)
    for (cy, cx), (by, bx), val in zip(c, base, v):
        ys, xs = by + dy, bx + dx
        ok = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
        spot = val * np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * core_sigma**2))
        np.add.at(frame, (ys[ok], xs[ok]), spot[ok])
    rng = np.random.default_rng(seed)
    frame += rng.normal(0.0, noise, frame.shape)
    return np.clip(frame, 0.0, 1.0).astype(np.float32)


def load_real_frame(name: str, root: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A real raw bundle frame and its background frame, as float32 in [0, 1].

    Parameters
    ----------
    name : str
        A key of :data:`REAL_FRAMES`.
    root : Path, optional
        Folder of the frames (default :data:`SHARED_DATA`).

    Returns
    -------
    (raw, background) : tuple of ndarray, shape (H, W), float32
    """
    from PIL import Image

    if name not in REAL_FRAMES:
        raise ValueError(f"unknown real frame {name!r}; expected one of {sorted(REAL_FRAMES)}")
    folder = Path(root) if root is not None else SHARED_DATA
    out = []
    for fname in REAL_FRAMES[name]:
        path = folder / fname
        if not path.is_file():
            raise FileNotFoundError(f"real frame {path} not found")
        with Image.open(path) as im:
            arr = np.array(im)
        if arr.ndim == 3:
            arr = arr[..., :3].mean(axis=-1)
        out.append((arr.astype(np.float32) / 255.0).astype(np.float32))
    return out[0], out[1]


# ---------------------------------------------------------------------- statistics


def mean_sd(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value), ignoring NaN."""
    arr = np.asarray(list(values), np.float64)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return float("nan"), float("nan")
    sd = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return float(arr.mean()), sd


def fmt_mean_sd(values: Iterable[float], digits: int = 3) -> str:
    """``"mean ± sd"`` with ``digits`` decimals (``"n/a"`` when empty).

    Examples
    --------
    >>> fmt_mean_sd([1.0, 2.0, 3.0], 2)
    '2.00 ± 1.00'
    """
    m, s = mean_sd(values)
    if not math.isfinite(m):
        return "n/a"
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def paired_ttest(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Two-sided paired t-test (``scipy.stats.ttest_rel``) of ``a`` against ``b``.

    Returns
    -------
    (t, p) : tuple of float
        NaN when fewer than two pairs or when every difference is equal.
    """
    from scipy import stats

    x = np.asarray(a, np.float64)
    y = np.asarray(b, np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"a and b must be 1-D of equal length, got {x.shape}, {y.shape}")
    diff = x - y
    if x.size < 2 or np.allclose(diff, diff[0]):
        return float("nan"), float("nan")
    res = stats.ttest_rel(x, y)
    return float(res.statistic), float(res.pvalue)


def fmt_p(p: float) -> str:
    """A p-value for a table: ``"<0.0001"``, ``"0.012"`` or ``"n/a"``."""
    if not math.isfinite(p):
        return "n/a"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def match_points(a: np.ndarray, b: np.ndarray, tol: float = 1.0) -> dict[str, float]:
    """How well two point sets agree: nearest-neighbour matches within ``tol`` pixels.

    Parameters
    ----------
    a, b : ndarray, shape (N, 2) and (M, 2)
        Point sets, ``(y, x)``.
    tol : float
        Match radius (px).

    Returns
    -------
    dict
        ``n_a``, ``n_b``; ``a_in_b`` = fraction of ``a`` with a point of ``b`` within
        ``tol``; ``b_in_a`` the converse; ``median_a_to_b`` = median distance from each
        point of ``a`` to its nearest point of ``b`` over the matched points (px).

    Examples
    --------
    >>> r = match_points(np.array([[0.0, 0.0], [5.0, 5.0]]), np.array([[0.0, 0.5]]))
    >>> r["a_in_b"], r["b_in_a"]
    (0.5, 1.0)
    """
    from scipy.spatial import cKDTree

    pa = np.asarray(a, np.float64).reshape(-1, 2)
    pb = np.asarray(b, np.float64).reshape(-1, 2)
    out: dict[str, float] = {"n_a": len(pa), "n_b": len(pb)}
    if len(pa) == 0 or len(pb) == 0:
        out.update(a_in_b=0.0, b_in_a=0.0, median_a_to_b=float("nan"))
        return out
    da, _ = cKDTree(pb).query(pa)
    db, _ = cKDTree(pa).query(pb)
    out["a_in_b"] = float(np.mean(da <= tol))
    out["b_in_a"] = float(np.mean(db <= tol))
    matched = da[da <= tol]
    out["median_a_to_b"] = float(np.median(matched)) if matched.size else float("nan")
    return out


# ---------------------------------------------------------------------- docs


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub Markdown table; every cell is ``str()``-ed, ``|`` is escaped.

    Examples
    --------
    >>> print(markdown_table(["a", "b"], [[1, "x|y"]]))
    | a | b |
    | --- | --- |
    | 1 | x\\|y |
    """
    head = [str(h).replace("|", "\\|") for h in header]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    for row in rows:
        cells = [str(c).replace("|", "\\|") for c in row]
        if len(cells) != len(head):
            raise ValueError(f"row has {len(cells)} cells, header has {len(head)}: {row!r}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _markers(key: str) -> tuple[str, str]:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", key):
        raise ValueError(f"section key must be letters, digits, '_' or '-', got {key!r}")
    return f"<!-- BEGIN {key} -->", f"<!-- END {key} -->"


def replace_section(text: str, key: str, content: str) -> str:
    """Replace the text between ``<!-- BEGIN key -->`` and ``<!-- END key -->``.

    When the markers are missing, the section (with its markers) is appended at the end.

    Examples
    --------
    >>> replace_section("x\\n<!-- BEGIN t -->\\nold\\n<!-- END t -->\\ny", "t", "new")
    'x\\n<!-- BEGIN t -->\\nnew\\n<!-- END t -->\\ny'
    """
    begin, end = _markers(key)
    block = f"{begin}\n{content.strip()}\n{end}"
    i = text.find(begin)
    j = text.find(end)
    if i < 0 and j < 0:
        sep = "" if text.endswith("\n") or not text else "\n"
        return f"{text}{sep}\n{block}\n"
    if i < 0 or j < i:
        raise ValueError(f"markers of section {key!r} are malformed (BEGIN/END order)")
    return text[:i] + block + text[j + len(end) :]


def update_markdown(path: Path, sections: Mapping[str, str]) -> None:
    """Rewrite the generated sections of a Markdown file (atomically: temp file + rename)."""
    p = Path(path)
    text = p.read_text(encoding="utf-8") if p.exists() else ""
    for key, content in sections.items():
        text = replace_section(text, key, content)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(p)


def write_json(path: Path, data: Any) -> None:
    """Write JSON (numpy scalars converted) atomically."""

    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        raise TypeError(f"not JSON serialisable: {type(o).__name__}")

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=default), encoding="utf-8")
    tmp.replace(p)


def parse_settings(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings of a benchmark's ``--set`` options as TrainConfig overrides: the
    value as JSON data, or the plain string when it is not JSON (nothing is evaluated)."""
    out: dict[str, Any] = {}
    for item in items:
        key, _, raw = item.partition("=")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out
