"""Neighbour-consistency refinement: its parts by hand, and as a resumable, deterministic stage of a run."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config

import aeclust.refine.scan
from aeclust.cluster.neighbours import nearest_neighbours
from aeclust.config import RefineConfig
from aeclust.errors import CheckpointError, RunDirError
from aeclust.nn.objectives import scan_loss, self_label_weights
from aeclust.pipeline.run import run, run_trainer
from aeclust.refine.head import FeatureRefiner
from aeclust.refine.scan import head_from_clusters, load_refined, refine_clusters, refiner_for
from aeclust.runtime.infer import infer


def _unit(n, d=5, seed=0):
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def test_head_starts_at_the_nearest_centroid():
    features = torch.cat(
        [_unit(20) + torch.tensor([3.0, 0, 0, 0, 0]), _unit(20, seed=1) - torch.tensor([3.0, 0, 0, 0, 0])]
    )
    features = F.normalize(features, dim=1)
    clusters = np.array([0] * 20 + [1] * 20)
    head = head_from_clusters(features, clusters, 2)
    assert np.array_equal(head(features).argmax(1).numpy(), clusters)


def test_an_empty_cluster_gets_a_neutral_centroid():
    head = head_from_clusters(_unit(6), np.zeros(6, dtype=int), 3)
    assert torch.isfinite(head.weight).all() and torch.equal(head.weight[1:], torch.zeros(2, 5))


def test_scan_loss_by_hand():
    agree = torch.tensor([[5.0, -5.0], [-5.0, 5.0]])
    disagree = agree.flip(1)
    # Consistency −log⟨p, q⟩ is near 0 when partners agree confidently, large when they disagree.
    assert scan_loss(agree, agree, 0.0).item() < 1e-3
    assert scan_loss(agree, disagree, 0.0).item() > 5
    # The entropy term rewards using both clusters: log 2 for an even split.
    assert scan_loss(agree, agree, 1.0).item() == pytest.approx(
        scan_loss(agree, agree, 0.0).item() - np.log(2), abs=1e-6
    )


def _refiner(small_set, trained, tmp_path, epochs, self_label_epochs=0, confident_share=0.5, remine=False):
    config = tiny_config()
    config.refine.epochs, config.refine.neighbours, config.refine.batch_size = epochs, 5, 64
    config.refine.remine_neighbours = remine
    config.refine.self_label_epochs, config.refine.confident_share = self_label_epochs, confident_share
    clusters = np.arange(len(small_set.train_images)) % 2
    return refiner_for(trained.model, small_set, config, clusters, tmp_path, trained.epoch)


@pytest.mark.parametrize("remine", [False, True])
def test_refinement_resumes_exactly_and_leaves_the_autoencoder_alone(small_set, tmp_path, remine):
    trained = run_trainer(tiny_config(epochs=1), small_set, tmp_path / "train")
    trained.fit()
    before = {name: value.clone() for name, value in trained.model.state_dict().items()}
    straight = _refiner(small_set, trained, tmp_path / "a", epochs=3, remine=remine).fit(log=lambda _: None)
    _refiner(small_set, trained, tmp_path / "b", epochs=3, remine=remine).fit(log=lambda _: None, until=1)
    resumed = _refiner(small_set, trained, tmp_path / "b", epochs=3, remine=remine)
    assert resumed.resume() and resumed.epoch == 1
    again = resumed.fit(log=lambda _: None)
    assert np.array_equal(again.train_clusters, straight.train_clusters)
    np.testing.assert_array_equal(again.val_features, straight.val_features)
    assert all(torch.equal(before[name], value) for name, value in trained.model.state_dict().items())


def test_self_labelling_follows_and_resumes_exactly_across_the_switch(small_set, tmp_path):
    trained = run_trainer(tiny_config(epochs=1), small_set, tmp_path / "train")
    trained.fit()
    log = []
    straight = _refiner(small_set, trained, tmp_path / "a", 1, self_label_epochs=2).fit(log.append)
    assert [line.split()[1] for line in log] == ["neighbour", "self-labelling", "self-labelling"]
    _refiner(small_set, trained, tmp_path / "b", 1, self_label_epochs=2).fit(lambda _: None, until=1)
    resumed = _refiner(small_set, trained, tmp_path / "b", 1, self_label_epochs=2)
    assert resumed.resume() and resumed.epoch == 1
    again = resumed.fit(log=lambda _: None)
    assert np.array_equal(again.train_clusters, straight.train_clusters)
    np.testing.assert_array_equal(again.train_features, straight.train_features)


def test_self_labelling_takes_each_clusters_most_confident_share(small_set, tmp_path):
    trained = run_trainer(tiny_config(epochs=1), small_set, tmp_path / "train")
    trained.fit()
    refiner = _refiner(small_set, trained, tmp_path, 0, self_label_epochs=1, confident_share=0.25)
    chosen, targets = refiner.confident_assignments()
    with torch.no_grad():
        probabilities = refiner.head(refiner.encode_pooled(small_set.train_images)).softmax(1)
    confidence, clusters = probabilities.max(1)
    assert torch.equal(targets, clusters[chosen])
    for cluster in (0, 1):
        members = clusters == cluster
        held = chosen[targets == cluster]
        assert len(held) == -(-int(members.sum()) // 4)  # a quarter, rounded up
        others = members.clone()
        others[held] = False
        assert confidence[held].min() >= confidence[others].max()  # nobody left out is surer than one taken
    # Training on them moves the encoder and the head.
    before = [p.clone() for p in [*refiner.model.parameters(), *refiner.head.parameters()]]
    loss, sizes = refiner.self_label_one_epoch()
    assert loss > 0 and sizes == [int((targets == c).sum()) for c in (0, 1)]
    after = [*refiner.model.parameters(), *refiner.head.parameters()]
    assert not all(torch.equal(b, a) for b, a in zip(before, after, strict=True))


def test_anchors_per_epoch_bound_the_work_of_an_epoch(small_set, tmp_path):
    trained = run_trainer(tiny_config(epochs=1), small_set, tmp_path / "train")
    trained.fit()
    refiner = _refiner(small_set, trained, tmp_path, epochs=1)
    refiner.settings.anchors_per_epoch, refiner.settings.batch_size = 64, 32
    steps = []
    step = refiner.optimizer.step
    refiner.optimizer.step = lambda *a, **kw: steps.append(1) or step(*a, **kw)
    _, sizes = refiner.train_one_epoch()
    assert len(steps) == 2 and sum(sizes) == 64  # 64 of the 240 images, in two batches


def test_a_refinement_checkpoint_of_a_shorter_training_is_not_resumed(small_set, tmp_path):
    trained = run_trainer(tiny_config(epochs=1), small_set, tmp_path / "train")
    trained.fit()
    _refiner(small_set, trained, tmp_path, epochs=1).fit(log=lambda _: None)
    trained.epoch = 2  # as if the run had since been trained one epoch further
    assert not _refiner(small_set, trained, tmp_path, epochs=1).resume()


def test_a_refinement_places_other_images_and_is_loaded_back_from_its_directory(small_set, tmp_path):
    trained = run_trainer(tiny_config(epochs=1), small_set, tmp_path / "train")
    trained.fit()
    refiner = _refiner(small_set, trained, tmp_path / "run", epochs=1)
    refined = refiner.fit(log=lambda _: None)
    np.testing.assert_array_equal(refiner.predict(small_set.val_images), refined.val_clusters)
    loaded = load_refined(tmp_path / "run", trained.model, epochs=1)
    probabilities = infer(loaded, small_set.val_images, ("probabilities",), head=loaded.head).probabilities
    np.testing.assert_array_equal(probabilities.argmax(1).numpy(), refined.val_clusters)
    assert load_refined(tmp_path / "run", trained.model, epochs=2) is None  # stopped before its last epoch
    assert load_refined(tmp_path / "nowhere", trained.model, epochs=1) is None


def test_refine_clusters_works_outside_a_run_and_writes_nothing(small_set, tmp_path, monkeypatch):
    trained = run_trainer(tiny_config(epochs=1), small_set, tmp_path / "train")
    trained.fit()
    in_a_run = _refiner(small_set, trained, tmp_path / "run", epochs=1).fit(log=lambda _: None)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = tiny_config()
    config.refine.epochs, config.refine.neighbours, config.refine.batch_size = 1, 5, 64
    alone = refine_clusters(
        trained.model, small_set, config, np.arange(len(small_set.train_images)) % 2, log=lambda _: None
    )
    assert np.array_equal(alone.train_clusters, in_a_run.train_clusters)  # the same answer, with or without a run
    assert list(elsewhere.iterdir()) == []
    with pytest.raises(ValueError, match="3 initial cluster labels for 240 train images"):
        refine_clusters(trained.model, small_set, config, np.zeros(3, dtype=int))


def test_a_foreign_file_is_refused_as_a_refinement_checkpoint(small_set, tmp_path):
    trained = run_trainer(tiny_config(epochs=1), small_set, tmp_path / "train")
    trained.fit()
    (tmp_path / "checkpoints").mkdir()
    torch.save({"kind": "something-else"}, tmp_path / "checkpoints" / "refine.pt")
    with pytest.raises(CheckpointError, match="refine.pt: expected an aeclust refinement checkpoint, found another"):
        _refiner(small_set, trained, tmp_path, epochs=1).resume()


def test_a_run_with_refinement_reports_both_and_is_deterministic(small_set, tmp_path):
    config = tiny_config(epochs=1)
    config.refine.epochs, config.refine.neighbours = 1, 5
    first = run(config, tmp_path / "a", images=small_set)
    second = run(config, tmp_path / "b", images=small_set)
    assert (first.run_dir / "prediction.csv").read_bytes() == (second.run_dir / "prediction.csv").read_bytes()
    metrics = json.loads((first.run_dir / "metrics.json").read_text())
    for key in ("train_accuracy_before_refine", "val_accuracy_before_refine", "train_accuracy", "val_accuracy"):
        assert 0.5 <= metrics[key] <= 1
    assert metrics["timings"]["refine_seconds"] > 0
    assert (first.run_dir / "checkpoints" / "refine.pt").is_file()
    clusters = np.load(first.run_dir / "arrays" / "train_clusters.npy")
    predicted = [int(line.split(",")[1]) for line in (first.run_dir / "prediction.csv").read_text().splitlines()[1:]]
    assert predicted == clusters.tolist()


def test_refinement_draws_views_as_the_model_was_trained_to(small_set, tmp_path, monkeypatch):
    trained = run_trainer(tiny_config(epochs=1), small_set, tmp_path / "train")
    trained.fit()
    config = tiny_config()
    config.model.min_crop_area, config.model.colour_strength, config.model.hue = 0.6, 0.1, 0.05
    config.refine.epochs, config.refine.self_label_epochs, config.refine.neighbours = 1, 1, 5
    seen = []
    real_view = aeclust.refine.scan.contrastive_view
    monkeypatch.setattr(
        aeclust.refine.scan,
        "contrastive_view",
        lambda images, generator, settings: seen.append(settings) or real_view(images, generator, settings),
    )
    refiner_for(trained.model, small_set, config, np.arange(len(small_set.train_images)) % 2).fit(
        log=lambda _: None
    )
    assert seen and all((s.min_crop_area, s.colour_strength, s.hue) == (0.6, 0.1, 0.05) for s in seen)


def test_remining_takes_the_neighbours_of_the_refined_encoder(small_set, tmp_path):
    trained = run_trainer(tiny_config(epochs=1), small_set, tmp_path / "train")
    trained.fit()
    kept = _refiner(small_set, trained, tmp_path / "a", epochs=2)
    first = kept.neighbours.clone()
    kept.fit(log=lambda _: None, until=1)
    assert torch.equal(kept.neighbours, first)
    remined = _refiner(small_set, trained, tmp_path / "b", epochs=2, remine=True)
    assert torch.equal(remined.neighbours, first)
    remined.fit(log=lambda _: None, until=1)
    expected = nearest_neighbours(remined.encode_pooled(small_set.train_images), 5)
    assert torch.equal(remined.neighbours, expected) and not torch.equal(remined.neighbours, first)


def test_prior_balance_holds_uneven_shares_where_the_entropy_term_pulls_them_even():
    counts = [70, 20, 10]  # a batch that puts 70 % of its images in cluster 0, 20 % in 1 and 10 % in 2
    logits = torch.cat([torch.full((n, 3), -1.0).index_fill_(1, torch.tensor([c]), 1.0) for c, n in enumerate(counts)])
    logits.requires_grad_(True)
    clusters = np.repeat([0, 1, 2], counts)
    assert torch.allclose(aeclust.refine.scan.target_shares(clusters, 3, "prior"), torch.tensor([71.0, 21.0, 11.0]) / 103)
    assert aeclust.refine.scan.target_shares(clusters, 3, "uniform") is None

    def growth_of_cluster_0(weight, target=None):
        logits.grad = None
        scan_loss(logits, logits.detach(), weight, target).backward()
        return -logits.grad[:, 0].sum().item()  # gradient descent raises cluster 0's logits by this much

    consistency_alone = growth_of_cluster_0(0.0)
    # SCAN's entropy term shrinks the big cluster; KL to the batch's own shares leaves it where it is.
    assert growth_of_cluster_0(5.0) - consistency_alone < -0.1
    own_shares = logits.softmax(1).mean(0).detach()
    assert growth_of_cluster_0(5.0, own_shares) == pytest.approx(consistency_alone, abs=1e-5)
    # With uniform targets the KL form is the entropy form plus the constant log k.
    even = torch.full((3,), 1 / 3)
    assert scan_loss(logits, logits, 5.0, even).item() == pytest.approx(
        scan_loss(logits, logits, 5.0).item() + 5.0 * np.log(3), abs=1e-4
    )


def test_an_unknown_balance_is_refused_before_training(small_set, tmp_path):
    from aeclust.errors import ConfigError

    config = tiny_config()
    config.refine.epochs, config.refine.balance = 1, "even"
    with pytest.raises(ConfigError, match="refine balance"):
        run(config, tmp_path / "run", images=small_set)
    assert not (tmp_path / "run").exists()


def test_self_labelling_weighs_each_cluster_by_its_target_over_its_confident_share():
    sizes = torch.tensor([60, 30, 10, 0])
    # Uniform targets (SCAN): the inverse of each cluster's share over k; an empty cluster weighs nothing.
    assert torch.allclose(self_label_weights(sizes, None), torch.tensor([100 / 240, 100 / 120, 100 / 40, 0]))
    # Targets equal to the confident shares weigh every non-empty cluster alike.
    prior = torch.tensor([0.6, 0.3, 0.1, 0.0])
    assert torch.allclose(self_label_weights(sizes, prior), torch.tensor([1.0, 1.0, 1.0, 0.0]))


def test_many_small_clusters_get_fewer_neighbours_than_a_few_large_ones():
    assert aeclust.refine.scan.neighbour_count(20, 8500, 2) == 20  # two groups of thousands: the configured number
    assert aeclust.refine.scan.neighbour_count(20, 10_000, 10) == 20
    assert aeclust.refine.scan.neighbour_count(20, 1000, 50) == 5  # 20 images a cluster: a quarter of one
    assert aeclust.refine.scan.neighbour_count(20, 60, 50) == 1


def blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three groups of 200 vectors in 16 dimensions, each around its own direction."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 16)) * 3
    truth = np.repeat([0, 1, 2], 200)
    return (centres[truth] + rng.normal(size=(600, 16))).astype(np.float32), truth


def test_the_head_on_fixed_features_mends_a_spoilt_clustering_from_pairs_of_vectors_alone(tmp_path):
    features, truth = blobs()
    spoilt = truth.copy()
    wrong = np.random.default_rng(1).choice(600, 120, replace=False)
    spoilt[wrong] = (spoilt[wrong] + 1) % 3  # a fifth of the vectors in the wrong cluster
    settings = RefineConfig(epochs=5, self_label_epochs=1, neighbours=10, batch_size=64)
    refiner = FeatureRefiner(settings, k=3, seed=0).fit(features, spoilt)
    assert (spoilt == truth).mean() == pytest.approx(0.8)
    assert (refiner.labels_ == truth).mean() >= 0.98
    assert len(refiner.losses_) == 6
    again = FeatureRefiner(settings, k=3, seed=0).fit(features, spoilt)
    np.testing.assert_array_equal(again.labels_, refiner.labels_)  # the same seed, the same clusters
    refiner.save(tmp_path / "head.npz")
    loaded = FeatureRefiner.load(tmp_path / "head.npz")
    np.testing.assert_array_equal(loaded.predict(features), refiner.labels_)
    (tmp_path / "bad.npz").write_bytes(b"not an archive")
    with pytest.raises(RunDirError, match="bad.npz: expected a refined cluster head"):
        FeatureRefiner.load(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="599 initial cluster labels for 600 feature vectors"):
        FeatureRefiner(settings, k=3).fit(features, spoilt[:-1])
