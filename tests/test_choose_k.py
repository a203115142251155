import json
import math

import numpy as np
import pytest

from aeclust.cluster.choose_k import DEFAULT_CRITERION, K_CRITERIA, KSelection, choose_k
from aeclust.errors import ConfigError


def unit_blobs(groups: int, n: int = 600, dim: int = 32, spread: float = 0.3, seed: int = 0) -> np.ndarray:
    """``groups`` well-separated, equally sized groups of unit-length points, as contrastive latents are."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(groups, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    points = centres[np.arange(n) % groups] + rng.normal(scale=spread / np.sqrt(dim), size=(n, dim))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("groups", [2, 3, 5, 10])
@pytest.mark.parametrize("criterion", [DEFAULT_CRITERION, "eigengap"])
def test_the_number_of_well_separated_groups_is_found(criterion, groups):
    selection = choose_k(unit_blobs(groups), 2, 15, criterion, seed=0)
    assert selection.chosen == groups
    assert list(selection.scores) == list(range(2, 16))
    assert selection.scores[groups] == max(selection.scores.values())
    assert selection.reason.startswith(f"k={groups} has ")


def test_points_that_are_not_unit_length_are_measured_by_euclidean_distance():
    rng = np.random.default_rng(1)
    centres = rng.normal(scale=10, size=(4, 2))  # 2-D groups, as a t-SNE embedding gives them
    points = centres[np.arange(400) % 4] + rng.normal(size=(400, 2))
    assert choose_k(points, 2, 10).chosen == 4


def test_the_same_seed_chooses_the_same_way_on_a_subsample(monkeypatch):
    import aeclust.cluster.choose_k

    monkeypatch.setattr(aeclust.cluster.choose_k, "SAMPLE_SIZE", 200)  # fewer than the points: a subsample is drawn
    points = unit_blobs(5, n=500, spread=1.5)  # overlapping groups, where the subsample matters
    first, again = choose_k(points, 2, 8, seed=3), choose_k(points, 2, 8, seed=3)
    assert first == again
    assert "on 200 of 500 images" in first.reason


def test_the_selection_is_written_as_json_with_string_keys_and_null_for_nan():
    selection = KSelection("silhouette", (2, 4), {2: 0.5, 3: math.nan, 4: 0.25}, 2, "k=2 has the highest score.")
    assert json.loads(json.dumps(selection.to_dict())) == {
        "criterion": "silhouette",
        "k_range": [2, 4],
        "scores": {"2": 0.5, "3": None, "4": 0.25},
        "chosen": 2,
        "reason": "k=2 has the highest score.",
    }


@pytest.mark.parametrize(
    "k_min, k_max, message",
    [
        (1, 5, "choose_k: k range 1:5: expected LO:HI with 2 <= LO <= HI"),
        (6, 5, "choose_k: k range 6:5: expected LO:HI with 2 <= LO <= HI"),
        (2, 51, "choose_k: k range 2:51 does not fit 100 points; expected HI at most 50, so that every candidate"),
    ],
)
def test_a_range_that_does_not_fit_is_refused(k_min, k_max, message):
    with pytest.raises(ConfigError, match=f"^{message}"):
        choose_k(unit_blobs(2, n=100), k_min, k_max)


def test_an_unknown_criterion_is_refused_with_the_known_names():
    with pytest.raises(ConfigError, match="unknown k criterion 'gap'; expected one of: " + ", ".join(sorted(K_CRITERIA))):
        choose_k(unit_blobs(2), 2, 5, "gap")
