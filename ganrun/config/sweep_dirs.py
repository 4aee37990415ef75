"""Short, shell-safe sweep job dir names: the job number and the overrides that vary.

Hydra names a job dir by `hydra.job.override_dirname`, every override of the job joined as
`key=value,key=value`: constants included (~150 characters, and TensorBoard shows them as run
names), and with `=` and `,`, which a shell and Hydra's own override parser then trip over when
the dir is passed back (`trainer.resume=<dir>`). ganrun's `configs/hydra/ganrun.yaml` joins with
`-` and `_` instead and passes the result through `safe_name` (resolver `ganrun_safe`), and for a
multirun the CLI adds the keys that do not vary to Hydra's `exclude_keys`
(`constant_key_exclusions`). The full overrides stay in each job's `.hydra/overrides.yaml` and
its checkpoints. This module imports nothing from ganrun.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

EXCLUDE_KEYS = "hydra.job.config.override_dirname.exclude_keys"
MAX_NAME = 96  # characters of the override part of a job dir name
UNSAFE = re.compile(r"[^\w.+-]+")


def safe_name(text: str) -> str:
    """Characters a shell and Hydra take as they are; runs of anything else become one `-`."""
    name = UNSAFE.sub("-", str(text)).strip("-")
    return name[:MAX_NAME].rstrip("-") if len(name) > MAX_NAME else name


def constant_key_exclusions(overrides: list[str], hydra_yaml: Path) -> list[str]:
    """For `-m`: one override adding the keys given a single value to Hydra's exclude_keys.

    Nothing for a single run, or when the user sets exclude_keys themselves.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not any(o in ("-m", "--multirun") for o in overrides):
        return []
    plain = [o for o in overrides if "=" in o and not o.startswith("-")]
    parsed = OverridesParser.create().parse_overrides(plain)
    if any(o.key_or_group == EXCLUDE_KEYS for o in parsed):
        return []
    constant = [o.key_or_group for o in parsed
                if not o.is_sweep_override() and not o.key_or_group.startswith("hydra.")]
    if not constant:
        return []
    config = yaml.safe_load(hydra_yaml.read_text())
    base = list(config["job"]["config"]["override_dirname"]["exclude_keys"])
    keys = base + [k for k in constant if k not in base]
    return [f"{EXCLUDE_KEYS}=[{','.join(keys)}]"]
