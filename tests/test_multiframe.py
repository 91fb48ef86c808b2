"""The multi-frame cycle consistency: neighbour patches, their geometry, training with it."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data

from napari_cycsr.config import TRAIN_GROUPS, TrainConfig
from napari_cycsr.data import LRPatchSampler, dihedral, undo_dihedral
from napari_cycsr.losses import voronoi_means
from napari_cycsr.simulate import simulate_pcle_video
from napari_cycsr.training import Trainer, train

UNIT = {"low": 0.0, "high": 1.0}


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    return data.brick()[:150, :150] / 255.0


def _video(scene: np.ndarray, rotation: float = 0.0, noise: float = 0.0, frames: int = 5):
    return simulate_pcle_video(
        scene, frames, shape=(112, 112), step=1.5, rotation=rotation, noise=noise, spacing=3.0,
        seed=1,
    )  # fmt: skip


def _registration(vid, good=None):
    n = len(vid.shifts)
    return SimpleNamespace(
        shifts=vid.shifts, angles=vid.angles, good=np.ones(n, bool) if good is None else good
    )


def _moved_errors(vid, scale: int, poses) -> tuple[float, float, object]:
    """Cell-mean error of the true frames moved by the grid, and left where they are."""
    sampler = LRPatchSampler(
        vid.frames, vid.bundle, patch=32, scale=scale, values=vid.clean_values, poses=[poses],
        normalisation=UNIT, fov_fraction=0.9, rng=np.random.default_rng(3),
    )  # fmt: skip
    positions = sampler.draw_positions(12)
    nb = sampler.neighbours(positions, 2)
    truth = np.stack([vid.frames[t, y : y + 32, x : x + 32] for _, t, y, x in positions])
    truth = torch.from_numpy(truth)[:, None].float()
    if scale > 1:
        truth = F.interpolate(truth, scale_factor=scale, mode="nearest")
    moved = F.grid_sample(
        truth, nb.grid, mode="bilinear", padding_mode="border", align_corners=True
    )
    err = (voronoi_means(moved, nb.cell_index, nb.n_cells) - nb.values).abs().mean()
    still = (voronoi_means(truth, nb.cell_index, nb.n_cells) - nb.values).abs().mean()
    return float(err), float(still), nb


@pytest.mark.parametrize("rotation", [0.0, 0.02])
@pytest.mark.parametrize("scale", [1, 2])
def test_neighbour_grid_carries_the_scene_into_the_neighbour_frame(scene, rotation, scale):
    vid = _video(scene, rotation=rotation)
    err, still, nb = _moved_errors(vid, scale, _registration(vid))
    # a patch at the FOV's edge may find no neighbour patch inside the FOV: most do
    assert nb.n_cells > 100 and (nb.frames >= 0).mean() >= 0.75
    # noise-free: the moved truth gives the neighbour's values back up to the bilinear
    # resampling; not moving it (or moving it the wrong way) is several times worse
    assert err < 0.004
    assert err < 0.4 * still
    wrong = dataclasses.replace(vid, shifts=-vid.shifts, angles=-vid.angles)
    err_wrong, _, _ = _moved_errors(vid, scale, _registration(wrong))
    assert err < 0.4 * err_wrong


def test_neighbour_cells_lie_inside_the_source_patch(scene):
    vid = _video(scene, rotation=0.02)
    sampler = LRPatchSampler(
        vid.lr, vid.bundle, patch=32, values=vid.values, poses=[_registration(vid)],
        fov_fraction=0.9, rng=np.random.default_rng(0),
    )  # fmt: skip
    positions = sampler.draw_positions(16)
    nb = sampler.neighbours(positions, 1)
    counted = nb.cell_index >= 0
    assert counted.any()
    assert nb.grid[counted].abs().max() <= 1.0 + 1e-6
    # one neighbour frame per patch, within the distance, never the frame itself
    assert np.all(np.abs(nb.frames - positions[:, 1]) == 1)
    # every segment belongs to the patch it says, and its value is the neighbour's
    seg_patch = nb.segment_patch.numpy()
    for b in range(len(positions)):
        ids = np.unique(nb.cell_index[b][nb.cell_index[b] >= 0].numpy())
        assert np.all(seg_patch[ids] == b)


def test_bad_frames_are_never_neighbours_and_no_registration_gives_none(scene):
    vid = _video(scene, frames=4)
    good = np.array([True, False, True, True])
    sampler = LRPatchSampler(
        vid.lr, vid.bundle, patch=32, values=vid.values, poses=[_registration(vid, good)],
        fov_fraction=0.9, rng=np.random.default_rng(0),
    )  # fmt: skip
    positions = sampler.draw_positions(40)
    nb = sampler.neighbours(positions, 2)
    assert 1 not in set(nb.frames.tolist())
    assert sampler.has_video

    plain = LRPatchSampler(vid.lr, vid.bundle, patch=32, fov_fraction=0.9)
    nb = plain.neighbours(plain.draw_positions(4), 2)
    assert not plain.has_video
    assert nb.n_cells == 0 and (nb.frames == -1).all() and (nb.cell_index == -1).all()


def test_registration_is_checked(scene):
    vid = _video(scene, frames=3)
    with pytest.raises(ValueError, match=r"shape \(3, 2\)"):
        LRPatchSampler(vid.lr, vid.bundle, patch=32, poses=[np.zeros((2, 2))], fov_fraction=0.9)
    with pytest.raises(ValueError, match="NaN"):
        LRPatchSampler(
            vid.lr, vid.bundle, patch=32, poses=[np.full((3, 2), np.nan)], fov_fraction=0.9
        )
    with pytest.raises(ValueError, match="2 registrations for 1 images"):
        LRPatchSampler(
            vid.lr, vid.bundle, patch=32, poses=[np.zeros((3, 2)), np.zeros((3, 2))],
            fov_fraction=0.9,
        )  # fmt: skip


@pytest.mark.parametrize("k", range(4))
@pytest.mark.parametrize("flip", [False, True])
def test_undo_dihedral(k, flip):
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    assert torch.equal(undo_dihedral(dihedral(x, k, flip), k, flip), x)


def test_config_fields():
    assert {"w_multi", "multi_frames"} <= set(TRAIN_GROUPS["losses"])
    assert TrainConfig().w_multi == 0.0
    with pytest.raises(ValueError, match="w_multi"):
        TrainConfig(w_multi=-1.0)
    with pytest.raises(ValueError, match="multi_frames"):
        TrainConfig(multi_frames=0)


def _config(**kw):
    base = dict(
        preset="tiny", iterations=3, batch_size=4, patch=32, device="cpu", preview_every=0,
        checkpoint_every=0, fov_fraction=0.9,
    )  # fmt: skip
    return TrainConfig(**{**base, **kw})


def test_trainer_refuses_w_multi_without_a_video(scene):
    vid = _video(scene, frames=3, noise=0.01)
    with pytest.raises(ValueError, match="registration"):
        Trainer(vid.lr, vid.bundle, config=_config(w_multi=1.0), values=vid.values)
    one_good = _registration(vid, np.array([True, False, False]))
    with pytest.raises(ValueError, match="two good frames"):
        Trainer(vid.lr, vid.bundle, config=_config(w_multi=1.0), registration=one_good)


@pytest.mark.parametrize("extra", [{}, {"augment_lr": True, "vec_tolerance": 1.5, "scale": 2}])
def test_training_reports_and_minimises_the_multi_frame_term(scene, extra):
    vid = _video(scene, frames=4, noise=0.01)
    config = _config(w_multi=1.0, **extra)
    trainer = Trainer(vid.lr, vid.bundle, config=config, values=vid.values, registration=vid.shifts)
    events = list(trainer.run())
    assert all(np.isfinite(e.losses["l_multi"]) for e in events)
    # the term reaches the generator: its gradient is not zero
    trainer._g.zero_grad()
    batch = trainer.sampler.sample(4)
    sr = trainer._g(batch.lr).float()
    loss = trainer._multi_frame_loss(sr, batch)
    loss.backward()
    grads = [p.grad.abs().sum() for p in trainer._g.parameters() if p.grad is not None]
    assert float(loss.detach()) > 0 and float(sum(grads)) > 0


def test_multi_frame_term_prefers_the_truth_to_tli(scene):
    """The loss is a measurement of the scene: the true frames score better than TLI."""
    vid = _video(scene, frames=5, noise=0.0)
    trainer = Trainer(
        vid.lr, vid.bundle, config=_config(w_multi=1.0), values=vid.clean_values,
        registration=vid.shifts, normalisation=UNIT,
    )  # fmt: skip
    positions = trainer.sampler.draw_positions(16)
    batch = trainer.sampler.batch_at(positions)
    truth = np.stack([vid.frames[t, y : y + 32, x : x + 32] for _, t, y, x in positions])
    truth = torch.from_numpy(truth)[:, None].float()
    state = trainer.sampler.rng.bit_generator.state
    on_truth = float(trainer._multi_frame_loss(truth, batch))
    trainer.sampler.rng.bit_generator.state = state  # the same neighbours
    on_tli = float(trainer._multi_frame_loss(batch.lr, batch))
    assert on_truth < 0.5 * on_tli


def test_train_passes_the_registration(scene):
    vid = _video(scene, frames=3, noise=0.01)
    model = train(
        vid.lr, vid.bundle, values=vid.values, registration=vid.shifts, progress=False,
        config=_config(w_multi=0.5, multi_frames=1),
    )  # fmt: skip
    assert model.metadata["iteration"] == 3
    assert model.metadata["train_config"]["w_multi"] == 0.5
    # the term's curve is kept in the model's loss history (it was dropped before)
    history = model.metadata["loss_history"]
    assert len(history["l_multi"]) == 3 and np.isfinite(history["l_multi"]).all()


def test_resumed_training_keeps_the_multi_frame_history(scene, tmp_path):
    vid = _video(scene, frames=3, noise=0.01)
    ckpt = tmp_path / "ckpt.safetensors"
    config = _config(w_multi=1.0, iterations=2, checkpoint_every=2)
    trainer = Trainer(
        vid.lr, vid.bundle, config=config, values=vid.values, registration=vid.shifts,
        checkpoint=ckpt,
    )  # fmt: skip
    list(trainer.run())
    resumed = Trainer.resume(
        ckpt, vid.lr, vid.bundle, values=vid.values, registration=vid.shifts, iterations=3
    )
    assert [np.isfinite(h["l_multi"]) for h in resumed.history] == [True, True]
    list(resumed.run())
    assert len(resumed.history) == 3 and all("l_multi" in h for h in resumed.history)
    # a single-frame run has no such curve, and no NaN stands in for it
    single = Trainer(vid.lr, vid.bundle, config=_config(iterations=2, checkpoint_every=2),
                     values=vid.values, checkpoint=tmp_path / "single.safetensors")  # fmt: skip
    list(single.run())
    again = Trainer.resume(tmp_path / "single.safetensors", vid.lr, vid.bundle, values=vid.values)
    assert all("l_multi" not in h for h in again.history)


# ----------------------------------------------------------------------------- the CLI
@pytest.fixture(scope="module")
def video_files(tmp_path_factory, scene):
    import tifffile

    out = tmp_path_factory.mktemp("video")
    vid = _video(scene, frames=4, noise=0.01)
    tifffile.imwrite(out / "video.tif", vid.lr, photometric="minisblack")
    vid.bundle.save_csv(out / "fibres.csv")
    return out


def _cli_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_cli_train_video(tmp_path, video_files, capsys):
    from napari_cycsr.cli import main
    from napari_cycsr.io import load_model

    video, fibres = str(video_files / "video.tif"), str(video_files / "fibres.csv")
    fast = ["--preset", "tiny", "--batch-size", "2", "--patch", "32", "--device", "cpu",
            "--threads", "1", "--iterations", "2", "--set", "fov_fraction=0.9"]  # fmt: skip
    out = tmp_path / "m.safetensors"
    noise_aware = ["--set", "vec_tolerance=1.5"]
    args = ["train", video, "--fibres", fibres, "--video", *fast, *noise_aware]
    assert main([*args, "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "registered 4 frames (4 good); multi-frame cycle consistency w_multi=1" in said
    assert "fused video as paired targets (w_pix=1, 4 frames)" in said
    assert "training on 4 LR frame(s)" in said
    config = load_model(out).metadata["train_config"]
    assert (config["w_multi"], config["target"], config["w_pix"]) == (1.0, "paired", 1.0)
    assert "noise of the fibre values" not in said  # fused targets: each frame's own level
    # without fused targets the noise-aware l_vec learns with the noise level found from the
    # video, and says so; a level set by hand wins, and no estimate is announced
    unpaired = tmp_path / "unpaired.safetensors"
    assert main([*args, "--no-fused-targets", "--out", str(unpaired)]) == 0
    (level,) = load_model(unpaired).metadata["noise_levels"]
    said = capsys.readouterr().out
    assert "estimating the noise of the fibre values from the video" in said
    assert f"noise of the fibre values: sd {level:.4g}, the smaller of the video's" in said
    given = tmp_path / "given.safetensors"
    args += ["--no-fused-targets", "--set", "noise_level=0.05"]
    assert main([*args, "--out", str(given)]) == 0
    assert "noise of the fibre values" not in capsys.readouterr().out
    assert load_model(given).metadata["noise_levels"] == pytest.approx([0.05])
    # a registration made earlier by `cycsr register`, a weight set by hand, no fused targets
    shifts = tmp_path / "shifts.csv"
    assert main(["register", video, "--fibres", fibres, "--out", str(shifts), "--quiet"]) == 0
    out2 = tmp_path / "m2.safetensors"
    args = ["train", video, "--fibres", fibres, "--video", "--shifts", str(shifts), *fast]
    args += ["--no-fused-targets", "--set", "w_multi=0.5", "--out", str(out2), "--quiet"]
    capsys.readouterr()
    assert main(args) == 0
    # no noise-aware l_vec in this run (TrainConfig's default): no noise level to estimate
    assert "estimating the noise" not in capsys.readouterr().out
    config = load_model(out2).metadata["train_config"]
    assert (config["w_multi"], config["target"], config["w_pix"]) == (0.5, "natural", 0.0)
    # errors
    out3 = ["--out", str(tmp_path / "m3.safetensors")]
    assert main(["train", video, "--fibres", fibres, "--shifts", str(shifts), *fast, *out3]) == 1
    assert "--shifts is used only with --video" in _cli_error(capsys)
    assert main(["train", video, "--fibres", fibres, "--no-fused-targets", *fast, *out3]) == 1
    assert "--no-fused-targets is used only with --video" in _cli_error(capsys)
    assert main(["train", video, "--fibres", fibres, "--video", "--target", "downscaled",
                 *fast, *out3]) == 1  # fmt: skip
    assert "add --no-fused-targets to use --target downscaled" in _cli_error(capsys)
    one = tmp_path / "one.tif"
    import tifffile

    tifffile.imwrite(one, tifffile.imread(video)[0])
    assert main(["train", str(one), "--fibres", fibres, "--video", *fast, *out3]) == 1
    assert "at least 2 LR frames" in _cli_error(capsys)
    assert main(["train", video, "--fibres", fibres, *fast, "--set", "w_multi=1", *out3]) == 1
    assert "needs --video" in _cli_error(capsys)


def test_train_video_registers_the_frames_itself(scene, monkeypatch):
    import napari_cycsr.video as video
    from napari_cycsr.workflows import train_video

    vid = _video(scene, frames=3, noise=0.01)
    seen = {}
    real = video.register

    def spy(frames, bundle, **kw):
        seen["reg"] = real(frames, bundle, **kw)
        return seen["reg"]

    monkeypatch.setattr(video, "register", spy)
    model = train_video(vid.lr, vid.bundle, config=_config(), progress=False)
    assert model.metadata["train_config"]["w_multi"] == 1.0
    assert model.metadata["train_config"]["target"] == "paired"
    # the registration it made is the video's motion (sub-pixel)
    assert np.abs(seen["reg"].shifts - vid.shifts).max() < 0.3
    with pytest.raises(ValueError, match="at least 2 frames"):
        train_video(vid.lr[0], vid.bundle, config=_config(), progress=False)


def test_train_takes_the_target_with_the_settings_it_needs(scene):
    """``train(..., target="paired", w_pix=1)``: the target and the pixel loss that needs it
    are validated together (they were not: w_pix was refused for the default target)."""
    vid = _video(scene, frames=2, noise=0.01)
    model = train(
        vid.lr, vid.bundle, "paired", config=_config(), target_images=vid.frames, w_pix=1.0,
        progress=False,
    )  # fmt: skip
    assert model.metadata["train_config"]["target"] == "paired"
    assert model.metadata["train_config"]["w_pix"] == 1.0


def test_video_training_fuses_targets_from_the_registered_frames_only(scene):
    from napari_cycsr.video import Registration, fuse_video
    from napari_cycsr.workflows import video_training

    vid = _video(scene, frames=5, noise=0.01)
    good = np.array([True, True, False, True, True])
    reg = Registration(
        shifts=vid.shifts, confidence=good * 0.9, angles=vid.angles, reference=0,
        overlap=np.ones(5), anchors=np.zeros(5, np.int64), shape=vid.lr.shape[1:],
    )  # fmt: skip
    prepared = video_training(vid.lr, vid.bundle, registration=reg, values=vid.values)
    assert prepared.frames_used.tolist() == [0, 1, 3, 4]
    (frames,), (targets,), (values,) = (
        prepared.lr_images, prepared.target_images, prepared.values
    )
    np.testing.assert_array_equal(frames, vid.lr[[0, 1, 3, 4]])
    np.testing.assert_array_equal(values, vid.values[[0, 1, 3, 4]])
    np.testing.assert_allclose(targets, fuse_video(vid.lr, vid.bundle, reg)[[0, 1, 3, 4]])
    (pose,) = prepared.registration
    np.testing.assert_array_equal(pose.shifts, vid.shifts[[0, 1, 3, 4]])
    assert pose.good.all()
    assert prepared.settings == {"w_multi": 1.0, "target": "paired", "w_pix": 1.0}
    # the fused frames are closer to the truth than the LR frames they pair with
    m = vid.bundle.fov_mask
    truth = vid.frames[[0, 1, 3, 4]]
    assert np.abs(targets - truth)[:, m].mean() < np.abs(frames - truth)[:, m].mean()

    plain = video_training(vid.lr, vid.bundle, registration=reg, fused_targets=False, w_multi=0)
    assert plain.target_images is None and plain.frames_used.tolist() == list(range(5))
    assert plain.settings == {"w_multi": 0.0}
    with pytest.raises(ValueError, match="fewer than 2 frames"):
        video_training(vid.lr, vid.bundle, registration=_registration(vid, np.eye(5)[0] > 0))


def test_train_video_from_a_pretrained_model_keeps_its_objective(scene):
    """``train_video(..., init=pretrained("default"))`` fine-tunes as ``cycsr train --video
    --init``: paired (fused) targets, so the model's own objective, no anchor to itself."""
    from napari_cycsr import pretrained
    from napari_cycsr.workflows import train_video

    vid = _video(scene, frames=3, noise=0.01)
    start = pretrained("default")
    model = train_video(vid.lr, vid.bundle, init=start, iterations=1, batch_size=2, patch=32,
                        device="cpu", preview_every=0, checkpoint_every=0, progress=False,
                        fov_fraction=0.9)  # fmt: skip
    got = model.metadata["train_config"]
    own = start.metadata["train_config"]
    assert (got["target"], got["w_pix"], got["w_multi"]) == ("paired", 1.0, 1.0)
    assert got["preset"] == "tiny" and got["w_anchor"] == 0.0
    assert got["w_res"] == own["w_res"] and got["vec_tolerance"] == own["vec_tolerance"]
    assert model.metadata["initialised_from"] == "default"


def test_cli_super_resolve_with_the_noise_of_the_video(tmp_path, video_files, capsys):
    """``--project-noise video``: the stack is registered, the noise of its fibre values
    estimated from the video (estimate_video_noise) and used for every frame's projection;
    a single image or no fibres is refused with a message."""
    import tifffile

    from napari_cycsr import pretrained
    from napari_cycsr.cli import main
    from napari_cycsr.fibres import FibreBundle
    from napari_cycsr.inference import super_resolve
    from napari_cycsr.video import estimate_video_noise, frame_values, register

    video, fibres = video_files / "video.tif", video_files / "fibres.csv"
    out = tmp_path / "sr.tif"
    base = ["super-resolve", "pretrained", str(video), "--fibres", str(fibres), "--device",
            "cpu", "--quiet"]  # fmt: skip
    assert main([*base, "--out", str(out), "--project-noise", "video"]) == 0
    printed = capsys.readouterr().out
    assert "noise of the fibre values estimated from the video" in printed
    assert "from the video, values sampled from the input" in printed
    frames = tifffile.imread(video)
    bundle = FibreBundle.from_csv(fibres, frames.shape[1:])
    values = frame_values(frames, bundle, kind="reconstructed")
    sigma = estimate_video_noise(values, bundle, register(frames, bundle))
    assert f"{sigma:.4g}" in printed
    expected = super_resolve(
        pretrained(), frames, device="cpu", mask=bundle.fov_mask, bundle=bundle,
        project_noise=sigma, spacing=bundle.spacing,
    )  # fmt: skip
    np.testing.assert_allclose(tifffile.imread(out), expected, atol=1e-5)
    # one frame, or no fibres to project onto: refused, nothing written
    tifffile.imwrite(tmp_path / "one.tif", frames[0])
    one = ["super-resolve", "pretrained", str(tmp_path / "one.tif"), "--fibres", str(fibres)]
    assert main([*one, "--out", str(tmp_path / "o.tif"), "--project-noise", "video"]) == 1
    assert "needs a stack of at least 2 frames" in _cli_error(capsys)
    assert main([*base, "--out", str(tmp_path / "n.tif"), "--project-noise", "video",
                 "--no-project"]) == 1  # fmt: skip
    assert "needs --fibres and the projection" in _cli_error(capsys)
    assert not (tmp_path / "o.tif").exists() and not (tmp_path / "n.tif").exists()


def test_video_fine_tuning_resamples_the_fused_targets_with_the_frames(scene):
    """Fine-tuning on a video at another fibre spacing: the fused (paired) targets are resized
    with their frames, so each target still lies over its frame (its cell means give back
    the frame's fibre values; a target one pixel off does markedly worse)."""
    from napari_cycsr.models import SRModel
    from napari_cycsr.workflows import video_training

    vid = _video(scene, frames=3, noise=0.01)
    prepared = video_training(vid.lr, vid.bundle, registration=_registration(vid))
    start = SRModel.new("tiny")
    start.metadata["fibre_spacing"] = 1.6 * vid.bundle.spacing
    config = TrainConfig(preset="tiny", iterations=1, batch_size=2, patch=32, device="cpu",
                         preview_every=0, checkpoint_every=0, fov_fraction=0.9,
                         **prepared.settings)  # fmt: skip
    trainer = Trainer(
        prepared.lr_images, prepared.bundles, config=config, values=prepared.values,
        registration=prepared.registration, target_images=prepared.target_images, init=start,
    )  # fmt: skip
    assert trainer.spacing_zooms == [pytest.approx(1.6)]
    frames, targets = trainer.sampler.images[0], trainer.target_sampler.images[0]
    assert frames.shape == targets.shape == (3, 179, 179)
    bundle, values = trainer.sampler.bundles[0], trainer.sampler.values[0]

    def error(shift: int) -> float:
        moved = np.roll(targets, shift, axis=2)
        return max(
            float(np.sqrt(np.nanmean((bundle.vectorize(moved[t]) - values[t]) ** 2)))
            for t in range(3)
        )

    assert error(0) < 0.5 * error(1)
    events = list(trainer.run())
    assert np.isfinite(events[-1].losses["l_pix"])


def test_video_training_estimates_the_noise_of_the_values_from_the_video():
    """On fine texture one frame cannot tell detail from noise: its estimate is several
    times the true level, the video's is close to it. ``video_training`` gives the smaller of
    the two for the noise-aware l_vec, says how it found it, and takes "frames" or a number."""
    from napari_cycsr.consistency import estimate_noise
    from napari_cycsr.workflows import video_training

    vid = simulate_pcle_video(data.gravel()[:150, :150] / 255.0, 5, shape=(112, 112), step=1.5,
                              noise=0.01, seed=1)  # fmt: skip
    reg = _registration(vid)
    prepared = video_training(vid.lr, vid.bundle, registration=reg, values=vid.values,
                              noise="video")  # fmt: skip
    (level,) = prepared.noise_levels
    alone = estimate_noise(vid.values, vid.bundle, pooled=True)
    assert alone > 3 * 0.01  # what one frame makes of this texture
    assert 0.008 < level < 0.025 and level < 0.5 * alone
    assert f"sd {level:.4g}, the smaller of the video's estimate" in prepared.noise_note
    assert f"each frame's alone ({alone:.4g})" in prepared.noise_note
    frames = video_training(vid.lr, vid.bundle, registration=reg, noise="frames")
    assert frames.noise_levels is None and frames.noise_note == ""
    # "auto" (default): the video's level without fused targets, each frame's with them
    unpaired = video_training(vid.lr, vid.bundle, registration=reg, values=vid.values,
                              fused_targets=False)  # fmt: skip
    assert unpaired.noise_levels == [level] and unpaired.noise_note == prepared.noise_note
    paired = video_training(vid.lr, vid.bundle, registration=reg)
    assert paired.noise_levels is None and paired.noise_note == ""
    given = video_training(vid.lr, vid.bundle, registration=reg, noise=0.02)
    assert given.noise_levels == [0.02] and "(given)" in given.noise_note
    for bad, error in (("loud", ValueError), (True, TypeError), (-0.1, ValueError),
                       (float("nan"), ValueError)):  # fmt: skip
        with pytest.raises(error, match="noise must be"):
            video_training(vid.lr, vid.bundle, registration=reg, noise=bad)


def test_trainer_takes_the_noise_level_of_each_image(scene):
    """``noise_levels`` (values' units) sets the tolerance of the noise-aware l_vec per
    image; None entries are estimated from the image; ``config.noise_level`` wins."""
    from napari_cycsr.consistency import estimate_noise

    vid = _video(scene, frames=3, noise=0.02)
    config = _config(vec_tolerance=1.5)
    norm = {"low": -0.5, "high": 1.5}  # a span of 2: levels are kept in normalised units
    trainer = Trainer([vid.lr, vid.lr[0]], vid.bundle, config=config,
                      values=[vid.values, vid.values[0]], normalisation=norm,
                      noise_levels=[0.03, None])  # fmt: skip
    estimated = estimate_noise(vid.values[0], vid.bundle, pooled=True) / 2
    np.testing.assert_allclose(trainer.noise_levels, [0.015, estimated], rtol=1e-6)
    assert trainer.model.metadata["noise_levels"] == pytest.approx([0.03, 2 * estimated])
    fixed = Trainer(vid.lr, vid.bundle, config=_config(vec_tolerance=1.5, noise_level=0.01),
                    values=vid.values, normalisation=norm, noise_levels=[0.03])  # fmt: skip
    np.testing.assert_allclose(fixed.noise_levels, [0.005])
    for bad, error, match in (
        ([0.01, 0.02], ValueError, "2 entries for 1 training images"),
        (0.01, TypeError, "one level"),
        (["x"], TypeError, "not a number"),
        ([-1.0], ValueError, "finite and >= 0"),
        ([float("inf")], ValueError, "finite and >= 0"),
    ):
        with pytest.raises(error, match=match):
            Trainer(vid.lr, vid.bundle, config=config, values=vid.values, noise_levels=bad)


def test_train_video_learns_with_the_noise_of_the_video(scene, monkeypatch):
    """``train_video`` without fused targets hands the video's noise level to the trainer
    (the model records it); with them, or with ``noise="frames"``, the trainer keeps its own
    one-frame estimate."""
    from napari_cycsr.consistency import estimate_noise
    from napari_cycsr.video import frame_values
    from napari_cycsr.workflows import train_video, video_training

    vid = _video(scene, frames=4, noise=0.02)
    reg = _registration(vid)
    config = _config(iterations=1, vec_tolerance=1.5)
    (level,) = video_training(vid.lr, vid.bundle, registration=reg, noise="video").noise_levels
    model = train_video(vid.lr, vid.bundle, registration=reg, config=config,
                        fused_targets=False, progress=False)  # fmt: skip
    assert model.metadata["noise_levels"] == pytest.approx([level], rel=1e-5)
    values = frame_values(vid.lr, vid.bundle, kind="reconstructed")
    alone = estimate_noise(values, vid.bundle, pooled=True)
    assert abs(alone - level) > 1e-3 * level  # the two are told apart
    for options in ({"fused_targets": False, "noise": "frames"}, {}):  # {}: fused targets
        own = train_video(vid.lr, vid.bundle, registration=reg, config=config, progress=False,
                          **options)  # fmt: skip
        assert own.metadata["noise_levels"] == pytest.approx([alone], rel=1e-4)
    # a run whose l_vec is not noise-aware does not estimate a level it would not use
    import napari_cycsr.video as video

    def refuse(*args, **kwargs):
        raise AssertionError("the video's noise level was estimated for nothing")

    monkeypatch.setattr(video, "estimate_video_noise", refuse)
    plain = dataclasses.replace(config, vec_tolerance=0.0)
    train_video(vid.lr, vid.bundle, registration=reg, config=plain, fused_targets=False,
                progress=False)  # fmt: skip
    with pytest.raises(AssertionError, match="for nothing"):  # the spy is in the path
        train_video(vid.lr, vid.bundle, registration=reg, config=config, fused_targets=False,
                    progress=False)  # fmt: skip
