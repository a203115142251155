import math

import pytest
import torch
from conftest import tiny_config

import aeclust.nn.objectives.contrastive
import aeclust.nn.objectives.rotation
from aeclust.config import ModelConfig
from aeclust.nn.augment import LUMA, color_distort, contrastive_view, random_flip, random_resized_crop, rotate_hue
from aeclust.nn.objectives import nt_xent_loss
from aeclust.pipeline.run import run_trainer
from aeclust.presets import preset


def _images(n=6):
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_views_keep_shape_and_range_and_follow_the_generator():
    images = _images()
    first = contrastive_view(images, torch.Generator().manual_seed(5), ModelConfig())
    again = contrastive_view(images, torch.Generator().manual_seed(5), ModelConfig())
    other = contrastive_view(images, torch.Generator().manual_seed(6), ModelConfig())
    assert first.shape == images.shape and first.min() >= -1 and first.max() <= 1
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_crops_resample_inside_the_image():
    # A plain image stays plain whatever the crop; a left-right ramp keeps its direction without flips.
    plain = torch.full((4, 3, 32, 32), 0.3)
    torch.testing.assert_close(random_resized_crop(plain, torch.Generator().manual_seed(0)), plain)
    ramp = torch.linspace(-1, 1, 32).expand(4, 3, 32, 32).contiguous()
    cropped = random_resized_crop(ramp, torch.Generator().manual_seed(0), flip=False)
    assert torch.all(cropped[..., -1] > cropped[..., 0])


def test_views_can_be_smaller_than_the_image():
    images = _images()
    views = contrastive_view(images, torch.Generator().manual_seed(5), ModelConfig(view_size=16))
    assert views.shape == (6, 3, 16, 16) and views.min() >= -1 and views.max() <= 1
    plain = torch.full((4, 3, 32, 32), 0.3)
    torch.testing.assert_close(random_resized_crop(plain, torch.Generator().manual_seed(0), size=24), plain[..., :24, :24])


def test_the_grayscale_setting_decides_how_many_views_lose_their_colour():
    images = _images(64)

    def grey_views(share):
        views = contrastive_view(images, torch.Generator().manual_seed(1), ModelConfig(grayscale=share))
        return int(((views[:, 0] - views[:, 1]).abs().amax(dim=(1, 2)) < 1e-6).sum())

    assert (grey_views(0.0), grey_views(1.0)) == (0, 64)


def test_flip_mirrors_some_images_and_leaves_the_rest():
    images = _images(32)
    out = random_flip(images, torch.Generator().manual_seed(0))
    mirrored = [torch.equal(o, i.flip(2)) for o, i in zip(out, images)]
    kept = [torch.equal(o, i) for o, i in zip(out, images)]
    assert all(m or k for m, k in zip(mirrored, kept)) and 0 < sum(mirrored) < 32


def test_color_distort_with_no_strength_and_no_gray_changes_nothing():
    images = _images()
    out = color_distort(images, torch.Generator().manual_seed(0), strength=0.0, p_gray=0.0)
    torch.testing.assert_close(out, images.clamp(-1, 1), atol=1e-5, rtol=0)


def test_hue_rotation_turns_colours_but_keeps_grey_and_luma():
    rgb = torch.rand(6, 3, 5, 5)
    rgb[0] = 0.4  # a grey image
    angles = torch.tensor([1.0, 0.0, 2 * math.pi, 2.0, math.pi, -1.0])
    turned = rotate_hue(rgb, angles)
    luma = lambda x: sum(w * x[:, i] for i, w in enumerate(LUMA))
    torch.testing.assert_close(luma(turned), luma(rgb), atol=1e-4, rtol=0)
    torch.testing.assert_close(turned[0], rgb[0], atol=1e-4, rtol=0)  # grey has no hue to turn
    torch.testing.assert_close(turned[1:3], rgb[1:3], atol=1e-4, rtol=0)  # no turn, a full turn
    assert (turned[3:] - rgb[3:]).abs().amax() > 0.05
    # turning back undoes it
    torch.testing.assert_close(rotate_hue(turned, -angles), rgb, atol=1e-4, rtol=0)


def test_hue_jitter_changes_colours_only_when_asked_for():
    images = _images(64)
    plain = color_distort(images, torch.Generator().manual_seed(3), strength=0.0, p_gray=0.0)
    hued = color_distort(images, torch.Generator().manual_seed(3), strength=0.0, p_gray=0.0, hue=0.25)
    changed = (hued - plain).flatten(1).abs().amax(1) > 0.01
    assert 0 < changed.sum() < len(images)  # most, but with p_jitter = 0.8 not all


def test_nt_xent_by_hand():
    # Two images, orthogonal embeddings, each view identical to its partner.
    first = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    loss = nt_xent_loss(first, first.clone(), temperature=1.0)
    # For each row: partner similarity 1, the two others 0 → −log(e / (e + 2)).
    assert loss.item() == pytest.approx(-math.log(math.e / (math.e + 2)), rel=1e-6)
    swapped = nt_xent_loss(first, first.flip(0), temperature=1.0)
    assert swapped.item() > loss.item()


@pytest.mark.parametrize(
    "rotate_views, view_size, rotation_size", [(False, 24, 0), (False, 24, 24), (True, 0, 0), (True, 24, 0)]
)
def test_contrastive_model_trains_and_its_loss_goes_down(small_set, tmp_path, rotate_views, view_size, rotation_size):
    config = tiny_config(epochs=4)
    config.model = preset("contrastive").model
    config.model.rotate_views, config.model.view_size = rotate_views, view_size
    config.model.rotation_size = rotation_size
    config.model.widths = (8, 16, 32, 32)
    config.cluster = preset("contrastive").cluster
    config.train.batch_size, config.train.lr = 48, 2e-3
    history = run_trainer(config, small_set, tmp_path).fit()
    assert history[-1].train_loss < history[0].train_loss
    assert 0.25 < history[-1].rotation_accuracy <= 1 and 0.5 <= history[-1].val_accuracy <= 1


def test_small_views_are_encoded_and_reconstructed_at_their_size_and_rotation_at_full_size(small_set, tmp_path):
    config = tiny_config(epochs=1)
    config.model = preset("contrastive").model
    config.model.widths, config.model.view_size, config.model.rotation_size = (8, 16, 32, 32), 16, 0
    trainer = run_trainer(config, small_set, tmp_path)
    sides = []
    for name in ("encode", "decode"):
        original = getattr(trainer.model, name)
        setattr(trainer.model, name, lambda x, original=original, name=name: sides.append((name, *x.shape[-2:])) or original(x))
    loss, _ = trainer.method(torch.rand(16, 3, 32, 32) * 2 - 1, trainer.generator)
    assert sides == [("encode", 16, 16), ("decode", 2, 2), ("encode", 32, 32)]
    assert loss.requires_grad


def test_small_views_are_encoded_apart_and_each_finds_both_full_views(small_set, tmp_path, monkeypatch):
    config = tiny_config(epochs=1)
    config.model = preset("contrastive").model
    config.model.widths, config.model.small_views, config.model.small_view_size = (8, 16, 32, 32), 2, 8
    config.model.rotation_size = 0
    trainer = run_trainer(config, small_set, tmp_path)
    sides = []
    encode = trainer.model.encode
    trainer.model.encode = lambda x: sides.append(tuple(x.shape[-3:]) + (len(x),)) or encode(x)
    pairs = []
    real_loss = aeclust.nn.objectives.contrastive.nt_xent_loss
    monkeypatch.setattr(
        aeclust.nn.objectives.contrastive, "nt_xent_loss", lambda a, b, *rest: pairs.append(len(a)) or real_loss(a, b, *rest)
    )
    loss, _ = trainer.method(torch.rand(16, 3, 32, 32) * 2 - 1, trainer.generator)
    # the two full views (24×24), both small views together (8×8), then the rotated batch at full size
    assert sides == [(3, 24, 24, 32), (3, 8, 8, 32), (3, 32, 32, 16)]
    assert pairs == [16] * 5  # full views with each other, and each small view with each full view
    assert loss.requires_grad


def test_small_views_come_from_smaller_crops_than_the_full_views():
    images = torch.linspace(-1, 1, 32).expand(64, 3, 32, 32).contiguous()  # a left-right ramp
    settings = ModelConfig(colour_strength=0.0, grayscale=0.0, small_view_size=16)
    small = contrastive_view(images, torch.Generator().manual_seed(0), settings, small=True)
    full = contrastive_view(images, torch.Generator().manual_seed(0), settings)
    assert small.shape == (64, 3, 16, 16) and full.shape == images.shape

    def spans(views):  # how much of the ramp (2 wide) each view covers, left edge to right edge
        return (views[..., -1] - views[..., 0]).abs().mean(dim=(1, 2))

    # crops of 5–25 % of the area against 25–100 %: every small view spans less than the widest full views
    assert spans(small).max() < 2 * 0.25**0.5 * (4 / 3) ** 0.5 + 0.1 and spans(small).mean() < spans(full).mean()


@pytest.mark.parametrize(
    "rotate_views, view_size, encoded",
    [(False, 0, [(32, 32), (16, 32)]), (True, 0, [(32, 32)]), (True, 16, [(32, 16)]), (False, 16, [(32, 16), (16, 32)])],
)
def test_rotating_the_views_saves_an_encoder_pass(small_set, tmp_path, rotate_views, view_size, encoded):
    config = tiny_config(epochs=1)
    config.model = preset("contrastive").model
    config.model.widths, config.model.rotate_views, config.model.view_size = (8, 16, 32, 32), rotate_views, view_size
    config.model.rotation_size = 0
    trainer = run_trainer(config, small_set, tmp_path)
    batch = torch.rand(16, 3, 32, 32) * 2 - 1
    calls = []  # (images, side) of each encoder pass
    encode = trainer.model.encode
    trainer.model.encode = lambda x: calls.append((len(x), x.shape[-1])) or encode(x)
    loss, sums = trainer.method(batch, trainer.generator)
    correct = sums["rotation_correct"]
    assert calls == encoded
    assert loss.requires_grad and 0 <= correct <= 16


@pytest.mark.parametrize("share, decoded", [(1.0, 16), (0.25, 4), (0.01, 1)])
def test_the_decoder_gives_back_its_share_of_the_batch(small_set, tmp_path, share, decoded):
    config = tiny_config(epochs=1)
    config.model = preset("contrastive").model
    config.model.widths, config.model.reconstruction_share = (8, 16, 32, 32), share
    trainer = run_trainer(config, small_set, tmp_path)
    calls = []
    decode = trainer.model.decode
    trainer.model.decode = lambda z: calls.append(len(z)) or decode(z)
    trainer.method(torch.rand(16, 3, 32, 32) * 2 - 1, trainer.generator)
    assert calls == [decoded]


def test_the_rotated_batch_is_resized_to_rotation_size_and_its_head_reads_that_grid(small_set, tmp_path, monkeypatch):
    config = tiny_config(epochs=1)
    config.model = preset("contrastive").model
    config.model.widths, config.model.view_size, config.model.rotation_size = (8, 16, 32, 32), 16, 16
    trainer = run_trainer(config, small_set, tmp_path)
    rotation = trainer.method.objectives["rotation"]
    assert rotation.head.linear.in_features == 32 * 2 * 2  # the 16-pixel batch's 2×2 grid, not the 4×4 of 32 pixels
    calls = []
    encode = trainer.model.encode
    trainer.model.encode = lambda x: calls.append(tuple(x.shape)) or encode(x)
    # a whole image with a bright top-left corner, so its turn shows after resizing
    batch = -torch.ones(16, 3, 32, 32)
    batch[:, :, :16, :16] = 1
    turned = []
    real_rotate = aeclust.nn.objectives.rotation.rotate_batch
    monkeypatch.setattr(aeclust.nn.objectives.rotation, "rotate_batch", lambda x, g: turned.append(x) or real_rotate(x, g))
    loss, _ = trainer.method(batch, trainer.generator)
    assert calls == [(32, 3, 16, 16), (16, 3, 16, 16)]  # the two views, then the resized, turned batch
    resized = turned[0]
    assert resized.shape == (16, 3, 16, 16)
    assert (resized[:, :, :7, :7] > 0.9).all() and (resized[:, :, 9:, :] < -0.9).all()  # the whole image, smaller
    loss.backward()
    assert rotation.head.linear.weight.grad.abs().sum() > 0


def test_nt_xent_against_momentum_keys_has_the_same_value_but_trains_only_the_views():
    first = torch.randn(5, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    second = torch.randn(5, 4, generator=torch.Generator().manual_seed(1), requires_grad=True)
    plain = nt_xent_loss(first, second, temperature=0.3)
    against_keys = nt_xent_loss(first, second, temperature=0.3, keys=(first, second))
    assert against_keys.item() == pytest.approx(plain.item(), rel=1e-6)  # keys that are the views themselves
    (gradient_first,) = torch.autograd.grad(plain, first)
    (gradient_keys,) = torch.autograd.grad(against_keys, first)
    assert not torch.allclose(gradient_first, gradient_keys)  # the views move; the keys they are matched with do not
    other_keys = (second.detach().flip(0), first.detach().flip(0))  # each view's partner key moved elsewhere
    assert nt_xent_loss(first, second, 0.3, keys=other_keys).item() > plain.item()


def test_the_momentum_target_keeps_its_share_and_takes_the_rest_from_the_trained_weights():
    from aeclust.nn.objectives.contrastive import MomentumTarget

    encoder, head = torch.nn.Conv2d(3, 4, 1), torch.nn.Linear(4, 2)
    target = MomentumTarget(encoder, head, momentum=0.9)
    before = [p.clone() for p in target.parameters()]
    assert all(not p.requires_grad for p in target.parameters())
    with torch.no_grad():
        for p in [*encoder.parameters(), *head.parameters()]:
            p.add_(1.0)
    target.follow(encoder, head)
    trained = [*encoder.parameters(), *head.parameters()]
    for mine, old, new in zip(target.parameters(), before, trained, strict=True):
        torch.testing.assert_close(mine, 0.9 * old + 0.1 * new)


def momentum_config(epochs: int, momentum: float = 0.9):
    config = tiny_config(epochs=epochs)
    config.model = preset("contrastive").model
    config.model.widths, config.model.momentum = (8, 16, 32, 32), momentum
    config.cluster = preset("contrastive").cluster
    config.train.batch_size, config.train.lr = 48, 2e-3
    return config


def test_a_momentum_target_trains_and_resumes_exactly(small_set, tmp_path):
    straight = run_trainer(momentum_config(3), small_set, tmp_path / "a")
    history = straight.fit()
    assert history[-1].train_loss < history[0].train_loss
    target = straight.method.momentum_target
    assert target is not None and not any(p.requires_grad for p in target.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(target.encoder.parameters(), straight.model.encoder.parameters()))
    run_trainer(momentum_config(1), small_set, tmp_path / "b").fit()
    resumed = run_trainer(momentum_config(3), small_set, tmp_path / "b")
    assert resumed.resume()
    assert [r.train_loss for r in resumed.fit()] == [r.train_loss for r in history]
    for a, b in zip(resumed.method.momentum_target.state_dict().values(), target.state_dict().values()):
        assert torch.equal(a, b)
    without = run_trainer(momentum_config(1, momentum=0.0), small_set, tmp_path / "c")
    assert without.method.momentum_target is None


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(momentum=1.0), "model momentum=1.0: expected a share above 0 and below 1 (0.99 is usual), or momentum=0"),
        (dict(momentum=0.99, small_views=2), "model momentum=0.99: expected contrastive views without multi-crop's"),
        (
            dict(momentum=0.99, contrastive=False, view_size=0, rotation_size=0),
            "model momentum=0.99: expected contrastive views without multi-crop's small views (contrastive=true, "
            "small_views=0), or momentum=0 for none",
        ),
    ],
)
def test_a_momentum_target_needs_a_share_and_plain_contrastive_views(small_set, tmp_path, settings, message):
    from aeclust.errors import ConfigError

    config = momentum_config(1)
    for name, value in settings.items():
        setattr(config.model, name, value)
    with pytest.raises(ConfigError) as error:
        run_trainer(config, small_set, tmp_path)
    assert str(error.value).startswith(message)
