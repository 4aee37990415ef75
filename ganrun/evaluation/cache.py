"""The feature cache: fitted domain classifiers and reference features, kept across runs.

A domain classifier is trained once per dataset and training recipe, and cached as plain state:

    <cache_dir>/domain-<fingerprint[:16]>.pt   {"format_version", "kind", "arch", "state_dict",
                                               "test_accuracy", "fingerprint", "data_fingerprint",
                                               "recipe", "seed"}

written with `ganrun.atomic.atomic_write` (the first of several concurrent writers wins) and read
with `torch.load(weights_only=True)`, so no code is ever unpickled. `fingerprint` hashes the
training data *and* the recipe (architecture, seed, epochs, batch size, learning rate, format
version): changing any of them gives a new network with a new `feature_network_id`, so metrics
from different feature networks never share a name. Reference features (of the test split) are
cached beside them as `ref-<network id>-<data digest>.pt`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ganrun.atomic import atomic_write
from ganrun.errors import UserError
from ganrun.evaluation.domain import FEATURE_DIM, LEARNING_RATE, DomainClassifier, ProgressFn, fit_domain_classifier

FORMAT_VERSION = 2  # of the cached checkpoint dict; bump when its layout or the architecture changes (2: batch norm)


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
    try:
        atomic_write(path, lambda f: torch.save(ckpt, f), exclusive=not overwrite)
    except FileExistsError:
        # Another process published this network first: use its file so all runs agree.
        try:
            model, ckpt = _load_cached(path, fp)
            model.to(device)
            test_accuracy = float(ckpt["test_accuracy"])
        except Exception:  # noqa: BLE001 - theirs is unreadable: ours replaces it
            atomic_write(path, lambda f: torch.save(ckpt, f))
    return model, {**info, "test_accuracy": float(test_accuracy), "cached": False, "train_seconds": train_seconds}


def reference_features(net, reals: torch.Tensor, cache_dir: Path) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Features of the reference images (`net(reals)` → features, probs), computed once and cached
    keyed by network and data."""
    digest = hashlib.sha256(reals.numpy().tobytes() + str(tuple(reals.shape)).encode()).hexdigest()[:16]
    path = cache_dir / f"ref-{net.id}-{digest}.pt"
    if path.is_file():
        try:
            cached = torch.load(path, weights_only=True)
            probs = cached.get("probs")
            return cached["feats"].numpy(), None if probs is None else probs.numpy()
        except Exception:  # noqa: BLE001 - a damaged cache file is recomputed and replaced
            pass
    feats, probs = net(reals)
    cached = {"feats": torch.from_numpy(feats), "probs": None if probs is None else torch.from_numpy(probs)}
    atomic_write(path, lambda f: torch.save(cached, f))
    return feats, probs
