"""What a local run shows while it runs: the steps' own lines, and a live status line.

Each line a step writes to its stdout (train's ``epoch 3/20  loss ...``, prepare's and score's
one-line results) is echoed as ``<node>: <line>``, so a run whose output goes to a log file, CI
or ``--json`` still shows one line per epoch. On a terminal a status line
``[2/3] train_node  12.4 s  <last line>`` is also kept at the bottom, rewritten in place and cut
to the terminal's width at a word boundary. Everything goes to stderr: stdout stays for results.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

ELLIPSIS = "…"


def fit(line: str, width: int) -> str:
    """``line`` cut to ``width`` characters at a word boundary, marked with an ellipsis.

    A path or a number is never cut in two: a word that does not fit is left out whole.
    """
    if len(line) <= width:
        return line
    cut = line[: max(0, width - len(ELLIPSIS)) + 1]
    head = cut[: cut.rfind(" ")] if " " in cut else ""
    return head.rstrip() + ELLIPSIS if head.strip() else ELLIPSIS[:width]


class LogTail:
    """New complete lines of a growing log file, read from where the last call stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def lines(self, *, final: bool = False) -> list[str]:
        """Lines completed since the last call; ``final`` also returns an unterminated last one.

        A line rewritten with ``\\r`` (a progress bar) counts as its last version.
        """
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError:
            data = b""
        self._offset += len(data)
        data = self._partial + data
        *complete, self._partial = data.split(b"\n")
        if final and self._partial:
            complete.append(self._partial)
            self._partial = b""
        text = (raw.decode(errors="replace").rsplit("\r", 1)[-1].strip() for raw in complete)
        return [line for line in text if line]


@dataclass
class StepDisplay:
    """Start/end lines for each step, its stdout lines as they come, and on a terminal a live
    status line. ``enabled=False`` shows nothing."""

    total: int
    enabled: bool = True
    stream: TextIO = field(default_factory=lambda: sys.stderr)

    def __post_init__(self) -> None:
        self.tty = self.enabled and self.stream.isatty()
        self._last_draw = 0.0
        self._last_line = ""
        self._tail: LogTail | None = None

    def start(self, index: int, name: str, stdout_log: Path) -> None:
        self._tail = LogTail(stdout_log)
        self._last_line = ""
        if self.enabled and not self.tty:
            self._print(f"[{index}/{self.total}] {name} started")

    def tick(self, index: int, name: str, elapsed: float) -> None:
        """Echo the step's new lines; on a terminal, redraw the status line (5 times a second)."""
        self._echo(name)
        now = time.monotonic()
        if not self.tty or now - self._last_draw < 0.2:
            return
        self._last_draw = now
        width = shutil.get_terminal_size((100, 20)).columns - 1
        line = f"[{index}/{self.total}] {name}  {elapsed:5.1f} s  {self._last_line}"
        self.stream.write("\r\x1b[K" + fit(line, width))
        self.stream.flush()

    def done(self, index: int, name: str, elapsed: float, *, ok: bool) -> None:
        self._echo(name, final=True)
        if not self.enabled:
            return
        word = "done" if ok else "FAILED"
        if self.tty:
            self.stream.write("\r\x1b[K")
        self._print(f"[{index}/{self.total}] {name} {word} in {elapsed:.1f} s")

    def _echo(self, name: str, *, final: bool = False) -> None:
        if self._tail is None:
            return
        for line in self._tail.lines(final=final):
            self._last_line = line
            if self.enabled:
                if self.tty:
                    self.stream.write("\r\x1b[K")
                self._print(f"{name}: {line}")

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)
