"""`section.key=value` settings: typed like the setting they change, refused with the setting's name when wrong."""

import pytest

from aeclust.config import with_settings
from aeclust.errors import ConfigError
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
    ],
)
def test_bad_settings_name_what_is_wrong(item, message):
    with pytest.raises(ConfigError, match=message):
        with_settings(preset("contrastive"), [item])
