"""Progress bars: on where someone watches (a terminal), off in logs (CI), forced either way
by DEEPVS30_PROGRESS."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from deepvs30 import progress

REPO = Path(__file__).resolve().parents[1]


class _Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_bars_follow_the_terminal_and_the_override(monkeypatch):
    monkeypatch.delenv(progress.PROGRESS_ENV, raising=False)
    monkeypatch.setattr(sys, "stderr", _Stream(tty=True))
    assert progress.enabled()
    monkeypatch.setattr(sys, "stderr", _Stream(tty=False))
    assert not progress.enabled()
    monkeypatch.setenv(progress.PROGRESS_ENV, "1")
    assert progress.enabled()
    monkeypatch.setattr(sys, "stderr", _Stream(tty=True))
    monkeypatch.setenv(progress.PROGRESS_ENV, "0")
    assert not progress.enabled()


def test_a_shown_bar_writes_counts_and_a_hidden_one_nothing(monkeypatch):
    stream = _Stream(tty=True)
    monkeypatch.delenv(progress.PROGRESS_ENV, raising=False)
    monkeypatch.setattr(sys, "stderr", stream)
    assert list(progress.bar(range(7), desc="prepare", unit="rec", file=stream)) == list(range(7))
    assert "prepare" in stream.getvalue() and "7/7" in stream.getvalue()
    quiet = _Stream(tty=True)
    bar = progress.bar(desc="ingest", unit="rec", show=False, file=quiet)
    bar.update(3)
    bar.close()
    assert quiet.getvalue() == ""


def test_no_bar_in_a_log(tiny_dataset, tmp_path):
    """`deepvs30 prepare` with stderr to a file (as in CI): its log has no bar."""
    env = {k: v for k, v in __import__("os").environ.items() if k != progress.PROGRESS_ENV}
    done = subprocess.run(
        [sys.executable, "-m", "deepvs30", "--params", str(REPO / "params.yaml"), "prepare",
         "--data", str(tiny_dataset), "--out", str(tmp_path / "prepared")],
        capture_output=True, text=True, env=env, cwd=tmp_path.parent,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "prepare:" not in done.stderr and "rec/s" not in done.stderr
