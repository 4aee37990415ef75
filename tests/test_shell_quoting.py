"""Overrides ganrun composes, and commands it prints, read back by the real parsers: bash splits
the command, Hydra's override parser reads each value."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from ganrun.shell import command, override

TRICKY = [
    "/runs/plain",
    "/runs/multirun/2026-12-01/10-00-00-ab12/0_optimizer.lr=1e-4,seed=0",
    "/runs/with space/and,comma=eq",
    "/runs/it's/\"quoted\"/$HOME/`x`/!bang",
    "/runs/back\\slash\\",
    "/runs/brackets[0]{a}(b)",
    "relative/dir",
    "~/not-expanded",
    "1e-4",
    "null",
]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("path", TRICKY)
def test_printed_command_reaches_hydra_as_the_same_path(path):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    line = command(["ganrun", "train", override("trainer.resume", path), "optimizer.lr=1e-05"])
    out = subprocess.run(["bash", "-c", f'set -- {line}; printf "%s\\0" "$@"'], capture_output=True, text=True)
    argv = out.stdout.split("\0")[:-1]
    assert argv[:2] == ["ganrun", "train"] and argv[3] == "optimizer.lr=1e-05", (line, argv)
    parsed = OverridesParser.create().parse_override(argv[2])
    assert parsed.key_or_group == "trainer.resume" and parsed.value() == path, (line, argv[2])


def test_plain_values_stay_readable():
    assert command(["ganrun", "train", override("trainer.resume", "/runs/a-1")]) == \
        "ganrun train trainer.resume=/runs/a-1"
    assert command(["ganrun", "train", override("trainer.resume", "/r/0_lr=1e-4,seed=0")]) == \
        "ganrun train \"trainer.resume='/r/0_lr=1e-4,seed=0'\""
