"""Backend registry. Built-ins are named by module path and imported lazily; third parties register a
`Backend` object or class under the entry-point group `infercmp.backends` (the entry point's name is the
backend's name in variant strings; a class is instantiated once, with no arguments). Plugins are found in the
parent and again in every worker process, so they must be installed in the environment infercmp runs from.
docs/plugins.md has a worked example (examples/plugin/)."""
from __future__ import annotations

import importlib
import importlib.util
from functools import cache
from typing import Any

from ..errors import UsageError
from ..variant import Variant
from .options import resolve

BUILTIN = {
    "ort": "comparator.backends.ort:OrtBackend",
    "ref": "comparator.backends.reference:ReferenceBackend",
    "torch": "comparator.backends.torch:TorchBackend",
    "tf": "comparator.backends.tf:TfBackend",
    "tvm": "comparator.backends.tvm:TvmBackend",
}


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    obj = getattr(importlib.import_module(module), attr)
    return obj() if isinstance(obj, type) else obj


@cache
def _plugins() -> dict[str, Any]:
    from importlib.metadata import entry_points  # 20 ms: only when a name is no built-in's

    found = {}
    for ep in entry_points(group="infercmp.backends"):
        found[ep.name] = ep
    return found


def names() -> list[str]:
    """Every backend this installation can name: the built-ins whose module ships here, then plugins, sorted."""
    known = [n for n in BUILTIN if importlib.util.find_spec(BUILTIN[n].partition(":")[0]) is not None]
    return known + sorted(n for n in _plugins() if n not in BUILTIN)


@cache
def get(name: str) -> Any:
    """The backend object named `name` (built-in or plugin), loaded once; UsageError listing the known names for
    an unknown one."""
    if name in BUILTIN:
        try:
            return _load(BUILTIN[name])
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("comparator.backends"):
                raise UsageError(f"backend {name!r} is not part of this build",
                                 f"available backends: {', '.join(names())}") from None
            raise
    plugin = _plugins().get(name)
    if plugin is None:
        raise UsageError(f"unknown backend {name!r}", f"available backends: {', '.join(names())}")
    obj = plugin.load()
    return obj() if isinstance(obj, type) else obj


def resolve_variant(variant: Variant) -> tuple[Any, dict[str, Any]]:
    """The backend object and the variant's typed options (defaults filled in), validated."""
    backend = get(variant.backend)
    options = resolve(variant.backend, backend.options, variant.option_dict)
    backend.validate(options)
    return backend, options


def taps_subgraphs(variant: Variant) -> bool:
    """Whether the variant records tensors inside subgraphs (a plugin without the capability does not)."""
    try:
        backend, options = resolve_variant(variant)
    except Exception:  # noqa: BLE001 - a variant that does not resolve records nothing
        return False
    taps = getattr(backend, "taps_subgraphs", None)
    return bool(taps(options)) if callable(taps) else False


def fusion_mode(variant: Variant) -> tuple[str, str]:
    """What `--tap fused` can tap of the variant: its backend's `fusion(options)` (backends/contract.py)."""
    try:
        backend, options = resolve_variant(variant)
    except Exception:  # noqa: BLE001 - a variant that does not resolve runs nothing
        return "unavailable", "the variant does not resolve"
    fusion_of = getattr(backend, "fusion", None)
    return fusion_of(options) if callable(fusion_of) else ("unavailable", "a plugin without `fusion`")
