"""Hydra ``_target_`` allow-list (pseudolabel/safe_config.py): static guard, CLI refusal, every shipped config."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from pseudolabel import safe_config
from pseudolabel.safe_config import UnsafeTargetError, check_targets, instantiate, refuse_unsafe_overrides

from tests.test_security import _dotted

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "pseudolabel"
CONF = REPO / "conf"
HYDRA_CALLERS = {"instantiate", "call", "_call_target", "_locate"}




def _hydra_violations(src: str, rel: str) -> tuple[list[str], int]:
    """(uses of Hydra's own instantiation in ``src``, number of ``instantiate(...)`` calls)."""
    tree = ast.parse(src, filename=rel)
    bad, from_safe, calls = [], set(), 0
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module, names = node.module or "", {a.name for a in node.names}
            if module.startswith("hydra") and (names & HYDRA_CALLERS or "*" in names or
                                               (module == "hydra" and "utils" in names)):
                bad.append(f"{rel}:{node.lineno} from {module} import {', '.join(sorted(names))}")
            if module.endswith("safe_config"):
                from_safe |= {a.asname or a.name for a in node.names}
        elif isinstance(node, ast.Import):
            bad += [f"{rel}:{node.lineno} import {a.name}" for a in node.names
                    if a.name.startswith("hydra._internal.instantiate")]
        elif isinstance(node, ast.Attribute) and _dotted(node).startswith("hydra.") and node.attr in HYDRA_CALLERS:
            bad.append(f"{rel}:{node.lineno} {_dotted(node)}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "instantiate":
            calls += 1
            if "instantiate" not in from_safe:
                bad.append(f"{rel}:{node.lineno} instantiate() not imported from safe_config")
    return bad, calls


def test_only_the_wrapper_uses_hydras_instantiate():
    bad, callers = [], set()
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel == "pseudolabel/safe_config.py":
            continue
        found, calls = _hydra_violations(path.read_text(), rel)
        bad += found
        if calls:
            callers.add(rel)
    assert bad == []
    assert {"pseudolabel/pipeline.py", "pseudolabel/__main__.py"} <= callers


def test_the_guard_catches_direct_hydra_instantiation():
    src = ("from hydra.utils import instantiate\nimport hydra.utils\nfrom hydra import utils\n"
           "def f(c):\n    return instantiate(c), hydra.utils.call(c)\n")
    bad, calls = _hydra_violations(src, "m.py")
    assert calls == 1 and len(bad) == 4, bad
    ok = "from .safe_config import instantiate\ndef f(c):\n    return instantiate(c)\n"
    assert _hydra_violations(ok, "m.py") == ([], 1)


@pytest.mark.parametrize("target", ["os.system", "builtins.eval", "subprocess.Popen", "pseudolabelx.evil",
                                    "torch.load", "torch.hub.load", "torchvision.models.resnet50",
                                    "pytorch_lightning.Trainer"])
def test_targets_outside_the_allow_list_are_refused(target):
    cfg = OmegaConf.create({"a": {"b": [{"_target_": "pseudolabel.wandb_logging.WandbLogger"}, {"_target_": target}]}})
    with pytest.raises(UnsafeTargetError, match=re.escape(f"refused config target {target!r} at a.b[1]._target_")):
        check_targets(cfg)


def test_reexport_and_interpolation_tricks_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    # passes the prefix check, but resolves to posix.system through pseudolabel.files' `import os`
    cfg = OmegaConf.create({"_target_": "pseudolabel.files.os.system", "_args_": [f"touch {marker}"]})
    assert check_targets(cfg) == ["pseudolabel.files.os.system"]
    with pytest.raises(UnsafeTargetError, match="resolves to an object of module 'posix'"):
        instantiate(cfg)
    assert not marker.exists()
    cfg = OmegaConf.create({"evil": "os.system", "bad": {"_target_": "builtins.print"},
                            "x": {"_target_": "${evil}"}, "y": {"inner": "${bad}"}})
    with pytest.raises(UnsafeTargetError, match="'os.system' at x._target_"):
        instantiate(cfg.x)
    with pytest.raises(UnsafeTargetError, match="'builtins.print' at y.inner._target_"):
        instantiate(cfg.y)
    ok = OmegaConf.create({"_target_": "pseudolabel.wandb_logging.WandbLogger", "_partial_": True})
    with pytest.raises(UnsafeTargetError, match="'os.system' at <kwargs>.mode._target_"):
        instantiate(ok, mode={"_target_": "os.system"})


def test_allowed_targets_instantiate():
    from pseudolabel.wandb_logging import WandbLogger

    cfg = OmegaConf.create({"_target_": "pseudolabel.wandb_logging.WandbLogger", "mode": "disabled", "dir": "x"})
    logger = instantiate(cfg)
    assert isinstance(logger, WandbLogger) and not logger.enabled


def test_extra_prefixes_come_only_from_the_environment_at_import(monkeypatch):
    cfg = {"_target_": "json.loads", "_args_": ["[1]"]}
    monkeypatch.setenv(safe_config.EXTRA_ENV, "json.")  # too late: read once at import
    with pytest.raises(UnsafeTargetError):
        instantiate(cfg)
    code = ("from pseudolabel.safe_config import instantiate, allowed_prefixes\n"
            "print(instantiate({'_target_': 'json.loads', '_args_': ['[1]']}), allowed_prefixes()[-1])")
    env = {**os.environ, safe_config.EXTRA_ENV: "json"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[1]", "json."]


@pytest.mark.parametrize("arg", ["+hydra.callbacks.x._target_=builtins.print", "hydra/callbacks=evil",
                                 "++hydra.sweeper.sampler._target_=os.system",
                                 "hydra.job.env_set.PSEUDOLABEL_EXTRA_TARGETS=os."])
def test_overrides_reaching_hydras_own_instantiation_are_refused(arg):
    with pytest.raises(UnsafeTargetError, match=re.escape(repr(arg))):
        refuse_unsafe_overrides(["stage=round", arg])


def test_ordinary_overrides_pass():
    refuse_unsafe_overrides(["stage=round", "teacher.score_threshold=0.5", "-m", "hydra/sweeper=optuna",
                             "hydra.sweeper.n_trials=3", "--config-dir=/x", "+label.shard=1"])


def test_cli_refuses_a_target_with_one_message_and_exit_2(tmp_path):
    env = {**os.environ, "WANDB_MODE": "disabled"}
    env.pop(safe_config.EXTRA_ENV, None)
    proc = subprocess.run([sys.executable, "-m", "pseudolabel", "stage=round", "round=0", "logger=none",
                           f"paths.root_dir={tmp_path}", "teacher.detector._target_=os.system"],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("pseudolabel: refused config target 'os.system' at "
                                                   "teacher.detector._target_")
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


def _options() -> list[tuple[str, str]]:
    """(group, option) for every YAML under conf/ except the primary config."""
    return sorted((p.parent.relative_to(CONF).as_posix(), p.stem) for p in CONF.rglob("*.yaml")
                  if p.parent != CONF)


def _yaml_targets() -> set[str]:
    return {m.group(1) for p in CONF.rglob("*.yaml")
            for m in re.finditer(r"^\s*-?\s*_target_:\s*([\w.]+)", p.read_text(), re.M)}


HYDRA_MACHINERY = {"hydra.sweeper._target_", "hydra.launcher._target_"}


@pytest.fixture(scope="module")
def composed():
    from hydra import compose, initialize_config_dir

    out = {}
    with initialize_config_dir(str(CONF), version_base="1.3"):
        for group, option in _options():
            out[(group, option)] = compose("config", overrides=[f"{group}={option}"], return_hydra_config=True)
    return out


def test_every_shipped_config_passes_the_check(composed):
    assert len(composed) >= 20
    found = set()
    for (group, option), cfg in composed.items():
        task = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
        found |= set(check_targets(task, resolve_objects=True))
        for where, target in safe_config.iter_targets(cfg.hydra, "hydra"):
            if where in HYDRA_MACHINERY:
                assert target.startswith(("hydra._internal.core_plugins.", "hydra_plugins.")), (group, option, where)
                continue
            assert safe_config.is_allowed(target), f"{group}={option}: {where}={target}"
            found.add(target)
    assert found == _yaml_targets()  # every _target_ written in conf/ was reached by a composition
