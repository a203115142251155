"""A run directory's layout: the name of every file a run leaves behind, and every read and write of them.

    RUN_DIR/
        config.json            the run's settings (:class:`~aeclust.config.RunConfig`)
        metrics.json           scores, cluster sizes and timings
        prediction.csv         id,label: the cluster of every train image
        history.csv            one :class:`EpochRecord` per trained epoch
        checkpoints/last.pt    everything needed to resume training
        checkpoints/epoch_NNN.pt, checkpoints/refine.pt
        arrays/NAME.npy        one per name in :data:`ARRAY_NAMES`
        centres.npz            where no refined head assigns: the train clusters' centres, for ``aeclust predict``

Every write goes through :mod:`aeclust.runtime.io`, so a run stopped at any moment leaves each file whole or absent.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import fields
from datetime import datetime
from pathlib import Path

import numpy as np

from aeclust.config import RunConfig
from aeclust.data.images import load_npy
from aeclust.encoders.records import CHECKPOINT_FOLDER, LAST_CHECKPOINT, EpochRecord, epoch_checkpoint
from aeclust.errors import RunDirError
from aeclust.format_version import FORMAT_VERSION
from aeclust.refine.records import REFINE_CHECKPOINT
from aeclust.runtime.io import copy_file_atomic, save_npy_atomic, write_text_atomic

# What flock answers on a file system that has no such locks (some network file systems).
UNLOCKABLE = (errno.ENOLCK, errno.EINVAL, errno.EOPNOTSUPP)

try:
    import fcntl
except ImportError:  # Windows: no advisory locks on directories; a run there is not guarded against a second writer
    fcntl = None

__all__ = [
    "ARRAY_NAMES",
    "FORMAT_VERSION",
    "PREDICT_NEEDS",
    "RECLUSTER_COPIES",
    "RECLUSTER_NEEDS",
    "REPORT_NEEDS",
    "RunDir",
]

# Paths inside a run directory, relative to it: the form in which error messages name what is missing.
_CONFIG = "config.json"
_METRICS = "metrics.json"
_BUDGET = "budget.json"
_PREDICTION = "prediction.csv"
_HISTORY = "history.csv"
_CHECKPOINTS = CHECKPOINT_FOLDER
_LAST_CHECKPOINT = LAST_CHECKPOINT
_REFINE_CHECKPOINT = REFINE_CHECKPOINT
_ARRAYS = "arrays"
_CENTRES = "centres.npz"

# The arrays a run saves; val_* only when its data has val images.
ARRAY_NAMES = (
    "train_latents", "val_latents", "train_embedding", "train_clusters", "val_embedding", "val_clusters",
    "confidence",  # a predict directory's: how surely (or how near its centre) each image sits in its cluster
)  # fmt: skip


def _array_file(name: str) -> str:
    if name not in ARRAY_NAMES:
        raise ValueError(f"unknown run array {name!r}; expected one of: {', '.join(ARRAY_NAMES)}")
    return f"{_ARRAYS}/{name}.npy"


# What a finished run must hold for the report to read it.
REPORT_NEEDS = (
    _CONFIG, _METRICS, _HISTORY, _LAST_CHECKPOINT, _array_file("train_embedding"), _array_file("train_clusters")
)  # fmt: skip
# What a finished run must hold for recluster to re-cut it, and what the new run directory takes over from it
# (the history and the model, so the new directory reports like a run).
RECLUSTER_NEEDS = (_CONFIG, _METRICS, _LAST_CHECKPOINT)
RECLUSTER_COPIES = (_HISTORY, _LAST_CHECKPOINT)
# What a finished run must hold for predict to assign new images to its clusters.
PREDICT_NEEDS = (_CONFIG, _METRICS, _LAST_CHECKPOINT, _array_file("train_clusters"))


class RunDir:
    """One run directory (``path``): where each of its files lives, and how each is read and written."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @classmethod
    def create_new(cls, out: str | os.PathLike[str] | None, model_name: str) -> RunDir:
        """Make a directory that did not exist: ``out`` itself, or ``out-2``, ``out-3``… beside it, so an earlier run
        is never written into; without ``out``, ``runs/MODEL_NAME-YYYYmmdd-HHMMSS``."""
        wanted = Path(out) if out is not None else Path("runs") / f"{model_name}-{datetime.now():%Y%m%d-%H%M%S}"
        candidate, number = wanted, 1
        while True:
            try:  # mkdir, not a check beforehand, decides: another process may take a name at the same moment
                candidate.mkdir(parents=True)
                break
            except FileExistsError:
                number += 1
                candidate = wanted.with_name(f"{wanted.name}-{number}")
        if candidate != wanted:
            # As aeclust.encoders.autoencoder.log writes; train imports this module, so its log cannot be imported here.
            print(
                f"{wanted} exists already; writing this run to {candidate} instead "
                "(--resume continues it, --force replaces it)",
                file=sys.stderr,
                flush=True,
            )
        return cls(candidate)

    @contextlib.contextmanager
    def held(self) -> Iterator[RunDir]:
        """This process's claim on the directory while it writes there: a second run or resume of the directory,
        started while another process still writes or reads it, is refused (:class:`RunDirError`) rather than let
        both write the same checkpoints.

        The claim is an advisory lock on the directory itself, so it adds no file, and the kernel drops it when the
        process ends, however it ends: a killed run leaves nothing to clear away before it is resumed.
        """
        with self._locked(shared=False):
            yield self

    @contextlib.contextmanager
    def read_held(self) -> Iterator[RunDir]:
        """A reader's claim (recluster, report, predict) while it reads the finished run: any number of readers at
        once, but not while a run or resume writes the directory, whose files would change under them; and a resume
        started meanwhile is refused until the readers are done."""
        with self._locked(shared=True):
            yield self

    @contextlib.contextmanager
    def _locked(self, shared: bool) -> Iterator[None]:
        if fcntl is None:
            yield
            return
        handle = os.open(self.path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(handle, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except BlockingIOError:
                if shared:
                    raise RunDirError(
                        f"{self.path}: another aeclust process is writing this run directory (a run or resume of "
                        "it); let it finish, then read it"
                    ) from None
                raise RunDirError(
                    f"{self.path}: another aeclust process is writing this run directory, or reading it (a run or "
                    "resume, or a recluster, report or predict of it); let it finish or stop it, then resume"
                ) from None
            except OSError as error:
                if error.errno not in UNLOCKABLE:
                    raise
                # A file system without such locks (some network ones): the run goes on unguarded, as before.
            yield
        finally:
            os.close(handle)  # closing the descriptor lets go of the lock

    # -- where each file lives ---------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.path / _CONFIG

    @property
    def metrics(self) -> Path:
        return self.path / _METRICS

    @property
    def prediction(self) -> Path:
        return self.path / _PREDICTION

    @property
    def history(self) -> Path:
        return self.path / _HISTORY

    @property
    def checkpoints(self) -> Path:
        return self.path / _CHECKPOINTS

    @property
    def last_checkpoint(self) -> Path:
        return self.path / _LAST_CHECKPOINT

    @property
    def budget(self) -> Path:
        """budget.json: a budgeted run's plan (aeclust.budget.plan)."""
        return self.path / _BUDGET

    @property
    def centres(self) -> Path:
        """centres.npz: the nearest-centre assigner by which predict places new images (aeclust.pipeline.predict)."""
        return self.path / _CENTRES

    @property
    def refine_checkpoint(self) -> Path:
        return self.path / _REFINE_CHECKPOINT

    def epoch_checkpoint(self, epoch: int) -> Path:
        return epoch_checkpoint(self.path, epoch)

    def array(self, name: str) -> Path:
        """``arrays/NAME.npy``; ``name`` must be one of :data:`ARRAY_NAMES`."""
        return self.path / _array_file(name)

    # -- whole-directory checks ----------------------------------------------------------------------
    def check_finished(self, needs: Sequence[str]) -> RunDir:
        """This run directory, once it holds every file of ``needs`` (e.g. :data:`REPORT_NEEDS`); else
        :class:`RunDirError` in one line naming what is missing."""
        if not self.path.is_dir():
            found = "a file" if self.path.exists() else "nothing there"
            raise RunDirError(f"{self.path}: expected a finished aeclust run directory, found {found}")
        missing = [name for name in needs if not (self.path / name).is_file()]
        if missing:
            raise RunDirError(f"{self.path}: expected a finished aeclust run directory; missing {', '.join(missing)}")
        return self

    def copy_from(self, source: RunDir, names: Sequence[str]) -> None:
        """Copy those of ``names`` (e.g. :data:`RECLUSTER_COPIES`) that ``source`` holds, keeping their timestamps."""
        for name in names:
            original = source.path / name
            if not original.is_file():
                continue
            copy_file_atomic(original, self.path / name)
            shutil.copystat(original, self.path / name)

    # -- reads and writes ----------------------------------------------------------------------------
    def read_config(self) -> RunConfig:
        """The run's settings; a config.json of another format version is refused in one line."""
        return RunConfig.load(self.config)

    def write_config(self, config: RunConfig) -> None:
        config.save(self.config)

    def read_metrics(self) -> dict:
        """metrics.json as a dict, or one RunDirError line saying why it cannot be read."""
        path = self.metrics
        try:
            metrics = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RunDirError(f"{path}: expected aeclust's metrics (JSON), could not read it ({error})") from None
        if not isinstance(metrics, dict):
            raise RunDirError(f"{path}: expected aeclust's metrics (a JSON object), found a {type(metrics).__name__}")
        return metrics

    def write_metrics(self, metrics: dict) -> None:
        write_text_atomic(self.metrics, json.dumps(metrics, indent=2) + "\n")

    def read_history(self) -> list[EpochRecord]:
        """history.csv's rows, or one RunDirError line saying why it cannot be read."""
        types = {f.name: f.type for f in fields(EpochRecord)}
        try:
            with self.history.open(newline="") as handle:
                rows = list(csv.DictReader(handle))
            return [
                EpochRecord(**{k: (int(v) if types[k] in ("int", int) else float(v)) for k, v in row.items()})
                for row in rows
            ]
        except (OSError, KeyError, TypeError, ValueError) as error:
            raise RunDirError(
                f"{self.history}: expected aeclust's per-epoch history, could not read it ({error})"
            ) from None

    def write_history(self, records: Sequence[EpochRecord]) -> None:
        names = [f.name for f in fields(EpochRecord)]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(names)
        for record in records:
            values = [getattr(record, name) for name in names]
            writer.writerow([f"{value:.6g}" if isinstance(value, float) else value for value in values])
        write_text_atomic(self.history, buffer.getvalue())

    def write_prediction(self, ids: Sequence[str], clusters: np.ndarray) -> None:
        """prediction.csv: a header ``id,label``, then each train image's id and cluster."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["id", "label"])
        writer.writerows(zip(ids, clusters.tolist()))
        write_text_atomic(self.prediction, buffer.getvalue())

    def read_prediction_ids(self, count: int) -> list[str] | None:
        """The ids column of prediction.csv (file paths in the folder or archive, or indices), checked to hold
        ``count`` rows; None without the file, which runs of earlier releases lack."""
        path = self.prediction
        if not path.is_file():
            return None
        try:
            with path.open(newline="") as handle:
                rows = list(csv.reader(handle))
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            raise RunDirError(f"{path}: expected aeclust's predictions (CSV), could not read it ({error})") from None
        if not rows or rows[0] != ["id", "label"] or len(rows) - 1 != count or any(len(row) != 2 for row in rows[1:]):
            raise RunDirError(
                f"{path}: expected a header id,label and {count} rows of two cells, one per clustered train image; "
                f"found {max(len(rows) - 1, 0)} rows"
            )
        return [row[0] for row in rows[1:]]

    def save_array(self, name: str, array: np.ndarray) -> None:
        """Write ``arrays/NAME.npy`` atomically. An array memory-mapped from a whole .npy file (latents written
        straight to disk) is copied file to file, never read into memory; one mapped from this very file is
        already saved."""
        target = self.array(name)
        mapped = whole_npy_file(array)
        if mapped is None:
            save_npy_atomic(target, array)
        elif not (target.is_file() and mapped.samefile(target)):
            copy_file_atomic(mapped, target)

    def load_array(self, name: str, mmap: bool = False) -> np.ndarray:
        """``arrays/NAME.npy`` (``mmap``: memory-mapped read-only, for arrays larger than memory), or an InputError
        line naming the file when it is missing or unreadable."""
        return load_npy(self.array(name), name.replace("_", " "), mmap=mmap)


def whole_npy_file(array: np.ndarray) -> Path | None:
    """The .npy file ``array`` maps in whole (as ``np.load(path, mmap_mode=...)`` returns it), else None."""
    if not isinstance(array, np.memmap) or not array.filename:
        return None
    path = Path(array.filename)
    try:
        whole = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    # A slice of a memory-mapped array keeps its file's name: only the whole array, with its header's layout, is it.
    same = whole.shape == array.shape and whole.dtype == array.dtype and whole.offset == array.offset
    return path if same else None
