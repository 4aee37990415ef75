"""The fast path: the same `GanStep`, captured as one CUDA graph or compiled, behind a fallback.

`accelerate(step, compile)` returns a step function with GanStep's call signature
(`fn(batches, step_index) -> dict of 0-d stat tensors`):

- `none`: the eager GanStep (plus channels_last batches where that is on).
- `graph`: the whole GAN update (the n_critic D phases, the G phase, EMA, BatchNorm, dropout,
  noise, gradient penalty) captured once as a CUDA graph and replayed every step. The first
  `GRAPH_WARMUP` steps run eagerly on a side stream (they are real training steps: lazy
  initialization of optimizer state, cuBLAS/cuDNN handles and the GradScaler happens there),
  then the step is captured on that same stream and replayed. Batches are copied into static
  input buffers; the stats dict is the graph's static output, overwritten by the next replay
  (the loop's `Stats.report` reads it before that). Random numbers come from the default CUDA
  generator, which PyTorch makes graph-safe: each replay advances its offset, so every replay
  draws fresh noise, in the same order as the eager step would.
  Lazy regularization (`loss.r1_every > 1`) is a host-side branch on the step counter, so each
  `GanStep.variant(step)` gets its own graph (with the R1 term, without), each replayed on its own
  steps. Both
  optimizers are switched to `capturable=True` (state on the device, no host sync).
- `inductor`: `torch.compile` of G and of D's `forward_features`, handed to the step with
  `GanStep.use_forwards`, so only the training step runs them (sampling and evaluation call the
  modules, eager). D stays eager when a regularizer differentiates through ∇ₓD (gradient
  penalty, R1), because compiled graphs do not support double backward.

Where the mode cannot run (graph on a CPU, a capture or compile error) the step falls back to
eager with one message naming the mode and the reason; training never stops for it. A capture
that fails has executed nothing; a compile that fails during the first step is undone by
restoring the state saved before it (`GanStep.snapshot()` and the RNG), so the fallback
trains exactly what the eager path would have.

`channels_last=True` puts conv models (G, D, G_ema, their optimizer state) and the batches in
NHWC on CUDA; it is ignored, with a message, on the CPU or for models without convolutions.
"""

from __future__ import annotations

import warnings
from typing import Callable, Optional

import torch
from torch import nn

from ganrun.train.step import Batch, GanStep

COMPILE_MODES = ("none", "graph", "inductor")
GRAPH_WARMUP = 3  # eager steps per graph variant before capture (PyTorch's docs use a few)

Stats = dict[str, torch.Tensor]
StepFn = Callable[[list[Batch], int], Stats]
Notify = Callable[[str], None]


def accelerate(step: GanStep, compile: str = "none", *, channels_last: bool = False,
               notify: Notify = print) -> StepFn:
    """Wrap `step` for `trainer.compile=<compile>`; `notify` gets one line per fallback or ignored option."""
    if compile not in COMPILE_MODES:
        raise ValueError(f"compile must be one of {', '.join(COMPILE_MODES)}; got {compile!r}")
    memory_format = _apply_channels_last(step, notify) if channels_last else torch.contiguous_format
    if compile == "graph":
        reason = graph_unsupported(step.device)
        if reason is None:
            return GraphStep(step, memory_format, notify)
        notify(f"trainer.compile=graph: {reason}; training eagerly")
    elif compile == "inductor":
        return InductorStep(step, memory_format, notify)
    return EagerStep(step, memory_format)


def graph_unsupported(device: torch.device) -> Optional[str]:
    """Why a CUDA graph cannot be captured on `device`, or None when it can be tried."""
    if device.type != "cuda":
        return f"CUDA graphs need a CUDA device (training on {device.type})"
    if not torch.cuda.is_available():
        return "CUDA is not available"
    return None


def _short(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


# -- channels_last -------------------------------------------------------------------------------

CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def has_convolutions(*modules: Optional[nn.Module]) -> bool:
    return any(isinstance(m, CONVOLUTIONS) for mod in modules if mod is not None for m in mod.modules())


def _apply_channels_last(step: GanStep, notify: Notify) -> torch.memory_format:
    if step.device.type != "cuda":
        notify(f"device.channels_last applies on CUDA only; ignored on {step.device.type}")
        return torch.contiguous_format
    if not has_convolutions(step.G, step.D):
        notify("device.channels_last applies to conv models only; ignored for this model")
        return torch.contiguous_format
    fmt = torch.channels_last
    for module in (step.G, step.D, step.G_ema):
        if module is not None:
            module.to(memory_format=fmt)  # keeps the Parameter objects, so optimizers still hold them
    for opt in step.optimizers:  # state loaded on resume: same layout as its parameter
        for p, state in opt.state.items():
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == p.shape and value.stride() != p.stride():
                    state[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)
    return fmt


def _to_format(batches: list[Batch], fmt: torch.memory_format) -> list[Batch]:
    if fmt == torch.contiguous_format:
        return batches
    return [(x.contiguous(memory_format=fmt) if x.ndim == 4 else x, y) for x, y in batches]


# -- eager ---------------------------------------------------------------------------------------

class _Wrapper:
    step: GanStep

    @property
    def batches_per_step(self) -> int:
        """Real batches per call: the step's (the loop asks for that many)."""
        return self.step.batches_per_step


class EagerStep(_Wrapper):
    """GanStep as it is (batches converted to the models' memory format)."""

    mode = "none"

    def __init__(self, step: GanStep, memory_format: torch.memory_format = torch.contiguous_format) -> None:
        self.step = step
        self.memory_format = memory_format

    def __call__(self, batches: list[Batch], step_index: int) -> Stats:
        return self.step(_to_format(batches, self.memory_format), step_index)


# -- CUDA graph ----------------------------------------------------------------------------------

def _set_capturable(opt: torch.optim.Optimizer, on: bool) -> list:
    """Switch the optimizer's groups to capturable (state on the device); returns the old flags."""
    old = []
    for group in opt.param_groups:
        old.append(group.get("capturable"))
        if "capturable" not in group:
            continue
        group["capturable"] = on
        if on:
            for p in group["params"]:
                state = opt.state.get(p, {})
                step = state.get("step")
                if torch.is_tensor(step) and step.device != p.device:  # resumed from a CPU-side step
                    state["step"] = step.to(p.device, torch.float32)
    return old


def _restore_capturable(opt: torch.optim.Optimizer, old: list) -> None:
    for group, flag in zip(opt.param_groups, old):
        if flag is not None:
            group["capturable"] = flag


class _Captured:
    def __init__(self, graph: torch.cuda.CUDAGraph, inputs: list[Batch], stats: Stats) -> None:
        self.graph, self.inputs, self.stats = graph, inputs, stats


class GraphStep(_Wrapper):
    """The whole GAN update as CUDA graph(s): eager warm-up on a side stream, capture, replay."""

    mode = "graph"

    def __init__(self, step: GanStep, memory_format: torch.memory_format, notify: Notify,
                 warmup: int = GRAPH_WARMUP) -> None:
        self.step = step
        self.memory_format = memory_format
        self.notify = notify
        self.warmup = warmup
        self.stream = torch.cuda.Stream(device=step.device)
        self.graphs: dict[tuple[str, ...], _Captured] = {}  # one per GanStep.variant
        self.eager_calls: dict[tuple[str, ...], int] = {}
        self.failed: Optional[str] = None  # why capture failed; then every step is eager
        self._old_flags = [_set_capturable(opt, True) for opt in step.optimizers]

    def __call__(self, batches: list[Batch], step_index: int) -> Stats:
        if self.failed is not None:
            return self.step(_to_format(batches, self.memory_format), step_index)
        key = self.step.variant(step_index)
        captured = self.graphs.get(key)
        if captured is None:
            if self.eager_calls.get(key, 0) < self.warmup:
                self.eager_calls[key] = self.eager_calls.get(key, 0) + 1
                return self._side_stream_step(_to_format(batches, self.memory_format), step_index)
            captured = self._capture(_to_format(batches, self.memory_format), step_index)
            if captured is None:
                return self.step(_to_format(batches, self.memory_format), step_index)
            self.graphs[key] = captured
        if not _same_layout(captured.inputs, batches):  # never with BatchSource (it drops partial batches)
            return self._side_stream_step(_to_format(batches, self.memory_format), step_index)
        # replay: the new batch into the static inputs (copy_ also converts to their memory format)
        for (x_s, y_s), (x, y) in zip(captured.inputs, batches):
            x_s.copy_(x, non_blocking=True)
            if y_s is not None:
                y_s.copy_(y, non_blocking=True)
        captured.graph.replay()
        return dict(captured.stats)

    def _side_stream_step(self, batches: list[Batch], step_index: int) -> Stats:
        """An eager step on the capture stream (warm-up); synchronized, so no tensor crosses streams live."""
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*capturable=True.*")
            stats = self.step(batches, step_index)
        torch.cuda.current_stream().wait_stream(self.stream)
        torch.cuda.synchronize(self.step.device)
        return stats

    def _capture(self, batches: list[Batch], step_index: int) -> Optional[_Captured]:
        step = self.step
        inputs = [(torch.empty_like(x).copy_(x), None if y is None else torch.empty_like(y).copy_(y))
                  for x, y in batches]
        graph = torch.cuda.CUDAGraph()
        # grads to None before capture: backward then allocates them from the graph's private pool
        step.zero_grad()
        torch.cuda.synchronize(step.device)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*capturable=True.*")
                with torch.cuda.graph(graph, stream=self.stream):
                    stats = step(inputs, step_index)
        except Exception as exc:  # noqa: BLE001 - any capture failure means: train eagerly
            self._give_up(f"capture failed ({_short(exc)})")
            return None
        return _Captured(graph, inputs, stats)

    def _give_up(self, reason: str) -> None:
        """Fall back to eager for the rest of the run. A failed capture executed nothing."""
        step = self.step
        self.failed = reason
        self.graphs.clear()
        step.zero_grad()  # drop grads that point into the abandoned graph's pool
        for opt, old in zip(step.optimizers, self._old_flags):
            _restore_capturable(opt, old)
        step.reset_scalers()
        try:
            torch.cuda.synchronize(step.device)
        except Exception:  # noqa: BLE001 - a broken capture may leave an error to clear
            pass
        self.notify(f"trainer.compile=graph: {reason}; training eagerly")


def _same_layout(static: list[Batch], batches: list[Batch]) -> bool:
    for (x_s, y_s), (x, y) in zip(static, batches):
        if x_s.shape != x.shape or x_s.dtype != x.dtype or (y_s is None) != (y is None):
            return False
        if y is not None and y_s.shape != y.shape:
            return False
    return len(static) == len(batches)


# -- torch.compile -------------------------------------------------------------------------------

class _Snapshot:
    """Everything a training step changes, copied, so a failed first compiled step can be undone."""

    def __init__(self, step: GanStep) -> None:
        self.state = step.snapshot()
        self.cpu_rng = torch.get_rng_state()
        self.cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None

    def restore(self, step: GanStep) -> None:
        step.restore(self.state)
        torch.set_rng_state(self.cpu_rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)


class InductorStep(_Wrapper):
    """GanStep with G and D's forward_features compiled (inside the step only)."""

    mode = "inductor"

    def __init__(self, step: GanStep, memory_format: torch.memory_format, notify: Notify) -> None:
        self.step = step
        self.memory_format = memory_format
        self.notify = notify
        self.failed: Optional[str] = None
        self.calls = 0
        self.compiled_G = torch.compile(step.G)
        self.compile_D = not step.loss.double_backward
        self.compiled_D = torch.compile(step.D.forward_features) if self.compile_D else None
        if not self.compile_D:
            notify("trainer.compile=inductor: D stays eager (the gradient penalty / R1 needs double "
                   "backward, which compiled graphs do not support); G is compiled")
        step.use_forwards(G=self.compiled_G, D_features=self.compiled_D)

    def __call__(self, batches: list[Batch], step_index: int) -> Stats:
        batches = _to_format(batches, self.memory_format)
        self.calls += 1
        if self.failed is not None or self.calls > 1:
            return self.step(batches, step_index)
        # the first call compiles: keep what it changes, to undo it if compiling fails
        snapshot = _Snapshot(self.step)
        try:
            return self.step(batches, step_index)
        except Exception as exc:  # noqa: BLE001 - any compile failure means: train eagerly
            self.step.use_forwards()
            snapshot.restore(self.step)
            self.failed = f"compile failed ({_short(exc)})"
            self.notify(f"trainer.compile=inductor: {self.failed}; training eagerly")
            return self.step(batches, step_index)
