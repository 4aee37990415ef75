"""Register the schemas with Hydra's ConfigStore.

Each option file names its schema in its defaults list (`- /schema_model@_here_`), so the YAML carries the
values and the dataclass checks them. Called explicitly by the CLI and the tests; importing this
module registers nothing.
"""

from hydra.core.config_store import ConfigStore

from ganrun.config.schema import (GROUPS, EvalAppConfig, FeaturesAppConfig, ReportAppConfig, SampleAppConfig,
                                  TrainAppConfig)


def register_configs() -> None:
    cs = ConfigStore.instance()
    for group, schema in GROUPS.items():
        cs.store(name=f"schema_{group}", node=schema)
    cs.store(name="app_train", node=TrainAppConfig)
    cs.store(name="app_eval", node=EvalAppConfig)
    cs.store(name="app_sample", node=SampleAppConfig)
    cs.store(name="app_features", node=FeaturesAppConfig)
    cs.store(name="app_report", node=ReportAppConfig)
