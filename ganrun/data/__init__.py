"""Datasets by config name, and what the models need to know about them.

`build_dataset(cfg.dataset)` returns an `ArrayDataset`: the whole set as one tensor (uint8
images (N, C, H, W), or float32 points (N, 2)), its labels, and a `DataSpec` carrying the facts
the model builder derives sizes from. Every loader in this package returns the same thing, so
batching (`loader.BatchSource`) is one code path for all of them.
"""

from __future__ import annotations

from ganrun.data.base import DATASETS, ArrayDataset, DataSpec, build_dataset, to_model_range
from ganrun.data import idx, folder, mixture2d, torchvision_sets  # noqa: F401  (registration)

__all__ = ["DATASETS", "ArrayDataset", "DataSpec", "build_dataset", "to_model_range"]
