"""Model files and checkpoints: bit-exact round trips and clear failures."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import napari_cycsr
from napari_cycsr.inference import super_resolve
from napari_cycsr.io import (
    FORMAT_VERSION,
    flatten_state_dict,
    load_checkpoint,
    load_model,
    model_to_tensors,
    read_header,
    save_checkpoint,
    save_model,
    unflatten_state_dict,
)
from napari_cycsr.models import SRModel, get_preset


def _random_model(seed: int = 0, **overrides) -> SRModel:
    """A tiny model whose every weight and BN statistic is random (not the identity)."""
    torch.manual_seed(seed)
    model = SRModel.new(
        get_preset("tiny", **overrides),
        normalisation={"low": 10.0, "high": 250.0},
        metadata={"seed": np.int64(seed), "spacing": np.float32(2.5), "losses": [1.0, 0.5]},
    )
    with torch.no_grad():
        for p in model.generator.parameters():
            p.normal_(0.0, 0.1)
        for name, b in model.generator.named_buffers():
            if name.endswith("running_mean"):
                b.normal_(0.0, 0.1)
            elif name.endswith("running_var"):
                b.uniform_(0.5, 1.5)
    model.generator.eval()
    return model


def _image(shape=(37, 53), seed=1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(10, 250, shape).astype(np.float32)


def test_round_trip_is_bit_exact(tmp_path):
    model = _random_model()
    path = save_model(model, tmp_path / "sub" / "model.safetensors")
    assert path.exists() and path.parent.name == "sub"
    loaded = load_model(path)
    assert not loaded.generator.training
    assert loaded.config == model.config
    assert loaded.normalisation == {"low": 10.0, "high": 250.0}
    assert loaded.metadata["seed"] == 0 and loaded.metadata["losses"] == [1.0, 0.5]
    assert loaded.metadata["spacing"] == 2.5
    assert loaded.metadata["package_version"] == napari_cycsr.__version__
    original = model.generator.state_dict()
    restored = loaded.generator.state_dict()
    assert original.keys() == restored.keys()
    for key, tensor in original.items():
        assert tensor.dtype == restored[key].dtype
        assert torch.equal(tensor, restored[key]), key
    image = _image()
    np.testing.assert_array_equal(
        super_resolve(model, image, device="cpu"), super_resolve(loaded, image, device="cpu")
    )


def test_round_trip_scale_model_and_header(tmp_path):
    model = _random_model(seed=3, scale=2)
    path = save_model(model, tmp_path / "x2.safetensors")
    header = read_header(path)
    assert header["format"] == "napari-cycsr model"
    assert header["format_version"] == FORMAT_VERSION
    assert header["package_version"] == napari_cycsr.__version__
    assert header["network"]["scale"] == 2
    loaded = load_model(path)
    assert loaded.scale == 2
    image = _image((20, 24))
    np.testing.assert_array_equal(
        super_resolve(model, image, device="cpu"), super_resolve(loaded, image, device="cpu")
    )


def test_save_overwrites_atomically_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "m.safetensors"
    save_model(_random_model(seed=1), path)
    save_model(_random_model(seed=2), path)
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]
    plain = tmp_path / "plain"
    plain.write_bytes(b"")  # permissions follow the umask, like any new file
    assert path.stat().st_mode == plain.stat().st_mode
    plain.unlink()
    loaded = load_model(path)
    expected = _random_model(seed=2).generator.state_dict()
    assert all(torch.equal(v, loaded.generator.state_dict()[k]) for k, v in expected.items())


def test_save_refuses_bad_input(tmp_path):
    with pytest.raises(TypeError, match="SRModel"):
        save_model(torch.nn.Conv2d(1, 1, 3), tmp_path / "m.safetensors")
    model = _random_model()
    model.metadata["bad"] = object()
    with pytest.raises(ValueError, match="JSON"):
        save_model(model, tmp_path / "m.safetensors")
    model = _random_model()
    model.normalisation = {"low": 1.0, "high": 1.0}
    with pytest.raises(ValueError, match="low < high"):
        save_model(model, tmp_path / "m.safetensors")
    with pytest.raises(IsADirectoryError):
        save_model(_random_model(), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_model(tmp_path / "absent.safetensors")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "header", "flip_data"])
def test_corrupted_file_fails_clearly(tmp_path, damage):
    path = save_model(_random_model(), tmp_path / "m.safetensors")
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = bytearray(b"not a model at all")
    elif damage == "header":
        data[10:14] = b"\xff\xfe\xfd\xfc"
    else:  # a bit flip in the weights (the header stays valid)
        data[-5] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupted"):
        load_model(path)


def test_other_programs_safetensors_is_refused(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(3)}, str(path))
    with pytest.raises(ValueError, match="not a napari-cycsr file"):
        load_model(path)
    save_file({"weight": torch.zeros(3)}, str(path), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="another program"):
        load_model(path)


def _rewrite_header(path, edit) -> None:
    """Rewrite the napari_cycsr JSON in a safetensors file (keeping the tensors)."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    document = json.loads(header["__metadata__"]["napari_cycsr"])
    edit(document)
    header["__metadata__"]["napari_cycsr"] = json.dumps(document)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n :])


def test_newer_format_version_is_refused(tmp_path):
    path = save_model(_random_model(), tmp_path / "m.safetensors")
    _rewrite_header(path, lambda d: d.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(ValueError, match="newer|Upgrade"):
        load_model(path)


def test_mismatched_config_is_refused(tmp_path):
    path = save_model(_random_model(), tmp_path / "m.safetensors")
    _rewrite_header(path, lambda d: d["network"].update(channels=16))
    with pytest.raises(ValueError, match="shape mismatch"):
        load_model(path)
    path = save_model(_random_model(), tmp_path / "m.safetensors")
    _rewrite_header(path, lambda d: d["network"].update(blocks=3))
    with pytest.raises(ValueError, match="missing weights"):
        load_model(path)
    path = save_model(_random_model(), tmp_path / "m.safetensors")
    _rewrite_header(path, lambda d: d["network"].update(blocks=1))
    with pytest.raises(ValueError, match="unexpected weights"):
        load_model(path)
    path = save_model(_random_model(), tmp_path / "m.safetensors")
    _rewrite_header(path, lambda d: d["network"].update(scale=3))
    with pytest.raises(ValueError, match="invalid network config"):
        load_model(path)


def test_checkpoint_file_is_not_a_model_and_vice_versa(tmp_path):
    ckpt = save_checkpoint(tmp_path / "c.safetensors", {"x": torch.ones(2)}, {"iteration": 5})
    with pytest.raises(ValueError, match="without an embedded model"):
        load_model(ckpt)
    model_path = save_model(_random_model(), tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match="expected one of"):
        load_checkpoint(model_path)


def _adam_after_steps():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    for _ in range(2):
        optimiser.zero_grad()
        net(torch.randn(2, 1, 8, 8)).square().mean().backward()
        optimiser.step()
    return net, optimiser


def _assert_same_state(a, b) -> None:
    assert type(a) is type(b)
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            _assert_same_state(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same_state(x, y)
    else:
        assert a == b


def test_checkpoint_round_trip_of_adam_state_and_embedded_model(tmp_path):
    net, optimiser = _adam_after_steps()
    state = optimiser.state_dict()
    opt_tensors, skeleton = flatten_state_dict("optim_g.", state)
    assert all(k.startswith("optim_g.") for k in opt_tensors)
    model = _random_model()
    model_tensors, model_meta = model_to_tensors(model)
    rng = torch.get_rng_state()
    numpy_state = np.random.default_rng(7).bit_generator.state
    meta = {
        "iteration": 2,
        "optimiser": skeleton,
        "model": model_meta,
        "numpy_rng": numpy_state,
        "best": float("inf"),
    }
    path = save_checkpoint(
        tmp_path / "ckpt.safetensors", {**opt_tensors, **model_tensors, "rng": rng}, meta
    )
    tensors, loaded_meta = load_checkpoint(path)
    assert loaded_meta["iteration"] == 2
    assert loaded_meta["numpy_rng"] == numpy_state
    assert loaded_meta["best"] == float("inf")
    assert torch.equal(tensors["rng"], rng)
    restored = unflatten_state_dict(tensors, loaded_meta["optimiser"])
    _assert_same_state(state, restored)
    # the restored state loads into a fresh optimiser and continues identically
    net2, optimiser2 = _adam_after_steps()
    optimiser2.load_state_dict(restored)
    _assert_same_state(optimiser.state_dict(), optimiser2.state_dict())
    # the checkpoint opens as a model too
    embedded = load_model(path)
    for key, value in model.generator.state_dict().items():
        assert torch.equal(value, embedded.generator.state_dict()[key])


def test_flatten_keeps_special_keys_and_values():
    state = {
        0: {"t": torch.arange(3)},
        "__tensor__": "not a tensor",
        "nested": [(1, 2.5, None, True), {"x": float("nan")}],
    }
    tensors, skeleton = flatten_state_dict("p.", state)
    json.dumps(skeleton, allow_nan=False)  # strict JSON
    restored = unflatten_state_dict(tensors, skeleton)
    assert list(restored) == [0, "__tensor__", "nested"]
    assert torch.equal(restored[0]["t"], torch.arange(3))
    assert restored["__tensor__"] == "not a tensor"
    assert restored["nested"][0] == (1, 2.5, None, True)
    assert np.isnan(restored["nested"][1]["x"])


def test_flatten_copies_and_rejects_unknown_values():
    source = torch.zeros(3)
    tensors, _ = flatten_state_dict("a.", {"w": source})
    source += 1  # later changes to the live state must not leak into the flattened copy
    assert torch.equal(tensors["a.w"], torch.zeros(3))
    with pytest.raises(TypeError, match="cannot flatten"):
        flatten_state_dict("a.", {"f": object()})
    with pytest.raises(ValueError, match="no tensor"):
        unflatten_state_dict({}, {"__tensor__": "missing"})


# --------------------------------------------------------------------------------------------
# hostile or damaged model files (issue 12): checked before anything is allocated
# --------------------------------------------------------------------------------------------


def _peak_traced_bytes(fn) -> int:
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
    except ValueError:
        pass
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


@pytest.mark.parametrize(
    "edit, match",
    [
        (dict(channels=4096, blocks=64), r"channels must be an integer in \[1, \d+\]"),
        (dict(blocks=1_000_000), r"blocks must be an integer in \[1, \d+\]"),
        (dict(channels=True), "channels must be an integer"),
        (dict(residual="yes"), "residual must be true or false"),
        (dict(channels=16), "shape mismatch"),
    ],
)
def test_declared_sizes_are_checked_before_building(tmp_path, edit, match):
    path = save_model(_random_model(), tmp_path / "m.safetensors")
    _rewrite_header(path, lambda d: d["network"].update(edit))
    with pytest.raises(ValueError, match=match) as info:
        load_model(path)
    assert str(path) in str(info.value)
    # nothing big was allocated: well under what even the smallest refused network needs
    assert _peak_traced_bytes(lambda: load_model(path)) < 20_000_000


def test_a_file_that_claims_a_bigger_network_than_its_tensors_is_refused_early(tmp_path):
    """channels=512, blocks=128 is allowed in principle (2.4 GB); the tensors say otherwise."""
    path = save_model(_random_model(), tmp_path / "m.safetensors")
    _rewrite_header(path, lambda d: d["network"].update(channels=512, blocks=128))
    with pytest.raises(ValueError, match="do not match the network config"):
        load_model(path)
    assert _peak_traced_bytes(lambda: load_model(path)) < 20_000_000


def test_nan_or_inf_weights_are_refused_naming_the_file(tmp_path):
    model = _random_model()
    with torch.no_grad():
        model.generator.head[0].weight[0, 0, 0, 0] = float("nan")
    path = save_model(model, tmp_path / "nan.safetensors")
    with pytest.raises(ValueError, match=r"nan\.safetensors.*NaN or infinite.*head\.0\.weight"):
        load_model(path)
    with torch.no_grad():
        model.generator.head[0].weight[0, 0, 0, 0] = float("inf")
    path = save_model(model, tmp_path / "inf.safetensors")
    with pytest.raises(ValueError, match="NaN or infinite"):
        load_model(path)


@pytest.mark.parametrize("low, high", [(-1e308, 1e308), (0.0, 1e300), (-1e40, 0.0)])
def test_absurd_normalisation_is_refused_at_load(tmp_path, low, high):
    path = save_model(_random_model(), tmp_path / "m.safetensors")
    _rewrite_header(path, lambda d: d.update(normalisation={"low": low, "high": high}))
    with pytest.raises(ValueError, match=r"m\.safetensors.*normalisation"):
        load_model(path)


@pytest.mark.parametrize("spacing", [0, -2.0, "abc", True, [3]])
def test_bad_fibre_spacing_is_refused_at_load(tmp_path, spacing):
    path = save_model(_random_model(), tmp_path / "m.safetensors")
    _rewrite_header(path, lambda d: d["metadata"].update(fibre_spacing=spacing))
    with pytest.raises(ValueError, match="fibre_spacing must be a positive number"):
        load_model(path)


def test_check_model_spacing_says_what_is_wrong():
    from napari_cycsr.inference import check_model_spacing

    model = _random_model()
    model.metadata["fibre_spacing"] = "abc"
    with pytest.raises(ValueError, match="fibre_spacing must be a positive number"):
        check_model_spacing(model, 3.0)
    model.metadata["fibre_spacing"] = 0
    with pytest.raises(ValueError, match="fibre_spacing must be a positive number"):
        check_model_spacing(model, 3.0)


def test_network_config_refuses_bools():
    from napari_cycsr.models import NetworkConfig

    with pytest.raises(ValueError, match="channels must be a positive integer"):
        NetworkConfig(channels=True)
    with pytest.raises(ValueError, match="scale must be 1, 2 or 4"):
        NetworkConfig(scale=True)


def test_every_shipped_pretrained_model_loads_and_runs():
    """Each model of the package's manifest: the file matches its SHA-256, its metadata its
    manifest entry, and it super-resolves a small frame (finite, same shape)."""
    from napari_cycsr._pretrained import list_pretrained, pretrained

    shipped = list_pretrained()
    assert shipped and shipped[0]["name"] == "default"
    frame = np.random.default_rng(0).random((40, 40)).astype(np.float32)
    for entry in shipped:
        model = pretrained(entry["name"])
        assert model.metadata["fibre_spacing"] == pytest.approx(entry["fibre_spacing"])
        assert model.generator.config.channels == {"tiny": 8, "default": 32}[entry["preset"]]
        out = super_resolve(model, frame, device="cpu", ensemble=1, threads=1)
        assert out.shape == frame.shape and np.isfinite(out).all()
