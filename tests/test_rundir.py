"""aeclust.pipeline.rundir: where each file of a run directory lives, and that every read gives back what was written."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from aeclust.config import RunConfig
from aeclust.encoders.records import EpochRecord
from aeclust.errors import CheckpointError, ConfigError, InputError, RunDirError
from aeclust.pipeline.rundir import ARRAY_NAMES, FORMAT_VERSION, RECLUSTER_COPIES, RECLUSTER_NEEDS, REPORT_NEEDS, RunDir
from aeclust.runtime.io import load_checked  # fmt: skip


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_every_file_has_its_place(tmp_path):
    run_dir = RunDir(tmp_path / "run")
    assert run_dir.path == tmp_path / "run"
    assert run_dir.config == tmp_path / "run" / "config.json"
    assert run_dir.metrics == tmp_path / "run" / "metrics.json"
    assert run_dir.prediction == tmp_path / "run" / "prediction.csv"
    assert run_dir.history == tmp_path / "run" / "history.csv"
    assert run_dir.checkpoints == tmp_path / "run" / "checkpoints"
    assert run_dir.last_checkpoint == tmp_path / "run" / "checkpoints" / "last.pt"
    assert run_dir.refine_checkpoint == tmp_path / "run" / "checkpoints" / "refine.pt"
    assert run_dir.centres == tmp_path / "run" / "centres.npz"
    assert run_dir.epoch_checkpoint(3) == tmp_path / "run" / "checkpoints" / "epoch_003.pt"
    assert run_dir.epoch_checkpoint(120) == tmp_path / "run" / "checkpoints" / "epoch_120.pt"
    assert [run_dir.array(name).relative_to(run_dir.path).as_posix() for name in ARRAY_NAMES] == [
        "arrays/train_latents.npy", "arrays/val_latents.npy", "arrays/train_embedding.npy",
        "arrays/train_clusters.npy", "arrays/val_embedding.npy", "arrays/val_clusters.npy", "arrays/confidence.npy",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="unknown run array 'train_latent'; expected one of: train_latents, "):
        run_dir.array("train_latent")


def test_the_named_sets_of_a_finished_run():
    assert REPORT_NEEDS == (
        "config.json", "metrics.json", "history.csv", "checkpoints/last.pt",
        "arrays/train_embedding.npy", "arrays/train_clusters.npy",
    )  # fmt: skip
    assert RECLUSTER_NEEDS == ("config.json", "metrics.json", "checkpoints/last.pt")
    assert RECLUSTER_COPIES == ("history.csv", "checkpoints/last.pt")


def test_config_and_metrics_round_trip(tmp_path):
    run_dir = RunDir(tmp_path)
    config = RunConfig(model_name="mine", seed=7)
    config.cluster.k, config.model.widths = 5, (8, 16)
    run_dir.write_config(config)
    assert run_dir.read_config() == config
    assert json.loads(run_dir.config.read_text())["format_version"] == FORMAT_VERSION

    metrics = {"k": 5, "train_accuracy": 0.75, "timings": {"total_seconds": 1.5}, "class_names": None}
    run_dir.write_metrics(metrics)
    assert run_dir.read_metrics() == metrics
    assert run_dir.metrics.read_text() == json.dumps(metrics, indent=2) + "\n"  # the file format is unchanged


def test_unreadable_metrics_are_refused_in_one_line(tmp_path):
    run_dir = RunDir(tmp_path)
    with pytest.raises(RunDirError) as error:
        run_dir.read_metrics()
    assert one_line(error).startswith(f"{run_dir.metrics}: expected aeclust's metrics (JSON), could not read it (")
    run_dir.metrics.write_text("[1, 2]")
    with pytest.raises(RunDirError) as error:
        run_dir.read_metrics()
    assert one_line(error) == f"{run_dir.metrics}: expected aeclust's metrics (a JSON object), found a list"


def test_history_round_trips_in_its_csv_format(tmp_path):
    run_dir = RunDir(tmp_path)
    records = [
        EpochRecord(1, 0.123456789, 0.5, math.nan, 0.625, 12.0, 0.25),
        EpochRecord(2, 0.1, 0.25, 0.75, math.nan, 11.5, 0.5),
    ]
    run_dir.write_history(records)
    assert run_dir.history.read_text().splitlines() == [
        "epoch,train_loss,train_mse,rotation_accuracy,val_accuracy,train_seconds,eval_seconds",
        "1,0.123457,0.5,nan,0.625,12,0.25",
        "2,0.1,0.25,0.75,nan,11.5,0.5",
    ]
    back = run_dir.read_history()
    assert [r.epoch for r in back] == [1, 2] and all(isinstance(r.epoch, int) for r in back)
    assert back[0].train_loss == pytest.approx(0.123457) and math.isnan(back[0].rotation_accuracy)
    assert back[1] == EpochRecord(2, 0.1, 0.25, 0.75, back[1].val_accuracy, 11.5, 0.5)
    assert math.isnan(back[1].val_accuracy)

    run_dir.history.write_text("epoch,train_loss\n1,not a number\n")
    with pytest.raises(RunDirError) as error:
        run_dir.read_history()
    assert one_line(error).startswith(f"{run_dir.history}: expected aeclust's per-epoch history, could not read it (")


def test_predictions_round_trip_and_are_checked_against_the_clusters(tmp_path):
    run_dir = RunDir(tmp_path)
    assert run_dir.read_prediction_ids(3) is None  # runs of earlier releases have no prediction.csv
    run_dir.write_prediction(["cats/a.png", "dogs/b, c.png", "2"], np.array([1, 0, 1]))
    assert run_dir.prediction.read_text() == 'id,label\ncats/a.png,1\n"dogs/b, c.png",0\n2,1\n'
    assert run_dir.read_prediction_ids(3) == ["cats/a.png", "dogs/b, c.png", "2"]
    with pytest.raises(RunDirError) as error:
        run_dir.read_prediction_ids(4)
    assert one_line(error) == (
        f"{run_dir.prediction}: expected a header id,label and 4 rows of two cells, one per clustered train image; "
        "found 3 rows"
    )


def test_arrays_round_trip_and_a_missing_one_is_named(tmp_path):
    run_dir = RunDir(tmp_path)
    latents = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)
    clusters = np.array([0, 2, 1], dtype=np.int64)
    run_dir.save_array("train_latents", latents)
    run_dir.save_array("train_clusters", clusters)
    loaded = run_dir.load_array("train_latents")
    assert loaded.dtype == np.float32 and np.array_equal(loaded, latents)
    assert np.array_equal(np.load(tmp_path / "arrays" / "train_clusters.npy"), clusters)
    with pytest.raises(InputError) as error:
        run_dir.load_array("val_embedding")
    assert one_line(error) == f"{run_dir.array('val_embedding')}: val embedding not found"


def test_memory_mapped_arrays_are_copied_file_to_file_and_one_of_the_same_file_is_kept(tmp_path):
    source, target = RunDir(tmp_path / "source"), RunDir(tmp_path / "target")
    latents = np.arange(48, dtype=np.float32).reshape(4, 3, 2, 2)
    source.save_array("train_latents", latents)
    mapped = source.load_array("train_latents", mmap=True)
    assert isinstance(mapped, np.memmap)
    target.save_array("train_latents", mapped)
    assert target.array("train_latents").read_bytes() == source.array("train_latents").read_bytes()
    source.save_array("train_latents", mapped)  # its own file: nothing to write, and nothing lost
    assert np.array_equal(np.load(source.array("train_latents")), latents)
    target.save_array("val_latents", mapped[1:3])  # a slice maps the same file but is not all of it
    assert np.array_equal(target.load_array("val_latents"), latents[1:3])


def test_a_failed_write_leaves_the_earlier_file_whole_and_no_temporary(tmp_path):
    run_dir = RunDir(tmp_path)
    run_dir.save_array("train_clusters", np.array([0, 1]))
    with pytest.raises(ValueError):  # numpy refuses to pickle an object array midway through the write
        run_dir.save_array("train_clusters", np.array([object()], dtype=object))
    assert np.array_equal(run_dir.load_array("train_clusters"), [0, 1])
    assert sorted(p.name for p in run_dir.array("train_clusters").parent.iterdir()) == ["train_clusters.npy"]


def test_create_new_never_writes_into_an_existing_directory(tmp_path, capsys):
    first = RunDir.create_new(tmp_path / "out", "improved")
    assert first.path == tmp_path / "out" and first.path.is_dir() and not any(first.path.iterdir())
    (first.path / "config.json").write_text("{}")
    second = RunDir.create_new(tmp_path / "out", "improved")
    third = RunDir.create_new(tmp_path / "out", "improved")
    assert (second.path, third.path) == (tmp_path / "out-2", tmp_path / "out-3")
    assert second.path.is_dir() and third.path.is_dir()
    assert (first.path / "config.json").read_text() == "{}"
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"{tmp_path / 'out'} exists already; writing this run to {tmp_path / 'out-3'} instead "
        "(--resume continues it, --force replaces it)"
    )
    (tmp_path / "taken").write_text("a file, not a run")
    assert RunDir.create_new(tmp_path / "taken", "improved").path == tmp_path / "taken-2"


def test_create_new_without_out_names_the_run_by_model_and_time(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    created = RunDir.create_new(None, "contrastive")
    assert created.path.parent == Path("runs")
    assert re.fullmatch(r"contrastive-\d{8}-\d{6}(-\d+)?", created.path.name) and created.path.is_dir()


def test_check_finished_names_what_is_missing(tmp_path):
    run_dir = RunDir(tmp_path / "run")
    with pytest.raises(RunDirError) as error:
        run_dir.check_finished(RECLUSTER_NEEDS)
    assert one_line(error) == f"{run_dir.path}: expected a finished aeclust run directory, found nothing there"
    (tmp_path / "file").write_text("")
    with pytest.raises(RunDirError) as error:
        RunDir(tmp_path / "file").check_finished(RECLUSTER_NEEDS)
    assert one_line(error) == f"{tmp_path / 'file'}: expected a finished aeclust run directory, found a file"

    run_dir.path.mkdir()
    run_dir.write_metrics({})
    with pytest.raises(RunDirError) as error:
        run_dir.check_finished(REPORT_NEEDS)
    assert one_line(error) == (
        f"{run_dir.path}: expected a finished aeclust run directory; missing config.json, history.csv, "
        "checkpoints/last.pt, arrays/train_embedding.npy, arrays/train_clusters.npy"
    )
    run_dir.write_config(RunConfig())
    run_dir.last_checkpoint.parent.mkdir()
    run_dir.last_checkpoint.write_bytes(b"")
    assert run_dir.check_finished(RECLUSTER_NEEDS) is run_dir


def test_copy_from_takes_over_the_files_the_source_holds(tmp_path):
    source, target = RunDir(tmp_path / "source"), RunDir.create_new(tmp_path / "target", "improved")
    source.write_history([EpochRecord(1, 0.5, 0.25, 0.5, 0.5, 1.0, 1.0)])
    os.utime(source.history, (1_000_000_000, 1_000_000_000))
    target.copy_from(source, RECLUSTER_COPIES)  # the source has no checkpoint: only the history comes over
    assert target.history.read_bytes() == source.history.read_bytes()
    assert target.history.stat().st_mtime == 1_000_000_000
    assert not target.checkpoints.exists()


def test_a_config_of_another_format_version_is_refused_in_one_line(tmp_path):
    run_dir = RunDir(tmp_path)
    run_dir.write_config(RunConfig())
    values = json.loads(run_dir.config.read_text()) | {"format_version": FORMAT_VERSION + 1}
    run_dir.config.write_text(json.dumps(values))
    with pytest.raises(ConfigError) as error:
        run_dir.read_config()
    assert one_line(error) == (
        f"{run_dir.config}: configuration format version {FORMAT_VERSION + 1}; expected {FORMAT_VERSION}"
    )


def test_a_checkpoint_of_another_format_version_or_kind_is_refused_in_one_line(tmp_path):
    run_dir = RunDir(tmp_path)
    path = run_dir.last_checkpoint
    path.parent.mkdir()
    torch.save({"kind": "aeclust-checkpoint", "format_version": FORMAT_VERSION, "epoch": 4}, path)
    assert load_checked(path, "aeclust-checkpoint", "an aeclust checkpoint")["epoch"] == 4
    torch.save({"kind": "aeclust-checkpoint", "format_version": 999}, path)
    with pytest.raises(CheckpointError) as error:
        load_checked(path, "aeclust-checkpoint", "an aeclust checkpoint")
    assert one_line(error) == f"{path}: checkpoint format version 999; this aeclust reads version {FORMAT_VERSION}"
    with pytest.raises(CheckpointError) as error:
        load_checked(path, "aeclust-refine-checkpoint", "an aeclust refinement checkpoint")
    assert one_line(error) == f"{path}: expected an aeclust refinement checkpoint, found another kind of file"
    path.write_bytes(b"junk")
    with pytest.raises(CheckpointError) as error:
        load_checked(path, "aeclust-checkpoint", "an aeclust checkpoint")
    assert one_line(error).startswith(f"{path}: expected an aeclust checkpoint, could not read it (")


def test_a_held_directory_is_refused_to_a_second_holder_until_let_go(tmp_path):
    run_dir = RunDir(tmp_path)
    with run_dir.held():
        with pytest.raises(RunDirError) as error:
            with run_dir.held():  # another open description of the directory: as another process's would be
                pass
        assert one_line(error).startswith(f"{tmp_path}: another aeclust process is writing this run directory")
    with run_dir.held():  # let go: held again at once
        pass


def test_readers_share_a_run_directory_but_not_with_its_writer(tmp_path):
    run_dir = RunDir(tmp_path)
    with run_dir.read_held(), run_dir.read_held():  # a report and a recluster of the same run at once
        with pytest.raises(RunDirError) as error:
            with run_dir.held():  # a resume while they read
                pass
        assert one_line(error) == (
            f"{tmp_path}: another aeclust process is writing this run directory, or reading it (a run or resume, or "
            "a recluster, report or predict of it); let it finish or stop it, then resume"
        )
    with run_dir.held():
        with pytest.raises(RunDirError) as error:
            with run_dir.read_held():  # a report of a run still training
                pass
        assert one_line(error).endswith("let it finish, then read it")
    with run_dir.read_held():  # both let go
        pass


def test_a_file_system_without_locks_leaves_the_run_unguarded_and_other_errors_are_raised(tmp_path, monkeypatch):
    import errno

    import aeclust.pipeline.rundir

    def no_locks_here(descriptor, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(aeclust.pipeline.rundir.fcntl, "flock", no_locks_here)
    with RunDir(tmp_path).held() as held:
        assert held.path == tmp_path

    def broken(descriptor, operation):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(aeclust.pipeline.rundir.fcntl, "flock", broken)
    with pytest.raises(OSError, match="Input/output error"):
        with RunDir(tmp_path).held():
            pass
