"""Tests of the MOS study logic (rating.py): blinded plan, durable answers, resume, summaries."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

from napari_cycsr import rating
from napari_cycsr.rating import (
    CSV_COLUMNS,
    QUESTIONS,
    RatingSession,
    format_summary,
    paired_tests,
    plot_summary,
    read_answers,
    slot_label,
    study_plan,
    summarise,
)

METHODS = ["sharpen", "video SR", "CycSR"]
CASES = [f"frame {i}" for i in range(1, 7)]


def _scores(value):
    return dict.fromkeys(QUESTIONS, value)


def test_doctests():
    assert doctest.testmod(rating, raise_on_error=False).failed == 0


def test_questions_are_the_papers():
    assert list(QUESTIONS) == ["Q1", "Q2", "Q3", "Q4"]
    assert "artefact-free" in QUESTIONS["Q1"] and "prefer" in QUESTIONS["Q4"]
    assert [slot_label(i) for i in (0, 1, 25, 26, 27)] == ["A", "B", "Z", "AA", "AB"]


def test_plan_is_blinded_shuffled_and_reproducible():
    plan = study_plan(METHODS, CASES, seed=3, rater="ann")
    assert sorted(p.case for p in plan) == sorted(CASES)
    assert all(sorted(p.order) == sorted(METHODS) for p in plan)
    assert [p.step for p in plan] == list(range(len(CASES)))
    assert plan == study_plan(METHODS, CASES, seed=3, rater="ann")
    # the order changes with the seed and the rater, and is not the input order everywhere
    others = [study_plan(METHODS, CASES, seed=4, rater="ann"),
              study_plan(METHODS, CASES, seed=3, rater="bob")]  # fmt: skip
    assert all(other != plan for other in others)
    firsts = {p.order[0] for p in plan} | {p.order[0] for o in others for p in o}
    assert len(firsts) > 1
    assert plan[0].slots == {"A": plan[0].order[0], "B": plan[0].order[1], "C": plan[0].order[2]}
    with pytest.raises(ValueError, match="at least 2 methods"):
        study_plan(["only"], CASES)
    with pytest.raises(ValueError, match="distinct"):
        study_plan(["a", "a"], CASES)


def test_answers_are_written_at_once_and_resume(tmp_path):
    path = tmp_path / "answers.csv"
    session = RatingSession(path, METHODS, CASES, rater="ann", seed=1)
    assert (session.done, session.total) == (0, 6)
    first = session.next_case()
    session.answer(first, {slot: _scores(3) for slot in first.slots})
    # on disk right away (an abrupt end of the program loses nothing)
    rows = read_answers(path)
    assert len(rows) == 3 and {r.method for r in rows} == set(METHODS)
    assert path.read_text().splitlines()[0] == ",".join(CSV_COLUMNS)
    # the order shown is logged with every answer
    for row in rows:
        assert first.slots[row.slot] == row.method and first.order[row.position] == row.method
    second = session.next_case()
    assert second.case != first.case

    # a new session on the same file (napari closed and reopened) resumes after case 1
    again = RatingSession(path, METHODS, CASES, rater="ann", seed=1)
    assert again.done == 1 and again.next_case() == second
    with pytest.raises(ValueError, match="already answered"):
        again.answer(first, {slot: _scores(3) for slot in first.slots})
    # another rater in the same file starts from the beginning, with their own order
    bob = RatingSession(path, METHODS, CASES, rater="bob", seed=1)
    assert bob.done == 0
    # resuming with another seed or other methods is refused with the fix
    with pytest.raises(ValueError, match="with seed 1"):
        RatingSession(path, METHODS, CASES, rater="ann", seed=2)
    with pytest.raises(ValueError, match="not in this study"):
        RatingSession(path, ["sharpen", "CycSR"], CASES, rater="ann", seed=1)


def test_incomplete_answers_write_nothing(tmp_path):
    path = tmp_path / "answers.csv"
    session = RatingSession(path, METHODS, CASES, rater="ann")
    case = session.next_case()
    partial = {slot: _scores(4) for slot in case.slots}
    partial["B"] = {**partial["B"], "Q3": None}
    with pytest.raises(ValueError, match="image B: answer Q3"):
        session.answer(case, partial)
    with pytest.raises(ValueError, match="score every image"):
        session.answer(case, {"A": _scores(4)})
    bad = {slot: _scores(4) for slot in case.slots}
    bad["C"] = {**bad["C"], "Q1": 6}
    with pytest.raises(ValueError, match="1-5"):
        session.answer(case, bad)
    assert not path.exists() and session.done == 0
    with pytest.raises(ValueError, match="rater"):
        RatingSession(path, METHODS, CASES, rater="  ")


def test_bad_answers_files(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("rater,case,method,Q1,Q2\nann,1,x,3,3\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['Q3', 'Q4'\]"):
        read_answers(path)
    path.write_text("rater,case,method,Q1,Q2,Q3,Q4\nann,1,x,3,3,3,2.5\n")
    with pytest.raises(ValueError, match="line 2: Q4 is '2.5'"):
        read_answers(path)
    path.write_text("rater,case,method,Q1,Q2,Q3,Q4\nann,1,x,3,3,3,2\nann,1,x,3,3,3,2\n")
    with pytest.raises(ValueError, match="twice"):
        read_answers(path)
    path.write_text("rater,case,method,Q1,Q2,Q3,Q4\nann,1,x,3,3,3,__import__('os')\n")
    with pytest.raises(ValueError, match="whole number"):
        read_answers(path)


def _study(tmp_path):
    """Two raters, six cases: CycSR always scores 1 more than sharpen on Q1, video SR equal."""
    path = tmp_path / "answers.csv"
    rng = np.random.default_rng(0)
    for rater in ("ann", "bob"):
        session = RatingSession(path, METHODS, CASES, rater=rater, seed=0)
        while (case := session.next_case()) is not None:
            base = int(rng.integers(1, 5))
            given = {"sharpen": base, "video SR": base, "CycSR": base + 1}
            session.answer(case, {s: _scores(given[m]) for s, m in case.slots.items()})
    return path


def test_summary_tests_table_and_chart(tmp_path):
    path = _study(tmp_path)
    answers = read_answers(path)
    assert len(answers) == 2 * 6 * 3
    summary = summarise(answers)
    assert set(summary) == set(METHODS)
    sharp = [a.scores["Q1"] for a in answers if a.method == "sharpen"]
    assert summary["sharpen"]["Q1"]["mean"] == pytest.approx(np.mean(sharp))
    assert summary["sharpen"]["Q1"]["sd"] == pytest.approx(np.std(sharp, ddof=1))
    assert summary["CycSR"]["Q2"]["mean"] == pytest.approx(summary["sharpen"]["Q2"]["mean"] + 1)
    assert summary["CycSR"]["Q4"]["n"] == 12

    tests = {(t["question"], t["a"], t["b"]): t for t in paired_tests(path, methods=METHODS)}
    assert [t["a"] for t in paired_tests(path)][0] == "CycSR"  # default: sorted
    equal = tests[("Q1", "sharpen", "video SR")]
    assert equal["n"] == 12 and equal["p"] == 1.0 and equal["mean_diff"] == 0
    better = tests[("Q1", "sharpen", "CycSR")]
    assert better["mean_diff"] == -1 and better["p"] < 0.01

    text = format_summary(path)
    assert "| method | n | Q1 artefact-free" in text
    mean, sd = summary["CycSR"]["Q3"]["mean"], summary["CycSR"]["Q3"]["sd"]
    assert f"{mean:.2f} ± {sd:.2f}" in text
    assert "Wilcoxon" in text and "2 rater(s), 6 case(s)" in text

    figure = plot_summary(path, path=tmp_path / "fig6.png")
    ax = figure.axes[0]
    assert len(ax.patches) == 4 * 3  # four questions x three methods
    heights = sorted(round(p.get_height(), 6) for p in ax.patches)
    expected = sorted(round(summary[m][q]["mean"], 6) for m in METHODS for q in QUESTIONS)
    assert heights == expected
    assert (tmp_path / "fig6.png").stat().st_size > 1000
    assert format_summary([]) == "no answers yet\n"
    one = summarise(answers[:1])
    assert math.isnan(one[answers[0].method]["Q1"]["sd"])
