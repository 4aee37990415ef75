"""`ganrun train` through the real CLI, as a user runs it; TensorBoard read back with its own reader."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from tests.conftest import FAST, make_idx_dataset, make_image_folder, read_events


def run_dir_of(tmp_path: Path, name: str = "run") -> Path:
    return tmp_path / name


def test_help_lists_groups_and_options(ganrun):
    out = ganrun("train", "--help")
    assert out.returncode == 0, out.stderr
    assert re.search(r"model: .*mlp", out.stdout) and re.search(r"dataset: .*ring8", out.stdout)
    assert "optimizer" in out.stdout and "trainer" in out.stdout


def test_cfg_job_prints_the_config_and_does_no_work(ganrun, tmp_path):
    out = ganrun("train", "--cfg", "job", "optimizer.lr=1e-3", "model.latent_dim=16")
    assert out.returncode == 0, out.stderr
    assert "lr: 0.001" in out.stdout and "latent_dim: 16" in out.stdout
    assert not (tmp_path / "outputs").exists()


def test_ring8_run_logs_scalars_images_and_checkpoints(ganrun, tmp_path):
    run = tmp_path / "ring"
    out = ganrun("train", "dataset=ring8", "trainer.max_steps=20", "trainer.batch_size=64", *FAST,
                 f"hydra.run.dir={run}")
    assert out.returncode == 0, out.stderr
    assert re.search(r"step 20/20 .*img/s .*loss/D", out.stdout), out.stdout
    acc = read_events(run)
    tags = acc.Tags()
    for tag in ("loss/D", "loss/G", "D/D(x)", "D/D(G(z))", "D/acc_real", "D/acc_fake",
                "grad_norm/D", "grad_norm/G", "speed/images_per_s"):
        assert tag in tags["scalars"], tag
    assert [e.step for e in acc.Scalars("loss/D")] == [5, 10, 15, 20]
    assert all(torch.isfinite(torch.tensor(e.value)) for e in acc.Scalars("loss/G"))
    assert "samples/fixed_noise" in tags["images"]
    assert [e.step for e in acc.Images("samples/fixed_noise")] == [0, 10, 20]
    assert (run / ".hydra" / "config.yaml").is_file()
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 20 and state["config"]["dataset"]["name"] == "ring8"
    assert {"G", "D", "opt_G", "opt_D", "rng", "fixed_z"} <= set(state)


def test_fashion_format_files_train_and_resume_continues(ganrun, tmp_path):
    data = make_idx_dataset(tmp_path / "fashion", n_train=256, n_test=64)
    run = tmp_path / "fm"
    args = ["trainer.batch_size=32", *FAST, f"dataset.root={data}"]
    first = ganrun("train", "trainer.max_steps=10", *args, f"hydra.run.dir={run}")
    assert first.returncode == 0, first.stderr
    acc = read_events(run)
    assert "samples/reals" in acc.Tags()["images"] and "config" in str(acc.Tags())

    resumed = tmp_path / "fm2"
    second = ganrun("train", f"trainer.resume={run}", "trainer.max_steps=20", f"hydra.run.dir={resumed}")
    assert second.returncode == 0, second.stderr
    assert "resuming at 10" in second.stdout
    state = torch.load(resumed / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 20
    # the stored overrides (data root, batch size) came along without being repeated
    assert state["config"]["dataset"]["root"] == str(data) and state["config"]["trainer"]["batch_size"] == 32
    steps = [e.step for e in read_events(resumed).Scalars("loss/D")]
    assert steps[0] > 10 and steps[-1] == 20


def test_same_seed_same_run(ganrun, tmp_path):
    losses = []
    for name in ("a", "b"):
        out = ganrun("train", "dataset=ring8", "trainer.max_steps=10", "trainer.batch_size=32", "seed=7",
                     "device.deterministic=true", *FAST, f"hydra.run.dir={tmp_path / name}")
        assert out.returncode == 0, out.stderr
        losses.append([e.value for e in read_events(tmp_path / name).Scalars("loss/G")])
    assert losses[0] == losses[1]


def test_multirun_gives_each_job_its_own_dir(ganrun, tmp_path):
    out = ganrun("train", "-m", "dataset=ring8", "trainer.max_steps=5", "trainer.batch_size=32", *FAST,
                 "seed=1,2", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert out.returncode == 0, out.stderr
    jobs = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert jobs == ["0_seed-1", "1_seed-2"], jobs  # number + the overrides that vary, shell-safe
    for job in jobs:
        assert (tmp_path / "sweep" / job / "checkpoints" / "last.pt").is_file()


def test_default_run_dir_is_under_outputs(ganrun, tmp_path):
    out = ganrun("train", "dataset=ring8", "trainer.max_steps=2", "trainer.batch_size=16", *FAST)
    assert out.returncode == 0, out.stderr
    runs = list((tmp_path / "outputs").glob("*/*/checkpoints/last.pt"))
    assert len(runs) == 1


@pytest.mark.parametrize(
    "args, pattern",
    [
        (["model=foo"], r"unknown model 'foo' \(choose from: .*mlp"),
        (["dataset=nope"], r"unknown dataset 'nope' \(choose from: .*fashion_mnist"),
        (["optimizer.lr=-1"], r"optimizer\.lr must be > 0"),
        (["trainer.batch_size=0"], r"trainer\.batch_size must be > 0"),
        (["model.latent_dim=0"], r"model\.latent_dim must be > 0"),
        (["trainer.batch_size=abc"], r"trainer\.batch_size.*could not be converted"),
        (["optimizer.lr=fast"], r"optimizer\.lr.*could not be converted"),
        (["trainer.typo=1"], r"trainer\.typo"),
        (["dataset=mnist", "dataset.root=/nonexistent"], r"dataset 'mnist' not found \(tried: /nonexistent\)"),
        (["dataset=folder"], r"dataset\.root"),
        (["dataset=ring8", "model.conditional=true"], r"conditional.*ring8.*no class labels"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(ganrun, args, pattern):
    out = ganrun("train", *args, "device=cpu", "trainer.max_steps=1")
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr and re.search(pattern, lines[0]), lines[0]


def test_folder_dataset_trains(ganrun, tmp_path):
    folder = make_image_folder(tmp_path / "imgs", classes=("a", "b"), per_class=8, size=12)
    run = tmp_path / "folder_run"
    out = ganrun("train", "dataset=folder", f"dataset.root={folder}", "dataset.image_size=8", "trainer.max_steps=3",
                 "trainer.batch_size=8", *FAST, f"hydra.run.dir={run}")
    assert out.returncode == 0, out.stderr
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["model_id"]["shape"] == [3, 8, 8]


def test_sweep_job_dirs_leave_paths_out_of_their_names(ganrun, tmp_path):
    data = make_idx_dataset(tmp_path / "deep" / "path" / "to" / "fashion", n_train=64, n_test=16)
    out = ganrun("train", "-m", f"dataset.root={data}", "trainer.max_steps=2", "trainer.batch_size=16", *FAST,
                 "seed=1,2", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert out.returncode == 0, out.stderr
    jobs = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert jobs == ["0_seed-1", "1_seed-2"], jobs
    assert not any("dataset.root" in j or "deep" in j for j in jobs), jobs  # no path, no nested folders


@pytest.mark.parametrize("command, key", [("report", "dir"), ("eval", "checkpoint"), ("sample", "checkpoint"),
                                          ("export", "checkpoint")])
def test_a_command_without_its_required_value_says_which(ganrun, command, key):
    out = ganrun(command)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip().splitlines() == [f"ganrun: error: missing value for '{key}': pass {key}=<value> on the "
                                               "command line"], out.stderr
