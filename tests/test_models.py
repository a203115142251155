import pytest
import torch
from torch import nn

from aeclust.config import ModelConfig
from aeclust.errors import ConfigError
from aeclust.nn.models import RotationHead, create_autoencoder, rotate_batch
from aeclust.presets import MODELS, preset


def test_baseline_is_the_study_architecture():
    model = create_autoencoder(preset("baseline").model)
    convs = [m for m in model.encoder if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (3, 64, (3, 3)), (64, 128, (3, 3)), (128, 256, (3, 3))
    ]  # fmt: skip
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.encoder) == 3
    deconvs = [m for m in model.decoder if isinstance(m, nn.ConvTranspose2d)]
    assert [(d.in_channels, d.out_channels, d.kernel_size[0]) for d in deconvs] == [(256, 128, 5), (128, 64, 9), (64, 3, 17)]
    assert isinstance(model.decoder[-1], nn.Tanh)
    reconstruction, latent = model(torch.zeros(2, 3, 32, 32))
    assert reconstruction.shape == (2, 3, 32, 32) and latent.shape == (2, 256, 4, 4)


def test_improved_uses_strided_convs_and_pixel_shuffle():
    model = create_autoencoder(preset("improved").model)
    strided = [m for m in model.encoder.modules() if isinstance(m, nn.Conv2d) and m.stride == (2, 2)]
    assert len(strided) == 3 and all(m.kernel_size == (2, 2) for m in strided)
    assert sum(isinstance(m, nn.PixelShuffle) for m in model.decoder.modules()) == 3
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    reconstruction, latent = model(torch.zeros(2, 3, 32, 32))
    assert reconstruction.shape == (2, 3, 32, 32) and latent.shape[1:] == model.latent_shape
    assert reconstruction.abs().max() <= 1


def test_study_presets_differ_only_where_the_ablation_says():
    assert preset("improved").model.rotation and not preset("resnet").model.rotation
    assert preset("baseline+rotation").model.rotation and preset("baseline+rotation").model.arch == "baseline"
    assert preset("improved").model.rotation_weight == 10.0
    assert {"baseline", "improved", "baseline+rotation", "resnet"} <= set(MODELS)


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ConfigError, match="unknown model 'nope'; expected one of: .*baseline"):
        preset("nope")
    with pytest.raises(ConfigError, match="unknown architecture 'vit'"):
        create_autoencoder(ModelConfig(arch="vit"))


def test_rotate_batch_turns_each_image_by_its_multiple():
    images = torch.arange(5 * 3 * 4 * 4, dtype=torch.float32).reshape(5, 3, 4, 4)
    rotated, turns = rotate_batch(images, torch.Generator().manual_seed(1))
    assert len(set(turns.tolist())) > 1
    for image, turned, k in zip(images, rotated, turns.tolist()):
        assert torch.equal(torch.rot90(turned, -k, dims=(1, 2)), image)


def test_rotate_batch_can_be_told_the_turns():
    images = torch.arange(4 * 3 * 4 * 4, dtype=torch.float32).reshape(4, 3, 4, 4)
    turns = torch.tensor([0, 1, 2, 3])
    rotated, same = rotate_batch(images, torch.Generator().manual_seed(1), turns)
    assert torch.equal(same, turns)
    for image, turned, k in zip(images, rotated, range(4)):
        assert torch.equal(turned, torch.rot90(image, k, dims=(1, 2)))


def test_rotation_head_gives_four_logits():
    assert RotationHead(32 * 4).forward(torch.zeros(3, 32, 2, 2)).shape == (3, 4)


def test_fast_layout_has_no_blocks_at_full_resolution():
    model = create_autoencoder(ModelConfig(arch="resnet", widths=(8, 16, 32, 64), stem_blocks=0))
    sides = []
    x = torch.zeros(1, 3, 32, 32)
    for module in model.encoder:
        x = module(x)
        if type(module).__name__ == "ResidualBlock":
            sides.append(x.shape[-1])
    assert sides == [16, 8, 4]
    assert model(torch.zeros(2, 3, 32, 32))[0].shape == (2, 3, 32, 32)
