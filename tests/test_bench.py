"""bench/accuracy.py reuses finished runs, resumes stopped ones, and never mixes runs of other settings."""

import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import tiny_config

from aeclust.budget.plan import Speeds
from aeclust.cluster.clusterers import cluster
from aeclust.config import ClusterConfig, RunConfig, with_settings
from aeclust.data import load_images
from aeclust.encoders.records import EpochRecord
from aeclust.errors import RunDirError
from aeclust.metrics import accuracy_of
from aeclust.pipeline.run import run
from aeclust.pipeline.rundir import RunDir
from aeclust.presets import DEFAULT_MODEL, preset

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
    assert RunConfig.load(changed / "config.json").train.lr == 0.01
    assert not (tmp_path / "tiny").exists()
    # the variant is read back as itself, and never stands in for the model's own settings
    assert accuracy.run_or_read("tiny", None, 0, None, tmp_path, small_set, ["train.lr=0.01"]) == json.loads(
        (changed / "metrics.json").read_text()
    )
    accuracy.run_or_read("tiny", None, 0, None, tmp_path, small_set)
    assert RunConfig.load(tmp_path / "tiny" / "seed0" / "config.json").train.lr != 0.01


@pytest.fixture()
def ceiling():
    return load_bench("ceiling.py")


def test_an_oracle_merge_of_separate_groups_is_exact_and_of_one_cluster_is_the_majority(ceiling):
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 1], 40)
    features = rng.normal(size=(120, 4)) * 0.05 + np.eye(4)[np.repeat([0, 1, 2], 40)]  # three tight blobs
    assert ceiling.oracle_merge_accuracy(features, labels, 3, seed=0) == 1.0
    assert ceiling.oracle_merge_accuracy(features, labels, 1, seed=0) == pytest.approx(80 / 120)


def test_a_frozen_head_follows_the_neighbours_across_the_narrow_gap_that_k_means_misses(ceiling):
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 200)
    # Two groups one unit apart across a narrow direction, each spread twelve units wide along another: k-means
    # halves the wide spread; neighbours never cross the gap. (A cut across both strips also keeps most neighbour
    # pairs, so a head from a random start need not find the gap exactly, as on real features: hence no 1.0 here.)
    points = np.stack([rng.uniform(-6, 6, 400), labels - 0.5 + rng.normal(0, 0.05, 400), np.full(400, 20.0)], axis=1)
    features = points / np.linalg.norm(points, axis=1, keepdims=True)
    kmeans = cluster(features, 2, "kmeans", 0)
    neighbours = ceiling.nearest_neighbours(features, ceiling.HEAD_NEIGHBOURS)
    clusters = ceiling.frozen_head_clusters(features, neighbours, 2, seed=0)
    assert accuracy_of(labels, kmeans) < 0.6 and accuracy_of(labels, clusters) > 0.75
    assert (labels[neighbours.numpy()] == labels[:, None]).mean() > 0.98
    again = ceiling.frozen_head_clusters(features, neighbours, 2, seed=0)
    np.testing.assert_array_equal(clusters, again)  # the same seed, the same clusters


def test_the_ceiling_is_measured_on_the_features_a_finished_run_clustered(ceiling, small_hw9_dir, tmp_path):
    config = tiny_config(epochs=1)
    config.data = str(small_hw9_dir)
    config.cluster = ClusterConfig(latent="pool", scaling="l2", reducer="none", embedder="none")
    run(config, tmp_path / "run", images=load_images(config.data))
    result = ceiling.ceiling(tmp_path / "run", overcluster=[240], whitened=[4], folds=3, heads=(0, 1))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert result["kmeans"] == pytest.approx(metrics["train_accuracy"])  # the run's own clustering, redone
    assert result["answer"] == pytest.approx(metrics["train_accuracy"])  # and the one it wrote
    config.cluster.clusterer = "whitened-kmeans"
    whitened = run(config, tmp_path / "whitened", images=load_images(config.data))
    assert result["whitened_kmeans"] == pytest.approx(whitened.metrics["train_accuracy"])  # as such a run cuts
    assert len(result["whitened"]) == 1 and 0.5 <= result["whitened"][0] <= 1
    assert 0.5 <= result["probe"] <= 1
    assert result["merged"] == [1.0]  # one image per cluster: every cluster's majority is its own label
    assert len(result["heads"]) == 2 and all(0.5 <= head["accuracy"] <= 1 for head in result["heads"])
    assert all(0 <= head["agreement"] <= 1 for head in result["heads"])
    with pytest.raises(SystemExit, match="expected a finished run holding arrays/train_latents.npy"):
        ceiling.ceiling(tmp_path / "nothing", overcluster=[5], whitened=[], folds=3)


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


@pytest.fixture()
def kway():
    return load_bench("kway.py")


@pytest.fixture()
def cifar_like_archive(tmp_path):
    """A .tar.gz of 10 class folders of 10 PNGs each, as the CIFAR-10 JPEG export is laid out; each class a colour."""
    import io
    import tarfile

    from PIL import Image

    path = tmp_path / "cifar.tar.gz"
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tar:
        for number, name in enumerate(("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")):
            for i in range(10):
                pixels = np.clip(rng.normal(25 * number, 5, (32, 32, 3)), 0, 255).astype(np.uint8)
                buffer = io.BytesIO()
                Image.fromarray(pixels).save(buffer, format="PNG")
                info = tarfile.TarInfo(f"cifar10-train/{name}/{i:04d}.png")
                info.size = len(buffer.getvalue())
                tar.addfile(info, io.BytesIO(buffer.getvalue()))
    return path


def test_kway_sets_hold_the_chosen_classes_in_the_chosen_shares(kway, cifar_like_archive, tmp_path):
    kway.build_subsets(cifar_like_archive, tmp_path, ["cifar10", "five", "uneven3"], per_class=10)
    ten = load_images(tmp_path / "sets" / "cifar10-10pc")
    assert np.bincount(ten.train_labels).tolist() == [10] * 10
    assert np.bincount(load_images(tmp_path / "sets" / "five-10pc").train_labels).tolist() == [10] * 5
    uneven = load_images(tmp_path / "sets" / "uneven3-10pc")
    assert np.bincount(uneven.train_labels).tolist() == [7, 2, 1]  # cat, ship, frog at 70 / 20 / 10 %
    # each class's colour says which class an image came from: labels follow their images through the shuffle
    assert np.array_equal(np.rint(ten.train_images.mean(axis=(1, 2, 3)) / 25), ten.train_labels)


def test_kway_prints_every_set_with_its_anchors_and_passes_k_to_the_models(
    kway, cifar_like_archive, tmp_path, monkeypatch, capsys
):
    calls = []

    def fake_run(name, data, seed, epochs, out, images, settings):
        calls.append((name, settings))
        return kway.pixel_kmeans(images, len(np.unique(images.train_labels)), seed)

    monkeypatch.setattr(kway, "run_or_read", fake_run)
    monkeypatch.setattr(
        "sys.argv",
        ["kway.py", str(cifar_like_archive), "--sets", "cifar10", "uneven3", "--per-class", "10", "--seeds", "0", "1",
         "--set", "train.epochs=3", "--out", str(tmp_path)],
    )  # fmt: skip
    kway.main()
    out = capsys.readouterr().out
    assert "cifar10: 100 images, k = 10" in out and "uneven3: 10 images, k = 3" in out
    assert "true shares %: 70 / 20 / 10" in out
    assert out.count("| pixels |") == 2 and out.count("| 2 |") == 6  # three methods × two sets, two seeds each
    # colour-coded classes are separable from the pixels alone
    assert "| pixels | 1.000 ± 0.000 | 1.000 ± 0.000 | 1.000 ± 0.000 |" in out
    assert ("baseline", ["cluster.k=10"]) in calls
    assert ("contrastive", ["cluster.k=10", "train.epochs=3"]) in calls and ("contrastive", ["cluster.k=3", "train.epochs=3"]) in calls


def test_clusterers_bench_redoes_the_runs_own_clustering_with_each_clusterer(small_hw9_dir, tmp_path):
    clusterers = load_bench("clusterers.py")
    config = tiny_config(epochs=1)
    config.data = str(small_hw9_dir)
    config.cluster = ClusterConfig(latent="pool", scaling="l2", reducer="none", embedder="none")
    run(config, tmp_path / "run", images=load_images(config.data))
    rows = clusterers.compare(tmp_path / "run", ["kmeans", "kmeans-merge"], seeds=[0])
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    labels = np.load(small_hw9_dir / "trainY.npy")
    larger = max(np.mean(labels), 1 - np.mean(labels))
    assert f"(k = 2, 240 images; true shares {100 * larger:.0f} / {100 * (1 - larger):.0f})" in rows[0]
    kmeans_row = rows[1].split(" | ")
    assert kmeans_row[0] == "| kmeans" and float(kmeans_row[1]) == pytest.approx(metrics["train_accuracy"], abs=5e-4)
    assert rows[2].startswith("| kmeans-merge | ")
    assert 0.5 < float(kmeans_row[5]) <= 1.0  # the share of neighbour pairs k-means keeps in one cluster
    with pytest.raises(SystemExit, match="has no train labels"):
        unlabelled = tmp_path / "unlabelled"
        unlabelled.mkdir()
        np.save(unlabelled / "trainX.npy", np.load(small_hw9_dir / "trainX.npy"))
        config.data = str(unlabelled)
        run(config, tmp_path / "run2", images=load_images(config.data))
        clusterers.compare(tmp_path / "run2", ["kmeans"], seeds=[0])


def test_scale_makes_its_sets_by_flips_and_shifts_and_measures_every_stage(cifar_like_archive, tmp_path, monkeypatch):
    scale = load_bench("scale.py")
    monkeypatch.setattr(scale, "BASE_IMAGES", 100)  # the archive's 100 images stand in for CIFAR-10's 50,000
    source = scale.make_source(cifar_like_archive, tmp_path, 250)
    files = sorted(source.rglob("*.jpg"))
    assert len(files) == 250 and {path.parent.name for path in files} >= {"airplane", "truck"}
    image = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
    assert np.array_equal(scale.variant(image, 0), image)
    assert np.array_equal(scale.variant(image, 1), image[:, ::-1])
    shifted = scale.variant(image, 2)  # one pixel to the right: the last column repeats
    assert np.array_equal(shifted[:, :-1], image[:, 1:]) and np.array_equal(shifted[:, -1], image[:, -1])
    assert scale.make_source(cifar_like_archive, tmp_path, 250) == source  # written once

    rows = scale.stage_rows(source, tmp_path, 250, in_memory=True)
    stages = {(row["stage"], row["path"]) for row in rows}
    wanted = {("store build", "store"), ("whole run", "store"), ("whole run", "in-memory"), ("predict", "store")}
    assert wanted <= stages and ("one refinement epoch", "in-memory") in stages
    assert ("neighbour mining (once, before the one epoch)", "store") in stages
    assert all(row["exit"] == 0 for row in rows)
    assert all(row["memory_gb"] is None or 0.05 < row["memory_gb"] < 8 for row in rows)
    first = json.loads((tmp_path / "runs" / "250-store" / "metrics.json").read_text())
    second = json.loads((tmp_path / "runs" / "250-in-memory" / "metrics.json").read_text())
    assert first["cluster_sizes"] == second["cluster_sizes"]  # the store changes where pixels live, not the result
    assert (tmp_path / "runs" / "250-store" / "prediction.csv").read_bytes() == (
        tmp_path / "runs" / "250-in-memory" / "prediction.csv"
    ).read_bytes()
    assert "| 250 | predict |" in scale.table({"250": rows})


def test_scale_times_a_sampled_epoch_by_its_progress_lines_and_stops_it():
    scale = load_bench("scale.py")
    # A stand-in for a long epoch: a line every 0.2 s, 10 batches apart, of 1,000 batches; it would run for minutes.
    script = (
        "import sys, time\n"
        "for done in range(10, 1001, 10):\n"
        "    line = f'aeclust: epoch 1/1: {done:,} of 1,000 batches (1 %), 50.0 batches/s'\n"
        "    print(line, file=sys.stderr, flush=True)\n"
        "    time.sleep(0.2)\n"
    )
    started = time.perf_counter()
    seconds, memory, batches = scale.sampled_epoch([sys.executable, "-c", script], dict(os.environ), 1.0)
    assert time.perf_counter() - started < 10  # stopped, not waited for
    assert 40 <= batches <= 80
    assert 15 < seconds < 40  # 10 batches per 0.2 s: 20 s, give or take a busy machine
    assert 0 < memory < 1
    with pytest.raises(SystemExit, match="its epoch showed no progress to time"):
        scale.sampled_epoch([sys.executable, "-c", "print('no epoch here')"], dict(os.environ), 1.0)


def test_scale_samples_the_epoch_of_a_large_set_and_runs_the_rest_after_no_training(
    cifar_like_archive, tmp_path, monkeypatch
):
    scale = load_bench("scale.py")
    monkeypatch.setattr(scale, "BASE_IMAGES", 100)
    source = scale.make_source(cifar_like_archive, tmp_path, 120)
    sampled = []
    monkeypatch.setattr(scale, "sampled_epoch", lambda command, env, seconds: sampled.append(command) or (99.0, 1.5, 7))
    rows = scale.stage_rows(source, tmp_path, 120, in_memory=False, full_epoch=False, sample_seconds=5)
    assert "--epochs" in sampled[0] and sampled[0][sampled[0].index("--epochs") + 1] == "1"
    by_stage = {row["stage"]: row for row in rows}
    assert by_stage["one training epoch (its first 7 batches timed)"]["seconds"] == 99.0
    assert by_stage["whole run after no training (--epochs 0)"]["exit"] == 0
    assert "encoding every image (after no training)" in by_stage and "one training epoch" not in by_stage
    assert by_stage["predict"]["exit"] == 0
    assert json.loads((tmp_path / "runs" / "120-store" / "metrics.json").read_text())["epochs"] == 0


def test_speed_times_the_lean_course_run_apart_from_the_course_run(speed, tmp_path):
    label, name, settings, folder = speed.RUNS["lean"]
    config = speed.with_settings(speed.preset(name), settings)
    assert (config.train.mse_every, config.train.val_every, config.train.epochs) == (0, 0, 20)
    run_dir = tmp_path / folder
    run_dir.mkdir()
    speed.preset("baseline").save(run_dir / "config.json")  # the course run's settings in the lean run's place
    (run_dir / "metrics.json").write_text(json.dumps({"timings": {"total_seconds": 1.0}}))
    with pytest.raises(SystemExit, match="holds a run with other settings than baseline has now"):
        speed.timed_run(name, tmp_path, True, settings, folder)


def saved_plan(step_seconds: float) -> dict:
    """budget.json as a plan made before plans chose a clusterer or planned again wrote it."""
    speeds = dict.fromkeys(Speeds.__dataclass_fields__, 1.0) | {"train_step_seconds": step_seconds}
    plan = {"budget_seconds": 300.0, "epochs": 5, "mse_every": 5, "refine_epochs": 2}
    return plan | {"estimate_seconds": {"total": 290.0}, "speeds": speeds}


def test_budget_bench_runs_a_variant_with_its_settings_and_reads_it_back_only_as_that_variant(tmp_path, monkeypatch):
    budget = load_bench("budget.py")
    variant = ["model.momentum=0.99"]
    run_dir = tmp_path / "animals-vs-vehicles" / "20m" / "seed0"
    started = []

    def finish(command, check):  # what `aeclust run` leaves behind, without the hours
        started.append(command)
        run_dir.mkdir(parents=True)
        with_settings(preset(DEFAULT_MODEL), ["train.epochs=50", *variant]).save(run_dir / "config.json")
        (run_dir / "metrics.json").write_text(json.dumps({
            "epochs": 50, "k": 2, "train_accuracy": 0.9, "train_scores": {"nmi": 0.5}, "val_accuracy": 0.9,
            "budget": {"taken_seconds": 1190.0, "estimate_seconds": {"total": 1150.0}},
        }))  # fmt: skip
        (run_dir / "budget.json").write_text(json.dumps(saved_plan(0.5) | {"clusterer": "whitened-kmeans"}))
        RunDir(run_dir).save_array("train_clusters", np.zeros(8500, dtype=np.int64))

    monkeypatch.setattr(budget, "subprocess", SimpleNamespace(run=finish))
    kept, kept_file = {}, tmp_path / "momentum.json"
    record = budget.run_once("animals-vs-vehicles", "20m", 0, run_dir, None, kept, kept_file, variant)
    assert record["train_accuracy"] == 0.9 and record["epochs"] == 50
    command = started[0]
    assert command[command.index("--set") + 1] == "model.momentum=0.99" and "--budget" in command
    elsewhere = tmp_path / "elsewhere" / "animals-vs-vehicles" / "20m" / "seed0"
    assert budget.run_once("animals-vs-vehicles", "20m", 0, elsewhere, None, kept, kept_file, variant) == record
    with pytest.raises(SystemExit, match="holds a run of another recipe than today's default \\(contrastive\\); "):
        budget.run_once("animals-vs-vehicles", "20m", 0, run_dir, None, {}, kept_file)  # not the default's run
    other = "another recipe than today's default \\(contrastive\\) with model.momentum=0.9;"
    with pytest.raises(SystemExit, match=other):
        budget.run_once("animals-vs-vehicles", "20m", 0, run_dir, None, {}, kept_file, ["model.momentum=0.9"])
    assert len(started) == 1


def test_budget_bench_reads_finished_runs_back_and_tabulates_them(tmp_path, monkeypatch):
    budget = load_bench("budget.py")
    # the bench's own name only: matplotlib's first import runs subprocesses of its own
    refuse = SimpleNamespace(run=lambda *a, **kw: pytest.fail("a finished run is read back"))
    monkeypatch.setattr(budget, "subprocess", refuse)
    records, kept, kept_file = [], {}, tmp_path / "kept.json"
    # Seed 0's plan was made once, from the steps it timed; seed 1's again, from its first epoch.
    for seed, accuracy, replanned in ((0, 0.85, {}), (1, 0.87, {"first_epoch_step_seconds": 0.45})):
        run_dir = tmp_path / "animals-vs-vehicles" / "5m" / f"seed{seed}"
        run_dir.mkdir(parents=True)
        (run_dir / "metrics.json").write_text("{}")
        # a plan's settings, not the preset's: the same recipe
        planned = ["train.epochs=5", "train.mse_every=5", "refine.epochs=2"]
        with_settings(preset(DEFAULT_MODEL), planned).save(run_dir / "config.json")
        # a plan from before plans chose a clusterer: these never would
        (run_dir / "budget.json").write_text(json.dumps(saved_plan(0.5) | replanned))
        RunDir(run_dir).save_array("train_clusters", np.zeros(8500, dtype=np.int64))
        record = {"budget_seconds": 300.0, "epochs": 5, "train_accuracy": accuracy, "nmi": 0.4}
        record["wall_seconds"] = 290.0 + 20 * seed
        (run_dir / "bench-budget.json").write_text(json.dumps(record))
        records.append(budget.run_once("animals-vs-vehicles", "5m", seed, run_dir, None, kept, kept_file))
    assert records[1]["train_accuracy"] == 0.87
    table = budget.table({"animals-vs-vehicles": {"5m": records}})
    batches = "0.50 / 0.45"  # seed 1's from its first epoch
    walls = "290 / 310 | 0.97–1.03"  # the range of wall / budget
    assert f"| 5m | 2 | 5/5 | 0.860 ± 0.014 | 0.850 / 0.870 | 0.400 ± 0.000 | {batches} | {walls} |" in table
    budget.figure({"animals-vs-vehicles": {"5m": records, "20m": records}}, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 1000

    # What the runs left in kept, without their run directories (a later session's machine): the same figures.
    assert sorted(kept) == ["animals-vs-vehicles/5m/seed0", "animals-vs-vehicles/5m/seed1"]
    elsewhere = tmp_path / "another-machine" / "animals-vs-vehicles" / "5m"
    for seed, record in enumerate(records):
        read_back = budget.run_once("animals-vs-vehicles", "5m", seed, elsewhere / f"seed{seed}", None, kept, kept_file)
        assert read_back == record

    earlier = tmp_path / "animals-vs-vehicles" / "5m" / "seed0"  # a run of an earlier default is not read back
    with_settings(preset(DEFAULT_MODEL), ["model.rotation_size=0"]).save(earlier / "config.json")
    with pytest.raises(SystemExit, match="seed0: holds a run of another recipe than today's default"):
        budget.run_once("animals-vs-vehicles", "5m", 0, earlier, None, {}, kept_file)
    kept["animals-vs-vehicles/5m/seed0"]["config"]["model"]["rotation_size"] = 0  # nor is one kept
    with pytest.raises(SystemExit, match="kept.json: animals-vs-vehicles/5m/seed0: holds a run of another recipe"):
        budget.run_once("animals-vs-vehicles", "5m", 0, elsewhere / "seed0", None, kept, kept_file)

    # A long run planned before plans chose a clusterer is not today's plan; planned since, it is.
    long = tmp_path / "animals-vs-vehicles" / "60m" / "seed0"
    long.mkdir(parents=True)
    (long / "metrics.json").write_text("{}")
    with_settings(preset(DEFAULT_MODEL), ["train.epochs=100"]).save(long / "config.json")
    RunDir(long).save_array("train_clusters", np.zeros(8500, dtype=np.int64))
    (long / "bench-budget.json").write_text(json.dumps({"budget_seconds": 3600.0, "epochs": 100}))
    (long / "budget.json").write_text(json.dumps({"epochs": 100}))
    with pytest.raises(SystemExit, match="60m/seed0: planned before plans clustered long runs by whitened-kmeans"):
        budget.run_once("animals-vs-vehicles", "60m", 0, long, None, {}, kept_file)
    (long / "budget.json").write_text(json.dumps(saved_plan(0.4) | {"epochs": 100, "clusterer": "whitened-kmeans"}))
    with_settings(preset(DEFAULT_MODEL), ["train.epochs=100", "cluster.clusterer=whitened-kmeans"]).save(
        long / "config.json"
    )  # the plan's clusterer is the plan's: the same recipe
    assert budget.run_once("animals-vs-vehicles", "60m", 0, long, None, {}, kept_file)["epochs"] == 100

    stopped = tmp_path / "stopped"
    stopped.mkdir()
    (stopped / "config.json").write_text("{}")  # a run stopped part-way is started again, not read back
    started = []
    monkeypatch.setattr(budget, "subprocess", SimpleNamespace(run=lambda command, check: started.append(command)))
    with pytest.raises(RunDirError, match="metrics.json"):
        budget.run_once("animals-vs-vehicles", "5m", 0, stopped, None, {}, kept_file)  # the stand-in wrote no metrics
    assert started and "--budget" in started[0] and not (stopped / "config.json").exists()


def test_speed_change_bench_sorts_epochs_by_when_they_ended_and_chains_the_plans(tmp_path):
    speed_change = load_bench("speed_change.py")
    run_dir = tmp_path / "run"
    directory = RunDir(run_dir)
    run_dir.mkdir()
    # 10 s before the first epoch (4 s starting Python and importing, 1 s reading, 5 s measuring); epochs of 40 s
    # under the load and 15 s after it, each with 1 s of history: epoch 3 ends at 10 + 3 * 41 = 133 s.
    seconds = [40.0, 40.0, 40.0, 15.0, 15.0, 15.0]
    directory.write_history([
        EpochRecord(epoch, 1.0, float("nan"), 0.9, 0.8, train, 1.0) for epoch, train in enumerate(seconds, start=1)
    ])  # fmt: skip
    wall = 4.0 + 200.0
    directory.write_metrics({
        "epochs": 6, "train_accuracy": 0.86, "timings": {"total_seconds": 200.0, "load_seconds": 1.0},
        "budget": {"taken_seconds": 200.0},
    })  # fmt: skip
    plans = ["train.provisional_epochs=4", "train.replanned_after=2,4", "train.epochs_before_replan=0,5"]
    with_settings(preset(DEFAULT_MODEL), ["train.epochs=6", *plans]).save(run_dir / "config.json")
    saved = saved_plan(0.5)
    directory.budget.write_text(json.dumps(saved | {"speeds": saved["speeds"] | {"measuring_seconds": 5.0}}))
    # The load ended 1 s after epoch 3 did.
    result = speed_change.figures("now", Path("src"), run_dir, 300.0, 134.0, wall)
    assert result["epoch_seconds_under_load"] == 40.0 and result["epoch_seconds_after"] == 15.0  # epoch 1 left out
    assert result["epochs"] == 6 and result["train_accuracy"] == 0.86
    # 4 epochs first, 5 after epoch 1 (kept after epoch 2, 0 standing for the next plan's), 6 after epoch 4.
    assert result["plans"] == "4 →(1) 5 →(2) 5 →(4) 6"
    earlier = speed_change.figures("now", Path("src"), run_dir, 300.0, 132.0, wall)  # a second before epoch 3 ended
    assert earlier["epoch_seconds_under_load"] == 40.0 and earlier["epoch_seconds_after"] == 21.25
    table = speed_change.table([result])
    assert "| now | 4 →(1) 5 →(2) 5 →(4) 6 | 40.0 | 15.0 | 6 | 0.860 | 204 | 0.68 |" in table
    not_a_checkout = "holding the aeclust package, found 'old=/nowhere'"
    with pytest.raises(speed_change.argparse.ArgumentTypeError, match=not_a_checkout):
        speed_change.source_folder("old=/nowhere")
