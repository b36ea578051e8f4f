"""A static label-quality dashboard of an experiment: ``runs/<exp>/report.html`` + ``report_files/``.

Opens from disk with no server and no network (``plotly.min.js`` is copied next to the page).
:func:`build_report` is the entry point; :mod:`.data` gathers the per-round tables (pure functions),
:mod:`.embed` the embeddings and projections, :mod:`.images` the crop and thumbnail files,
:mod:`.figures` the Plotly figures and :mod:`.html` the page.
"""
from __future__ import annotations

from typing import Any


def build_report(*args: Any, **kwargs: Any):
    """See :func:`pseudolabel.report.build.build_report`."""
    from .build import build_report as _build

    return _build(*args, **kwargs)


__all__ = ["build_report"]
