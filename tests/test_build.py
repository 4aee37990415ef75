"""`build_run`: the one wiring of a run's parts, shared by `ganrun train`, the benchmark and tests."""

from __future__ import annotations

import torch

from ganrun.config.compose import to_typed
from ganrun.runtime import class_labels, grid_rows, grid_size
from ganrun.train.build import build_run
from tests.conftest import make_idx_dataset

CPU = torch.device("cpu")


def test_same_seed_builds_the_same_run_and_a_grid_row_per_class(compose_train, tmp_path):
    root = make_idx_dataset(tmp_path, n_train=64, n_test=16)
    c = to_typed(compose_train(["model=cgan", "dataset=fashion_mnist", f"dataset.root={root}", "device=cpu",
                                "trainer.max_steps=7", "trainer.batch_size=16", "trainer.num_sample_images=64",
                                "seed=5"]))
    a, b = build_run(c, CPU), build_run(c, CPU)
    for pa, pb in zip(a.G.state_dict().values(), b.G.state_dict().values()):
        assert torch.equal(pa, pb)
    step_fn = a.step_fn("none", False, notify=print)
    assert a.steps == 7 and len(a.batches(step_fn)) == step_fn.batches_per_step == c.trainer.n_critic
    k = a.G.num_classes
    assert k > 1 and len(a.fixed_c) == grid_size(64, k) == 60 and torch.equal(a.fixed_c, class_labels(len(a.fixed_c), k))
    loss = step_fn(a.batches(step_fn), 0)
    assert torch.isfinite(loss["loss/D"]) and torch.isfinite(loss["loss/G"])


def test_the_label_layout_is_class_major_rows():
    assert class_labels(6, 3).tolist() == [0, 0, 1, 1, 2, 2]
    assert grid_size(64, 10) == 60 and grid_size(5, 10) == 10 and grid_size(64, 0) == 64
    assert grid_rows(60, 10) == 6 and grid_rows(64, 0) is None
