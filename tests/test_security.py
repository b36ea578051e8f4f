"""Static guards over the package source: no shell, no unsafe unpickling, no command-running yt-dlp options."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pseudolabel"
SOURCES = sorted(PACKAGE.rglob("*.py"))


def _trees():
    return [(p.relative_to(PACKAGE.parent), ast.parse(p.read_text(), filename=str(p))) for p in SOURCES]


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def test_package_sources_found():
    names = {p.name for p in SOURCES}
    assert {"download.py", "frames.py", "pipeline.py"} <= names


def test_no_shell_true_and_no_os_system():
    grep = [f"{p.relative_to(PACKAGE.parent)}:{i}" for p in SOURCES
            for i, line in enumerate(p.read_text().splitlines(), 1)
            if re.search(r"shell\s*=\s*True|os\.system\s*\(|os\.popen\s*\(", line)]
    assert grep == []
    bad = []
    for rel, tree in _trees():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = _dotted(node.func)
            if name in ("os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput"):
                bad.append(f"{rel}:{node.lineno} {name}")
            for kw in node.keywords:
                if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    bad.append(f"{rel}:{node.lineno} shell={ast.unparse(kw.value)}")
    assert bad == []


def test_every_torch_load_passes_weights_only_true():
    calls, bad = [], []
    for rel, tree in _trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _dotted(node.func) == "torch.load":
                calls.append(f"{rel}:{node.lineno}")
                kw = {k.arg: k.value for k in node.keywords}
                wo = kw.get("weights_only")
                if not (isinstance(wo, ast.Constant) and wo.value is True):
                    bad.append(f"{rel}:{node.lineno}")
            if isinstance(node, ast.ImportFrom) and node.module == "torch" and \
                    any(a.name == "load" for a in node.names):
                bad.append(f"{rel}:{node.lineno} from torch import load (unchecked alias)")
    assert bad == []
    assert calls, "expected torch.load calls in the package (student checkpoints)"


def test_no_pickle_loading():
    bad = [f"{rel}:{node.lineno}" for rel, tree in _trees() for node in ast.walk(tree)
           if isinstance(node, ast.Call) and _dotted(node.func) in ("pickle.load", "pickle.loads")]
    assert bad == []


def test_yt_dlp_options_never_run_commands(tmp_path):
    from pseudolabel.download import DownloadConfig, VideoEntry, ydl_options

    cfg = DownloadConfig(rate_limit="2M", format="best")
    opts = ydl_options(cfg, out_dir=tmp_path, video_id="v",
                       entry=VideoEntry(id="v", url="http://127.0.0.1/v.mp4", source="csv", start=1.0, end=2.0))
    assert opts["ratelimit"] == 2 * 1024 * 1024
    assert not [k for k in opts if "exec" in k.lower()]
    assert opts["postprocessors"] == []
    for k in ("enable_file_urls", "external_downloader", "exec_cmd", "exec_before_dl_cmd", "load_info_filename"):
        assert k not in opts
    src = (PACKAGE / "download.py").read_text()
    assert not re.search(r"['\"](?:Exec|ExecAfterDownload|exec_cmd|external_downloader)['\"]", src)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x.mp4", "javascript:alert(1)", "http:///x"])
def test_download_refuses_non_http_urls(url, tmp_path):
    from pseudolabel.download import _check_url

    assert _check_url(url) != ""
