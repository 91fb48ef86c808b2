"""The README's code blocks, run as a new user would run them.

Every fenced block of README.md is preceded by ``<!-- readme-test: TAG -->``:

* ``install`` and ``tests`` (virtual environment, pip, apt-get): checked without the network
  or root: bash syntax, extras that exist in pyproject.toml, and the ``$(command -v sudo)``
  idiom run against stand-in ``apt-get`` / ``sudo`` programs, with and without sudo;
* ``python``, ``cli-builtin``, ``cli-own-data``: run for real in a temporary folder holding
  small inputs (a synthetic raw frame and its background saved by a "camera" as RGBA with equal
  channels, a 3-frame video). The default run adds speed options to the commands that train
  (:data:`FAST`; ``cycsr demo`` is left to tests/test_demo.py); ``-m slow`` runs them as
  written, except that ``cycsr train`` gets
  ``--iterations 50`` instead of its default 2,000 (:data:`SLOW`). The ``torchrun`` line is
  not run here (distributed training has its own test in test_training.py); that ``torchrun``
  exists is checked.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TAG = re.compile(r"<!-- readme-test: ([a-z-]+) -->\s*\n```(\w+)\n(.*?)\n```", re.DOTALL)

#: Options added to these commands in the default (fast) run: tiny network, few iterations.
FAST = {
    "train": ["--preset", "tiny", "--iterations", "2", "--batch-size", "2", "--patch", "32",
              "--device", "cpu", "--threads", "1"],
    "super-resolve": ["--device", "cpu", "--threads", "1"],
}  # fmt: skip
#: ... and in the slow run (as written, but a shorter training than the default 2,000).
SLOW = {"train": ["--iterations", "50"]}
#: The Python block's training call, made small in the fast run.
PY_FAST = ('iterations=300, device="auto"',
           'iterations=2, device="cpu", preset="tiny", batch_size=2, patch=32')  # fmt: skip


def blocks() -> list[tuple[str, str, str]]:
    """(tag, language, code) of every fenced block of the README, in order."""
    text = README.read_text(encoding="utf-8")
    found = [(m.group(1), m.group(2), m.group(3)) for m in TAG.finditer(text)]
    assert len(found) == text.count("```") // 2, "every README code block needs a readme-test tag"
    return found


def block(tag: str) -> str:
    (code,) = [code for t, _, code in blocks() if t == tag]
    return code


def commands(code: str) -> list[str]:
    """Shell commands of a block: one per line, comments removed, continuations joined."""
    joined = code.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def test_every_block_is_tagged_and_known():
    tags = [tag for tag, _, _ in blocks()]
    assert set(tags) <= {"install", "tests", "python", "cli-builtin", "cli-own-data"}
    assert {"tests", "python", "cli-builtin", "cli-own-data"} <= set(tags)


# ------------------------------------------------------------------------- install and tests
def test_install_blocks_are_valid_shell_with_existing_extras():
    import tomllib

    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"])  # fmt: skip
    for tag, lang, code in blocks():
        if tag not in ("install", "tests"):
            continue
        assert lang == "bash"
        check = subprocess.run(["bash", "-n"], input=code, text=True, capture_output=True)
        assert check.returncode == 0, check.stderr
        for extra in re.findall(r'-e "\.\[(\w+)\]"', code):
            assert extra in extras
        # no bare sudo: it stops root users on machines without sudo (containers, CI)
        assert not re.search(r"(?<!command -v )\bsudo\b(?!\))", code), code


def _stand_ins(folder: Path, names: list[str]) -> None:
    """Programs that record how they were called, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = folder / name
        path.write_text(f'#!/bin/sh\necho "{name} $*" >> "{folder}/calls.log"\n')
        path.chmod(0o755)


@pytest.mark.parametrize("with_sudo", [False, True])
def test_system_packages_line_works_with_and_without_sudo(tmp_path, with_sudo):
    """The apt-get part of the test command, run against stand-in programs."""
    code = " ".join(commands(block("tests")))
    apt_part = code.split("&& python3 -m venv")[0].strip()
    bin_dir = tmp_path / "bin"
    _stand_ins(bin_dir, ["apt-get", "sudo"] if with_sudo else ["apt-get"])
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    if shutil.which("sudo", path="/usr/bin:/bin") and not with_sudo:
        pytest.skip("this machine has a real sudo in /usr/bin or /bin")
    result = subprocess.run(["bash", "-c", apt_part], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    calls = (bin_dir / "calls.log").read_text().splitlines()
    prefix = "sudo apt-get" if with_sudo else "apt-get"
    assert calls[0] == f"{prefix} update"
    assert calls[1].startswith(f"{prefix} install -y --no-install-recommends xvfb")
    assert len(calls) == 2


# ------------------------------------------------------------------------- inputs of the blocks
def _rgba(frame: np.ndarray) -> np.ndarray:
    """A grey frame as a camera saves it: 8-bit RGBA with equal colour channels."""
    grey = np.round(255 * frame / frame.max()).astype(np.uint8)
    out = np.empty((*grey.shape, 4), np.uint8)
    out[..., :3] = grey[..., None]
    out[..., 3] = 255
    return out


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A folder with the inputs the README names (small, synthetic), as the current folder."""
    from PIL import Image

    from napari_cycsr._imageio import write_image
    from napari_cycsr._sample_data import raw_bundle_frame
    from napari_cycsr.rating import QUESTIONS, RatingSession

    (background, _, _), (raw, _, _) = raw_bundle_frame()
    Image.fromarray(_rgba(background)).save(tmp_path / "background.tif")
    Image.fromarray(_rgba(raw)).save(tmp_path / "frame.tif")
    video = np.stack([raw * (0.8 + 0.1 * t) for t in range(3)]).astype(np.float32)
    write_image(tmp_path / "video.tif", video)
    (tmp_path / "videos").mkdir()
    write_image(tmp_path / "videos" / "second.tif", video[:2])
    session = RatingSession(tmp_path / "answers.csv", ["TLI", "CycSR"], ["1", "2"], rater="ann")
    while (case := session.next_case()) is not None:
        session.answer(case, {s: dict.fromkeys(QUESTIONS, 3) for s in case.slots})
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run_cli(
    code: str, extra: dict[str, list[str]], capsys, skip: tuple[str, ...] = ()
) -> list[str]:
    """Run each ``cycsr`` line in-process (``main``); return the outputs, one per command.

    Commands named in ``skip`` are not run (their output is empty)."""
    from napari_cycsr.cli import main

    outputs = []
    for line in commands(code):
        words = shlex.split(line)
        if words[0] == "torchrun":
            assert shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which(
                "torchrun"
            )
            continue
        assert words[0] == "cycsr", line
        argv = words[1:] + extra.get(words[1], [])
        if words[1] in skip:
            outputs.append("")
            continue
        status = main(argv)
        captured = capsys.readouterr()
        assert status == 0, f"{line}\n{captured.err}"
        outputs.append(captured.out)
    return outputs


def _check_builtin(workdir: Path, outputs: list[str], demo: bool = True) -> None:
    from napari_cycsr._imageio import read_image

    assert (workdir / "demo_out" / "demo.png").is_file() or not demo
    assert (workdir / "sim" / "hr.tif").is_file() and (workdir / "sim_model.safetensors").is_file()
    assert read_image(workdir / "results" / "lr_sr.tif").shape == read_image(
        workdir / "sim" / "lr.tif"
    ).shape
    evaluation = outputs[-1]
    assert "field of view found from the flat surround of lr.tif" in evaluation
    assert "| lr_sr |" in evaluation and "ssim" in evaluation


def _check_own_data(workdir: Path, outputs: list[str]) -> None:
    from napari_cycsr._imageio import read_image

    assert "fibres" in outputs[0] and (workdir / "fibres.csv").is_file()
    assert read_image(workdir / "lr.tif").shape == (3, 384, 384)
    assert read_image(workdir / "results" / "lr_sr.tif").shape == (3, 384, 384)
    assert read_image(workdir / "results" / "second_sr.tif").shape == (2, 384, 384)
    evaluation = outputs[4]
    assert "no --reference" in evaluation and "3 frames" in evaluation
    assert "field of view of the fibres" in evaluation and "sharpness" in evaluation
    assert "| CycSR | 2 |" in outputs[5]
    assert (workdir / "shifts.csv").is_file()  # cycsr register, then fuse: HR^ of the video
    assert read_image(workdir / "hr.tif").shape == (384, 384)
    from napari_cycsr.io import load_model

    video_config = load_model(workdir / "video_model.safetensors").metadata["train_config"]
    assert video_config["w_multi"] == 1.0 and video_config["target"] == "paired"
    assert read_image(workdir / "pretrained_sr.tif").shape == (3, 384, 384)  # shipped model


def test_cli_builtin_block_on_small_inputs(workdir, capsys):
    """(``cycsr demo`` itself is run by tests/test_demo.py and, as written, with -m slow.)"""
    outputs = _run_cli(block("cli-builtin"), FAST, capsys, skip=("demo",))
    _check_builtin(workdir, outputs, demo=False)


def test_cli_own_data_block_on_small_inputs(workdir, capsys):
    _check_own_data(workdir, _run_cli(block("cli-own-data"), FAST, capsys))


def _run_python(code: str) -> dict:
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(code, str(README), "exec"), namespace)  # the README's own code, nothing else
    return namespace


def test_python_block_on_small_inputs(workdir):
    code = block("python")
    assert PY_FAST[0] in code
    ns = _run_python(code.replace(*PY_FAST))
    assert ns["sr"].shape == ns["sim"].lr.shape and (workdir / "model.safetensors").is_file()
    assert [row["method"] for row in ns["rows"]] == ["TLI", "Wiener", "CycSR"]
    # the real-frames part ran on RGBA camera frames with equal channels
    assert ns["raw"].shape == (384, 384, 4)
    assert ns["bundle"].n_fibres > 4000 and ns["lr"].shape == (384, 384)
    assert ns["reg"].shifts.shape == (3, 2) and ns["hr_hat"].shape == (384, 384)
    assert ns["reference_0"].shape == (384, 384)
    assert ns["sr_pretrained"].shape == ns["sr_large"].shape == (384, 384)


@pytest.mark.slow
def test_python_block_as_written(workdir):
    ns = _run_python(block("python"))
    assert ns["model"].metadata["iteration"] == 300


@pytest.mark.slow
def test_cli_blocks_as_written(workdir, capsys):
    _check_builtin(workdir, _run_cli(block("cli-builtin"), SLOW, capsys))
    _check_own_data(workdir, _run_cli(block("cli-own-data"), SLOW, capsys))
