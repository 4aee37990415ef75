"""Generators and discriminators by config name.

A model family is one file here and one YAML in configs/model/. The file declares the dataclass
of its `model.*` keys (a `ModelConfig` subclass whose `check(spec)` holds its own rules) and
registers its builder with `@register_family("<config name>", schema=...)`, a function
`(cfg, spec: DataSpec) -> (G, D)`, which also stores the schema in Hydra's ConfigStore; the YAML
names it (`- /schema_model_<name>@model`). Import this package before composing a config.
Every module of this package is imported below, so a new file is found without editing this one.

Sizes come from the `DataSpec` (channels, resolution, number of classes), never from globals.
Every G is called as `G(z, c)` and returns (N, *spec.shape); every D is called as `D(x, c)` and
returns logits (N,), and `D.forward_features(x, c)` returns (logits, features) for feature
matching. `c` is a (N,) long tensor of class labels for conditional models and None otherwise.
"""

from __future__ import annotations

import importlib
import pkgutil

from ganrun.models.base import (MODELS, Discriminator, Family, Generator, build_models, count_parameters,
                                model_config, register_family)

for _module in pkgutil.iter_modules(__path__):  # the families register themselves on import
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["MODELS", "Discriminator", "Family", "Generator", "build_models", "count_parameters", "model_config",
           "register_family"]
