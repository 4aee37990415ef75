"""Composition: `configs/<command>.yaml` with overrides, the schemas and resolvers set up first.

`compose` works inside or outside a running Hydra app (tests, resume, the benchmark call it);
`to_typed` turns the result into its validated dataclass. Hydra's entry point itself
(`hydra.main`) stays in `ganrun/cli.py`.
"""

from __future__ import annotations

import secrets
from pathlib import Path



def _config_dir() -> Path:
    """The YAML configs: ganrun/configs/ when installed from a wheel, else the checkout's configs/."""
    package = Path(__file__).resolve().parent.parent
    installed, checkout = package / "configs", package.parent / "configs"
    return installed if (installed / "train.yaml").is_file() else checkout


CONFIG_DIR = _config_dir()


def setup() -> None:
    """Register the schemas with Hydra's ConfigStore and ganrun's resolvers (idempotent)."""
    from omegaconf import OmegaConf

    from ganrun.config.store import register_configs

    register_configs()
    if not OmegaConf.has_resolver("ganrun_run_id"):
        # One short random suffix per process: two runs started in the same second never share
        # a directory. Cached, so every reference in one run resolves to the same value.
        run_id = secrets.token_hex(2)
        OmegaConf.register_new_resolver("ganrun_run_id", lambda: run_id, use_cache=True)
    if not OmegaConf.has_resolver("ganrun_safe"):  # sweep job dir names (configs/hydra/ganrun.yaml)
        from ganrun.config.sweep_dirs import safe_name

        OmegaConf.register_new_resolver("ganrun_safe", safe_name)


def compose(config_name: str, overrides: list[str], *, return_hydra_config: bool = False):
    """Compose `configs/<config_name>.yaml` with overrides, inside or outside a running Hydra app.

    `return_hydra_config=True` keeps the `hydra` node (the run-dir guard resolves `hydra.run.dir`).
    """
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from ganrun.config.store import has_loss_schema, has_model_schemas

    setup()
    if not (has_model_schemas() and has_loss_schema()):  # a bug in the caller, not a user error
        raise RuntimeError("the plug-in schemas are not stored: import ganrun.models and ganrun.losses before "
                           "composing (the families store schema_model_<name>, the regularizers schema_loss)")
    if GlobalHydra.instance().is_initialized():
        return hydra_compose(config_name=config_name, overrides=overrides, return_hydra_config=return_hydra_config)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=overrides, return_hydra_config=return_hydra_config)


def to_typed(cfg, schema: type | None = None):
    """The composed DictConfig as its typed dataclass, validated (UserError naming the key)."""
    from omegaconf import OmegaConf

    from ganrun.config.validate import validate

    typed = OmegaConf.to_object(cfg)
    if schema is not None:
        assert isinstance(typed, schema), type(typed)
    validate(typed)
    return typed
