"""Tests of the benchmark scripts: the pure helpers (fast) and the --quick run (slow)."""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _bench_module(name: str):
    """Import a benchmark script (``benchmarks/`` on the path while the caller needs it)."""
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH))


def _load(name: str):
    """Import a benchmark script and take ``benchmarks/`` off the path again."""
    loading = _bench_module(name)
    module = next(loading)
    loading.close()  # runs the ``finally``: the path is restored
    return module


@pytest.fixture(scope="module")
def common():
    yield from _bench_module("_common")


@pytest.fixture(scope="module")
def peers(common):
    yield from _bench_module("bench_peers")


def test_image_splits_are_disjoint(common):
    groups = [common.TRAIN_IMAGES, common.UNPAIRED_IMAGES, common.TEST_IMAGES]
    groups.append(common.NATURAL_IMAGES)
    seen: set[str] = set()
    for g in groups:
        assert not seen & set(g), f"{set(g) & seen} appears in two roles"
        seen |= set(g)


def test_load_grey_and_crops(common):
    img = common.load_grey("astronaut", scale=0.25)  # RGB -> grey
    assert img.shape == (128, 128) and img.dtype == np.float32
    assert 0.0 <= img.min() and img.max() <= 1.0
    crops = common.crop_grid(img, 60, 10)
    assert len(crops) == 4  # a 2 x 2 grid fits
    assert np.array_equal(crops[0], img[4:64, 4:64])  # grid centred: margins (128-120)/2
    crops[0][:] = -1
    assert img.min() >= 0  # crops are copies
    with pytest.raises(ValueError, match="unknown image"):
        common.load_grey("lena")
    with pytest.raises(ValueError, match="2-D"):
        common.crop_grid(np.zeros((4, 4, 3)), 2, 1)


def test_mean_sd_fmt_and_ttest(common):
    assert common.mean_sd([1.0, 2.0, 3.0, float("nan")]) == (2.0, 1.0)
    assert common.mean_sd([5.0]) == (5.0, 0.0)
    assert common.fmt_mean_sd([], 2) == "n/a"
    assert common.fmt_mean_sd([0.5, 0.7], 2) == "0.60 ± 0.14"
    a = np.array([1.0, 2.0, 3.0, 4.0])
    t, p = common.paired_ttest(a + [0.1, 0.3, 0.2, 0.4], a)
    assert t > 0 and 0 < p < 0.05
    assert all(math.isnan(v) for v in common.paired_ttest(a + 1, a))  # constant shift
    assert common.fmt_p(1e-6) == "<0.0001" and common.fmt_p(0.0123) == "0.0123"
    assert common.fmt_p(float("nan")) == "n/a"
    with pytest.raises(ValueError, match="equal length"):
        common.paired_ttest([1, 2], [1, 2, 3])


def test_match_points(common):
    truth = np.array([[0.0, 0.0], [10.0, 10.0], [20.0, 0.0]])
    found = np.array([[0.3, 0.4], [10.0, 11.5], [40.0, 40.0], [20.0, 0.2]])
    r = common.match_points(found, truth, 1.0)
    assert (r["n_a"], r["n_b"]) == (4, 3)
    assert r["a_in_b"] == pytest.approx(0.5)  # 2 of 4 detections within 1 px
    assert r["b_in_a"] == pytest.approx(2 / 3)
    assert r["median_a_to_b"] == pytest.approx(0.35)  # median of 0.5 and 0.2
    empty = common.match_points(np.zeros((0, 2)), truth)
    assert empty["a_in_b"] == 0.0 and math.isnan(empty["median_a_to_b"])


def test_render_raw_frame_peaks_at_centres(common):
    centres = np.array([[10.3, 12.6], [25.0, 30.0]])
    frame = common.render_raw_frame(centres, [0.8, 0.4], (40, 48), core_sigma=1.5, noise=0.0)
    assert frame.shape == (40, 48) and frame.dtype == np.float32
    assert np.unravel_index(np.argmax(frame), frame.shape) == (10, 13)
    assert frame[25, 30] == pytest.approx(0.4, abs=1e-6)
    assert frame[0, 47] < 1e-6  # dark cladding far from the cores
    with pytest.raises(ValueError, match="values"):
        common.render_raw_frame(centres, [1.0], (40, 48), core_sigma=1.0)


def test_markdown_table_and_sections(common, tmp_path):
    md = common.markdown_table(["a", "b"], [[1, "x|y"], ["2", 3.5]])
    assert md.splitlines() == ["| a | b |", "| --- | --- |", "| 1 | x\\|y |", "| 2 | 3.5 |"]
    with pytest.raises(ValueError, match="cells"):
        common.markdown_table(["a"], [[1, 2]])
    text = "intro\n<!-- BEGIN t -->\nold\n<!-- END t -->\noutro\n"
    new = common.replace_section(text, "t", "new\ntable")
    assert new == "intro\n<!-- BEGIN t -->\nnew\ntable\n<!-- END t -->\noutro\n"
    assert common.replace_section(new, "t", "new\ntable") == new  # idempotent
    appended = common.replace_section("intro\n", "u", "x")
    assert appended.endswith("<!-- BEGIN u -->\nx\n<!-- END u -->\n")
    with pytest.raises(ValueError, match="malformed"):
        common.replace_section("<!-- END t -->\n<!-- BEGIN t -->", "t", "x")
    with pytest.raises(ValueError, match="section key"):
        common.replace_section("", "bad key", "x")
    doc = tmp_path / "doc.md"
    doc.write_text(text)
    common.update_markdown(doc, {"t": "A", "v": "B"})
    out = doc.read_text()
    assert (
        "old" not in out
        and "<!-- BEGIN t -->\nA\n" in out
        and out.rstrip().endswith("<!-- END v -->")
    )


def test_write_json_numpy(common, tmp_path):
    path = tmp_path / "sub" / "r.json"
    common.write_json(path, {"a": np.float32(1.5), "b": np.arange(3), "c": [np.int64(2)]})
    assert json.loads(path.read_text()) == {"a": 1.5, "b": [0, 1, 2], "c": [2]}


def test_peer_square_grid_fits_image(peers):
    centres = np.array([[100.0, 300.0], [500.0, 700.0], [300.0, 500.0]])
    g = peers._square_grid(centres, (960, 1280))
    assert (g["cy"], g["cx"]) == (300, 500)
    assert g["cy"] - g["r"] >= 0 and g["cy"] + g["r"] <= 959
    assert g["cx"] - g["r"] >= 0 and g["cx"] + g["r"] <= 1279
    stats = peers._diff_stats(
        np.array([[1.0, 2.0], [np.nan, 4.0]]),
        np.array([[1.5, 2.0], [0.0, 0.0]]),
        np.array([[True, True], [True, False]]),
    )
    assert stats["pixels"] == 2 and stats["max_abs"] == pytest.approx(0.5)


def test_peer_worker_has_no_project_imports():
    """The worker runs in a venv without napari-cycsr, torch or Qt: it must not import them."""
    src = (BENCH / "_peer_worker.py").read_text()
    for name in ("napari", "torch", "qtpy", "PyQt", "pickle"):
        assert f"import {name}" not in src and f"from {name}" not in src


def test_parse_settings():
    run = _load("run_experiments")
    errors: list[str] = []

    def error(msg: str) -> None:
        errors.append(msg)
        raise SystemExit(2)

    out = run.parse_settings(["w_vec=10", "normalise_vec=true", "preset=tiny"], error)
    assert out == (("w_vec", 10), ("normalise_vec", True), ("preset", "tiny"))
    for bad in ("w_vec", "no_such_field=1"):
        with pytest.raises(SystemExit):
            run.parse_settings([bad], error)
    assert len(errors) == 2 and "TrainConfig field" in errors[0]


@pytest.mark.slow
def test_quick_mode_end_to_end(tmp_path):
    """`run_experiments.py --quick` runs through and writes complete, finite results."""
    run = _load("run_experiments")
    assert run.main(["--quick", "--no-docs", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "experiments_quick.json").read_text())
    per = res["per_image"]
    n_test = len(res["meta"]["test_crops"])
    assert n_test >= 4
    expected = {"TLI (input)", "Wiener", "Wiener (tuned)", "sharpen", "supervised (paired)"}
    expected |= set(run.DOMAINS)
    assert expected <= set(per)
    for method, metrics in per.items():
        for key in ("ssim", "psnr", "dgcf_ref", "dgcf_lr", "cycle_error"):
            vals = np.asarray(metrics[key])
            assert vals.shape == (n_test,), (method, key)
            assert np.isfinite(vals).all(), (method, key)
    # the input's dGCF against itself is zero
    np.testing.assert_allclose(per["TLI (input)"]["dgcf_lr"], 0.0, atol=1e-9)
    # the supervised network starts as the identity (residual) and minimises the pixel error
    # against the HR, so it must not end worse than its input; Wiener deconvolution improves
    # on TLI for this fibre blur (checks that outputs and references are not mixed up)
    tli_psnr = np.mean(per["TLI (input)"]["psnr"])
    assert np.mean(per["supervised (paired)"]["psnr"]) > tli_psnr - 0.5
    assert np.mean(per["Wiener"]["psnr"]) > tli_psnr
    assert res["meta"]["best_domain"] in run.DOMAINS
    # Table 3: every class at every noise level, every method, finite per-crop metrics
    classes = res["classes"]
    assert set(classes) == {f"{c}@{n:g}" for c in run.CONTENT_CLASSES for n in run.NOISE_LEVELS}
    for entry in classes.values():
        assert set(entry["methods"]) == set(run.class_methods(["network"]))
        for metrics in entry["methods"].values():
            for key in ("psnr", "ssim", "spec", "spec_signed", "hall"):
                assert np.isfinite(metrics[key]).all() and len(metrics[key]) == 6
    for frame in res["real"].values():
        assert frame["n_fibres"] > 10_000
        assert np.isfinite([frame["gcf_lr"], frame["gcf_sr"], frame["cycle_sr"]]).all()


def test_content_classes_test_and_validation_never_overlap(common):
    for cls in common.CONTENT_CLASSES:
        test = common.class_crops(cls, "test", 128, 12)
        val = common.class_crops(cls, "validation", 128, 12)
        assert len(test) == len(val) == 12
        assert not {label for label, _ in test} & {label for label, _ in val}
        for _, crop in test + val:
            assert crop.shape == (128, 128) and crop.dtype == np.float32
            assert 0.0 <= crop.min() and crop.max() <= 1.0
        # no test crop equals a validation crop pixel for pixel (other regions or images)
        for _, a in test:
            assert not any(np.array_equal(a, b) for _, b in val)
    # the texture class is the main test set (same images as TEST_IMAGES)
    names = {label.split("#")[0] for label, _ in common.class_crops("texture", "test", 128, 4)}
    assert names == set(common.TEST_IMAGES)
    # the test split never uses an image that trains a network in run_experiments
    trained = set(common.TRAIN_IMAGES) | set(common.UNPAIRED_IMAGES) | set(common.NATURAL_IMAGES)
    for cls in common.CONTENT_CLASSES:
        for name, _, _ in common.CONTENT_CLASSES[cls]["test"]:
            assert name not in trained
    with pytest.raises(ValueError, match="content class"):
        common.class_crops("noise", "test", 128, 2)
    with pytest.raises(ValueError, match="split"):
        common.class_crops("smooth", "train", 128, 2)
    with pytest.raises(ValueError, match="too few"):
        common.class_crops("smooth", "test", 128, 200)


def test_sparse_spots_are_sparse_bright_and_seeded(common):
    a = common.sparse_spots(96, 3)
    np.testing.assert_array_equal(a, common.sparse_spots(96, 3))
    assert not np.array_equal(a, common.sparse_spots(96, 4))
    assert np.median(a) < 0.15  # dark background
    assert np.mean(a > 0.3) < 0.1 and a.max() > 0.3  # a few bright structures
    with pytest.raises(ValueError, match="size"):
        common.sparse_spots(8, 0)


def test_dead_leaves_cover_the_image_at_every_scale_and_are_seeded(common):
    a = common.dead_leaves(96, 3)
    np.testing.assert_array_equal(a, common.dead_leaves(96, 3))
    assert not np.array_equal(a, common.dead_leaves(96, 4))
    # every pixel lies under a leaf: an uncovered one would be clipped to 0.05 exactly
    assert a.dtype == np.float32 and a.min() > 0.05 and a.max() <= 0.95
    # edges at many scales: detail at the pixel scale and structures larger than 8 px
    fine = np.abs(np.diff(a, axis=1)).mean()
    coarse = a.reshape(12, 8, 12, 8).mean(axis=(1, 3)).std()
    assert fine > 0.03 and coarse > 0.05
    small = common.dead_leaves(96, 3, radii=(1.0, 2.0))
    assert small.reshape(12, 8, 12, 8).mean(axis=(1, 3)).std() < coarse / 2
    with pytest.raises(ValueError, match="size"):
        common.dead_leaves(8, 0)
    with pytest.raises(ValueError, match="radii"):
        common.dead_leaves(32, 0, radii=(3.0, 2.0))


def test_pretraining_leaves_join_the_pictures_and_a_run_keeps_its_count(
    tmp_path, monkeypatch, capsys
):
    tp = _load("train_pretrained")
    monkeypatch.setattr(tp, "LEAVES_SIZE", 48)
    base = [name for name, _ in tp.pretraining_pictures()]
    more = tp.pretraining_pictures(2)
    assert [name for name, _ in more] == base + ["leaves#6000", "leaves#6001"]
    assert more[-1][1].shape == (tp.LEAVES_SIZE, tp.LEAVES_SIZE)
    assert "2 synthetic dead-leaves" in tp._pictures_text(2)
    assert "dead-leaves" not in tp._pictures_text(0)
    assert tp._learns_from({"data": "video", "leaves": 4}) == "video + 4 dead-leaves"
    assert tp._learns_from({"data": "video"}) == "video"  # curves from before --leaves
    with pytest.raises(SystemExit):
        tp.main(["--until", "10", "--leaves", "-1"])
    monkeypatch.setattr(tp, "RESULTS", tmp_path)
    (tmp_path / "pretrained_x.json").write_text(json.dumps({"leaves": 4, "points": []}))
    with pytest.raises(SystemExit):  # resuming a run with other pictures is refused
        tp.main(["--name", "x", "--until", "10", "--leaves", "2", "--runs", str(tmp_path)])
    assert "learns from --leaves 4, not 2" in capsys.readouterr().err


def test_run_classes_and_report_on_one_crop():
    run = _load("run_experiments")
    from napari_cycsr.models import SRModel
    from napari_cycsr.simulate import simulate_pcle

    hr = np.full((64, 64), 0.3, dtype=np.float32)
    hr[20:40, 20:40] = 0.7
    sims = {(c, n): [simulate_pcle(hr, noise=n, seed=1)] for c in ("smooth",) for n in (0.01,)}
    per = run.run_classes(sims, {"network": SRModel.new("tiny")}, "cpu", lambda msg: None)
    rows = per["smooth@0.01"]["methods"]
    assert set(rows) == set(run.class_methods(["network"]))
    # the untrained residual network is the identity: its rows equal the TLI rows
    assert rows["network"]["psnr"] == pytest.approx(rows["TLI (input)"]["psnr"])
    assert rows["network + projection"]["psnr"] == pytest.approx(rows["TLI + projection"]["psnr"])
    # the truth has no detail below the fibre scale except at its edges; TLI adds none
    assert rows["TLI (input)"]["spec_signed"][0] < 0
    # the report needs every class and noise level: fill them with copies of this entry
    full = {f"{c}@{n:g}": per["smooth@0.01"] for c in run.CONTENT_CLASSES for n in run.NOISE_LEVELS}
    md = run.class_report(full, "T_nat", ["network"])
    for cls in run.CONTENT_CLASSES:
        assert f"*{cls}*" in md
    assert "Do-no-harm verdict" in md and "worse than TLI" in md


def test_pretraining_images_are_never_test_or_validation_images(common):
    used = set()
    for cls in common.CONTENT_CLASSES.values():
        for split in cls.values():
            used |= {name for name, _, _ in split}
    assert not used & set(common.PRETRAIN_IMAGES)
    for name in common.PRETRAIN_IMAGES:
        assert common.load_grey(name, scale=0.25).ndim == 2


def test_adv_table_checks_the_issue_aim():
    run = _load("run_experiments")
    rng = np.random.default_rng(0)
    n = 12
    ref = {"spec": 5 + rng.normal(0, 0.1, n), "dgcf_ref": -0.5 + rng.normal(0, 0.02, n),
           "psnr": 24 + rng.normal(0, 0.1, n)}  # fmt: skip
    jitter = rng.normal(0, 0.05, n)  # paired differences that are not all equal
    good = {"spec": ref["spec"] - 1 + jitter, "dgcf_ref": ref["dgcf_ref"] + 0.3 + jitter,
            "psnr": ref["psnr"] - 0.1 + jitter}  # fmt: skip
    costly = {**good, "psnr": ref["psnr"] - 1.0}
    per = {"no l_adv + projection": ref, "A + projection": good, "B + projection": costly}
    md = run.adv_table(per, ["A", "B"])
    lines = md.splitlines()
    assert lines[2].startswith("| A + projection") and lines[2].endswith("**yes** |")
    assert lines[3].startswith("| B + projection") and lines[3].endswith("no |")


@pytest.fixture(scope="module")
def bench_pretrained(common):
    yield from _bench_module("bench_pretrained")


def test_demo_picture_is_held_out_of_every_model_and_benchmark(common):
    """The demo's default picture is no pretraining, target, test or validation image, and
    the shipped manifest names the pictures the demo checks against."""
    from napari_cycsr import data, list_pretrained
    from napari_cycsr.demo import DEMO_IMAGE

    used = set(common.PRETRAIN_IMAGES) | set(common.NATURAL_IMAGES) | set(data.NATURAL_IMAGES)
    used |= set(common.TRAIN_IMAGES) | set(common.UNPAIRED_IMAGES) | set(common.TEST_IMAGES)
    for cls in common.CONTENT_CLASSES.values():
        for split in cls.values():
            used |= {name for name, _, _ in split}
    assert DEMO_IMAGE not in used
    shipped = list_pretrained()
    assert shipped[0]["name"] == "default"
    for entry in shipped:
        assert entry["pretrain_images"] == list(common.PRETRAIN_IMAGES)
        # a model trained on frames had the natural pictures as its unpaired target; one
        # trained on videos had its own fused frames (no picture)
        natural = list(common.NATURAL_IMAGES) if entry["data"] == "frames" else []
        assert entry["target_images"] == natural


def test_pretrained_aims_verdict(bench_pretrained):
    """The aims table: met when the result beats TLI by 1 dB and the projection by 0.3 dB
    everywhere; a class significantly below TLI breaks 'never worse'."""
    rng = np.random.default_rng(0)
    net = "pretrained:x"

    def per(gain: dict[str, float]) -> dict:
        out = {}
        for cls in bench_pretrained.CONTENT_CLASSES:
            for noise in bench_pretrained.NOISE_LEVELS:
                tli = 25 + rng.normal(0, 1, 12)
                methods = {
                    "TLI (input)": {"psnr": tli, "ssim": 0.8 + 0 * tli},
                    "TLI + projection": {"psnr": tli + 0.5, "ssim": 0.8 + 0 * tli},
                    net: {"psnr": tli + gain[cls] - 0.1, "ssim": 0.8 + 0 * tli},
                }
                shift = gain[cls] + rng.normal(0, 0.05, 12)
                methods[f"{net} + projection"] = {"psnr": tli + shift, "ssim": 0.8 + shift / 100}
                out[f"{cls}@{noise:g}"] = {"methods": methods}
        return out

    rows, met = bench_pretrained.aims(per({"texture": 2.0, "smooth": 1.5, "sparse": 1.2}), net)
    assert met == {"over TLI": True, "over projection": True, "never worse": True}
    assert [r[0] for r in rows] == list(bench_pretrained.CONTENT_CLASSES)
    assert float(rows[0][2]) == pytest.approx(2.0, abs=0.05)
    rows, met = bench_pretrained.aims(per({"texture": 2.0, "smooth": -0.4, "sparse": 0.6}), net)
    assert met == {"over TLI": False, "over projection": False, "never worse": False}
    assert rows[1][-1].startswith("PSNR at") and rows[0][-1] == "no"


def test_pretrained_real_frame_scores(bench_pretrained):
    """One frame of a simulated video against its leave-one-out reference: every method is
    scored, TLI has no added detail, and the projection moves TLI towards the reference."""
    from skimage import data

    from napari_cycsr.models import SRModel
    from napari_cycsr.simulate import simulate_pcle_video

    vid = simulate_pcle_video(data.camera()[:160, :160], 6, seed=0, noise=0.005)
    reg = vid.shifts  # the true shifts stand in for the registration
    model = SRModel.new("tiny")
    scores, images, covered = bench_pretrained.score_real_frame(
        model, vid.values, vid.bundle, reg, 2
    )
    assert list(scores) == list(bench_pretrained.REAL_METHODS)
    assert math.isnan(scores["TLI"]["gradient_ratio"])
    assert 0.3 < covered <= 1.0
    assert images["reference"].shape == vid.bundle.shape
    assert scores["TLI + projection"]["psnr"] > scores["TLI"]["psnr"]
    # how real each looks against the reference: spectrum distances and hallucination
    for row in scores.values():
        assert row["spectrum"] >= abs(row["spectrum_signed"]) - 1e-9
        assert row["hallucination"] >= 0 and np.isfinite(row["spectrum_model"])
    # whether the detail added to the TLI is the reference's: none added by the TLI itself;
    # the projection adds back part of what the fibres measured, so it agrees with it
    assert math.isnan(scores["TLI"]["detail_correlation"])
    assert 0 < scores["TLI + projection"]["detail_correlation"] <= 1
    assert math.isnan(scores["network"]["detail_correlation"])  # a new model adds nothing
    # no recorded spacing: the model band is the whole band; a model that runs on a grid half
    # as fine (it learned at half the frames' spacing) fills only the band up to 0.25
    assert scores["network"]["spectrum_model"] == scores["network"]["spectrum"]
    model.metadata["fibre_spacing"] = 0.5 * vid.bundle.spacing
    half, _, _ = bench_pretrained.score_real_frame(model, vid.values, vid.bundle, reg, 2)
    assert half["TLI"]["spectrum"] == scores["TLI"]["spectrum"]
    assert half["TLI"]["spectrum_model"] != scores["TLI"]["spectrum_model"]
    del model.metadata["fibre_spacing"]
    # several models side by side: each with its projection, after the same baselines
    import torch

    other = SRModel.new("tiny")  # a new model adds nothing: move its weights
    with torch.no_grad():
        for param in other.generator.parameters():
            param.add_(0.05 * torch.randn_like(param))
    two = {"a": model, "b": other}
    scores2, images2, _ = bench_pretrained.score_real_frame(two, vid.values, vid.bundle, reg, 2)
    assert list(scores2) == bench_pretrained.real_methods(["a", "b"])
    assert -1 <= scores2["b"]["detail_correlation"] <= 1  # moved weights add detail
    assert list(scores2) == [
        "TLI", "TLI + projection", "a", "a + projection", "b", "b + projection"
    ]  # fmt: skip
    assert scores2["TLI"] == scores["TLI"]
    assert not np.array_equal(images2["a"], images2["b"])
    # (model, super_resolve options): the self-ensemble size reaches the network
    from napari_cycsr.inference import super_resolve

    sizes = {"b x1": (other, {"ensemble": 1}), "b x8": (other, {"ensemble": 8})}
    _, images3, _ = bench_pretrained.score_real_frame(sizes, vid.values, vid.bundle, reg, 2)
    tli = images3["TLI"]
    for label, n in (("b x1", 1), ("b x8", 8)):
        expected = super_resolve(other, tli, device="cpu", mask=vid.bundle.fov_mask,
                                 spacing=vid.bundle.spacing, ensemble=n)  # fmt: skip
        np.testing.assert_allclose(images3[label], expected, atol=1e-6)
    assert not np.allclose(images3["b x1"], images3["b x8"], atol=1e-4)
    assert bench_pretrained._parse_frames("1-3,7") == [0, 1, 2, 6]
    with pytest.raises(SystemExit):
        bench_pretrained._parse_frames("0-2")


def test_pretraining_data_recipes_are_valid_and_say_what_they_learn_from(common):
    """Every ``train_pretrained.py --data`` recipe is a valid TrainConfig; the video one trains
    on fused targets (paired, pixel loss, multi-frame term) and the supervised one on the
    pixel loss alone, without a discriminator."""
    tp = _load("train_pretrained")
    from napari_cycsr.training import TrainConfig

    assert set(tp.DATA_RECIPES) == set(tp.LEARNS_FROM) == {"frames", "video", "supervised"}
    configs = {k: TrainConfig(**{**tp.DEFAULT_RECIPE, **r}) for k, r in tp.DATA_RECIPES.items()}
    assert configs["frames"].target == "images" and configs["frames"].w_pix == 0
    video = configs["video"]
    assert (video.target, video.w_pix, video.w_multi, video.w_vec) == ("paired", 1.0, 1.0, 1.0)
    sup = configs["supervised"]
    assert (sup.target, sup.w_pix, sup.w_vec, sup.w_adv, sup.w_res) == ("paired", 1, 0, 0, 0)
    assert sup.warmup > 10**6  # no discriminator step in any run
    # the snapshot shipped: the one whose worst class gains most (iteration 0 never)
    point = {"texture:validation": {"proj_dpsnr": 0.0}, "smooth:validation": {"proj_dpsnr": 0.0}}

    def at(it, tex, smo):
        return {"iteration": it, "texture:validation": {"proj_dpsnr": tex},
                "smooth:validation": {"proj_dpsnr": smo}}  # fmt: skip

    curve = {"points": [{"iteration": 0, **point}, at(500, 0.9, -0.1), at(1000, 0.4, 0.3)]}
    assert tp.best_iteration(curve) == 1000
    curve["points"].append(at(1500, 0.5, 0.35))
    assert tp.best_iteration(curve) == 1500
    # with more validation noise levels every cell counts: 1500 loses at sd 0.05 ...
    curve["points"][-1]["smooth:validation@0.05"] = {"proj_dpsnr": -0.2}
    # ... once every snapshot was scored there too (--rescore); before, the pick is refused
    with pytest.raises(SystemExit, match="--rescore"):
        tp.best_iteration(curve)
    curve["points"][1]["smooth:validation@0.05"] = {"proj_dpsnr": 0.0}
    curve["points"][2]["smooth:validation@0.05"] = {"proj_dpsnr": 0.1}
    assert tp.best_iteration(curve) == 1000
    with pytest.raises(SystemExit):
        tp.best_iteration({"points": [{"iteration": 0, **point}]})
    assert tp._without_until(["--data", "video", "--until", "800", "--every", "100"]) == [
        "--data", "video", "--every", "100"
    ]  # fmt: skip
    assert tp._without_until(["--until=5", "--name", "x"]) == ["--name", "x"]
    assert tp._without_until(["--runs", "/tmp/r", "--name", "x", "--runs=/a"]) == ["--name", "x"]
    assert tp._portable("python benchmarks/train_pretrained.py --name v --runs /w/r --every 5") == (
        "python benchmarks/train_pretrained.py --name v --every 5"
    )


@pytest.fixture(scope="module")
def bench_adversarial(common):
    yield from _bench_module("bench_adversarial")


def _adv_result(mod, arms: dict, split: str = "validation") -> dict:
    """A results dict as bench_adversarial writes it, with made-up per-crop scores."""
    def scores(shift: float, spec: float) -> dict:
        per = {}
        for key in ("texture@0.01", "smooth@0.01"):
            crops = np.arange(4, dtype=float)
            per[key] = {
                "proj_dpsnr": list(0.5 + shift * (1 + 0.1 * crops)),
                "proj_dssim": list(0.01 + 0 * crops),
                "proj_spec_abs": list(spec * (1 + 0.01 * crops)),
                "proj_spec": list(-spec + 0 * crops), "proj_adgcf": list(0.3 + 0.01 * crops),
                "proj_hall": list(1e-3 + 0 * crops), "tli_spec_abs": list(9 + 0 * crops),
                "tli_spec": list(-9 + 0 * crops), "tli_adgcf": list(0.6 + 0 * crops),
                "tli_hall": list(2e-3 + 0 * crops),
            }  # fmt: skip
        return per

    return {
        "command": f"python benchmarks/bench_adversarial.py --split {split}", "date": "d",
        "iterations": 3, "split": split, "sets": ["texture@0.01", "smooth@0.01"], "crops": 8,
        "arms": {name: {"scores": scores(*v)} for name, v in arms.items()},
    }  # fmt: skip


def test_adversarial_results_merge_in_order_and_report(bench_adversarial):
    mod = bench_adversarial
    control = {mod.CONTROL: (0.0, 8.0)}
    a = _adv_result(mod, {**control, mod.arm_name("hinge-hp", 1e-4, "natural"): (-0.2, 7.0)})
    b = _adv_result(mod, {**control, mod.arm_name("hinge-hp", 3e-5, "natural"): (-0.1, 7.5),
                          mod.arm_name("bce", 1e-3, "natural"): (-0.3, 8.1)})  # fmt: skip
    merged = mod.merge_results([a, b])
    assert list(merged["arms"]) == [
        mod.CONTROL, "bce w_adv 0.001 T_nat", "hinge-hp w_adv 3e-05 T_nat",
        "hinge-hp w_adv 0.0001 T_nat",
    ]  # fmt: skip
    text = mod.report(merged)
    row = next(line for line in text.splitlines() if line.startswith("| hinge-hp w_adv 0.0001"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # means over every crop of both sets: PSNR 0.5 - 0.2 * 1.15, spectrum 7 * 1.015
    assert cells[1:4] == ["+0.27", "+0.010", "+7.11"]
    # the arm minus the control (p of the paired t-test): spectrum -1.015, |dGCF| 0, PSNR -0.23
    assert cells[7].startswith("-1.015 (") and cells[9].startswith("-0.230 (")
    assert float(cells[7].split("(")[1].rstrip(")").lstrip("<")) < 0.01
    assert cells[8] == "+0.000 (n/a)"  # equal on every crop: no test
    # runs of other crop sets or with another control are not one table
    with pytest.raises(ValueError, match="different crop sets"):
        mod.merge_results([a, _adv_result(mod, control, split="test")])
    with pytest.raises(ValueError, match="controls"):
        mod.merge_results([a, _adv_result(mod, {mod.CONTROL: (0.5, 8.0)})])


def test_adversarial_arms_use_the_target_images_of_their_domain(bench_adversarial, common):
    mod = bench_adversarial

    class Sim:
        hr = np.zeros((8, 8))

    train = [Sim(), Sim()]
    assert len(mod.target_images("natural", train)) == len(common.NATURAL_IMAGES)
    assert len(mod.target_images("images", train)) == len(common.UNPAIRED_IMAGES)
    assert mod.target_images("paired", train)[0] is train[0].hr
    assert mod.target_images("downscaled", train) is None
    assert set(mod.DOMAINS) == {"natural", "images", "downscaled", "paired"}
    # every recipe is a valid TrainConfig, with the weights of the selection grid
    from napari_cycsr.training import TrainConfig

    for recipe, w_adv in mod.SELECT:
        TrainConfig(**mod.RECIPES[recipe], w_adv=w_adv)


def test_true_noise_report_sets_estimated_against_true(bench_pretrained):
    methods = {
        "TLI (input)": {"psnr": [20.0, 22.0]},
        "TLI + projection": {"psnr": [20.0, 22.2]},
        "TLI + projection (true noise)": {"psnr": [21.0, 23.0]},
        "net + projection": {"psnr": [20.5, 22.5]},
        "net + projection (true noise)": {"psnr": [21.5, 23.7]},
    }
    per = {"texture@0.01": {"methods": methods, "noise_estimate_ratio": [4.0, 6.0, 5.0]}}
    text = bench_pretrained.true_noise_report(per, ["net"])
    row = next(line for line in text.splitlines() if line.startswith("| texture@0.01"))
    assert [c.strip() for c in row.strip("|").split("|")] == [
        "texture@0.01", "5.0x", "+0.10 / +1.00", "+0.50 / +1.60",
    ]  # fmt: skip


def test_ensemble_report_compares_each_size_with_one_member():
    bench = _load("bench_ensemble")
    cells = {f"{c}@{n:g}": None for c in bench.CONTENT_CLASSES for n in bench.NOISE_LEVELS}
    rng = np.random.default_rng(0)
    one = {k: {"proj_dpsnr": list(rng.normal(0.5, 0.1, 6)), "proj_dssim": [0.01] * 6}
           for k in cells}  # fmt: skip
    four = {k: {"proj_dpsnr": [x + 0.2 + rng.normal(0, 0.01) for x in v["proj_dpsnr"]],
                "proj_dssim": [0.02] * 6} for k, v in one.items()}  # fmt: skip
    md = bench.report({"m": {"1": one, "4": four}}, [1, 4])
    rows = [line for line in md.splitlines() if line.startswith("| `m`")]
    assert len(rows) == 2
    assert rows[0].count("(") == 0  # the reference row has no test against itself
    assert rows[1].count("(<0.0001)") == len(cells)  # +0.2 dB on every crop
    mean = np.mean([np.mean(v["proj_dpsnr"]) for v in four.values()])
    assert rows[1].rstrip(" |").endswith(f"{mean:+.2f}")


def _tiny_pretraining(monkeypatch, tmp_path):
    """train_pretrained with one 48 px picture, one validation crop and scores stubbed out,
    writing under ``tmp_path``; returns the module and the common training arguments."""
    tp = _load("train_pretrained")
    from napari_cycsr.simulate import simulate_pcle

    hr = np.random.default_rng(0).random((48, 48)).astype(np.float32)
    sim = simulate_pcle(hr, noise=0.01, seed=0)
    monkeypatch.setattr(tp, "training_data", lambda seed, leaves=0: ([sim], "one picture"))
    monkeypatch.setattr(tp, "validation_sets", lambda levels: {"texture:validation": [sim]})
    cell = dict.fromkeys(("net_dpsnr", "net_dssim", "proj_dpsnr", "proj_dssim", "proj_spec"), 0.0)
    monkeypatch.setattr(tp, "score_set", lambda model, group: dict(cell))
    monkeypatch.setattr(tp, "RESULTS", tmp_path)
    monkeypatch.setattr(tp, "PACKAGE", tmp_path / "package")
    common = ["--data", "supervised", "--every", "1", "--runs", str(tmp_path)]
    common += ["--set", "batch_size=2", "--set", "patch=16", "--set", "precision=fp32"]
    return tp, common


def test_pretraining_chunk_records_its_points_and_the_precision_that_ran(
    tmp_path, monkeypatch
):
    tp, common = _tiny_pretraining(monkeypatch, tmp_path)
    assert tp.main(["--name", "x", *common, "--until", "2"]) == 0
    curve = json.loads((tmp_path / "pretrained_x.json").read_text())
    assert [p["iteration"] for p in curve["points"]] == [0, 1, 2]
    assert {p["precision"] for p in curve["points"]} == {"fp32"}  # "auto" says what it chose
    assert (tmp_path / "x" / "snapshot_000002.safetensors").is_file()
    assert "--until" not in curve["command"]


def test_a_run_branches_from_another_and_goes_on_with_changed_settings(
    tmp_path, monkeypatch, capsys
):
    from napari_cycsr.io import load_checkpoint

    tp, common = _tiny_pretraining(monkeypatch, tmp_path)
    assert tp.main(["--name", "base", *common, "--until", "2"]) == 0
    base_curve = (tmp_path / "pretrained_base.json").read_text()
    # another --data than the base's is refused, and leaves nothing behind to resume
    with pytest.raises(SystemExit, match="--data supervised"):
        tp.main(["--name", "odd", "--branch-from", "base", "--data", "frames", "--every", "1",
                 "--runs", str(tmp_path), "--until", "3"])  # fmt: skip
    assert not (tmp_path / "odd" / "checkpoint.safetensors").exists()
    branch = ["--name", "cool", "--branch-from", "base", *common, "--set", "lr_decay=0.9"]
    assert tp.main([*branch, "--until", "4"]) == 0
    curve = json.loads((tmp_path / "pretrained_cool.json").read_text())
    assert [p["iteration"] for p in curve["points"]] == [2, 3, 4]
    assert curve["branched_from"]["run"] == "base" and curve["branched_from"]["iteration"] == 2
    assert curve["changes"] == [{"iteration": 2, "set": {"lr_decay": 0.9}}]
    assert (tmp_path / "cool" / "snapshot_000002.safetensors").is_file()  # the branch point
    _, meta = load_checkpoint(tmp_path / "cool" / "checkpoint.safetensors")
    assert meta["config"]["lr_decay"] == 0.9 and meta["iteration"] == 4
    _, meta = load_checkpoint(tmp_path / "base" / "checkpoint.safetensors")
    assert meta["config"]["lr_decay"] == 0.0 and meta["iteration"] == 2  # the base untouched
    assert (tmp_path / "pretrained_base.json").read_text() == base_curve
    # resumed again with the same settings: nothing more has changed
    capsys.readouterr()
    assert tp.main([*branch, "--until", "5"]) == 0
    assert "has its own checkpoint: resuming it" in capsys.readouterr().out
    later = json.loads((tmp_path / "pretrained_cool.json").read_text())
    assert later["changes"] == curve["changes"]
    # a tuple-valued setting read back from the curve's JSON as a list is not a change
    assert tp.settings_changed({"betas": [0.9, 0.99]}, {"betas": (0.9, 0.99)},
                               {"betas": (0.9, 0.99)}) == {}  # fmt: skip
    lineage = tp._lineage(later)
    assert "Branched from run `base` at iteration 2" in lineage and "lr_decay = 0.9" in lineage
    assert tp.export("cool", tmp_path / "cool", tmp_path / "pretrained_cool.json", 4) == 0
    entry = json.loads((tmp_path / "package" / "manifest.json").read_text())["models"][0]
    assert entry["iterations"] == 4
    steps = entry["reproduce"].split(", then ")
    assert "--name base" in steps[0] and steps[0].endswith("--until 2")
    assert "--branch-from base" in steps[1] and steps[1].endswith("--until 5")


def test_rescore_fills_only_the_missing_validation_cells(tmp_path, monkeypatch):
    tp = _load("train_pretrained")
    from napari_cycsr.io import save_model
    from napari_cycsr.models import SRModel

    for it in (0, 500):
        save_model(SRModel.new("tiny"), tmp_path / f"snapshot_{it:06d}.safetensors")
    old = {"proj_dpsnr": 0.3}
    curve = {"points": [{"iteration": 0, "texture:validation": old},
                        {"iteration": 500, "texture:validation": old,
                         "texture:validation@0.05": old}]}  # fmt: skip
    curve_file = tmp_path / "curve.json"
    curve_file.write_text(json.dumps(curve))
    scored = []
    monkeypatch.setattr(tp, "validation_sets", lambda levels: {
        "texture:validation": ["sd 0.01 crops"], "texture:validation@0.05": ["sd 0.05 crops"]
    })  # fmt: skip
    monkeypatch.setattr(tp, "score_set", lambda model, group: scored.append(group) or {"x": 1})
    assert tp.rescore(tmp_path, curve_file, [0.01, 0.05], 1) == 0
    points = json.loads(curve_file.read_text())["points"]
    assert scored == [["sd 0.05 crops"]]  # only iteration 0's missing cell was scored
    assert points[0]["texture:validation@0.05"] == {"x": 1}
    assert points[0]["texture:validation"] == old and points[1]["texture:validation@0.05"] == old
    # a snapshot without a point (a run stopped while scoring it) gets one, scored everywhere
    save_model(SRModel.new("tiny"), tmp_path / "snapshot_000700.safetensors")
    scored.clear()
    assert tp.rescore(tmp_path, curve_file, [0.01, 0.05], 1) == 0
    points = json.loads(curve_file.read_text())["points"]
    assert [p["iteration"] for p in points] == [0, 500, 700]
    assert points[2] == {"iteration": 700, "texture:validation": {"x": 1},
                         "texture:validation@0.05": {"x": 1}}  # fmt: skip
    assert len(scored) == 2
    curve = json.loads(curve_file.read_text())
    # a point that lacks a cell and whose snapshot is gone cannot be filled
    curve["points"].append({"iteration": 1000, "texture:validation": old})
    curve_file.write_text(json.dumps(curve))
    with pytest.raises(SystemExit, match="snapshot_001000"):
        tp.rescore(tmp_path, curve_file, [0.01, 0.05], 1)


def test_finetune_seeds_table_puts_runs_side_by_side(tmp_path):
    bf = _load("bench_finetune")

    def row(method, dpsnr, corr=None):
        r = {"method": method, "dpsnr_median": dpsnr, "dpsnr_worst": dpsnr - 0.1,
             "spectrum_model_median": 2.0, "spectrum_model_signed_median": -1.5}  # fmt: skip
        return r if corr is None else {**r, "detail_correlation_median": corr}

    nan = float("nan")
    runs = {
        "a.json": {"command": "python benchmarks/bench_finetune.py --real --tag adv",
                   "rows": [row("TLI", 0.0, nan), row("x", 0.7, 0.4), row("only a", 1.0)]},
        "b.json": {"command": "python benchmarks/bench_finetune.py --real --set seed=2",
                   "rows": [row("TLI", 0.0, nan), row("x", 0.5, 0.2)]},
    }  # fmt: skip
    for name, run in runs.items():
        (tmp_path / name).write_text(json.dumps(run))
    text = bf.seeds_table([tmp_path / "a.json", tmp_path / "b.json"])
    assert "seed 0:" in text and "seed 2:" in text
    lines = [ln for ln in text.splitlines() if ln.startswith("| ")]
    assert [ln.split(" | ")[0] for ln in lines[2:]] == ["| TLI", "| x"]  # common methods only
    assert "+0.70 (+0.60); 2.00 (-1.50); +0.40" in lines[3]
    assert lines[2].endswith("; - |")  # no correlation for the TLI itself


def test_precision_probe_runs_the_auto_check_in_fresh_processes(capsys):
    bp = _load("bench_precision")
    ratios = bp.probe(1)
    assert list(ratios) == ["one thread (auto)", "torch's threads"]
    assert all(len(v) == 1 and v[0] > 0 for v in ratios.values())
    out = capsys.readouterr().out
    assert out.count("processes, threshold") == 2
    with pytest.raises(SystemExit):
        bp.main(["--probe", "-1"])
