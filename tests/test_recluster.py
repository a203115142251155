"""``--k auto`` through a whole run, and ``recluster``: a finished run cut into another k without training again."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config

from aeclust.cli import main
from aeclust.config import AUTO_K, RunConfig
from aeclust.pipeline.run import recluster, run
from aeclust.pipeline.rundir import RunDir
from aeclust.report.runs import load_runs


def tiny_run_config(data: Path, k: int = 2):
    config = tiny_config(epochs=1)
    config.data, config.cluster.k = str(data), k
    config.cluster.embedder = "none"  # PCA features straight to k-means: seconds, not t-SNE's tens
    config.refine.epochs = 1
    return config


@pytest.fixture(scope="module")
def finished(tmp_path_factory, small_set, small_hw9_dir) -> Path:
    """A finished tiny run with k = 2, refined for one epoch, its data on disk where config.json says."""
    return run(tiny_run_config(small_hw9_dir), tmp_path_factory.mktemp("runs") / "source", images=small_set).run_dir


def file_hashes(directory: Path) -> dict[str, str]:
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def test_a_run_with_k_auto_records_its_choice(small_set, small_hw9_dir, tmp_path):
    config = tiny_run_config(small_hw9_dir, k=AUTO_K)
    config.cluster.k_min, config.cluster.k_max = 2, 5
    result = run(config, tmp_path / "auto", images=small_set)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    selection = metrics["k_selection"]
    assert set(selection) == {"criterion", "k_range", "scores", "chosen", "reason"}
    assert selection["criterion"] == "silhouette" and selection["k_range"] == [2, 5]
    assert list(selection["scores"]) == ["2", "3", "4", "5"]
    k = metrics["k"]
    assert selection["chosen"] == k and selection["scores"][str(k)] == max(selection["scores"].values())
    assert len(metrics["cluster_sizes"]) == k and sum(metrics["cluster_sizes"]) == 240
    assert np.load(result.run_dir / "arrays" / "val_clusters.npy").max() < k  # val is cut into the train's k
    assert RunConfig.load(result.run_dir / "config.json").cluster.k == AUTO_K  # what was asked, not what was found
    assert load_runs([result.run_dir])[0].k_selection.chosen == k


def test_recluster_makes_a_new_run_with_the_new_k_and_leaves_the_source_alone(finished, small_set, tmp_path):
    before = file_hashes(finished)
    result = recluster(finished, 3, tmp_path / "k3", images=small_set)
    assert file_hashes(finished) == before
    out = result.run_dir
    assert out == tmp_path / "k3"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["k"] == 3 and metrics["reclustered_from"] == str(finished)
    assert sorted(np.unique(np.load(out / "arrays" / "train_clusters.npy"))) == [0, 1, 2]
    assert RunConfig.load(out / "config.json").cluster.k == 3
    assert (out / "prediction.csv").read_text().count("\n") == 241
    assert (out / "history.csv").read_bytes() == (finished / "history.csv").read_bytes()
    # the autoencoder was not trained again: the latents are the source's own
    assert np.array_equal(np.load(out / "arrays" / "train_latents.npy"), np.load(finished / "arrays" / "train_latents.npy"))
    again = recluster(finished, 3, tmp_path / "k3", images=small_set)
    assert again.run_dir == tmp_path / "k3-2"  # never over the first
    assert (again.run_dir / "prediction.csv").read_bytes() == (out / "prediction.csv").read_bytes()  # same seed


def test_recluster_takes_other_cluster_and_refine_settings(finished, small_set, tmp_path):
    result = recluster(
        finished, 3, tmp_path / "merged", images=small_set,
        settings=["cluster.clusterer=kmeans-merge", "refine.balance=prior"],
    )  # fmt: skip
    saved = RunConfig.load(result.run_dir / "config.json")
    assert (saved.cluster.clusterer, saved.refine.balance, saved.cluster.k) == ("kmeans-merge", "prior", 3)
    assert RunConfig.load(finished / "config.json").cluster.clusterer == "kmeans"


def test_the_auto_clusterer_records_its_choice_and_refines_with_the_balance_it_implies(finished, small_set, tmp_path):
    result = recluster(
        finished, 3, tmp_path / "auto", images=small_set, settings=["cluster.clusterer=auto", "refine.balance=auto"]
    )
    choice = result.metrics["clusterer_choice"]
    assert choice["chosen"] in ("kmeans", "kmeans-merge")
    assert set(choice["neighbour_agreement"]) == {"kmeans", "kmeans-merge"}
    assert result.metrics["refine_balance"] == ("prior" if choice["chosen"] == "kmeans-merge" else "uniform")
    saved = RunConfig.load(result.run_dir / "config.json")
    assert (saved.cluster.clusterer, saved.refine.balance) == ("auto", "auto")  # what was asked, not what was chosen
    assert f"{choice['chosen']} (auto)" in load_runs([result.run_dir])[0].clusterer


def test_recluster_encodes_again_when_the_latents_are_gone(finished, small_set, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(finished, source)
    shutil.rmtree(source / "arrays")
    result = recluster(source, 3, tmp_path / "k3", images=small_set, refine_epochs=0)
    saved = np.load(finished / "arrays" / "train_latents.npy")
    assert np.allclose(np.load(result.run_dir / "arrays" / "train_latents.npy"), saved, atol=1e-5)
    assert "train_accuracy_before_refine" not in result.metrics


def test_recluster_from_the_command_line_then_report(finished, tmp_path, capsys):
    out = tmp_path / "auto"
    assert main(["recluster", str(finished), "--k", "auto", "--k-range", "2:4", "--out", str(out)]) == 0
    assert f"run directory: {out}" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["k_selection"]["k_range"] == [2, 4] and metrics["k"] == metrics["k_selection"]["chosen"]
    assert main(["report", str(finished), str(out), "--out", str(tmp_path / "report"), "--indices", "0", "1"]) == 0
    assert (tmp_path / "report" / "index.html").is_file()


@pytest.mark.parametrize(
    "make, args, message",
    [
        (lambda d: d, [], "{dir}: expected a finished aeclust run directory; missing config.json, metrics.json, "
         "checkpoints/last.pt"),  # fmt: skip
        (lambda d: d / "nothing", [], "{dir}/nothing: expected a finished aeclust run directory, found nothing there"),
        ("no metrics", [], "{dir}/half: expected a finished aeclust run directory; missing metrics.json"),
        ("finished", ["--k", "0"], "k: expected a whole number of clusters of at least 2, or auto; found '0'"),
        ("finished", ["--k", "3", "--k-range", "2:5"], "--k-range 2:5: expected --k auto beside it, found k=3"),
        ("finished", ["--k", "500"], "{hw9}: k=500 must be between 2 and the number of train images (240)"),
        ("finished", ["--k", "auto", "--k-range", "2:80"], "{hw9}: k range 2:80 does not fit 120 val images; "
         "expected HI at most 60, so that every candidate cluster can hold two"),  # fmt: skip
        ("finished", ["--k", "3", "--set", "train.epochs=5"], "train.epochs=5: recluster changes only cluster.* and "
         "refine.* settings; the model is not trained again (start a new run to change the others)"),  # fmt: skip
        ("finished", ["--k", "3", "--set", "cluster.clusterer=kmeans-mrege"], "unknown clusterer 'kmeans-mrege'; "
         "expected one of: agglomerative, auto, gmm, kmeans, kmeans-merge, whitened-kmeans"),  # fmt: skip
    ],
)
def test_recluster_refuses_bad_input_in_one_line(finished, small_hw9_dir, tmp_path, capsys, make, args, message):
    if make == "finished":
        source = finished
    elif make == "no metrics":
        source = tmp_path / "half"
        shutil.copytree(finished, source)
        (source / "metrics.json").unlink()
    else:
        source = make(tmp_path)
    out = tmp_path / "out"
    assert main(["recluster", str(source), *(args or ["--k", "3"]), "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert error == "aeclust: error: " + message.replace("{dir}", str(tmp_path)).replace("{hw9}", str(small_hw9_dir))
    assert not out.exists()


@pytest.mark.parametrize("command", ["recluster", "report", "predict"])
def test_a_run_still_being_written_is_not_read(finished, small_hw9_dir, tmp_path, capsys, command):
    out = tmp_path / "out"
    args = {"recluster": ["--k", "3"], "report": [], "predict": ["--data", str(small_hw9_dir)]}[command]
    with RunDir(finished).held():  # as a resume of it in another process holds it
        assert main([command, str(finished), *args, "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert error == (
        f"aeclust: error: {finished}: another aeclust process is writing this run directory (a run or resume of it); "
        "let it finish, then read it"
    )
    assert not out.exists()
