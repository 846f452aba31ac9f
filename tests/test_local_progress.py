"""What a local run shows: the steps' lines echoed one by one, and a status line that fits.

The train step's real per-epoch lines are checked end to end in test_cli.py (``run --json``);
here the display is driven with a log file written by the test, line by line.
"""

from __future__ import annotations

import io

import pytest

from retrain.local.progress import LogTail, StepDisplay, fit


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_fit_cuts_at_a_word_boundary_and_never_inside_a_path():
    line = "[2/3] train_node   12.3 s  model written to /tmp/runs/fashion-retrain-0123/train_node"
    assert fit(line, 200) == line
    assert fit(line, 50) == "[2/3] train_node   12.3 s  model written to…"
    assert fit(line, 20) == "[2/3] train_node…"
    for width in range(1, len(line)):
        cut = fit(line, width)
        assert len(cut) <= width
        words = cut.removesuffix("…").split()
        assert all(word in line.split() for word in words)  # whole words only
    assert fit("/a/very/long/path/without/spaces", 10) == "…"


def test_log_tail_returns_each_complete_line_once(tmp_path):
    log = tmp_path / "stdout.log"
    tail = LogTail(log)
    assert tail.lines() == []  # no file yet
    log.write_text("epoch 1/3  loss 0.9\nepoch 2/3 ")
    assert tail.lines() == ["epoch 1/3  loss 0.9"]
    with log.open("a") as f:
        f.write(" loss 0.5\n\nbar 10%\rbar 100%\npartial")
    assert tail.lines() == ["epoch 2/3  loss 0.5", "bar 100%"]
    assert tail.lines(final=True) == ["partial"]
    assert tail.lines(final=True) == []


def test_redirected_output_gets_one_line_per_step_line(tmp_path):
    log = tmp_path / "stdout.log"
    out = io.StringIO()
    display = StepDisplay(3, stream=out)
    display.start(2, "train_node", log)
    for epoch in (1, 2):
        with log.open("a") as f:
            f.write(f"epoch {epoch}/2  loss 0.5  train accuracy 0.8  1.0 s\n")
        display.tick(2, "train_node", float(epoch))
    display.done(2, "train_node", 2.5, ok=True)
    assert out.getvalue().splitlines() == [
        "[2/3] train_node started",
        "train_node: epoch 1/2  loss 0.5  train accuracy 0.8  1.0 s",
        "train_node: epoch 2/2  loss 0.5  train accuracy 0.8  1.0 s",
        "[2/3] train_node done in 2.5 s",
    ]


def test_terminal_status_line_fits_the_width_and_keeps_the_lines(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "41")
    log = tmp_path / "stdout.log"
    log.write_text("train: model written to /tmp/runs/fashion-retrain-0123456789/train\n")
    tty = _Terminal()
    display = StepDisplay(3, stream=tty)
    display.start(2, "train_node", log)
    display.tick(2, "train_node", 12.34)
    display.done(2, "train_node", 20.0, ok=False)
    text = tty.getvalue()
    status = [part for part in text.split("\r\x1b[K") if part.startswith("[2/3] train_node  ")]
    assert status == [
        "[2/3] train_node   12.3 s  train: model…"
    ]  # 40 columns, the path left out whole
    assert (
        "train_node: train: model written to /tmp/runs/fashion-retrain-0123456789/train\n" in text
    )
    assert text.endswith("\r\x1b[K[2/3] train_node FAILED in 20.0 s\n")


@pytest.mark.parametrize("tty", [False, True])
def test_disabled_display_shows_nothing(tmp_path, tty):
    (tmp_path / "log").write_text("a line\n")
    stream = _Terminal() if tty else io.StringIO()
    display = StepDisplay(3, enabled=False, stream=stream)
    display.start(1, "x", tmp_path / "log")
    display.tick(1, "x", 1.0)
    display.done(1, "x", 1.0, ok=True)
    assert stream.getvalue() == ""
