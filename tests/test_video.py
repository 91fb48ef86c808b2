"""Video: simulator, registration, fusion (HR^), leave-one-out, mosaic, lattice and gains."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage import data

from napari_cycsr.metrics import psnr
from napari_cycsr.simulate import PCLEVideo, simulate_pcle_video
from napari_cycsr.video import (
    FusionInfo,
    Mosaic,
    Registration,
    VideoProgress,
    estimate_fov,
    estimate_gains,
    estimate_lattice,
    estimate_video_spacing,
    frame_values,
    fuse,
    fuse_video,
    iter_register,
    leave_one_out,
    mosaic,
    neighbour_gains,
    pooled_interpolation,
    register,
)


def _err(reg, vid, frames=None):
    e = np.hypot(*(reg.shifts - vid.shifts).T)
    return e if frames is None else e[frames]


@pytest.fixture(scope="module")
def vid() -> PCLEVideo:
    """8 frames of a textured scene (grass), sub-pixel random walk, noise 0.01."""
    return simulate_pcle_video(data.grass()[:150, :150], 8, seed=3, step=0.7, noise=0.01)


@pytest.fixture(scope="module")
def reg(vid) -> Registration:
    return register(vid.lr, vid.bundle)


# ---------------------------------------------------------------------- simulator


def test_simulator_convention_and_outputs():
    v = simulate_pcle_video(data.grass()[:120, :120], 3, seed=2, step=2.0)
    assert v.frames.shape == v.lr.shape and v.frames.shape[0] == 3
    assert v.values.shape == (3, v.bundle.n_fibres) == v.clean_values.shape
    assert v.shifts.shape == (3, 2) and np.all(v.shifts[0] == 0) and np.all(v.angles == 0)
    assert v.raw is None and v.background is None
    np.testing.assert_array_equal(v.hr, v.frames[0])
    # the scene point at q in frame 0 is at q + shift in frame t
    s = v.shifts[2]
    yy, xx = np.mgrid[30:70, 30:70].astype(float)
    moved = ndimage.map_coordinates(v.frames[2].astype(float), [yy + s[0], xx + s[1]], order=3)
    assert (
        np.abs(moved - v.frames[0][30:70, 30:70]).mean()
        < 0.2 * np.abs(v.frames[2][30:70, 30:70] - v.frames[0][30:70, 30:70]).mean()
    )
    # TLI of the values, clean values are the cell means of the truth
    np.testing.assert_allclose(v.lr, v.bundle.reconstruct(v.values), atol=1e-6)
    np.testing.assert_allclose(v.clean_values, v.bundle.vectorize(v.frames), atol=1e-5)


def test_simulator_gains_noise_raw_rotation_and_seed():
    v = simulate_pcle_video(
        data.camera()[:140, :140],
        4,
        seed=5,
        spacing=5.0,
        gain_sd=0.2,
        noise=0.0,
        raw=True,
        rotation=0.02,
    )
    np.testing.assert_allclose(v.values, v.clean_values * v.gains, rtol=1e-5, atol=1e-6)
    assert abs(np.std(v.gains) - 0.2) < 0.05 and v.gains.min() >= 0.1
    assert v.raw.shape == v.lr.shape and v.background.shape == v.bundle.shape
    assert np.any(v.angles[1:] != 0)
    again = simulate_pcle_video(
        data.camera()[:140, :140],
        4,
        seed=5,
        spacing=5.0,
        gain_sd=0.2,
        noise=0.0,
        raw=True,
        rotation=0.02,
    )
    np.testing.assert_array_equal(v.values, again.values)
    given = simulate_pcle_video(
        data.camera()[:100, :100], 3, shifts=[[0, 0], [1.5, -2.0], [3.0, 0.25]], shape=(80, 80)
    )
    np.testing.assert_array_equal(given.shifts, [[0, 0], [1.5, -2.0], [3.0, 0.25]])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_frames": 0}, "n_frames"),
        ({"step": -1.0}, "step"),
        ({"shifts": [[1, 0], [0, 0]], "n_frames": 2}, "reference"),
        ({"shifts": [[0, 0]], "n_frames": 2}, "shape"),
        ({"step": 30.0, "n_frames": 6}, "too small|leaves the scene"),
    ],
)
def test_simulator_bad_input(kwargs, match):
    args = {"n_frames": 3, **kwargs}
    n = args.pop("n_frames")
    with pytest.raises(ValueError, match=match):
        simulate_pcle_video(data.camera()[:64, :64], n, **args)


# ---------------------------------------------------------------------- registration


def test_register_tli_subpixel(vid, reg):
    assert isinstance(reg, Registration)
    assert reg.shifts.shape == (8, 2) and reg.confidence.shape == (8,)
    err = _err(reg, vid)[1:]
    assert np.median(err) < 0.1 and err.max() < 0.3
    assert reg.good.all() and reg.confidence[0] == 1.0 and (reg.confidence > 0.8).all()
    assert reg.reference == 0 and np.all(reg.angles == 0)
    rows = reg.table()
    assert rows[3]["frame"] == 3 and rows[3]["dy"] == pytest.approx(reg.shifts[3, 0])


def test_register_reference_and_relative(vid, reg):
    other = register(vid.lr, vid.bundle, reference=3)
    truth = vid.shifts - vid.shifts[3]
    assert np.median(np.hypot(*(other.shifts - truth).T)) < 0.1
    rel = reg.relative_to(3)
    np.testing.assert_allclose(rel.shifts, reg.shifts - reg.shifts[3], atol=1e-12)
    assert rel.reference == 3


def test_register_raw_frames_with_and_without_background():
    v = simulate_pcle_video(
        data.camera()[:260, :260],
        5,
        seed=2,
        spacing=5.0,
        raw=True,
        noise=0.01,
        gain_sd=0.1,
        step=1.5,
    )
    with_bg = register(v.raw, v.bundle, background=v.background)
    tli = register(v.bundle.reconstruct(v.values / v.gains), v.bundle)
    assert np.median(_err(with_bg, v)[1:]) < max(0.25, 1.5 * np.median(_err(tli, v)[1:]))
    auto_raw = frame_values(v.raw[:1], v.bundle)  # "auto" sees the dark cladding
    np.testing.assert_allclose(auto_raw, v.bundle.core_values(v.raw[:1]), atol=1e-6)
    np.testing.assert_allclose(
        frame_values(v.lr[:1], v.bundle), v.bundle.sample(v.lr[:1]), atol=1e-6
    )
    no_bg = register(v.raw, v.bundle)  # the cores' fixed pattern pulls towards zero
    assert np.median(_err(no_bg, v)[1:]) < 1.5


def test_register_without_bundle_estimates_fov_and_spacing():
    v = simulate_pcle_video(data.camera()[:260, :260], 5, seed=2, spacing=4.0, step=1.5)
    fov = estimate_fov(v.lr)
    assert (fov == v.bundle.fov_mask).mean() > 0.97
    r = register(v.lr)
    assert abs(r.spacing - 4.0) < 0.2  # hexagonal spacing of the lattice
    assert np.median(_err(r, v)[1:]) < 0.15


def test_register_rotation():
    v = simulate_pcle_video(data.camera()[:200, :200], 4, seed=3, rotation=0.02, step=1.0)
    r = register(v.lr, v.bundle, rotation=True)
    assert np.median(_err(r, v)[1:]) < 0.1
    assert np.abs(np.degrees(r.angles - v.angles)).max() < 0.05


def test_bad_frames_get_low_confidence(vid):
    lr = vid.lr.copy()
    rng = np.random.default_rng(0)
    blank = np.full(vid.bundle.n_fibres, 0.5) + 0.01 * rng.standard_normal(vid.bundle.n_fibres)
    lr[3] = vid.bundle.reconstruct(blank)
    blurred = ndimage.gaussian_filter(vid.frames[5], 2 * vid.bundle.spacing)
    lr[5] = vid.bundle.reconstruct(vid.bundle.vectorize(blurred))
    r = register(lr, vid.bundle)
    assert not r.good[3] and not r.good[5]
    assert r.good[[0, 1, 2, 4, 6, 7]].all()
    assert np.median(_err(r, vid, [1, 2, 4, 6, 7])) < 0.1
    # fusion leaves them out, and says so
    _, info = fuse(frame_values(lr, vid.bundle), vid.bundle, r, return_info=True)
    assert set(info.left_out) == {3, 5} and 3 not in info.frames


def test_chain_through_anchors_for_a_drifting_video():
    v = simulate_pcle_video(
        data.camera(), 24, seed=5, step=0.3, drift=(3.0, 2.5), shape=(160, 160), noise=0.01
    )
    r = register(v.lr, v.bundle)
    assert len(set(r.anchors.tolist())) >= 2  # the anchor moved on
    assert r.good.all() and np.median(_err(r, v)[1:]) < 0.1
    far = register(v.lr, v.bundle, chain=False)
    assert not far.good[-1]  # the last frame no longer overlaps the reference


def test_iter_register_progress_and_stop(vid):
    events = []
    gen = iter_register(vid.lr, vid.bundle)
    for event in gen:
        events.append(event)
        if len(events) == 3:
            break  # stopping = no more iterating
    assert all(isinstance(e, VideoProgress) for e in events)
    assert events[0].done == 0 and events[0].total == 8 and events[-1].stage == "register"
    seen = []
    register(vid.lr, vid.bundle, progress=seen.append)
    assert seen[-1].done == seen[-1].total == 8


@pytest.mark.parametrize(
    ("frames", "kwargs", "match"),
    [
        (np.zeros((10, 10)), {}, r"\(T, H, W\)"),
        (np.zeros((2, 4, 4)), {}, "too small"),
        (np.zeros((0, 20, 20)), {}, "at least 1"),
        ("bundle", {"reference": 9}, "outside"),
        ("bundle", {"min_confidence": 2.0}, "min_confidence"),
        ("nan", {}, "NaN"),
        ("other-shape", {}, "do not match"),
    ],
)
def test_register_bad_input(vid, frames, kwargs, match):
    bundle = None
    if isinstance(frames, str):
        bundle = vid.bundle
        if frames == "nan":
            frames = vid.lr.copy()
            frames[1, 5, 5] = np.nan
        elif frames == "other-shape":
            frames = np.zeros((3, 40, 40), np.float32)
        else:
            frames = vid.lr
    with pytest.raises(ValueError, match=match):
        register(frames, bundle, **kwargs)
    before = vid.lr.copy()
    register(vid.lr[:2], vid.bundle)
    np.testing.assert_array_equal(before, vid.lr)  # inputs never modified


# ---------------------------------------------------------------------- fusion


def test_fuse_beats_pooled_interpolation_with_true_shifts(vid, reg):
    m = ndimage.binary_erosion(vid.bundle.fov_mask, iterations=6)

    def score(x):
        return psnr(x, vid.hr, mask=m, data_range=1.0)

    pooled = pooled_interpolation(vid.values, vid.bundle, vid.shifts)
    hr_hat, info = fuse(vid.values, vid.bundle, reg, return_info=True)
    assert isinstance(info, FusionInfo) and info.stopped_by == "holdout"
    assert info.frames == tuple(range(8)) and info.iterations >= 1
    assert info.residual_rms < info.initial_rms
    assert score(vid.lr[0]) < score(pooled) < score(hr_hat) - 0.5
    mean = fuse(vid.values, vid.bundle, reg, method="mean")
    assert score(mean) < score(hr_hat)
    assert hr_hat.dtype == np.float32 and hr_hat.shape == vid.bundle.shape
    assert np.all(hr_hat[info.coverage <= 0] == 0)


def test_fuse_with_a_core_aperture(vid, reg):
    full = fuse(vid.values, vid.bundle, reg, noise=None, max_iter=2)
    small = fuse(vid.values, vid.bundle, reg, noise=None, max_iter=2, aperture=0.3)
    assert small.shape == full.shape and not np.allclose(small, full)
    m = ndimage.binary_erosion(vid.bundle.fov_mask, iterations=6)
    # the simulation's cores average whole cells: the cell model fits it better
    assert psnr(full, vid.hr, mask=m, data_range=1.0) > psnr(small, vid.hr, mask=m)


def test_fuse_from_frames_values_and_noise_rule(vid, reg):
    a = fuse(vid.lr, vid.bundle, reg, kind="reconstructed")
    b = fuse(vid.values, vid.bundle, reg)
    np.testing.assert_allclose(a, b, atol=1e-4)
    known, info = fuse(vid.values, vid.bundle, reg, noise=0.01, return_info=True)
    assert info.stopped_by in ("noise", "stalled", "max_iter") and info.noise == 0.01
    m = ndimage.binary_erosion(vid.bundle.fov_mask, iterations=6)
    assert psnr(known, vid.hr, mask=m, data_range=1.0) > psnr(vid.lr[0], vid.hr, mask=m) + 1.0


def test_fuse_scale_two():
    v = simulate_pcle_video(data.camera()[60:220, 60:220], 6, seed=3, step=1.4, spacing=5.264)
    from napari_cycsr.fibres import FibreBundle

    coarse = FibreBundle((v.bundle.centres - 0.5) / 2, (v.bundle.shape[0] // 2,) * 2)
    x2 = fuse(v.values, coarse, v.shifts / 2, scale=2)
    x1 = fuse(v.values, coarse, v.shifts / 2)
    assert x2.shape == v.bundle.shape
    up = ndimage.zoom(x1, 2, order=3, grid_mode=True, mode="grid-constant")
    m = ndimage.binary_erosion(v.bundle.fov_mask, iterations=12)
    assert psnr(x2, v.hr, mask=m, data_range=1.0) > psnr(up, v.hr, mask=m, data_range=1.0) + 0.5


def test_leave_one_out_is_a_reference_without_the_frame(vid, reg):
    ref, info = leave_one_out(vid.values, vid.bundle, reg, 4, return_info=True)
    assert 4 not in info.frames and 4 in info.left_out
    m = ndimage.binary_erosion(vid.bundle.fov_mask, iterations=6)
    truth = vid.frames[4]
    assert psnr(ref, truth, mask=m, data_range=1.0) > psnr(vid.lr[4], truth, mask=m) + 1.0
    # the frame's own values do not enter: changing them changes nothing
    changed = vid.values.copy()
    changed[4] = 0.0
    np.testing.assert_array_equal(ref, leave_one_out(changed, vid.bundle, reg, 4))


def test_mosaic_covers_every_frame():
    v = simulate_pcle_video(data.camera(), 6, seed=1, step=0.5, drift=(4.0, -3.0), shape=(96, 96))
    r = register(v.lr, v.bundle)
    mos = mosaic(v.values, v.bundle, r)
    assert isinstance(mos, Mosaic)
    assert mos.image.shape[0] > 96 + 15 and mos.image.shape[1] > 96 + 10
    # the reference frame sits at -origin on the canvas; its content matches the TLI mean
    oy, ox = (-np.asarray(mos.origin)).round().astype(int)
    assert (mos.coverage > 0).sum() > v.bundle.fov_mask.sum() * 1.3
    window = mos.image[oy + 30 : oy + 60, ox + 30 : ox + 60]
    np.testing.assert_allclose(window.mean(), v.hr[30:60, 30:60].mean(), atol=0.05)
    solved = mosaic(v.values, v.bundle, r, method="solve")
    assert solved.image.shape == mos.image.shape


def test_fuse_video_sliding_window(vid, reg):
    seen = []
    out = fuse_video(vid.values, vid.bundle, reg, window=4, progress=seen.append)
    assert out.shape == vid.lr.shape and seen[-1].done == 8
    m = ndimage.binary_erosion(vid.bundle.fov_mask, iterations=6)
    for t in (0, 5, 7):
        assert psnr(out[t], vid.frames[t], mask=m, data_range=1.0) > psnr(
            vid.lr[t], vid.frames[t], mask=m, data_range=1.0
        )


def test_fuse_with_rotation_poses():
    v = simulate_pcle_video(data.camera()[:200, :200], 6, seed=3, rotation=0.015, step=0.8)
    r = register(v.lr, v.bundle, rotation=True)
    m = ndimage.binary_erosion(v.bundle.fov_mask, iterations=8)
    hr = fuse(v.values, v.bundle, r)
    assert psnr(hr, v.hr, mask=m, data_range=1.0) > psnr(v.lr[0], v.hr, mask=m) + 1.5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"shifts": np.zeros((3, 2))}, r"shape \(8, 2\)"),
        ({"scale": 0}, "scale"),
        ({"method": "magic"}, "method"),
        ({"canvas": "sky"}, "canvas"),
        ({"exclude": list(range(8))}, "no frame to fuse"),
        ({"noise": "loud"}, "noise"),
        ({"gains": np.ones(3)}, "gains"),
        ({"gains": "auto"}, "gains"),
        ({"reference": 12}, "outside"),
        ({"aperture": 0.0}, "aperture"),
    ],
)
def test_fuse_bad_input(vid, kwargs, match):
    args = {"shifts": vid.shifts, **kwargs}
    shifts = args.pop("shifts")
    with pytest.raises(ValueError, match=match):
        fuse(vid.values, vid.bundle, shifts, **args)


def test_fuse_refuses_an_unregistered_reference(vid):
    r = register(vid.lr, vid.bundle)
    bad = Registration(
        shifts=r.shifts,
        confidence=np.where(np.arange(8) == 2, 0.1, 1.0),
        angles=r.angles,
        reference=0,
        overlap=r.overlap,
        anchors=r.anchors,
    )
    with pytest.raises(ValueError, match="reference frame 2 was not registered"):
        fuse(vid.values, vid.bundle, bad, reference=2)


# ---------------------------------------------------------------------- lattice and gains


def test_spacing_and_lattice_from_reconstructed_video():
    v = simulate_pcle_video(data.grass()[:220, :220], 12, seed=2, spacing=4.0, step=1.5)
    assert estimate_video_spacing(v.lr) == pytest.approx(4.0, rel=0.05)
    est = estimate_lattice(v.lr)
    from scipy.spatial import cKDTree

    d, _ = cKDTree(v.bundle.centres).query(est.centres)
    assert (d < 0.5).mean() > 0.7  # most found cores sit on a true core


def test_gains_from_video():
    v = simulate_pcle_video(
        data.grass()[:200, :200], 12, seed=4, step=1.5, gain_sd=0.15, noise=0.01
    )
    truth = v.gains / np.median(v.gains)
    free = neighbour_gains(v.values, v.bundle)
    g = estimate_gains(v.values, v.bundle, v.shifts)
    assert g.shape == (v.bundle.n_fibres,) and np.median(g) == pytest.approx(1.0)
    assert np.std(truth / g) < 0.35 * np.std(truth)
    assert np.std(truth / g) < np.std(truth / free)
    m = ndimage.binary_erosion(v.bundle.fov_mask, iterations=6)
    plain = fuse(v.values, v.bundle, v.shifts, gains=None)
    corrected = fuse(v.values, v.bundle, v.shifts, gains=True)
    assert psnr(corrected, v.hr, mask=m, data_range=1.0) > psnr(plain, v.hr, mask=m) + 2.0
    with pytest.raises(ValueError, match="values must be"):
        neighbour_gains(v.values[:, :10], v.bundle)


def test_registration_csv_round_trip_and_errors(reg, tmp_path):
    path = tmp_path / "shifts.csv"
    reg.save_csv(path)
    back = Registration.from_csv(path)
    np.testing.assert_array_equal(back.shifts, reg.shifts)
    np.testing.assert_array_equal(back.confidence, reg.confidence)
    np.testing.assert_array_equal(back.good, reg.good)
    assert back.reference == reg.reference
    hand = tmp_path / "hand.csv"
    hand.write_text("frame,dx,dy\n1,0.5,1.5\n0,0,0\n")  # any order, only dy and dx
    mine = Registration.from_csv(hand)
    np.testing.assert_array_equal(mine.shifts, [[0, 0], [1.5, 0.5]])
    assert mine.good.all() and mine.reference == 0
    for text, match in (
        ("a,b\n1,2\n", "dy, dx"),
        ("dy,dx\n0,x\n", "bad number"),
        ("frame,dy,dx\n0,0,0\n0,1,1\n", "once each"),
    ):
        hand.write_text(text)
        with pytest.raises(ValueError, match=match):
            Registration.from_csv(hand)


# ---------------------------------------------------------------------- noise from video


def test_video_noise_is_much_closer_than_one_frames_on_texture(vid, reg):
    """On a textured scene one frame cannot tell texture from noise (several times too
    high); each frame against the fusion of the others comes much closer to the truth."""
    from napari_cycsr.consistency import estimate_noise
    from napari_cycsr.video import estimate_video_noise

    one_frame = float(estimate_noise(vid.values[0], vid.bundle)) / 0.01
    video = estimate_video_noise(vid.values, vid.bundle, reg) / 0.01
    alone = estimate_video_noise(vid.values, vid.bundle, reg, combine=False) / 0.01
    assert one_frame > 3.0
    assert 0.8 < video < 0.5 * one_frame and video <= alone + 1e-9
    # a stack registers itself: the same level as with its registration given
    from napari_cycsr.video import estimate_stack_noise

    assert estimate_stack_noise(vid.lr, vid.bundle, values=vid.values) == pytest.approx(
        estimate_video_noise(vid.values, vid.bundle, register(vid.lr, vid.bundle))
    )
    with pytest.raises(ValueError, match="at least 2 frames, got shape"):
        estimate_stack_noise(vid.lr[0], vid.bundle)
    # frames given explicitly; a stack of another size or too few frames is refused
    assert estimate_video_noise(vid.values, vid.bundle, reg, frames=[2, 5]) > 0
    with pytest.raises(ValueError, match="values has 3 frames and the registration 8"):
        estimate_video_noise(vid.values[:3], vid.bundle, reg)
    with pytest.raises(ValueError, match="not registered frames"):
        estimate_video_noise(vid.values, vid.bundle, reg, frames=[9])
    lost = Registration(**{**reg.__dict__, "confidence": np.r_[1.0, np.zeros(7)]})
    with pytest.raises(ValueError, match="at least 2 registered frames"):
        estimate_video_noise(vid.values, vid.bundle, lost)
    with pytest.raises(TypeError, match="Registration"):
        estimate_video_noise(vid.values, vid.bundle, vid.shifts)


def test_video_noise_on_a_flat_scene_is_the_noise():
    from napari_cycsr.video import estimate_video_noise

    flat = simulate_pcle_video(np.full((150, 150), 0.5), 5, seed=1, noise=0.02)
    # a flat scene gives registration nothing to lock on: use the true poses
    poses = Registration(
        shifts=flat.shifts, confidence=np.ones(5), angles=np.zeros(5), reference=0,
        overlap=np.ones(5), anchors=np.zeros(5, int), min_confidence=0.5,
        shape=flat.lr.shape[1:], spacing=flat.bundle.spacing,
    )  # fmt: skip
    level = estimate_video_noise(flat.values, flat.bundle, poses, combine=False)
    assert level == pytest.approx(0.02, rel=0.25)


def test_video_noise_fuses_only_the_nearest_frames_of_a_long_video(monkeypatch):
    """However long the video, each frame's residual comes from its 16 nearest registered
    frames (the cost of a short video); up to 17 frames that is every other frame, so the
    estimate is the same as with ``neighbours=None``."""
    import napari_cycsr.video._noise as noise_module
    from napari_cycsr.simulate import simulate_pcle_video
    from napari_cycsr.video import estimate_video_noise

    long = simulate_pcle_video(data.gravel()[:150, :150] / 255.0, 24, shape=(96, 96),
                               step=1.0, noise=0.01, seed=4)  # fmt: skip
    reg = register(long.lr, long.bundle)
    short = slice(0, 12)
    short_reg = Registration(**{
        **reg.__dict__, "shifts": reg.shifts[short], "angles": reg.angles[short],
        "confidence": reg.confidence[short], "overlap": reg.overlap[short],
        "anchors": np.minimum(reg.anchors[short], 11), "reference": 0,
    })  # fmt: skip
    every = estimate_video_noise(long.values[short], long.bundle, short_reg, neighbours=None)
    assert estimate_video_noise(long.values[short], long.bundle, short_reg) == every
    used = []
    real = noise_module.leave_one_out

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        used.append(len(out[1].frames))
        return out

    monkeypatch.setattr(noise_module, "leave_one_out", spy)
    level = estimate_video_noise(long.values, long.bundle, reg, combine=False) / 0.01
    assert used and max(used) <= 16
    used.clear()
    all_others = estimate_video_noise(long.values, long.bundle, reg, combine=False,
                                      neighbours=None) / 0.01  # fmt: skip
    assert max(used) > 16
    assert 0.7 < level < 3 and 0.7 < all_others < 3
    with pytest.raises(ValueError, match="neighbours"):
        estimate_video_noise(long.values, long.bundle, reg, neighbours=0)
