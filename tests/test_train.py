import numpy as np
import pytest
import torch
from conftest import tiny_config

import aeclust.encoders.autoencoder
from aeclust.encoders.autoencoder import Trainer, load_checkpoint, load_model
from aeclust.errors import CheckpointError, ConfigError
from aeclust.pipeline.run import run_trainer
from aeclust.pipeline.rundir import RunDir
from aeclust.runtime.engine import set_threads


@pytest.mark.parametrize("arch, rotation", [("baseline", False), ("resnet", True)])
def test_reconstruction_error_goes_down(small_set, tmp_path, arch, rotation):
    config = tiny_config(epochs=5, rotation=rotation, arch=arch)
    config.train.batch_size, config.train.lr = 16, 2e-3
    history = run_trainer(config, small_set, tmp_path).fit()
    assert [r.epoch for r in history] == [1, 2, 3, 4, 5]
    assert history[-1].train_mse < 0.9 * history[0].train_mse
    assert 0.5 <= history[-1].val_accuracy <= 1.0
    if rotation:
        assert 0.25 < history[-1].rotation_accuracy <= 1.0
    else:
        assert np.isnan(history[-1].rotation_accuracy)


def test_every_epoch_leaves_a_checkpoint_and_a_history_row(small_set, tmp_path):
    run_trainer(tiny_config(epochs=3), small_set, tmp_path).fit()
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["epoch_001.pt", "epoch_002.pt", "epoch_003.pt", "last.pt"]
    rows = RunDir(tmp_path).read_history()
    assert [r.epoch for r in rows] == [1, 2, 3]
    model, state = load_model(tmp_path / "checkpoints" / "epoch_002.pt")
    assert state["epoch"] == 2
    assert model(torch.zeros(1, 3, 32, 32))[0].shape == (1, 3, 32, 32)


def test_a_run_of_no_epochs_keeps_its_untrained_model(small_set, tmp_path):
    trainer = run_trainer(tiny_config(epochs=0), small_set, tmp_path)
    assert trainer.fit() == []
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["epoch_000.pt", "last.pt"]
    model, state = load_model(tmp_path / "checkpoints" / "last.pt")
    assert state["epoch"] == 0
    assert all(torch.equal(value, trainer.model.state_dict()[name]) for name, value in model.state_dict().items())


def test_resume_continues_exactly(small_set, tmp_path):
    straight = run_trainer(tiny_config(epochs=3), small_set, tmp_path / "a").fit()
    run_trainer(tiny_config(epochs=1), small_set, tmp_path / "b").fit()
    half_written = tmp_path / "b" / "checkpoints" / ".last.pt.x1y2.tmp"  # as a kill during a save leaves it
    half_written.write_bytes(b"partial")
    resumed = run_trainer(tiny_config(epochs=3), small_set, tmp_path / "b")
    assert resumed.resume()
    assert not half_written.exists() and (tmp_path / "b" / "checkpoints" / "last.pt").exists()
    history = resumed.fit()
    assert [r.train_mse for r in history] == [r.train_mse for r in straight]
    assert [r.val_accuracy for r in history] == [r.val_accuracy for r in straight]


def test_checkpoint_of_another_model_is_refused(small_set, tmp_path):
    run_trainer(tiny_config(epochs=1, arch="baseline", rotation=False), small_set, tmp_path).fit()
    other = run_trainer(tiny_config(epochs=2), small_set, tmp_path)
    with pytest.raises(CheckpointError, match="checkpoint is of model baseline with other settings; expected resnet"):
        other.resume()


def test_a_checkpoint_from_before_a_setting_existed_still_resumes(small_set, tmp_path):
    run_trainer(tiny_config(epochs=1), small_set, tmp_path).fit()
    path = RunDir(tmp_path).last_checkpoint
    state = torch.load(path, weights_only=False)
    del state["model_config"]["view_size"], state["model_config"]["grayscale"]  # as an earlier release wrote it
    torch.save(state, path)
    resumed = run_trainer(tiny_config(epochs=2), small_set, tmp_path)
    assert resumed.resume() and len(resumed.fit()) == 2
    state["model_config"]["wings"] = 2
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="model settings this aeclust does not know \\(wings\\); it comes from a newer"):
        run_trainer(tiny_config(epochs=2), small_set, tmp_path).resume()


def test_checkpoint_of_another_format_version_is_refused(small_set, tmp_path):
    trainer = run_trainer(tiny_config(epochs=1), small_set, tmp_path)
    trainer.fit()
    state = trainer.state(full=True) | {"format_version": 999}
    torch.save(state, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match="checkpoint format version 999; this aeclust reads version 1"):
        load_checkpoint(tmp_path / "old.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="junk.pt: expected an aeclust checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")


def test_a_one_cycle_run_cannot_be_extended(small_set, tmp_path):
    config = tiny_config(epochs=1)
    config.train.schedule = "onecycle"
    run_trainer(config, small_set, tmp_path).fit()
    longer = tiny_config(epochs=3)
    longer.train.schedule = "onecycle"
    with pytest.raises(ConfigError, match="planned over 1 epochs, found 3 asked for; a one-cycle run cannot be extended"):
        run_trainer(longer, small_set, tmp_path).resume()


def test_a_constant_rate_run_can_be_extended(small_set, tmp_path):
    run_trainer(tiny_config(epochs=1), small_set, tmp_path).fit()
    trainer = run_trainer(tiny_config(epochs=2), small_set, tmp_path)
    assert trainer.resume()
    assert [r.epoch for r in trainer.fit()] == [1, 2]


def test_weights_that_do_not_fit_the_layout_are_refused(small_set, tmp_path):
    trainer = run_trainer(tiny_config(epochs=1), small_set, tmp_path)
    trainer.fit()
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=False)
    state["model_config"]["stem_blocks"] = 0  # as if written by a release with another resnet layout
    torch.save(state, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt: its resnet weights do not fit this aeclust's resnet layout"):
        load_model(tmp_path / "other.pt")


def test_default_threads_follow_the_cores_this_process_may_use(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(aeclust.runtime.engine.os, "sched_getaffinity", lambda _: {1}, raising=False)
        set_threads(0)
        assert torch.get_num_threads() == 1  # pinned to one core: one thread, whatever cpu_count() says
        set_threads(3)
        assert torch.get_num_threads() == 3  # an explicit count wins
    finally:
        torch.set_num_threads(before)


def onecycle_config(epochs: int, provisional: int = 0, replanned_after: tuple = (), before_replan: tuple = ()):
    config = tiny_config(epochs=epochs)
    config.train.schedule, config.train.provisional_epochs = "onecycle", provisional
    config.train.replanned_after, config.train.epochs_before_replan = replanned_after, before_replan
    return config


def test_a_one_cycle_schedule_laid_out_again_continues_as_if_laid_out_so_from_the_start():
    train, n_images = onecycle_config(5).train, 320  # 10 batches of 32 an epoch

    def optimizer():
        return torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=train.lr)

    def settings(opt):
        return opt.param_groups[0]["lr"], opt.param_groups[0]["betas"][0]  # one-cycle moves beta1 as a momentum

    first, throughout = optimizer(), optimizer()
    provisional = aeclust.encoders.autoencoder.make_scheduler(first, train, n_images, laid_out_over=3)
    planned = aeclust.encoders.autoencoder.make_scheduler(throughout, train, n_images)
    for _ in range(10):
        for opt, schedule in ((first, provisional), (throughout, planned)):
            opt.step()
            schedule.step()
    assert settings(first) != settings(throughout)  # the first epoch was laid out over 3 epochs, not 5
    again = aeclust.encoders.autoencoder.make_scheduler(first, train, n_images, from_step=provisional.last_epoch)
    for _ in range(40):
        assert settings(first) == pytest.approx(settings(throughout))
        for opt, schedule in ((first, again), (throughout, planned)):
            opt.step()
            schedule.step()
    assert again.last_epoch == planned.last_epoch == 50 and settings(first) == pytest.approx(settings(throughout))


class Stopped(Exception):
    pass


def stopped_after_epoch_1(config, images, run_dir) -> None:
    """Train ``config`` and stop it once its first epoch's checkpoint is written."""

    def stop(record):
        raise Stopped

    with pytest.raises(Stopped):
        run_trainer(config, images, run_dir).fit(on_epoch=stop)


def weights(trainer: Trainer) -> list[torch.Tensor]:
    return [value.clone() for value in trainer.model.state_dict().values()]


def test_a_run_planned_again_after_its_first_epoch_is_repeated_by_its_settings_and_resumes(small_set, tmp_path):
    replanned = run_trainer(onecycle_config(2), small_set, tmp_path / "replanned")
    seen = []

    def replan(train, epoch, seconds):
        seen.append((epoch, seconds))
        if epoch == 1:
            train.epochs, train.provisional_epochs = 3, 2
        return train

    replanned.hooks.replan = replan
    history = replanned.fit()
    assert [epoch for epoch, _ in seen] == [1, 2, 3] and seen[0][1] > 0 and [r.epoch for r in history] == [1, 2, 3]

    repeated = run_trainer(onecycle_config(3, provisional=2), small_set, tmp_path / "repeated")
    repeated.fit()
    assert all(torch.equal(a, b) for a, b in zip(weights(replanned), weights(repeated)))
    laid_out_once = run_trainer(onecycle_config(3), small_set, tmp_path / "once")
    laid_out_once.fit()
    assert not all(torch.equal(a, b) for a, b in zip(weights(replanned), weights(laid_out_once)))

    stopped_after_epoch_1(onecycle_config(3, provisional=2), small_set, tmp_path / "stopped")
    resumed = run_trainer(onecycle_config(3, provisional=2), small_set, tmp_path / "stopped")
    assert resumed.resume() and resumed.epoch == 1
    resumed.fit()
    assert all(torch.equal(a, b) for a, b in zip(weights(replanned), weights(resumed)))


def test_a_run_planned_again_midway_is_repeated_by_its_settings_and_resumes_from_before_that_plan(small_set, tmp_path):
    # planned 3 epochs after the first, 4 after the second and 5 after the third: the schedule is laid out four times
    replanned = run_trainer(onecycle_config(2), small_set, tmp_path / "replanned")

    def replan(train, epoch, seconds):
        if epoch == 1:
            train.epochs, train.provisional_epochs = 3, 2
        elif epoch == 2:
            train.epochs, train.replanned_after, train.epochs_before_replan = 4, (2,), (3,)
        elif epoch == 3:
            train.epochs, train.replanned_after, train.epochs_before_replan = 5, (2, 3), (3, 4)
        return train

    replanned.hooks.replan = replan
    assert [r.epoch for r in replanned.fit()] == [1, 2, 3, 4, 5]
    settings = dict(provisional=2, replanned_after=(2, 3), before_replan=(3, 4))
    repeated = run_trainer(onecycle_config(5, **settings), small_set, tmp_path / "repeated")
    repeated.fit()
    assert all(torch.equal(a, b) for a, b in zip(weights(replanned), weights(repeated)))
    once_only = run_trainer(onecycle_config(5, provisional=2, replanned_after=(2,), before_replan=(3,)), small_set,
                            tmp_path / "once")
    once_only.fit()
    assert not all(torch.equal(a, b) for a, b in zip(weights(replanned), weights(once_only)))

    # Stopped after epoch 1, whose checkpoint holds the plan before the midway one (3 epochs), with the settings
    # already written as the midway plan left them: it continues the saved schedule, and then that plan's.
    stopped_after_epoch_1(onecycle_config(3, provisional=2), small_set, tmp_path / "stopped")
    resumed = run_trainer(onecycle_config(5, **settings), small_set, tmp_path / "stopped")
    assert resumed.resume() and resumed.epoch == 1
    resumed.fit()
    assert all(torch.equal(a, b) for a, b in zip(weights(replanned), weights(resumed)))
    # a one-cycle run asked to run longer than its saved schedule still cannot
    with pytest.raises(ConfigError, match="cannot be extended"):
        run_trainer(onecycle_config(6, **settings), small_set, tmp_path / "stopped").resume()
