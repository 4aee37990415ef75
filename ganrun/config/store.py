"""Register the schemas with Hydra's ConfigStore.

Each option file names its schema in its defaults list (`- /schema_loss@_here_`), so the YAML carries the
values and the dataclass checks them. A model family brings its own dataclass (ganrun/models/<family>.py):
`register_family` stores it here as `schema_model_<name>` when the family's module is imported, and
`configs/model/<name>.yaml` names it (`- /schema_model_<name>@model`). Likewise `ganrun.losses` stores
the loss group's full schema (the objective plus every regularizer's keys) as `schema_loss` when
imported. The other group and app schemas are stored by `register_configs()`, called explicitly before
composing; importing this module stores nothing.
"""

from hydra.core.config_store import ConfigStore

from ganrun.config.schema import (GROUPS, EvalAppConfig, ExportAppConfig, FeaturesAppConfig, ReportAppConfig,
                                  SampleAppConfig,
                                  TrainAppConfig)

MODEL_SCHEMA_PREFIX = "schema_model_"
LOSS_SCHEMA = "schema_loss"
_extended: set[str] = set()  # the group schemas a package has stored in full (the base must not replace them)


def register_configs() -> None:
    cs = ConfigStore.instance()
    for group, schema in GROUPS.items():
        if f"schema_{group}" not in _extended:
            cs.store(name=f"schema_{group}", node=schema)
    cs.store(name="app_train", node=TrainAppConfig)
    cs.store(name="app_eval", node=EvalAppConfig)
    cs.store(name="app_sample", node=SampleAppConfig)
    cs.store(name="app_features", node=FeaturesAppConfig)
    cs.store(name="app_export", node=ExportAppConfig)
    cs.store(name="app_report", node=ReportAppConfig)


def store_model_schema(name: str, schema: type) -> None:
    """Store a model family's dataclass as `schema_model_<name>` (called by `register_family`)."""
    ConfigStore.instance().store(name=f"{MODEL_SCHEMA_PREFIX}{name}", node=schema)


def store_loss_schema(schema: type) -> None:
    """Store the loss group's full schema (called when `ganrun.losses` is imported)."""
    ConfigStore.instance().store(name=LOSS_SCHEMA, node=schema)
    _extended.add(LOSS_SCHEMA)


def has_loss_schema() -> bool:
    """Whether `ganrun.losses` has stored the loss group's full schema."""
    return LOSS_SCHEMA in _extended


def has_model_schemas() -> bool:
    """Whether any family has stored its schema (i.e. `ganrun.models` was imported)."""
    return any(entry.startswith(MODEL_SCHEMA_PREFIX) for entry in ConfigStore.instance().list(""))
