"""The NCCL path: two GPU ranks train the weights of one GPU process (needs two CUDA devices)."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import make_idx_dataset
from tests.test_ddp_cli import PARITY, _max_abs_diff

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")]


def test_two_gpu_ranks_over_nccl_train_the_weights_of_one_gpu(ganrun, tmp_path):
    root = make_idx_dataset(tmp_path / "fashion", n_train=64, n_test=32)
    args = [a if a != "device=cpu" else "device=cuda" for a in PARITY]
    runs = {}
    for n in (1, 2):
        r = ganrun("train", *args, f"dataset.root={root}", f"trainer.devices={n}", f"hydra.run.dir=run{n}")
        assert r.returncode == 0, r.stderr
        runs[n] = torch.load(tmp_path / f"run{n}/checkpoints/last.pt", weights_only=True)
    assert "2 × cuda (nccl)" in r.stdout
    g, d = _max_abs_diff(runs[1]["G"], runs[2]["G"]), _max_abs_diff(runs[1]["D"], runs[2]["D"])
    print(f"NCCL, 1 vs 2 GPUs: max |ΔG| = {g:.3g}, max |ΔD| = {d:.3g}")
    assert g < 1e-4 and d < 1e-4  # cuDNN picks different kernels for batch 8 and batch 4
