"""Every setting of a run, as dataclasses that round-trip through JSON (``config.json`` in a run directory)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aeclust.errors import ConfigError
from aeclust.format_version import FORMAT_VERSION
from aeclust.runtime.io import write_text_atomic

AUTO_K = 0  # ClusterConfig.k that asks for k to be chosen from the data (`--k auto`)


@dataclass
class ModelConfig:
    """The autoencoder and its self-supervised objective."""

    arch: str = "resnet"  # baseline | resnet
    widths: tuple[int, ...] = (32, 64, 128, 256)
    blocks_per_stage: int = 1
    stem_blocks: int = 1  # residual blocks at full resolution (resnet)
    norm: str = "batch"
    activation: str = "relu"
    reconstruction_weight: float = 1.0  # weight of the MSE term
    # Share of each batch whose first views the decoder gives back in training (the reported MSE is always on every
    # image). The decoder pass is 40 % of a default step (docs/results.md, section 23); a part of the batch buys
    # epochs or width for the time it saves.
    reconstruction_share: float = 1.0
    rotation: bool = True  # rotation self-supervision on or off
    rotation_weight: float = 10.0  # β in loss = MSE + β·CE
    contrastive: bool = False  # SimCLR: two augmented views of each image must find each other
    contrastive_weight: float = 1.0
    temperature: float = 0.5
    # With contrastive views: each view's partner, and the views it is told apart from, are encoded by a momentum
    # copy of the encoder and projection head instead of by the trained ones (as MoCo v2 does): each step the copy
    # keeps this share of its weights and takes the rest from the trained ones (MoCo and BYOL use 0.99-0.999), so
    # the partners move slowly and steadily. 0: off (SimCLR's own encoder on both sides).
    momentum: float = 0.0
    min_crop_area: float = 0.25  # smallest share of the image a contrastive view keeps
    colour_strength: float = 0.4  # largest relative change of brightness, contrast and saturation in a view
    hue: float = 0.0  # largest hue shift of a view, as a share of a turn of the colour wheel
    grayscale: float = 0.2  # share of views turned to grey, which makes features lean less on colour
    # Side of each contrastive view in pixels (0: the image's own). Smaller views make a training step cheaper, so
    # more epochs fit the same time; latents are pooled over space, so clustering full-size images still works.
    view_size: int = 0
    # Multi-crop (as SwAV uses it): this many more crops per image, small (small_crop_area..min_crop_area of the
    # image, resized to small_view_size pixels), each of which must find the image's two full views in the batch.
    # Extra positives that cost little to encode; off (0) by default.
    small_views: int = 0
    small_view_size: int = 16
    small_crop_area: float = 0.05
    # With contrastive views: turn both views of an image by the same multiple of 90° and predict it from them,
    # instead of encoding a separately rotated copy of the batch (one encoder pass fewer per step).
    rotate_views: bool = False
    # With contrastive views and a separately rotated batch: the side, in pixels, that batch is resized to before it
    # is turned and encoded (0: the image's own). The rotation task needs only the whole image's layout, and at 24
    # pixels its pass costs about half of a 32-pixel one.
    rotation_size: int = 0


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 1e-5
    flip: bool = False  # random horizontal flips as augmentation
    schedule: str = "constant"  # constant | onecycle (warm up, then anneal the learning rate)
    # The history measures the train MSE (a pass over every train image through encoder and decoder) after every
    # mse_every-th epoch and after the last; 0: after the last only. Likewise the val accuracy (encoding and
    # clustering the val images) after every val_every-th epoch. Neither changes what the model learns.
    mse_every: int = 1
    val_every: int = 1
    # A budgeted run plans its epochs from a few timed steps, then plans again from its first epoch's real time
    # (aeclust.budget.plan). Where the two differ, its first epoch followed the one-cycle schedule laid out for this
    # many epochs, and the rest of the schedule is laid out for ``epochs``; repeating such a run needs both.
    # 0: the schedule is laid out for ``epochs`` from the start.
    provisional_epochs: int = 0
    # It plans again a third and two thirds of the way through, from the epochs' real time so far (an epoch's time
    # drifts from the first's), after each epoch ``replanned_after`` lists. The epochs up to each of those (and
    # after the one before; the first epoch aside, where ``provisional_epochs`` is set) followed the schedule laid
    # out for the matching ``epochs_before_replan``, where 0 says: for as many as the plan after it. Empty: not so
    # planned.
    replanned_after: tuple[int, ...] = ()
    epochs_before_replan: tuple[int, ...] = ()


@dataclass
class ClusterConfig:
    """Latents → reducer → embedder → clusterer."""

    k: int = 2  # AUTO_K (0): chosen from the data within k_min..k_max by k_criterion (aeclust.cluster.choose_k)
    k_min: int = 2
    k_max: int = 30
    k_criterion: str = "silhouette"
    latent: str = "flatten"  # flatten | pool (global average over space)
    scaling: str = "none"  # none | standardize (z-score each feature) | l2 (unit-length rows)
    reducer: str = "kpca"  # none | pca | kpca
    components: int = 200
    kpca_gamma: float | None = None  # None: 1 / n_features, as scikit-learn does
    embedder: str = "tsne"  # none | tsne | sklearn-tsne | umap
    perplexity: float = 30.0
    # kmeans | kmeans-merge (over-cluster, then join neighbouring pieces) | gmm | agglomerative | whitened-kmeans (the
    # vote of k-means on 4, 8 and 16 whitened dimensions) | auto (k-means, or for three clusters or more kmeans-merge
    # where its clusters keep clearly more nearest-neighbour pairs together)
    clusterer: str = "kmeans"


@dataclass
class RefineConfig:
    """Neighbour-consistency fine-tuning of the clusters (SCAN), after training; 0 epochs switches it off."""

    epochs: int = 0
    neighbours: int = 20  # each image is pulled towards the cluster of one of its nearest neighbours in latent space
    entropy_weight: float = 5.0  # weight of the balance term, which keeps every cluster in use
    # What the balance term pulls the cluster sizes towards: "uniform" (SCAN's entropy term: 1/k each), or "prior"
    # (the clustering stage's own cluster sizes, so uneven groups can stay uneven), or "auto" ("prior" where the "auto"
    # clusterer found uneven groups and took kmeans-merge, else "uniform").
    balance: str = "uniform"
    lr: float = 1e-4  # for a copy of the encoder
    head_lr: float = 1e-3  # for the k-way head that starts at the clustering stage's centroids
    batch_size: int = 256
    # At most this many images serve as anchors per epoch (drawn afresh each epoch), so refinement costs the same
    # for any N above it instead of growing with N; every image is still a possible neighbour and is predicted.
    anchors_per_epoch: int = 10_000
    # Find the neighbours again after each epoch, in the space of the encoder as refined so far, whose neighbours
    # share an image's label more often than the trained autoencoder's do.
    remine_neighbours: bool = False
    # Up to this many images, neighbours are found by exact search; above it by an approximate faiss index
    # (aeclust.cluster.neighbours). None: the device's own limit (100,000 on a CPU, 2,000,000 on a GPU).
    exact_search_limit: int | None = None
    # Then self-labelling (SCAN's last step): the images a cluster holds most confidently become targets for a
    # cross-entropy on strongly augmented views of themselves. A share per cluster, not SCAN's fixed probability
    # threshold (0.99): a head on unit latents seldom gets that sure, and a share keeps every cluster represented.
    self_label_epochs: int = 0
    confident_share: float = 0.5

    @property
    def total_epochs(self) -> int:
        return self.epochs + self.self_label_epochs


@dataclass
class RunConfig:
    model_name: str = "improved"
    data: str = "animals-vs-vehicles"
    image_size: int = 32  # side of the square every image is resized (or cropped) to; a multiple of 8
    seed: int = 0
    threads: int = 0  # 0: one per CPU core
    device: str = "auto"  # auto (CUDA when there is a GPU, else the CPU) | cpu | cuda | cuda:N | mps
    # Processes reading training batches beside the one computing (aeclust.data.batches). None: none on a CPU,
    # whose cores the model needs, and a few on a GPU. Results are the same for any number.
    workers: int | None = None
    # The time the run was given (--budget), in seconds; its plan set the epochs (aeclust.budget.plan). 0: no budget.
    budget_seconds: float = 0.0
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        values = dict(values)
        version = values.get("format_version")
        if version != FORMAT_VERSION:
            raise ConfigError(f"configuration format version {version}; expected {FORMAT_VERSION}")
        values["cluster"] = _migrate_cluster(dict(values.get("cluster", {})))
        values["train"] = read_replans(values.get("train", {}))
        sections = {"model": ModelConfig, "train": TrainConfig, "cluster": ClusterConfig, "refine": RefineConfig}
        for key, section in sections.items():
            values[key] = _build(section, values.get(key, {}), key)
        values["model"].widths = tuple(values["model"].widths)
        return _build(cls, values, "run")

    def save(self, path: Path) -> None:
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> RunConfig:
        try:
            values = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ConfigError(f"{path}: expected a run configuration (JSON), could not read it ({error})") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a run configuration (a JSON object), found a {type(values).__name__}")
        try:
            return cls.from_dict(values)
        except (ConfigError, TypeError) as error:  # the message says what is wrong; this adds which file
            raise ConfigError(f"{path}: {error}") from None


def _migrate_cluster(cluster: dict[str, Any]) -> dict[str, Any]:
    """Read settings written by earlier releases of format version 1, so their runs stay reportable and resumable."""
    if "standardize" in cluster:  # a boolean, before `scaling` named the choice
        standardize = cluster.pop("standardize")
        cluster.setdefault("scaling", "standardize" if standardize else "none")
    return cluster


def read_replans(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` (a train section, or a saved budget plan) with its midway plans' epochs as tuples. Those saved
    before a run could plan again more than once midway hold a number each (0: not planned again)."""
    values = dict(values)
    after = values.get("replanned_after", ())
    before = values.get("epochs_before_replan", ())
    if isinstance(after, int):
        after, before = ((after,), (before,)) if after else ((), ())
    values["replanned_after"], values["epochs_before_replan"] = tuple(after), tuple(before)
    return values


def _build(cls: type, values: dict[str, Any], section: str) -> Any:
    if dataclasses.is_dataclass(values):
        return values
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown setting(s) in [{section}]: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return cls(**values)


def with_settings(config: RunConfig, settings: list[str]) -> RunConfig:
    """A copy of ``config`` with ``section.key=value`` items applied, e.g. ``["model.temperature=0.2"]``.

    Each value is read as the type the setting has now (a bool from true/false, a tuple from comma-separated
    items, ``none`` for an unset optional number), so a typo fails here with the setting's name, not deep in a run.
    """
    changed = RunConfig.from_dict(config.to_dict())
    for item in settings:
        path, separator, text = item.partition("=")
        section_name, dot, key = path.partition(".")
        if not separator or not dot:
            raise ConfigError(f"expected a setting as section.key=value (e.g. model.temperature=0.2), found {item!r}")
        section = getattr(changed, section_name, None)
        if not dataclasses.is_dataclass(section):
            known = [
                f.name for f in dataclasses.fields(RunConfig) if dataclasses.is_dataclass(getattr(changed, f.name))
            ]
            raise ConfigError(f"unknown section {section_name!r} in {item!r}; expected one of: {', '.join(known)}")
        fields = {f.name: f for f in dataclasses.fields(section)}
        if key not in fields:
            raise ConfigError(f"unknown setting {path!r}; [{section_name}] has: {', '.join(sorted(fields))}")
        optional = "None" in str(fields[key].type)  # annotations are strings here (postponed evaluation)
        if path == "cluster.k":  # a number or the word auto, as --k takes it
            value = parse_k(text)
        else:
            # A list whose default is empty (a budget's record of its midway plans) may be set to no items.
            may_be_empty = fields[key].default == ()
            unset = optional and text.lower() == "none"
            value = None if unset else _parse_setting(path, text, getattr(section, key), may_be_empty)
        setattr(section, key, value)
    return changed


def setting_text(value: Any) -> str:
    """A setting's value as ``--set`` takes it back: a tuple's items comma-separated."""
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def parse_k(text: str) -> int:
    """A number of clusters as the user writes it: a whole number of at least 2, or ``auto`` (:data:`AUTO_K`)."""
    if text.strip().lower() == "auto":
        return AUTO_K
    try:
        k = int(text)
    except ValueError:
        k = 0
    if k < 2:
        raise ConfigError(f"k: expected a whole number of clusters of at least 2, or auto; found {text!r}")
    return k


def parse_k_range(text: str) -> tuple[int, int]:
    """``LO:HI`` (e.g. ``2:30``) → (LO, HI); whether the range fits the data is checked once the data is loaded."""
    low, _, high = text.partition(":")
    try:
        return int(low), int(high)
    except ValueError:
        raise ConfigError(f"k range: expected LO:HI of whole numbers, e.g. 2:30, found {text!r}") from None


def _parse_setting(path: str, text: str, current: Any, may_be_empty: bool = False) -> Any:
    try:
        if isinstance(current, bool):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        if isinstance(current, tuple):
            if not text.strip() and may_be_empty:
                return ()
            return tuple((type(current[0]) if current else int)(part) for part in text.split(","))
        if current is None:  # an optional number left unset
            return float(text)
        return type(current)(text)
    except (ValueError, IndexError):
        expected = "true or false" if isinstance(current, bool) else f"a value like {current!r}"
        raise ConfigError(f"setting {path}: expected {expected}, found {text!r}") from None
