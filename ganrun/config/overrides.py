"""Command-line overrides read before Hydra starts: parsed, group choices checked, the config
composed and validated (`prevalidate`), so bad input fails before Hydra creates a run dir."""

from __future__ import annotations

from ganrun.config.compose import CONFIG_DIR, compose, to_typed
from ganrun.errors import UserError

HYDRA_VALUE_FLAGS = {"--cfg", "-c", "--package", "-p", "--info", "-i", "--config-path", "-cp",
                     "--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun"}
HYDRA_FLAGS_WITHOUT_A_RUN = {"--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--shell-completion",
                              "-sc", "--multirun", "-m"}


def parse(overrides: list[str]):
    """Hydra's parse of the plain `key=value` overrides (not flags or their values); UserError if malformed."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    plain = [o for o in overrides if "=" in o and not o.startswith("-")]  # not flags or their values
    try:
        return OverridesParser.create().parse_overrides(plain)
    except Exception as exc:  # hydra's OverrideParseException
        raise UserError(f"cannot parse override: {str(exc).splitlines()[0]}") from None


def check_group_choices(overrides: list[str]) -> None:
    """Reject `model=foo` before Hydra does, listing the valid choices on one line."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    groups = {p.name for p in CONFIG_DIR.iterdir() if p.is_dir() and p.name != "hydra"}
    # Hydra's flags and their values (`--cfg job`, `-p model`) are not overrides
    plain = [o for i, o in enumerate(overrides)
             if "=" in o and not o.startswith("-") and (i == 0 or overrides[i - 1] not in HYDRA_VALUE_FLAGS)]
    try:
        parsed = OverridesParser.create().parse_overrides(plain)
    except Exception as exc:  # hydra's OverrideParseException
        raise UserError(f"cannot parse override: {str(exc).strip().splitlines()[0]}") from None
    for override in parsed:
        group = override.key_or_group
        if group not in groups or override.package or override.is_delete():
            continue
        choices = sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))
        values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [
            override.value()
        ]
        for value in values:
            if str(value) not in choices:
                raise UserError(f"unknown {group} '{value}' (choose from: {', '.join(choices)})")


def prevalidate(config_name: str, overrides: list[str]) -> None:
    """Compose and validate before Hydra creates a run dir, so bad input leaves nothing behind.

    Skipped for Hydra's own flags (help, --cfg, multirun: each job validates itself).
    """
    if any(arg in HYDRA_FLAGS_WITHOUT_A_RUN for arg in overrides) or any(a.startswith("-") for a in overrides):
        return
    to_typed(compose(config_name, overrides))
