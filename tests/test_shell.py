"""What a user sees at the shell: tab completion in a real bash, --version, --help with comments,
and the run's console lines kept in train.log with readable rates."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ganrun.models import MODELS
from tests.conftest import FAST, ROOT

BASH = shutil.which("bash")


@pytest.fixture
def shim(tmp_path, cli_env) -> dict:
    """`ganrun` on PATH, as an installed console script would be."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "ganrun"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m ganrun "$@"\n')
    script.chmod(0o755)
    env = dict(cli_env)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    return env


def complete(env: dict, line: str, shell: str = "bash") -> list[str]:
    """Press TAB after `line` the way bash does: split into COMP_WORDS with the installed
    COMP_WORDBREAKS, set COMP_LINE/COMP_POINT/COMP_CWORD, call the registered function, read COMPREPLY."""
    script = f"""
eval "$(ganrun --shell-completion install={shell})"
spec=$(complete -p ganrun) || exit 3
fn=${{spec##*-F }}; fn=${{fn%% *}}
COMP_LINE={_q(line)}
COMP_POINT=${{#COMP_LINE}}
read -ra COMP_WORDS <<< "$COMP_LINE"
[[ "$COMP_LINE" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
"$fn" ganrun "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\\n' "$spec"
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    r = subprocess.run([BASH, "--norc", "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    spec, *replies = r.stdout.splitlines()
    assert spec.endswith(" ganrun") and "-F " in spec, spec  # registered for the command `ganrun` only
    return replies


def _q(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


@pytest.mark.skipif(BASH is None, reason="needs bash")
def test_bash_completion_of_commands_groups_options_and_keys(shim):
    assert complete(shim, "ganrun ") == ["eval", "export", "features", "report", "sample", "train", "--help", "--version"]
    assert complete(shim, "ganrun tr") == ["train"]
    assert "model=" in complete(shim, "ganrun train mod")
    assert complete(shim, "ganrun train model=") == [f"model={n}" for n in MODELS.names()]
    assert complete(shim, "ganrun train model=dcgan optimizer.l") == ["optimizer.lr=", "optimizer.lr_decay="]
    # keys follow the options chosen earlier on the line
    assert "trainer.n_critic=" in complete(shim, "ganrun train model=wgan_gp trainer.n_")
    assert complete(shim, "ganrun eval eval.feat") == ["eval.features="]
    assert complete(shim, "ganrun features ") == ["fit"]
    assert complete(shim, "ganrun features fit dataset=ri") == ["dataset=ring8"]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="needs zsh")
def test_zsh_install_script_registers_through_bashcompinit(shim):
    r = subprocess.run(["zsh", "-fc", 'eval "$(ganrun --shell-completion install=zsh)" && complete -p ganrun'],
                       env=shim, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "ganrun" in r.stdout, r.stdout + r.stderr


def test_zsh_install_is_the_bash_function_behind_bashcompinit(ganrun):
    out = ganrun("--shell-completion", "install=zsh")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("autoload -U +X compinit && compinit\nautoload -U +X bashcompinit && bashcompinit\n")
    assert out.stdout.rstrip().endswith("complete -o nospace -o default -F _ganrun_completion ganrun")
    bad = ganrun("--shell-completion", "install=fish")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "install=bash|zsh" in bad.stderr


def test_version(ganrun):
    out = ganrun("--version")
    assert out.returncode == 0, out.stderr
    import ganrun as package

    assert re.fullmatch(rf"ganrun {re.escape(package.__version__)} \(torch \S+, hydra-core \S+, python \S+\)\n",
                        out.stdout), out.stdout


def test_help_shows_each_keys_comment_from_its_yaml(ganrun):
    out = ganrun("train", "model=wgan_gp", "--help")
    assert out.returncode == 0, out.stderr
    config = out.stdout.split("== Config ==", 1)[1]
    # from configs/model/wgan_gp.yaml (the chosen option), not the schema's or dcgan's wording
    assert re.search(r"^  norm: layer +# critic normalization: layer \(LayerNorm over CxHxW\) or none; not batch$",
                     config, re.M), config
    assert re.search(r"^  n_critic: 5 +# critic steps per generator step$", config, re.M)
    assert re.search(r"^  lr: 0\.0001 +# both nets$", config, re.M)
    assert re.search(r"^seed: 0 +# seeds torch, numpy and python", config, re.M)
    keys = [line for line in config.splitlines() if re.match(r"^\s*\w+: \S", line)]
    assert keys and all("#" in line for line in keys), [line for line in keys if "#" not in line]
    assert f"model: {', '.join(MODELS.names())}" in out.stdout  # Hydra's page is otherwise as it was


def test_train_log_keeps_the_console_lines_and_rates_have_units(ganrun, tmp_path):
    run = tmp_path / "run"
    fast = [a for a in FAST if not a.startswith("logger.print_config")]
    out = ganrun("train", "dataset=ring8", "trainer.max_steps=10", "trainer.batch_size=16", "dataset.num_points=64",
                 "logger.progress=plain", *fast, f"hydra.run.dir={run}")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    # the summary and the overrides come first; the ~95-line config tree only with logger.print_config=true
    assert lines[0].startswith("mlp: G ") and " | run dir " in lines[0], lines[:3]
    assert lines[1] == "overrides: " + " ".join(["dataset=ring8", "trainer.max_steps=10", "trainer.batch_size=16",
                                                  "dataset.num_points=64", "logger.progress=plain", *fast])
    assert "config" not in lines[2] and len(lines) < 10, lines
    step_lines = [line for line in lines if line.startswith("step ")]
    assert step_lines, lines
    for line in step_lines:  # e.g. "step 5/10  312 img/s  20 steps/s ..." or "... 0.52 steps/s" or "1.8 s/step"
        assert re.search(r"\d+(\.\d+)?[kM]? img/s  (\d+(\.\d+)?[kM]? steps/s|\d+(\.\d+)? s/step)  loss/D", line), line
        assert "0.0k img/s" not in line
    log = (run / "train.log").read_text().splitlines()
    assert log == lines, (log, lines)  # every console line, in order

    tree = ganrun("train", "dataset=ring8", "trainer.max_steps=1", "trainer.batch_size=16", "dataset.num_points=64",
                  "logger.progress=plain", "logger.print_config=true", *fast, f"hydra.run.dir={tmp_path / 'tree'}")
    assert tree.returncode == 0 and len(tree.stdout.splitlines()) > 60, tree.stdout


def test_format_rate():
    from ganrun.observe.console import format_rate

    assert [format_rate(v, "img") for v in (0.42, 3.0, 37.2, 512, 1234, 56_789, 3.4e6)] == [
        "0.42 img/s", "3 img/s", "37 img/s", "512 img/s", "1.2k img/s", "57k img/s", "3.4M img/s"]
    assert [format_rate(v, "steps") for v in (0.25, 2.5, 150)] == ["4 s/step", "2.5 steps/s", "150 steps/s"]


def test_python_warnings_during_a_run_reach_train_log(tmp_path):
    import warnings

    from ganrun.observe.console import Console

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        console = Console("none", 10, log_file=tmp_path / "train.log")
        warnings.warn("a library complains", UserWarning)
        console.message("warning: a note", style="warning")
        console.close()
    text = (tmp_path / "train.log").read_text()
    assert "UserWarning: a library complains" in text and "warning: a note" in text
