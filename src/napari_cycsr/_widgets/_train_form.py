"""The hyper-parameter fields of the Train widget, turned into a TrainConfig."""

from __future__ import annotations

from typing import Any

from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, SpinBox
from superqt import QCollapsible

__all__ = ["TARGETS", "TrainForm", "format_eta"]

#: Target-domain choices: (label, TrainConfig.target).
TARGETS = [
    ("natural images (built-in)", "natural"),
    ("chosen HR layers", "images"),
    ("LR downscaled x4", "downscaled"),
    ("paired HR layer", "paired"),
]


def format_eta(seconds: float) -> str:
    """Seconds as ``h:mm:ss``."""
    seconds = int(round(max(seconds, 0)))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class TrainForm:
    """Basic fields (shown) and advanced fields (in a collapsible section) of a training run.

    ``basic`` is the list of magicgui widgets to place in the parent container and
    ``collapsible`` the Qt widget holding the advanced ones; :meth:`config` returns the
    :class:`~napari_cycsr.training.TrainConfig` they describe.
    """

    def __init__(self) -> None:
        from napari_cycsr._device import PRECISION_HELP, available_devices, precision_choices
        from napari_cycsr.config import PRESETS
        from napari_cycsr.training import TrainConfig

        defaults = TrainConfig()  # the form starts from the library's measured defaults

        presets = list(PRESETS)
        self.preset = ComboBox(
            label="network size", choices=presets,
            value="default" if "default" in presets else None,
            tooltip="tiny: tests; default: CPU-friendly (chosen by benchmark); paper: the SRGAN "
            "size of the paper (needs a GPU).",
        )  # fmt: skip
        self.iterations = SpinBox(
            label="iterations", value=500, min=1, max=1_000_000, step=50,
            tooltip="Training steps (one batch each). Resume continues up to this number.",
        )  # fmt: skip
        self.batch_size = SpinBox(
            label="batch (0 = preset)", value=0, min=0, max=512,
            tooltip="Patches per batch; 0 = 54 for the paper preset, 16 otherwise.",
        )  # fmt: skip
        self.device = ComboBox(
            label="device", choices=["auto", *available_devices()],
            tooltip="Where to train: auto = CUDA, then Apple MPS, then the CPU.",
        )  # fmt: skip
        self.precision = ComboBox(
            label="precision", choices=precision_choices(), value=defaults.precision,
            tooltip=PRECISION_HELP,
        )  # fmt: skip
        self.seed = SpinBox(
            label="seed", value=0, min=0, max=2**31 - 1,
            tooltip="One seed drives every random choice: the same seed gives the same model.",
        )  # fmt: skip
        self.basic = [
            self.preset, self.iterations, self.batch_size, self.device, self.precision, self.seed
        ]  # fmt: skip

        def weight(label: str, value: float, tooltip: str) -> FloatSpinBox:
            # a 1e-4 step gives four decimals, enough to show w_adv's default of 1e-4
            return FloatSpinBox(
                label=label, value=value, min=0.0, max=1000.0, step=1e-4, tooltip=tooltip
            )

        self.w_vec = weight(
            "w_vec (cycle)", defaults.w_vec,
            "Weight of the cycle consistency: the output's Voronoi cell means must equal the "
            "measured fibre values (Eq. 4).",
        )  # fmt: skip
        self.w_adv = weight(
            "w_adv", defaults.w_adv,
            "Weight of the adversarial loss: how much the output must look like the target "
            "domain (Eq. 5).",
        )  # fmt: skip
        self.w_reg = weight(
            "w_reg", defaults.w_reg,
            "Weight of the regulariser keeping the output's row and column means equal to the "
            "input's (Eq. 6).",
        )  # fmt: skip
        self.video = CheckBox(
            label="learn from video", value=False,
            tooltip="For LR layers that are videos of a moving scene: the frames are "
            "registered, the output for frame t, moved with the scene, must give back the "
            "fibre values of frames t-2..t+2 (multi-frame cycle consistency), and the "
            "sliding-window fused video is a paired target (the target domain is then "
            "'paired'). docs/video.md#learning-from-video.",
        )  # fmt: skip
        self.patch = SpinBox(
            label="patch (px)", value=64, min=16, max=512, step=16,
            tooltip="Side of the training patches (LR pixels), drawn inside the field of view.",
        )  # fmt: skip
        self.scale = ComboBox(
            label="output scale", choices=[1, 2, 4], value=1,
            tooltip="1: output on the input's grid (the paper); 2 or 4: a pixel-shuffle head "
            "makes an output that many times finer.",
        )  # fmt: skip
        self.preview_every = SpinBox(
            label="preview every", value=25, min=0, max=100_000,
            tooltip="Iterations between two previews (0 = no preview).",
        )  # fmt: skip
        #: the loss weights of the form, by TrainConfig field (a start model fills them in)
        self.losses = {"w_vec": self.w_vec, "w_adv": self.w_adv, "w_reg": self.w_reg}
        self.advanced = Container(
            widgets=[
                self.w_vec, self.w_adv, self.w_reg, self.video, self.patch, self.scale,
                self.preview_every,
            ]
        )  # fmt: skip
        from napari_cycsr._widgets._form import aligned

        aligned(self.advanced)  # its labels are measured in napari's font when it opens
        self.collapsible = QCollapsible("Advanced")
        self.collapsible.setToolTip("Loss weights, patch size, output scale, previews.")
        self.collapsible.addWidget(self.advanced.native)

    def fix_network(self, preset: str | None = None, scale: int | None = None) -> None:
        """Show a start model's network size and output scale and lock them (fine-tuning keeps
        the model's network); without arguments the two fields are free again."""
        fixed = preset is not None
        for control, value in ((self.preset, preset), (self.scale, scale)):
            if fixed:
                control.value = value
            control.enabled = not fixed

    def config(self, **overrides: Any) -> Any:
        """The TrainConfig of the current field values (ValueError when inconsistent)."""
        from napari_cycsr.training import TrainConfig

        values = {
            "preset": self.preset.value,
            "iterations": self.iterations.value,
            "batch_size": self.batch_size.value or None,
            "device": self.device.value,
            "precision": self.precision.value,
            "seed": self.seed.value,
            "w_vec": self.w_vec.value,
            "w_adv": self.w_adv.value,
            "w_reg": self.w_reg.value,
            "patch": self.patch.value,
            "scale": self.scale.value,
            "preview_every": self.preview_every.value,
            "checkpoint_every": 0,
        }
        values.update(overrides)
        return TrainConfig(**values)
