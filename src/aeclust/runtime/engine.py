"""Where the work runs: a device, mixed precision on it, and the processes torchrun starts.

One :class:`Engine` is made per run and handed to every stage that touches a tensor. In a single process it is a
device and nothing else; under ``torchrun`` it also knows this process's rank and how to gather, reduce and
broadcast across processes (NCCL on CUDA, gloo on a CPU). Every collective here is a no-op in one process, so the
stages call them unconditionally and read the same either way.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from aeclust.errors import AeclustError, CheckpointError

DEVICES = "auto, cpu, cuda, cuda:N or mps"
# The clustering stage (t-SNE, k-means on 50,000 images) runs on rank 0 while the others wait at a collective;
# torch's default 30-minute timeout would kill a long one.
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=6)
# How often a torchrun worker looks for its launcher: a worker left behind stops within about this long.
LAUNCHER_POLL_SECONDS = 1.0


class DeviceError(AeclustError):
    """A device that is not there (no CUDA build, no such GPU, no MPS)."""


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The torch device ``name`` asks for, or :class:`DeviceError` in one line saying what this machine has.

    ``auto`` is CUDA when there is a GPU, else the CPU. Under torchrun, ``cuda`` and ``auto`` mean this process's own
    GPU (``cuda:LOCAL_RANK``), so that each process drives one.
    """
    text = name.strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return torch.device("cpu")
    if text == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceError("--device mps: this machine has no Apple GPU (MPS) that torch can use; try --device cpu")
        return torch.device("mps")
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if match is None:
        raise DeviceError(f"--device {name}: expected {DEVICES}")
    if not torch.cuda.is_available():
        why = "this torch has no CUDA support" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise DeviceError(f"--device {name}: {why}; try --device cpu")
    index = int(match.group(1)) if match.group(1) is not None else local_rank
    count = torch.cuda.device_count()
    if index >= count:
        raise DeviceError(f"--device {name}: no such GPU; this machine has {count} (cuda:0 to cuda:{count - 1})")
    return torch.device("cuda", index)


@dataclass
class Engine:
    """A device and, under torchrun, this process's place among the others."""

    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Only the main process logs and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def describe(self) -> str:
        """Where the run goes, for its first log line: the device, its precision, and the processes."""
        where = str(self.device)
        if self.is_cuda:
            where += f" ({torch.cuda.get_device_name(self.device)}, {str(self.amp_dtype).removeprefix('torch.')})"
        if self.distributed:
            backend = dist.get_backend() if dist.is_initialized() else "?"
            where += f", {self.world_size} processes ({backend})"
        return where

    # -- precision ----------------------------------------------------------------------------------
    @property
    def amp_dtype(self) -> torch.dtype | None:
        """bf16 where the GPU has it (no scaler needed), else fp16; None (full precision) off CUDA, where this
        machine's CPUs have no fast half-precision arithmetic."""
        if not self.is_cuda:
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    def autocast(self) -> contextlib.AbstractContextManager:
        dtype = self.amp_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """fp16 gradients underflow without loss scaling; bf16 and fp32 need none."""
        if self.amp_dtype == torch.float16:
            return torch.amp.GradScaler("cuda")
        return None

    @property
    def fused_optimizer(self) -> bool:
        """Adam's fused kernel (several times faster per step on a CPU) exists for CPUs and CUDA, not everywhere."""
        return self.device.type in ("cpu", "cuda")

    # -- data -----------------------------------------------------------------------------------------
    def images_to_device(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """N×H×W×3 uint8 → N×3×H×W float32 in [-1, 1] on the device, channels-last.

        The bytes travel as uint8 (a quarter of float32) from pinned memory without blocking, and become floats on
        the device.
        """
        tensor = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
        if self.is_cuda:
            tensor = (tensor if tensor.is_pinned() else tensor.pin_memory()).to(self.device, non_blocking=True)
        elif self.device.type != "cpu":
            tensor = tensor.to(self.device)
        tensor = tensor.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
        return tensor.contiguous(memory_format=torch.channels_last)

    def shard(self, count: int) -> slice:
        """This process's contiguous share of ``count`` items, for encoding: the shares cover every item once."""
        per = -(-count // self.world_size)
        return slice(min(count, self.rank * per), min(count, (self.rank + 1) * per))

    # -- collectives (no-ops in one process) ----------------------------------------------------------
    def gather(self, tensor: torch.Tensor, sizes: list[int] | None = None) -> torch.Tensor:
        """Every process's ``tensor`` (their first dimensions may differ), concatenated in rank order, on every
        process; no gradient flows back. ``sizes``: every process's first dimension, when the caller knows them."""
        if not self.distributed:
            return tensor
        return _all_gather_padded(tensor.contiguous(), sizes if sizes is not None else self.sizes(len(tensor)))

    def gather_with_grad(self, tensor: torch.Tensor, sizes: list[int] | None = None) -> torch.Tensor:
        """Every process's ``tensor`` (their first dimensions may differ), concatenated in rank order, with gradients
        flowing back to each process's own rows: what a contrastive loss needs to see every process's negatives.
        ``sizes``: every process's first dimension, when the caller knows them already (:meth:`sizes`)."""
        if not self.distributed:
            return tensor
        sizes = sizes if sizes is not None else self.sizes(len(tensor))
        return _GatherWithGrad.apply(tensor.contiguous(), sizes, self.rank)

    def sizes(self, count: int) -> list[int]:
        """Every process's ``count``, in rank order."""
        if not self.distributed:
            return [count]
        counts = torch.zeros(self.world_size, dtype=torch.long, device=self.collective_device)
        counts[self.rank] = count
        dist.all_reduce(counts)
        return counts.tolist()

    def sum(self, value: float) -> float:
        if not self.distributed:
            return value
        total = torch.tensor([value], dtype=torch.float64, device=self.collective_device)
        dist.all_reduce(total)
        return float(total.item())

    def sum_counts(self, counts: torch.Tensor) -> torch.Tensor:
        """Element-wise sum of every process's ``counts`` (a CPU tensor), on every process."""
        if not self.distributed:
            return counts
        total = counts.to(self.collective_device).clone()
        dist.all_reduce(total)
        return total.cpu()

    def broadcast(self, obj: Any) -> Any:
        """The main process's ``obj`` on every process (anything picklable)."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self.collective_device)
        return box[0]

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in rank order, on every process."""
        if not self.distributed:
            return [obj]
        objects: list[Any] = [None] * self.world_size
        dist.all_gather_object(objects, obj)
        return objects

    def sync_buffers(self, module: torch.nn.Module) -> None:
        """Give every process the main one's buffers (batch norm's running statistics). Each process's last training
        step left its own; encoding with them would make each process's share of the latents come from a slightly
        different model, and one that no checkpoint holds."""
        if self.distributed:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    @property
    def collective_device(self) -> torch.device:
        return self.device if self.is_cuda else torch.device("cpu")

    # -- random views and checkpoints ------------------------------------------------------------------
    def view_generator(self, shared: torch.Generator, seed: int) -> torch.Generator:
        """The generator this process draws its augmented views from: in one process ``shared`` itself (one
        generator for everything, as the run always had); under torchrun one of its own, seeded by the run's seed
        and its rank, while ``shared`` draws only what every process must agree on (the order, the partners)."""
        if not self.distributed:
            return shared
        return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, self.rank]).generate_state(1)[0]))

    def process_state(self, view_generator: torch.Generator) -> dict:
        """What a checkpoint needs to restore every process: their count and each one's view generator."""
        state: dict = {"processes": self.world_size}
        if self.distributed:
            state["view_generators"] = self.gather_objects(view_generator.get_state())
        return state

    def restore_processes(self, path: Path, state: dict, view_generator: torch.Generator) -> None:
        """Restore this process's view generator from a checkpoint written by as many processes; else one line."""
        processes = state.get("processes", 1)
        if processes != self.world_size:
            raise CheckpointError(
                f"{path}: written by {processes} process(es), found {self.world_size} resuming it; resume with "
                + ("`aeclust run --resume`" if processes == 1 else f"`torchrun --nproc_per_node={processes}`")
                + " so every process continues exactly"
            )
        if self.distributed:
            view_generator.set_state(state["view_generators"][self.rank])

    # -- models ---------------------------------------------------------------------------------------
    def prepare(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` on the device, channels-last, its batch norm synchronised across GPUs, wrapped for
        DistributedDataParallel under torchrun. Train through the result; read weights from ``module`` itself."""
        module.to(self.device, memory_format=torch.channels_last)
        if not self.distributed:
            return module
        if self.is_cuda:
            # torch's SyncBatchNorm has no CPU kernel; on gloo each process normalises by its own batch, as SimCLR's
            # per-GPU batch norm did, and DDP broadcasts rank 0's running statistics.
            module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
        device_ids = [self.device.index] if self.is_cuda else None
        return torch.nn.parallel.DistributedDataParallel(module, device_ids=device_ids)


def _all_gather_padded(tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """all_gather of tensors whose first dimensions (``sizes``, in rank order) differ: each is padded to the longest."""
    padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))
    padded[: len(tensor)] = tensor
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([part[:size] for part, size in zip(parts, sizes)])


class _GatherWithGrad(torch.autograd.Function):
    """all_gather (rows padded to the longest share) whose backward sends each process the summed gradient of its
    own rows, as lightly's and solo-learn's gather layers do."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, sizes: list[int], rank: int) -> torch.Tensor:
        ctx.sizes, ctx.rank = sizes, rank
        return _all_gather_padded(tensor, sizes)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        grad = grad.contiguous()
        dist.all_reduce(grad)  # every process's loss reached every process's rows
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None, None


def torchrun_world() -> tuple[int, int, int]:
    """(rank, local rank, world size) as torchrun sets them in the environment; (0, 0, 1) without it."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def watch_parent(on_gone: Callable[[int], None], poll_seconds: float = LAUNCHER_POLL_SECONDS) -> threading.Thread:
    """Call ``on_gone(parent_pid)`` from a background thread once this process's parent has ended (the process is
    then handed to another parent, so its parent id changes). Polled, as torch's DataLoader workers watch theirs:
    no portable signal tells a process that its parent died."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        on_gone(parent)

    thread = threading.Thread(target=watch, name="aeclust-parent-watch", daemon=True)
    thread.start()
    return thread


_launcher_watch: threading.Thread | None = None  # one per process, however many stages start an engine


def _stop_without_launcher(launcher: int) -> None:
    rank = os.environ.get("RANK", "0")
    print(
        f"aeclust: the torchrun launcher (process {launcher}) has ended; process {rank} of the run stops too "
        "(its run directory resumes with --resume)",
        file=sys.stderr,
        flush=True,
    )
    # At once, from this thread, whatever the main thread is in (a collective waits for peers that are stopping
    # too): checkpoints are written atomically, and the kernel lets go of the run directory's lock.
    os._exit(1)


def start_engine(device: str = "auto") -> Engine:
    """The engine for this process: under torchrun (WORLD_SIZE > 1) it joins the process group first.

    A process torchrun started stops when its launcher ends: torchrun starts its workers in sessions of their own,
    so a launcher killed alone (``kill -9``, a scheduler signalling only it) would otherwise leave them training on,
    unseen, and holding the run directory."""
    global _launcher_watch
    if "TORCHELASTIC_RUN_ID" in os.environ and _launcher_watch is None:  # torchrun sets it for the processes it starts
        _launcher_watch = watch_parent(_stop_without_launcher)
    rank, local_rank, world_size = torchrun_world()
    resolved = resolve_device(device, local_rank)
    if world_size > 1:
        if not dist.is_initialized():
            backend = "nccl" if resolved.type == "cuda" else "gloo"
            if resolved.type == "cuda":
                torch.cuda.set_device(resolved)
            dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)
        return Engine(resolved, dist.get_rank(), dist.get_world_size())
    return Engine(resolved)


def stop_engine() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def usable_cores() -> int:
    """CPU cores this process may run on: fewer than the machine has under taskset or a container's CPU set."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def set_threads(threads: int) -> None:
    """Use ``threads`` torch threads, or (0) one per usable core, shared out among the processes torchrun started on
    this machine: more threads than cores make each epoch many times slower."""
    processes_here = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    torch.set_num_threads(threads if threads > 0 else max(1, usable_cores() // processes_here))
