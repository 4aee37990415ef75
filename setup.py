"""Only the package list, which pyproject.toml cannot say: ganrun* plus ganrun.configs, the repo's
top-level configs/ folder (mapped in pyproject.toml), with one entry per group folder in it."""

from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).resolve().parent
groups = sorted(".".join(p.relative_to(here / "configs").parts) for p in (here / "configs").rglob("*") if p.is_dir())
setup(packages=[*find_packages(include=["ganrun", "ganrun.*"]), "ganrun.configs", *(f"ganrun.configs.{g}" for g in groups)])
