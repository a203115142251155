"""Progress: plain lines in a log, with how far, how fast and how long left; nothing from other processes."""

import pytest

import aeclust.runtime.progress
from aeclust.runtime.progress import Progress, progress


@pytest.fixture()
def clock(monkeypatch):
    """A clock the test moves by hand."""
    now = [0.0]
    monkeypatch.setattr(aeclust.runtime.progress.time, "perf_counter", lambda: now[0])
    return now


def test_a_log_gets_a_line_each_interval_with_the_rate_and_the_time_left(clock, capsys, monkeypatch):
    monkeypatch.setattr(aeclust.runtime.progress, "LOG_INTERVAL", 25.0)
    shown = Progress(100, "refine", "batch")  # standard error is captured, not a terminal: plain lines
    for _ in range(6):
        clock[0] += 10.0
        shown.update(10)
    lines = capsys.readouterr().err.splitlines()
    assert lines == [  # at 30 s and at 60 s, not at every update
        "aeclust: refine: 30 of 100 batches (30 %), 1.0 batches/s, about 1m10s left",
        "aeclust: refine: 60 of 100 batches (60 %), 1.0 batches/s, about 40s left",
    ]


def test_a_short_stage_prints_nothing_and_a_disabled_one_never(clock, capsys):
    assert list(progress(range(5), 5, "encoding", "image")) == [0, 1, 2, 3, 4]
    shown = Progress(10, "encoding", "image", enabled=False)
    clock[0] += 1000.0
    shown.update(10)
    assert capsys.readouterr().err == ""
    assert "10 of 10 images (100 %), 0.0 images/s" in shown.line()


def test_an_unknown_total_counts_without_a_time_left(clock):
    shown = Progress(None, "decoding pets", "image")
    clock[0] += 2.0
    shown.update(42)
    assert shown.line() == "decoding pets: 42 images, 21.0 images/s"
