"""ganrun installed as a package: a wheel built from the repo carries its configs and runs.

No network: the wheel is built without build isolation, and the fresh venv borrows torch, Hydra
and the rest from this interpreter's site-packages through a .pth file (a .pth line adds a path
but runs no .pth files found there, so an editable ganrun installed here stays invisible), and
the wheel goes in with `pip --no-deps`. The runs use the venv's `ganrun` script, from a folder
outside the repo, without PYTHONPATH: only the installed copy can answer.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

SKIP = shutil.ignore_patterns(".git", ".venv", "outputs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache")


def sh(args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, **kw)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict]:
    base = tmp_path_factory.mktemp("package")
    src = base / "src"
    shutil.copytree(ROOT, src, ignore=SKIP)  # build from a copy: the checkout gets no build/ or egg-info
    r = sh([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", base / "dist", src])
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (wheel,) = (base / "dist").glob("ganrun-*.whl")
    venv = base / "venv"
    r = sh([sys.executable, "-m", "venv", "--without-pip", venv])
    assert r.returncode == 0, r.stderr
    site = Path(sh([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
                .stdout.strip())
    borrowed = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_borrowed.pth").write_text("".join(f"{p}\n" for p in sorted(borrowed)))
    r = sh([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--no-deps", "-q", wheel])
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GANRUN_DATA")}
    env["OMP_NUM_THREADS"] = "1"
    return venv, env, wheel


def test_wheel_holds_every_config(installed):
    _, _, wheel = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    repo = {f"ganrun/configs/{p.relative_to(ROOT / 'configs')}" for p in (ROOT / "configs").rglob("*.yaml")}
    assert repo and repo <= names, sorted(repo - names)


@pytest.mark.slow  # about 20 s of CPU (two ganrun processes from a cold venv); run by make test-full
def test_installed_ganrun_composes_and_trains(installed, tmp_path):
    venv, env, _ = installed
    where = sh([venv / "bin" / "python", "-c", "import ganrun.config.compose as c; print(c.__file__); print(c.CONFIG_DIR)"],
               cwd=tmp_path, env=env)
    module, config_dir = where.stdout.split()
    assert module.startswith(str(venv)) and config_dir.startswith(str(venv)), where.stdout + where.stderr

    job = sh([venv / "bin" / "ganrun", "train", "--cfg", "job", "dataset=ring8"], cwd=tmp_path, env=env)
    assert job.returncode == 0, job.stderr[-3000:]
    assert yaml.safe_load(job.stdout)["dataset"]["name"] == "ring8"

    run = tmp_path / "run"
    out = sh([venv / "bin" / "ganrun", "train", "dataset=ring8", "trainer.max_steps=5", "trainer.batch_size=32",
              "device=cpu", "logger.print_config=false", f"hydra.run.dir={run}"], cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (run / "checkpoints" / "last.pt").is_file() and (run / ".hydra" / "config.yaml").is_file()
    assert "done: 5 steps" in out.stdout
