"""The engine (devices, sharing work among processes), the one inference loop, and the one training loop."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from conftest import process_gone, tiny_config

from aeclust.cli import main
from aeclust.nn.models import create_autoencoder
from aeclust.nn.objectives import nt_xent_loss, scan_loss
from aeclust.runtime.engine import DeviceError, Engine, resolve_device
from aeclust.runtime.infer import infer, pooled_unit_latents
from aeclust.runtime.loop import shard_batches

CPU = torch.device("cpu")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks what a machine without CUDA says")


def test_cpu_and_auto_resolve_to_the_cpu_without_a_gpu():
    assert resolve_device("cpu") == CPU
    if not torch.cuda.is_available():
        assert resolve_device("auto") == CPU
    else:
        assert resolve_device("auto").type == "cuda"


@no_cuda
@pytest.mark.parametrize("name", ["cuda", "cuda:1", "CUDA:0"])
def test_cuda_on_a_machine_without_it_is_one_line_naming_the_way_out(name):
    with pytest.raises(DeviceError, match=rf"^--device {name}: (this torch has no CUDA support|no CUDA GPU is visible); try --device cpu$"):
        resolve_device(name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_gpu_that_is_not_there_is_refused_with_the_count():
    count = torch.cuda.device_count()
    with pytest.raises(DeviceError, match=rf"no such GPU; this machine has {count}"):
        resolve_device(f"cuda:{count}")


def test_an_unknown_device_lists_the_choices():
    with pytest.raises(DeviceError, match=r"^--device tpu: expected auto, cpu, cuda, cuda:N or mps$"):
        resolve_device("tpu")


@no_cuda
def test_the_cli_refuses_a_missing_device_with_exit_2_and_no_run_directory(small_hw9_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--data", str(small_hw9_dir), "--device", "cuda", "--out", str(out), "--epochs", "1"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [error[0]] and error[0].startswith("aeclust: error: --device cuda: ")
    assert not out.exists()


def test_images_reach_the_device_scaled_and_channels_last():
    images = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    tensor = Engine(CPU).images_to_device(images)
    assert tensor.shape == (5, 3, 8, 8) and tensor.is_contiguous(memory_format=torch.channels_last)
    expected = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert torch.allclose(tensor, expected, atol=1e-6) and tensor.min() >= -1 and tensor.max() <= 1


@pytest.mark.parametrize("count, world", [(10, 1), (10, 2), (11, 3), (2, 2), (1000, 4)])
def test_shares_cover_every_item_once(count, world):
    shares = [Engine(CPU, rank, world).shard(count) for rank in range(world)]
    covered = [i for share in shares for i in range(count)[share]]
    assert covered == list(range(count))


def test_every_process_takes_a_disjoint_share_of_every_batch_and_a_too_small_tail_is_left_out():
    order = torch.randperm(21, generator=torch.Generator().manual_seed(0))
    alone = list(shard_batches(order, 8, Engine(CPU)))
    assert [len(batch) for batch in alone] == [8, 8, 5]
    three = [list(shard_batches(order, 8, Engine(CPU, rank, 3))) for rank in range(3)]
    assert all(len(batches) == 3 for batches in three)
    for step, batch in enumerate(alone):
        assert torch.equal(torch.cat([three[rank][step] for rank in range(3)]), batch)
    tail = [list(shard_batches(order[:17], 8, Engine(CPU, rank, 2))) for rank in range(2)]
    assert [len(batches) for batches in tail] == [2, 2]  # a last batch of 1 image cannot feed 2 processes


def test_inference_gives_what_the_model_gives_and_leaves_its_mode_alone(small_set):
    torch.manual_seed(0)
    model = create_autoencoder(tiny_config().model).train()
    head = torch.nn.Linear(model.latent_shape[0], 3)
    images = small_set.train_images[:37]
    got = infer(model, images, ("latents", "pooled", "reconstructions", "probabilities", "mse"), head=head, batch_size=16)
    assert model.training and head.training
    model.eval()
    with torch.no_grad():
        batch = Engine(CPU).images_to_device(images)
        latent = model.encode(batch)
        reconstruction = model.decode(latent)
    assert torch.allclose(torch.from_numpy(got.latents), latent, atol=1e-5)
    assert torch.allclose(got.pooled, pooled_unit_latents(latent), atol=1e-5)
    assert torch.allclose(got.reconstructions, reconstruction, atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(got.probabilities, head(got.pooled).softmax(1), atol=1e-5)
    assert got.mse == pytest.approx(float(((reconstruction - batch) ** 2).mean()), rel=1e-5)


def test_latents_written_to_a_file_equal_those_kept_in_memory_and_leave_no_temporary(small_set, tmp_path):
    torch.manual_seed(0)
    model = create_autoencoder(tiny_config().model)
    images = small_set.train_images[:37]
    in_memory = infer(model, images, ("latents", "mse"), batch_size=4)
    target = tmp_path / "arrays" / "train_latents.npy"
    on_disk = infer(model, images, ("latents", "mse"), batch_size=4, latents_file=target)
    assert isinstance(on_disk.latents, np.memmap) and Path(on_disk.latents.filename) == target
    assert np.array_equal(on_disk.latents, in_memory.latents) and on_disk.mse == in_memory.mse
    assert np.array_equal(np.load(target), in_memory.latents)
    assert [path.name for path in target.parent.iterdir()] == ["train_latents.npy"]


def test_an_interrupted_encoding_leaves_neither_a_latents_file_nor_a_temporary(small_set, tmp_path):
    class Failing(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner, self.batches = create_autoencoder(tiny_config().model), 0

        def encode(self, batch: torch.Tensor) -> torch.Tensor:
            self.batches += 1
            if self.batches == 3:
                raise KeyboardInterrupt
            return self.inner.encode(batch)

    target = tmp_path / "train_latents.npy"
    with pytest.raises(KeyboardInterrupt):
        infer(Failing(), small_set.train_images[:20], batch_size=4, latents_file=target)
    assert list(tmp_path.iterdir()) == []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _gradients_in_two_processes(rank: int, port: int, inputs: torch.Tensor, out: str) -> None:
    """Each process takes its half of the batch, as training does, and averages gradients as DDP does."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    engine = Engine(CPU, rank, 2)
    layer = _layer()
    images = inputs.shape[1]
    share = slice(rank * images // 2, (rank + 1) * images // 2)
    first, second = layer(inputs[0][share]), layer(inputs[1][share])
    loss = nt_xent_loss(first, second, 0.5, engine) + scan_loss(first[:, :3], second[:, :3], 2.0, engine=engine)
    loss = loss + nt_xent_loss(first, second, 0.5, engine, keys=_keys(inputs[:, share]))
    loss.backward()
    dist.all_reduce(layer.weight.grad)
    layer.weight.grad /= 2
    if rank == 0:
        torch.save(layer.weight.grad, out)
    dist.destroy_process_group()


def _layer(seed: int = 0) -> torch.nn.Linear:
    torch.manual_seed(seed)
    return torch.nn.Linear(6, 5)


def _keys(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The views as another layer (a momentum copy's stand-in) sees them, without gradients."""
    with torch.no_grad():
        key_layer = _layer(seed=1)
        return key_layer(inputs[0]), key_layer(inputs[1])


def test_two_processes_get_the_gradient_of_one_large_batch(tmp_path):
    """Gathering with gradients makes the contrastive loss and SCAN's balance term see every process's images; the
    contrastive loss against momentum keys sees every process's keys."""
    inputs = torch.randn(2, 12, 6, generator=torch.Generator().manual_seed(1))
    layer = _layer()
    first, second = layer(inputs[0]), layer(inputs[1])
    loss = nt_xent_loss(first, second, 0.5) + scan_loss(first[:, :3], second[:, :3], 2.0)
    (loss + nt_xent_loss(first, second, 0.5, keys=_keys(inputs))).backward()
    out = str(tmp_path / "grad.pt")
    mp.start_processes(_gradients_in_two_processes, args=(_free_port(), inputs, out), nprocs=2, start_method="spawn")
    assert torch.allclose(torch.load(out), layer.weight.grad, atol=1e-6)


# A process that watches its parent, and says when the parent is gone; then a parent that starts it and waits.
WATCHING = """
import os, sys, time
from aeclust.runtime.engine import watch_parent

def parent_gone(parent):
    print(f"parent {parent} gone", flush=True)
    os._exit(3)

watch_parent(parent_gone, poll_seconds=0.05)
print("watching", flush=True)
time.sleep(120)
"""
PARENT = """
import subprocess, sys
with open(sys.argv[2], "w") as said:
    child = subprocess.Popen([sys.executable, "-c", sys.argv[1]], stdout=said)
print(child.pid, flush=True)
child.wait()
"""


def test_a_process_stops_when_its_parent_ends_and_not_before(tmp_path):
    said = tmp_path / "said.txt"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, WATCHING, str(said)], stdout=subprocess.PIPE, text=True)
    watching = int(parent.stdout.readline())
    try:
        deadline = time.monotonic() + 60
        while not (said.is_file() and "watching" in said.read_text()):
            assert time.monotonic() < deadline, "the watching process never started watching"
            time.sleep(0.05)
        time.sleep(0.5)  # ten polls with its parent alive
        assert said.read_text() == "watching\n" and not process_gone(watching)
        parent.kill()  # as a torchrun launcher killed alone
        parent.wait()
        deadline = time.monotonic() + 10
        while not process_gone(watching):
            assert time.monotonic() < deadline, "the process went on after its parent ended"
            time.sleep(0.05)
        assert said.read_text() == f"watching\nparent {parent.pid} gone\n"
    finally:
        if not process_gone(watching):
            os.kill(watching, signal.SIGKILL)


def test_a_process_started_by_torchrun_watches_its_launcher_once(monkeypatch):
    import aeclust.runtime.engine

    watched = []
    monkeypatch.setattr(aeclust.runtime.engine, "_launcher_watch", None)
    monkeypatch.setattr(aeclust.runtime.engine, "watch_parent", lambda on_gone: watched.append(on_gone) or "thread")
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    aeclust.runtime.engine.start_engine("cpu")
    assert watched == []  # not under torchrun: nothing to watch
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    aeclust.runtime.engine.start_engine("cpu")
    aeclust.runtime.engine.start_engine("cpu")  # training, then refinement, each start an engine
    assert watched == [aeclust.runtime.engine._stop_without_launcher]
