"""TensorBoard HParams: a run's overrides as hyperparameters, its final metrics as `hparam/*` scalars.

Written into the run's own directory, next to its other event files, so TensorBoard's HParams
dashboard shows one row per run of a sweep (`tensorboard --logdir <sweep dir>`).
`SummaryWriter.add_hparams` is not used: it writes into a new sub-directory, i.e. a separate
run holding nothing but the hparams. Here the three hparams-plugin summaries (experiment,
session start, session end) and the metric scalars go through one writer on the run dir.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

HPARAM_TYPES = (bool, int, float, str)


def hparams_of(overrides: dict[str, Any]) -> dict[str, Any]:
    """Override values as the types the plugin takes (bool, int, float, str; anything else as text)."""
    return {k: v if isinstance(v, HPARAM_TYPES) else str(v) for k, v in overrides.items()}


def write_hparams(run_dir: Path, hparams: dict[str, Any], metrics: dict[str, float], step: int,
                  failed: bool = False) -> None:
    """Log `hparams` and `metrics` (tags `hparam/...`) into an event file in `run_dir` itself."""
    from tensorboard.plugins.hparams.api_pb2 import Status
    from tensorboard.plugins.hparams.metadata import SESSION_END_INFO_TAG
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams as hparams_summaries

    finite = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
    exp, ssi, sei = hparams_summaries(hparams_of(hparams), {k: 0.0 for k in metrics})
    if failed:
        _set_end_status(sei, SESSION_END_INFO_TAG, Status.STATUS_FAILURE)
    writer = SummaryWriter(log_dir=str(run_dir), filename_suffix=".hparams")
    try:
        for summary in (exp, ssi, sei):
            writer.file_writer.add_summary(summary, step)
        for tag, value in finite.items():
            writer.add_scalar(tag, value, step)
    finally:
        writer.close()


def _set_end_status(summary: Any, tag: str, status: int) -> None:
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    for value in summary.value:
        if value.tag == tag:
            data = HParamsPluginData.FromString(value.metadata.plugin_data.content)
            data.session_end_info.status = status
            value.metadata.plugin_data.content = data.SerializeToString()


def read_hparams(run_dir: Path) -> Optional[dict[str, Any]]:
    """The hparams and metric tags TensorBoard's own reader finds in `run_dir` (None: none logged)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.metadata import EXPERIMENT_TAG, PLUGIN_NAME, SESSION_START_INFO_TAG
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    content = acc.PluginTagToContent(PLUGIN_NAME) if PLUGIN_NAME in acc.ActivePlugins() else {}
    if SESSION_START_INFO_TAG not in content:
        return None
    start = HParamsPluginData.FromString(content[SESSION_START_INFO_TAG]).session_start_info
    experiment = HParamsPluginData.FromString(content[EXPERIMENT_TAG]).experiment if EXPERIMENT_TAG in content else None
    values = {}
    for name, value in start.hparams.items():
        kind = value.WhichOneof("kind")
        values[name] = getattr(value, kind) if kind else None
    return {"hparams": values,
            "metric_tags": [m.name.tag for m in experiment.metric_infos] if experiment else [],
            "scalars": {tag: acc.Scalars(tag)[-1].value for tag in acc.Tags().get("scalars", []) if tag.startswith("hparam/")}}
