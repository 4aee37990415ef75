"""Imported by the export tests' fork server before it forks: the ONNX exporter's imports and its
one-time set-up (a first export of a tiny module) happen once, not in every `ganrun export` child."""

import torch

import onnx  # noqa: F401
import onnxruntime  # noqa: F401
import onnxscript  # noqa: F401

from ganrun.models.export import _quiet

with _quiet():
    torch.onnx.export(torch.nn.Linear(2, 2).eval(), (torch.zeros(3, 2),), None, dynamo=True,
                      dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
