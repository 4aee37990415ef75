"""Metrics on a domain classifier's predictions for generated samples.

`classifier_score` uses the Inception-Score formula (Salimans et al. 2016) but on ganrun's domain
classifier, not on Inception; its numbers are therefore not comparable with published Inception
Scores, and it is called "classifier score" everywhere in ganrun.
"""

from __future__ import annotations

import numpy as np
from scipy.special import xlogy

from ganrun.metrics._arrays import as_float64, as_labels


def classifier_score(probs, splits: int = 10) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) ‖ p(y))) per split → (mean, std) over splits.

    probs: (N, K) class probabilities p(y|x) (rows sum to 1), N ≥ splits. The N rows are cut in
    order into `splits` chunks [i·N//splits, (i+1)·N//splits) (torch-fidelity's boundaries, no
    shuffling); in each chunk p(y) is the chunk's mean row and the score is

        exp( mean_x Σ_y p(y|x) · (log p(y|x) − log p(y)) )      with 0·log 0 = 0.

    The score lies in [1, K]: 1 when every sample gets the same prediction, K when predictions
    are confident and the classes are used equally. std is the population std (ddof=0).
    """
    p = as_float64(probs, "probs", 2)
    n = p.shape[0]
    if splits < 1 or n < splits:
        raise ValueError(f"classifier_score needs 1 ≤ splits ≤ N; got splits={splits}, N={n}")
    if (p < 0).any():
        raise ValueError("classifier_score: probs must be non-negative (pass softmax outputs, not logits)")
    scores = np.empty(splits, dtype=np.float64)
    for i in range(splits):
        chunk = p[i * n // splits : (i + 1) * n // splits]  # (n_i, K)
        p_y = chunk.mean(axis=0, keepdims=True)  # (1, K) marginal p(y) of the chunk
        kl = (xlogy(chunk, chunk) - xlogy(chunk, p_y)).sum(axis=1)  # (n_i,) KL(p(y|x) ‖ p(y))
        scores[i] = np.exp(kl.mean())
    return float(scores.mean()), float(scores.std())


def class_histogram(pred_labels, num_classes: int) -> np.ndarray:
    """Counts of each predicted class: pred_labels (N,) ints in [0, num_classes) → (num_classes,) int64."""
    labels = as_labels(pred_labels, "pred_labels")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"pred_labels must lie in [0, {num_classes}); got range [{labels.min()}, {labels.max()}]")
    return np.bincount(labels, minlength=num_classes).astype(np.int64)


def kl_to_uniform(hist) -> float:
    """KL(p ‖ uniform) in nats for a histogram (K,) of counts or probabilities, p = hist / Σ hist.

    Σ_k p_k · log(K · p_k) with 0·log 0 = 0; 0 for a uniform histogram, log K when all mass is in
    one class. An empty histogram (Σ = 0) has no distribution and gives nan.
    """
    h = as_float64(hist, "hist", 1)
    if (h < 0).any():
        raise ValueError("kl_to_uniform: histogram entries must be non-negative")
    total = h.sum()
    if total <= 0:
        return float("nan")
    p = h / total
    return float(xlogy(p, p * h.shape[0]).sum())


def conditional_accuracy(pred_labels, target_labels) -> float:
    """Fraction of samples whose predicted class equals the class they were generated for.

    pred_labels, target_labels: (N,) ints. For a conditional generator this is the domain
    classifier's accuracy on samples G(z, c) against c.
    """
    pred = as_labels(pred_labels, "pred_labels")
    target = as_labels(target_labels, "target_labels")
    if pred.shape != target.shape or pred.size == 0:
        raise ValueError(f"pred_labels and target_labels must be equal non-empty (N,); got {pred.shape} and {target.shape}")
    return float((pred == target).mean())
