"""Tests of napari_cycsr.fibres: the fibre bundle, its operators, detection and CSV I/O."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import ConvexHull, cKDTree

from napari_cycsr.fibres import FibreBundle, bundle_fov, estimate_spacing
from napari_cycsr.simulate import hexagonal_lattice


@pytest.fixture(scope="module")
def bundle() -> FibreBundle:
    return FibreBundle(hexagonal_lattice((48, 56), 3.0, jitter=0.15, seed=4), (48, 56))


def in_hull(centres, points, tol=1e-9):
    """Reference: points inside the convex hull of the centres (hull half-planes)."""
    eq = ConvexHull(centres).equations
    return (points @ eq[:, :2].T + eq[:, 2] <= tol).all(axis=1)


def render_cores(shape, centres, sigma, amplitudes):
    """Sum of Gaussian spots (fibre cores) at the given centres."""
    img = np.zeros(shape)
    r = int(4 * sigma) + 1
    for (y, x), a in zip(centres, amplitudes):
        y0, x0 = int(round(y)), int(round(x))
        ys = np.arange(max(0, y0 - r), min(shape[0], y0 + r + 1))
        xs = np.arange(max(0, x0 - r), min(shape[1], x0 + r + 1))
        g = np.exp(-((ys[:, None] - y) ** 2 + (xs[None, :] - x) ** 2) / (2 * sigma**2))
        img[np.ix_(ys, xs)] += a * g
    return img


# ---------------------------------------------------------------- construction
def test_basic_attributes(bundle):
    assert bundle.shape == (48, 56)
    assert bundle.n_fibres == len(bundle.centres) == len(bundle)
    assert bundle.centres.dtype == np.float64
    assert not bundle.centres.flags.writeable
    d, _ = cKDTree(bundle.centres).query(bundle.centres, k=2)
    assert bundle.spacing == pytest.approx(np.median(d[:, 1]))
    assert "FibreBundle" in repr(bundle)


def test_spacing_of_perfect_lattice():
    c = hexagonal_lattice((40, 40), 4.0, jitter=0.0, fov="full", seed=1)
    assert FibreBundle(c, (40, 40)).spacing == pytest.approx(4.0)


def test_centres_copied_not_modified():
    c = hexagonal_lattice((32, 32), 3.0, seed=2)
    before = c.copy()
    b = FibreBundle(c, (32, 32))
    c[0] = (1.0, 1.0)
    np.testing.assert_array_equal(b.centres, before)
    b.reconstruct(np.ones(b.n_fibres))
    assert c.flags.writeable


@pytest.mark.parametrize(
    ("centres", "shape", "match"),
    [
        (np.zeros((5, 3)), (10, 10), r"shape \(N, 2\)"),
        (np.zeros(6), (10, 10), r"shape \(N, 2\)"),
        ([[1.0, 1.0], [2.0, 3.0]], (10, 10), "at least 3"),
        ([[1.0, 1.0], [2.0, np.nan], [5.0, 5.0]], (10, 10), "finite"),
        ([[1.0, 1.0], [2.0, np.inf], [5.0, 5.0]], (10, 10), "finite"),
        ([[1.0, 1.0], [2.0, 4.0], [5.0, 10.2]], (10, 10), "outside the image"),
        ([[-0.6, 1.0], [2.0, 4.0], [5.0, 5.0]], (10, 10), "outside the image"),
        ([[1.0, 1.0], [2.0, 4.0], [1.0, 1.0], [7.0, 2.0]], (10, 10), "duplicate"),
        ([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]], (10, 10), "collinear"),
        ([[1.0, 1.0], [2.0, 4.0], [5.0, 5.0]], (10, 0), "shape"),
        ([[1.0, 1.0], [2.0, 4.0], [5.0, 5.0]], (10, 10, 3), "shape"),
    ],
)
def test_bad_centres_raise(centres, shape, match):
    with pytest.raises(ValueError, match=match):
        FibreBundle(centres, shape)


def test_bad_centre_types():
    with pytest.raises(TypeError, match="numeric"):
        FibreBundle(np.array([["a", "b"], ["c", "d"], ["e", "f"]]), (10, 10))
    with pytest.raises(TypeError, match="shape"):
        FibreBundle(np.zeros((3, 2)), 10)
    with pytest.raises(ValueError, match="fov_margin"):
        FibreBundle([[1.0, 1.0], [2.0, 4.0], [5.0, 5.0]], (10, 10), fov_margin=0)


# ---------------------------------------------------------------- labels / FOV
def test_labels_are_nearest_centre_inside_fov(bundle):
    labels = bundle.labels
    assert labels.shape == bundle.shape and labels.dtype == np.int32
    assert not labels.flags.writeable
    yy, xx = np.mgrid[0 : bundle.shape[0], 0 : bundle.shape[1]]
    pix = np.column_stack([yy.ravel(), xx.ravel()]).astype(float)
    d2 = ((pix[:, None, :] - bundle.centres[None, :, :]) ** 2).sum(-1)
    nearest = d2.argmin(axis=1)
    dist = np.sqrt(d2.min(axis=1))
    inside = in_hull(bundle.centres, pix)
    expected_fov = inside & (dist <= 1.5 * bundle.spacing)
    np.testing.assert_array_equal(bundle.fov_mask.ravel(), expected_fov)
    np.testing.assert_array_equal(labels.ravel()[expected_fov], nearest[expected_fov])
    assert (labels.ravel()[~expected_fov] == -1).all()
    np.testing.assert_array_equal(bundle.fov_mask, labels >= 0)
    assert bundle.cell_sizes.sum() == bundle.fov_mask.sum()


def test_fov_margin_limits_distance_to_centres():
    # a sparse corner of centres: the hull holds pixels far from every centre
    c = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 30.0], [30.0, 0.0]])
    b = FibreBundle(c, (31, 31), fov_margin=1.5)
    dist, _ = cKDTree(c).query(np.argwhere(b.fov_mask))
    assert b.spacing == pytest.approx(1.0)
    assert dist.max() <= 1.5 * b.spacing + 1e-9
    wide = FibreBundle(c, (31, 31), fov_margin=100.0)
    assert wide.fov_mask.sum() > b.fov_mask.sum()


# ---------------------------------------------------------------- reconstruct
def test_reconstruct_reproduces_linear_functions(bundle):
    a, b_, c = 0.37, -0.21, 5.0
    values = a * bundle.centres[:, 0] + b_ * bundle.centres[:, 1] + c
    image = bundle.reconstruct(values)
    assert image.dtype == np.float32 and image.shape == bundle.shape
    yy, xx = np.mgrid[0 : bundle.shape[0], 0 : bundle.shape[1]]
    truth = a * yy + b_ * xx + c
    inside = in_hull(bundle.centres, np.column_stack([yy.ravel(), xx.ravel()]).astype(float))
    inside = inside.reshape(bundle.shape)
    np.testing.assert_allclose(image[inside], truth[inside], rtol=1e-5, atol=1e-5)
    assert (image[~inside] == 0).all()
    assert inside.sum() > 0.5 * inside.size


def test_reconstruct_stacks_and_shapes(bundle):
    rng = np.random.default_rng(0)
    v = rng.random((2, 3, bundle.n_fibres))
    v_before = v.copy()
    out = bundle.reconstruct(v)
    assert out.shape == (2, 3, *bundle.shape) and out.dtype == np.float32
    assert out.flags.c_contiguous
    for i in range(2):
        for j in range(3):
            np.testing.assert_allclose(out[i, j], bundle.reconstruct(v[i, j]), atol=1e-6)
    np.testing.assert_array_equal(v, v_before)
    np.testing.assert_array_equal(bundle.reconstruct(list(v[0, 0])), out[0, 0])


@pytest.mark.parametrize("bad_len", [0, 1, -1])
def test_reconstruct_wrong_length(bundle, bad_len):
    n = bundle.n_fibres + bad_len if bad_len else 0
    with pytest.raises(ValueError, match=f"N = {bundle.n_fibres}"):
        bundle.reconstruct(np.ones(n))
    with pytest.raises(ValueError, match="values"):
        bundle.reconstruct(np.float64(1.0))


def test_tli_matrix_rows_are_partitions_of_unity(bundle):
    mat = bundle.tli_matrix
    assert mat.shape == (bundle.shape[0] * bundle.shape[1], bundle.n_fibres)
    sums = np.asarray(mat.sum(axis=1)).ravel()
    nonzero = sums > 0
    np.testing.assert_allclose(sums[nonzero], 1.0, rtol=1e-6)
    assert np.diff(mat.indptr).max() <= 3


# ---------------------------------------------------------------- vectorize
def test_vectorize_constant_and_brute_force(bundle):
    np.testing.assert_allclose(bundle.vectorize(np.full(bundle.shape, 2.5)), 2.5, rtol=1e-6)
    rng = np.random.default_rng(1)
    img = rng.random(bundle.shape)
    img_before = img.copy()
    got = bundle.vectorize(img)
    assert got.shape == (bundle.n_fibres,) and got.dtype == np.float32
    labels = bundle.labels
    expected = np.array([img[labels == k].mean() for k in range(bundle.n_fibres)])
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_array_equal(img, img_before)


def test_vectorize_stack_and_bad_shapes(bundle):
    rng = np.random.default_rng(2)
    stack = rng.random((4, *bundle.shape)).astype(np.float32)
    out = bundle.vectorize(stack)
    assert out.shape == (4, bundle.n_fibres)
    np.testing.assert_allclose(out[3], bundle.vectorize(stack[3]), rtol=1e-6)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        bundle.vectorize(np.ones((10, 10)))
    with pytest.raises(ValueError, match="RGB"):
        bundle.vectorize(np.indices((*bundle.shape, 3)).sum(0))
    with pytest.raises(TypeError, match="numeric"):
        bundle.vectorize(np.full(bundle.shape, "a"))


def test_vectorize_empty_cell_is_nan():
    # four centres on pixels and one between them: no pixel is nearest to the middle one
    c = np.array([[5.0, 5.0], [5.0, 6.0], [6.0, 5.0], [6.0, 6.0], [5.5, 5.5], [0.0, 0.0]])
    b = FibreBundle(c, (12, 12), fov_margin=20)
    v = b.vectorize(np.ones((12, 12)))
    assert np.isnan(v[4])
    assert np.isfinite(np.delete(v, 4)).all()


# ---------------------------------------------------------------- sample
def test_sample_inverts_reconstruct(bundle):
    rng = np.random.default_rng(3)
    v = rng.random(bundle.n_fibres).astype(np.float32)
    np.testing.assert_allclose(bundle.sample(bundle.reconstruct(v)), v, atol=2e-6)
    stack = rng.normal(size=(2, 3, bundle.n_fibres)).astype(np.float32)
    out = bundle.sample(bundle.reconstruct(stack))
    assert out.shape == stack.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, stack, atol=5e-6)


def test_sample_bilinear_on_pixel_centres_and_planes():
    c = np.array([[2.0, 3.0], [7.0, 1.0], [5.0, 8.0], [1.0, 9.0]])
    b = FibreBundle(c, (10, 10))
    img = np.arange(100.0).reshape(10, 10)
    expected = img[c[:, 0].astype(int), c[:, 1].astype(int)]
    np.testing.assert_allclose(b.sample(img, method="bilinear"), expected, rtol=1e-6)
    # both definitions give a plane's value at every centre (off-grid centres too)
    c2 = hexagonal_lattice((30, 30), 3.0, jitter=0.2, seed=5)
    b2 = FibreBundle(c2, (30, 30))
    yy, xx = np.mgrid[0:30, 0:30]
    plane = 0.5 * yy - 0.25 * xx + 3
    truth = 0.5 * c2[:, 0] - 0.25 * c2[:, 1] + 3
    np.testing.assert_allclose(b2.sample(plane), truth, atol=1e-4)
    inner = (c2.min(axis=1) >= 0) & (c2.max(axis=1) <= 29)
    np.testing.assert_allclose(b2.sample(plane, method="bilinear")[inner], truth[inner], atol=1e-4)
    with pytest.raises(ValueError, match="method"):
        b2.sample(plane, method="cubic")


# ---------------------------------------------------------------- core values
def test_core_values_flat_field(bundle):
    rng = np.random.default_rng(4)
    bg = 10 + rng.random(bundle.shape)
    raw = 2.5 * bg
    vals = bundle.core_values(raw, background=bg)
    assert vals.shape == (bundle.n_fibres,) and vals.dtype == np.float32
    np.testing.assert_allclose(vals, 2.5, rtol=1e-6)
    np.testing.assert_allclose(bundle.core_values(np.full(bundle.shape, 7.0)), 7.0)
    stack = np.stack([raw, 2 * raw])
    out = bundle.core_values(stack, background=bg)
    assert out.shape == (2, bundle.n_fibres)
    np.testing.assert_allclose(out[1], 5.0, rtol=1e-6)
    # an all-zero or all-NaN background would give an all-zero result: refused
    with pytest.raises(ValueError, match="background is all zero"):
        bundle.core_values(raw, background=np.zeros(bundle.shape))
    with pytest.raises(ValueError, match="background contains NaN"):
        bundle.core_values(raw, background=np.full(bundle.shape, np.nan))
    with pytest.raises(ValueError, match="background is all zero"):
        FibreBundle.detect(raw, background=np.zeros(bundle.shape))


def test_core_values_radius_means_disc():
    c = np.array([[5.0, 5.0], [5.0, 14.0], [14.0, 9.0]])
    b = FibreBundle(c, (20, 20))
    img = np.zeros((20, 20))
    img[5, 5] = 5.0  # only the centre pixel of fibre 0 is bright
    np.testing.assert_allclose(b.core_values(img, radius=0.5)[0], 5.0)
    np.testing.assert_allclose(b.core_values(img, radius=1.0)[0], 1.0)  # 5 pixels
    with pytest.raises(ValueError, match="radius"):
        b.core_values(img, radius=-1)
    with pytest.raises(ValueError, match="background"):
        b.core_values(img, background=np.ones((2, 20, 20)))
    with pytest.raises(ValueError, match=r"\(T, H, W\)"):
        b.core_values(np.ones((2, 2, 20, 20)))


# ---------------------------------------------------------------- CSV, crop
def test_csv_round_trip(tmp_path, bundle):
    path = tmp_path / "centres.csv"
    bundle.save_csv(path)
    assert path.read_text().splitlines()[0] == "y,x"
    again = FibreBundle.from_csv(path, bundle.shape)
    np.testing.assert_array_equal(again.centres, bundle.centres)
    assert [p.name for p in tmp_path.iterdir()] == ["centres.csv"]  # no temp file left


def test_csv_napari_points_and_headerless(tmp_path):
    c = np.array([[1.5, 2.0], [8.25, 3.0], [4.0, 9.5], [6.0, 6.0]])
    napari_csv = tmp_path / "points.csv"
    rows = ["index,axis-0,axis-1"] + [f"{i},{y},{x}" for i, (y, x) in enumerate(c)]
    napari_csv.write_text("\n".join(rows) + "\n")
    np.testing.assert_array_equal(FibreBundle.from_csv(napari_csv, (10, 10)).centres, c)
    plain = tmp_path / "plain.csv"
    plain.write_text("\n".join(f"{y},{x}" for y, x in c))
    np.testing.assert_array_equal(FibreBundle.from_csv(plain, (10, 10)).centres, c)
    swapped = tmp_path / "xy.csv"
    swapped.write_text("x,y\n" + "\n".join(f"{x},{y}" for y, x in c))
    np.testing.assert_array_equal(FibreBundle.from_csv(swapped, (10, 10)).centres, c)


def test_csv_written_by_napari_points_writer(tmp_path):
    writer = pytest.importorskip("napari_builtins.io._write")
    c = np.array([[1.5, 2.0], [8.25, 3.0], [4.0, 9.5], [6.0, 6.0]])
    meta = {"properties": {"label": np.array(["a", "b", "c", "d"])}}
    path = writer.napari_write_points(str(tmp_path / "napari_points.csv"), c, meta)
    np.testing.assert_array_equal(FibreBundle.from_csv(path, (10, 10)).centres, c)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "a,b\n1,2\n",
        "y,x\n1,2\n3,__import__('os')\n",
        "y,x\n1\n",
        "y,x\n",
        "index,axis-0\n0,1\n",
    ],
)
def test_csv_bad_content(tmp_path, text):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match="bad.csv"):
        FibreBundle.from_csv(path, (10, 10))


def test_csv_unreadable(tmp_path):
    with pytest.raises(ValueError, match="cannot read"):
        FibreBundle.from_csv(tmp_path / "missing.csv", (10, 10))
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81\x00garbage")
    with pytest.raises(ValueError):
        FibreBundle.from_csv(binary, (10, 10))


def test_crop(bundle):
    sub = bundle.crop(10, 12, 20, 24)
    assert sub.shape == (20, 24)
    c = bundle.centres - [10, 12]
    keep = (c[:, 0] >= -0.5) & (c[:, 0] <= 19.5) & (c[:, 1] >= -0.5) & (c[:, 1] <= 23.5)
    np.testing.assert_allclose(sub.centres, c[keep])
    with pytest.raises(ValueError, match="positive"):
        bundle.crop(0, 0, 0, 5)


# ---------------------------------------------------------------- detection
def test_detect_simulated_lattice():
    rng = np.random.default_rng(7)
    truth = hexagonal_lattice((256, 256), 6.0, jitter=0.1, fov="circle", seed=7)
    img = render_cores((256, 256), truth, 1.0, rng.uniform(0.6, 1.0, len(truth)))
    img = img + 0.1 + rng.normal(0, 0.02, img.shape)
    img_before = img.copy()
    found = FibreBundle.detect(img)
    np.testing.assert_array_equal(img, img_before)
    d, _ = cKDTree(found.centres).query(truth)
    assert (d < 0.5).mean() >= 0.99
    d_false, _ = cKDTree(truth).query(found.centres)
    assert (d_false >= 0.5).mean() <= 0.01
    assert estimate_spacing(img) == pytest.approx(6.0, rel=0.05)
    given = FibreBundle.detect(img, spacing=6.0)
    assert abs(given.n_fibres - len(truth)) <= 0.01 * len(truth)


def test_detect_uses_background():
    rng = np.random.default_rng(8)
    truth = hexagonal_lattice((128, 128), 6.0, jitter=0.05, seed=8)
    bg = render_cores((128, 128), truth, 1.0, np.ones(len(truth))) + 0.05
    # the object hides the cores in the left half of the data frame
    raw = bg * np.where(np.arange(128) < 64, 0.0, 1.0)[None, :] + rng.normal(0, 1e-3, bg.shape)
    found = FibreBundle.detect(raw, background=bg)
    d, _ = cKDTree(found.centres).query(truth)
    assert (d < 0.5).mean() >= 0.99
    with pytest.raises(ValueError, match="background shape"):
        FibreBundle.detect(raw, background=bg[:64])


@pytest.mark.parametrize(
    ("frame", "exc", "match"),
    [
        (np.indices((64, 64, 3)).sum(0), ValueError, "RGB"),
        (np.ones((2, 64, 64)), ValueError, "2-D"),
        (np.full((64, 64), np.nan), ValueError, "NaN"),
        (np.ones((4, 4)), ValueError, "too small"),
        (np.ones((64, 64)), ValueError, "periodic|core"),
        (np.full((64, 64), "x"), TypeError, "numeric"),
    ],
)
def test_detect_bad_frames(frame, exc, match):
    with pytest.raises(exc, match=match):
        FibreBundle.detect(frame)


def test_detect_bad_spacing_and_mask():
    img = np.random.default_rng(0).random((64, 64))
    with pytest.raises(ValueError, match="spacing"):
        FibreBundle.detect(img, spacing=0.5)
    with pytest.raises(ValueError, match="mask"):
        FibreBundle.detect(img, spacing=4, mask=np.ones((8, 8), bool))


def _fraction_on_local_maxima(frame, centres, sigma, tol=1.0):
    smooth = ndimage.gaussian_filter(frame.astype(float), sigma)
    maxima = np.argwhere(ndimage.maximum_filter(smooth, size=3) == smooth)
    d, _ = cKDTree(maxima).query(centres)
    return float((d <= tol).mean())


# measured on the PyFibreBundle frames (see docs/fibres.md); tolerances allow small changes
REAL_CASES = [
    ("usaf1.tif", "usaf1_background.tif", 27944, 4.93),
    ("tissue_paper.tif", "tissue_paper_back.tif", 27982, 4.77),
]


@pytest.fixture(scope="module")
def detect_real(load_frame):
    """``(raw_name, bg_name) -> FibreBundle``, each detection run once per module."""
    cache: dict[tuple[str, str | None], FibreBundle] = {}

    def _detect(raw_name: str, bg_name: str | None = None) -> FibreBundle:
        key = (raw_name, bg_name)
        if key not in cache:
            bg = None if bg_name is None else load_frame(bg_name)
            cache[key] = FibreBundle.detect(load_frame(raw_name), background=bg)
        return cache[key]

    return _detect


@pytest.mark.parametrize(("raw_name", "bg_name", "n_expected", "nn_spacing"), REAL_CASES)
def test_detect_real_frames(load_frame, detect_real, raw_name, bg_name, n_expected, nn_spacing):
    raw, bg = load_frame(raw_name), load_frame(bg_name)
    found = detect_real(raw_name, bg_name)
    assert found.shape == raw.shape == (960, 1280)
    assert found.n_fibres == pytest.approx(n_expected, rel=0.02)
    assert found.spacing == pytest.approx(nn_spacing, abs=0.1)
    # consistent with the lattice seen in the Fourier spectrum: cores per FOV area
    fov = bundle_fov(bg)
    s = estimate_spacing(bg, mask=fov)
    assert 4.9 < s < 5.5
    cell = np.sqrt(3) / 2 * s**2
    assert found.n_fibres == pytest.approx(found.fov_mask.sum() / cell, rel=0.03)
    # the detected centres sit on the cores of the frame they were found on
    assert _fraction_on_local_maxima(bg, found.centres, 0.75) >= 0.99
    # the bundle's FOV is the bundle's face (bundle_fov reaches a few px beyond the cores)
    assert (found.fov_mask & ~fov).sum() < 0.002 * found.fov_mask.sum()
    overlap = (found.fov_mask & fov).sum() / (found.fov_mask | fov).sum()
    assert overlap > 0.9
    # one filled region: no pinholes
    assert not (ndimage.binary_fill_holes(found.fov_mask) & ~found.fov_mask).any()


def test_detect_real_frame_without_background(load_frame, detect_real):
    raw = load_frame("usaf1.tif")
    found = detect_real("usaf1.tif")
    assert 23000 < found.n_fibres < 27500  # the black bars of the target hide some cores
    assert found.spacing == pytest.approx(4.93, abs=0.1)
    assert _fraction_on_local_maxima(raw, found.centres, 0.75) >= 0.95
    values = found.core_values(raw)
    assert values.shape == (found.n_fibres,) and np.isfinite(values).all()
    # a crop inside the bundle (no dark surround) gives the same cores
    bg = load_frame("usaf1_background.tif")
    window = (380, 540, 160, 160)
    part = FibreBundle.detect(bg[380:540, 540:700])
    ref = detect_real("usaf1.tif", "usaf1_background.tif").crop(*window)  # found on bg
    d, _ = cKDTree(part.centres).query(ref.centres)
    assert (d < 0.5).mean() >= 0.97
    assert part.n_fibres == pytest.approx(ref.n_fibres, rel=0.05)


def test_detect_dense_calibration_frame(load_frame):
    raw = load_frame("raw_example_calib.tif")
    found = FibreBundle.detect(raw)
    assert found.shape == (750, 750)
    assert 3.2 < found.spacing < 3.7
    fov = bundle_fov(raw)
    expected = found.fov_mask.sum() / (np.sqrt(3) / 2 * estimate_spacing(raw, mask=fov) ** 2)
    assert 0.9 * expected < found.n_fibres < 1.05 * expected
    assert not (ndimage.binary_fill_holes(found.fov_mask) & ~found.fov_mask).any()
    assert _fraction_on_local_maxima(raw, found.centres, 0.5) >= 0.95


def test_save_csv_has_the_usual_file_permissions(tmp_path):
    import os

    bundle = FibreBundle(np.array([[2.0, 2.0], [2.0, 9.0], [9.0, 5.0]]), (12, 12))
    path = tmp_path / "fibres.csv"
    bundle.save_csv(path)
    umask = os.umask(0o022)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left
