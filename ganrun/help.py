"""`ganrun <command> --help`: Hydra's help page, each config key followed by its comment.

Hydra prints the composed config without comments; the comments live in the YAML option files
that were composed (and, for keys no file comments, beside the schema's dataclass fields). This
module reads them for the options actually chosen (`model=dcgan --help` shows dcgan's) and
appends each to its key's line in the page's "== Config ==" section.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Iterable

KEY = re.compile(r"^(\s*)([A-Za-z_][\w]*):(.*)$")
COMMENT = re.compile(r"\s#\s?(.*)$")
CONFIG_MARK = "== Config =="


def yaml_comments(path: Path, package: str) -> dict[str, str]:
    """Trailing comments of the keys in one YAML file, by dotted key (under `package`, "" = global)."""
    text = path.read_text()
    first = text.splitlines()[0] if text else ""
    if first.startswith("# @package"):
        declared = first.split(None, 2)[2].strip()
        package = "" if declared == "_global_" else declared
    out: dict[str, str] = {}
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing mappings
    for line in text.splitlines():
        m = KEY.match(line)
        if not m or line.lstrip().startswith("#"):
            continue
        indent, key, rest = len(m.group(1)), m.group(2), m.group(3)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path_ = ".".join([*([package] if package else []), *(k for _, k in stack), key])
        c = COMMENT.search(rest) if "'" not in rest and '"' not in rest else None
        if c and path_.split(".")[0] != "defaults":
            out[path_] = c.group(1).strip()
        stack.append((indent, key))
    return out


def schema_comments() -> dict[str, str]:
    """Trailing comments of the schema's dataclass fields, by `<group>.<field>`."""
    from ganrun.config import schema

    source = Path(schema.__file__).read_text()
    lines = source.splitlines()
    groups = {cls.__name__: group for group, cls in schema.GROUPS.items()}
    out: dict[str, str] = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        prefix = groups.get(node.name, "" if node.name.endswith("AppConfig") else None)
        if prefix is None:
            continue
        for item in node.body:
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                c = COMMENT.search(lines[item.lineno - 1])
                if c:
                    out[".".join(p for p in (prefix, item.target.id) if p)] = c.group(1).strip()
    return out


def family_comments(option: str) -> dict[str, str]:
    """Field comments of the dataclass that model family `option` registers (`register_family(...,
    schema=X)` in ganrun/models/*.py), read from the source so --help does not import torch."""
    models = Path(__file__).resolve().parent / "models"
    for path in sorted(models.glob("*.py")):
        source = path.read_text()
        if "register_family" not in source:
            continue
        tree, lines = ast.parse(source), source.splitlines()
        schema = None
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "register_family":
                names = [a.value for a in node.args if isinstance(a, ast.Constant)]
                kw = {k.arg: k.value for k in node.keywords}
                if option in names and isinstance(kw.get("schema"), ast.Name):
                    schema = kw["schema"].id
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name == schema:
                return _field_comments(node, lines, "model")
    return {}


def _field_comments(node: ast.ClassDef, lines: list[str], prefix: str) -> dict[str, str]:
    out = {}
    for item in node.body:
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            c = COMMENT.search(lines[item.lineno - 1])
            if c:
                out[f"{prefix}.{item.target.id}"] = c.group(1).strip()
    return out


def regularizer_comments() -> dict[str, str]:
    """Comments of every regularizer's `Keys` fields (ganrun/losses/regularizers/*.py), as `loss.<key>`,
    read from the source so --help does not import torch."""
    out: dict[str, str] = {}
    for path in sorted((Path(__file__).resolve().parent / "losses" / "regularizers").glob("*.py")):
        source = path.read_text()
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef) and node.name == "Keys":
                out.update(_field_comments(node, lines, "loss"))
    return out


def comments(config_dir: Path, config_name: str, choices: dict[str, str]) -> dict[str, str]:
    """Every key's comment: the schema's and the regularizers', then the primary YAML's, then the
    chosen options' (which win)."""
    out = {**schema_comments(), **regularizer_comments()}
    if choices.get("model"):
        out.update(family_comments(choices["model"]))
    out.update(yaml_comments(config_dir / f"{config_name}.yaml", ""))
    files = [(group, config_dir / group / f"{option}.yaml") for group, option in choices.items()
             if option and not group.startswith("hydra")]
    files = [(g, p) for g, p in files if p.is_file()]
    # global option files (model=dcgan sizing the data) are composed after the others and win
    files.sort(key=lambda gp: gp[1].read_text().startswith("# @package _global_"))
    for group, path in files:
        out.update(yaml_comments(path, group.replace("/", ".")))
    return out


def annotate(page: str, notes: dict[str, str]) -> str:
    """Append `# comment` to each key line of the page's config section."""
    lines, out, inside = page.splitlines(), [], False
    stack: list[tuple[int, str]] = []
    width = 32  # comments start in one column (longer lines push theirs right)
    for line in lines:
        if line.startswith(CONFIG_MARK):
            inside = True
        m = KEY.match(line) if inside else None
        if m and not m.group(3).strip().startswith("#"):
            indent, key = len(m.group(1)), m.group(2)
            while stack and stack[-1][0] >= indent:
                stack.pop()
            dotted = ".".join([*(k for _, k in stack), key])
            stack.append((indent, key))
            if dotted in notes:
                line = f"{line:<{width}}  # {notes[dotted]}"
        out.append(line)
    return "\n".join(out) + ("\n" if page.endswith("\n") else "")


def choices_of(config_dir: Path, config_name: str, overrides: Iterable[str]) -> dict[str, str]:
    """The option chosen in each group by this command line (Hydra's own record of it)."""
    from hydra import compose, initialize_config_dir

    from ganrun.config.compose import setup

    setup()
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
        return {k: v for k, v in cfg.hydra.runtime.choices.items() if isinstance(v, str)}


def page(config_dir: Path, config_name: str, overrides: list[str], hydra_page: str) -> str:
    """Hydra's help page for `ganrun <config_name> <overrides> --help`, with the comments added."""
    plain = [o for o in overrides if "=" in o and not o.startswith("-")]
    try:
        choices = choices_of(config_dir, config_name, plain)
    except Exception:  # noqa: BLE001 - a bad override: Hydra's page as it is
        return hydra_page
    return annotate(hydra_page, comments(config_dir, config_name, choices))
