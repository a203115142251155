import subprocess
import sys

import numpy as np
import pytest

from aeclust.cli import main


def aeclust(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aeclust", *args], capture_output=True, text=True, env=env)


@pytest.mark.parametrize("command", [[], ["run"], ["score"], ["data"], ["data", "export"], ["models"], ["predict"]])
def test_help_works_on_every_command(command):
    result = aeclust(*command, "--help")
    assert result.returncode == 0 and "usage: aeclust" in result.stdout


def test_run_then_score_round_trip(small_hw9_dir, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "--data", str(small_hw9_dir), "--model", "baseline", "--epochs", "1", "--out", str(out)]
    args += ["--reducer", "pca", "--components", "10", "--embedder", "tsne", "--threads", "1"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "val_accuracy:" in printed and f"run directory: {out}" in printed
    assert main(["score", str(out / "prediction.csv"), str(small_hw9_dir / "trainY.npy")]) == 0
    accuracy = float(capsys.readouterr().out.strip())
    import json

    assert accuracy == pytest.approx(json.loads((out / "metrics.json").read_text())["train_accuracy"], abs=5e-5)


def test_score_by_hand(tmp_path, capsys):
    (tmp_path / "p.csv").write_text("id,label\n0,1\n1,1\n2,0\n3,0\n")
    np.save(tmp_path / "y.npy", np.array([0, 0, 1, 0], dtype=np.uint8))
    assert main(["score", str(tmp_path / "p.csv"), str(tmp_path / "y.npy")]) == 0
    assert capsys.readouterr().out.strip() == "0.7500"


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--data", "/no/such/dir"], "aeclust: error: /no/such/dir: no such file or directory"),
        (["run", "--model", "vgg"], "aeclust: error: unknown model 'vgg'; expected one of:"),
        (["score", "/no/p.csv", "/no/y.npy"], "aeclust: error: /no/p.csv: prediction file not found"),
        (["run", "--set", "model.temprature=0.2"], "aeclust: error: unknown setting 'model.temprature'"),
        (["run", "--set", "train.epochs=many"], "aeclust: error: setting train.epochs: expected a value like"),
        (["run", "--resume", "somewhere", "--set", "model.hue=0.1"], "aeclust: error: somewhere: --resume continues"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, message, tmp_path):
    result = aeclust(*args, "--out", str(tmp_path / "r")) if args[0] == "run" else aeclust(*args)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_score_with_mismatched_answer_key(tmp_path):
    (tmp_path / "p.csv").write_text("id,label\n0,1\n1,0\n")
    np.save(tmp_path / "y.npy", np.array([0, 1, 1], dtype=np.uint8))
    result = aeclust("score", str(tmp_path / "p.csv"), str(tmp_path / "y.npy"))
    assert result.returncode == 2 and "expected 2 labels (one per image), found 3" in result.stderr


def test_models_lists_every_section_of_every_named_model(capsys):
    from aeclust.presets import MODELS

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "contrastive (default)" in out
    assert out.count("\n  refine   ") == len(MODELS)
    assert '"epochs": 3' in out.split("contrastive (default)")[1].split("  refine   ")[1].splitlines()[0]


def test_set_changes_any_setting_after_the_named_options():
    from aeclust.cli import build_config, make_parser

    args = make_parser().parse_args(
        ["run", "--lr", "0.01", "--set", "model.temperature=0.3", "--set", "train.lr=0.02", "--set", "refine.epochs=0"]
    )
    config = build_config(args)
    assert (config.model.temperature, config.train.lr, config.refine.epochs) == (0.3, 0.02, 0)


def test_k_auto_and_its_range_from_options_or_settings():
    from aeclust.cli import build_config, make_parser
    from aeclust.config import AUTO_K

    config = build_config(make_parser().parse_args(["run", "--k", "auto", "--k-range", "3:7"]))
    assert (config.cluster.k, config.cluster.k_min, config.cluster.k_max) == (AUTO_K, 3, 7)
    config = build_config(make_parser().parse_args(["run", "--set", "cluster.k=AUTO", "--set", "cluster.k_max=9"]))
    assert (config.cluster.k, config.cluster.k_max) == (AUTO_K, 9)
    assert build_config(make_parser().parse_args(["run", "--set", "cluster.k=5"])).cluster.k == 5
