"""Pruning of pseudo-label boxes (rule-based heuristics)."""
from pseudolabel.prune.heuristics import (
    REASONS,
    HeuristicsConfig,
    apply_heuristics,
    aspect_mask,
    degenerate_mask,
    log_size_outlier_mask,
    overlap_mask,
    size_mask,
    static_mask,
)

__all__ = [
    "REASONS",
    "HeuristicsConfig",
    "apply_heuristics",
    "aspect_mask",
    "degenerate_mask",
    "log_size_outlier_mask",
    "overlap_mask",
    "size_mask",
    "static_mask",
]
