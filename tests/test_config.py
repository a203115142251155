"""`section.key=value` settings: typed like the setting they change, refused with the setting's name when wrong."""

import numpy as np
import pytest

from aeclust.config import RunConfig, with_settings
from aeclust.data import ImageSet
from aeclust.errors import ConfigError
from aeclust.pipeline.run import check_config
from aeclust.presets import preset


def test_settings_take_the_type_of_the_setting_they_change():
    base = preset("contrastive")
    changed = with_settings(
        base,
        [
            "model.temperature=0.3",
            "model.rotation=false",
            "model.widths=8,16",
            "train.epochs=7",
            "cluster.kpca_gamma=0.5",
            "cluster.latent=flatten",
        ],
    )
    assert changed.model.temperature == 0.3 and isinstance(changed.model.temperature, float)
    assert changed.model.rotation is False
    assert changed.model.widths == (8, 16)
    assert changed.train.epochs == 7 and isinstance(changed.train.epochs, int)
    assert changed.cluster.kpca_gamma == 0.5
    assert changed.cluster.latent == "flatten"
    assert base == preset("contrastive"), "the original must be left as it was"
    assert with_settings(changed, ["cluster.kpca_gamma=none"]).cluster.kpca_gamma is None


@pytest.mark.parametrize(
    "item, message",
    [
        ("temperature=0.2", "section.key=value"),
        ("model.temperature", "section.key=value"),
        ("modle.temperature=0.2", "unknown section 'modle'"),
        ("model.temprature=0.2", "unknown setting 'model.temprature'"),
        ("train.epochs=five", "setting train.epochs: expected a value like 7, found 'five'"),
        ("model.rotation=yes", "expected true or false"),
        ("model.widths=", "setting model.widths: expected a value like"),
    ],
)
def test_bad_settings_name_what_is_wrong(item, message):
    with pytest.raises(ConfigError, match=message):
        with_settings(preset("contrastive"), [item])


def test_a_budgets_midway_plans_are_read_as_lists_also_from_runs_made_when_there_was_one():
    config = preset("contrastive")
    repeated = with_settings(config, ["train.replanned_after=17,34", "train.epochs_before_replan=50,0"])
    assert (repeated.train.replanned_after, repeated.train.epochs_before_replan) == ((17, 34), (50, 0))
    assert with_settings(repeated, ["train.replanned_after=", "train.epochs_before_replan="]).train == config.train
    saved = config.to_dict()  # a run's config.json from before: a number each, 0 where it was not planned again
    saved["train"] |= {"replanned_after": 54, "epochs_before_replan": 163}
    assert RunConfig.from_dict(saved).train.replanned_after == (54,)
    assert RunConfig.from_dict(saved).train.epochs_before_replan == (163,)
    saved["train"] |= {"replanned_after": 0, "epochs_before_replan": 0}
    assert RunConfig.from_dict(saved) == config
    assert RunConfig.from_dict(repeated.to_dict()) == repeated  # as config.json writes and reads them now


@pytest.mark.parametrize(
    "after, before", [("17,34", "50"), ("34,17", "50,0"), ("0,17", "50,0"), ("17,17", "50,0"), ("17", "-1")]
)
def test_midway_plans_that_cannot_have_been_made_are_refused(after, before):
    settings = [f"train.replanned_after={after}", f"train.epochs_before_replan={before}"]
    images = ImageSet(name="blank", train_images=np.zeros((10, 32, 32, 3), dtype=np.uint8))
    with pytest.raises(ConfigError, match=f"replanned_after={after}, epochs_before_replan={before}"):
        check_config(with_settings(preset("contrastive"), settings), images)
