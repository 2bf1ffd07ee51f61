"""The demo's output: frames redrawn in place on a terminal, a closed pipe noticed once."""

from __future__ import annotations

import io

import pytest

from gateway.demo import _Output


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_frames_are_redrawn_in_place_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = _Tty()
    monkeypatch.setattr("sys.stdout", screen)
    out = _Output()
    out.line("header")
    out.frame("a\nb")
    out.frame("c\nd")
    out.line("bye")
    # Up two lines (the previous frame) and clear below, then the new frame.
    assert screen.getvalue() == "header\na\nb\n\x1b[2F\x1b[Jc\nd\nbye\n"


def test_piped_frames_follow_each_other(monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = io.StringIO()
    monkeypatch.setattr("sys.stdout", pipe)
    out = _Output()
    out.frame("a")
    out.frame("b")
    assert pipe.getvalue() == "a\nb\n"


def test_a_closed_pipe_is_noticed_and_later_writes_are_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Closed(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError

        def fileno(self) -> int:
            raise OSError("no descriptor")

    monkeypatch.setattr("sys.stdout", Closed())
    out = _Output()
    out.line("x")
    assert out.closed.is_set()
    out.frame("y")  # dropped, no exception


def test_demo_without_its_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """aiomqtt is in the demo extra, not a gateway dependency: say so, start nothing."""
    import importlib.util

    from gateway import demo

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "aiomqtt" else real(name, *a)
    )
    assert demo.run_demo(seconds=0.1) == 2
    assert "pip install 'meshgate[demo]'" in capsys.readouterr().err
