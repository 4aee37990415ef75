"""The model families, losses and optimizers as a user reaches them: configs, the CLI, TensorBoard."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from tests.conftest import FAST, make_image_folder, read_events

from ganrun.commands.train import train
from ganrun.config.compose import to_typed
from ganrun.config.schema import OptimizerConfig
from ganrun.errors import UserError
from ganrun.losses import OBJECTIVES
from ganrun.optim import OPTIMIZERS, build_optimizers

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
TINY = [*FAST, "logger.progress=none", "trainer.max_steps=4", "trainer.batch_size=16"]


@pytest.fixture
def cli(ganrun, cli_env):
    """`ganrun` in a subprocess with one intra-op thread: these nets are tiny, and on a busy 2-core
    machine a second OpenMP thread only waits for the first (runs take twice as long)."""
    env = {**cli_env, "OMP_NUM_THREADS": "1"}
    return lambda *args, **kw: ganrun(*args, env=env, **kw)


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


# -- every option composes, validates and names its schema -------------------------------------

def test_groups_hold_every_registered_choice():
    """One YAML per registry entry, and no YAML without one (the model families: tests/test_families.py)."""
    assert options("loss") == OBJECTIVES.names()
    assert options("optimizer") == OPTIMIZERS.names()


@pytest.mark.parametrize("group, extra", [
    ("model", []), ("loss", ["model=wgan_gp"]), ("optimizer", []),
])
def test_every_option_composes_and_validates(compose_train, group, extra):
    for option in options(group):
        cfg = compose_train([f"{group}={option}", *extra])
        assert cfg[group].name == option
        to_typed(cfg)  # the schema and the cross-field rules accept every shipped default


def test_option_files_comment_every_key():
    for group in ("model", "loss", "optimizer"):
        for path in (CONFIGS / group).glob("*.yaml"):
            body = path.read_text().split("\n_self_\n", 1)[-1].split("- _self_\n", 1)[-1]
            for line in body.splitlines():
                key, _, value = line.partition(":")
                if not value.strip() or key.strip() == "name":
                    continue  # a section (`model:`) or the option's own name
                assert "#" in value, f"{path.name}: '{line.strip()}' has no comment"


def test_wgan_gp_brings_its_recipe(compose_train):
    cfg = compose_train(["model=wgan_gp"])
    assert cfg.model.norm == "layer"
    assert cfg.loss.name == "wasserstein" and cfg.loss.gp_weight == 10
    assert cfg.optimizer.name == "adam" and cfg.optimizer.lr == 1e-4 and list(cfg.optimizer.betas) == [0.0, 0.9]
    assert cfg.trainer.n_critic == 5
    assert cfg.dataset.image_size == 64  # 28×28 data resized to the model's size
    hinge = compose_train(["model=wgan_gp", "loss=hinge"])
    assert hinge.loss.name == "hinge" and hinge.loss.gp_weight == 10  # the loss option is the user's
    mlp = compose_train([])
    assert (mlp.loss.name, mlp.loss.gp_weight, mlp.trainer.n_critic, mlp.dataset.image_size) == (
        "non_saturating", 0.0, 1, None)


def test_resolved_config_shows_command_line_overrides(cli):
    out = cli("train", "model=wgan_gp", "loss.gp_weight=5", "trainer.n_critic=3", "optimizer.lr=5e-5",
                 "dataset.image_size=32", "--cfg", "job")
    assert out.returncode == 0, out.stderr
    cfg = yaml.safe_load(out.stdout)
    assert cfg["model"]["name"] == "wgan_gp"
    assert cfg["loss"] == {**cfg["loss"], "name": "wasserstein", "gp_weight": 5.0}
    assert cfg["trainer"]["n_critic"] == 3
    assert cfg["optimizer"]["lr"] == 5e-5 and cfg["optimizer"]["betas"] == [0.0, 0.9]
    assert cfg["dataset"]["image_size"] == 32


def test_optimizers_build_with_their_settings():
    G, D = torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)
    opt_G, opt_D = build_optimizers(OptimizerConfig(name="rmsprop", lr=5e-5, alpha=0.9, momentum=0.1, d_lr=1e-4), G, D)
    assert isinstance(opt_G, torch.optim.RMSprop)
    assert opt_G.param_groups[0]["lr"] == 5e-5 and opt_D.param_groups[0]["lr"] == 1e-4
    assert (opt_G.param_groups[0]["alpha"], opt_G.param_groups[0]["momentum"]) == (0.9, 0.1)
    opt_G, opt_D = build_optimizers(OptimizerConfig(name="sgd", lr=1e-2, momentum=0.5, g_lr=2e-2), G, D)
    assert isinstance(opt_D, torch.optim.SGD)
    assert opt_G.param_groups[0]["lr"] == 2e-2 and opt_D.param_groups[0]["momentum"] == 0.5
    opt_G, _ = build_optimizers(OptimizerConfig(name="adam", betas=[0.0, 0.9]), G, D)
    assert opt_G.param_groups[0]["betas"] == (0.0, 0.9)
    assert opt_G.param_groups[0]["fused"] is True  # torch's fused Adam on the CPU too: ~2.5x its per-tensor step


# -- user errors, before any training ------------------------------------------------------------

@pytest.mark.parametrize("overrides, message", [
    (["model=dcgan", "dataset.image_size=null"],
     r"model=dcgan makes 32×32 or 64×64 images but dataset=fashion_mnist gives 28×28; pass dataset.image_size=32"),
    (["model=dcgan", "dataset=ring8"], r"model=dcgan is convolutional and needs images; dataset=ring8"),
    (["model=dcgan", "loss.gp_weight=10"], r"loss.gp_weight > 0 needs a discriminator without BatchNorm"),
    (["loss=wasserstein", "loss.gp_weight=0"], r"loss=wasserstein needs a Lipschitz critic: set loss.gp_weight=10"),
    (["model=wgan_gp", "loss.real_label=0.9"], r"label smoothing\) have no effect with loss=wasserstein"),
    (["optimizer=rmsprop", "optimizer.alpha=1.5"], r"optimizer.alpha must be in \[0, 1\), got 1.5"),
])
def test_user_errors_name_the_key(compose_train, idx_root, tmp_path, overrides, message):
    cfg = compose_train([*TINY, f"dataset.root={idx_root}", *overrides])
    with pytest.raises(UserError, match=message):
        train(cfg, run_dir=tmp_path / "run")


def test_conditional_on_points_exits_2(cli):
    out = cli("train", "model=cgan", "dataset=ring8", *TINY)
    assert out.returncode == 2
    assert out.stderr.strip() == ("ganrun: error: model=cgan is conditional but dataset=ring8 has no class labels; "
                                  "choose a labelled dataset (fashion_mnist, mnist, cifar10, a folder with class "
                                  "subfolders) or an unconditional model")


def test_conditional_on_unlabelled_folder_exits_2(cli, tmp_path):
    root = make_image_folder(tmp_path / "images", classes=("only",), per_class=8, size=32)
    out = cli("train", "model=cdcgan", "dataset=folder", f"dataset.root={root}", "dataset.image_size=32", *TINY)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert lines[0].startswith("ganrun: error: model=cdcgan is conditional but dataset=folder has no class labels")


# -- each family × a couple of losses trains through the CLI --------------------------------------

# family: (swept losses, fixed overrides that exercise its options and the stabilizers)
FAMILY_RUNS = {
    "mlp": ("minimax,non_saturating",
            ["loss.real_label=0.9", "loss.fake_label=0.05", "optimizer=sgd", "trainer.ema_decay=0.9",
             "model.minibatch_std=true"]),
    "cgan": ("non_saturating,least_squares",
             ["loss.feature_matching=1.0", "loss.instance_noise=0.1", "optimizer=rmsprop"]),
    "dcgan": ("hinge,least_squares",
              ["dataset.image_size=32", "model.spectral_norm=true", "model.ngf=16", "model.ndf=16"]),
    "cdcgan": ("non_saturating,hinge",  # at the YAML's 64×64 (28×28 data resized), narrow
               ["model.ngf=8", "model.ndf=8", "loss.r1_gamma=1.0", "loss.r1_every=2", "model.minibatch_std=true",
                "optimizer.g_lr=1e-4"]),
    "wgan_gp": ("wasserstein,hinge",
                ["dataset.image_size=32", "model.ngf=16", "model.ndf=16", "trainer.n_critic=2",
                 "optimizer.lr=5e-5"]),
}


D_STAT = {"non_saturating": "D/D(x)", "minimax": "D/D(x)", "least_squares": "D/D(x)", "hinge": "D/real_in_margin",
          "wasserstein": "D/wasserstein"}


@pytest.mark.parametrize("family", list(FAMILY_RUNS))
def test_family_trains_with_losses(family, cli, idx_root, tmp_path):
    losses, extra = FAMILY_RUNS[family]
    sweep = tmp_path / "sweep"
    out = cli("train", "-m", f"model={family}", f"loss={losses}", f"dataset.root={idx_root}", *TINY, *extra,
                 f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=${hydra.job.num}")
    assert out.returncode == 0, out.stderr[-3000:]
    runs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [r.name for r in runs] == ["0", "1"]
    for run, loss in zip(runs, losses.split(",")):
        saved = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
        assert (saved["model"]["name"], saved["loss"]["name"]) == (family, loss)
        events = read_events(run)
        scalars = events.Tags()["scalars"]
        for tag in ("loss/D", "loss/G", D_STAT[loss], "grad_norm/D"):  # each objective logs its own D stats
            assert tag in scalars, (run.name, scalars)
            assert all(math.isfinite(e.value) for e in events.Scalars(tag)), tag
        assert [e.step for e in events.Scalars("loss/G")] == [4]
        grids = events.Images("samples/fixed_noise")
        assert [g.step for g in grids] == [0, 4]
        grid = Image.open(io.BytesIO(grids[-1].encoded_image_string))
        size = saved["dataset"]["image_size"] or 28
        if saved["model"]["conditional"]:  # one row per class, from fixed noise
            assert grid.size[1] == 10 * (size + 2) + 2
        assert (run / "samples" / "fakes_0000004.png").is_file()
        check_family(family, run, events, scalars, size)


def check_family(family: str, run: Path, events, scalars: list[str], size: int) -> None:
    """What each family's options should have left behind."""
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    G_weights = {k: v for k, v in state["G"].items() if v.is_floating_point()}
    assert all(torch.isfinite(v).all() for v in G_weights.values())
    if family == "mlp":
        assert state["G_ema"] is not None  # trainer.ema_decay > 0: samples come from the EMA G
        assert state["opt_G"]["param_groups"][0]["momentum"] == 0.5  # optimizer=sgd
    if family == "cgan":
        assert "loss/feature_matching" in scalars
        assert "square_avg" in state["opt_D"]["state"][0]  # optimizer=rmsprop
    if family == "dcgan":
        assert any("parametrizations" in k for k in state["D"])  # spectral norm
    if family == "cdcgan":
        assert size == 64 and "D/r1" in scalars
        # TTUR, and D's lr (and betas) rescaled by k/(k+1) for lazy R1 every k = 2 steps
        d_group = state["opt_D"]["param_groups"][0]
        assert state["opt_G"]["param_groups"][0]["lr"] == 1e-4 and d_group["lr"] == pytest.approx(2e-4 * 2 / 3)
        assert d_group["betas"] == pytest.approx([0.5 ** (2 / 3), 0.999 ** (2 / 3)])
        assert "grad_norm/D_reg" in scalars
    if family == "wgan_gp":
        gp = [e.value for e in events.Scalars("D/gp")]
        assert gp and all(math.isfinite(v) and v >= 0 for v in gp)
        # the overrides changed what ran: 2 critic updates per G update, lr 5e-5, WGAN-GP betas
        assert int(state["opt_D"]["state"][0]["step"]) == 2 * int(state["opt_G"]["state"][0]["step"]) == 8
        group = state["opt_D"]["param_groups"][0]
        assert group["lr"] == 5e-5 and tuple(group["betas"]) == (0.0, 0.9)
