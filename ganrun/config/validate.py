"""Value ranges and cross-field rules, checked before any work.

OmegaConf has already checked the types when Hydra composed the config; here each rule that a
type cannot express raises `UserError` with one line naming the key and the valid values.
Rules that need facts about the data (a conditional model needs labels) live with the builders
that learn those facts, and raise the same way.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import fields
from typing import Any, Iterable, Iterator

from ganrun.errors import UserError

INT64_MAX = 2**63 - 1
FLOAT32_MAX = 3.4028234663852886e38
SEED_RANGE = (0, 2**63 - 2)  # torch, numpy and the sample grid (seed + 1) all take these
# Dotted keys whose infinity (or NaN) means something. None today: a key that gains such a meaning
# is listed here, and its own validator then says what the value does.
NON_FINITE_OK: frozenset[str] = frozenset()


def _positive(name: str, value: Any, *, allow_none: bool = False, allow_zero: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or not (value > 0 or (allow_zero and value == 0)):  # written so NaN fails too
        bound = ">= 0" if allow_zero else "> 0"
        raise UserError(f"{name} must be {bound}, got {value}")


def _one_of(name: str, value: Any, choices: Iterable[Any]) -> None:
    choices = list(choices)
    if value not in choices:
        raise UserError(f"{name} must be one of {', '.join(map(str, choices))}; got '{value}'")


# The same rules, for the model families' own checks (their `check` methods).
positive, one_of = _positive, _one_of


def _probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise UserError(f"{name} must be in [0, 1], got {value}")


def walk(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every leaf of a typed config as (dotted key, value), lists by index: `optimizer.betas[0]`.

    Generic over dataclasses, so a group's or a model family's own schema is walked the same way.
    Raises UserError for an attribute that is not a field of its dataclass: Hydra's `+key=` and
    `++key=` add keys to a structured config, which `OmegaConf.to_object` keeps as attributes.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        names = [f.name for f in dataclasses.fields(obj)]
        extra = sorted(set(vars(obj)) - set(names))
        if extra:
            key = f"{prefix}{extra[0]}"
            close = difflib.get_close_matches(extra[0], names, n=1)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
            raise UserError(f"unknown key '{key}': {type(obj).__name__} has no such field ('+' and '++' cannot add "
                            f"keys to ganrun's config){hint}")
        for name in names:
            yield from walk(getattr(obj, name), f"{prefix}{name}.")
    elif isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj):
            yield from walk(item, f"{prefix[:-1]}[{i}].")
    elif isinstance(obj, dict):
        for key, item in obj.items():
            yield from walk(item, f"{prefix}{key}.")
    else:
        yield prefix[:-1], obj


def validate_numbers(cfg: Any) -> None:
    """At the root, for every field of every group: no unknown keys; floats finite (NaN passes every
    range check, since `nan < 0` and `nan == 0` are both false); ints within int64; seeds within what
    the RNGs take."""
    for key, value in walk(cfg):
        if isinstance(value, bool):
            continue
        if isinstance(value, float) and not math.isfinite(value) and key not in NON_FINITE_OK:
            raise UserError(f"{key} must be a finite number, got {value}")
        if isinstance(value, float) and math.isfinite(value) and abs(value) > FLOAT32_MAX:
            raise UserError(f"{key}={value:g} is too large: it must fit in float32 (|{key}| <= {FLOAT32_MAX:.4g}), "
                            "the precision of the tensors it scales")
        if isinstance(value, int):
            if key.rsplit(".", 1)[-1] == "seed" and not SEED_RANGE[0] <= value <= SEED_RANGE[1]:
                raise UserError(f"{key} must be an integer in [{SEED_RANGE[0]}, {SEED_RANGE[1]}], got {value}")
            if not -INT64_MAX - 1 <= value <= INT64_MAX:
                raise UserError(f"{key}={value} is too large: integers must fit in 64 bits (|{key}| < 2**63)")


def validate_dataset(d) -> None:
    _positive("dataset.image_size", d.image_size, allow_none=True)
    if d.channels is not None:
        _one_of("dataset.channels", d.channels, [1, 3])
    _one_of("dataset.split", d.split, ["train", "test"])
    _positive("dataset.limit", d.limit, allow_none=True)
    _positive("dataset.num_points", d.num_points)


def validate_model(m) -> None:
    """The shared keys here; each family checks its own keys (`m` is the family's dataclass)."""
    _positive("model.latent_dim", m.latent_dim)
    _positive("model.embed_dim", m.embed_dim)
    m.check()


def validate_loss(loss) -> None:
    """By kind of field, so a new regularizer's knob needs no rule here: `*_label` targets are
    probabilities, `*_every` intervals are > 0, every other number is a weight >= 0."""
    for f in fields(loss):
        value = getattr(loss, f.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if f.name.endswith("_label"):
            _probability(f"loss.{f.name}", value)
        elif f.name.endswith("_every"):
            _positive(f"loss.{f.name}", value)
        else:
            _positive(f"loss.{f.name}", value, allow_zero=True)


def validate_optimizer(o) -> None:
    _positive("optimizer.lr", o.lr)
    _positive("optimizer.g_lr", o.g_lr, allow_none=True)
    _positive("optimizer.d_lr", o.d_lr, allow_none=True)
    if len(o.betas) != 2 or not all(0.0 <= b < 1.0 for b in o.betas):
        raise UserError(f"optimizer.betas must be two numbers in [0, 1), got {list(o.betas)}")
    _positive("optimizer.momentum", o.momentum, allow_zero=True)
    if not 0.0 <= o.alpha < 1.0:
        raise UserError(f"optimizer.alpha must be in [0, 1), got {o.alpha}")
    _positive("optimizer.eps", o.eps)
    _positive("optimizer.weight_decay", o.weight_decay, allow_zero=True)
    _one_of("optimizer.lr_decay", o.lr_decay, ["none", "linear", "cosine"])  # ganrun.optim.LR_DECAYS


def validate_device(d) -> None:
    _one_of("device.name", d.name, ["auto", "cpu", "cuda"])
    _one_of("device.precision", d.precision, ["fp32", "bf16", "fp16"])
    _positive("device.cpu_threads", d.cpu_threads, allow_none=True)


def validate_trainer(t) -> None:
    _positive("trainer.batch_size", t.batch_size)
    _positive("trainer.max_steps", t.max_steps, allow_none=True)
    _positive("trainer.epochs", t.epochs, allow_none=True)
    if t.max_steps is None and t.epochs is None:
        raise UserError("set trainer.max_steps or trainer.epochs (both are null)")
    _positive("trainer.n_critic", t.n_critic)
    if not 0.0 <= t.ema_decay < 1.0:
        raise UserError(f"trainer.ema_decay must be in [0, 1), got {t.ema_decay}")
    _positive("trainer.ema_rampup", t.ema_rampup, allow_zero=True)
    if t.ema_rampup > 0 and t.ema_decay == 0:
        raise UserError("trainer.ema_rampup ramps up the EMA of G, which is off; set trainer.ema_decay (e.g. 0.999)")
    _positive("trainer.log_every", t.log_every)
    _positive("trainer.sample_every", t.sample_every, allow_zero=True)
    _positive("trainer.checkpoint_every", t.checkpoint_every)
    _positive("trainer.keep_last", t.keep_last, allow_zero=True)
    _one_of("trainer.compile", t.compile, ["none", "graph", "inductor"])
    _positive("trainer.num_sample_images", t.num_sample_images)
    _positive("trainer.jobs_per_gpu", t.jobs_per_gpu)
    _positive("trainer.devices", t.devices)
    _positive("trainer.collective_timeout_s", t.collective_timeout_s)
    if t.batch_size % t.devices:
        raise UserError(f"trainer.batch_size={t.batch_size} (the global batch) must be a multiple of "
                        f"trainer.devices={t.devices}, so every process gets the same share")
    if t.devices > 1 and t.compile == "graph":
        raise UserError("trainer.compile=graph captures one process's step; with trainer.devices > 1 use "
                        "trainer.compile=none or inductor")


def validate_logger(lg) -> None:
    _one_of("logger.progress", lg.progress, ["auto", "rich", "plain", "none"])


def validate_eval(e) -> None:
    _positive("eval.every", e.every, allow_zero=True)
    _positive("eval.num_samples", e.num_samples)
    _one_of("eval.features", e.features, ["domain", "inception"])
    _positive("eval.batch_size", e.batch_size)
    _positive("eval.classifier_epochs", e.classifier_epochs)
    _positive("eval.classifier_batch_size", e.classifier_batch_size)


def validate_across(cfg) -> None:
    """Rules that span groups. (What a loss needs of D, e.g. a Lipschitz critic for an objective
    that says so, is checked on the built D by `ganrun.losses.check_discriminator`.)"""
    model, trainer = getattr(cfg, "model", None), getattr(cfg, "trainer", None)
    pack = getattr(model, "pack", 1)  # PacGAN packing: MLP families only
    if model is not None and trainer is not None and trainer.batch_size % pack:
        raise UserError(f"trainer.batch_size={trainer.batch_size} must be a multiple of model.pack={pack} "
                        "(D judges packs of that many samples)")
    optimizer = getattr(cfg, "optimizer", None)
    if optimizer is not None and trainer is not None and optimizer.lr_decay != "none" and trainer.compile == "graph":
        raise UserError(f"optimizer.lr_decay={optimizer.lr_decay} changes the learning rate every step, which a "
                        "captured CUDA graph would keep at its first value; use trainer.compile=inductor or none, "
                        "or optimizer.lr_decay=none")


VALIDATORS = {
    "dataset": validate_dataset,
    "model": validate_model,
    "loss": validate_loss,
    "optimizer": validate_optimizer,
    "device": validate_device,
    "trainer": validate_trainer,
    "logger": validate_logger,
    "eval": validate_eval,
}


def validate_group(group: str, value) -> None:
    """Check one group's config on its own (e.g. the model and dataset sections read from a checkpoint)."""
    validate_numbers(value)
    VALIDATORS[group](value)


def validate(cfg) -> None:
    """Check every group present on `cfg` (a typed app config); raise UserError on the first problem."""
    validate_numbers(cfg)
    for group, check in VALIDATORS.items():
        if hasattr(cfg, group):
            check(getattr(cfg, group))
    validate_across(cfg)
