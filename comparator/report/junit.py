"""JUnit XML report: one test suite, one test case per variant, for CI dashboards.

A variant that could not run is an <error> (its message, hint and stderr tail); a variant whose final outputs
are beyond tolerance is a <failure> listing every such output; the reference passes when it ran. When the
reference itself failed, the other variants are <skipped>: there was nothing to compare them with.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from ..fileio import write_text
from ..result import Report, VariantReport
from .text import (broken_lines, closer_text, dead_end_lines, distance_lines, num, observer_text,
                   oracle_lines)

# Characters XML 1.0 cannot carry at all (not even escaped): C0 controls such as ANSI colour codes in stderr.
_INVALID = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def xml_text(x: Any) -> str:
    """`x` as text XML 1.0 can carry: ANSI colour codes dropped, other control characters replaced."""
    return _INVALID.sub("\ufffd", _ANSI.sub("", str(x)))


def _tolerance(tol: dict[str, Any]) -> str:
    return (f"atol {tol.get('atol', 0):g}, rtol {tol.get('rtol', 0):g}"
            + (f", max_ulp {tol['max_ulp']}" if tol.get("max_ulp") is not None else ""))


def violations(report: Report, variant: str) -> list[str]:
    """One line per final output of `variant` beyond tolerance (or that could not be compared)."""
    lines = []
    for t in report.tensors:
        m = t.metrics.get(variant)
        if not t.is_output or m is None:
            continue
        if "error" in m:
            lines.append(f"{t.name}: cannot compare: {m['error']}")
        elif m.get("violations", 0) > 0:
            lines.append(f"{t.name}: {m['violations']:,} of {m.get('count', 0):,} elements beyond tolerance, "
                         f"max_abs {num(m.get('max_abs'))}, max_ulp {num(m.get('max_ulp'))}, "
                         f"max_rel {num(m.get('max_rel'))}")
    return lines


def _system_out(report: Report, v: VariantReport) -> str:
    lines = []
    if v.name == report.reference:
        lines.append("reference variant: every other variant is compared with it")
    if v.name in report.first_divergence:
        lines.append(f"first divergence: {report.first_divergence[v.name] or 'none (bit-identical throughout)'}")
        lines.append(f"first beyond tolerance: {report.first_beyond_tolerance.get(v.name) or 'none'}")
    for out, info in report.label_flips.get(v.name, {}).items():
        lines.append(f"{out}: top-1 agreement {100 * info['agreement']:.2f}% "
                     f"({info['flip_count']} of {info['rows']} rows flip)")
    if v.name == report.reference:
        lines.extend(oracle_lines(report) + distance_lines(report))
    lines.extend(broken_lines(report, v.name) + dead_end_lines(report, v.name))
    if report.observer_effect.get(v.name):
        lines.append(f"observer effect: tapping changed the final outputs {observer_text(report, v.name)}")
    note = report.untapped_subgraph_note(v.name)
    if note:
        lines.append(note)
    d = report.determinism.get(v.name)
    if d:
        lines.append(f"{d.get('runs')} runs, {d.get('distinct_outputs')} distinct final output(s)")
    return "\n".join(lines)


def build(report: Report) -> ET.Element:
    """The <testsuite name="infercmp"> element, one <testcase> per variant."""
    model = Path(str(report.model.get("path", "model"))).name
    ref_ok = any(v.name == report.reference and v.status == "ok" for v in report.variants)
    suite = ET.Element("testsuite", name="infercmp")
    props = ET.SubElement(suite, "properties")
    for key, value in (("model", report.model.get("path", "")), ("sha256", report.model.get("sha256", "")),
                       ("reference", report.reference), ("tolerance", _tolerance(report.tolerance)),
                       ("exit_code", report.exit_code)):
        ET.SubElement(props, "property", name=key, value=xml_text(value))
    counts = {"failures": 0, "errors": 0, "skipped": 0}
    total = 0.0
    for v in report.variants:
        case = ET.SubElement(suite, "testcase", classname=xml_text(model), name=xml_text(v.name),
                             time=f"{v.wall_s:.3f}")
        total += v.wall_s
        if v.status != "ok":
            counts["errors"] += 1
            err = ET.SubElement(case, "error", message=xml_text(v.error or v.status), type=xml_text(v.status))
            parts = [f"{v.status}: {v.error or ''}"] + ([f"hint: {v.hint}"] if v.hint else [])
            if v.stderr_tail:
                parts.append("stderr (last lines):\n" + v.stderr_tail)
            err.text = xml_text("\n".join(parts))
        elif v.name != report.reference and not ref_ok:
            counts["skipped"] += 1
            ET.SubElement(case, "skipped", message="the reference did not run: nothing to compare with")
        elif (lines := violations(report, v.name)):
            counts["failures"] += 1
            message = (f"{len(lines)} final output(s) beyond tolerance ({_tolerance(report.tolerance)}) "
                       f"vs {report.reference}")
            fail = ET.SubElement(case, "failure", type="BeyondTolerance", message=xml_text(message))
            closer = closer_text(report, v.name)
            fail.text = xml_text("\n".join(lines + ([closer] if closer else [])))
        out = _system_out(report, v)
        if out:
            ET.SubElement(case, "system-out").text = xml_text(out)
    suite.set("tests", str(len(report.variants)))
    for key, n in counts.items():
        suite.set(key, str(n))
    suite.set("time", f"{total:.3f}")
    return suite


def document(root: ET.Element) -> str:
    """`root` as an indented XML document."""
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def render(report: Report) -> str:
    """The XML document as a string."""
    return document(build(report))


def write(report: Report, path: str | Path) -> None:
    """Write the XML atomically."""
    write_text(path, render(report))
