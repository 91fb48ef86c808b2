"""Inference: shapes, stacks, dask, tiling equivalence, masks, devices, validation."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import torch

from napari_cycsr import inference
from napari_cycsr.config import DEFAULT_ENSEMBLE, ENSEMBLE_SIZES
from napari_cycsr.inference import (
    Progress,
    available_devices,
    check_image,
    iter_super_resolve,
    receptive_radius,
    resolve_device,
    super_resolve,
)
from napari_cycsr.models import SRModel, get_preset


def _model(scale: int = 1, seed: int = 0) -> SRModel:
    """A tiny model with non-trivial weights: the zero-initialised tail is re-drawn."""
    torch.manual_seed(seed)
    model = SRModel.new(get_preset("tiny", scale=scale), normalisation={"low": 0.0, "high": 2.0})
    with torch.no_grad():
        torch.nn.init.normal_(model.generator.tail.weight, std=0.05)
        torch.nn.init.normal_(model.generator.tail.bias, std=0.05)
        for name, b in model.generator.named_buffers():
            if name.endswith("running_var"):
                b.uniform_(0.5, 1.5)
    model.generator.eval()
    return model


@pytest.fixture(scope="module")
def model() -> SRModel:
    return _model()


def _image(shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape).astype(np.float32) * 2


def _reference(
    model: SRModel, frame: np.ndarray, *, mirror: bool = True, ensemble: int = DEFAULT_ENSEMBLE
) -> np.ndarray:
    """Direct generator calls on one whole frame: the definition of the right answer.

    The frame is mirrored by the receptive radius on every side first and the output
    cropped back (what ``super_resolve`` does); ``mirror=False``: the convolutions' zero
    padding at the frame border. ``ensemble``: the mean of the generator's outputs on the
    frame's quarter turns (4), and their mirror images (8), or its mirror image (2), each
    output turned back with numpy.
    """
    low, high = model.normalisation["low"], model.normalisation["high"]
    pad = receptive_radius(model) if mirror else 0
    padded = np.pad(frame.astype(np.float32), pad, mode="symmetric")
    members = {1: [(0, False)], 2: [(0, False), (0, True)]}.get(
        ensemble, [(k, f) for k in range(4) for f in ((False, True) if ensemble == 8 else (False,))]
    )
    outs = []
    for k, flip in members:
        turned = np.rot90(padded, k)
        turned = turned[:, ::-1] if flip else turned
        x = torch.from_numpy((np.ascontiguousarray(turned) - low) / (high - low))[None, None]
        with torch.no_grad():
            y = model.generator.eval()(x)[0, 0].numpy()
        y = y[:, ::-1] if flip else y
        outs.append(np.rot90(y, -k))
    y = np.mean(outs, axis=0)
    s = model.scale
    y = y[pad * s : y.shape[0] - pad * s, pad * s : y.shape[1] - pad * s]
    return y * (high - low) + low


def test_no_stripes_at_the_frame_border(model):
    # a constant frame has no edge anywhere: with the mirrored border the output is
    # constant too; the zero padding of the convolutions alone would draw a frame of stripes
    flat = np.full((40, 48), 0.7, dtype=np.float32)
    out = super_resolve(model, flat, device="cpu")
    assert np.ptp(out) < 1e-5
    zero_padded = _reference(model, flat, mirror=False)
    assert np.ptp(zero_padded) > 1e-2
    assert np.abs(zero_padded[0] - zero_padded[20]).max() > 1e-2  # the border row differs


def test_single_image_matches_direct_call_and_is_not_identity(model):
    image = _image((37, 53))
    out = super_resolve(model, image, device="cpu")
    assert out.shape == (37, 53) and out.dtype == np.float32
    np.testing.assert_allclose(out, _reference(model, image), atol=1e-5)
    assert np.abs(out - image).max() > 1e-2  # the network really changed the image


@pytest.mark.parametrize("shape", [(3, 21, 19), (2, 3, 17, 23)])
def test_stacks_equal_frame_by_frame(model, shape):
    image = _image(shape, seed=1)
    out = super_resolve(model, image, device="cpu", batch=2)
    assert out.shape == shape and out.dtype == np.float32
    for index in np.ndindex(shape[:-2]):
        np.testing.assert_allclose(out[index], _reference(model, image[index]), atol=1e-5)


def test_integer_and_non_contiguous_input(model):
    image = (np.random.default_rng(2).random((2, 30, 40)) * 2).astype(np.float64)
    view = image[:, ::-1, :].transpose(0, 2, 1)  # negative strides, transposed
    out = super_resolve(model, view, device="cpu")
    np.testing.assert_allclose(out[1], _reference(model, np.ascontiguousarray(view[1])), atol=1e-5)
    counts = np.random.default_rng(3).integers(0, 3, (25, 31), dtype=np.uint16)
    np.testing.assert_allclose(
        super_resolve(model, counts, device="cpu"), _reference(model, counts), atol=1e-5
    )


@pytest.mark.parametrize("tile, overlap", [(34, None), (40, 13), (48, 16)])
def test_tiled_equals_whole_image(model, tile, overlap):
    assert receptive_radius(model) == 13  # tiny: 4 + 2*2*1 + 1 + 4
    image = _image((2, 61, 77), seed=4)
    whole = super_resolve(model, image, device="cpu")
    tiled = super_resolve(model, image, device="cpu", tile=tile, overlap=overlap, batch=3)
    assert np.abs(tiled - whole).max() < 1e-4


def test_small_overlap_differs_but_stays_close(model):
    image = _image((64, 64), seed=5)
    whole = super_resolve(model, image, device="cpu")
    seams = super_resolve(model, image, device="cpu", tile=24, overlap=2)
    assert np.abs(seams - whole).max() > 1e-4  # the overlap really matters


def test_scale_two_doubles_the_grid_and_tiles_agree():
    model = _model(scale=2, seed=1)
    image = _image((2, 29, 35), seed=6)
    whole = super_resolve(model, image, device="cpu")
    assert whole.shape == (2, 58, 70)
    np.testing.assert_allclose(whole[0], _reference(model, image[0]), atol=1e-5)
    tiled = super_resolve(model, image, device="cpu", tile=30)
    assert np.abs(tiled - whole).max() < 1e-4


def test_dask_in_dask_out_equals_numpy(model):
    image = _image((3, 40, 36), seed=7)
    lazy = da.from_array(image, chunks=(2, 20, 20))
    out = super_resolve(model, lazy, device="cpu", tile=30)
    assert isinstance(out, da.Array)
    assert out.shape == (3, 40, 36) and out.dtype == np.float32
    assert out.chunks[-2:] == ((40,), (36,))  # whole frames per chunk
    np.testing.assert_allclose(out.compute(), super_resolve(model, image, device="cpu"), atol=1e-6)
    model2 = _model(scale=2)
    out2 = super_resolve(model2, lazy, device="cpu")
    assert out2.shape == (3, 80, 72)
    np.testing.assert_allclose(out2[1].compute(), _reference(model2, image[1]), atol=1e-5)


def test_dask_nan_is_reported_at_compute(model):
    image = _image((2, 20, 20))
    image[1, 3, 3] = np.nan
    out = super_resolve(model, da.from_array(image, chunks=(1, 20, 20)), device="cpu")
    with pytest.raises(ValueError, match="NaN"):
        out.compute()


def test_mask_zeroes_outside(model):
    image = _image((2, 30, 30), seed=8)
    yy, xx = np.mgrid[:30, :30]
    mask = (yy - 15) ** 2 + (xx - 15) ** 2 < 12**2
    out = super_resolve(model, image, device="cpu", mask=mask)
    assert np.all(out[:, ~mask] == 0)
    # the outside is filled with the nearest inside pixel before the network: what lies
    # outside does not matter, and the result is the network's on the filled frames
    other = image.copy()
    other[:, ~mask] = 1e3
    np.testing.assert_array_equal(super_resolve(model, other, device="cpu", mask=mask), out)
    from scipy import ndimage

    _, (iy, ix) = ndimage.distance_transform_edt(~mask, return_indices=True)
    filled = image[:, iy, ix]
    np.testing.assert_allclose(out[:, mask], super_resolve(model, filled, device="cpu")[:, mask])
    assert not np.allclose(out[:, mask], super_resolve(model, image, device="cpu")[:, mask])
    # tiles see the filled frame too
    tiled = super_resolve(model, image, device="cpu", mask=mask, tile=28)
    np.testing.assert_allclose(tiled, out, atol=1e-5)
    up = super_resolve(_model(scale=2), image[0], device="cpu", mask=mask)
    assert up.shape == (60, 60)
    assert np.all(up[::2, ::2][~mask] == 0) and np.all(up[1::2, 1::2][~mask] == 0)
    assert np.all(up[::2, ::2][mask] != 0)


def test_progress_counts_and_generator(model):
    image = _image((3, 50, 50), seed=9)
    calls: list[tuple[int, int]] = []
    super_resolve(
        model, image, device="cpu", tile=40, batch=4, progress=lambda d, t: calls.append((d, t))
    )
    total = calls[0][1]
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    # 50 px mirrored by 13 px (76 px), 40 px windows with 13 px of context on each side of
    # their 14 px cores: the 50 px need 4 windows per axis
    assert total == 3 * 16
    assert all(b[0] > a[0] for a, b in zip(calls, calls[1:]))
    gen = iter_super_resolve(model, image, device="cpu", batch=1)
    events = []
    with pytest.raises(StopIteration) as stop:
        while True:
            events.append(next(gen))
    assert events == [Progress(i, 3) for i in range(4)]
    expected = super_resolve(model, image, device="cpu", batch=1)
    np.testing.assert_array_equal(stop.value.value, expected)


def test_cancel_by_closing_the_generator(model):
    gen = iter_super_resolve(model, _image((4, 20, 20)), device="cpu", batch=1)
    assert next(gen) == (0, 4) and next(gen) == (1, 4)
    gen.close()  # no error, nothing else computed
    with pytest.raises(StopIteration):
        next(gen)


def test_input_and_model_unchanged():
    model = _model()
    model.generator.train()  # e.g. a preview during training
    before = {k: v.clone() for k, v in model.generator.state_dict().items()}
    image = _image((2, 24, 24), seed=10)
    copy = image.copy()
    image.flags.writeable = False  # a write attempt would raise
    super_resolve(model, image, device="cpu")
    np.testing.assert_array_equal(image, copy)
    assert model.generator.training
    for key, value in model.generator.state_dict().items():
        assert torch.equal(value, before[key]), key  # BN statistics not updated


def test_bool_images_are_zero_one_like_everywhere(model):
    """The one image rule (_validate.as_image): bool reads as 0/1, as in metrics and data."""
    mask = np.zeros((16, 16), dtype=bool)
    mask[4:12, 4:12] = True
    out = super_resolve(model, mask, device="cpu")
    np.testing.assert_allclose(out, super_resolve(model, mask.astype(np.uint8), device="cpu"))


@pytest.mark.parametrize(
    "bad, error, message",
    [
        (np.zeros(5), ValueError, "at least 2 dimensions"),
        (np.zeros((0, 5)), ValueError, "empty"),
        (np.zeros((3, 0, 5)), ValueError, "empty"),
        (np.indices((16, 16, 3)).sum(0), ValueError, "RGB"),
        (np.indices((2, 16, 16, 4)).sum(0), ValueError, "RGB"),
        (np.array([[1.0, np.nan], [0, 0]]), ValueError, "NaN"),
        (np.array([[1.0, np.inf], [0, 0]]), ValueError, "NaN or infinite"),
        (np.array([[1.0, -np.inf], [0, 0]]), ValueError, "NaN or infinite"),
        (np.zeros((4, 4), dtype=complex), TypeError, "dtype complex"),
        (np.zeros((4, 4), dtype=object), TypeError, "dtype object"),
        ("image.tif", TypeError, "dtype"),
    ],
)
def test_bad_images_are_refused(model, bad, error, message):
    with pytest.raises(error, match=message):
        super_resolve(model, bad, device="cpu")


def test_check_image_accepts_and_returns_without_copy():
    image = np.zeros((3, 16, 5))  # width 5 < ... (T, H, W) with W=5 is not RGB
    assert check_image(image) is image
    assert check_image(np.zeros((5, 4, 3))).shape == (5, 4, 3)  # W=4 too small to be RGB
    assert check_image([[1, 2], [3, 4]]).dtype.kind == "i"
    lazy = da.zeros((2, 8, 8), chunks=1)
    assert check_image(lazy) is lazy


def test_bad_arguments_are_refused(model):
    image = _image((20, 20))
    with pytest.raises(TypeError, match="SRModel"):
        super_resolve(model.generator, image)
    with pytest.raises(TypeError, match="load_model"):
        super_resolve("model.safetensors", image)
    with pytest.raises(ValueError, match="tile"):
        super_resolve(model, image, tile=10, overlap=13)
    with pytest.raises(ValueError, match="batch"):
        super_resolve(model, image, batch=0)
    with pytest.raises(TypeError, match="overlap"):
        super_resolve(model, image, overlap=2.5)
    with pytest.raises(ValueError, match="mask"):
        super_resolve(model, image, mask=np.ones((10, 10), bool))
    with pytest.raises(ValueError, match="mask must be boolean"):
        super_resolve(model, image, mask=np.full((20, 20), 0.5))  # an image, not a mask
    with pytest.raises(TypeError, match="mask"):
        super_resolve(model, image, mask=np.full((20, 20), "x"))
    with pytest.raises(ValueError, match="unknown device"):
        super_resolve(model, image, device="tpu")
    with pytest.raises(TypeError, match="progress"):
        super_resolve(model, image, progress=3)


def test_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    auto = resolve_device("auto")
    assert auto.type in {"cpu", "cuda", "mps"}
    names = available_devices()
    assert names[0] == "cpu" and all(resolve_device(n).type in n for n in names)
    with pytest.raises(TypeError):
        resolve_device(0)
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("gpu please")
    if not torch.cuda.is_available():
        assert auto.type != "cuda"
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_out_of_memory_retries_with_smaller_windows(model, monkeypatch):
    """Simulate a device that runs out of memory above 2 windows or windows over 70 px."""
    image = _image((2, 100, 100), seed=11)
    whole = super_resolve(model, image, device="cpu")
    real_forward = inference._forward
    sizes: list[tuple[int, ...]] = []

    def limited(net, batch, device, amp, *rest):
        sizes.append(tuple(batch.shape))
        if batch.shape[0] > 2 or batch.shape[-1] > 70:
            raise torch.OutOfMemoryError("simulated")
        return real_forward(net, batch, device, amp, *rest)

    monkeypatch.setattr(inference, "_forward", limited)
    calls: list[tuple[int, int]] = []
    out = super_resolve(
        model, image, device="cpu", batch=4, progress=lambda d, t: calls.append((d, t))
    )
    assert np.abs(out - whole).max() < 1e-4
    # whole frames mirrored by the receptive radius (13 px), then windows of half that size
    assert sizes[0] == (2, 1, 126, 126) and max(s[-1] for s in sizes[-3:]) <= 63
    assert all(b[0] >= a[0] for a, b in zip(calls, calls[1:]))
    assert calls[-1][0] == calls[-1][1]

    def always(net, batch, device, amp, *rest):
        raise torch.OutOfMemoryError("simulated")

    monkeypatch.setattr(inference, "_forward", always)
    with pytest.raises(RuntimeError, match="ran out of memory"):
        super_resolve(model, image, device="cpu")


@pytest.mark.parametrize("scale", [1, 2])
def test_receptive_radius_is_the_reach_of_one_pixel(scale):
    """A change of one input pixel moves output pixels exactly up to the radius, no farther."""
    model = _model(scale=scale, seed=2)
    radius = receptive_radius(model)
    base = _image((41, 41), seed=12)
    poked = base.copy()
    poked[20, 20] += 1.0
    diff = np.abs(_reference(model, poked) - _reference(model, base)) > 0
    ys, xs = np.nonzero(diff)
    # output pixel (y, x) sits at input coordinate (y + 0.5) / scale - 0.5
    reach = np.maximum(np.abs((ys + 0.5) / scale - 0.5 - 20), np.abs((xs + 0.5) / scale - 0.5 - 20))
    assert reach.max() <= radius
    if scale == 1:
        assert reach.max() == radius  # exact on the input grid
    else:
        assert reach.max() > radius - 1.5  # a safe bound, at most one pixel too generous


def test_check_model_spacing_refuses_a_model_for_another_fibre_scale():
    from napari_cycsr.inference import check_model_spacing
    from napari_cycsr.models import SRModel

    model = SRModel.new("tiny", metadata={"fibre_spacing": 3.0})
    check_model_spacing(model, 3.0)
    check_model_spacing(model, 4.4)  # within the 1.5x tolerance
    with pytest.raises(ValueError, match="trained on fibres 3.00 px apart"):
        check_model_spacing(model, 6.0)
    check_model_spacing(SRModel.new("tiny"), 6.0)  # no recorded spacing: nothing to check


# ---------------------------------------------------------------------- consistency projection


@pytest.fixture(scope="module")
def pcle():
    from skimage import data

    from napari_cycsr.simulate import simulate_pcle

    return simulate_pcle(data.camera()[200:264, 200:264] / 255.0, seed=0)


def test_projection_makes_the_output_consistent(model, pcle):
    from napari_cycsr.consistency import project_consistent
    from napari_cycsr.metrics import cycle_error

    b, v = pcle.bundle, pcle.values
    plain = super_resolve(model, pcle.lr, device="cpu", mask=b.fov_mask)  # same outside fill
    projected = super_resolve(model, pcle.lr, device="cpu", bundle=b, project_iterations=3)
    assert cycle_error(projected, b, v) < cycle_error(plain, b, v) / 10
    assert np.all(projected[~b.fov_mask] == 0)
    # values=None samples the (TLI) input, which gives back the measured values
    explicit = super_resolve(model, pcle.lr, device="cpu", bundle=b, values=v, project_iterations=3)
    np.testing.assert_allclose(projected, explicit, atol=1e-4)
    # one implementation: the same as projecting the plain output
    np.testing.assert_allclose(projected, project_consistent(plain, b, v, iterations=3), atol=1e-4)


def test_projection_of_stacks_numpy_and_dask_agree(model, pcle):
    b = pcle.bundle
    stack = np.stack([pcle.lr, 0.5 * pcle.lr, 0.8 * pcle.lr])
    values = b.sample(stack)
    out = super_resolve(model, stack, device="cpu", bundle=b)
    lazy = super_resolve(model, da.from_array(stack, chunks=(2, 64, 64)), device="cpu", bundle=b)
    given = super_resolve(
        model, da.from_array(stack, chunks=(1, 64, 64)), device="cpu", bundle=b, values=values
    )
    np.testing.assert_allclose(lazy.compute(), out, atol=1e-5)
    np.testing.assert_allclose(given.compute(), out, atol=1e-4)
    for i in range(3):
        single = super_resolve(model, stack[i], device="cpu", bundle=b)
        np.testing.assert_allclose(out[i], single, atol=1e-5)


def test_projection_for_a_scale_two_model(pcle):
    from napari_cycsr.consistency import cell_means

    model2 = _model(scale=2)
    b, v = pcle.bundle, pcle.values
    plain = super_resolve(model2, pcle.lr, device="cpu")
    out = super_resolve(model2, pcle.lr, device="cpu", bundle=b, project_iterations=3)
    assert out.shape == (128, 128)
    err = np.nanmean((cell_means(out, b) - v) ** 2)
    assert err < np.nanmean((cell_means(plain, b) - v) ** 2) / 10


def test_projection_arguments_are_checked(model, pcle):
    b = pcle.bundle
    with pytest.raises(ValueError, match="values needs bundle"):
        super_resolve(model, pcle.lr, device="cpu", values=pcle.values)
    with pytest.raises(TypeError, match="FibreBundle"):
        super_resolve(model, pcle.lr, device="cpu", bundle="fibres.csv")
    with pytest.raises(ValueError, match="grid"):
        super_resolve(model, pcle.lr[:-2], device="cpu", bundle=b)
    with pytest.raises(ValueError, match="values must have shape"):
        super_resolve(model, pcle.lr, device="cpu", bundle=b, values=pcle.values[:-1])
    with pytest.raises(ValueError, match="project_iterations"):
        super_resolve(model, pcle.lr, device="cpu", bundle=b, project_iterations=-1)


# ----------------------------------------------------------------------------- precision
def test_bf16_inference_is_close_to_fp32_and_keeps_float32_output(model, monkeypatch):
    from napari_cycsr import _device

    monkeypatch.setattr(_device, "cpu_has_native_bf16", lambda: True)  # no emulation warning
    image = _image((2, 40, 40), seed=21)
    fp32 = super_resolve(model, image, device="cpu", precision="fp32")
    bf16 = super_resolve(model, image, device="cpu", precision="bf16")
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    diff = np.abs(bf16 - fp32)
    assert 0 < diff.max() < 0.05  # bfloat16 rounding of the correction only
    # the float32 input skip keeps the error far below the image range (0..2)
    assert diff.mean() < 5e-3


def test_precision_choice_reaches_the_network(model, monkeypatch):
    from napari_cycsr import _device

    dtypes = []
    real_forward = inference._forward

    def spy(net, batch, device, dtype, *rest):
        dtypes.append(dtype)
        return real_forward(net, batch, device, dtype, *rest)

    monkeypatch.setattr(inference, "_forward", spy)
    monkeypatch.setattr(_device, "cpu_bf16_pays", lambda: False)
    image = _image((20, 20))
    super_resolve(model, image, device="cpu")  # auto on a CPU where bf16 does not pay
    monkeypatch.setattr(_device, "cpu_bf16_pays", lambda: True)
    super_resolve(model, image, device="cpu")  # auto where it pays
    super_resolve(model, image, device="cpu", amp=False)  # the old switch: float32
    super_resolve(model, image, device="cpu", precision="fp32")
    assert dtypes == [None, torch.bfloat16, None, None]


def test_precision_and_threads_validation(model):
    image = _image((20, 20))
    with pytest.raises(ValueError, match="fp16"):
        super_resolve(model, image, device="cpu", precision="fp16")
    with pytest.raises(ValueError, match="unknown precision"):
        super_resolve(model, image, device="cpu", precision="half")
    with pytest.raises(ValueError, match="threads"):
        super_resolve(model, image, device="cpu", threads=0)


def test_threads_option_is_restored_after_the_call(model):
    before = torch.get_num_threads()
    seen = []
    gen = iter_super_resolve(model, _image((2, 20, 20)), device="cpu", threads=3, batch=1)
    for _ in gen:
        seen.append(torch.get_num_threads())
    assert set(seen) == {3} and torch.get_num_threads() == before


def test_projection_is_noise_aware_by_default():
    from napari_cycsr.consistency import project_consistent
    from napari_cycsr.models import SRModel
    from napari_cycsr.simulate import simulate_pcle

    sim = simulate_pcle(np.full((64, 64), 0.4), noise=0.02, seed=0)
    model = SRModel.new("tiny")  # residual generator, untrained: the identity
    out = super_resolve(model, sim.lr, device="cpu", bundle=sim.bundle, values=sim.values)
    expected = project_consistent(sim.lr, sim.bundle, sim.values)  # noise="auto"
    np.testing.assert_allclose(out, expected, atol=1e-5)
    exact = super_resolve(
        model, sim.lr, device="cpu", bundle=sim.bundle, values=sim.values, project_noise=None
    )
    np.testing.assert_allclose(
        exact, project_consistent(sim.lr, sim.bundle, sim.values, noise=None), atol=1e-5
    )
    given = super_resolve(
        model, sim.lr, device="cpu", bundle=sim.bundle, values=sim.values, project_noise=0.02
    )
    np.testing.assert_allclose(
        given, project_consistent(sim.lr, sim.bundle, sim.values, noise=0.02), atol=1e-5
    )
    with pytest.raises(ValueError, match="project_noise"):
        super_resolve(model, sim.lr, device="cpu", bundle=sim.bundle, project_noise=-1.0)
    with pytest.raises(TypeError, match="project_noise"):
        super_resolve(model, sim.lr, device="cpu", bundle=sim.bundle, project_noise="low")


def test_spacing_normalisation_resamples_to_the_models_spacing(monkeypatch):
    from napari_cycsr.simulate import simulate_pcle

    sim = simulate_pcle(np.random.default_rng(0).random((96, 96)), spacing=5.0, seed=0)
    model = _model()
    model.metadata["fibre_spacing"] = sim.bundle.spacing / 2  # trained on fibres twice as dense
    pad = receptive_radius(model)
    seen: list[tuple[int, ...]] = []
    real_forward = inference._forward

    def record(net, batch, device, amp, *rest):
        seen.append(tuple(batch.shape[-2:]))
        return real_forward(net, batch, device, amp, *rest)

    monkeypatch.setattr(inference, "_forward", record)
    out = super_resolve(model, sim.lr, device="cpu", bundle=sim.bundle, project_iterations=0)
    assert out.shape == sim.lr.shape
    assert seen[-1] == (48 + 2 * pad, 48 + 2 * pad)  # the network ran at half the size
    # the same with the spacing given, or estimated from the TLI image
    super_resolve(model, sim.lr, device="cpu", spacing=sim.bundle.spacing)
    assert seen[-1] == (48 + 2 * pad, 48 + 2 * pad)
    super_resolve(model, sim.lr, device="cpu", spacing="auto", mask=sim.mask)
    assert abs(seen[-1][0] - (48 + 2 * pad)) <= 3
    # switched off, within 5 %, or a model without a recorded spacing: no resampling
    super_resolve(model, sim.lr, device="cpu", bundle=sim.bundle, match_spacing=False)
    assert seen[-1] == (96 + 2 * pad, 96 + 2 * pad)
    super_resolve(model, sim.lr, device="cpu", spacing=1.04 * model.metadata["fibre_spacing"])
    assert seen[-1] == (96 + 2 * pad, 96 + 2 * pad)
    del model.metadata["fibre_spacing"]
    super_resolve(model, sim.lr, device="cpu", bundle=sim.bundle)
    assert seen[-1] == (96 + 2 * pad, 96 + 2 * pad)
    with pytest.raises(ValueError, match="spacing"):
        super_resolve(model, sim.lr, device="cpu", spacing=-1.0)
    with pytest.raises(ValueError, match="spacing"):
        super_resolve(model, sim.lr, device="cpu", spacing="coarse")


def test_resampled_identity_model_keeps_the_image():
    """An identity network on resampled frames gives the image back, a little smoother."""
    from napari_cycsr.simulate import simulate_pcle

    yy, xx = np.mgrid[0:96, 0:96] / 96.0
    smooth = (0.5 + 0.3 * np.sin(4 * xx) * np.cos(3 * yy)).astype(np.float32)
    sim = simulate_pcle(smooth, spacing=5.0, noise=0.0, seed=0)
    model = SRModel.new("tiny")  # residual, untrained: the identity
    model.metadata["fibre_spacing"] = sim.bundle.spacing / 2
    out = super_resolve(model, sim.lr, device="cpu", mask=sim.mask, spacing=sim.bundle.spacing)
    m = sim.mask
    assert np.abs(out[m] - sim.lr[m]).max() < 0.05


@pytest.mark.parametrize("spacing", [2.632, 4.0, 6.0])
def test_estimate_tli_spacing_matches_the_bundle(spacing):
    from skimage import data

    from napari_cycsr.inference import estimate_tli_spacing
    from napari_cycsr.simulate import simulate_pcle

    sim = simulate_pcle(data.camera()[:256, :256] / 255.0, spacing=spacing, seed=1)
    estimate = estimate_tli_spacing(sim.lr, mask=sim.mask)
    assert estimate == pytest.approx(sim.bundle.spacing, rel=0.03)
    with pytest.raises(ValueError, match="2-D"):
        estimate_tli_spacing(np.stack([sim.lr, sim.lr]))


def test_real_frame_cut_by_the_camera_border_has_no_stripes(load_frame):
    """usaf1 cropped to its cores, so the field of view runs into the top and bottom borders,
    against the same pixels super-resolved inside the whole camera frame (where the network
    sees the real continuation of the scene)."""
    from napari_cycsr._validate import nearest_fill_index
    from napari_cycsr.fibres import FibreBundle

    raw = load_frame("usaf1.tif").astype(np.float32) / 255
    background = load_frame("usaf1_background.tif").astype(np.float32) / 255
    bundle = FibreBundle.detect(background)
    tli = bundle.reconstruct(bundle.core_values(raw, background=background))
    fov = bundle.fov_mask
    rows = np.flatnonzero(fov.any(axis=1))
    cols = np.flatnonzero(fov.any(axis=0))
    crop = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    model = _model(seed=3)  # random weights: it reacts to any edge it sees
    whole = super_resolve(model, tli, device="cpu", mask=fov)[crop]
    cut, cut_fov = tli[crop], fov[crop]
    assert cut_fov[0].any() and cut_fov[-1].any()  # the crop cuts the field of view
    mirrored = super_resolve(model, cut, device="cpu", mask=cut_fov)
    zero_padded = _reference(model, cut[nearest_fill_index(cut_fov)], mirror=False)
    zero_padded[~cut_fov] = 0

    def border_error(image: np.ndarray) -> float:
        band = np.zeros_like(cut_fov)
        band[:3], band[-3:] = True, True
        band &= cut_fov
        return float(np.mean(np.abs(image - whole)[band]))

    # at the cut, the mirrored frame stays close to the whole frame's answer; the zero padding
    # of the convolutions draws stripes there
    assert border_error(mirrored) < 0.3 * border_error(zero_padded)


@pytest.mark.parametrize("size", ENSEMBLE_SIZES)
def test_each_ensemble_size_is_the_mean_of_its_turned_outputs(model, size):
    image = _image((2, 29, 41), seed=21)  # not square: the quarter turns swap the axes
    out = super_resolve(model, image, device="cpu", precision="fp32", ensemble=size)
    for t in range(2):
        np.testing.assert_allclose(out[t], _reference(model, image[t], ensemble=size), atol=1e-5)
    if size > 1:  # the members really differ: the mean is not the network once
        once = super_resolve(model, image, device="cpu", precision="fp32", ensemble=1)
        assert np.abs(out - once).max() > 1e-3


def test_ensemble_output_turns_with_the_image(model):
    image = _image((33, 33), seed=22)

    def run(img: np.ndarray, size: int) -> np.ndarray:
        return super_resolve(model, img, device="cpu", precision="fp32", ensemble=size)

    turned = np.ascontiguousarray(np.rot90(image))
    mirrored = np.ascontiguousarray(image[:, ::-1])
    # the network once depends on the orientation; four quarter turns do not
    assert np.abs(run(turned, 1) - np.rot90(run(image, 1))).max() > 1e-3
    np.testing.assert_allclose(run(turned, 4), np.rot90(run(image, 4)), atol=1e-5)
    assert np.abs(run(mirrored, 4) - run(image, 4)[:, ::-1]).max() > 1e-3
    # all eight members: mirror images too
    np.testing.assert_allclose(run(mirrored, 8), run(image, 8)[:, ::-1], atol=1e-5)
    np.testing.assert_allclose(run(turned, 8), np.rot90(run(image, 8)), atol=1e-5)


def test_ensemble_tiled_dask_and_whole_agree(model):
    image = _image((2, 61, 77), seed=23)
    whole = super_resolve(model, image, device="cpu", ensemble=8)
    tiled = super_resolve(model, image, device="cpu", ensemble=8, tile=34, batch=3)
    assert np.abs(tiled - whole).max() < 1e-4
    lazy = super_resolve(model, da.from_array(image, chunks=(1, 61, 77)), device="cpu", ensemble=8)
    assert np.abs(lazy.compute() - whole).max() < 1e-4


@pytest.mark.parametrize(
    "bad, error", [(3, ValueError), (0, ValueError), (16, ValueError), (True, TypeError),
                   ("4", TypeError), (4.0, TypeError), (None, TypeError)],
)  # fmt: skip
def test_bad_ensemble_is_refused(model, bad, error):
    with pytest.raises(error, match="ensemble must be one of"):
        super_resolve(model, _image((20, 20)), device="cpu", ensemble=bad)
