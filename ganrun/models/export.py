"""The generator as a file other programs can run: ONNX, TorchScript or a plain state dict.

`FORMATS.get(name).write(G, path, metadata, record)` writes G (in eval mode) with a dynamic batch
axis and, for conditional models, a label input; `.load(path)` reads the file back as a function
`(z, c) -> samples` running on what the format is meant for (onnxruntime, the TorchScript
runtime, G rebuilt from the state dict and `record`, the model config and data spec);
`parity(G, run, batch_sizes)` compares that function with eager G.

Inputs: `z` float32 (N, latent_dim), `c` int64 (N,) class indices (conditional models only).
Output: `x` float32 (N, *shape). `metadata` (str → str) goes into the file itself: ONNX
`metadata_props`, a `ganrun.json` extra file in the TorchScript archive, a `metadata` dict in
the state-dict file. Format names are registry keys (`format=onnx`). onnx, onnxscript and
onnxruntime are the optional extra `ganrun[export]`; they are imported only when used.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

from ganrun.errors import UserError
from ganrun.registry import Registry

TRACE_BATCH = 3  # example batch for tracing: not 0 or 1, which torch.export specializes to constants
METADATA_FILE = "ganrun.json"  # TorchScript: the metadata's name inside the archive

Run = Callable[[torch.Tensor, Optional[torch.Tensor]], torch.Tensor]  # (z, c) -> samples, on the CPU


class Unconditional(nn.Module):
    """G(z) with one input: the exported graph of an unconditional model has no label input."""

    def __init__(self, G: nn.Module) -> None:
        super().__init__()
        self.G = G

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.G(z, None)


class Conditional(nn.Module):
    """G(z, c): z (N, latent) float32, c (N,) int64."""

    def __init__(self, G: nn.Module) -> None:
        super().__init__()
        self.G = G

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.G(z, c)


def wrap(G: nn.Module) -> nn.Module:
    if G.training:
        raise ValueError("export G in eval mode: train mode bakes the batch statistics of BatchNorm in")
    return (Conditional(G) if G.num_classes else Unconditional(G)).eval()


def example_inputs(G: nn.Module, n: int, seed: int = 0) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, G.latent_dim, generator=gen)
    c = torch.randint(G.num_classes, (n,), generator=gen) if G.num_classes else None
    return z, c


@dataclass(frozen=True)
class Format:
    suffix: str  # file name ending of the default output path
    write: Callable[[nn.Module, Path, dict[str, str], dict], None]  # (G, path, metadata, record)
    load: Callable[[Path], Run]
    read_metadata: Callable[[Path], dict[str, str]]


FORMATS: Registry[Format] = Registry("export format")


@contextlib.contextmanager
def _quiet():
    """The exporters' chatter (progress lines, notes on dim names) is not for the user's console."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _need(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"format=onnx needs the '{module}' package: pip install 'ganrun[export]' "
                        "(onnx, onnxscript, onnxruntime)") from None


# ---- ONNX (the dynamo exporter, checked by onnxruntime) -------------------------------------------

def _write_onnx(G: nn.Module, path: Path, metadata: dict[str, str], record: dict) -> None:
    onnx = _need("onnx")
    _need("onnxscript")
    module = wrap(G)
    z, c = example_inputs(G, TRACE_BATCH)
    batch = torch.export.Dim("batch", min=1)
    names = ["z", "c"] if c is not None else ["z"]
    with _quiet(), torch.no_grad():
        program = torch.onnx.export(module, (z, c) if c is not None else (z,), None, dynamo=True,
                                    input_names=names, output_names=["x"],
                                    dynamic_shapes={n: {0: batch} for n in names}, verbose=False)
        proto = program.model_proto
    fixed = [v.name for v in [*proto.graph.input, *proto.graph.output]
             if not v.type.tensor_type.shape.dim[0].dim_param]
    if fixed:  # the exporter is known to pin a dynamic axis silently
        raise UserError(f"the ONNX exporter fixed the batch axis of {', '.join(fixed)}; not written")
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def _load_onnx(path: Path) -> Run:
    ort = _need("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def run(z: torch.Tensor, c: Optional[torch.Tensor]) -> torch.Tensor:
        feeds = {"z": z.numpy()}
        if "c" in names:
            feeds["c"] = c.numpy()
        return torch.from_numpy(session.run(["x"], feeds)[0])

    return run


def _onnx_metadata(path: Path) -> dict[str, str]:
    onnx = _need("onnx")
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


FORMATS.register("onnx")(Format(".onnx", _write_onnx, _load_onnx, _onnx_metadata))


# ---- TorchScript (traced; the batch size is read from the input at run time) ----------------------

def _write_torchscript(G: nn.Module, path: Path, metadata: dict[str, str], record: dict) -> None:
    module = wrap(G)
    z, c = example_inputs(G, TRACE_BATCH)
    with _quiet(), torch.no_grad():
        traced = torch.jit.trace(module, (z, c) if c is not None else (z,), check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={METADATA_FILE: json.dumps(metadata)})


def _load_torchscript(path: Path) -> Run:
    with _quiet():
        module = torch.jit.load(str(path), map_location="cpu")

    def run(z: torch.Tensor, c: Optional[torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            return module(z) if c is None else module(z, c)

    return run


def _torchscript_metadata(path: Path) -> dict[str, str]:
    extra = {METADATA_FILE: ""}
    with _quiet():
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return json.loads(extra[METADATA_FILE])


FORMATS.register("torchscript")(Format(".torchscript.pt", _write_torchscript, _load_torchscript, _torchscript_metadata))


# ---- state dict (plain tensors + the record needed to rebuild G; torch.load(weights_only=True)) ---

def _write_state_dict(G: nn.Module, path: Path, metadata: dict[str, str], record: dict) -> None:
    # record: {"model": the model config, "spec": the data spec}, as plain dicts
    torch.save({"format": "ganrun-generator", "G": G.state_dict(), **record, "metadata": metadata}, str(path))


def _load_state_dict(path: Path) -> Run:
    from omegaconf import OmegaConf

    from ganrun.data import DataSpec
    from ganrun.models.base import MODELS, build_models

    state = torch.load(str(path), map_location="cpu", weights_only=True)
    schema = MODELS.get(state["model"]["name"]).schema  # the family's own model config
    model_cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), state["model"]))
    spec = DataSpec.from_dict(state["spec"])
    G, _ = build_models(model_cfg, spec)
    G.load_state_dict(state["G"])
    G.eval()

    def run(z: torch.Tensor, c: Optional[torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            return G(z, c)

    return run


def _state_dict_metadata(path: Path) -> dict[str, str]:
    return dict(torch.load(str(path), map_location="cpu", weights_only=True)["metadata"])


FORMATS.register("state_dict")(Format(".state_dict.pt", _write_state_dict, _load_state_dict, _state_dict_metadata))


# ---- parity ---------------------------------------------------------------------------------------

def parity(G: nn.Module, run: Run, batch_sizes: tuple[int, ...], seed: int = 1) -> dict[int, float]:
    """Max abs difference between `run` and eager G (eval mode, CPU) at each batch size."""
    diffs = {}
    for n in batch_sizes:
        z, c = example_inputs(G, n, seed + n)
        with torch.no_grad():
            expected = G(z, c).float()
        try:
            got = run(z, c)
        except Exception:  # noqa: BLE001 - a runtime that refuses a batch size fails parity
            diffs[n] = float("inf")
            continue
        if tuple(got.shape) != tuple(expected.shape):
            diffs[n] = float("inf")
        else:
            diffs[n] = float(np.abs(got.numpy().astype(np.float64) - expected.numpy()).max())
    return diffs
