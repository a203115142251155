"""Batches read by index, in this process or in worker processes: the same images, the same training."""

import numpy as np
import torch
from conftest import random_images, tiny_config

from aeclust.data.batches import loader_workers, read_batches
from aeclust.pipeline.run import run_trainer
from aeclust.refine.scan import refiner_for


def test_workers_read_the_same_batches_in_the_same_order_from_a_memory_mapped_store(tmp_path):
    images = random_images(100, side=8)
    np.save(tmp_path / "images.npy", images)
    store = np.load(tmp_path / "images.npy", mmap_mode="r")
    order = torch.randperm(100, generator=torch.Generator().manual_seed(0))
    batches = list(torch.split(order, 16))
    for workers in (0, 2):
        read = list(read_batches(store, iter(batches), workers))
        assert [indices.tolist() for indices, _ in read] == [batch.tolist() for batch in batches]
        assert all(np.array_equal(pixels.numpy(), images[indices.numpy()]) for indices, pixels in read)
        assert all(pixels.dtype == torch.uint8 for _, pixels in read)


def test_workers_default_to_none_on_a_cpu_and_a_few_beside_a_gpu(monkeypatch):
    assert loader_workers(None, torch.device("cpu")) == 0
    assert loader_workers(3, torch.device("cpu")) == 3 and loader_workers(-1, torch.device("cpu")) == 0
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert loader_workers(None, torch.device("cuda")) == 4
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert loader_workers(None, torch.device("cuda")) == 1


def test_training_with_workers_matches_training_without_them_and_so_does_the_refinement(small_set, tmp_path):
    results = []
    for workers in (0, 1):
        config = tiny_config(epochs=1)
        config.workers = workers
        config.refine.epochs, config.refine.self_label_epochs = 1, 1
        config.refine.neighbours, config.refine.batch_size = 5, 64
        trainer = run_trainer(config, small_set, tmp_path / f"train-{workers}")
        trainer.fit()
        clusters = np.arange(len(small_set.train_images)) % 2
        refined = refiner_for(trainer.model, small_set, config, clusters).fit(log=lambda _: None)
        results.append((trainer.model.state_dict(), refined))
    (weights, refined), (weights_with_workers, refined_with_workers) = results
    assert all(torch.equal(weights[name], weights_with_workers[name]) for name in weights)
    assert np.array_equal(refined.train_clusters, refined_with_workers.train_clusters)
    np.testing.assert_array_equal(refined.train_features, refined_with_workers.train_features)
