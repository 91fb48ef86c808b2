"""The paper's mean opinion score (MOS) study: blinded ratings, saved as given, summarised.

Section 4.2 of Ravì et al.: raters see, one case (image) at a time, the outputs of several
methods in a random order, with the input and the reference (HR^) beside them, and answer
four questions for each output on a 1 (strongly disagree) to 5 (strongly agree) scale
(:data:`QUESTIONS`). The paper reports mean and standard deviation per method and question
(its Fig. 6).

This module is the study without any GUI (the napari *Rate* widget and ``cycsr rate-summary``
use it):

* :func:`study_plan` - the blinded order: cases shuffled, and the methods of each case
  shuffled and shown under neutral labels (A, B, C ...), reproducibly from a seed and the
  rater's name (each rater gets their own order);
* :class:`RatingSession` - one rater's session on one answers file: which case comes next,
  :meth:`~RatingSession.answer` appends the case's rows to the CSV at once (flushed and
  fsynced: nothing is lost if the program closes), and a session reopened on the same file
  resumes where the rater stopped;
* :func:`read_answers`, :func:`summarise`, :func:`paired_tests`, :func:`format_summary` and
  :func:`plot_summary` - the results: mean ± sd per method and question, paired Wilcoxon
  signed-rank tests between methods (the same rater on the same case), a bar chart like the
  paper's Fig. 6.

The answers file is a plain CSV with one row per rated image, columns :data:`CSV_COLUMNS`;
``slot`` is the neutral label the image had on screen and ``position`` its place in the
case's order, so the blinded order is logged with every answer. The file is read as data
(``csv`` module; values checked), never executed.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CSV_COLUMNS",
    "QUESTIONS",
    "SCORES",
    "Answer",
    "PlannedCase",
    "RatingSession",
    "format_summary",
    "paired_tests",
    "plot_summary",
    "read_answers",
    "slot_label",
    "study_plan",
    "summarise",
]

#: The paper's four questions (Section 4.2), answered from 1 to 5 for each output image.
QUESTIONS: dict[str, str] = {
    "Q1": "Is the image artefact-free?",
    "Q2": "Can you see an improvement in contrast with respect to the input?",
    "Q3": "Can you see an improvement in the details with respect to the input?",
    "Q4": "Would you prefer seeing the new image over the input?",
}

#: Short names of the questions (table headers, chart labels).
SHORT: dict[str, str] = {
    "Q1": "artefact-free",
    "Q2": "contrast",
    "Q3": "details",
    "Q4": "preferred",
}

#: The answer scale: 1 strongly disagree ... 5 strongly agree.
SCORES: dict[int, str] = {
    1: "strongly disagree",
    2: "disagree",
    3: "neutral",
    4: "agree",
    5: "strongly agree",
}

#: Columns of the answers CSV, in order.
CSV_COLUMNS: tuple[str, ...] = (
    "time", "rater", "seed", "case", "step", "position", "slot", "method", *QUESTIONS,
)  # fmt: skip


def slot_label(position: int) -> str:
    """Neutral label of the ``position``-th image of a case: A, B, ... Z, AA, AB ..."""
    if position < 0:
        raise ValueError(f"position must be >= 0, got {position}")
    label = ""
    position += 1
    while position:
        position, rest = divmod(position - 1, 26)
        label = chr(ord("A") + rest) + label
    return label


@dataclass(frozen=True)
class PlannedCase:
    """One step of a rater's study: a case and the order its methods are shown in.

    Attributes
    ----------
    step : int
        0-based position of the case in this rater's study.
    case : str
        The case (image) identifier.
    order : tuple of str
        Method names in the order shown; the i-th is labelled ``slot_label(i)``.
    """

    step: int
    case: str
    order: tuple[str, ...]

    @property
    def slots(self) -> dict[str, str]:
        """Neutral label -> method."""
        return {slot_label(i): method for i, method in enumerate(self.order)}


def _check_names(values: Sequence[str], what: str, minimum: int) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Sequence | Iterable):
        raise TypeError(f"{what} must be a sequence of names, got {values!r}")
    names = tuple(str(v) for v in values)
    if len(names) < minimum:
        raise ValueError(f"a rating study needs at least {minimum} {what}, got {len(names)}")
    if len(set(names)) != len(names):
        raise ValueError(f"{what} must have distinct names, got {list(names)}")
    if any(not n.strip() for n in names):
        raise ValueError(f"{what} must have non-empty names, got {list(names)}")
    return names


def study_plan(
    methods: Sequence[str], cases: Sequence[str], *, seed: int = 0, rater: str = ""
) -> list[PlannedCase]:
    """The blinded order of a rater's study.

    Cases are shuffled, and within each case the methods are shuffled; the same ``seed`` and
    ``rater`` give the same plan (so a session can resume), different raters get different
    orders.

    Parameters
    ----------
    methods : sequence of str
        Names of the methods compared (at least 2).
    cases : sequence of str
        Case identifiers (at least 1), e.g. frame numbers or file names.
    seed : int
        Seed of the study.
    rater : str
        The rater's name (mixed into the seed).

    Returns
    -------
    list of PlannedCase

    Examples
    --------
    >>> plan = study_plan(["TLI", "CycSR", "sharpen"], ["1", "2"], seed=0, rater="ann")
    >>> sorted(plan[0].order)
    ['CycSR', 'TLI', 'sharpen']
    >>> plan == study_plan(["TLI", "CycSR", "sharpen"], ["1", "2"], seed=0, rater="ann")
    True
    """
    methods = _check_names(methods, "methods", 2)
    cases = _check_names(cases, "cases", 1)
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng([int(seed), zlib.crc32(str(rater).encode("utf-8"))])
    case_order = rng.permutation(len(cases))
    plan = []
    for step, index in enumerate(case_order):
        order = tuple(methods[i] for i in rng.permutation(len(methods)))
        plan.append(PlannedCase(step, cases[int(index)], order))
    return plan


@dataclass(frozen=True)
class Answer:
    """One rated image: who, which case, which method (and where it was shown), four scores."""

    rater: str
    case: str
    method: str
    scores: dict[str, int]
    seed: int = 0
    step: int = 0
    position: int = 0
    slot: str = ""
    time: str = ""


def _score(value: Any, question: str, where: str) -> int:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ValueError(f"{where}: {question} is {value!r}; expected a whole number 1-5") from None
    if not number.is_integer() or not 1 <= number <= 5:
        raise ValueError(f"{where}: {question} is {value!r}; expected a whole number 1-5")
    return int(number)


def _int_field(value: Any, name: str, where: str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ValueError(f"{where}: {name} is {value!r}; expected a whole number") from None
    if number < 0:
        raise ValueError(f"{where}: {name} is {number}; expected >= 0")
    return number


def read_answers(path: str | os.PathLike[str]) -> list[Answer]:
    """Read an answers CSV written by :class:`RatingSession` (or by hand, same columns).

    Parameters
    ----------
    path : path-like
        The CSV file.

    Returns
    -------
    list of Answer
        In file order.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        A missing column, a score that is not a whole number from 1 to 5, or the same
        (rater, case, method) rated twice.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    reader = csv.DictReader(io.StringIO(text))
    required = ("rater", "case", "method", *QUESTIONS)
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(
            f"{path}: not an answers file: missing column(s) {missing}; expected the columns "
            f"{', '.join(CSV_COLUMNS)}"
        )
    answers: list[Answer] = []
    seen: set[tuple[str, str, str]] = set()
    for line, row in enumerate(reader, start=2):
        where = f"{path}, line {line}"
        rater, case, method = (str(row.get(k) or "").strip() for k in ("rater", "case", "method"))
        if not case or not method:
            raise ValueError(f"{where}: the case and the method must not be empty")
        key = (rater, case, method)
        if key in seen:
            raise ValueError(f"{where}: rater {rater!r} rated method {method!r} on case "
                             f"{case!r} twice")  # fmt: skip
        seen.add(key)
        answers.append(
            Answer(
                rater=rater, case=case, method=method,
                scores={q: _score(row.get(q), q, where) for q in QUESTIONS},
                seed=_int_field(row.get("seed") or 0, "seed", where),
                step=_int_field(row.get("step") or 0, "step", where),
                position=_int_field(row.get("position") or 0, "position", where),
                slot=str(row.get("slot") or ""), time=str(row.get("time") or ""),
            )
        )  # fmt: skip
    return answers


class RatingSession:
    """One rater's blinded session, saved to an answers CSV as the answers are given.

    Parameters
    ----------
    path : path-like
        The answers CSV. Created when missing; when it exists, the rater's earlier answers
        are read and the session resumes after them (other raters' rows are kept as they are).
    methods : sequence of str
        The methods compared (at least 2).
    cases : sequence of str
        The case identifiers (at least 1).
    rater : str
        The rater's name (non-empty; no commas or line breaks needed: the CSV quotes them).
    seed : int
        Seed of the blinded order. Resuming needs the seed of the rater's earlier answers.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "answers.csv"
    >>> session = RatingSession(path, ["TLI", "CycSR"], ["frame 1"], rater="ann")
    >>> case = session.next_case()
    >>> session.answer(case, {"A": dict(Q1=4, Q2=3, Q3=3, Q4=4),
    ...                       "B": dict(Q1=5, Q2=2, Q3=2, Q4=3)})
    >>> session.finished, len(read_answers(path))
    (True, 2)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        methods: Sequence[str],
        cases: Sequence[str],
        *,
        rater: str,
        seed: int = 0,
    ) -> None:
        if not isinstance(rater, str) or not rater.strip():
            raise ValueError("enter the rater's name (it keeps each rater's answers apart)")
        self.path = Path(path)
        self.rater = rater.strip()
        self.seed = int(seed)
        self.methods = _check_names(methods, "methods", 2)
        self.cases = _check_names(cases, "cases", 1)
        self.plan = study_plan(self.methods, self.cases, seed=self.seed, rater=self.rater)
        self._answered: set[str] = set()
        if self.path.exists():
            if self.path.is_dir():
                raise ValueError(f"{self.path} is a folder; choose a .csv file for the answers")
            self._resume(read_answers(self.path) if self.path.stat().st_size else [])

    def _resume(self, answers: list[Answer]) -> None:
        mine = [a for a in answers if a.rater == self.rater]
        if not mine:
            return
        seeds = {a.seed for a in mine}
        if seeds != {self.seed}:
            raise ValueError(
                f"{self.path} holds answers of {self.rater!r} with seed {sorted(seeds)[0]}; "
                f"resume with that seed (or use another answers file)"
            )
        unknown_methods = sorted({a.method for a in mine} - set(self.methods))
        unknown_cases = sorted({a.case for a in mine} - set(self.cases))
        if unknown_methods or unknown_cases:
            what = (
                f"methods {unknown_methods}" if unknown_methods else f"cases {unknown_cases[:3]}"
            )
            raise ValueError(
                f"{self.path} holds answers of {self.rater!r} for {what} that are not in this "
                "study; resume with the same inputs (or use another answers file)"
            )
        by_case: dict[str, set[str]] = {}
        for a in mine:
            by_case.setdefault(a.case, set()).add(a.method)
        self._answered = {case for case, rated in by_case.items() if rated == set(self.methods)}

    # -- progress -------------------------------------------------------------------------
    @property
    def total(self) -> int:
        """Number of cases in the study."""
        return len(self.plan)

    @property
    def done(self) -> int:
        """Number of cases this rater has answered."""
        return len(self._answered)

    @property
    def finished(self) -> bool:
        return self.done >= self.total

    def next_case(self) -> PlannedCase | None:
        """The next case to rate (in the blinded order), or None when all are done."""
        for planned in self.plan:
            if planned.case not in self._answered:
                return planned
        return None

    # -- answering ------------------------------------------------------------------------
    def answer(self, planned: PlannedCase, scores: Mapping[str, Mapping[str, Any]]) -> None:
        """Record the scores of every image of one case and write them to the CSV at once.

        Parameters
        ----------
        planned : PlannedCase
            The case (from :meth:`next_case`).
        scores : mapping
            Neutral label (``"A"``, ``"B"`` ...) -> ``{"Q1": 1-5, ..., "Q4": 1-5}``, for
            every image of the case.

        Raises
        ------
        ValueError
            A label or a question without a score, a score outside 1-5, or a case already
            answered. Nothing is written then.
        """
        if planned not in self.plan:
            raise ValueError(f"case {planned.case!r} is not part of this study")
        if planned.case in self._answered:
            raise ValueError(f"case {planned.case!r} was already answered")
        slots = planned.slots
        missing = [s for s in slots if s not in scores]
        if missing or set(scores) - set(slots):
            raise ValueError(
                f"score every image of the case: expected {list(slots)}, got {sorted(scores)}"
            )
        rows = []
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        for position, (slot, method) in enumerate(slots.items()):
            given = scores[slot]
            absent = [q for q in QUESTIONS if given.get(q) in (None, "", 0)]
            if absent:
                raise ValueError(f"image {slot}: answer {', '.join(absent)} (1-5)")
            values = {q: _score(given[q], q, f"image {slot}") for q in QUESTIONS}
            rows.append(
                {
                    "time": stamp, "rater": self.rater, "seed": self.seed,
                    "case": planned.case, "step": planned.step, "position": position,
                    "slot": slot, "method": method, **values,
                }
            )  # fmt: skip
        self._append(rows)
        self._answered.add(planned.case)

    def _append(self, rows: list[dict[str, Any]]) -> None:
        new = not self.path.exists() or self.path.stat().st_size == 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
            if new:
                writer.writeheader()
            writer.writerows(rows)
            handle.flush()
            os.fsync(handle.fileno())


# ---------------------------------------------------------------------------------- summary
def _as_answers(answers: Any) -> list[Answer]:
    if isinstance(answers, str | os.PathLike):
        return read_answers(answers)
    answers = list(answers)
    if not all(isinstance(a, Answer) for a in answers):
        raise TypeError("expected Answer objects (read_answers) or the path of an answers CSV")
    return answers


def _methods(answers: list[Answer], methods: Sequence[str] | None = None) -> list[str]:
    """The methods to report: ``methods`` (those answered), else all answered, sorted."""
    answered = {a.method for a in answers}
    if methods is None:
        return sorted(answered)
    return [m for m in methods if m in answered]


def summarise(
    answers: Any, *, methods: Sequence[str] | None = None
) -> dict[str, dict[str, dict[str, float]]]:
    """Mean, standard deviation and count of the scores, per method and question.

    Parameters
    ----------
    answers : list of Answer or path-like
        Answers (:func:`read_answers`) or an answers CSV.
    methods : sequence of str, optional
        Methods to report, in this order (default: every method answered, sorted).

    Returns
    -------
    dict
        ``{method: {question: {"mean", "sd", "n"}}}``; ``sd`` is the sample standard
        deviation (NaN for one answer).
    """
    answers = _as_answers(answers)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for method in _methods(answers, methods):
        out[method] = {}
        for q in QUESTIONS:
            values = np.array([a.scores[q] for a in answers if a.method == method], float)
            sd = float(values.std(ddof=1)) if values.size > 1 else math.nan
            out[method][q] = {"mean": float(values.mean()), "sd": sd, "n": int(values.size)}
    return out


def paired_tests(answers: Any, *, methods: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Paired comparisons of every two methods on every question.

    The pairs are the two methods' scores given by the same rater on the same case; the
    test is Wilcoxon's signed-rank test (two-sided, zero differences dropped), as scores
    are ordinal.

    Parameters
    ----------
    answers : list of Answer or path-like
    methods : sequence of str, optional
        Methods to compare, in this order (default: every method answered, sorted).

    Returns
    -------
    list of dict
        Keys ``question, a, b, n`` (pairs), ``mean_diff`` (mean of a - b), ``n_nonzero``
        and ``p`` (NaN when fewer than 1 non-zero difference; 1.0 when all are zero).
    """
    from scipy.stats import wilcoxon

    answers = _as_answers(answers)
    table: dict[tuple[str, str, str], dict[str, int]] = {}
    for a in answers:
        table.setdefault((a.rater, a.case, a.method), a.scores)
    methods = _methods(answers, methods)
    keys = sorted({(a.rater, a.case) for a in answers})
    results = []
    for i, first in enumerate(methods):
        for second in methods[i + 1 :]:
            for q in QUESTIONS:
                pairs = [
                    (table[(r, c, first)][q], table[(r, c, second)][q])
                    for r, c in keys
                    if (r, c, first) in table and (r, c, second) in table
                ]
                diff = np.array([x - y for x, y in pairs], float)
                nonzero = int(np.count_nonzero(diff))
                if diff.size == 0:
                    p = math.nan
                elif nonzero == 0:
                    p = 1.0
                else:
                    p = float(wilcoxon(diff, zero_method="wilcox").pvalue)
                results.append(
                    {
                        "question": q, "a": first, "b": second, "n": int(diff.size),
                        "mean_diff": float(diff.mean()) if diff.size else math.nan,
                        "n_nonzero": nonzero, "p": p,
                    }
                )  # fmt: skip
    return results


def _pm(stats: Mapping[str, float]) -> str:
    sd = "n/a" if math.isnan(stats["sd"]) else f"{stats['sd']:.2f}"
    return f"{stats['mean']:.2f} ± {sd}"


def format_summary(answers: Any, *, methods: Sequence[str] | None = None) -> str:
    """The study's results as Markdown: mean ± sd per method and question, then the tests.

    Parameters
    ----------
    answers : list of Answer or path-like
    methods : sequence of str, optional
        Methods to report, in this order (default: every method answered, sorted).

    Returns
    -------
    str
    """
    answers = _as_answers(answers)
    if not answers:
        return "no answers yet\n"
    summary = summarise(answers, methods=methods)
    raters = sorted({a.rater for a in answers})
    cases = sorted({a.case for a in answers})
    lines = [
        f"{len(answers)} rated images, {len(raters)} rater(s), {len(cases)} case(s); "
        "scores 1 (strongly disagree) to 5 (strongly agree), mean ± sd",
        "",
        "| method | n | " + " | ".join(f"{q} {SHORT[q]}" for q in QUESTIONS) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in QUESTIONS) + " |",
    ]
    for method, per_q in summary.items():
        n = per_q["Q1"]["n"]
        lines.append(
            f"| {method} | {n} | " + " | ".join(_pm(per_q[q]) for q in QUESTIONS) + " |"
        )
    lines += ["", *(f"{q}: {text}" for q, text in QUESTIONS.items()), ""]
    tests = paired_tests(answers, methods=methods)
    if tests:
        lines += [
            "paired Wilcoxon signed-rank tests (same rater, same case; two-sided):",
            "",
            "| question | a | b | pairs | mean a - b | p |",
            "| --- | --- | --- | ---: | ---: | ---: |",
        ]
        for t in tests:
            p = "n/a" if math.isnan(t["p"]) else f"{t['p']:.3g}"
            diff = "n/a" if math.isnan(t["mean_diff"]) else f"{t['mean_diff']:+.2f}"
            lines.append(f"| {t['question']} | {t['a']} | {t['b']} | {t['n']} | {diff} | {p} |")
    return "\n".join(lines) + "\n"


def plot_summary(
    answers: Any,
    *,
    methods: Sequence[str] | None = None,
    ax: Any = None,
    path: str | os.PathLike[str] | None = None,
) -> Any:
    """Bar chart of mean ± sd per question, one bar per method (the paper's Fig. 6).

    Parameters
    ----------
    answers : list of Answer or path-like
    methods : sequence of str, optional
        Methods to draw, in this order (default: every method answered, sorted).
    ax : matplotlib Axes, optional
        Draw into these axes (e.g. a widget's canvas); default: a new figure.
    path : path-like, optional
        Also save the figure there (PNG, SVG, PDF by suffix).

    Returns
    -------
    matplotlib.figure.Figure
    """
    answers = _as_answers(answers)
    if ax is None:
        from matplotlib.figure import Figure

        figure = Figure(figsize=(6.4, 3.6), layout="constrained")
        ax = figure.add_subplot()
    else:
        figure = ax.figure
        ax.clear()
    summary = summarise(answers, methods=methods)
    methods = list(summary)
    x = np.arange(len(QUESTIONS))
    width = 0.8 / max(len(methods), 1)
    for i, method in enumerate(methods):
        means = [summary[method][q]["mean"] for q in QUESTIONS]
        sds = [np.nan_to_num(summary[method][q]["sd"]) for q in QUESTIONS]
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, means, width, yerr=sds, capsize=3,
               label=method)  # fmt: skip
    ax.set_xticks(x, [f"{q}\n{SHORT[q]}" for q in QUESTIONS])
    ax.set_ylim(0, 5.5)
    ax.set_yticks(range(0, 6))
    ax.set_ylabel("score (mean ± sd)")
    if methods:
        ax.legend(fontsize="small", ncols=min(len(methods), 4), loc="upper center")
    if path is not None:
        figure.savefig(path, dpi=150)
    return figure
