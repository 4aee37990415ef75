"""Generators and discriminators by config name.

A model family is one file that registers a builder: `@MODELS.register("dcgan")` on a function
`(cfg: ModelConfig, spec: DataSpec) -> (G, D)`. Sizes come from the `DataSpec` (channels,
resolution, number of classes), never from globals. Every G is called as `G(z, c)` and returns
(N, *spec.shape); every D is called as `D(x, c)` and returns logits (N,), and
`D.forward_features(x, c)` returns (logits, features) for feature matching. `c` is a (N,) long
tensor of class labels for conditional models and None otherwise.
"""

from __future__ import annotations

from ganrun.models.base import MODELS, Discriminator, Generator, build_models, count_parameters
from ganrun.models import dcgan, mlp  # noqa: F401  (registration)

__all__ = ["MODELS", "Discriminator", "Generator", "build_models", "count_parameters"]
