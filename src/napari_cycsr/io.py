"""Model files and training checkpoints: safetensors weights plus JSON metadata.

A model file is one `safetensors <https://huggingface.co/docs/safetensors>`_ file. The
tensors are the generator's ``state_dict`` (plain tensors, no pickle: loading a file someone
shared cannot run code). The safetensors header carries a metadata dictionary of strings;
napari-cycsr stores one entry, ``"napari_cycsr"``, holding a JSON document::

    {
      "format": "napari-cycsr model",
      "format_version": 1,
      "package_version": "0.1.0",
      "network": {...},                 # NetworkConfig.to_dict()
      "normalisation": {"low": 0.0, "high": 1.0},
      "metadata": {...},                # SRModel.metadata: training config, seed, ...
      "sha256": "..."                   # digest of every tensor (names, dtypes, shapes, bytes)
    }

Any file name is accepted; ``*.safetensors`` is recommended (e.g. ``colon.safetensors``) so
that other tools recognise the container. Files are written atomically: the bytes go to a
temporary file in the destination folder, which then replaces the destination in one step,
so a crash never leaves a half-written model behind.

Checkpoints (:func:`save_checkpoint` / :func:`load_checkpoint`) use the same container with
``"format": "napari-cycsr checkpoint"`` and a free JSON ``meta`` document. Nested states that
mix tensors and plain values (an optimiser's ``state_dict``) are turned into plain tensors and
a JSON skeleton by :func:`flatten_state_dict` and back by :func:`unflatten_state_dict`. A
checkpoint that embeds a model (:func:`model_to_tensors`) can be opened by :func:`load_model`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as _st_save

from ._atomic import atomic_write_bytes
from ._validate import positive_spacing
from .models import Generator, NetworkConfig, SRModel

__all__ = [
    "FORMAT_VERSION",
    "MAX_NORMALISATION",
    "NETWORK_LIMITS",
    "flatten_state_dict",
    "load_checkpoint",
    "load_model",
    "model_from_tensors",
    "model_to_tensors",
    "read_header",
    "save_checkpoint",
    "save_model",
    "unflatten_state_dict",
]

#: Version of the file layout written by this package. Readers accept files whose version is
#: at most this number; a file from a newer, incompatible layout is refused with a message.
FORMAT_VERSION = 1

#: Largest sizes a model file may declare; checked before any network is built (the paper's
#: network is 64 channels, 16 blocks, 64 discriminator channels, a 1024-wide dense layer).
NETWORK_LIMITS: dict[str, int] = {
    "channels": 512,
    "blocks": 128,
    "disc_channels": 256,
    "disc_dense": 8192,
}

#: Largest magnitude of a stored normalisation (``low``/``high``): beyond it float32 overflows.
MAX_NORMALISATION = 1e20

_META_KEY = "napari_cycsr"
_MODEL_FORMAT = "napari-cycsr model"
_CHECKPOINT_FORMAT = "napari-cycsr checkpoint"
_GENERATOR_PREFIX = "generator."

PathLike = str | os.PathLike[str]


# --------------------------------------------------------------------------------------------
# JSON helpers
# --------------------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    """Turn numpy scalars/arrays and paths into JSON values; refuse anything else."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(
        f"metadata value of type {type(value).__name__} is not JSON-serialisable; store "
        "numbers, strings, lists and dicts (tensors go in the tensors of a checkpoint)"
    )


def _dumps(document: Any) -> str:
    try:
        return json.dumps(document, default=_json_default)
    except (TypeError, ValueError) as err:
        raise ValueError(f"cannot store metadata as JSON: {err}") from err


# --------------------------------------------------------------------------------------------
# container: tensors + one JSON header entry, atomic write, checked read
# --------------------------------------------------------------------------------------------


def _plain_tensors(tensors: Mapping[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies that share no memory (what safetensors requires)."""
    if not isinstance(tensors, Mapping):
        raise TypeError(f"{what} must be a dict of name -> torch.Tensor, got {type(tensors)}")
    out: dict[str, torch.Tensor] = {}
    seen_storage: set[int] = set()
    for name, tensor in tensors.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"{what}: tensor names must be non-empty strings, got {name!r}")
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{what}[{name!r}] must be a torch.Tensor, got {type(tensor).__name__}")
        t = tensor.detach().to("cpu").contiguous()
        if t.layout != torch.strided:
            raise TypeError(f"{what}[{name!r}]: only dense tensors can be stored")
        pointer = t.untyped_storage().data_ptr() if t.numel() else -1
        if pointer in seen_storage or t.data_ptr() == tensor.data_ptr():
            t = t.clone()  # never alias the caller's memory nor another entry's
        if t.numel():
            seen_storage.add(t.untyped_storage().data_ptr())
        out[name] = t
    return out


def _digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and raw bytes of all tensors (sorted by name)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(repr(tuple(t.shape)).encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _write_container(path: PathLike, tensors: dict[str, torch.Tensor], header: dict) -> Path:
    path = Path(path)
    header = dict(header)
    header["sha256"] = _digest(tensors)
    metadata = {_META_KEY: _dumps(header)}
    data = _st_save(tensors, metadata=metadata)
    atomic_write_bytes(path, data)
    return path


def _open_header(path: Path) -> tuple[dict[str, str] | None, dict[str, tuple[int, ...]]]:
    """The header's metadata and every tensor's shape, read without loading any tensor."""
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, expected a .safetensors file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            shapes = {
                name: tuple(int(n) for n in handle.get_slice(name).get_shape())
                for name in handle.keys()
            }
            return handle.metadata(), shapes
    except SafetensorError as err:
        raise ValueError(
            f"{path} is not a readable safetensors file (corrupted, truncated, or another "
            f"format): {err}"
        ) from err


def read_header(path: PathLike) -> dict[str, Any]:
    """Read the napari-cycsr JSON header of a model or checkpoint file without the tensors.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :func:`save_model` or :func:`save_checkpoint`.

    Returns
    -------
    dict
        The header: ``format``, ``format_version``, ``package_version`` and, for models,
        ``network``, ``normalisation``, ``metadata``; for checkpoints, ``meta``.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file is not a safetensors file, was not written by napari-cycsr, or was
        written in a newer, incompatible format version.
    """
    path = Path(path)
    metadata, _ = _open_header(path)
    return _parse_header(path, metadata)


def _parse_header(path: Path, metadata: dict[str, str] | None) -> dict[str, Any]:
    if not metadata or _META_KEY not in metadata:
        raise ValueError(
            f"{path} is a safetensors file but not a napari-cycsr file: its header has no "
            f"{_META_KEY!r} metadata (was it written by another program?)"
        )
    try:
        header = json.loads(metadata[_META_KEY])
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: the napari-cycsr metadata is not valid JSON: {err}") from err
    if not isinstance(header, dict) or not isinstance(header.get("format"), str):
        raise ValueError(f"{path}: the napari-cycsr metadata has no 'format' entry")
    version = header.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"{path}: invalid format_version {version!r} in the metadata")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{path} was written by napari-cycsr {header.get('package_version', '?')} in file "
            f"format version {version}; this installation reads format versions up to "
            f"{FORMAT_VERSION}. Upgrade napari-cycsr to open it."
        )
    return header


def _read_container(
    path: PathLike, expected: tuple[str, ...], check: Any = None
) -> tuple[dict, dict]:
    """Return ``(header, tensors)``; check format name and tensor digest.

    ``check(header, shapes)``, when given, runs on the header and the tensor shapes before
    any tensor is read (it raises to refuse the file).
    """
    path = Path(path)
    metadata, shapes = _open_header(path)
    header = _parse_header(path, metadata)
    if header["format"] not in expected:
        raise ValueError(f"{path} is a {header['format']!r} file, expected one of {list(expected)}")
    if check is not None:
        check(header, shapes)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except SafetensorError as err:
        raise ValueError(f"{path}: cannot read the tensors (corrupted file?): {err}") from err
    stored = header.get("sha256")
    if stored is not None and stored != _digest(tensors):
        raise ValueError(
            f"{path} is corrupted: its tensors do not match the checksum recorded when it "
            "was written"
        )
    return header, tensors


# --------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------


def _check_model(model: Any) -> None:
    if not isinstance(model, SRModel):
        raise TypeError(f"expected an SRModel, got {type(model).__name__}")


def _check_normalisation(norm: Any, where: str) -> dict[str, float]:
    if not isinstance(norm, Mapping) or set(norm) != {"low", "high"}:
        raise ValueError(f"{where}: normalisation must be {{'low': x, 'high': y}}, got {norm!r}")
    try:
        low, high = float(norm["low"]), float(norm["high"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: normalisation values must be numbers: {norm!r}") from err
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        raise ValueError(
            f"{where}: normalisation needs finite low < high, got low={low}, high={high}"
        )
    if max(abs(low), abs(high)) > MAX_NORMALISATION or not math.isfinite(high - low):
        raise ValueError(
            f"{where}: normalisation low={low:g}, high={high:g} is out of range; expected "
            f"|low|, |high| <= {MAX_NORMALISATION:g} (intensities beyond it overflow float32)"
        )
    return {"low": low, "high": high}


def _check_metadata(metadata: Mapping[str, Any], where: str) -> None:
    """Refuse metadata entries that inference reads and that are not what they claim."""
    for key in ("fibre_spacing", "spacing"):
        value = metadata.get(key)
        if value is not None and positive_spacing(value) is None:
            raise ValueError(
                f"{where}: metadata fibre_spacing must be a positive number of pixels, got "
                f"{key}={value!r}"
            )


def _model_header(model: SRModel) -> dict[str, Any]:
    from . import __version__

    return {
        "format": _MODEL_FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "network": model.config.to_dict(),
        "normalisation": _check_normalisation(model.normalisation, "model"),
        "metadata": json.loads(_dumps(dict(model.metadata))),
    }


def model_to_tensors(model: SRModel, prefix: str = _GENERATOR_PREFIX) -> tuple[dict, dict]:
    """Split a model into plain tensors and a JSON-ready description.

    Use this to embed the current model in a training checkpoint, so that
    :func:`load_model` can open the checkpoint as a model::

        tensors, model_meta = model_to_tensors(trainer.model)
        save_checkpoint(path, {**tensors, **optimiser_tensors}, {"model": model_meta, ...})

    Parameters
    ----------
    model : SRModel
        The model to describe.
    prefix : str
        Prefix of the weight names (default ``"generator."``).

    Returns
    -------
    tensors : dict[str, torch.Tensor]
        The generator's ``state_dict`` under ``prefix``, as detached CPU tensors.
    description : dict
        ``network``, ``normalisation``, ``metadata`` and ``package_version`` (JSON values).
    """
    _check_model(model)
    header = _model_header(model)
    description = {k: header[k] for k in ("network", "normalisation", "metadata")}
    description["package_version"] = header["package_version"]
    description["prefix"] = prefix
    state = model.generator.state_dict()
    tensors = _plain_tensors({prefix + k: v for k, v in state.items()}, "generator weights")
    return tensors, description


def model_from_tensors(
    tensors: Mapping[str, torch.Tensor],
    description: Mapping[str, Any],
    *,
    device: str | torch.device = "cpu",
    source: str = "model",
) -> SRModel:
    """Rebuild an :class:`SRModel` (eval mode) from :func:`model_to_tensors` output.

    Parameters
    ----------
    tensors : dict[str, torch.Tensor]
        Weights; only names starting with ``description["prefix"]`` are used.
    description : dict
        ``network``, ``normalisation`` and ``metadata`` as written by :func:`model_to_tensors`.
    device : str or torch.device
        Where to put the weights (see :func:`napari_cycsr._device.resolve_device`).
    source : str
        Named in error messages (e.g. the file path).

    Returns
    -------
    SRModel
        The model, its generator in eval mode on ``device``.

    Raises
    ------
    ValueError
        If the network config is invalid or out of bounds (:data:`NETWORK_LIMITS`), the
        weights do not fit it (missing or unexpected names, wrong shapes), a weight is NaN or
        infinite, or the normalisation or the recorded fibre spacing is not a sane number.
        The network is built only after the sizes were checked against the tensors.
    """
    from ._device import resolve_device

    target = resolve_device(device)
    config, normalisation, metadata, prefix = _describe(description, source)
    state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    _match_weights({k: tuple(v.shape) for k, v in state.items()}, config, source)
    _check_finite_weights(state, source)
    generator = Generator(config)
    generator.load_state_dict(state, strict=True)
    generator.to(target)
    generator.eval()
    meta = dict(metadata)
    if "package_version" in description:
        meta["package_version"] = description["package_version"]
    return SRModel(generator, normalisation=normalisation, metadata=meta)


def _network_config(network: Any, source: str) -> NetworkConfig:
    """The network config of a file, every declared size type-checked and bounded."""
    if not isinstance(network, Mapping):
        raise ValueError(f"{source}: the metadata has no 'network' config")
    data = dict(network)
    for name, limit in NETWORK_LIMITS.items():
        value = data.get(name, 1)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
            raise ValueError(
                f"{source}: invalid network config: {name} must be an integer in "
                f"[1, {limit}], got {value!r}"
            )
    scale = data.get("scale", 1)
    if isinstance(scale, bool) or scale not in (1, 2, 4):
        raise ValueError(
            f"{source}: invalid network config: scale must be 1, 2 or 4, got {scale!r}"
        )
    if not isinstance(data.get("residual", True), bool):
        raise ValueError(
            f"{source}: invalid network config: residual must be true or false, got "
            f"{data['residual']!r}"
        )
    try:
        return NetworkConfig.from_dict(data)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{source}: invalid network config {data!r}: {err}") from err


def _describe(
    description: Any, source: str
) -> tuple[NetworkConfig, dict[str, float], Mapping[str, Any], str]:
    """Checked ``(config, normalisation, metadata, prefix)`` of a model description."""
    if not isinstance(description, Mapping):
        raise ValueError(f"{source}: the model description must be a JSON object")
    config = _network_config(description.get("network"), source)
    normalisation = _check_normalisation(description.get("normalisation"), source)
    metadata = description.get("metadata", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        raise ValueError(f"{source}: 'metadata' must be a JSON object")
    _check_metadata(metadata, source)
    prefix = description.get("prefix", "")
    if not isinstance(prefix, str):
        raise ValueError(f"{source}: 'prefix' must be a string")
    return config, normalisation, metadata, prefix


def _generator_shapes(config: NetworkConfig) -> dict[str, tuple[int, ...]]:
    """Shapes of the generator's ``state_dict`` for ``config``, computed without any memory
    (the network is built on torch's ``meta`` device; ``config`` is bounded already)."""
    with torch.device("meta"):
        generator = Generator(config)
    return {k: tuple(v.shape) for k, v in generator.state_dict().items()}


def _match_weights(
    shapes: Mapping[str, tuple[int, ...]], config: NetworkConfig, source: str
) -> None:
    """Refuse weights (names and shapes) that do not fit the network ``config``."""
    expected = _generator_shapes(config)
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    wrong_shape = [
        f"{k}: file {tuple(shapes[k])} vs network {v}"
        for k, v in expected.items()
        if k in shapes and tuple(shapes[k]) != v
    ]
    problems = []
    if missing:
        problems.append(f"missing weights {_short(missing)}")
    if unexpected:
        problems.append(f"unexpected weights {_short(unexpected)}")
    if wrong_shape:
        problems.append(f"shape mismatch {_short(wrong_shape)}")
    if problems:
        raise ValueError(
            f"{source}: the weights do not match the network config {config.to_dict()}: "
            + "; ".join(problems)
        )


def _check_finite_weights(state: Mapping[str, torch.Tensor], source: str) -> None:
    """Refuse NaN/inf weights and negative batch-norm variances (they give NaN images)."""
    bad = [
        name
        for name, t in state.items()
        if t.is_floating_point() and not bool(torch.isfinite(t).all())
    ]
    if bad:
        raise ValueError(
            f"{source}: the model file holds NaN or infinite weights in {_short(bad)}; the "
            "file is damaged or its training diverged: use another model file or retrain"
        )
    negative = [
        name
        for name, t in state.items()
        if name.endswith("running_var") and t.is_floating_point() and bool((t < 0).any())
    ]
    if negative:
        raise ValueError(
            f"{source}: the model file holds negative batch-norm variances in "
            f"{_short(negative)}; the file is damaged: use another model file"
        )


def _short(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return f"[{shown}{', ...' if len(items) > limit else ''}] ({len(items)} in all)"


def save_model(model: SRModel, path: PathLike) -> Path:
    """Write a model file: generator weights (safetensors) plus JSON metadata.

    Parameters
    ----------
    model : SRModel
        The model to save. Its ``metadata`` must be JSON-serialisable (numpy scalars and
        arrays are converted).
    path : str or os.PathLike
        Destination; any name is accepted, ``*.safetensors`` is recommended. Missing parent
        folders are created; an existing file is replaced atomically.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    TypeError
        If ``model`` is not an :class:`~napari_cycsr.models.SRModel`.
    ValueError
        If the metadata is not JSON-serialisable or the normalisation is invalid.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from napari_cycsr.models import SRModel
    >>> from napari_cycsr.io import load_model, save_model
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> path = save_model(SRModel.new("tiny"), folder / "tiny.safetensors")
    >>> load_model(path).config.channels
    8
    """
    _check_model(model)
    header = _model_header(model)
    state = model.generator.state_dict()
    tensors = _plain_tensors(state, "generator weights")
    return _write_container(path, tensors, header)


def load_model(path: PathLike, *, device: str | torch.device = "cpu") -> SRModel:
    """Read a model file written by :func:`save_model` (or a checkpoint holding a model).

    Only safetensors and JSON are parsed: loading never unpickles nor runs code.

    Parameters
    ----------
    path : str or os.PathLike
        The model file.
    device : str or torch.device
        Where to put the weights: ``"cpu"`` (default), ``"cuda"``, ``"cuda:1"``, ``"mps"``,
        or ``"auto"``.

    Returns
    -------
    SRModel
        The model, its generator in eval mode. ``metadata["package_version"]`` is the
        version that wrote the file.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file is corrupted or truncated, is a safetensors file of another program, has
        a newer format version, or holds weights that do not match its network config.
    """
    path = Path(path)

    def check(header: dict, shapes: dict[str, tuple[int, ...]]) -> None:
        # the declared sizes against the tensors' shapes, before any tensor is read
        config, _, _, prefix = _describe(_model_description(path, header), str(path))
        state = {k[len(prefix) :]: v for k, v in shapes.items() if k.startswith(prefix)}
        _match_weights(state, config, str(path))

    header, tensors = _read_container(path, (_MODEL_FORMAT, _CHECKPOINT_FORMAT), check)
    description = _model_description(path, header)
    return model_from_tensors(tensors, description, device=device, source=str(path))


def _model_description(path: Path, header: dict) -> Mapping[str, Any]:
    """The model description of a model file's or a checkpoint's header."""
    if header["format"] == _CHECKPOINT_FORMAT:
        meta = header.get("meta")
        description = meta.get("model") if isinstance(meta, Mapping) else None
        if not isinstance(description, Mapping):
            raise ValueError(
                f"{path} is a training checkpoint without an embedded model; resume training "
                "from it, or save the model with save_model"
            )
        return description
    description = {k: header.get(k) for k in ("network", "normalisation", "metadata")}
    description["package_version"] = header.get("package_version")
    return description


# --------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------


def save_checkpoint(
    path: PathLike, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]
) -> Path:
    """Write a training checkpoint: plain tensors plus a JSON ``meta`` document, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Destination (``*.safetensors`` recommended); replaced atomically if it exists.
    tensors : dict[str, torch.Tensor]
        Named tensors (any device; stored on CPU). Use :func:`flatten_state_dict` for an
        optimiser state and :func:`model_to_tensors` for the model.
    meta : dict
        JSON-serialisable document (config, iteration, RNG states, the skeletons from
        :func:`flatten_state_dict`, ``"model"`` from :func:`model_to_tensors`...).

    Returns
    -------
    pathlib.Path
        The path written.
    """
    from . import __version__

    if not isinstance(meta, Mapping):
        raise TypeError(f"meta must be a dict, got {type(meta).__name__}")
    plain = _plain_tensors(tensors, "tensors")
    header = {
        "format": _CHECKPOINT_FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "meta": json.loads(_dumps(dict(meta))),
    }
    return _write_container(path, plain, header)


def load_checkpoint(path: PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint file.

    Returns
    -------
    tensors : dict[str, torch.Tensor]
        The stored tensors, on CPU.
    meta : dict
        The JSON document given to :func:`save_checkpoint`, plus ``"package_version"`` of
        the writer if ``meta`` did not hold that key.

    Raises
    ------
    FileNotFoundError, ValueError
        As for :func:`load_model`; also when the file is a model file, not a checkpoint.
    """
    path = Path(path)
    header, tensors = _read_container(path, (_CHECKPOINT_FORMAT,))
    meta = header.get("meta")
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: the checkpoint metadata has no 'meta' object")
    meta.setdefault("package_version", header.get("package_version"))
    return tensors, meta


# --------------------------------------------------------------------------------------------
# nested states <-> plain tensors + JSON skeleton
# --------------------------------------------------------------------------------------------

_TENSOR = "__tensor__"
_TUPLE = "__tuple__"
_DICT = "__dict__"
_FLOAT = "__float__"


def flatten_state_dict(prefix: str, state: Any) -> tuple[dict[str, torch.Tensor], Any]:
    """Split a nested state (e.g. ``optimizer.state_dict()``) into tensors and JSON.

    Every tensor is replaced in the structure by a reference ``{"__tensor__": name}`` with
    ``name = prefix + path``; dicts with non-string keys (an optimiser's integer parameter
    ids) and tuples are encoded so that :func:`unflatten_state_dict` restores them exactly.

    Parameters
    ----------
    prefix : str
        Prefix of the tensor names, e.g. ``"optim_g."``; keeps several states apart in one
        checkpoint.
    state : dict, list, tuple, tensor or JSON scalar
        The state. Leaves must be tensors, ``int``, ``float``, ``bool``, ``str`` or ``None``.

    Returns
    -------
    tensors : dict[str, torch.Tensor]
        Detached CPU copies of the tensors.
    skeleton : JSON-serialisable object
        The structure; pass it (inside the checkpoint's ``meta``) to
        :func:`unflatten_state_dict`.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Linear(2, 1)
    >>> opt = torch.optim.Adam(net.parameters())
    >>> net(torch.ones(1, 2)).sum().backward(); opt.step()
    >>> tensors, skeleton = flatten_state_dict("adam.", opt.state_dict())
    >>> restored = unflatten_state_dict(tensors, skeleton)
    >>> opt.load_state_dict(restored)
    """
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a string, got {type(prefix).__name__}")
    tensors: dict[str, torch.Tensor] = {}

    def walk(value: Any, path: str) -> Any:
        if isinstance(value, torch.Tensor):
            name = prefix + path
            n = 1
            while name in tensors:
                name, n = f"{prefix}{path}#{n}", n + 1
            tensors[name] = value
            return {_TENSOR: name}
        if isinstance(value, Mapping):
            keys = list(value)
            plain = all(isinstance(k, str) and not k.startswith("__") for k in keys)
            items = [(k, walk(v, f"{path}.{k}" if path else str(k))) for k, v in value.items()]
            if plain:
                return dict(items)
            for k in keys:
                if not isinstance(k, (str, int, float, bool)) and k is not None:
                    raise TypeError(f"cannot store a dict key of type {type(k).__name__}")
            return {_DICT: [[_encode_scalar(k), v] for k, v in items]}
        if isinstance(value, tuple):
            return {
                _TUPLE: [walk(v, f"{path}.{i}" if path else str(i)) for i, v in enumerate(value)]
            }
        if isinstance(value, list):
            return [walk(v, f"{path}.{i}" if path else str(i)) for i, v in enumerate(value)]
        if value is None or isinstance(value, (str, bool, int, float)):
            return _encode_scalar(value)
        if isinstance(value, np.generic):
            return _encode_scalar(value.item())
        raise TypeError(
            f"cannot flatten a value of type {type(value).__name__} at {prefix}{path!s}; "
            "expected tensors, dicts, lists, tuples, numbers, strings, bools or None"
        )

    skeleton = walk(state, "")
    return _plain_tensors(tensors, "state"), skeleton


def _encode_scalar(value: Any) -> Any:
    # JSON has no inf/nan: keep them exact in a tagged string
    if isinstance(value, float) and not math.isfinite(value):
        return {_FLOAT: repr(value)}
    return value


def unflatten_state_dict(tensors: Mapping[str, torch.Tensor], skeleton: Any) -> Any:
    """Rebuild the nested state flattened by :func:`flatten_state_dict`.

    Parameters
    ----------
    tensors : dict[str, torch.Tensor]
        The tensors (e.g. from :func:`load_checkpoint`); extra entries are ignored.
    skeleton : JSON object
        The skeleton returned by :func:`flatten_state_dict`.

    Returns
    -------
    object
        The state, with the same keys, tuples, lists and values as the original.

    Raises
    ------
    ValueError
        If a referenced tensor is missing or the skeleton is malformed.
    """

    def build(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {_TENSOR}:
                name = node[_TENSOR]
                if name not in tensors:
                    raise ValueError(f"the checkpoint has no tensor {name!r}")
                return tensors[name]
            if set(node) == {_TUPLE}:
                return tuple(build(v) for v in node[_TUPLE])
            if set(node) == {_DICT}:
                pairs = node[_DICT]
                if not isinstance(pairs, list) or not all(
                    isinstance(p, list) and len(p) == 2 for p in pairs
                ):
                    raise ValueError("malformed skeleton: bad encoded dict")
                return {build(k): build(v) for k, v in pairs}
            if set(node) == {_FLOAT}:
                return float(node[_FLOAT])
            return {k: build(v) for k, v in node.items()}
        if isinstance(node, list):
            return [build(v) for v in node]
        return node

    return build(skeleton)
