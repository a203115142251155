"""bench/choose_k.py: every criterion on a finished run's saved latents, beside how compact the true classes are."""

import sys

import numpy as np
from test_bench import load_bench

from aeclust.config import RunConfig


def test_every_criterion_is_measured_on_the_saved_latents(small_set, small_hw9_dir, tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    (run_dir / "arrays").mkdir(parents=True)
    config = RunConfig(data=str(small_hw9_dir))
    config.cluster.latent, config.cluster.scaling = "pool", "l2"
    config.save(run_dir / "config.json")
    # Latents in two tight groups that follow the answer key, so the classes are the features' groups.
    rng = np.random.default_rng(0)
    directions = np.eye(8)[small_set.train_labels.astype(int)] + rng.normal(scale=0.05, size=(240, 8))
    np.save(run_dir / "arrays" / "train_latents.npy", directions[:, :, None, None].astype(np.float32))
    bench = load_bench("choose_k.py")
    monkeypatch.setattr(sys, "argv", ["choose_k.py", str(run_dir), "--k-range", "2:6"])
    bench.main()
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()[1:]]
    chosen = {row[3]: row[4] for row in rows if len(row) == 7}
    assert set(chosen) == set(bench.K_CRITERIA) and chosen["silhouette"] == chosen["eigengap"] == "2"
    compactness = next(row[1] for row in rows if len(row) == 2)
    assert float(compactness.split()[5].rstrip(";")) > 0.8
