"""How well discrete codes align with known classes (e.g. the 8 mixture modes)."""
from __future__ import annotations

import numpy as np


def purity(codes: np.ndarray, labels: np.ndarray) -> float:
    """sum over codes of the size of its most common label, divided by N (1 = each code is one
    label; codes may still split a label in two)."""
    codes, labels = np.asarray(codes), np.asarray(labels)
    if codes.shape != labels.shape or codes.ndim != 1:
        raise ValueError(f"codes and labels must be equal-length 1-D arrays, got {codes.shape}, {labels.shape}")
    total = 0
    for c in np.unique(codes):
        total += np.bincount(labels[codes == c]).max()
    return float(total / len(codes))


def coverage(codes: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of labels that are the majority label of at least one code."""
    codes, labels = np.asarray(codes), np.asarray(labels)
    majority = {int(np.bincount(labels[codes == c]).argmax()) for c in np.unique(codes)}
    return len(majority) / len(np.unique(labels))
