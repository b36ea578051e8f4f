from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture
def shared_dir() -> Path:
    if not (SHARED / "data").is_dir():
        pytest.skip(f"shared data not available at {SHARED}")
    return SHARED


@pytest.fixture(scope="session", autouse=True)
def openvino_cache(tmp_path_factory) -> Path:
    """The OpenVINO SSD teacher converts its graph into ``cache_dir`` (null: ``~/.cache/pseudolabel/openvino``):
    in-process tests convert it once per session into this pytest temp folder instead, never into the user's
    cache. (End-to-end CLI runs in subprocesses, all ``slow``, use the default cache as a user's run does.)"""
    from pseudolabel.detectors.accel import openvino_ssd

    patch = pytest.MonkeyPatch()
    cache = tmp_path_factory.mktemp("openvino_cache")
    patch.setattr(openvino_ssd, "default_cache_dir", lambda: cache)
    yield cache
    patch.undo()
