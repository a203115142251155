"""bench/accuracy.py reuses finished runs, resumes stopped ones, and never mixes runs of other settings."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config

from aeclust.config import ClusterConfig
from aeclust.data import load_images
from aeclust.pipeline import run

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load_bench(script: str):
    """A bench script as a module: they live outside the package, so they are loaded by path."""
    spec = importlib.util.spec_from_file_location(f"bench_{Path(script).stem}", BENCH / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def accuracy(monkeypatch):
    module = load_bench("accuracy.py")

    def tiny_preset(name):
        config = tiny_config(epochs=1)
        config.model_name = name
        return config

    monkeypatch.setattr(module, "preset", tiny_preset)
    return module


def test_finished_runs_are_read_back_and_stopped_ones_resumed(accuracy, small_set, tmp_path, monkeypatch):
    first = accuracy.run_or_read("tiny", None, 0, None, tmp_path, small_set)
    run_dir = tmp_path / "tiny" / "seed0"
    calls = []
    real_run = accuracy.run
    monkeypatch.setattr(accuracy, "run", lambda *a, **kw: calls.append(kw) or real_run(*a, **kw))
    assert accuracy.run_or_read("tiny", None, 0, None, tmp_path, small_set) == first and calls == []

    (run_dir / "metrics.json").unlink()  # as if stopped after its last checkpoint
    again = accuracy.run_or_read("tiny", None, 0, None, tmp_path, small_set)
    assert calls[-1].get("resume") is True
    assert again["val_accuracy"] == first["val_accuracy"]


def test_a_run_of_other_settings_is_never_read_as_this_one(accuracy, small_set, tmp_path, monkeypatch):
    accuracy.run_or_read("tiny", None, 0, None, tmp_path, small_set)
    other = accuracy.preset("tiny")
    other.train.lr = 0.5
    monkeypatch.setattr(accuracy, "preset", lambda name: other)
    with pytest.raises(SystemExit, match="holds a run with other settings"):
        accuracy.run_or_read("tiny", None, 0, None, tmp_path, small_set)
    accuracy.run_or_read("tiny", None, 0, 2, tmp_path, small_set)  # overridden epochs live apart
    assert (tmp_path / "tiny-2ep" / "seed0" / "metrics.json").is_file()


def test_runs_with_changed_settings_live_apart_and_carry_the_change(accuracy, small_set, tmp_path):
    accuracy.run_or_read("tiny", None, 0, None, tmp_path, small_set, ["train.lr=0.01"])
    changed = tmp_path / "tiny+train.lr=0.01" / "seed0"
    assert accuracy.RunConfig.load(changed / "config.json").train.lr == 0.01
    assert not (tmp_path / "tiny").exists()
    # the variant is read back as itself, and never stands in for the model's own settings
    assert accuracy.run_or_read("tiny", None, 0, None, tmp_path, small_set, ["train.lr=0.01"]) == json.loads(
        (changed / "metrics.json").read_text()
    )
    accuracy.run_or_read("tiny", None, 0, None, tmp_path, small_set)
    assert accuracy.RunConfig.load(tmp_path / "tiny" / "seed0" / "config.json").train.lr != 0.01


@pytest.fixture()
def ceiling():
    return load_bench("ceiling.py")


def test_an_oracle_merge_of_separate_groups_is_exact_and_of_one_cluster_is_the_majority(ceiling):
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 1], 40)
    features = rng.normal(size=(120, 4)) * 0.05 + np.eye(4)[np.repeat([0, 1, 2], 40)]  # three tight blobs
    assert ceiling.oracle_merge_accuracy(features, labels, 3, seed=0) == 1.0
    assert ceiling.oracle_merge_accuracy(features, labels, 1, seed=0) == pytest.approx(80 / 120)


def test_the_ceiling_is_measured_on_the_features_a_finished_run_clustered(ceiling, small_hw9_dir, tmp_path):
    config = tiny_config(epochs=1)
    config.data = str(small_hw9_dir)
    config.cluster = ClusterConfig(latent="pool", scaling="l2", reducer="none", embedder="none")
    run(config, tmp_path / "run", images=load_images(config.data))
    result = ceiling.ceiling(tmp_path / "run", overcluster=[240], folds=3)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert result["kmeans"] == pytest.approx(metrics["train_accuracy"])  # the run's own clustering, redone
    assert 0.5 <= result["probe"] <= 1
    assert result["merged"] == [1.0]  # one image per cluster: every cluster's majority is its own label
    with pytest.raises(SystemExit, match="expected a finished run holding arrays/train_latents.npy"):
        ceiling.ceiling(tmp_path / "nothing", overcluster=[5], folds=3)


@pytest.fixture()
def speed(monkeypatch):
    module = load_bench("speed.py")
    monkeypatch.setattr(module, "run", lambda *a, **kw: pytest.fail("--reuse must not start a run here"))
    return module


def test_speed_reuses_a_finished_run_only_while_its_preset_is_unchanged(speed, tmp_path, monkeypatch):
    run_dir = tmp_path / "contrastive"
    run_dir.mkdir()
    speed.preset("contrastive").save(run_dir / "config.json")
    (run_dir / "metrics.json").write_text(json.dumps({"timings": {"total_seconds": 1.0}}))
    assert speed.timed_run("contrastive", tmp_path, reuse=True) == ({"timings": {"total_seconds": 1.0}}, run_dir)

    changed = speed.preset("contrastive")
    changed.train.epochs += 1  # as when a release changes the default preset
    monkeypatch.setattr(speed, "preset", lambda name: changed)
    with pytest.raises(SystemExit, match="holds a run with other settings than contrastive has now"):
        speed.timed_run("contrastive", tmp_path, reuse=True)
