"""Guarded Hydra instantiation: a config may only name ``_target_`` callables from allow-listed modules.

A Hydra ``_target_`` is a dotted path that :func:`hydra.utils.instantiate` imports and calls, so a config
file or a command-line override such as ``teacher.detector._target_=os.system`` could otherwise run any
function. Every instantiation in the package goes through :func:`instantiate` here, which first walks the
whole (sub)config, interpolations resolved, and refuses any target outside :data:`ALLOWED_PREFIXES`;
the command line checks the whole composed config up front (:func:`check_targets`).

Two checks per target:

1. the dotted path itself must start with an allowed prefix (no import needed: the CLI's up-front check);
2. at instantiation, the object it resolves to must be *defined* in an allowed module (its
   ``__module__``), so a path that passes 1 through a re-export, such as ``pseudolabel.files.os.system``,
   is still refused.

The allow-list lives in code: no config value or override can extend it. Power users who need their own
classes set the environment variable ``PSEUDOLABEL_EXTRA_TARGETS`` (comma-separated module prefixes,
e.g. ``mypkg.detectors.,mylab.``) in the shell that starts the run. It is read once, when this module is
first imported, and the command line refuses ``hydra.job.env_set`` of it (Hydra would otherwise set it
from an override before the job runs).
"""
from __future__ import annotations

import os
from typing import Any, Iterator

ALLOWED_PREFIXES: tuple[str, ...] = (
    "pseudolabel.",
    "torchvision.models.detection.",
    "torch.optim.",
    "pytorch_lightning.callbacks.",
    "lightning.pytorch.callbacks.",
    "albumentations.",
    "optuna.samplers.",  # conf/hparams_search/optuna.yaml (the sweeper's sampler)
)
EXTRA_ENV = "PSEUDOLABEL_EXTRA_TARGETS"


def _parse_prefixes(value: str | None) -> tuple[str, ...]:
    out = []
    for p in (value or "").split(","):
        p = p.strip()
        if p:
            out.append(p if p.endswith(".") else p + ".")
    return tuple(out)


_EXTRA_AT_IMPORT = _parse_prefixes(os.environ.get(EXTRA_ENV))


class UnsafeTargetError(ValueError):
    """A config names a ``_target_`` outside the allow-list."""


def allowed_prefixes() -> tuple[str, ...]:
    """The built-in prefixes plus those of ``PSEUDOLABEL_EXTRA_TARGETS`` as it was at import."""
    return ALLOWED_PREFIXES + _EXTRA_AT_IMPORT


def is_allowed(dotted: str, *, prefixes: tuple[str, ...] | None = None) -> bool:
    """True when ``dotted`` is an allowed prefix's module itself or lies under it (dot boundaries)."""
    prefixes = allowed_prefixes() if prefixes is None else prefixes
    return any(dotted == p[:-1] or dotted.startswith(p) for p in prefixes)


def _refusal(target: Any, where: str, why: str = "") -> UnsafeTargetError:
    shown = ", ".join(p + "*" for p in allowed_prefixes())
    return UnsafeTargetError(
        f"refused config target {target!r} at {where}{why}: only callables from {shown} may be "
        f"instantiated (to allow more modules, set {EXTRA_ENV}=prefix1.,prefix2. in the environment)")


def iter_targets(cfg: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """``(where, target)`` for every ``_target_`` in ``cfg`` (DictConfig / ListConfig / dict / list),
    interpolations resolved; nodes that cannot be resolved are skipped (instantiation would fail on them)."""
    yield from _walk(cfg, path, set(), 0)


def _walk(node: Any, path: str, seen: set[int], depth: int) -> Iterator[tuple[str, Any]]:
    from omegaconf import DictConfig, ListConfig

    if depth > 100 or id(node) in seen:
        return
    if isinstance(node, (DictConfig, ListConfig, dict, list)):
        seen = seen | {id(node)}
    if isinstance(node, (DictConfig, dict)):
        keys = list(node.keys())
        for key in keys:
            where = f"{path}.{key}" if path else str(key)
            try:
                value = node[key]
            except Exception:  # noqa: BLE001 - unresolvable interpolation / missing value: nothing to call
                continue
            if key == "_target_":
                yield where, value
            else:
                yield from _walk(value, where, seen, depth + 1)
    elif isinstance(node, (ListConfig, list, tuple)):
        for i in range(len(node)):
            try:
                value = node[i]
            except Exception:  # noqa: BLE001
                continue
            yield from _walk(value, f"{path}[{i}]", seen, depth + 1)


def check_targets(cfg: Any, *, path: str = "", resolve_objects: bool = False) -> list[str]:
    """Raise :class:`UnsafeTargetError` for the first ``_target_`` in ``cfg`` outside the allow-list.

    Parameters
    ----------
    cfg : a config or a part of one (containers nest).
    path : where ``cfg`` sits in the full config, for messages (e.g. ``"teacher.detector"``).
    resolve_objects : also import each target and require the object to be defined in an allowed
        module (check 2 of the module docstring); imports the targets' modules.

    Returns
    -------
    list of str
        The targets found, in walk order.
    """
    found = []
    for where, target in iter_targets(cfg, path):
        if not isinstance(target, str):
            target = _dotted_name(target) or target
        if not isinstance(target, str) or not is_allowed(target):
            raise _refusal(target, where)
        if resolve_objects:
            _check_object(target, where)
        found.append(target)
    return found


def _dotted_name(obj: Any) -> str | None:
    mod, name = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    return f"{mod}.{name}" if isinstance(mod, str) and isinstance(name, str) else None


def _check_object(target: str, where: str) -> None:
    import types

    from hydra.utils import get_object

    try:
        obj = get_object(target)
    except Exception:  # noqa: BLE001 - let Hydra report a target that does not exist, as usual
        return
    home = obj.__name__ if isinstance(obj, types.ModuleType) else getattr(obj, "__module__", None)
    if not isinstance(home, str) or not is_allowed(home):
        raise _refusal(target, where, f" (it resolves to an object of module {home!r})")


def instantiate(config: Any, *args: Any, **kwargs: Any) -> Any:
    """:func:`hydra.utils.instantiate` after checking every target of ``config`` and of the keyword
    arguments (both checks of the module docstring)."""
    from hydra.utils import instantiate as hydra_instantiate

    check_targets(config, path=_full_key(config), resolve_objects=True)
    check_targets(dict(kwargs), path="<kwargs>", resolve_objects=True)
    check_targets(list(args), path="<args>", resolve_objects=True)
    return hydra_instantiate(config, *args, **kwargs)


def _full_key(node: Any) -> str:
    """Where a DictConfig sits in its root config (``"student.model"``), for messages; "" otherwise."""
    try:
        return str(node._get_full_key(""))
    except Exception:  # noqa: BLE001 - plain containers, or OmegaConf internals changed
        return ""


def refuse_unsafe_overrides(argv: list[str]) -> None:
    """Refuse command-line overrides that would reach Hydra's own instantiation (``hydra.callbacks``,
    any ``hydra.*._target_``) or set :data:`EXTRA_ENV` through ``hydra.job.env_set``: Hydra acts on
    them before the job (and :func:`check_targets`) runs."""
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key = arg.split("=", 1)[0].lstrip("+~").strip()
        low = key.replace("/", ".")
        if low.startswith("hydra.") and ("_target_" in low or low.startswith("hydra.callbacks")):
            raise UnsafeTargetError(f"refused override {arg!r}: Hydra instantiates hydra.* targets before any "
                                    f"check; put them in a reviewed config file instead")
        if low.startswith("hydra.job.env_set") and EXTRA_ENV in key:
            raise UnsafeTargetError(f"refused override {arg!r}: {EXTRA_ENV} can only come from the environment "
                                    f"that starts the run")
