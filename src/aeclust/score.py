"""Score a Kaggle-style prediction.csv against an answer key (.npy)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from aeclust.data.images import check_labels, load_npy
from aeclust.errors import InputError
from aeclust.metrics import accuracy_of, clustering_scores


def read_predictions(path: Path) -> np.ndarray:
    """The ``label`` column of a prediction.csv, in row order."""
    if not path.is_file():
        raise InputError(f"{path}: prediction file not found")
    try:
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: expected a CSV file with columns id,label, could not read it ({error})") from None
    if not rows or [c.strip() for c in rows[0]] != ["id", "label"]:
        header = ",".join(rows[0]) if rows else "an empty file"
        raise InputError(f"{path}: expected the header 'id,label', found {header!r}")
    labels = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != 2 or not row[1].strip().lstrip("-").isdigit():
            raise InputError(f"{path}: line {line}: expected 'id,integer label', found {','.join(row)!r}")
        labels.append(int(row[1]))
    if not labels:
        raise InputError(f"{path}: expected at least one prediction row, found none")
    return np.array(labels)


def score_prediction(prediction: Path, answers: Path) -> dict:
    """Accuracy (max(acc, 1−acc) for two classes, Hungarian-matched otherwise), NMI and ARI."""
    predicted = read_predictions(prediction)
    truth = check_labels(load_npy(answers, "answer key (labels)"), len(predicted), f"{answers} (answer key)")
    return {"accuracy": accuracy_of(truth, predicted), **clustering_scores(truth, predicted)}
