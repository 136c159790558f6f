"""The words and figures every view prints: metrics formatted to a few characters, the verdict, the doubts (oracle
disagreements, broken middles), the observer effect, where an error is, the minimum tolerance and latency. Spaces
inside one figure can be glued (`glue`) so that `wrap` never breaks a line inside it."""
from __future__ import annotations

import math
import os
import re
import textwrap
from collections.abc import Mapping
from typing import Any

from ..result import Report, TensorReport


COLUMNS = ("identical", "max_abs", "mean_abs", "max_rel", "max_ulp", "p99_ulp", "cosine", "snr_dB", "nan/inf")


STDERR_LINES = 6  # of a variant's stderr, where the terminal shows it
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x08\x0b-\x1f\x7f]")  # colours and controls in a worker's stderr


def stderr_lines(v: Any) -> list[str]:
    """The last lines of a variant's stderr that the terminal shows: those of a worker that died or ran out of time,
    which said nothing itself. A failure the worker caught has its message in the error line already, and its
    traceback is for debugging: shown with -v (INFERCMP_DEBUG), always kept in the JSON and HTML reports."""
    if v.status not in ("crashed", "timeout") and not os.environ.get("INFERCMP_DEBUG"):
        return []
    tail = [clean for line in (v.stderr_tail or "").splitlines() if (clean := _CONTROL.sub("", line)).strip()]
    return tail[-STDERR_LINES:]


def num(x: Any, digits: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        if x == 0:
            return "0"
        return f"{x:.{digits}e}" if abs(x) < 1e-3 or abs(x) >= 1e5 else f"{x:.{digits + 2}g}"
    return str(x)


def metric_cells(m: dict[str, Any]) -> list[str]:
    if "error" in m:
        return [m["error"]] + [""] * (len(COLUMNS) - 1)
    ident = "==" if m["bit_identical"] else f"{100 * m['identical_fraction']:.1f}%"
    cos = m["cosine"]
    cos_text = "1" if cos == 1.0 else (f"1-{1 - cos:.1e}" if isinstance(cos, float) and cos > 0.99 else num(cos))
    return [ident, num(m["max_abs"]), num(m["mean_abs"]), num(m["max_rel"]), num(m["max_ulp"]),
            num(m["p99_ulp"]), cos_text, num(m["snr_db"], 1), f"{m['nan_mismatch']}/{m['inf_mismatch']}"]


def observer_text(report: Report, variant: str) -> str:
    """What tapping changed in a variant's final outputs, e.g. 'probs (max ULP 526,344, max abs 3.92e-03)'."""
    detail = report.observer_detail.get(variant, {})
    return ", ".join(f"{name} (max ULP {num(d.get('max_ulp'))}, max abs {num(d.get('max_abs'))})"
                     for name, d in detail.items()) or "?"


VERDICTS = {0: "PASS: final outputs within tolerance", 1: "FAIL: final outputs beyond tolerance",
            3: "FAIL: a variant could not run"}


LISTED_DOUBTS = 10  # oracle disagreements listed on the terminal; the JSON and HTML reports list all


def oracle_lines(report: Report, limit: int | None = None) -> list[str]:
    """One line per tensor where the two float64 oracles disagree (or one line saying they agree)."""
    if not report.oracle:
        return []
    a, b = report.oracle["variants"]
    found = report.oracle["disagreements"]
    if not found:
        return [f"oracle: {a} and {b} agree on every tensor to float64 noise"]
    lines = [f"oracle disagreement at node {d['node'] or d['tensor']} ({d['op_type']}): {a} and {b} differ on "
             f"{d['tensor']} ("
             + (f"cannot compare: {d['error']}" if "error" in d else
                f"SNR {num(d['snr_db'], 1)} dB, max abs {num(d['max_abs'])}, max rel {num(d['max_rel'])}")
             + ")" for d in found[:limit]]
    if limit is not None and len(found) > limit:
        lines.append(f"... {len(found) - limit} more oracle disagreements (all in the JSON and HTML reports)")
    return lines


def distance_lines(report: Report) -> list[str]:
    """How far every variant's final outputs are from the float64 oracle that ran beside a float32 reference; when
    the reference stands alone (analysis.ALONE), a second line saying what that means."""
    d = report.oracle_distance
    if not d:
        return []
    ref, oracle = report.reference, d["oracle"]
    names = [ref] + [v for v in d["max_ulp"] if v != ref]
    lines = [f"final outputs from the float64 oracle {oracle}: "
             + "; ".join(f"{v}{' (reference)' if v == ref else ''} max ULP {ulp_text(d['max_ulp'][v])}, "
                         f"max abs {sci_text(d['max_abs'][v])}" for v in names)]
    if d["alone"]:
        figures = "; ".join(f"{'max ULP' if m == 'max_ulp' else 'max abs'} "
                            f"{(ulp_text if m == 'max_ulp' else sci_text)(d[m][ref])}" for m in d["alone"])
        lines.append(f"the reference {ref} is at least {d['factor']}x further from the float64 oracle than every other "
                     f"float32 variant at the final outputs ({figures}): what they show there is its own error, to "
                     f"within {100 / d['factor']:g}%; --reference {oracle} measures every variant against exact math")
    return lines


def broken_lines(report: Report, variant: str | None = None) -> list[str]:
    """One line per variant (or for `variant`) whose final outputs pass while its middle is far beyond the
    tolerance."""
    return _far_lines(report.broken_middle, variant, "final outputs within tolerance, but {} intermediate tensor(s)",
                      "")


def dead_end_lines(report: Report, variant: str | None = None) -> list[str]:
    """One line per variant (or for `variant`) with tensors far beyond the tolerance that no final output is
    computed from: a difference worth knowing, and no doubt on the verdict."""
    return _far_lines(report.dead_ends, variant, "{} tensor(s) that no final output is computed from",
                      "; they cannot change the outputs")


def _far_lines(found: Mapping[str, Mapping[str, Any]], variant: str | None, what: str, then: str) -> list[str]:
    """A line per variant of analysis.broken_middle's findings: `what` (with the count), the first tensor, `then`."""
    return [f"{v}: {what.format(b['count'])} deviate by more than 1,000x the tolerance, the first {b['first']} "
            f"({b['op_type']}): max abs {num(b['max_abs'])}, max rel {num(b['max_rel'])}{then}"
            for v, b in found.items() if variant in (None, v)]


def closer_text(report: Report, variant: str) -> str | None:
    """For a variant whose final outputs fail, when its final outputs are closer to the float64 oracle than the
    reference's (max abs): 'closer to the float64 oracle than the reference (max abs 4.3e-6 against 2.3e-5)', or
    when it is the oracle, that its failure is the reference's own error."""
    d = report.oracle_distance
    if not d or not report.outputs_beyond(variant):
        return None
    if variant == d["oracle"]:
        return "the reference's own error (this is the float64 oracle)"
    mine, theirs = d["max_abs"].get(variant), d["max_abs"].get(report.reference)
    if mine is None or theirs is None or not mine < theirs:
        return None
    return f"closer to the float64 oracle than the reference (max abs {sci_text(mine)} against {sci_text(theirs)})"


def doubt_lines(report: Report, limit: int | None = None) -> list[tuple[str, bool]]:
    """The oracles' findings, the broken middles and the dead ends, each line with whether it is a doubt (the views
    colour those): oracle_lines (`limit` disagreements), distance_lines, broken_lines, dead_end_lines (no doubt)."""
    distances = distance_lines(report)  # its first line gives figures; a second says the reference stands alone
    return ([(line, "agree on every" not in line) for line in oracle_lines(report, limit)]
            + [(line, i > 0) for i, line in enumerate(distances)] + [(line, True) for line in broken_lines(report)]
            + [(line, False) for line in dead_end_lines(report)])


def verdict_text(report: Report) -> str:
    """The verdict; a PASS says when a variant's middle is broken, a PASS or a FAIL when the oracle it was judged
    against is in doubt."""
    text = VERDICTS.get(report.exit_code, f"exit code {report.exit_code}")
    if report.exit_code not in (0, 1):
        return text
    doubts = [f"{v}'s middle deviates by more than 1,000x the tolerance from {b['first']}"
              for v, b in report.broken_middle.items()]
    if report.oracle_distance.get("alone"):
        doubts.append(f"the reference {report.reference} is the variant furthest from the float64 oracle")
    failing = [v for v in report.compared() if report.outputs_beyond(v)]
    if failing and all(closer_text(report, v) for v in failing):
        ref, others = report.reference, [v for v in failing if v != report.oracle_distance["oracle"]]
        doubts.append(f"the reference {ref} is itself beyond tolerance from the float64 oracle" if not others else
                      ("each variant that fails is" if len(failing) > 1 else f"{failing[0]}, which fails, is")
                      + f" closer to the float64 oracle than the reference {ref}")
    found = report.oracle.get("disagreements")
    if found:
        doubts.append(f"the float64 oracles disagree from {found[0]['tensor']} on")
    return text + (", but " + "; ".join(doubts) if doubts else "")


def snr_text(x: Any) -> str:
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return "-"
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.1f}"


def ulp_text(u: Any) -> str:
    """A max ULP in at most 7 characters: exact up to 99,999, then two digits (1.9e9)."""
    if not isinstance(u, int) or isinstance(u, bool):
        return "-"
    if u < 100_000:
        return f"{u:,}"
    mant, exp = f"{u:.1e}".split("e")
    return f"{mant}e{int(exp)}"


def sci_text(x: Any) -> str:
    """A figure in at most 7 characters: 3 digits between 1e-3 and 1e4, else two (6.2e-40)."""
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return "-"
    if math.isnan(x) or math.isinf(x) or x == 0:
        return num(float(x))
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:.3g}"
    mant, exp = f"{x:.1e}".split("e")
    return f"{mant}e{int(exp)}"


GLUE = "\x00"  # a space no line breaks at: "SNR 118.1 dB" stays on one line


def glue(text: str) -> str:
    """`text` with its spaces glued (never broken by `wrap`)."""
    return text.replace(" ", GLUE)


def wrap(text: str, width: int, indent: int = 4) -> list[str]:
    """`text` in lines of at most `width` characters, continuation lines indented; breaks fall between words (not
    at glued spaces, see `glue`), so a number is never cut (only a word longer than a whole line is)."""
    lines = textwrap.wrap(text, width, subsequent_indent=" " * indent, break_on_hyphens=False) or [""]
    return [line.replace(GLUE, " ") for line in lines]


def fit(text: str, width: int) -> str:
    """`text` cut in the middle with an ellipsis to at most `width` characters."""
    if len(text) <= width:
        return text
    if width < 2:
        return text[:width]
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


def where_text(report: Report, t: TensorReport, variant: str, local: bool = False) -> str | None:
    """Where the largest error is: '[0, 1877, 2, 4]' (the index within one sample), 'sample 3 [0, 5]' when there
    are several, 'element 12345' (flat) when the shape has a named dimension; None when nothing differs."""
    at = t.worst_element(variant, local)
    if at is not None:
        sample, index = at
        text = "[" + ", ".join(map(str, index)) + "]"
        return text if report.inputs.get("samples", 1) == 1 and sample == 0 else f"sample {sample} {text}"
    flat = (t.local if local else t.metrics).get(variant, {}).get("worst_index")
    return None if flat is None else f"element {flat:,}"


def figures(m: dict[str, Any], where: str | None = None) -> str:
    """'SNR 118.1 dB, max ULP 1.0e7, max abs 3.2e-04 at [0, 1877, 2, 4]', figures glued."""
    if "error" in m:
        return f"not comparable: {m['error']}"
    text = (glue(f"SNR {snr_text(m.get('snr_db'))} dB") + ", " + glue(f"max ULP {ulp_text(m.get('max_ulp'))}") + ", "
            + glue(f"max abs {sci_text(m.get('max_abs'))}" + (f" at {where}" if where else "")))
    mism = [glue(f"{m[k]:,} {k.split('_')[0].replace('nan', 'NaN').replace('inf', 'Inf')} mismatches")
            for k in ("nan_mismatch", "inf_mismatch") if m.get(k)]
    return ", ".join([text] + mism)


def tolerance_text(tol: dict[str, Any]) -> str:
    return (f"atol {tol['atol']:g}, rtol {tol['rtol']:g}"
            + (f", max_ulp {tol['max_ulp']}" if tol.get("max_ulp") is not None else ""))


def minimum_tolerance_text(report: Report, variant: str) -> str | None:
    """E.g. 'minimum atol 6.2e-40 (rtol 0) or rtol 1 (atol 0)': the least tolerance under which every final output
    passes, each alone (Report.minimum_tolerance); None when no final output was compared."""
    text = minimum_glued(report, variant)
    return None if text is None else text.replace(GLUE, " ")


EQUAL = "equal to the reference's"


def minimum_glued(report: Report, variant: str) -> str | None:
    """`minimum_tolerance_text` with the spaces inside each figure glued (`glue`)."""
    need = report.minimum_tolerance(variant)
    if not need:
        return None
    if "none" in need:
        return f"no tolerance passes: {need['none']}"
    if need["atol"] == 0 and need["rtol"] == 0:
        return EQUAL
    ways = [glue(f"atol {sci_text(need['atol'])} (rtol 0)")]
    if math.isfinite(need["rtol"]):
        ways.append(glue(f"rtol {sci_text(need['rtol'])} (atol 0)"))
    if report.tolerance.get("max_ulp") is not None and need.get("max_ulp") is not None:
        ways.append(glue(f"max_ulp {need['max_ulp']:,}"))
    return "minimum " + " or ".join(ways)


def ms_text(seconds: Any) -> str:
    """A duration in milliseconds: three digits below 100 ms (0.0512, 1.84, 12.3), whole ones above (1,234)."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not math.isfinite(seconds):
        return "-"
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 99.95 else f"{ms:,.0f}"


def ratio_text(ratio: float) -> str:
    """A latency ratio: '0.93x', '0.014x' (two digits below 0.1), '652x' (whole from 100)."""
    if not math.isfinite(ratio):
        return num(float(ratio)) + "x"
    return (f"{ratio:.2g}" if ratio < 0.1 else f"{ratio:.2f}" if ratio < 99.995 else f"{ratio:,.0f}") + "x"


def latency_text(report: Report, variant: str) -> str | None:
    """E.g. 'latency 1.84 ms median of 20 (0.93x the reference)', figures glued (`glue`); the ratio only for a
    variant other than the reference, when both were timed; None when `variant` was not timed."""
    lat = report.latency(variant)
    if lat is None:
        return None
    ratio = report.latency_ratio(variant) if variant != report.reference else None
    return ("latency " + glue(f"{ms_text(lat['median_s'])} ms") + " " + glue(f"median of {lat.get('runs', '?')}")
            + (f" ({ratio_text(ratio)} the reference)" if ratio is not None else ""))
