"""``cycsr demo``: the whole method on built-in data: simulate, pretrained, fine-tune, report."""

from __future__ import annotations

import argparse
from typing import Any

from ..demo import (
    BUILTIN_IMAGES,
    DEMO_IMAGE,
    DEMO_ITERATIONS,
    DEMO_PRESET,
    DEMO_SIZE,
    DEMO_TRAINING,
)
from ._common import (
    Formatter,
    device_option,
    loss_postfix,
    non_negative_int,
    positive_int,
    precision_option,
    progress_bar,
    quiet_option,
    say,
    threads_option,
)


def add_parser(sub: Any, common: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add the ``demo`` sub-command to ``sub`` (the sub-parsers of ``cycsr``)."""
    p = sub.add_parser(
        "demo",
        parents=common,
        formatter_class=Formatter,
        help="the whole method on built-in data: simulate, pretrained result, fine-tune, report",
        description=(
            "Run the whole method on a built-in scikit-image picture: simulate a pCLE\n"
            "acquisition (fibre bundle, noise, Delaunay/TLI display image), super-resolve it\n"
            "with the shipped pretrained model (a result within seconds, no training), then\n"
            "fine-tune that model on the simulated image alone (no ground truth) and compare\n"
            "TLI, Wiener deconvolution, unsharp masking, the pretrained and the fine-tuned\n"
            "model against the true image. The default picture (motorcycle) is one that no\n"
            "shipped model was trained on.\n"
            "Writes demo.png (figure), metrics.md (table), model.safetensors, and hr/lr/sr TIFFs."
        ),
        epilog=(
            "examples:\n"
            "  cycsr demo                          # under a minute on a 2-core CPU\n"
            "  cycsr demo --quick --out quick_out  # a short check that everything works\n"
            "  cycsr demo --from-scratch           # train a new network, no pretrained start\n"
            "  cycsr demo --from-scratch --preset default --iterations 300   # minutes\n"
            "  cycsr demo --image brick --iterations 3000 --device cuda"
        ),
    )
    p.add_argument(
        "--out", default="demo_out", metavar="DIR",
        help="output folder (an earlier demo's results there are kept unless --overwrite)",
    )  # fmt: skip
    p.add_argument(
        "--overwrite", action="store_true",
        help="replace the results of an earlier demo in --out",
    )  # fmt: skip
    p.add_argument(
        "--image", default=DEMO_IMAGE, choices=BUILTIN_IMAGES, metavar="NAME",
        help=f"built-in picture: {', '.join(BUILTIN_IMAGES)}",
    )  # fmt: skip
    p.add_argument(
        "--from-scratch", action="store_true",
        help="train a new network instead of fine-tuning the pretrained model "
        "(no pretrained rows; needed for --preset default or paper)",
    )  # fmt: skip
    p.add_argument(
        "--iterations", type=positive_int, metavar="N",
        help=f"fine-tuning (or training) iterations (default: {DEMO_ITERATIONS['full']}; "
        f"{DEMO_ITERATIONS['quick']} with --quick)",
    )  # fmt: skip
    p.add_argument("--quick", action="store_true", help="a short run that checks the install")
    p.add_argument(
        "--size", type=positive_int, metavar="PX",
        help=f"resize the picture so its longer side is PX pixels (default: {DEMO_SIZE['full']}; "
        f"{DEMO_SIZE['quick']} with --quick)",
    )  # fmt: skip
    p.add_argument(
        "--preset", default=DEMO_PRESET, choices=["tiny", "default", "paper"],
        help="network size (the pretrained model is tiny: other sizes need --from-scratch)",
    )  # fmt: skip
    p.add_argument(
        "--batch-size", type=positive_int, metavar="B",
        help=f"patches per training step (default: {DEMO_TRAINING['full']['batch_size']}; "
        f"{DEMO_TRAINING['quick']['batch_size']} with --quick)",
    )  # fmt: skip
    p.add_argument(
        "--patch", type=positive_int, metavar="PX",
        help=f"side of the training patches (default: {DEMO_TRAINING['full']['patch']}; "
        f"{DEMO_TRAINING['quick']['patch']} with --quick)",
    )  # fmt: skip
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed")
    device_option(p)
    precision_option(p)
    threads_option(p)
    quiet_option(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..demo import DemoEvent, run_demo

    bars: dict[str, Any] = {}

    def progress(event: DemoEvent) -> None:
        if event.stage != "train":
            if event.message:
                say(f"[{event.stage}] {event.message}")
            return
        if event.step == 0 and event.message:
            say(f"[train] {event.message}")
        bar = bars.get("train")
        if bar is None:
            bar = bars["train"] = progress_bar(event.total, "train", disable=args.quiet)
        bar.update(event.step - bar.n)
        bar.set_postfix(loss_postfix(event.losses), refresh=False)
        if event.step >= event.total:
            bar.close()

    try:
        result = run_demo(
            args.out,
            image=args.image,
            size=args.size,
            iterations=args.iterations,
            quick=args.quick,
            preset=args.preset,
            batch_size=args.batch_size,
            patch=args.patch,
            seed=args.seed,
            device=args.device,
            progress=progress,
            precision=args.precision,
            threads=args.threads,
            overwrite=args.overwrite,
            from_scratch=args.from_scratch,
        )
    finally:
        for bar in bars.values():
            bar.close()
    print()
    print(result.markdown_table)
    print()
    print(f"wrote {result.figure}, {result.metrics_md.name}, {result.model_path.name} and images")
    print(f"in {result.out_dir} ({result.seconds:.0f} s)")
    print(napari_hint(result.out_dir / "lr.tif", result.sr_path))
    return 0


#: Qt bindings napari can use (any one is enough).
QT_BINDINGS = ("PyQt6", "PyQt5", "PySide6", "PySide2")


def napari_hint(*paths: Any) -> str:
    """How to look at ``paths`` in napari, including how to install a Qt backend if missing."""
    import importlib.util

    command = "napari " + " ".join(str(p) for p in paths)
    if any(importlib.util.find_spec(name) is not None for name in QT_BINDINGS):
        return f"open the results in napari:  {command}"
    return (
        "to open the results in napari, first install a Qt backend (napari has none yet):\n"
        '  pip install "napari[pyqt6]"\n'
        '  (or, in a checkout of napari-cycsr: pip install -e ".[all]")\n'
        f"then:  {command}"
    )
