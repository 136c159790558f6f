"""Typed, declared backend options.

A backend declares its options as `Option` objects; `resolve()` turns the raw strings of a variant into typed
values with defaults filled in, and every wrong name or value raises a UsageError listing what is valid.
Nothing here imports a framework.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from collections.abc import Mapping, Sequence

from ..errors import UsageError

_TRUE = {"1", "true", "on", "yes"}
_FALSE = {"0", "false", "off", "no"}


@dataclass(frozen=True)
class Option:
    """One option a backend declares: its name, type (str, int, float or bool), default and help, and for a str
    the values it takes (`choices`), for an int its `minimum`."""

    name: str
    type: type  # str, int, float or bool
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    minimum: int | None = None

    def parse(self, backend: str, text: str) -> Any:
        """The typed value of `text`; UsageError naming the option and what it takes."""
        where = f"option {self.name}={text!r} of backend {backend!r}"
        if self.type is bool:
            low = text.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise UsageError(f"{where}: not a boolean", "use on|off (or 1|0, true|false)")
        if self.type is int:
            try:
                value = int(text)
            except ValueError:
                raise UsageError(f"{where}: not an integer", f"{self.name} takes an integer") from None
            if self.minimum is not None and value < self.minimum:
                raise UsageError(f"{where}: must be >= {self.minimum}")
            return value
        if self.type is float:
            try:
                return float(text)
            except ValueError:
                raise UsageError(f"{where}: not a number") from None
        if self.choices is not None and text not in self.choices:
            raise UsageError(f"{where}: not a valid value", f"valid values: {'|'.join(self.choices)}")
        return text

    def format(self, value: Any) -> str:
        """`value` as a variant string writes it (booleans as on/off)."""
        if self.type is bool:
            return "on" if value else "off"
        return str(value)

    def describe_values(self) -> str:
        """What the option takes, for `infercmp backends` and error hints (`on|off`, `a|b|c`, `integer >= 1`)."""
        if self.type is bool:
            return "on|off"
        if self.choices is not None:
            return "|".join(self.choices)
        if self.type is int:
            return "integer" if self.minimum is None else f"integer >= {self.minimum}"
        return self.type.__name__


def resolve(backend: str, declared: Sequence[Option], raw: Mapping[str, str]) -> dict[str, Any]:
    """Raw option strings -> typed values, every declared option present (defaults filled in)."""
    by_name = {o.name: o for o in declared}
    unknown = [k for k in raw if k not in by_name]
    if unknown:
        valid = ", ".join(sorted(by_name)) or "(none)"
        raise UsageError(f"backend {backend!r} has no option {unknown[0]!r}", f"valid options: {valid}")
    values = {o.name: o.default for o in declared}
    for key, text in raw.items():
        values[key] = by_name[key].parse(backend, text)
    return values
