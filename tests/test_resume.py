"""Nothing lost: a run killed with SIGKILL mid-training resumes to the very result of an uninterrupted one,
and the same seed gives the same prediction.csv, from the command line."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_cli import TINY_EPOCHS, tiny_preset

from aeclust.cli import main
from aeclust.data import ImageSet, export_hw9
from aeclust.pipeline.rundir import RunDir
from aeclust.presets import MODELS

TINY_CLI = Path(__file__).parent / "tiny_cli.py"
# k-means straight on 10 PCA components: t-SNE would double the time, and its own determinism is tested in-process.
OPTIONS = ["--model", "tiny", "--seed", "7", "--threads", "1"]
OPTIONS += ["--reducer", "pca", "--components", "10", "--embedder", "none"]
TIMEOUT = 600  # seconds; generous, because the machine may be busy with other work


@pytest.fixture(scope="module")
def hw9_300(embedded, tmp_path_factory) -> Path:
    """300 train and 100 val images of the embedded set, in HW9 layout."""
    directory = tmp_path_factory.mktemp("hw9_300")
    export_hw9(
        ImageSet(
            "hw9_300", embedded.train_images[:300], embedded.val_images[:100], embedded.val_labels[:100],
            embedded.train_labels[:300],
        ),
        directory,
    )  # fmt: skip
    return directory


class BackgroundRun:
    """An uninterrupted ``aeclust run`` in its own process, started now and waited for when needed."""

    def __init__(self, args: list[str], out: Path) -> None:
        self.out = out
        command = [sys.executable, str(TINY_CLI), *args, "--out", str(out)]
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)

    def result(self) -> Path:
        _, stderr = self.process.communicate(timeout=TIMEOUT)
        assert self.process.returncode == 0, stderr
        return self.out


@pytest.fixture(scope="module")
def straight(hw9_300, tmp_path_factory):
    """The reference: trained start to finish. It runs beside the tests that need it."""
    run = BackgroundRun(["run", "--data", str(hw9_300), *OPTIONS], tmp_path_factory.mktemp("straight") / "run")
    yield run
    if run.process.poll() is None:
        run.process.kill()
        run.process.wait()


def epochs_in(history: Path) -> int:
    try:
        return max(0, len(history.read_text().splitlines()) - 1)
    except FileNotFoundError:
        return 0


def metrics_without_timings(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics.pop("timings")
    return metrics


def history_values(run_dir: Path) -> list[dict]:
    """history.csv without its wall-clock columns."""
    with open(run_dir / "history.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if not k.endswith("_seconds")} for row in csv.DictReader(handle)]


def test_a_killed_run_resumes_to_the_result_of_an_uninterrupted_one(straight, hw9_300, tmp_path):
    out = tmp_path / "killed"
    killed = subprocess.Popen(
        [sys.executable, str(TINY_CLI), "run", "--data", str(hw9_300), *OPTIONS, "--out", str(out)],
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + TIMEOUT
    while epochs_in(out / "history.csv") < 1:
        assert killed.poll() is None, "the run ended before it finished an epoch"
        assert time.monotonic() < deadline, "no epoch finished in time"
        time.sleep(0.02)
    killed.kill()  # SIGKILL: no handler runs, no file is closed cleanly
    killed.wait()
    done = epochs_in(out / "history.csv")
    assert 1 <= done < TINY_EPOCHS and not (out / "metrics.json").exists(), f"killed after {done} epochs"

    resumed = subprocess.run(
        [sys.executable, "-m", "aeclust", "run", "--resume", str(out)], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr

    reference = straight.result()
    assert (out / "prediction.csv").read_bytes() == (reference / "prediction.csv").read_bytes()
    assert metrics_without_timings(out) == metrics_without_timings(reference)
    assert history_values(out) == history_values(reference)
    assert len(history_values(out)) == TINY_EPOCHS


def test_the_same_seed_gives_the_same_prediction_from_the_cli(straight, hw9_300, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(MODELS, "tiny", tiny_preset)
    assert main(["run", "--data", str(hw9_300), *OPTIONS, "--out", str(tmp_path / "again")]) == 0
    reference = straight.result()
    assert (tmp_path / "again" / "prediction.csv").read_bytes() == (reference / "prediction.csv").read_bytes()
    assert metrics_without_timings(tmp_path / "again") == metrics_without_timings(reference)


def test_a_run_directory_another_process_writes_is_neither_resumed_nor_replaced(hw9_300, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(MODELS, "tiny", tiny_preset)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "config.json").write_text("{}")  # never read: the directory is refused first
    with RunDir(busy).held():  # as a run still going in another process holds it
        assert main(["run", "--resume", str(busy)]) == 2
        assert main(["run", "--data", str(hw9_300), *OPTIONS, "--out", str(busy), "--force"]) == 2
    errors = capsys.readouterr().err
    assert errors.count(f"{busy}: another aeclust process is writing this run directory") == 2, errors
    assert [p.name for p in busy.iterdir()] == ["config.json"] and (busy / "config.json").read_text() == "{}"
