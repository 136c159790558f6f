"""Argument checks for the library's entry points: a value of the wrong type is a TypeError that says what to pass,
raised before anything loads or runs (not an AttributeError from deep inside once the workers have finished).

`check_compare` takes the arguments of `comparator.compare` by name; `api.compare` calls it first. The ranges of
the numbers (tolerances >= 0, timeout > 0...) are checked by api.check_tolerance and api.check_numbers.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .errors import UsageError
from .graph.model import Model
from .measure.metrics import Tolerance
from .variant import Variant


def _name(value: Any) -> str:
    return type(value).__name__


def _fail(func: str, name: str, value: Any, what: str, got: str | None = None) -> None:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    raise TypeError(f"{func}({name}={shown}): pass {what}, not {got or _name(value)}")


def _is_path(value: Any) -> bool:
    return isinstance(value, (str, os.PathLike))


def _strings(value: Any) -> bool:
    """A str, or a list/tuple of str."""
    return isinstance(value, str) or (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value))


def check_model(func: str, model: Any) -> None:
    """TypeError unless `model` is a path or a loaded Model (`func`: the function named in the message)."""
    if not (_is_path(model) or isinstance(model, Model)):
        _fail(func, "model", model, "the path of an .onnx file (str or pathlib.Path) or a loaded "
                                    "comparator.graph.model.Model")


def check_variants(func: str, variants: Any, name: str = "variants") -> None:
    """TypeError unless `variants` is a variant string or a list of them; UsageError for an empty list."""
    ok = isinstance(variants, (str, Variant)) or (
        isinstance(variants, (list, tuple)) and all(isinstance(v, (str, Variant)) for v in variants))
    if not ok:
        _fail(func, name, variants, "variant strings, e.g. [\"ort\", \"ort:opt=disable\", \"ref:dtype=float64\"] "
                                    "(a list of str or comparator.Variant, or one str)")
    if isinstance(variants, (list, tuple)) and not variants:
        raise UsageError(f"{func}({name}=[]): no variants to run",
                         "pass at least one, e.g. [\"ort\", \"ref\"]: the first is the reference")


def check_inputs(func: str, inputs: Any) -> None:
    """TypeError unless `inputs` is None, a path, or a dict of arrays keyed by input name."""
    if inputs is None or _is_path(inputs):
        return
    if not isinstance(inputs, Mapping) or not all(isinstance(k, str) for k in inputs):
        _fail(func, "inputs", inputs, "None (seeded random feeds), the path of an .npz/.npy file, or a dict of "
                                      "NumPy arrays keyed by input name")


def check_tolerance(func: str, tolerance: Any) -> None:
    """TypeError unless `tolerance` is None or a Tolerance."""
    if tolerance is not None and not isinstance(tolerance, Tolerance):
        _fail(func, "tolerance", tolerance, "a comparator.Tolerance, e.g. Tolerance(atol=1e-3, rtol=1e-3) "
                                            "(or None: atol = rtol = 1e-5)")


def check_compare(args: Mapping[str, Any], func: str = "compare") -> None:
    """Check the arguments of `comparator.compare`, given by name; TypeError (wrong type) or UsageError (a value
    that cannot work) naming the argument and what to pass."""
    check_model(func, args.get("model"))
    check_variants(func, args.get("variants"))
    check_inputs(func, args.get("inputs"))
    check_tolerance(func, args.get("tolerance"))
    got = dict(args)
    reference = got.get("reference")
    if reference is not None and not isinstance(reference, (str, Variant)):
        _fail(func, "reference", reference, "one variant string, e.g. \"ref:dtype=float64\", or None (the first "
                                            "variant)")
    if "tap_spec" in got and not _strings(got["tap_spec"]):
        _fail(func, "tap_spec", got["tap_spec"], "\"all\", \"fused\", \"outputs\", or tensor names and globs "
                                                 "(a str or a list of str)")
    shapes = got.get("shapes")
    if shapes is not None:
        bad = next(((k, v) for k, v in shapes.items() if not (isinstance(k, str) and isinstance(v, (list, tuple))
                                                             and all(_is_int(d) for d in v))), None) \
            if isinstance(shapes, Mapping) else None
        if not isinstance(shapes, Mapping) or bad is not None:
            _fail(func, "shapes", shapes, "a dict of input or dim name -> tuple of ints, e.g. "
                                          "{\"x\": (1, 3, 224, 224)} or {\"batch\": (8,)}",
                  None if bad is None else f"{bad[0]!r}: {_name(bad[1])}")
    for name in ("seed", "samples", "jobs", "repeat", "time"):
        if name in got and not _is_int(got[name]):
            _fail(func, name, got[name], "an int")
    timeout = got.get("timeout")
    if timeout is not None and not _is_number(timeout):
        _fail(func, "timeout", timeout, "seconds as a number, or None (no limit)")
    for name in ("isolate", "oracle"):
        if name in got and not isinstance(got[name], bool):
            _fail(func, name, got[name], "True or False")
    workdir = got.get("workdir")
    if workdir is not None and not _is_path(workdir):
        _fail(func, "workdir", workdir, "a folder path (str or pathlib.Path), or None (a temporary folder)")
    if "classes" in got and not _strings(got["classes"]):
        _fail(func, "classes", got["classes"], "output names (a str or a list of str)")
    for name in ("progress", "events"):
        value = got.get(name)
        if value is not None and not callable(value):
            _fail(func, name, value, "a callable, or None")
    max_disk = got.get("max_disk")
    if max_disk is not None and not _is_int(max_disk):
        _fail(func, "max_disk", max_disk, "bytes as an int >= 0 (comparator.api.parse_size(\"20G\") reads a size), "
                                          "or None (90% of the free space)")
    max_memory = got.get("max_memory")
    if max_memory is not None and not _is_int(max_memory):
        _fail(func, "max_memory", max_memory, "bytes as an int >= 0 (comparator.api.parse_size(\"4G\") reads a "
                                              "size), or None (half the available memory, shared by the workers)")


def _is_int(value: Any) -> bool:
    if isinstance(value, int):
        return not isinstance(value, bool)
    return type(value).__module__ == "numpy" and getattr(getattr(value, "dtype", None), "kind", "") in ("i", "u")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
