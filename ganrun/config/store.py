"""Register the schemas with Hydra's ConfigStore.

Each option file names its schema in its defaults list (`- /schema_loss@_here_`), so the YAML carries the
values and the dataclass checks them. A model family brings its own dataclass (ganrun/models/<family>.py),
stored as `schema_model_<name>` and named by `configs/model/<name>.yaml` (`- /schema_model_<name>@model`).
Called explicitly by the CLI and the tests; importing this module registers nothing.
"""

from typing import Mapping

from hydra.core.config_store import ConfigStore

from ganrun.config.schema import GROUPS, EvalAppConfig, FeaturesAppConfig, SampleAppConfig, TrainAppConfig


def register_configs(model_schemas: Mapping[str, type]) -> None:
    """Store the group and app schemas, and `model_schemas` (config name → the family's dataclass,
    `ganrun.models.schemas()`: this module imports nothing above config/)."""
    cs = ConfigStore.instance()
    for group, schema in GROUPS.items():
        cs.store(name=f"schema_{group}", node=schema)
    for name, schema in model_schemas.items():
        cs.store(name=f"schema_model_{name}", node=schema)
    cs.store(name="app_train", node=TrainAppConfig)
    cs.store(name="app_eval", node=EvalAppConfig)
    cs.store(name="app_sample", node=SampleAppConfig)
    cs.store(name="app_features", node=FeaturesAppConfig)
