"""Feature networks: ganrun's domain classifier, its training and cache, and feature extraction.

The domain classifier is a small CNN trained on the run's own labelled dataset at the dataset's
native resolution. Its penultimate layer gives the features for FID/KID/PR on that domain
(`fid10k/domain`), its softmax the probabilities for the classifier score. It is trained once per
dataset and training recipe, and cached as plain state:

    <cache_dir>/domain-<fingerprint[:16]>.pt   {"format_version", "kind", "arch", "state_dict",
                                               "test_accuracy", "fingerprint", "data_fingerprint",
                                               "recipe", "seed"}

written atomically and read with `torch.load(weights_only=True)`, so no code is ever unpickled.

`fingerprint` hashes the training data *and* the recipe (architecture, seed, epochs, batch size,
learning rate, format version): changing any of them gives a new network with a new
`feature_network_id`, so metrics from different feature networks never share a name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganrun.errors import UserError

FORMAT_VERSION = 2  # of the cached checkpoint dict; bump when its layout or the architecture changes (2: batch norm)
MIN_IMAGE_SIZE = 16  # two 2× max-pools leave ≥ 4×4 for the 7×7 adaptive pool (finer than that would be all padding)
FEATURE_DIM = 64  # width of the penultimate (feature) layer
LEARNING_RATE = 2e-3  # Adam, cosine-decayed to 0 over the run
DEFAULT_EPOCHS = 3  # Fashion-MNIST: 91.0% test accuracy, ~50 s of one CPU core
DEFAULT_BATCH_SIZE = 64

ProgressFn = Callable[[float, dict], None]


# ---------------------------------------------------------------------------------------------
# The network


class DomainClassifier(nn.Module):
    """Small CNN classifier for (N, C, S, S) images in [-1, 1]; about 106k parameters for 28×28×1.

        conv3×3(C→16)+BN+ReLU+maxpool2  state (N, 16, S/2, S/2)
        conv3×3(16→32)+BN+ReLU+maxpool2 state (N, 32, S/4, S/4)
        adaptive avg pool 7×7, flatten  state (N, 1568)          (identity at S = 28)
        linear(1568→feature_dim)+ReLU   state (N, feature_dim)   ← features(x)
        linear(feature_dim→num_classes) state (N, num_classes)   ← forward(x): logits

    The adaptive pool makes the same layers work at any native resolution S ≥ 16 (28, 32, 64...).
    It keeps a 7×7 grid: pooling further (4×4) cost ~8 points of Fashion-MNIST accuracy; batch
    norm gains ~1 point at 3 epochs (91.0% vs 90.1%). Features come from eval mode (running stats).
    """

    def __init__(self, in_channels: int, image_size: int, num_classes: int, feature_dim: int = FEATURE_DIM) -> None:
        super().__init__()
        if image_size < MIN_IMAGE_SIZE:
            raise UserError(
                f"the domain classifier needs images of at least {MIN_IMAGE_SIZE}×{MIN_IMAGE_SIZE}, "
                f"got {image_size}×{image_size}; use eval.features=inception or a larger dataset resolution"
            )
        if in_channels < 1 or num_classes < 2 or feature_dim < 1:
            raise ValueError(f"bad DomainClassifier args: in_channels={in_channels}, num_classes={num_classes}, feature_dim={feature_dim}")
        self.in_channels, self.image_size = int(in_channels), int(image_size)
        self.num_classes, self.feature_dim = int(num_classes), int(feature_dim)
        self.trunk = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.MaxPool2d(2),  # (N, 16, S/2, S/2)
            nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
            nn.MaxPool2d(2),  # (N, 32, S/4, S/4)
            nn.AdaptiveAvgPool2d(7), nn.Flatten(),  # (N, 1568)
            nn.Linear(32 * 7 * 7, feature_dim), nn.ReLU(),  # (N, feature_dim)
        )
        self.head = nn.Linear(feature_dim, num_classes)  # (N, num_classes)

    def arch(self) -> dict[str, int]:
        """Constructor arguments, enough to rebuild the module: DomainClassifier(**m.arch())."""
        return {"in_channels": self.in_channels, "image_size": self.image_size,
                "num_classes": self.num_classes, "feature_dim": self.feature_dim}

    def _check(self, x: torch.Tensor) -> None:
        want = (self.in_channels, self.image_size, self.image_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != want or not x.is_floating_point():
            raise ValueError(f"DomainClassifier expects float (N, {want[0]}, {want[1]}, {want[2]}) in [-1, 1]; got {x.dtype} {tuple(x.shape)}")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) float in [-1, 1] → (N, feature_dim) penultimate-layer activations (≥ 0)."""
        self._check(x)
        return self.trunk(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) float in [-1, 1] → (N, num_classes) logits."""
        return self.head(self.features(x))


# ---------------------------------------------------------------------------------------------
# Image conversion and extraction


def to_unit_range(images: torch.Tensor, *, quantize: bool = True) -> torch.Tensor:
    """Images (N, C, H, W) → float32 in [-1, 1].

    uint8 pixels p map to p/127.5 − 1. Float images must already be in [-1, 1]; with quantize=True
    (the default) they are first rounded to the nearest of the 256 uint8 levels, round((x+1)·127.5),
    clamped to [0, 255], so generated images are measured exactly as if they had been saved as
    8-bit PNGs, the way real images reach us.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W); got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.float().div_(127.5).sub_(1.0)
    if not images.is_floating_point():
        raise ValueError(f"images must be uint8 or float in [-1, 1]; got {images.dtype}")
    x = images.float()
    if quantize:
        x = x.add(1.0).mul_(127.5).add_(0.5).floor_().clamp_(0.0, 255.0).div_(127.5).sub_(1.0)
    return x


@contextlib.contextmanager
def no_tf32():
    """Run the body with TF32 off for CUDA matmuls and cuDNN convolutions; restore after.

    Features must not depend on whether the training code enabled TF32. Uses whichever TF32 API
    the process already uses (torch ≥ 2.9 refuses to mix the legacy `allow_tf32` flags with the
    newer `fp32_precision` settings).
    """
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    try:
        saved = ("legacy", matmul.allow_tf32, cudnn.allow_tf32)
        matmul.allow_tf32, cudnn.allow_tf32 = False, False
    except RuntimeError:  # the process set the new API; stay with it
        saved = ("new", matmul.fp32_precision, cudnn.conv.fp32_precision)
        matmul.fp32_precision, cudnn.conv.fp32_precision = "ieee", "ieee"
    try:
        yield
    finally:
        if saved[0] == "legacy":
            matmul.allow_tf32, cudnn.allow_tf32 = saved[1], saved[2]
        else:
            matmul.fp32_precision, cudnn.conv.fp32_precision = saved[1], saved[2]


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _run_batches(model: nn.Module, images: torch.Tensor, batch_size: int, fn, quantize: bool) -> list[tuple[torch.Tensor, ...]]:
    """fn(model, x) on fixed-size batches of `images` (the last may be smaller), eval mode, no grad, no TF32."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1; got {batch_size}")
    device = _model_device(model)
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad(), no_tf32():
            for start in range(0, images.shape[0], batch_size):
                x = to_unit_range(images[start : start + batch_size].to(device), quantize=quantize)
                out.append(tuple(t.to("cpu", torch.float64) for t in fn(model, x)))
    finally:
        model.train(was_training)
    return out


def extract(model: DomainClassifier, images: torch.Tensor, batch_size: int = 500, *, quantize: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Domain-classifier features and class probabilities of images at native resolution.

    images: (N, C, S, S), uint8 or float in [-1, 1], on any device (moved batch by batch to the
    model's device). Runs in eval mode under no_grad with TF32 off, in batches of `batch_size`.
    Returns (features (N, feature_dim) float64, probs (N, num_classes) float64, rows sum to 1),
    numpy arrays; probs are the softmax of the logits computed in float64.
    """
    def fn(m, x):
        f = m.features(x)
        return f, m.head(f)

    parts = _run_batches(model, images, batch_size, fn, quantize)
    if not parts:
        raise ValueError("extract: no images")
    feats = torch.cat([p[0] for p in parts])
    probs = torch.softmax(torch.cat([p[1] for p in parts]), dim=1)
    return feats.numpy(), probs.numpy()


def extract_features(model: nn.Module, images: torch.Tensor, batch_size: int = 500, *, quantize: bool = True) -> np.ndarray:
    """Features (N, F) float64 of any feature network with a `features(x)` method taking (N, C, H, W)
    in [-1, 1] (DomainClassifier, FIDInceptionV3); same batching and precision rules as `extract`."""
    parts = _run_batches(model, images, batch_size, lambda m, x: (m.features(x),), quantize)
    if not parts:
        raise ValueError("extract_features: no images")
    return torch.cat([p[0] for p in parts]).numpy()


def predict_labels(model: DomainClassifier, images: torch.Tensor, batch_size: int = 500, *, quantize: bool = True) -> np.ndarray:
    """Arg-max class (N,) int64 of each image."""
    parts = _run_batches(model, images, batch_size, lambda m, x: (m(x).argmax(dim=1),), quantize)
    return torch.cat([p[0] for p in parts]).to(torch.int64).numpy()


# ---------------------------------------------------------------------------------------------
# Training


def _check_images_labels(images: torch.Tensor, labels: torch.Tensor, what: str) -> None:
    if not torch.is_tensor(images) or images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"{what} images must be a uint8 tensor (N, C, H, W); got {getattr(images, 'dtype', type(images))} {tuple(getattr(images, 'shape', ()))}")
    if images.shape[2] != images.shape[3]:
        raise ValueError(f"{what} images must be square; got {tuple(images.shape)}")
    if not torch.is_tensor(labels) or labels.ndim != 1 or labels.shape[0] != images.shape[0] or labels.is_floating_point():
        raise ValueError(f"{what} labels must be an integer tensor (N,) matching the images; got {tuple(getattr(labels, 'shape', ()))}")


def _accuracy(model: DomainClassifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    pred = predict_labels(model, images, batch_size, quantize=False)
    return float((pred == labels.cpu().numpy()).mean())


def fit_domain_classifier(
    train_u8: torch.Tensor,
    train_labels: torch.Tensor,
    test_u8: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    seed: int,
    device,
    epochs: int,
    batch_size: int,
    progress: Optional[ProgressFn] = None,
    num_classes: Optional[int] = None,
    lr: float = LEARNING_RATE,
) -> tuple[DomainClassifier, float]:
    """Train a DomainClassifier on labelled uint8 images; return it (eval mode) and its test accuracy.

    train_u8/test_u8: (N, C, S, S) uint8; train_labels/test_labels: (N,) ints in [0, num_classes)
    (num_classes defaults to 1 + the largest label seen). Images become x.float()/127.5 − 1.
    Adam(lr) with a cosine decay to 0 over `epochs` passes of shuffled mini-batches of
    `batch_size` images (the last batch of an epoch may be smaller); cross-entropy loss.
    Initialisation and shuffling use only `seed` (the global RNG is left untouched), so on CPU the
    same inputs and seed give bit-identical weights. The train set is moved to `device` once.
    progress(done_fraction in [0, 1], info) is called about 20 times per epoch and at the end;
    info has "epoch", "epochs", "loss" (mean of the last interval), and at the end "test_accuracy".
    """
    _check_images_labels(train_u8, train_labels, "train")
    _check_images_labels(test_u8, test_labels, "test")
    if tuple(test_u8.shape[1:]) != tuple(train_u8.shape[1:]):
        raise ValueError(f"train and test images differ in shape: {tuple(train_u8.shape[1:])} vs {tuple(test_u8.shape[1:])}")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be ≥ 1; got {epochs}, {batch_size}")
    if num_classes is None:
        num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    device = torch.device(device)
    _, c, s, _ = train_u8.shape

    # Seeded initialisation without touching the caller's global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DomainClassifier(c, s, num_classes)
    model.to(device).train()
    shuffle = torch.Generator().manual_seed(seed)

    x_all = train_u8.to(device)
    y_all = train_labels.to(device, torch.int64)
    n = x_all.shape[0]
    steps_per_epoch = math.ceil(n / batch_size)
    total_steps = epochs * steps_per_epoch
    report_every = max(1, steps_per_epoch // 20)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1.0 + math.cos(math.pi * step / total_steps)))

    step = 0
    loss_sum = torch.zeros((), device=device)
    loss_count = 0
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=shuffle).to(device)
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            x = x_all[idx].float().div_(127.5).sub_(1.0)  # (B, C, S, S) in [-1, 1]
            loss = F.cross_entropy(model(x), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            loss_sum += loss.detach()
            loss_count += 1
            if progress is not None and (step % report_every == 0 or step == total_steps):
                progress(step / total_steps, {"epoch": epoch + 1, "epochs": epochs, "loss": float(loss_sum) / loss_count})
                loss_sum.zero_()
                loss_count = 0

    model.eval()
    test_accuracy = _accuracy(model, test_u8, test_labels)
    if progress is not None:
        progress(1.0, {"epoch": epochs, "epochs": epochs, "test_accuracy": test_accuracy})
    return model, test_accuracy


# ---------------------------------------------------------------------------------------------
# Cache


def default_cache_dir() -> Path:
    """$GANRUN_CACHE, else $XDG_CACHE_HOME/ganrun, else ~/.cache/ganrun."""
    if os.environ.get("GANRUN_CACHE"):
        return Path(os.environ["GANRUN_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "ganrun"
    return Path.home() / ".cache" / "ganrun"


def data_fingerprint(train_u8: torch.Tensor, train_labels: torch.Tensor) -> str:
    """sha256 hex digest of the images' and labels' shapes, dtypes and raw bytes (C order)."""
    h = hashlib.sha256()
    for t in (train_u8, train_labels):
        a = np.ascontiguousarray(t.detach().cpu().numpy())
        h.update(f"{a.dtype.str}{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def classifier_fingerprint(data_fp: str, recipe: dict) -> str:
    """sha256 of the data fingerprint and the training recipe (canonical JSON)."""
    blob = json.dumps({"data": data_fp, "recipe": recipe, "format_version": FORMAT_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def feature_network_id(fingerprint: str) -> str:
    """Name of a cached domain classifier, recorded beside the metrics it produced."""
    return f"domain-{fingerprint[:16]}"


def _atomic_torch_save(obj: dict, path: Path, *, overwrite: bool) -> bool:
    """Write obj to path atomically: temp file in the same folder, flush, fsync, then publish.

    overwrite=False publishes with os.link, which fails if the file already exists, so the first
    of several concurrent writers wins and every process ends up using the same file; returns
    False when another writer was first. overwrite=True (or a filesystem without hard links) uses
    os.replace. Readers never see a partial file either way.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        if not overwrite:
            try:
                os.link(tmp, path)
                return True
            except FileExistsError:
                return False
            except OSError:
                pass  # no hard links here: fall back to replace
        os.replace(tmp, path)
        tmp = None
        return True
    finally:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def _load_cached(path: Path, fingerprint: str) -> tuple[DomainClassifier, dict]:
    """Rebuild the classifier from a cache file (weights_only); ValueError if it is not ours."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format_version") != FORMAT_VERSION or ckpt.get("kind") != "domain_classifier":
        raise ValueError("not a ganrun domain classifier of this format version")
    if ckpt.get("fingerprint") != fingerprint:
        raise ValueError("fingerprint does not match")
    model = DomainClassifier(**ckpt["arch"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt


def load_or_fit_classifier(
    train_u8: torch.Tensor,
    train_labels: torch.Tensor,
    test_u8: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    seed: int,
    device,
    epochs: int,
    batch_size: int,
    cache_dir=None,
    progress: Optional[ProgressFn] = None,
    num_classes: Optional[int] = None,
) -> tuple[DomainClassifier, dict]:
    """The domain classifier for this dataset and recipe: from the cache, or trained and cached.

    Arguments as in `fit_domain_classifier`; cache_dir None means `default_cache_dir()`.
    Returns (model in eval mode on `device`, info) with info = {"feature_network_id", "fingerprint",
    "data_fingerprint", "test_accuracy", "path", "cached" (True: loaded, not trained),
    "train_seconds" (0 when cached)}. A cache file that cannot be read is replaced (with a warning).
    """
    if num_classes is None:
        num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    _, c, s, _ = train_u8.shape
    recipe = {"arch": {"in_channels": int(c), "image_size": int(s), "num_classes": int(num_classes), "feature_dim": FEATURE_DIM},
              "seed": int(seed), "epochs": int(epochs), "batch_size": int(batch_size), "lr": LEARNING_RATE}
    data_fp = data_fingerprint(train_u8, train_labels)
    fp = classifier_fingerprint(data_fp, recipe)
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = cache_dir / f"{feature_network_id(fp)}.pt"
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the cache folder {cache_dir} ({e.strerror}); set eval.cache_dir or $GANRUN_CACHE to a writable folder") from None
    info = {"feature_network_id": feature_network_id(fp), "fingerprint": fp, "data_fingerprint": data_fp, "path": str(path)}

    overwrite = False
    if path.exists():
        try:
            model, ckpt = _load_cached(path, fp)
            return model.to(device), {**info, "test_accuracy": float(ckpt["test_accuracy"]), "cached": True, "train_seconds": 0.0}
        except Exception as e:  # corrupt, truncated, foreign or old: retrain and replace
            warnings.warn(f"ignoring unreadable domain classifier cache {path} ({e}); retraining", stacklevel=2)
            overwrite = True

    t0 = time.perf_counter()
    model, test_accuracy = fit_domain_classifier(
        train_u8, train_labels, test_u8, test_labels, seed=seed, device=device, epochs=epochs,
        batch_size=batch_size, progress=progress, num_classes=num_classes)
    train_seconds = time.perf_counter() - t0
    ckpt = {
        "format_version": FORMAT_VERSION,
        "kind": "domain_classifier",
        "arch": model.arch(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "test_accuracy": float(test_accuracy),
        "fingerprint": fp,
        "data_fingerprint": data_fp,
        "recipe": recipe,
        "seed": int(seed),
    }
    if not _atomic_torch_save(ckpt, path, overwrite=overwrite):
        # Another process published this network first: use its file so all runs agree.
        try:
            model, ckpt = _load_cached(path, fp)
            model.to(device)
            test_accuracy = float(ckpt["test_accuracy"])
        except Exception:
            _atomic_torch_save(ckpt, path, overwrite=True)
    return model, {**info, "test_accuracy": float(test_accuracy), "cached": False, "train_seconds": train_seconds}
