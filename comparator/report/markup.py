"""HTML building blocks every page uses: text escaped (terminal colour codes and control characters dropped), a
variant's colour swatch, a plain table."""
from __future__ import annotations

import html as _html
import re
from typing import Any


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # terminal colour codes in a worker's stderr
_CTRL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # not allowed in HTML text


def esc(x: Any) -> str:
    """`x` as HTML text or attribute value: escaped, without colour codes, control characters replaced."""
    return _html.escape(_CTRL.sub("\ufffd", _ANSI.sub("", str(x))), quote=True)


def swatch(colors: dict[str, int], name: str) -> str:
    """A variant's name after its colour's swatch."""
    return f'<i class="sw c{colors.get(name, 0)}"></i>{esc(name)}'


def grid(heads: list[str], rows: list[list[str]], attrs: str = "") -> str:
    """A plain table of HTML cells; a header starting with '<' marks a left-aligned column."""
    left = [h.startswith("<") for h in heads]
    return (f'<table class="grid"{attrs}><tr>' + "".join(f'<th{" class=l" if a else ""}>{h.lstrip("<")}</th>'
                                                         for a, h in zip(left, heads)) + "</tr>"
            + "".join("<tr>" + "".join(f'<td{" class=l" if a else ""}>{c}</td>' for a, c in zip(left, r)) + "</tr>"
                      for r in rows) + "</table>")
