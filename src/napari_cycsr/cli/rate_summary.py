"""``cycsr rate-summary``: the results of a blinded rating (MOS) study from its answers CSV."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._common import CLIError, Formatter


def add_parser(sub: Any, common: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add the ``rate-summary`` sub-command to ``sub`` (the sub-parsers of ``cycsr``)."""
    p = sub.add_parser(
        "rate-summary",
        parents=common,
        formatter_class=Formatter,
        help="mean ± sd per method and question of a rating study's answers (the paper's MOS)",
        description=(
            "Summarise the answers of the blinded rating study of the napari Rate widget (the\n"
            "paper's mean opinion score study, Section 4.2): for each method and each of the\n"
            "four questions (Q1 artefact-free, Q2 contrast, Q3 details, Q4 preferred; scores\n"
            "1 = strongly disagree ... 5 = strongly agree) the mean ± standard deviation, then\n"
            "paired Wilcoxon signed-rank tests between methods (same rater, same case). Prints\n"
            "Markdown; the table is the same as the Rate widget's Summary."
        ),
        epilog=(
            "examples:\n"
            "  cycsr rate-summary answers.csv\n"
            "  cycsr rate-summary answers.csv --methods sharpen,video-SR,CycSR --plot fig6.png"
        ),
    )
    p.add_argument("answers", metavar="CSV", help="the answers file written by the Rate widget")
    p.add_argument(
        "--methods", metavar="A,B,...",
        help="methods to report, in this order, separated by commas (default: all, sorted)",
    )  # fmt: skip
    p.add_argument(
        "--plot", metavar="FILE",
        help="also draw the bar chart of the paper's Fig. 6 (PNG, SVG or PDF)",
    )  # fmt: skip
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..rating import format_summary, plot_summary, read_answers

    path = Path(args.answers)
    if not path.is_file():
        raise OSError(f"{path}: no such answers file")
    answers = read_answers(path)
    if not answers:
        raise CLIError(f"{path}: the file holds no answers yet")
    methods = None
    if args.methods is not None:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        answered = sorted({a.method for a in answers})
        unknown = [m for m in methods if m not in answered]
        if unknown or not methods:
            raise CLIError(
                f"--methods: {unknown or args.methods!r} not in {path}; its methods are "
                f"{', '.join(answered)}"
            )
    print(format_summary(answers, methods=methods), end="")
    if args.plot is not None:
        plot_summary(answers, methods=methods, path=args.plot)
        print(f"wrote {args.plot}")
    return 0
