"""Tests of the training loop: config, events, stop/checkpoint, bit-exact resume, DDP."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data

from napari_cycsr.data import LRPatchSampler
from napari_cycsr.inference import super_resolve
from napari_cycsr.io import load_checkpoint, load_model
from napari_cycsr.losses import l_vec, voronoi_means
from napari_cycsr.models import Generator, SRModel, get_preset
from napari_cycsr.simulate import simulate_pcle
from napari_cycsr.training import TrainConfig, Trainer, TrainEvent, train


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models gain nothing from threads; on a busy 2-core machine they lose a lot."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sim():
    return simulate_pcle(data.camera()[:128, 192:320], seed=0)


def _config(**kw) -> TrainConfig:
    base = dict(
        preset="tiny",
        iterations=4,
        batch_size=2,
        patch=32,
        device="cpu",
        preview_every=2,
        checkpoint_every=0,
    )
    return TrainConfig(**{**base, **kw})


def _weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    out = {f"g.{k}": v.clone() for k, v in trainer._g.state_dict().items()}
    out.update({f"d.{k}": v.clone() for k, v in trainer._d.state_dict().items()})
    for name, opt in (("og", trainer.optimizer_g), ("od", trainer.optimizer_d)):
        for pid, state in opt.state_dict()["state"].items():
            for key, value in state.items():
                out[f"{name}.{pid}.{key}"] = value.clone()
    return out


def _interrupt_and_resume(first: Trainer, at: int, checkpoint, sim) -> Trainer:
    """Run ``first`` to iteration ``at`` (closing it writes the checkpoint), resume from the
    checkpoint with the same data and run to the end."""
    for event in first.run():
        if event.iteration == at:
            break
    resumed = Trainer.resume(checkpoint, sim.lr, sim.bundle, values=sim.values)
    assert resumed.iteration == at
    list(resumed.run())
    return resumed


def _assert_same_weights(a: Trainer, b: Trainer) -> None:
    expected, got = _weights(a), _weights(b)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


# ----------------------------------------------------------------------------- config
def test_config_defaults_roundtrip_and_paper_settings():
    config = TrainConfig()
    assert config.effective_batch_size == 16 and config.patch == 64
    assert config.betas == (0.9, 0.999) and config.learning_rate == 1e-4 and config.eps == 1e-8
    again = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    paper = TrainConfig.paper()
    assert paper.effective_batch_size == 54 and paper.normalise_vec and paper.paper_padding
    assert (paper.w_vec, paper.w_adv, paper.w_reg) == (1.0, 1.0, 1.0)
    assert paper.network_config() == get_preset("paper", residual=False)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"preset": "huge"}, "preset"),
        ({"iterations": 0}, "iterations"),
        ({"batch_size": -1}, "batch_size"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"betas": (0.9, 1.5)}, "betas"),
        ({"w_adv": -1.0}, "w_adv"),
        ({"target": "sun"}, "target"),
        ({"patch": 8}, "patch"),
        ({"w_pix": 1.0}, "paired"),
        ({"scale": 3}, "scale"),
        ({"fov_fraction": 0.0}, "fov_fraction"),
        ({"consistency_steps": -1}, "consistency_steps"),
        ({"precision": "int8"}, "precision"),
        ({"threads": 0}, "threads"),
        ({"threads": 1.5}, "threads"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)
    with pytest.raises(ValueError, match="unknown"):
        TrainConfig.from_dict({"learning_rat": 1.0})


def test_config_is_frozen_grouped_and_reads_the_old_learning_rate_name():
    config = TrainConfig(preset="tiny", learning_rate=3e-4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.iterations = 5  # a changed copy is made with dataclasses.replace, validated
    with pytest.raises(ValueError, match="iterations"):
        dataclasses.replace(config, iterations=0)
    groups = config.grouped()
    assert list(groups) == ["network", "optimiser", "losses", "data", "run"]
    flat = [name for fields in groups.values() for name in fields]
    assert sorted(flat) == sorted(f.name for f in dataclasses.fields(TrainConfig))
    assert len(flat) == len(set(flat))  # every field in exactly one group
    assert groups["optimiser"]["learning_rate"] == 3e-4
    # model files and checkpoints written before the rename say "lr"
    old = {**config.to_dict(), "lr": 2e-4}
    del old["learning_rate"]
    assert TrainConfig.from_dict(old).learning_rate == 2e-4
    with pytest.raises(ValueError, match="both"):
        TrainConfig.from_dict({**config.to_dict(), "lr": 2e-4})


# ----------------------------------------------------------------------------- the loss
def test_l_vec_optimisation_reduces_the_cycle_loss(sim):
    """G-only optimisation of l_vec on a fixed batch from a perturbed start."""
    sampler = LRPatchSampler(sim.lr, sim.bundle, patch=32, values=sim.values)
    batch = sampler.sample(4)
    torch.manual_seed(0)
    generator = Generator(get_preset("tiny"))
    torch.nn.init.normal_(generator.tail.weight, std=0.05)  # away from the identity
    optimizer = torch.optim.Adam(generator.parameters(), lr=3e-3)

    def loss():
        v_hat = voronoi_means(generator(batch.lr), batch.cell_index, batch.n_cells)
        return l_vec(v_hat, batch.values)

    start = loss().item()
    for _ in range(40):
        optimizer.zero_grad()
        value = loss()
        value.backward()
        optimizer.step()
    assert loss().item() < 0.3 * start


# ----------------------------------------------------------------------------- events
def test_events_have_the_documented_fields(sim):
    trainer = Trainer(
        sim.lr, sim.bundle, config=_config(), values=sim.values, preview_crop=(40, 40, 30, 20)
    )
    events = list(trainer.run())
    assert [e.iteration for e in events] == [1, 2, 3, 4]
    for event in events:
        assert isinstance(event, TrainEvent) and event.total == 4
        assert set(event.losses) == {"l_vec", "l_adv", "l_reg", "loss_g", "loss_d"}
        assert all(np.isfinite(v) for v in event.losses.values())
        assert 0.0 <= event.d_accuracy <= 1.0
        assert event.seconds_per_iteration > 0 and event.eta_seconds >= 0
        assert event.checkpoint is None and not event.stopped
    assert events[0].preview is None
    preview = events[1].preview
    assert preview.shape == (30, 20) and preview.dtype == np.float32
    # untrained residual generator starts as the identity: preview ~ the LR crop
    assert np.abs(preview - sim.lr[40:70, 40:60]).max() < 0.2
    assert events[-1].done and events[-1].eta_seconds == 0
    last, cfg = events[-1].losses, trainer.config
    weighted = cfg.w_vec * last["l_vec"] + cfg.w_adv * last["l_adv"] + cfg.w_reg * last["l_reg"]
    assert last["loss_g"] == pytest.approx(weighted, rel=1e-5)
    model = trainer.model
    assert not model.generator.training
    assert model.metadata["iteration"] == 4
    assert model.normalisation == trainer.normalisation


def test_warmup_trains_without_discriminator(sim):
    trainer = Trainer(sim.lr, sim.bundle, config=_config(iterations=2, warmup=1), values=sim.values)
    first, second = list(trainer.run())
    assert first.losses["l_adv"] == 0.0 and np.isnan(first.losses["loss_d"])
    assert second.losses["l_adv"] > 0 and np.isfinite(second.losses["loss_d"])


def test_consistency_layer_makes_the_judged_output_consistent(sim):
    """With the layer, l_vec is measured after the back-projection: far below the plain
    generator's on the same first batch (same seed, same untrained networks)."""
    plain = next(Trainer(sim.lr, sim.bundle, config=_config(iterations=1), values=sim.values).run())
    layered = next(
        Trainer(
            sim.lr, sim.bundle, config=_config(iterations=1, consistency_steps=2), values=sim.values
        ).run()
    )
    assert all(np.isfinite(v) for v in layered.losses.values())
    assert layered.losses["l_vec"] < plain.losses["l_vec"] / 5


def test_paired_target_with_supervised_pixel_loss(sim):
    config = _config(iterations=2, target="paired", w_pix=1.0)
    trainer = Trainer(sim.lr, sim.bundle, config=config, values=sim.values, target_images=[sim.hr])
    events = list(trainer.run())
    assert "l_pix" in events[-1].losses and events[-1].losses["l_pix"] > 0


def test_scale_two_model_trains(sim):
    trainer = Trainer(
        sim.lr,
        sim.bundle,
        config=_config(iterations=1, scale=2),
        values=sim.values,
        preview_crop=(40, 40, 16, 16),
    )
    (event,) = list(trainer.run())
    assert event.preview.shape == (32, 32)
    assert np.isfinite(event.losses["l_vec"])


# ----------------------------------------------------------------------------- stop/resume
def test_stop_ends_after_the_iteration_and_writes_a_checkpoint(sim, tmp_path):
    trainer = Trainer(
        sim.lr, sim.bundle, config=_config(iterations=10), values=sim.values, checkpoint=tmp_path
    )
    events = []
    for event in trainer.run():
        events.append(event)
        if event.iteration == 2:
            trainer.stop()
    assert events[-1].stopped and events[-1].iteration == 3 < 10
    path = Path(events[-1].checkpoint)
    assert path == tmp_path / "checkpoint.safetensors" and path.is_file()
    _, meta = load_checkpoint(path)
    assert meta["iteration"] == 3
    # the checkpoint is also a model file
    model = load_model(path)
    assert model.metadata["iteration"] == 3
    # run() continues where it stopped
    more = list(trainer.run())
    assert more[0].iteration == 4 and more[-1].iteration == 10


def test_stop_from_another_thread(sim, tmp_path):
    trainer = Trainer(
        sim.lr,
        sim.bundle,
        config=_config(iterations=10_000, preview_every=0),
        values=sim.values,
        checkpoint=tmp_path / "run.safetensors",
    )
    events = []

    def consume():
        for event in trainer.run():
            events.append(event)

    worker = threading.Thread(target=consume)
    worker.start()
    while not events:
        worker.join(0.01)
    trainer.stop()
    worker.join(60)
    assert not worker.is_alive()
    assert events[-1].stopped and events[-1].iteration < 10_000
    assert (tmp_path / "run.safetensors").is_file()


def test_closing_the_generator_writes_a_checkpoint(sim, tmp_path):
    trainer = Trainer(
        sim.lr,
        sim.bundle,
        config=_config(iterations=10, preview_every=0),
        values=sim.values,
        checkpoint=tmp_path,
    )
    run = trainer.run()
    for event in run:
        if event.iteration == 2:
            break
    run.close()
    _, meta = load_checkpoint(tmp_path / "checkpoint.safetensors")
    assert meta["iteration"] == 2


def test_resume_is_bit_identical_to_an_uninterrupted_run(sim, tmp_path):
    config = _config(iterations=6, preview_every=0, noise_sigma=0.1)
    full = Trainer(sim.lr, sim.bundle, config=config, values=sim.values)
    list(full.run())

    first = Trainer(sim.lr, sim.bundle, config=config, values=sim.values, checkpoint=tmp_path)
    resumed = _interrupt_and_resume(first, 3, tmp_path, sim)
    assert len(resumed.history) == 6
    _assert_same_weights(full, resumed)
    expected = _weights(full)
    assert [h["l_vec"] for h in resumed.history] == [h["l_vec"] for h in full.history]
    # and a different seed gives different weights
    other = Trainer(
        sim.lr, sim.bundle, config=dataclasses.replace(config, seed=1), values=sim.values
    )
    list(other.run())
    assert not torch.equal(_weights(other)["g.head.0.weight"], expected["g.head.0.weight"])


def test_resume_can_extend_but_not_change_the_network(sim, tmp_path):
    trainer = Trainer(
        sim.lr, sim.bundle, config=_config(iterations=2), values=sim.values, checkpoint=tmp_path
    )
    list(trainer.run())
    longer = Trainer.resume(tmp_path, sim.lr, sim.bundle, values=sim.values, iterations=3)
    assert [e.iteration for e in longer.run()] == [3]
    with pytest.raises(ValueError, match="network"):
        Trainer.resume(tmp_path, sim.lr, sim.bundle, values=sim.values, preset="default")


def _edit_checkpoint_meta(path: Path, edit) -> None:
    """Rewrite the JSON ``meta`` of a checkpoint in place (keeping its tensors)."""
    import struct

    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    document = json.loads(header["__metadata__"]["napari_cycsr"])
    edit(document["meta"])
    header["__metadata__"]["napari_cycsr"] = json.dumps(document)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n :])


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda m: m.pop("discriminator"), "has no 'discriminator' state"),
        (lambda m: m.pop("optimizer_g"), "has no 'optimizer_g' state"),
        (lambda m: m.update(iteration=-5), "iteration must be a whole number >= 0, got -5"),
        (lambda m: m.update(iteration="7"), "iteration must be a whole number >= 0"),
        (lambda m: m.update(preview_crop=[1, 2]), "preview_crop"),
        (lambda m: m.update(config=[]), "config"),
    ],
)
def test_damaged_checkpoint_is_refused_naming_the_file(sim, tmp_path, edit, match):
    trainer = Trainer(
        sim.lr, sim.bundle, config=_config(iterations=1), values=sim.values, checkpoint=tmp_path
    )
    list(trainer.run())
    path = tmp_path / "checkpoint.safetensors"
    _edit_checkpoint_meta(path, edit)
    with pytest.raises(ValueError, match=match) as info:
        Trainer.resume(tmp_path, sim.lr, sim.bundle, values=sim.values)
    assert "checkpoint.safetensors" in str(info.value)


def test_save_writes_a_model_file_with_metadata(sim, tmp_path):
    trainer = Trainer(sim.lr, sim.bundle, config=_config(iterations=2), values=sim.values)
    list(trainer.run())
    path = trainer.save(tmp_path / "model.safetensors")
    model = load_model(path)
    meta = model.metadata
    assert meta["iteration"] == 2 and meta["seed"] == 0
    assert meta["train_config"]["preset"] == "tiny"
    assert meta["fibre_spacing"] == pytest.approx(sim.bundle.spacing)
    assert len(meta["loss_history"]["l_vec"]) == 2
    assert model.normalisation == pytest.approx(trainer.normalisation)
    for name, tensor in trainer._g.state_dict().items():
        assert torch.equal(model.generator.state_dict()[name], tensor)


def test_train_convenience(sim):
    model = train(
        sim.lr,
        sim.bundle,
        values=sim.values,
        preset="tiny",
        iterations=2,
        batch_size=2,
        patch=32,
        device="cpu",
    )
    assert model.metadata["iteration"] == 2
    with pytest.raises(TypeError, match="unknown"):
        train(sim.lr, sim.bundle, learning_rat=1.0)


def test_train_shows_progress_unless_asked_not_to(sim, capsys):
    """cs.train prints a progress bar (iterations, losses, time left) by default."""
    settings = {"values": sim.values, "preset": "tiny", "iterations": 3, "batch_size": 2,
                "patch": 32, "device": "cpu", "preview_every": 0}  # fmt: skip
    train(sim.lr, sim.bundle, **settings)
    shown = capsys.readouterr().err
    assert "train" in shown and "3/3" in shown and "l_vec=" in shown
    train(sim.lr, sim.bundle, progress=False, **settings)
    assert capsys.readouterr().err == ""
    events = []
    train(sim.lr, sim.bundle, progress=events.append, **settings)
    assert [e.iteration for e in events] == [1, 2, 3] and capsys.readouterr().err == ""
    with pytest.raises(TypeError, match="progress must be"):
        train(sim.lr, sim.bundle, progress="yes", **settings)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("images", "kwargs", "error", "match"),
    [
        ([], {}, ValueError, "empty list"),
        (np.indices((128, 128, 3)).sum(0), {}, ValueError, "RGB"),
        (np.full((128, 128), np.nan), {}, ValueError, "NaN"),
        (np.zeros((64, 64)), {}, ValueError, "bundle is for images of shape"),
        (None, {"values": np.zeros(10)}, ValueError, "fibres"),
        (None, {"target": "images"}, ValueError, "needs images"),
        (None, {"config": "tiny"}, TypeError, "TrainConfig"),
        (None, {"preview_crop": (120, 120, 20, 20)}, ValueError, "preview_crop"),
    ],
)
def test_bad_inputs_fail_clearly(sim, images, kwargs, error, match):
    kwargs.setdefault("config", _config())
    with pytest.raises(error, match=match):
        Trainer(sim.lr if images is None else images, sim.bundle, **kwargs)


# ----------------------------------------------------------------------------- DDP
@pytest.mark.slow
def test_ddp_two_processes(tmp_path):
    """Two CPU ranks (gloo) train together; rank 0 writes the model; ranks agree."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
        "-m",
        "napari_cycsr._ddp_selftest",
        str(tmp_path),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 and r["iteration"] == 3 for r in reports)
    assert reports[0]["events"] == 3 and reports[1]["events"] == 0
    assert reports[0]["generator"] == reports[1]["generator"]
    assert reports[0]["discriminator"] == reports[1]["discriminator"]
    model = load_model(tmp_path / "model.safetensors")
    assert model.metadata["world_size"] == 2


# ----------------------------------------------------------------------------- precision
def test_bf16_training_keeps_weights_states_and_losses_float32(sim, monkeypatch, tmp_path):
    from napari_cycsr import _device
    from napari_cycsr.io import load_model

    monkeypatch.setattr(_device, "cpu_has_native_bf16", lambda: True)  # no emulation warning
    trainer = Trainer(
        sim.lr, sim.bundle, config=_config(precision="bf16", iterations=3), values=sim.values
    )
    assert trainer.precision == "bf16"
    conv_dtypes = set()
    hook = trainer._g.head[0].register_forward_hook(lambda m, i, o: conv_dtypes.add(o.dtype))
    events = list(trainer.run())
    hook.remove()
    assert conv_dtypes == {torch.bfloat16}  # the convolutions did run in bfloat16
    assert all(np.isfinite(e.losses["l_vec"]) and np.isfinite(e.losses["loss_d"]) for e in events)
    assert events[-1].preview.dtype == np.float32
    for name, value in _weights(trainer).items():
        if value.is_floating_point():
            assert value.dtype == torch.float32, name
    # the model file is the same as for a float32 run: float32 weights
    path = trainer.save(tmp_path / "bf16.safetensors")
    model = load_model(path)
    assert all(p.dtype == torch.float32 for p in model.generator.parameters())
    train_config = model.metadata["train_config"]
    assert "precision" not in train_config and "threads" not in train_config
    assert "preset" in train_config

    fp32 = Trainer(sim.lr, sim.bundle, config=_config(precision="fp32", iterations=3),
                   values=sim.values)  # fmt: skip
    list(fp32.run())
    assert fp32.precision == "fp32"
    diff = (fp32._g.head[0].weight - trainer._g.head[0].weight).abs().max()
    assert 0 < diff < 1e-2  # the same run up to bfloat16 rounding


def test_auto_precision_is_fp32_where_bf16_does_not_pay(sim, monkeypatch):
    from napari_cycsr import _device

    monkeypatch.setattr(_device, "cpu_bf16_pays", lambda: False)
    trainer = Trainer(sim.lr, sim.bundle, config=_config(iterations=1), values=sim.values)
    assert trainer.config.precision == "auto" and trainer.precision == "fp32"
    monkeypatch.setattr(_device, "cpu_bf16_pays", lambda: True)
    trainer = Trainer(sim.lr, sim.bundle, config=_config(iterations=1), values=sim.values)
    assert trainer.precision == "bf16"
    with pytest.raises(ValueError, match="fp16"):
        Trainer(sim.lr, sim.bundle, config=_config(precision="fp16"), values=sim.values)


def test_threads_option_applies_during_the_run_only(sim):
    before = torch.get_num_threads()
    seen = []
    trainer = Trainer(sim.lr, sim.bundle, config=_config(threads=2, iterations=2),
                      values=sim.values)  # fmt: skip
    for _ in trainer.run():
        seen.append(torch.get_num_threads())
    assert seen == [2, 2] and torch.get_num_threads() == before


def test_augmented_patches_keep_their_cells():
    """A flip / quarter turn moves pixels and cell ids together: the cell means are the same."""
    from napari_cycsr.losses import voronoi_means
    from napari_cycsr.simulate import simulate_pcle
    from napari_cycsr.training import TrainConfig, Trainer

    sim = simulate_pcle(np.random.default_rng(0).random((96, 96)), seed=0)
    cfg = TrainConfig(
        preset="tiny", iterations=1, batch_size=8, patch=32, device="cpu", preview_every=0,
        augment_lr=True,
    )  # fmt: skip
    trainer = Trainer(sim.lr, sim.bundle, config=cfg, values=sim.values)
    batch = trainer.sampler.sample(8)
    moved = trainer._augment(batch)
    assert {k for k, _ in moved.transforms} | {int(f) for _, f in moved.transforms}
    assert not torch.equal(moved.lr, batch.lr)
    before = voronoi_means(batch.lr, batch.cell_index, batch.n_cells)
    after = voronoi_means(moved.lr, moved.cell_index, moved.n_cells)
    torch.testing.assert_close(after, before)


def test_training_with_the_adversarial_options_runs():
    from napari_cycsr.simulate import simulate_pcle
    from napari_cycsr.training import TrainConfig, Trainer

    sim = simulate_pcle(np.random.default_rng(1).random((96, 96)), seed=1)
    for kind in ("hinge", "relativistic"):
        cfg = TrainConfig(
            preset="tiny", iterations=2, batch_size=2, patch=32, device="cpu", preview_every=0,
            adv_loss=kind, adv_highpass=0.5, d_spectral_norm=True, augment_lr=True,
            vec_tolerance=1.5, noise_sigma=0.02,
        )  # fmt: skip
        trainer = Trainer(sim.lr, sim.bundle, config=cfg, values=sim.values)
        events = list(trainer.run())
        assert len(events) == 2 and np.isfinite(events[-1].losses["l_adv"])
        assert trainer.noise_levels[0] > 0  # estimated from the values for vec_tolerance
        assert np.isfinite(trainer.model.metadata["noise_levels"][0])
    with pytest.raises(ValueError, match="adv_loss"):
        TrainConfig(adv_loss="wgan")
    with pytest.raises(ValueError, match="augment_lr"):
        TrainConfig(augment_lr=1)


def test_spectral_norm_runs_depend_on_the_seed_only():
    """A run with the spectrally normalised discriminator gives the same model whatever the
    process's global torch generator held before (its power iteration started from vectors
    drawn from it, so two runs with one seed in one session could differ)."""
    from napari_cycsr.simulate import simulate_pcle
    from napari_cycsr.training import TrainConfig, Trainer

    sim = simulate_pcle(np.random.default_rng(1).random((96, 96)), seed=1)
    cfg = TrainConfig(
        preset="tiny", iterations=3, batch_size=2, patch=32, device="cpu", preview_every=0,
        checkpoint_every=0, adv_loss="hinge", d_spectral_norm=True, w_adv=0.1, warmup=0,
        precision="fp32", threads=1,
    )  # fmt: skip
    weights = []
    for state in (1, 2):
        torch.manual_seed(state)  # another history of the global generator
        trainer = Trainer(sim.lr, sim.bundle, config=cfg, values=sim.values)
        list(trainer.run())
        weights.append(trainer.model.generator.state_dict())
    for name, value in weights[0].items():
        torch.testing.assert_close(weights[1][name], value, rtol=0, atol=0, msg=name)


def test_adversarial_options_under_bf16(monkeypatch):
    """Spectral norm, the relativistic loss and augmentation in bfloat16: float32 weights,
    finite losses."""
    from napari_cycsr import _device
    from napari_cycsr.simulate import simulate_pcle
    from napari_cycsr.training import TrainConfig, Trainer

    monkeypatch.setattr(_device, "cpu_has_native_bf16", lambda: True)  # no emulation warning
    sim = simulate_pcle(np.random.default_rng(1).random((96, 96)), seed=1)
    cfg = TrainConfig(
        preset="tiny", iterations=2, batch_size=2, patch=32, device="cpu", preview_every=0,
        adv_loss="relativistic", d_spectral_norm=True, augment_lr=True, warmup=0,
        precision="bf16",
    )  # fmt: skip
    trainer = Trainer(sim.lr, sim.bundle, config=cfg, values=sim.values)
    events = list(trainer.run())
    assert trainer.precision == "bf16"
    assert all(np.isfinite(e.losses["l_adv"]) and np.isfinite(e.losses["loss_d"]) for e in events)
    for name, value in trainer._d.state_dict().items():
        if value.is_floating_point():
            assert value.dtype == torch.float32, name


def test_init_starts_from_a_models_weights():
    from napari_cycsr.models import SRModel
    from napari_cycsr.simulate import simulate_pcle
    from napari_cycsr.training import TrainConfig, Trainer

    sim = simulate_pcle(np.random.default_rng(2).random((96, 96)), seed=2)
    cfg = TrainConfig(preset="tiny", iterations=1, batch_size=2, patch=32, device="cpu",
                      preview_every=0, seed=5)  # fmt: skip
    torch.manual_seed(123)
    start = SRModel.new("tiny")
    for param in start.generator.parameters():
        torch.nn.init.normal_(param, std=0.01)
    start.metadata["pretrained_name"] = "default"
    kept = {k: v.clone() for k, v in start.generator.state_dict().items()}
    start.normalisation = {"low": -0.1, "high": 1.3}
    trainer = Trainer(sim.lr, sim.bundle, config=cfg, values=sim.values, init=start)
    # fine-tuning starts from the function the model computes: its own intensity scaling
    assert trainer.normalisation == {"low": -0.1, "high": 1.3}
    before = trainer.model
    for a, b in zip(before.generator.state_dict().values(), start.generator.state_dict().values()):
        torch.testing.assert_close(a, b)
    list(trainer.run())
    assert trainer.model.metadata["initialised_from"] == "default"
    # training moved the weights, and left the initial model as it was
    for key, value in start.generator.state_dict().items():
        torch.testing.assert_close(value, kept[key])
    assert not all(
        torch.equal(a, b)
        for a, b in zip(
            trainer.model.generator.state_dict().values(), start.generator.state_dict().values()
        )
    )
    with pytest.raises(ValueError, match="network differs"):
        Trainer(sim.lr, sim.bundle, config=cfg, values=sim.values, init=SRModel.new("default"))
    with pytest.raises(TypeError, match="SRModel"):
        Trainer(sim.lr, sim.bundle, config=cfg, values=sim.values, init="default")


def test_fine_tune_settings_keep_the_network_and_carry_the_objective():
    """One rule for `cycsr train --init` and the Train widget: the model's network, its loss
    settings unless given, never its data's; a network that is no preset's, or not the
    given preset / scale, is refused."""
    from napari_cycsr.config import PRESETS, NetworkConfig, fine_tune_settings, get_preset

    recipe = {"w_res": 1.0, "w_adv": 0.0, "vec_tolerance": 1.5, "augment_lr": True,
              "noise_level": 0.3, "w_multi": 1.0, "iterations": 7, "target": "images"}  # fmt: skip
    network, carried = fine_tune_settings(PRESETS["tiny"], recipe, {"w_adv": 1e-3})
    assert network == {"preset": "tiny", "scale": 1, "residual": True}
    assert carried == {"w_res": 1.0, "vec_tolerance": 1.5, "augment_lr": True}
    network, carried = fine_tune_settings(get_preset("default", scale=2).to_dict(), None, {})
    assert network == {"preset": "default", "scale": 2, "residual": True} and carried == {}
    with pytest.raises(ValueError, match="is not the 'default' preset"):
        fine_tune_settings(PRESETS["tiny"], recipe, {"preset": "default"})
    with pytest.raises(ValueError, match="has scale 1, not 2"):
        fine_tune_settings(PRESETS["tiny"], recipe, {"scale": 2})
    with pytest.raises(ValueError, match="matches no preset"):
        fine_tune_settings(NetworkConfig(channels=5, blocks=1), recipe)


def test_a_model_trained_on_paired_targets_fine_tunes_on_single_frames_with_do_no_harm():
    """The video-trained default was held by its fused targets (w_res 0): without paired
    targets the fine-tuning is held to the initial model instead (w_anchor); with them
    (``--video``) it keeps its own objective; a weight the user gives wins either way."""
    from napari_cycsr import pretrained
    from napari_cycsr.config import (
        PRESETS,
        UNPAIRED_FINE_TUNE_W_ANCHOR,
        fine_tune_settings,
        recipe_losses,
    )  # fmt: skip

    video = {"target": "paired", "w_pix": 1.0, "w_res": 0.0, "w_multi": 1.0, "augment_lr": True}
    single = recipe_losses(video)
    assert single["w_anchor"] == UNPAIRED_FINE_TUNE_W_ANCHOR == 10.0 and single["w_res"] == 0.0
    assert "w_anchor" not in recipe_losses(video, paired=True)
    assert "w_anchor" not in recipe_losses({**video, "w_pix": 0.0})  # not trained on pairs
    assert recipe_losses({**video, "w_anchor": 30.0})["w_anchor"] == 30.0  # never lowered
    _, single = fine_tune_settings(PRESETS["tiny"], video, {})
    _, on_video = fine_tune_settings(PRESETS["tiny"], video, {"w_pix": 1.0, "w_multi": 1.0})
    _, told = fine_tune_settings(PRESETS["tiny"], video, {"w_anchor": 0.25})
    assert (single["w_anchor"], "w_anchor" in on_video, "w_anchor" in told) == (10.0, False, False)
    # the shipped default is such a model
    shipped = pretrained("default").metadata["train_config"]
    assert shipped["target"] == "paired" and shipped["w_res"] == 0.0
    assert recipe_losses(shipped)["w_anchor"] == 10.0


def test_residual_penalty_keeps_the_output_near_its_input():
    from napari_cycsr.simulate import simulate_pcle
    from napari_cycsr.training import TrainConfig, Trainer

    sim = simulate_pcle(np.random.default_rng(3).random((96, 96)), seed=3)
    change = {}
    for w_res in (0.0, 100.0):
        cfg = TrainConfig(preset="tiny", iterations=8, batch_size=4, patch=32, device="cpu",
                          preview_every=0, learning_rate=2e-3, w_res=w_res)  # fmt: skip
        trainer = Trainer(sim.lr, sim.bundle, config=cfg, values=sim.values)
        list(trainer.run())
        out = super_resolve(trainer.model, sim.lr, device="cpu", mask=sim.mask)
        change[w_res] = float(np.abs(out - sim.lr)[sim.mask].mean())
    assert change[100.0] < 0.5 * change[0.0]


def _pretrained_start(seed: int = 123):
    """A tiny model whose output differs from its input (a fine-tuning's start)."""
    from napari_cycsr.models import SRModel

    torch.manual_seed(seed)
    start = SRModel.new("tiny")
    for param in start.generator.parameters():
        torch.nn.init.normal_(param, std=0.05)
    start.metadata["pretrained_name"] = "start"
    return start


def test_anchor_penalty_keeps_a_fine_tuning_near_the_initial_model():
    """w_anchor holds the output to the initial model's (not to the input, as w_res does):
    with a strong anchor a fine-tuning that moves freely without it stays where it started."""
    sim = simulate_pcle(np.random.default_rng(4).random((96, 96)), seed=4)
    start = _pretrained_start()
    before = super_resolve(start, sim.lr, device="cpu", mask=sim.mask)
    change, reported = {}, {}
    for w_anchor in (0.0, 100.0):
        cfg = TrainConfig(preset="tiny", iterations=8, batch_size=4, patch=32, device="cpu",
                          preview_every=0, learning_rate=2e-3, w_anchor=w_anchor)  # fmt: skip
        trainer = Trainer(sim.lr, sim.bundle, config=cfg, values=sim.values, init=start)
        list(trainer.run())
        out = super_resolve(trainer.model, sim.lr, device="cpu", mask=sim.mask)
        change[w_anchor] = float(np.abs(out - before)[sim.mask].mean())
        reported[w_anchor] = [h.get("l_anchor") for h in trainer.history]
    assert change[100.0] < 0.5 * change[0.0]
    # the term is reported only where it is on
    assert reported[0.0] == [None] * 8
    assert all(np.isfinite(v) and v >= 0 for v in reported[100.0])
    # the anchor is the *initial* model as it runs at inference (eval mode, its batch-norm
    # statistics): it does not follow the training
    assert trainer._anchor is not None and not trainer._anchor.training
    assert not any(p.requires_grad for p in trainer._anchor.parameters())
    for a, b in zip(trainer._anchor.state_dict().values(), start.generator.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_anchor_needs_an_initial_model(sim):
    with pytest.raises(ValueError, match="w_anchor > 0 .* needs init="):
        Trainer(sim.lr, sim.bundle, config=_config(w_anchor=1.0), values=sim.values)
    with pytest.raises(ValueError, match="w_anchor must be a number >= 0"):
        _config(w_anchor=-1.0)


def test_anchored_fine_tuning_resumes_bit_identically(sim, tmp_path):
    """The frozen initial model travels in the checkpoint: a resumed anchored run continues
    exactly, and needs no init= again."""
    start = _pretrained_start(7)
    config = _config(iterations=6, preview_every=0, w_anchor=1.0, noise_sigma=0.1)
    full = Trainer(sim.lr, sim.bundle, config=config, values=sim.values, init=start)
    list(full.run())
    first = Trainer(
        sim.lr, sim.bundle, config=config, values=sim.values, init=start, checkpoint=tmp_path
    )
    resumed = _interrupt_and_resume(first, 3, tmp_path, sim)
    _assert_same_weights(full, resumed)
    assert [h["l_anchor"] for h in resumed.history] == [h["l_anchor"] for h in full.history]
    assert resumed.model.metadata["initialised_from"] == "start"
    # a checkpoint of a run without the anchor cannot be resumed with one
    plain = tmp_path / "plain"
    trainer = Trainer(sim.lr, sim.bundle, config=_config(iterations=1), values=sim.values,
                      checkpoint=plain)  # fmt: skip
    list(trainer.run())
    with pytest.raises(ValueError, match="has none"):
        Trainer.resume(plain, sim.lr, sim.bundle, values=sim.values, w_anchor=1.0)


def test_train_with_init_fine_tunes_as_the_command_line_does(sim):
    """``train(..., init=model)`` without a config takes the model's network and objective
    (one rule with ``cycsr train --init``); given fields win; an explicit config is kept."""
    from napari_cycsr import pretrained
    from napari_cycsr.config import fine_tune_settings

    start = pretrained("default")
    quick = dict(iterations=1, batch_size=2, patch=32, progress=False, preview_every=0,
                 checkpoint_every=0, device="cpu")  # fmt: skip
    tuned = train(sim.lr, sim.bundle, values=sim.values, init=start, **quick)
    got = tuned.metadata["train_config"]
    network, carried = fine_tune_settings(start.generator.config, start.metadata["train_config"])
    assert {k: got[k] for k in network} == network and network["preset"] == "tiny"
    assert {k: got[k] for k in carried} == carried and got["w_anchor"] == 10.0
    # a field given here wins over the carried one
    told = train(sim.lr, sim.bundle, values=sim.values, init=start, w_anchor=0.5, **quick)
    assert told.metadata["train_config"]["w_anchor"] == 0.5
    # an explicit config is used as it is
    config = TrainConfig(preset="tiny", iterations=1, batch_size=2, patch=32, device="cpu",
                         preview_every=0, checkpoint_every=0)  # fmt: skip
    plain = train(sim.lr, sim.bundle, config=config, values=sim.values, init=start,
                  progress=False)  # fmt: skip
    assert plain.metadata["train_config"]["w_anchor"] == 0.0
    # another network than the model's is refused, naming it
    with pytest.raises(ValueError, match="preset"):
        train(sim.lr, sim.bundle, values=sim.values, init=start, preset="default", **quick)


def test_fine_tuning_learns_at_the_initial_models_fibre_spacing(tmp_path):
    """A model that records its fibre spacing is fine-tuned on frames resampled to it (as
    super_resolve runs it): the sampler sees the resized frames and bundles, the fine-tuned
    model records the model's spacing, the preview stays on the first frame's own grid, and
    a resumed run resamples the same way, bit for bit."""
    from napari_cycsr.simulate import simulate_pcle

    hr = data.camera()[100:260, 100:260] / 255.0
    sim = simulate_pcle(hr, spacing=5.0, noise=0.01, seed=0)
    start = _pretrained_start(3)
    start.metadata["fibre_spacing"] = sim.bundle.spacing / 2
    config = _config(iterations=4, preview_every=2, w_anchor=1.0)
    two = dict(values=[sim.values, sim.values], init=start)  # two images, one shared bundle
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer = Trainer([sim.lr, sim.lr], [sim.bundle, sim.bundle], config=config, **two)
    assert trainer.work_spacing == pytest.approx(sim.bundle.spacing / 2)
    assert trainer.spacing_zooms == [pytest.approx(0.5)] * 2
    assert [im.shape for im in trainer.sampler.images] == [(1, 80, 80)] * 2
    assert trainer.sampler.bundles[0] is trainer.sampler.bundles[1]
    assert trainer.fibre_spacing == pytest.approx(sim.bundle.spacing / 2, rel=0.02)
    assert "0.50" in trainer.spacing_note()
    events = list(trainer.run())
    y0, x0, h, w = trainer.preview_crop
    assert y0 + h <= 160 and x0 + w <= 160 and h > 80  # the first frame's own pixels
    assert events[-1].preview.shape == (h, w)
    meta = trainer.model.metadata
    assert meta["fibre_spacing"] == pytest.approx(start.metadata["fibre_spacing"], rel=0.02)
    assert meta["resampled_from_spacing"] == pytest.approx(sim.bundle.spacing)
    # a resumed run learns at the same spacing (recorded in the checkpoint), bit for bit
    config = _config(iterations=4, preview_every=0, w_anchor=1.0, noise_sigma=0.1)
    full = Trainer(sim.lr, sim.bundle, config=config, values=sim.values, init=start)
    list(full.run())
    first = Trainer(sim.lr, sim.bundle, config=config, values=sim.values, init=start,
                    checkpoint=tmp_path)  # fmt: skip
    resumed = _interrupt_and_resume(first, 2, tmp_path, sim)
    assert resumed.spacing_zooms == [pytest.approx(0.5)]
    _assert_same_weights(full, resumed)


def test_fine_tuning_at_the_frames_own_spacing_warns():
    """match_spacing=False (or fibre_spacing=None) trains on the frames as they are, and
    says that the filters meet the fibres at another scale; within 5 % nothing happens."""
    from napari_cycsr.simulate import simulate_pcle

    hr = np.random.default_rng(0).random((64, 64))
    sim = simulate_pcle(hr, noise=0.01, seed=0)  # default spacing, about 2.2 px
    start = SRModel.new("tiny")
    quick = dict(iterations=1, batch_size=2, patch=32, preview_every=0, checkpoint_every=0,
                 device="cpu", w_anchor=0.0, progress=False)  # fmt: skip
    start.metadata["fibre_spacing"] = sim.bundle.spacing * 2.2
    with pytest.warns(UserWarning, match="not resampled"):
        model = train(sim.lr, sim.bundle, values=sim.values, init=start, match_spacing=False,
                      **quick)  # fmt: skip
    assert model.metadata["fibre_spacing"] == pytest.approx(sim.bundle.spacing)
    assert "resampled_from_spacing" not in model.metadata
    with pytest.warns(UserWarning, match="not resampled"):
        train(sim.lr, sim.bundle, values=sim.values, init=start, fibre_spacing=None, **quick)
    start.metadata["fibre_spacing"] = sim.bundle.spacing * 1.02  # within 5 %: as given
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = train(sim.lr, sim.bundle, values=sim.values, init=start, **quick)
    assert "resampled_from_spacing" not in model.metadata
    # frames that shrink below a patch: the message says they were resampled, and why
    start.metadata["fibre_spacing"] = sim.bundle.spacing / 2.5
    with pytest.raises(ValueError, match="resampled x0.40 .* match_spacing=False"):
        train(sim.lr, sim.bundle, values=sim.values, init=start, **quick)
    # a spacing asked for by number, also from scratch; nonsense is refused
    config = _config(iterations=1, preview_every=0)
    trainer = Trainer(sim.lr, sim.bundle, config=config, fibre_spacing=sim.bundle.spacing * 2)
    assert trainer.spacing_zooms == [pytest.approx(2.0)]
    for bad in ("model", 0, -1.0, float("nan"), True, [2.0]):
        with pytest.raises(ValueError, match="fibre_spacing"):
            Trainer(sim.lr, sim.bundle, config=config, fibre_spacing=bad)


def test_cosine_learning_rate_decay_follows_the_iteration_and_resumes_exactly(sim, tmp_path):
    """lr_decay: a half cosine from learning_rate to learning_rate * (1 - d) over the run,
    set on both optimisers each step; a resumed run continues it bit for bit."""
    config = _config(iterations=5, preview_every=0, lr_decay=0.9, learning_rate=1e-3,
                     noise_sigma=0.1)  # fmt: skip
    full = Trainer(sim.lr, sim.bundle, config=config, values=sim.values)
    rates = [full.learning_rate(i) for i in range(5)]
    assert rates[0] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-4)
    assert rates[2] == pytest.approx(0.55e-3) and all(np.diff(rates) < 0)
    list(full.run())
    for optimizer in (full.optimizer_g, full.optimizer_d):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(rates[-1])
    first = Trainer(sim.lr, sim.bundle, config=config, values=sim.values, checkpoint=tmp_path)
    _assert_same_weights(full, _interrupt_and_resume(first, 2, tmp_path, sim))
    # the default keeps the rate, and the decay changes what is learnt
    constant = Trainer(sim.lr, sim.bundle, config=dataclasses.replace(config, lr_decay=0.0),
                       values=sim.values)  # fmt: skip
    assert constant.learning_rate(4) == pytest.approx(1e-3)
    list(constant.run())
    assert not torch.equal(_weights(constant)["g.head.0.weight"], _weights(full)["g.head.0.weight"])
    for bad in (-0.1, 1.5, True, "0.5"):
        with pytest.raises(ValueError, match="lr_decay"):
            _config(lr_decay=bad)
