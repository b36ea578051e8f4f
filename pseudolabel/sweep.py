"""Objectives for Hydra sweeps, and the callback that reports the best trial.

A sweep trial (``stage=sweep_trial``, see :func:`pseudolabel.pipeline.run_sweep_trial`) returns one
number to maximise:

- ``f1``: F1 at IoU ``evaluate.iou_threshold`` against the ground truth (needs ``data.ground_truth``);
- ``proxy`` (no ground truth): harmonic mean of *track consistency* (share of kept boxes that belong to a
  track seen in at least ``min_track_length`` sampled frames) and *track coverage* (share of video frames
  holding such a box). It rewards settings whose boxes move like a ball and that find it in many frames;
  it cannot see a consistent false positive (a static logo is caught by the ``static`` pruner instead).
  Still images have no tracks: their proxy is 0, so sweep stills only with ground truth.
- ``auto``: ``f1`` when the metrics hold one, else ``proxy``.
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any, Mapping

from hydra.experimental.callback import Callback

from .records import Dataset

log = logging.getLogger("pseudolabel")


def track_proxy(ds: Dataset, *, min_track_length: int = 3, max_gap: int = 3) -> dict[str, float]:
    """Track consistency, coverage and their harmonic mean for the kept boxes of ``ds`` (not modified).

    Returns
    -------
    dict with ``consistency``, ``coverage``, ``proxy`` in [0, 1] and ``n_video_frames`` (frames of videos
    with at least two sampled frames: the only ones a track can cover).
    """
    from .prune.temporal import TemporalConfig, apply_temporal

    work = copy.deepcopy(ds)
    apply_temporal(work, TemporalConfig(min_track_length=min_track_length, max_gap=max_gap, fill_gaps=0),
                   round=-1)
    per_video: dict[str, int] = {}
    for f in work.frames:
        per_video[f.video_id] = per_video.get(f.video_id, 0) + 1
    video_frames = {f.id for f in work.frames if per_video[f.video_id] >= 2}
    kept_before = [b for b in ds.boxes if b.kept and b.image_id in video_frames]
    tracked = [b for b in work.boxes if b.kept and b.image_id in video_frames]
    consistency = len(tracked) / len(kept_before) if kept_before else 0.0
    coverage = len({b.image_id for b in tracked}) / len(video_frames) if video_frames else 0.0
    proxy = 2 * consistency * coverage / (consistency + coverage) if consistency + coverage else 0.0
    return {"consistency": consistency, "coverage": coverage, "proxy": proxy,
            "n_video_frames": len(video_frames)}


def objective(metrics: Mapping[str, Any], proxy: Mapping[str, float] | None, *, kind: str = "auto") -> tuple[str, float]:
    """``(name, value)`` of the objective of a trial; see the module docstring for ``kind``."""
    if kind not in ("auto", "f1", "proxy"):
        raise ValueError(f"sweep.objective must be auto, f1 or proxy, got {kind!r}")
    if kind in ("auto", "f1") and metrics.get("f1") is not None:
        return "f1", float(metrics["f1"])
    if kind == "f1":
        raise ValueError("sweep.objective=f1 needs ground truth (data.ground_truth); use proxy")
    if proxy is None:
        raise ValueError("no proxy computed for a trial without ground truth")
    return "proxy", float(proxy["proxy"])


class TrialValue(float):
    """A trial's objective: the mean over its repeats (a float, as Optuna and Hydra read it), with every
    repeat's value (``values``) and their sample standard deviation (``spread``; 0.0 for one repeat)."""

    values: tuple[float, ...]
    spread: float

    @classmethod
    def of(cls, values) -> "TrialValue":
        import statistics

        vals = tuple(float(v) for v in values)
        out = cls(statistics.fmean(vals))
        out.values, out.spread = vals, statistics.stdev(vals) if len(vals) > 1 else 0.0
        return out

    def __reduce__(self):  # pickled by launchers (joblib): keep the repeats
        return (TrialValue.of, (self.values,))

    def describe(self) -> str:
        return f"{float(self):.4f}" if len(self.values) < 2 else \
            f"{float(self):.4f} +- {self.spread:.4f} (n={len(self.values)})"


def best_trial(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The result with the highest ``value`` (first one on ties); None when there is none."""
    scored = [r for r in results if isinstance(r.get("value"), (int, float))]
    return max(scored, key=lambda r: r["value"]) if scored else None


class SweepSummary(Callback):
    """Hydra callback: collects every trial's objective and, at the end of the multirun, writes
    ``results.json`` next to the trials and prints the best setting."""

    def __init__(self, results_file: str | None = None) -> None:
        self.results_file = results_file
        self.results: list[dict[str, Any]] = []

    def on_job_end(self, config, job_return, **kwargs: Any) -> None:
        from hydra.core.utils import JobStatus

        value = job_return.return_value if job_return.status == JobStatus.COMPLETED else None
        overrides = list(job_return.overrides or [])
        swept = {str(k).split("+")[-1] for k in (config.hydra.sweeper.get("params") or {})}
        self.results.append({"job": len(self.results), "overrides": overrides,
                             "params": [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in swept] or overrides,
                             "value": float(value) if isinstance(value, (int, float)) else None,
                             "values": list(getattr(value, "values", ())) or None,
                             "spread": getattr(value, "spread", None),
                             "status": job_return.status.name})

    def on_multirun_end(self, config, **kwargs: Any) -> None:
        from .files import atomic_write_json

        best = best_trial(self.results)
        out = Path(self.results_file or Path(config.hydra.sweep.dir) / "results.json")
        atomic_write_json(out, {"objective": str(config.get("sweep", {}).get("objective", "auto")),
                                "trials": self.results, "best": best})
        lines = [f"sweep: {len(self.results)} trials, results in {out}"]
        for r in sorted(self.results, key=lambda r: -(r["value"] if r["value"] is not None else -1)):
            value = "failed" if r["value"] is None else f"{r['value']:.4f}"
            if r["value"] is not None and r.get("values") and len(r["values"]) > 1:
                value += f" +- {r['spread']:.4f} (n={len(r['values'])}, min {min(r['values']):.4f}, " \
                         f"max {max(r['values']):.4f})"
            lines.append(f"  {value}  {' '.join(r['params'])}")
        lines.append("best: " + (f"{best['value']:.4f} with {' '.join(best['params'])}" if best else "none"))
        print("\n".join(lines), flush=True)
